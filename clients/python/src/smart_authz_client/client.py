"""The client: one channel, the four RPCs, typed answers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import grpc

from ._pb.smartauthz.v1 import authz_pb2 as pb
from ._pb.smartauthz.v1 import authz_pb2_grpc
from .errors import AuthzError, from_rpc_error
from .results import BatchDecision, Decision, Filtered, Introspection

#: A resource: parsed JSON, or its JSON text or bytes.
ResourceJson = Union[Mapping[str, Any], str, bytes, bytearray, memoryview]

#: The gRPC metadata a proxy can hash on to send each token to one replica
#: (docs/operations.md); the service never reads it.
ROUTING_KEY_HEADER = "x-smart-authz-routing-key"

#: The channel option that sets the ``:authority`` a ``unix:`` target sends.
_DEFAULT_AUTHORITY = "grpc.default_authority"

#: The largest answer the client takes. gRPC's default, 4 MiB, is less than a
#: ``FilterResources`` answer can be: the body (up to ``response_filter.max_body_bytes``)
#: and a verdict per entry.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024


def routing_key(token: str) -> str:
    """The first 16 hex digits of the bare token's SHA-256: the same for one token, and
    useless for replaying it."""
    bare = token[7:] if token[:7].lower() == "bearer " else token
    return hashlib.sha256(bare.strip().encode()).hexdigest()[:16]


def _json_bytes(value: ResourceJson) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def _resource(resource: Optional[ResourceJson]) -> Optional[pb.Resource]:
    if resource is None:
        return None
    return pb.Resource(json=_json_bytes(resource))


def _set_request(
    request: Any,
    method: str,
    path: str,
    fhir: Optional[pb.FhirRequest],
    headers: Optional[Mapping[str, str]],
    search_body: str,
) -> None:
    """Sets the request of a ``CheckAccessRequest`` or ``FilterResourcesRequest``: its HTTP
    line with the headers and form body the FHIR server reads, or its structured form."""
    if fhir is None:
        request.http.CopyFrom(
            pb.HttpRequest(
                method=method,
                path=path,
                headers=headers or {},
                body=search_body.encode("utf-8"),
            )
        )
        return
    if method or path:
        raise ValueError("give either method and path, or fhir")
    # Dropped, they would leave the request decided without what the server reads (an
    # If-None-Exist search, a form body): the structured request has its own fields
    # (``if_none_exist``), or give the request as method and path.
    if headers or search_body:
        raise ValueError(
            "headers and search_body go with method and path; a structured fhir "
            "request carries its own fields (if_none_exist)"
        )
    request.fhir.CopyFrom(fhir)


@dataclass(frozen=True)
class BatchEntry:
    """One entry of a batch or transaction, as its HTTP line relative to the FHIR base.
    ``headers`` are the entry's request headers the FHIR server reads: a conditional
    create's ``If-None-Exist`` (``Bundle.entry.request.ifNoneExist``), decided as the
    search it is, and the method overrides."""

    method: str
    path: str
    stored: Optional[ResourceJson] = None
    proposed: Optional[ResourceJson] = None
    headers: Optional[Mapping[str, str]] = None


class AuthzClient:
    """A client of one smart-authz service (or a load-balanced address of several).

    ``fhir_server`` names the FHIR server asking (its configured name or base URL) when
    the service decides for several; ``fhir_version`` the FHIR release its requests are in
    (``"R4"``, ``"R5"``...) when that server serves several (docs/servers.md, "Naming the
    FHIR release"). ``credentials`` gives TLS (``grpc.ssl_channel_credentials``,
    with a client certificate for mutual TLS); without it the channel is plaintext. Pass
    ``channel`` to use one of your own.

    A ``unix:/path`` target reaches the service's Unix socket (``unix_listen``). gRPC's C core
    would send the socket's path as the ``:authority``, which the service's HTTP/2 layer
    refuses as malformed (RFC 9113 §8.3.1), so this client sends ``localhost`` there, as
    grpc-go does; a ``channel`` of your own needs the option ``grpc.default_authority``,
    and ``grpc.max_receive_message_length`` (:data:`MAX_RECEIVE_BYTES`) for large
    ``filter_resources`` answers.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        fhir_server: str = "",
        fhir_version: str = "",
        timeout: float = 2.0,
        credentials: Optional[grpc.ChannelCredentials] = None,
        channel: Optional[grpc.Channel] = None,
        send_routing_key: bool = True,
    ):
        if channel is None:
            options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
            if target.startswith("unix:"):
                options.append((_DEFAULT_AUTHORITY, "localhost"))
            channel = (
                grpc.secure_channel(target, credentials, options=options)
                if credentials is not None
                else grpc.insecure_channel(target, options=options)
            )
        self._channel = channel
        self._stub = authz_pb2_grpc.AuthzServiceStub(channel)
        self._fhir_server = fhir_server
        self._fhir_version = fhir_version
        self._timeout = timeout
        self._send_routing_key = send_routing_key
        self._closed = False

    def close(self) -> None:
        """Closes the channel; every call after it raises :class:`AuthzError`
        (``FAILED_PRECONDITION``, not retryable)."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> "AuthzClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _metadata(self, token: str) -> Tuple[Tuple[str, str], ...]:
        if self._send_routing_key and token:
            return ((ROUTING_KEY_HEADER, routing_key(token)),)
        return ()

    def _call(self, method: Any, request: Any, token: str) -> Any:
        if self._closed:
            raise AuthzError(grpc.StatusCode.FAILED_PRECONDITION, "the client is closed")
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata(token))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def check(
        self,
        token: str,
        method: str = "",
        path: str = "",
        *,
        fhir: Optional[pb.FhirRequest] = None,
        stored: Optional[ResourceJson] = None,
        proposed: Optional[ResourceJson] = None,
        headers: Optional[Mapping[str, str]] = None,
        search_body: str = "",
        request_id: str = "",
    ) -> Decision:
        """Decides one FHIR request: ``method`` and ``path`` relative to the FHIR base
        (``"GET", "Observation?code=x"``), or a structured ``fhir`` request. ``stored`` and
        ``proposed`` are the resource as stored now and as it would be written;
        ``search_body`` the form-encoded body of a ``POST [type]/_search``, whose parameters
        are decided with the query's (the service refuses such a search without it)."""
        request = pb.CheckAccessRequest(
            access_token=token,
            stored=_resource(stored),
            proposed=_resource(proposed),
            fhir_server=self._fhir_server,
            fhir_version=self._fhir_version,
            request_id=request_id,
        )
        _set_request(request, method, path, fhir, headers, search_body)
        return Decision._from(self._call(self._stub.CheckAccess, request, token))

    def is_allowed(self, token: str, method: str, path: str, **kwargs: Any) -> bool:
        """Whether the request is allowed outright, with nothing left for the FHIR server
        to enforce (:attr:`Decision.allowed_outright`): a patient's read with the stored
        resource given, say. False for an allow that carries a compartment, a filter, an
        exclusion or an obligation, as every ``user/`` and ``system/`` grant does: use
        :meth:`check` and apply its grants. Raises :class:`AuthzError` when the service
        gives no decision."""
        return self.check(token, method, path, **kwargs).allowed_outright

    def check_batch(
        self,
        token: str,
        entries: Sequence[BatchEntry],
        *,
        transaction: bool,
        request_id: str = "",
    ) -> BatchDecision:
        """Decides every entry of a batch or a transaction with one token. A transaction
        must be refused whole unless ``allowed``."""
        request = pb.BatchCheckAccessRequest(
            access_token=token,
            bundle_type=pb.BUNDLE_TYPE_TRANSACTION if transaction else pb.BUNDLE_TYPE_BATCH,
            entries=[
                pb.BatchEntry(
                    http=pb.HttpRequest(
                        method=entry.method, path=entry.path, headers=entry.headers or {}
                    ),
                    stored=_resource(entry.stored),
                    proposed=_resource(entry.proposed),
                )
                for entry in entries
            ],
            fhir_server=self._fhir_server,
            fhir_version=self._fhir_version,
            request_id=request_id,
        )
        return BatchDecision._from(self._call(self._stub.BatchCheckAccess, request, token))

    def filter_resources(
        self,
        token: str,
        method: str = "",
        path: str = "",
        *,
        response: ResourceJson,
        fhir: Optional[pb.FhirRequest] = None,
        headers: Optional[Mapping[str, str]] = None,
        search_body: str = "",
        request_id: str = "",
    ) -> Filtered:
        """Judges what the FHIR server answered to a request (a Bundle or one resource,
        uncompressed JSON) entry by entry, as reads of each resource: send back
        ``body`` when ``allowed``, else 403 and nothing of the answer. ``headers`` and
        ``search_body`` are the request's, as in :meth:`check` (a ``POST`` search's answer
        is judged with the parameters of its body)."""
        request = pb.FilterResourcesRequest(
            access_token=token,
            response=_json_bytes(response),
            fhir_server=self._fhir_server,
            fhir_version=self._fhir_version,
            request_id=request_id,
        )
        _set_request(request, method, path, fhir, headers, search_body)
        return Filtered._from(self._call(self._stub.FilterResources, request, token))

    def introspect(self, token: str, *, request_id: str = "") -> Introspection:
        """Verifies or introspects the token (RFC 7662 with the SMART launch context)."""
        request = pb.IntrospectTokenRequest(
            token=token, fhir_server=self._fhir_server, request_id=request_id
        )
        return Introspection._from(self._call(self._stub.IntrospectToken, request, token))

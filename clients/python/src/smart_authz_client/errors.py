"""Errors of the service, raised instead of a decision: an error is never an allow."""

from __future__ import annotations

import grpc

#: Codes worth a retry, on another replica if there is one (docs/operations.md).
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class AuthzError(Exception):
    """The service gave no decision. Answer the FHIR request with an error (503 when
    :attr:`retryable`), never by letting it through."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class AuthzUnavailable(AuthzError):
    """The service, or the token issuer behind it, could not be reached in time."""


class InvalidRequest(AuthzError):
    """The request could not be read (``INVALID_ARGUMENT``): a malformed path, an unknown
    FHIR server, a request id that is not visible ASCII."""


def from_rpc_error(error: grpc.RpcError) -> AuthzError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    if code in RETRYABLE:
        return AuthzUnavailable(code, details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(code, details)
    return AuthzError(code, details)

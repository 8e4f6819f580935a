"""Errors of the service, raised instead of a decision: an error is never an allow."""

from __future__ import annotations

from typing import Optional

import grpc

#: Codes worth a retry, on another replica if there is one (docs/operations.md).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

#: The metadata by which the service marks a ``RESOURCE_EXHAUSTED`` worth a retry (gRPC's
#: retry pushback, gRFC A6): it was busy. Without it the code means a request larger than
#: the service takes, which no retry gets past.
RETRY_PUSHBACK = "grpc-retry-pushback-ms"


class AuthzError(Exception):
    """The service gave no decision. Answer the FHIR request with an error (503 when
    :attr:`retryable`), never by letting it through."""

    def __init__(
        self, code: grpc.StatusCode, details: str, retry_after_ms: Optional[int] = None
    ):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        #: How long the service asked to wait before a retry, when it was busy.
        self.retry_after_ms = retry_after_ms

    def __reduce__(self):
        return (type(self), (self.code, self.details, self.retry_after_ms))

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE or (
            self.code == grpc.StatusCode.RESOURCE_EXHAUSTED and self.retry_after_ms is not None
        )


class AuthzUnavailable(AuthzError):
    """The service, or the token issuer behind it, could not be reached in time, or was
    busy."""


class InvalidRequest(AuthzError):
    """The request could not be read (``INVALID_ARGUMENT``): a malformed path, an unknown
    FHIR server, a request id that is not visible ASCII."""


def _pushback(error: grpc.RpcError) -> Optional[int]:
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == RETRY_PUSHBACK:
            try:
                delay = int(value)
            except ValueError:
                return None
            # gRFC A6: a negative delay means "do not retry".
            return delay if delay >= 0 else None
    return None


def from_rpc_error(error: grpc.RpcError) -> AuthzError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    pushback = _pushback(error) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
    if code in RETRYABLE or pushback is not None:
        return AuthzUnavailable(code, details, pushback)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(code, details)
    return AuthzError(code, details)

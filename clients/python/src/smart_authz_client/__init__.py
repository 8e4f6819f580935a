"""Typed Python client of smart-authz, the SMART on FHIR authorization decision service.

    from smart_authz_client import AuthzClient

    with AuthzClient("authz.internal:50051") as authz:
        decision = authz.check(token, "GET", "Observation?code=8867-4")
        if decision.allowed:
            ...  # apply decision.grants: each is an alternative set of constraints

An allow is read only from ``DECISION_ALLOW``: a missing, unknown or zero decision is a
deny. Errors of the service (unreachable, a malformed request) raise :class:`AuthzError`,
never a decision, so a caller cannot mistake an outage for an answer.
"""

from ._pb.smartauthz.v1 import authz_pb2 as pb
from ._pb.smartauthz.v1.authz_pb2 import FhirRequest, SearchParam
from .client import AuthzClient, BatchEntry, routing_key
from .errors import AuthzError, AuthzUnavailable, InvalidRequest
from .results import (
    BatchDecision,
    Decision,
    EntryVerdict,
    Filter,
    Filtered,
    Grant,
    IgnoredScope,
    Introspection,
    ParsedScope,
    Subject,
)

__all__ = [
    "AuthzClient",
    "AuthzError",
    "AuthzUnavailable",
    "BatchDecision",
    "BatchEntry",
    "Decision",
    "EntryVerdict",
    "FhirRequest",
    "Filter",
    "Filtered",
    "Grant",
    "IgnoredScope",
    "InvalidRequest",
    "Introspection",
    "ParsedScope",
    "SearchParam",
    "Subject",
    "pb",
    "routing_key",
]

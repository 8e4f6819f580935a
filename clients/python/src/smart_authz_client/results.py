"""The answers of the service as typed, immutable values.

Enum values are given by their proto names (``"REASON_GRANTED"``,
``"SCOPE_CONTEXT_PATIENT"``), so a value newer than these stubs still reads as its number
rather than failing; only ``allowed`` decides, and it is true for ``DECISION_ALLOW`` alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from ._pb.smartauthz.v1 import authz_pb2 as pb


def _enum_name(enum: Any, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


@dataclass(frozen=True)
class Filter:
    """A granular filter: the resource must match ``param`` on any of ``values``."""

    param: str
    values: Tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """One scope that grants the request, and what the FHIR server must still enforce.
    The grants of a decision are alternatives: the request is allowed under any one."""

    scope: str
    context: str
    #: The compartment results must be limited to, e.g. ``"Patient/123"``; None when the
    #: service checked membership itself or none applies.
    compartment: Optional[str]
    compartment_params: Tuple[str, ...]
    #: All must hold (AND); any value of each (OR).
    filters: Tuple[Filter, ...]
    resource_types: Tuple[str, ...]
    obligation: str
    exclude_other_patients_via: Tuple[str, ...]
    #: Each resource of the answer must be read for a reference to another patient (a
    #: ``patient/`` grant on a type like Binary or Bundle the service did not see).
    answer_must_be_read: bool = False

    @property
    def leaves_nothing_to_apply(self) -> bool:
        """Whether this grant leaves the FHIR server nothing to enforce: no compartment,
        filter, exclusion or answer to read, and no obligation (every ``user/`` and
        ``system/`` grant carries one: the user's permissions, the client's policy)."""
        return (
            self.compartment is None
            and not self.filters
            and not self.exclude_other_patients_via
            and not self.answer_must_be_read
            and self.obligation == "OBLIGATION_NONE"
        )

    @classmethod
    def _from(cls, grant: pb.Grant) -> "Grant":
        return cls(
            scope=grant.scope,
            context=_enum_name(pb.ScopeContext, grant.context),
            compartment=grant.compartment or None,
            compartment_params=tuple(grant.compartment_params),
            filters=tuple(Filter(f.param, tuple(f.values)) for f in grant.filters),
            resource_types=tuple(grant.resource_types),
            obligation=_enum_name(pb.Obligation, grant.obligation),
            exclude_other_patients_via=tuple(grant.exclude_other_patients_via),
            answer_must_be_read=grant.answer_must_be_read,
        )


@dataclass(frozen=True)
class Subject:
    """Who is asking, from the verified token."""

    client_id: str
    sub: str
    fhir_user: Optional[str]
    patient: Optional[str]
    encounter: Optional[str]
    scope: str
    expires_at: int

    @classmethod
    def _from(cls, subject: pb.Subject) -> "Subject":
        return cls(
            client_id=subject.client_id,
            sub=subject.sub,
            fhir_user=subject.fhir_user or None,
            patient=subject.patient or None,
            encounter=subject.encounter or None,
            scope=subject.scope,
            expires_at=subject.expires_at,
        )


@dataclass(frozen=True)
class IgnoredScope:
    scope: str
    reason: str


@dataclass(frozen=True)
class ParsedScope:
    """One granted scope as the service reads it."""

    #: As written in the token.
    scope: str
    #: "resource", "identity", "launch context", "refresh token", "extension" or "invalid".
    kind: str
    #: The canonical SMART v2 form, for resource scopes.
    canonical: Optional[str]
    #: Why an invalid scope grants nothing.
    error: Optional[str]


@dataclass(frozen=True)
class Decision:
    """The answer to one request."""

    #: True only when the service answered ``DECISION_ALLOW``.
    allowed: bool
    reason: str
    message: str
    grants: Tuple[Grant, ...]
    subject: Optional[Subject]
    ignored_scopes: Tuple[IgnoredScope, ...]
    #: For ``_include``/``_revinclude``: the types some scope can read (``"*"`` for all).
    #: Empty for a request with ``_include`` or ``_revinclude`` means no type is readable:
    #: return no included resource.
    include_readable_types: Tuple[str, ...]
    request_id: str

    @property
    def allowed_outright(self) -> bool:
        """An allow with nothing left for the FHIR server to enforce: no ``_include`` types
        to hold the answer to, and no grant (a public endpoint) or a grant that leaves
        nothing to apply. The service's own rule (``Decision::is_allowed_outright``)."""
        return (
            self.allowed
            and not self.include_readable_types
            and (not self.grants or any(grant.leaves_nothing_to_apply for grant in self.grants))
        )

    @classmethod
    def _from(cls, response: pb.CheckAccessResponse) -> "Decision":
        return cls(
            allowed=response.decision == pb.DECISION_ALLOW,
            reason=_enum_name(pb.Reason, response.reason),
            message=response.message,
            grants=tuple(Grant._from(grant) for grant in response.grants),
            subject=Subject._from(response.subject) if response.HasField("subject") else None,
            ignored_scopes=tuple(
                IgnoredScope(ignored.scope, ignored.reason) for ignored in response.ignored_scopes
            ),
            include_readable_types=tuple(response.include_readable_types),
            request_id=response.request_id,
        )


@dataclass(frozen=True)
class BatchDecision:
    """The answer to a batch or transaction: ``allowed`` only when every entry is."""

    allowed: bool
    reason: str
    message: str
    entries: Tuple[Decision, ...]
    subject: Optional[Subject]
    request_id: str

    @classmethod
    def _from(cls, response: pb.BatchCheckAccessResponse) -> "BatchDecision":
        entries = tuple(Decision._from(entry) for entry in response.entries)
        return cls(
            allowed=response.decision == pb.DECISION_ALLOW
            and bool(entries)
            and all(entry.allowed for entry in entries),
            reason=_enum_name(pb.Reason, response.reason),
            message=response.message,
            entries=entries,
            subject=Subject._from(response.subject) if response.HasField("subject") else None,
            request_id=response.request_id,
        )


@dataclass(frozen=True)
class EntryVerdict:
    """The verdict on one entry of an answer (on the resource, for a single resource)."""

    #: Position in the answer's ``Bundle.entry`` (0 for a single resource).
    index: int
    #: ``"Type/id"`` of the entry's resource, when it has both.
    reference: Optional[str]
    mode: str
    #: True only when the entry stays in the answer.
    kept: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Filtered:
    """What of the FHIR server's answer may go back to the app.

    When ``allowed``, send ``body`` (the filtered JSON, or the answer as it was when nothing
    was withheld). Otherwise answer 403 and send nothing of the answer: ``body`` is None.
    """

    allowed: bool
    reason: str
    message: str
    #: False when the grant left nothing to check and the answer passed unread.
    filtered: bool
    entries: Tuple[EntryVerdict, ...]
    withheld: int
    body: Optional[bytes]
    subject: Optional[Subject]
    request_id: str

    @classmethod
    def _from(cls, response: pb.FilterResourcesResponse) -> "Filtered":
        allowed = response.decision == pb.DECISION_ALLOW
        return cls(
            allowed=allowed,
            reason=_enum_name(pb.Reason, response.reason),
            message=response.message,
            filtered=response.filtered,
            entries=tuple(
                EntryVerdict(
                    index=entry.index,
                    reference=entry.reference or None,
                    mode=_enum_name(pb.EntryMode, entry.mode),
                    kept=entry.kept,
                    reason=_enum_name(pb.Reason, entry.reason),
                    message=entry.message,
                )
                for entry in response.entries
            ),
            withheld=response.withheld,
            body=response.body if allowed else None,
            subject=Subject._from(response.subject) if response.HasField("subject") else None,
            request_id=response.request_id,
        )


@dataclass(frozen=True)
class Introspection:
    """RFC 7662 introspection with the SMART launch context, every field the service
    answers with. An inactive token has ``active`` false and nothing else. Times are
    seconds since the epoch, 0 when absent."""

    active: bool
    scope: str
    client_id: str
    sub: str
    iss: str
    aud: Tuple[str, ...]
    exp: int
    iat: int
    nbf: int
    jti: Optional[str]
    token_type: Optional[str]
    patient: Optional[str]
    encounter: Optional[str]
    fhir_user: Optional[str]
    fhir_context: Tuple[Any, ...]
    need_patient_banner: bool
    intent: Optional[str]
    tenant: Optional[str]
    smart_style_url: Optional[str]
    scopes: Tuple[ParsedScope, ...]
    ignored_scopes: Tuple[IgnoredScope, ...]
    source: str
    cached: bool
    request_id: str

    @classmethod
    def _from(cls, response: pb.IntrospectTokenResponse) -> "Introspection":
        return cls(
            active=response.active,
            scope=response.scope,
            client_id=response.client_id,
            sub=response.sub,
            iss=response.iss,
            aud=tuple(response.aud),
            exp=response.exp,
            iat=response.iat,
            nbf=response.nbf,
            jti=response.jti or None,
            token_type=response.token_type or None,
            patient=response.patient or None,
            encounter=response.encounter or None,
            fhir_user=response.fhir_user or None,
            fhir_context=tuple(json.loads(item) for item in response.fhir_context),
            need_patient_banner=response.need_patient_banner,
            intent=response.intent or None,
            tenant=response.tenant or None,
            smart_style_url=response.smart_style_url or None,
            scopes=tuple(
                ParsedScope(
                    scope=parsed.scope,
                    kind=parsed.kind,
                    canonical=parsed.canonical or None,
                    error=parsed.error or None,
                )
                for parsed in response.scopes
            ),
            ignored_scopes=tuple(
                IgnoredScope(scope=ignored.scope, reason=ignored.reason)
                for ignored in response.ignored_scopes
            ),
            source=_enum_name(pb.TokenSource, response.source),
            cached=response.cached,
            request_id=response.request_id,
        )

"""The client against the real service: typed answers, allows only from DECISION_ALLOW,
errors raised rather than read as decisions."""

from __future__ import annotations

import json
import pickle

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from smart_authz_client import (
    AuthzClient,
    AuthzError,
    AuthzUnavailable,
    BatchEntry,
    Filter,
    InvalidRequest,
    routing_key,
)
from smart_authz_client._pb.smartauthz.v1 import authz_pb2 as pb
from smart_authz_client._pb.smartauthz.v1 import authz_pb2_grpc
from smart_authz_client.errors import from_rpc_error

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def observation(patient: str, category: str = "vital-signs") -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"text": "heart rate"},
        "subject": {"reference": f"Patient/{patient}"},
    }


@pytest.fixture
def authz(address):
    with AuthzClient(address) as client:
        yield client


def test_a_patient_search_is_allowed_with_its_compartment_as_a_typed_constraint(authz, mint):
    token = mint("patient/Observation.rs launch/patient", patient="123")
    decision = authz.check(token, "GET", "Observation?code=8867-4")
    assert decision.allowed is True
    assert decision.reason == "REASON_GRANTED"
    grant = decision.grants[0]
    assert grant.scope == "patient/Observation.rs"
    assert grant.context == "SCOPE_CONTEXT_PATIENT"
    assert grant.compartment == "Patient/123"
    assert "subject" in grant.compartment_params
    assert grant.obligation == "OBLIGATION_NONE"
    assert decision.subject is not None and decision.subject.patient == "123"


def test_the_service_answers_the_same_on_its_unix_socket(address, unix_socket, mint):
    token = mint("patient/Observation.rs launch/patient", patient="123")
    with AuthzClient(f"unix:{unix_socket}") as local, AuthzClient(address) as remote:
        for path, allowed in (("Observation?code=8867-4", True), ("Observation?patient=456", False)):
            over_unix = local.check(token, "GET", path)
            over_tcp = remote.check(token, "GET", path)
            assert over_unix.allowed is allowed, path
            assert (over_unix.reason, over_unix.message) == (over_tcp.reason, over_tcp.message)
        assert local.check(token, "GET", "Observation?code=8867-4").grants[0].compartment == (
            "Patient/123"
        )


def test_a_post_search_is_decided_on_its_body(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    own = authz.check(token, "POST", "Observation/_search", search_body="code=x")
    assert own.allowed is True
    other = authz.check(token, "POST", "Observation/_search", search_body="patient=456")
    assert other.allowed is False
    with pytest.raises(AuthzError, match="form body"):
        authz.check(token, "POST", "Observation/_search")


def test_a_deny_has_no_decision_in_json_and_the_client_still_reads_a_deny(authz, address, mint):
    token = mint("patient/Observation.rs", patient="123")
    decision = authz.check(token, "GET", "Patient/456/Observation")
    assert decision.allowed is False
    assert decision.reason == "REASON_OUTSIDE_COMPARTMENT"
    assert decision.grants == ()
    # The trap the client closes: proto3 JSON leaves the zero value out, so a check for
    # "not DECISION_DENY" on the JSON form would let this deny through.
    import grpc

    with grpc.insecure_channel(address) as channel:
        raw = authz_pb2_grpc.AuthzServiceStub(channel).CheckAccess(
            pb.CheckAccessRequest(
                access_token=token,
                http=pb.HttpRequest(method="GET", path="Patient/456/Observation"),
            )
        )
    as_json = MessageToDict(raw)
    assert "decision" not in as_json
    assert as_json.get("decision") != "DECISION_DENY"  # what a naive check would test


def test_the_stored_resource_is_judged(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    assert authz.is_allowed(token, "GET", "Observation/o1", stored=observation("123"))
    assert not authz.is_allowed(token, "GET", "Observation/o1", stored=observation("456"))
    assert not authz.is_allowed(
        token, "GET", "Observation/o1", stored=json.dumps(observation("456"))
    )


def test_is_allowed_is_true_only_for_an_allow_with_nothing_left_to_enforce(authz, mint):
    # Allowed, but the FHIR server must still apply the user's permissions.
    user = mint("user/Observation.rs", fhir_user="Practitioner/7")
    decision = authz.check(user, "GET", "Observation/o1", stored=observation("123"))
    assert decision.allowed
    assert decision.grants[0].obligation == "OBLIGATION_USER_PERMISSIONS"
    assert not authz.is_allowed(user, "GET", "Observation/o1", stored=observation("123"))
    # A search is allowed within the patient's compartment, which the server must apply.
    patient = mint("patient/Observation.rs", patient="123")
    assert authz.check(patient, "GET", "Observation").allowed
    assert not authz.is_allowed(patient, "GET", "Observation")
    # A Binary not given: only its answer can show whose it is.
    binary = mint("patient/Binary.r", patient="123")
    decision = authz.check(binary, "GET", "Binary/b1")
    assert decision.allowed and decision.grants[0].answer_must_be_read
    assert not authz.is_allowed(binary, "GET", "Binary/b1")
    # A public endpoint: nothing to apply.
    assert authz.is_allowed("", "GET", "metadata")


def test_a_granular_scope_comes_back_as_a_typed_filter(authz, mint):
    token = mint(f"patient/Observation.rs?category={VITALS}", patient="123")
    decision = authz.check(token, "GET", "Observation")
    assert decision.allowed
    assert decision.grants[0].filters == (Filter("category", (VITALS,)),)
    laboratory = observation("123", category="laboratory")
    assert not authz.check(token, "GET", "Observation/o1", stored=laboratory).allowed


def test_a_transaction_with_one_bad_entry_is_refused_whole(authz, mint):
    token = mint("patient/Observation.crs", patient="123")
    entries = [
        BatchEntry("POST", "Observation", proposed=observation("123")),
        BatchEntry("POST", "Observation", proposed=observation("456")),
    ]
    transaction = authz.check_batch(token, entries, transaction=True, request_id="tx-1")
    assert transaction.allowed is False
    assert [entry.allowed for entry in transaction.entries] == [True, False]
    assert transaction.request_id == "tx-1"
    batch = authz.check_batch(token, entries[:1], transaction=False)
    assert batch.allowed is True


def test_introspection_reads_the_launch_context(authz, mint):
    token = mint("patient/*.rs launch/patient openid fhirUser", patient="123")
    introspection = authz.introspect(token, request_id="i-1")
    assert introspection.active
    assert introspection.patient == "123"
    assert introspection.source == "TOKEN_SOURCE_LOCAL_JWT"
    assert introspection.request_id == "i-1"
    assert 0 < introspection.iat < introspection.exp
    assert [(parsed.scope, parsed.kind) for parsed in introspection.scopes] == [
        ("patient/*.rs", "resource"),
        ("launch/patient", "launch context"),
        ("openid", "identity"),
        ("fhirUser", "identity"),
    ]
    assert introspection.scopes[0].canonical == "patient/*.rs"
    assert introspection.scopes[0].error is None
    assert not authz.introspect("not-a-token").active


def test_a_resource_given_as_bytes_of_any_kind_is_sent_as_it_is(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    for kind in (bytes, bytearray, memoryview):
        ours = kind(json.dumps(observation("123")).encode())
        theirs = kind(json.dumps(observation("456")).encode())
        assert authz.is_allowed(token, "GET", "Observation/o1", stored=ours)
        assert not authz.is_allowed(token, "GET", "Observation/o1", stored=theirs)


def test_a_closed_client_raises_an_error_that_is_not_retried(address, mint):
    token = mint("patient/Observation.rs", patient="123")
    client = AuthzClient(address)
    assert client.check(token, "GET", "Observation?code=x").allowed
    client.close()
    with pytest.raises(AuthzError) as raised:
        client.check(token, "GET", "Observation?code=x")
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert not raised.value.retryable


def test_the_request_id_is_echoed_and_a_bad_one_raises(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    assert authz.check(token, "GET", "Observation/o1", request_id="req-9").request_id == "req-9"
    with pytest.raises(InvalidRequest):
        authz.check(token, "GET", "Observation/o1", request_id="two words")


def test_the_fhir_release_is_sent_with_every_decision(address, mint):
    token = mint("patient/Observation.rs", patient="123")
    # The development configuration serves R4 alone: naming it passes, naming another is
    # refused, which shows the field reaches the service.
    with AuthzClient(address, fhir_version="4.0.1") as r4:
        assert r4.check(token, "GET", "Observation?code=x").allowed
    with AuthzClient(address, fhir_version="R5") as r5:
        with pytest.raises(InvalidRequest):
            r5.check(token, "GET", "Observation?code=x")
        with pytest.raises(InvalidRequest):
            r5.check_batch(token, [BatchEntry("GET", "Observation?code=x")], transaction=False)
        with pytest.raises(InvalidRequest):
            r5.filter_resources(
                token, "GET", "Observation/o1", response=json.dumps(observation("123"))
            )
        # Introspection decides nothing and takes no release.
        assert r5.introspect(token).active


def test_a_batch_entry_carries_its_if_none_exist(authz, mint):
    writer = mint("patient/Observation.crs", patient="123")
    create = BatchEntry("POST", "Observation", proposed=observation("123"))
    assert authz.check_batch(writer, [create], transaction=True).allowed
    # The server would run this search first, and answer with another patient's match.
    conditional = BatchEntry(
        "POST",
        "Observation",
        proposed=observation("123"),
        headers={"If-None-Exist": "subject=Patient/456"},
    )
    assert not authz.check_batch(writer, [conditional], transaction=True).allowed


def test_an_answer_to_a_post_search_is_judged_with_its_body(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    answer = searchset(dict(observation("123"), id="o-123"))
    ours = authz.filter_resources(
        token, "POST", "Observation/_search", search_body="code=8867-4", response=answer
    )
    assert ours.allowed
    theirs = authz.filter_resources(
        token, "POST", "Observation/_search", search_body="subject=Patient/456", response=answer
    )
    assert not theirs.allowed
    assert theirs.body is None


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code, metadata=()):
        self._code, self._metadata = code, metadata

    def code(self):
        return self._code

    def details(self):
        return "busy"

    def trailing_metadata(self):
        return self._metadata


def test_resource_exhausted_is_retryable_only_when_the_service_was_busy(authz, mint):
    busy = from_rpc_error(
        _FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, (("grpc-retry-pushback-ms", "1000"),))
    )
    assert isinstance(busy, AuthzUnavailable) and busy.retryable
    assert busy.retry_after_ms == 1000
    assert pickle.loads(pickle.dumps(busy)).retry_after_ms == 1000
    for metadata in [(), (("grpc-retry-pushback-ms", "-1"),)]:
        limit = from_rpc_error(_FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, metadata))
        assert not limit.retryable
    # A request larger than the service takes: no retry gets it through.
    token = mint("patient/Observation.rs", patient="123")
    large = dict(observation("123"), note=[{"text": "x" * (5 * 1024 * 1024)}])
    with pytest.raises(AuthzError) as raised:
        authz.check(token, "GET", "Observation/o1", stored=large)
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not raised.value.retryable


def test_the_structured_request_types_are_exported():
    import smart_authz_client as client

    request = client.FhirRequest(
        interaction=client.pb.INTERACTION_SEARCH_TYPE,
        resource_type="Observation",
        params=[client.SearchParam(name="code", value="x")],
    )
    assert request == pb.FhirRequest(
        interaction=pb.INTERACTION_SEARCH_TYPE,
        resource_type="Observation",
        params=[pb.SearchParam(name="code", value="x")],
    )


def test_a_structured_request_is_filtered_too(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    read = pb.FhirRequest(interaction=pb.INTERACTION_READ, resource_type="Observation", id="o1")
    answer = authz.filter_resources(token, fhir=read, response=json.dumps(observation("123")))
    assert answer.allowed
    with pytest.raises(ValueError):
        authz.filter_resources(token, "GET", "Observation/o1", fhir=read, response="{}")


def test_a_missing_or_bad_token_is_a_deny_with_its_reason(authz, mint):
    assert authz.check("", "GET", "Observation/o1").reason == "REASON_TOKEN_MISSING"
    refused = authz.check("not.a.jwt", "GET", "Observation/o1")
    assert refused.allowed is False
    assert refused.reason == "REASON_TOKEN_MALFORMED"


def test_an_unreachable_service_raises_instead_of_deciding(free_port, mint):
    token = mint("patient/Observation.rs", patient="123")
    with AuthzClient(f"127.0.0.1:{free_port}", timeout=0.5) as client:
        with pytest.raises(AuthzUnavailable) as raised:
            client.check(token, "GET", "Observation/o1")
    assert raised.value.retryable


def test_the_routing_key_ignores_the_bearer_prefix_and_hides_the_token():
    key = routing_key("Bearer abc.def.ghi")
    assert key == routing_key("abc.def.ghi")
    assert len(key) == 16 and "abc" not in key


def test_a_structured_request_is_decided_too(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    request = pb.FhirRequest(
        interaction=pb.INTERACTION_SEARCH_TYPE,
        resource_type="Observation",
        params=[pb.SearchParam(name="code", value="8867-4")],
    )
    assert authz.check(token, fhir=request).allowed
    with pytest.raises(ValueError):
        authz.check(token, "GET", "Observation", fhir=request)
    # Headers would be dropped: the structured request has its own field.
    with pytest.raises(ValueError):
        authz.check(token, fhir=request, headers={"If-None-Exist": "identifier=x"})
    writer = mint("patient/Observation.crs", patient="123")
    create = pb.FhirRequest(interaction=pb.INTERACTION_CREATE, resource_type="Observation")
    assert authz.check(writer, fhir=create, proposed=observation("123")).allowed
    create.if_none_exist = "subject=Patient/456"
    assert not authz.check(writer, fhir=create, proposed=observation("123")).allowed


def searchset(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"https://fhir.example/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def test_an_answer_loses_what_the_token_may_not_read(authz, mint):
    token = mint("patient/Observation.rs launch/patient", patient="123")
    ours = dict(observation("123"), id="o-123")
    theirs = dict(observation("456"), id="o-456")
    answer = authz.filter_resources(
        token, "GET", "Observation?code=8867-4", response=searchset(ours, theirs), request_id="f-1"
    )
    assert answer.allowed and answer.filtered
    assert answer.withheld == 1
    assert [(entry.reference, entry.kept) for entry in answer.entries] == [
        ("Observation/o-123", True),
        ("Observation/o-456", False),
    ]
    assert answer.entries[1].reason == "REASON_OUTSIDE_COMPARTMENT"
    assert answer.request_id == "f-1"
    body = json.loads(answer.body)
    assert "456" not in answer.body.decode()
    assert "total" not in body
    matches = [entry for entry in body["entry"] if entry["search"]["mode"] == "match"]
    assert [entry["resource"]["id"] for entry in matches] == ["o-123"]
    assert body["entry"][-1]["search"]["mode"] == "outcome"


def test_a_single_foreign_resource_is_a_deny_with_no_body(authz, mint):
    token = mint("patient/Observation.rs", patient="123")
    answer = authz.filter_resources(
        token, "GET", "Observation/o1", response=json.dumps(observation("456"))
    )
    assert answer.allowed is False
    assert answer.reason == "REASON_OUTSIDE_COMPARTMENT"
    assert answer.body is None


def test_a_system_token_gets_the_answer_unread(authz, mint):
    token = mint("system/*.rs")
    raw = json.dumps(searchset(observation("123"), observation("456"))).encode()
    answer = authz.filter_resources(token, "GET", "Observation", response=raw)
    assert answer.allowed and not answer.filtered
    assert answer.entries == () and answer.withheld == 0
    assert answer.body == raw

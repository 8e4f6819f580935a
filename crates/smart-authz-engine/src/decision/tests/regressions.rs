//! Findings of the engine review (fail-open paths), each pinned by a case.

use serde_json::json;

use super::fixtures::*;
use super::harness::*;
use crate::decision::{OperationRule, Reason};

/// The base URL of the FHIR server the cases with a known base decide for.
const BASE: &str = "https://a.example/fhir";

fn known_base(policy: &mut crate::decision::Policy) {
    policy.base_urls = vec![BASE.to_owned()];
}

pub fn cases() -> Vec<Case> {
    vec![
        case(
            S3P,
            "known base: an absolute reference under the server's base is local",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(observation(&format!("{BASE}/Patient/123")))
        .allow(),
        case(
            S3P,
            "known base: another server's Patient/123 is not this server's Patient/123",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(observation("https://b.example/fhir/Patient/123"))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "unknown base: any base reads as local (the configuration names none)",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(observation("https://b.example/fhir/Patient/123"))
        .allow(),
        case(
            S3P,
            "known base: a foreign Patient/456 in the stored version does not let the update name the local one",
        )
        .policy(known_base)
        .scopes("patient/Observation.cru")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(with(
            obs_of("123"),
            "performer",
            json!([reference("https://b.example/fhir/Patient/456")]),
        ))
        .proposed(with(
            obs_of("123"),
            "performer",
            json!([reference("Patient/456")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "known base: a search naming another server's Patient/123 names another patient",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation?subject=https://b.example/fhir/Patient/123")
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "known base: a search naming the patient under the server's own base is the patient",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", &format!("Observation?subject={BASE}/Patient/123"))
        .allow(),
        case(
            S3P,
            "known base: a write naming Patient/456 under any base still writes into another record",
        )
        .policy(known_base)
        .scopes("patient/Observation.cru")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            obs_of("123"),
            "performer",
            json!([reference("https://a.example.internal/fhir/Patient/456")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "create: the new resource may not also land in another patient's compartment",
        )
        .scopes("patient/Observation.cru")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            obs_of("456"),
            "performer",
            json!([reference("Patient/123")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "create: an own Observation performed by another patient writes into that record",
        )
        .scopes("patient/Observation.cru")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            obs_of("123"),
            "performer",
            json!([reference("Patient/456")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "update: moving the subject to another patient is denied even if 123 performs it",
        )
        .scopes("patient/Observation.cru")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(obs_of("123"))
        .proposed(with(
            obs_of("456"),
            "performer",
            json!([reference("Patient/123")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S2,
            "a search that includes types no scope can read says so with an empty list",
        )
        .scopes("patient/Observation.s")
        .patient("123")
        .line("GET", "Observation?_include=Observation:subject")
        .allow()
        .included(&[]),
        case(
            S3P,
            "update: a resource also in another patient's compartment is that patient's record too",
        )
        .scopes("patient/Observation.cru")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(with(
            obs_of("123"),
            "performer",
            json!([reference("Patient/456")]),
        ))
        .proposed(with(
            obs_of("123"),
            "performer",
            json!([reference("Patient/456")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "update: another patient's Observation the patient performed is not theirs to change",
        )
        .scopes("patient/Observation.cru")
        .patient("123")
        .line("PUT", "Observation/1")
        .stored(with(
            obs_of("456"),
            "performer",
            json!([reference("Patient/123")]),
        ))
        .proposed(with(
            obs_of("456"),
            "performer",
            json!([reference("Patient/123")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "delete: a resource also in another patient's compartment is denied",
        )
        .scopes("patient/Observation.cruds")
        .patient("123")
        .line("DELETE", "Observation/1")
        .stored(with(
            obs_of("456"),
            "performer",
            json!([reference("Patient/123")]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "delete: a resource of the patient's alone is allowed outright",
        )
        .scopes("patient/Observation.cruds")
        .patient("123")
        .line("DELETE", "Observation/1")
        .stored(obs_of("123"))
        .allow()
        .no_compartment(),
        case(
            S3P,
            "delete without the stored version: the server must refuse one naming another patient",
        )
        .scopes("patient/Observation.cruds")
        .patient("123")
        .line("DELETE", "Observation/1")
        .allow()
        .compartment("Patient/123")
        .excludes_other_patients_via(&["subject", "performer"]),
        case(
            S3P,
            "delete of another Patient linked to the patient is that patient's record",
        )
        .scopes("patient/Patient.cruds")
        .patient("123")
        .line("DELETE", "Patient/456")
        .stored(patient_linked("456", "123"))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "update of another Patient linked to the patient, keeping the link, is denied",
        )
        .scopes("patient/Patient.cruds")
        .patient("123")
        .line("PUT", "Patient/456")
        .stored(patient_linked("456", "123"))
        .proposed(patient_linked("456", "123"))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a conditional delete of Patients may match the patient's own record alone",
        )
        .scopes("patient/Patient.cruds")
        .patient("123")
        .line("DELETE", "Patient?identifier=x")
        .allow()
        .compartment("Patient/123")
        .compartment_params(&["_id"])
        .excludes_other_patients_via(&["link"]),
        case(
            S3P,
            "a conditional patch of Patients may match the patient's own record alone, not one linked to it",
        )
        .scopes("patient/Patient.ud")
        .patient("123")
        .line("PATCH", "Patient?identifier=mrn-456")
        .allow()
        .compartment("Patient/123")
        .compartment_params(&["_id"]),
        case(
            S3P,
            "delete of another Patient is denied even when facts list only the patient's compartment",
        )
        .scopes("patient/Patient.cruds")
        .patient("123")
        .line("DELETE", "Patient/456")
        .stored_facts(facts(&["Patient/123"], &[]))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "patch of another Patient is denied whatever its stored version shows",
        )
        .scopes("patient/Patient.ud")
        .patient("123")
        .line("PATCH", "Patient/456")
        .stored_facts(facts(&["Patient/123"], &[]))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "update of the own Patient without its stored version keeps its links unchecked",
        )
        .scopes("patient/Patient.u")
        .patient("123")
        .line("PUT", "Patient/123")
        .proposed(patient("123"))
        .allow()
        .excludes_other_patients_via(&[]),
        case(
            S3P,
            "update of the own Patient may not add a link to another patient",
        )
        .scopes("patient/Patient.ru")
        .patient("123")
        .line("PUT", "Patient/123")
        .stored(patient("123"))
        .proposed(patient_linked("123", "456"))
        .deny(Reason::OutsideCompartment),
        case(
            S2,
            "$everything never combines a filtered read with an unfiltered search unfiltered",
        )
        .scopes("patient/Observation.r?category=laboratory patient/Observation.s")
        .patient("123")
        .line("GET", "Patient/123/$everything")
        .allow()
        .filters(&[("category", &["laboratory"])]),
        case(S2, "$export keeps the filter of the searching scope")
            .scopes("system/*.r system/Observation.s?category=laboratory")
            .line("GET", "$export?_type=Observation")
            .allow()
            .filters(&[("category", &["laboratory"])]),
        case(
            S3P,
            "a Device read without its stored version carries the not-another-patient constraint",
        )
        .scopes("patient/Device.rs")
        .patient("123")
        .line("GET", "Device/d1")
        .allow()
        .excludes_other_patients_via(&["patient"]),
        case(
            S3P,
            "a Device search carries the not-another-patient constraint",
        )
        .scopes("patient/Device.rs")
        .patient("123")
        .line("GET", "Device?type=x")
        .allow()
        .expect(|decision| {
            let params = &decision.grants[0].exclude_other_patients_via;
            (params == &["patient".to_owned()])
                .then_some(())
                .ok_or(format!("got {params:?}"))
        }),
        case(
            S3P,
            "a read of the checked current version needs no compartment constraint",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(obs_of("123"))
        .allow()
        .no_compartment(),
        case(
            S3P,
            "policy: an instance history keeps the compartment, whatever the current version",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1/_history")
        .stored(obs_of("123"))
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "policy: a vread keeps the compartment, whatever the current version",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1/_history/1")
        .stored(obs_of("123"))
        .allow()
        .compartment("Patient/123"),
        case(
            S4,
            "policy: a history keeps the granular filter, whatever the current version",
        )
        .scopes("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs")
        .patient("123")
        .line("GET", "Observation/1/_history")
        .stored(vital_signs_of("123"))
        .allow()
        .expect(|decision| {
            (!decision.grants[0].filters.is_empty())
                .then_some(())
                .ok_or(format!("the filter was dropped: {decision:?}"))
        }),
        case(
            S3P,
            "a conditional reference written with a base or a slash is still a search",
        )
        .scopes("patient/Observation.crus patient/Patient.rs")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            obs_of("123"),
            "performer",
            json!([
                {"reference": "/Patient?identifier=x"},
                {"reference": "http://other.example.org/fhir/Patient?identifier=x"}
            ]),
        ))
        .deny(Reason::UnsupportedRequest),
        case(
            S3P,
            "a history whose current version is another patient's is denied",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1/_history")
        .stored(obs_of("456"))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a conditional delete whose query names another patient is denied",
        )
        .scopes("patient/Observation.d")
        .patient("123")
        .line("DELETE", "Observation?subject=Patient/456")
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a conditional reference in a written resource is a search patient/ scopes cannot run unconstrained",
        )
        .scopes("patient/Observation.crus patient/Patient.rs")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            obs_of("123"),
            "performer",
            json!([{"reference": "Patient?identifier=http://hospital.example/mrn|999"}]),
        ))
        .deny(Reason::OutsideCompartment),
        case(
            S3S,
            "a conditional reference system/ scopes may search is allowed",
        )
        .scopes("system/Observation.c system/Patient.s")
        .line("POST", "Observation")
        .proposed(observation(
            "Patient?identifier=http://hospital.example/mrn|999",
        ))
        .allow(),
        case(
            S3S,
            "a conditional reference system/ scopes may not search is denied",
        )
        .scopes("system/Observation.c")
        .line("POST", "Observation")
        .proposed(observation(
            "Patient?identifier=http://hospital.example/mrn|999",
        ))
        .deny(Reason::NoMatchingScope),
        case(
            S2,
            "a conditional create's ifNoneExist is decided as a search",
        )
        .scopes("system/Observation.c")
        .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
            "resource": obs_of("123"),
            "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=x|1"}
        }]}))
        .deny(Reason::NoMatchingScope),
        case(
            S2,
            "a conditional create's ifNoneExist passes when the search may run",
        )
        .scopes("system/Observation.cs")
        .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
            "resource": obs_of("123"),
            "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=x|1"}
        }]}))
        .allow(),
        case(
            S3P,
            "a patient's conditional create cannot have its ifNoneExist run unconstrained",
        )
        .scopes("patient/Observation.cs")
        .patient("123")
        .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
            "resource": obs_of("123"),
            "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=x|1"}
        }]}))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a POST search entry is denied: its parameters are in no body the engine sees",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .bundle(json!({"resourceType": "Bundle", "type": "batch", "entry": [{
            "request": {"method": "POST", "url": "Observation/_search?code=x"}
        }]}))
        .deny(Reason::UnsupportedRequest),
        // FHIR R4 http.html §3.1.0.11.1 (Patch) in a Bundle: the entry's resource is the
        // patch, a Binary (JSON Patch) or Parameters (FHIRPath Patch), not what it makes.
        case(S2, "a JSON Patch entry carries a Binary")
            .scopes("system/Observation.u")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "W10="},
                "request": {"method": "PATCH", "url": "Observation/1"}
            }]}))
            .allow(),
        case(S2, "a JSON Patch entry whose Binary wraps its base64 lines")
            .scopes("system/Observation.u")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                    "data": "W1\r\n0= "},
                "request": {"method": "PATCH", "url": "Observation/1"}
            }]}))
            .allow(),
        case(S3P, "a FHIRPath Patch entry under patient/ scopes: what it writes is unseen")
            .scopes("patient/Observation.u")
            .patient("123")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": {"resourceType": "Parameters", "parameter": []},
                "request": {"method": "PATCH", "url": "Observation/1"}
            }]}))
            .allow()
            .entry_expect(0, |decision| {
                every_type_excluded_via(decision, "Observation", &["subject", "performer"])
            }),
        case(S3P, "a JSON Patch entry writing a conditional reference")
            .scopes("patient/Observation.u patient/Patient.rs")
            .patient("123")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                    "data": "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2ZvY3VzIiwidmFsdWUiOlt7InJlZmVyZW5jZSI6IlBhdGllbnQ/aWRlbnRpZmllcj11cm46bXJufDQ1NiJ9XX1d"},
                "request": {"method": "PATCH", "url": "Observation/1"}
            }]}))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a FHIRPath Patch entry writing a conditional reference")
            .scopes("patient/Observation.u patient/Patient.rs")
            .patient("123")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Observation.subject"},
                    {"name": "value", "valueReference": {"reference": "Patient?identifier=x"}}]}]},
                "request": {"method": "PATCH", "url": "Observation/1"}
            }]}))
            .deny(Reason::OutsideCompartment),
        case(S2, "an XML patch in a PATCH entry's Binary is not read")
            .scopes("system/Observation.u")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": {"resourceType": "Binary", "contentType": "application/xml-patch+xml",
                    "data": "PGRpZmY+PGFkZCBzZWw9Ik9ic2VydmF0aW9uIj48Zm9jdXM+PHJlZmVyZW5jZSB2YWx1ZT0iUGF0aWVudD9uYW1lPXgiLz48L2ZvY3VzPjwvYWRkPjwvZGlmZj4="},
                "request": {"method": "PATCH", "url": "Observation/1"}
            }]}))
            .deny(Reason::UnsupportedRequest),
        // A type outside the compartment with no parameter that can point to a Patient,
        // not seen: only its answer shows whose it is, so nothing is left for the server to
        // carry, and the answer must be read (docs/semantics.md, part 2).
        case(S3P, "a Binary read without its stored version leaves its answer to read")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Binary/b1")
            .allow()
            .expect(|decision| {
                (decision.grants.iter().all(|grant| grant.answer_must_be_read)
                    && !decision.is_allowed_outright())
                .then_some(())
                .ok_or_else(|| "every grant leaves the answer to read".to_owned())
            }),
        case(S3P, "a Bundle search leaves its answer to read")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Bundle?type=document")
            .allow()
            .expect(|decision| {
                decision
                    .grants
                    .iter()
                    .all(|grant| grant.answer_must_be_read)
                    .then_some(())
                    .ok_or_else(|| "every grant leaves the answer to read".to_owned())
            }),
        case(S3P, "a Binary read on its stored version is judged outright")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Binary/b1")
            .stored(json!({"resourceType": "Binary", "id": "b1", "contentType": "text/plain",
                "securityContext": {"reference": "Patient/123"}, "data": "aGk="}))
            .allow()
            .expect(|decision| {
                decision
                    .is_allowed_outright()
                    .then_some(())
                    .ok_or_else(|| "nothing left to apply".to_owned())
            }),
        case(S3P, "a create whose conditional reference searches Bundles")
            .scopes("patient/Observation.c patient/Bundle.s")
            .patient("123")
            .line("POST", "Observation")
            .proposed(with(
                without(obs_of("123"), "id"),
                "focus",
                json!([{"reference": "Bundle?composition=Composition/c9"}]),
            ))
            .deny(Reason::OutsideCompartment),
        // A transaction's references to a non-placeholder fullUrl are rewritten to the
        // resource the entry creates: one naming another resource would move them.
        case(S3P, "a create whose fullUrl names the patient")
            .scopes("patient/Observation.cu")
            .patient("123")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "Patient/123", "resource": without(obs_of("123"), "id"),
                 "request": {"method": "POST", "url": "Observation"}},
                {"fullUrl": "urn:uuid:0b1c", "resource": without(obs_of("123"), "id"),
                 "request": {"method": "POST", "url": "Observation"}}
            ]}))
            .deny(Reason::UnsupportedRequest),
        case(S3P, "an update whose fullUrl names another resource of its type")
            .scopes("patient/Observation.cu")
            .patient("123")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "https://fhir.example/r4/Observation/o2", "resource": obs_of("123"),
                 "request": {"method": "PUT", "url": "Observation/1"}}
            ]}))
            .deny(Reason::UnsupportedRequest),
        case(S3P, "fullUrls that name the entry's own resource, or a placeholder")
            .scopes("patient/Observation.cu")
            .patient("123")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "https://fhir.example/r4/Observation/1", "resource": obs_of("123"),
                 "request": {"method": "PUT", "url": "Observation/1"}},
                {"fullUrl": "https://fhir.example/r4/Observation/new1", "resource": without(obs_of("123"), "id"),
                 "request": {"method": "POST", "url": "Observation"}},
                {"fullUrl": "urn:uuid:0b1c", "resource": without(obs_of("123"), "id"),
                 "request": {"method": "POST", "url": "Observation"}}
            ]}))
            .allow(),
        case(S2, "a PATCH entry whose resource is no patch is not read")
            .scopes("system/Observation.u")
            .bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": obs_of("123"),
                "request": {"method": "PATCH", "url": "Observation/1"}
            }]}))
            .deny(Reason::UnsupportedRequest),
        case(
            S3P,
            "the same search entry by GET is allowed",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .bundle(json!({"resourceType": "Bundle", "type": "batch", "entry": [{
            "request": {"method": "GET", "url": "Observation?code=x"}
        }]}))
        .allow(),
        case(
            S3P,
            "a stored Binary whose securityContext is another patient is denied",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Binary/b1")
        .stored(json!({
            "resourceType": "Binary", "id": "b1", "contentType": "application/pdf",
            "securityContext": {"reference": "Patient/456"}
        }))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a stored Binary whose securityContext is the patient is allowed",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Binary/b1")
        .stored(json!({
            "resourceType": "Binary", "id": "b1", "contentType": "application/pdf",
            "securityContext": {"reference": "Patient/123"}
        }))
        .allow(),
        case(
            S3P,
            "a stored document Bundle about another patient is denied",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Bundle/d1")
        .stored(json!({
            "resourceType": "Bundle", "id": "d1", "type": "document",
            "entry": [
                {"resource": {"resourceType": "Composition", "status": "final",
                    "subject": {"reference": "Patient/456"}}},
                {"resource": {"resourceType": "Patient", "id": "456"}}
            ]
        }))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a stored document Bundle that also carries another patient is denied",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Bundle/d1")
        .stored(json!({
            "resourceType": "Bundle", "id": "d1", "type": "document",
            "entry": [
                {"resource": {"resourceType": "Composition", "status": "final",
                    "subject": {"reference": "Patient/123"}}},
                {"resource": {"resourceType": "Patient", "id": "456"}}
            ]
        }))
        .deny(Reason::OutsideCompartment),
        // A resource outside the compartment that names a patient, but not by an id this
        // service can read, may name another (fail closed).
        case(S3P, "a stored Device whose patient is an identifier alone is denied")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/d1")
            .stored(json!({"resourceType": "Device", "id": "d1",
                "patient": {"identifier": {"system": "urn:mrn", "value": "456"}, "display": "Jane Roe"}}))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a stored Device whose patient is a urn: reference is denied")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/d1")
            .stored(json!({"resourceType": "Device", "id": "d1",
                "patient": {"reference": "urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"}}))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a stored Binary whose securityContext is a contained Patient is denied")
            .scopes("patient/Binary.rs")
            .patient("123")
            .line("GET", "Binary/b1")
            .stored(json!({"resourceType": "Binary", "id": "b1", "contentType": "application/pdf",
                "contained": [{"resourceType": "Patient", "id": "p", "name": [{"family": "Roe"}]}],
                "securityContext": {"reference": "#p"}}))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a profile of Patient names no patient")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "StructureDefinition/p")
            .stored(json!({"resourceType": "StructureDefinition", "id": "p", "url": "http://x/p",
                "name": "P", "status": "active", "kind": "resource", "abstract": false,
                "type": "Patient", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient"}))
            .allow(),
        case(S3P, "a Library's data requirement on Patient names no patient")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Library/l")
            .stored(json!({"resourceType": "Library", "id": "l", "status": "active",
                "type": {"text": "logic-library"},
                "dataRequirement": [{"type": "Patient"}, {"type": "Observation"}]}))
            .allow(),
        case(S3P, "a Patient reference by identifier alone, anywhere, may be another patient")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Library/l")
            .stored(json!({"resourceType": "Library", "id": "l", "status": "active",
                "type": {"text": "x"},
                "subjectReference": {"type": "Patient", "identifier": {"value": "456"}}}))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a Patient reference by display alone, with a primitive extension")
            .scopes("patient/Binary.rs")
            .patient("123")
            .line("GET", "Binary/b1")
            .stored(json!({"resourceType": "Binary", "id": "b1", "contentType": "application/pdf",
                "securityContext": {"type": "Patient", "display": "Jane Roe",
                    "_display": {"extension": [{"url": "http://x", "valueString": "y"}]}}}))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a stored Device naming its owner by identifier alone is allowed")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/d1")
            .stored(json!({"resourceType": "Device", "id": "d1",
                "owner": {"identifier": {"system": "urn:org", "value": "acme"}},
                "patient": {"reference": "Patient/123"}}))
            .allow(),
        // Trimmed resources brought by a search hide whose they are (§3).
        case(S3P, "an include with _summary on a compartment type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Observation?_include=Observation:focus&_summary=text")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a revinclude with _elements on a compartment type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Patient?_revinclude=Provenance:target&_elements=id")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "an include with _summary where no scope reads outside the compartment")
            .scopes("patient/Observation.rs patient/Patient.rs")
            .patient("123")
            .line("GET", "Observation?_include=Observation:patient&_summary=true")
            .allow(),
        case(S3P, "_contained=false with _elements brings nothing")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Observation?_contained=false&_elements=id")
            .allow(),
        case(S3P, "a stored Device marked trimmed (SUBSETTED) is denied")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/d1")
            .stored(json!({"resourceType": "Device", "id": "d1",
                "meta": {"tag": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}]}}))
            .deny(Reason::OutsideCompartment),
        case(S3P, "_summary without includes on a compartment type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Observation?_summary=text")
            .allow(),
        case(S3P, "an include with _summary=count, which brings no resources")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Observation?_include=Observation:focus&_summary=count")
            .allow(),
        case(
            S5,
            "Device facts naming another patient through a search value are denied",
        )
        .scopes("patient/Device.rs")
        .patient("123")
        .line("GET", "Device/d1")
        .stored_facts(facts(&[], &[("patient", "Patient/456")]))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a subject nested under another reference path is no member",
        )
        .scopes("patient/Observation.c")
        .patient("123")
        .line("POST", "Observation")
        .proposed(observation("Group/1/Patient/123"))
        .deny(Reason::OutsideCompartment),
        case(S3P, "dot segments never make a reference a member")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .proposed(observation("Patient/../Patient/123"))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a made-up choice element is no compartment link")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .proposed(json!({
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subjectReference": {"reference": "Patient/123"}
            }))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "grants of a multi-type search keep each type's compartment parameters",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "?_type=Patient,Observation")
        .allow()
        .expect(|decision| {
            for grant in &decision.grants {
                let mixed = grant.compartment_params.contains(&"_id".to_owned())
                    && grant.compartment_params.contains(&"subject".to_owned());
                if mixed {
                    return Err(format!("one grant mixes types' parameters: {grant:?}"));
                }
            }
            Ok(())
        }),
        case(S3U, "an empty fhirUser is no user identity")
            .scopes("user/Observation.rs")
            .fhir_user("")
            .line("GET", "Observation/1")
            .deny(Reason::MissingUserIdentity),
        case(S3P, "an empty patient claim is no patient context")
            .scopes("patient/Observation.rs")
            .patient("")
            .line("GET", "Observation/1")
            .deny(Reason::MissingPatientContext),
        case(
            S2,
            "a configured write operation on a non-compartment type is a write",
        )
        .policy(|policy| {
            policy.operations.insert(
                "meta-add".into(),
                OperationRule::Permissions {
                    letters: "u".into(),
                },
            );
        })
        .scopes("patient/*.u")
        .patient("123")
        .line("POST", "Practitioner/1/$meta-add")
        .deny(Reason::OutsideCompartment),
        case(S1, "a DomainResource parameter is unknown on Binary")
            .scopes("system/Binary.rs?_text=y")
            .line("GET", "Binary/1")
            .deny(Reason::NoMatchingScope)
            .ignored(&["system/Binary.rs?_text=y"]),
        case(
            S3P,
            "a search over two types keeps each type's not-another-patient parameters",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "?_type=Practitioner,Device")
        .allow()
        .expect(|decision| every_type_excluded_via(decision, "Device", &["patient"])),
        case(
            S3P,
            "types excluded through other parameters are not merged into one grant",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "?_type=Device,Practitioner")
        .allow()
        .expect(|decision| {
            every_type_excluded_via(decision, "Device", &["patient"])?;
            every_type_excluded_via(decision, "Practitioner", &[])
        }),
        case(
            S3P,
            "a conditional update of a Patient could create one: denied under patient/ scopes",
        )
        .scopes("patient/Patient.cu")
        .patient("123")
        .line("PUT", "Patient?identifier=http://x|new")
        .proposed(json!({
            "resourceType": "Patient",
            "link": [{"other": {"reference": "Patient/123"}, "type": "seealso"}]
        }))
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a conditional update of a Patient without its new version is denied too",
        )
        .scopes("patient/Patient.u")
        .patient("123")
        .line("PUT", "Patient?_id=123")
        .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "facts do not show a Device points to no other patient: the constraint stays",
        )
        .scopes("patient/Device.rs")
        .patient("123")
        .line("GET", "Device/d1")
        .stored_facts(facts(&["Device/d1"], &[]))
        .allow()
        .expect(|decision| every_type_excluded_via(decision, "Device", &["patient"])),
        case(
            S3P,
            "a type outside the compartment whose patient reference cannot be read is denied",
        )
        .scopes("patient/Device.rs")
        .patient("123")
        .line("GET", "Device/d1")
        .stored(json!({
            "resourceType": "Device",
            "id": "d1",
            "patient": { "reference": "/Patient/456" },
        }))
        .deny(Reason::OutsideCompartment),
        case(S3P, "nor in a lower-case spelling")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device/d1")
            .stored(json!({
                "resourceType": "Device",
                "id": "d1",
                "patient": { "reference": "patient/456" },
            }))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "empty facts do not show it either",
        )
        .scopes("patient/Device.rs")
        .patient("123")
        .line("GET", "Device/d1")
        .stored_facts(facts(&[], &[]))
        .allow()
        .expect(|decision| every_type_excluded_via(decision, "Device", &["patient"])),
        case(
            S3P,
            "a trimmed answer of a type outside the compartment could hide its patient",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Task?_elements=description,status")
        .deny(Reason::UnsupportedRequest),
        case(S3P, "_summary=true trims as _elements does")
            .scopes("patient/Binary.r")
            .patient("123")
            .line("GET", "Binary/b1?_summary=true")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "_summary=count returns no resource to trim")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Task?_summary=count")
            .allow(),
        case(
            S3P,
            "a search value that is no readable reference could name another patient",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation?subject=patient/456")
        .deny(Reason::OutsideCompartment),
        case(S3P, "a trailing slash is no readable reference either")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?subject=Patient/456/")
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a write whose reference to a patient this service cannot read is denied",
        )
        .scopes("patient/Observation.c")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            observation("Patient/123"),
            "performer",
            json!([{"reference": "/Patient/456"}]),
        ))
        .deny(Reason::OutsideCompartment),
        case(S3P, "so is one in a lower-case spelling")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .proposed(with(
                observation("Patient/123"),
                "performer",
                json!([{"reference": "patient/456"}]),
            ))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "so is one a where(resolve() is Patient) parameter would drop (Condition.subject)",
        )
        .scopes("patient/Condition.c")
        .patient("123")
        .line("POST", "Condition")
        .proposed(json!({
            "resourceType": "Condition",
            "subject": { "reference": "patient/456" },
            "asserter": { "reference": "Patient/123" },
        }))
        .deny(Reason::OutsideCompartment),
        case(S3P, "and in a leading-slash spelling")
            .scopes("patient/Condition.c")
            .patient("123")
            .line("POST", "Condition")
            .proposed(json!({
                "resourceType": "Condition",
                "subject": { "reference": "/Patient/456" },
                "asserter": { "reference": "Patient/123" },
            }))
            .deny(Reason::OutsideCompartment),
        case(
            S3P,
            "a readable reference to another type there is no patient's (a Group subject)",
        )
        .scopes("patient/Condition.c")
        .patient("123")
        .line("POST", "Condition")
        .proposed(json!({
            "resourceType": "Condition",
            "subject": { "reference": "Group/g1" },
            "asserter": { "reference": "Patient/123" },
        }))
        .allow(),
        case(S3P, "a contained performer names nobody")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .proposed(with(
                with(
                    observation("Patient/123"),
                    "performer",
                    json!([{"reference": "#pr1"}]),
                ),
                "contained",
                json!([{"resourceType": "Practitioner", "id": "pr1"}]),
            ))
            .allow(),
        case(S3P, "a readable reference to another type names no patient")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?subject=Group/7")
            .allow()
            .compartment("Patient/123"),
        case(
            S3P,
            "a POST search's unread body may trim a type outside the compartment",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("POST", "Task/_search?status=ready")
        .deny(Reason::UnsupportedRequest),
        case(S3P, "or any type, searched at system level")
            .scopes("patient/*.rs")
            .patient("123")
            .line("POST", "_search?_type=Task")
            .deny(Reason::UnsupportedRequest),
        case(
            S3P,
            "a POST search of a compartment type is decided for its answer",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("POST", "Observation/_search")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "a trimmed Observation is no risk: membership must still be shown",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation?_elements=code")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "a search of every type cannot trim: a resource outside the compartment could hide its patient",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "?_elements=id")
        .deny(Reason::UnsupportedRequest),
        case(S3P, "nor ask for summaries of every type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("POST", "_search?_summary=true")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a count of every type trims nothing")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_summary=count")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "listing compartment types in _type allows trimming")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_type=Observation,Condition&_elements=id")
            .allow(),
        case(
            S3P,
            "the compartment's own search of every type holds only its members",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Patient/123/*?_elements=id")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "a policy keeping patient/ scopes from other types lets every type trim",
        )
        .policy(|policy| {
            policy.non_compartment_types = crate::decision::NonCompartmentAccess::Deny;
        })
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "?_elements=id")
        .allow(),
        case(
            S3P,
            "a link given as itself and as a choice element is read both ways",
        )
        .r5()
        .scopes("patient/NutritionIntake.c")
        .patient("123")
        .line("POST", "NutritionIntake")
        .proposed(json!({
            "resourceType": "NutritionIntake",
            "status": "completed",
            "subject": reference("Patient/123"),
            "reported": reference("Patient/123"),
            "reportedReference": reference("Patient/456")
        }))
        .deny(Reason::OutsideCompartment),
        case(S3P, "a link given twice is refused even when both name the patient's own")
            .r5()
            .scopes("patient/NutritionIntake.c")
            .patient("123")
            .line("POST", "NutritionIntake")
            .proposed(json!({
                "resourceType": "NutritionIntake",
                "status": "completed",
                "subject": reference("Patient/123"),
                "reportedBoolean": true,
                "reportedReference": reference("Patient/123")
            }))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a link given once as a choice element is read")
            .r5()
            .scopes("patient/NutritionIntake.c")
            .patient("123")
            .line("POST", "NutritionIntake")
            .proposed(json!({
                "resourceType": "NutritionIntake",
                "status": "completed",
                "subject": reference("Patient/123"),
                "reportedReference": reference("Patient/123")
            }))
            .allow(),
        case(
            S4,
            "a filtered element given twice cannot be matched: the server may keep the other",
        )
        .scopes("patient/Observation.c?value-concept=http://snomed.info/sct|260385009")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            with(
                without(obs_of("123"), "valueQuantity"),
                "value",
                json!({"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}),
            ),
            "valueCodeableConcept",
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}),
        ))
        .deny(Reason::FilterMismatch),
        case(
            S4,
            "a filtered choice element given without its type cannot be matched: a server drops it",
        )
        .scopes("patient/Observation.c?value-concept=http://snomed.info/sct|260385009")
        .patient("123")
        .line("POST", "Observation")
        .proposed(with(
            without(obs_of("123"), "valueQuantity"),
            "value",
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}),
        ))
        .deny(Reason::FilterMismatch),
        case(S3P, "a link given as a choice element without its type is refused")
            .r5()
            .scopes("patient/NutritionIntake.c")
            .patient("123")
            .line("POST", "NutritionIntake")
            .proposed(json!({
                "resourceType": "NutritionIntake",
                "status": "completed",
                "subject": reference("Patient/123"),
                "reported": reference("Patient/123")
            }))
            .deny(Reason::OutsideCompartment),
        case(S4, "a filtered choice element given once is matched")
            .scopes("patient/Observation.c?value-concept=http://snomed.info/sct|260385009")
            .patient("123")
            .line("POST", "Observation")
            .proposed(with(
                without(obs_of("123"), "valueQuantity"),
                "valueCodeableConcept",
                json!({"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}),
            ))
            .allow(),
        // A search's parameters that read other resources (docs/semantics.md, "Parameters
        // that reach other resources"): on a type the compartment does not confine they
        // question other patients' records, and nothing in the answer shows it.
        case(S3P, "a reverse chain on a type outside the compartment naming another patient")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Medication?_has:MedicationRequest:medication:patient=Patient/456")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a reverse chain on a type outside the compartment, even naming no one")
            .scopes("patient/Location.s")
            .patient("123")
            .line("GET", "Location?_has:Encounter:location:status=finished")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a reverse chain on a search of every type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_has:MedicationRequest:medication:patient=Patient/456")
            .deny(Reason::UnsupportedRequest),
        // No parameter every type shares is a reference: a chain's first link is some types'
        // own, which a server may resolve on each of them (Slot's `schedule`).
        case(S3P, "a chain on a search of every type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?schedule.actor=Patient/456")
            .deny(Reason::UnsupportedRequest),
        // A type modifier the link's targets do not spell as written: a server may read
        // `:schedule` as Schedule, so the chain may reach the patients it names.
        case(S3P, "a chain through a type modifier in lower case")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Slot?schedule:schedule.actor=Patient/456")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain through a type modifier on a link to any type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "MessageHeader?focus:observation.subject=Patient/456")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain through a type modifier the link targets is read")
            .scopes("patient/Location.rs")
            .patient("123")
            .line("GET", "Location?partof:Location.name=x")
            .allow(),
        case(S3P, "a Patient type modifier in lower case names a patient")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?subject:patient=456")
            .deny(Reason::OutsideCompartment),
        // A patch's document may write a conditional reference the server resolves when
        // it stores the patched resource (docs/semantics.md, conditional references).
        case(S3P, "a JSON Patch adding a conditional reference")
            .scopes("patient/Observation.u patient/Patient.rs")
            .patient("123")
            .line("PATCH", "Observation/o1")
            .patch_document(json!([{ "op": "add", "path": "/focus",
                "value": [{ "reference": "Patient?identifier=urn:mrn|456" }] }]))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a JSON Patch writing a conditional reference as a string")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PATCH", "Observation/o1")
            .patch_document(json!([{ "op": "replace", "path": "/performer/0/reference",
                "value": "https://other.example/fhir/Patient?identifier=urn:mrn|456" }]))
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a FHIRPath Patch adding a conditional reference")
            .scopes("patient/Observation.u patient/Patient.rs")
            .patient("123")
            .line("PATCH", "Observation/o1")
            .patch_document(json!({ "resourceType": "Parameters", "parameter": [{
                "name": "operation", "part": [
                    { "name": "type", "valueCode": "add" },
                    { "name": "path", "valueString": "Observation" },
                    { "name": "name", "valueString": "focus" },
                    { "name": "value", "valueReference": { "reference": "Patient?name=smith" } }
                ] }] }))
            .deny(Reason::OutsideCompartment),
        // Read as HAPI reads inline match URLs: slashes dropped, the type without case.
        case(S3P, "a JSON Patch writing a conditional reference with a slash before its query")
            .scopes("patient/Observation.u patient/Patient.rs")
            .patient("123")
            .line("PATCH", "Observation/o1")
            .patch_document(json!([{ "op": "replace", "path": "/subject/reference",
                "value": "Patient/?identifier=urn:mrn|456" }]))
            .deny(Reason::OutsideCompartment),
        case(S3P, "a FHIRPath Patch writing a conditional reference in lower case")
            .scopes("patient/Observation.u patient/Patient.rs")
            .patient("123")
            .line("PATCH", "Observation/o1")
            .patch_document(json!({ "resourceType": "Parameters", "parameter": [{
                "name": "operation", "part": [
                    { "name": "type", "valueCode": "add" },
                    { "name": "path", "valueString": "Observation.subject" },
                    { "name": "name", "valueString": "reference" },
                    { "name": "value", "valueString": "patient?name=smith" }
                ] }] }))
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a JSON Patch without a conditional reference")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PATCH", "Observation/o1")
            .patch_document(json!([{ "op": "replace", "path": "/status", "value": "amended" },
                { "op": "add", "path": "/note/0/text", "value": "Is this a Patient? Yes" }]))
            .allow(),
        case(S3S, "a JSON Patch adding a conditional reference under system/ scopes")
            .scopes("system/Observation.u system/Patient.s")
            .line("PATCH", "Observation/o1")
            .patch_document(json!([{ "op": "add", "path": "/focus",
                "value": [{ "reference": "Patient?identifier=urn:mrn|456" }] }]))
            .allow(),
        case(S3P, "a search of every type naming another patient through a :Patient modifier")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?subject:Patient=456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "a search of every type naming the patient through a :Patient modifier")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?subject:patient=123")
            .allow(),
        case(S3P, "a chain of seven references")
            .scopes("patient/Location.rs")
            .patient("123")
            .line("GET", "Location?partof.partof.partof.partof.partof.partof.partof.name=x")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain as long as a request line may be, refused without being followed")
            .scopes("patient/Location.rs")
            .patient("123")
            .line("GET", &format!("Location?{}name=x", "partof.".repeat(2_000)))
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain of six references is read")
            .scopes("patient/Location.rs")
            .patient("123")
            .line("GET", "Location?partof.partof.partof.partof.partof.partof.name=x")
            .allow(),
        case(S3P, "a chain on a search of every type, even naming no one")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?subject.name=peter")
            .deny(Reason::UnsupportedRequest),
        // A parameter the version does not define (a server's own SearchParameter) still
        // names a patient by a literal reference.
        case(S3P, "an unknown parameter naming another patient on a type outside the compartment")
            .scopes("patient/Practitioner.rs")
            .patient("123")
            .line("GET", "Practitioner?patient=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "an unknown parameter naming another patient, the type in _type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_type=Practitioner&patient=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "an unknown parameter naming another patient by an absolute reference")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?my-patient=https://ehr.example/fhir/Patient/456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "a chain through a parameter the version does not define, outside the compartment")
            .scopes("patient/Practitioner.rs")
            .patient("123")
            .line("GET", "Practitioner?my-patient.name=Smith")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain ending in a reverse chain, outside the compartment")
            .scopes("patient/PractitionerRole.rs")
            .patient("123")
            .line("GET", "PractitionerRole?practitioner._has:Observation:performer:patient=Patient/456")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "an unknown parameter naming the patient in context")
            .scopes("patient/Practitioner.rs")
            .patient("123")
            .line("GET", "Practitioner?patient=Patient/123")
            .allow(),
        case(S3P, "an unknown parameter with a bare id or a URL names no patient")
            .scopes("patient/Practitioner.rs")
            .patient("123")
            .line("GET", "Practitioner?custom=456&other=http://example.org/codes|x")
            .allow(),
        case(S3P, "a tag with a URL system on a search of every type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_tag=http://example.org/tags|x")
            .allow(),
        case(S3P, "a reverse chain listing an outside type in _type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_type=Practitioner&_has:Observation:performer:subject=Patient/456")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a reverse chain on a compartment type is confined by the compartment")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line("GET", "Patient?_has:Observation:patient:code=1234-5")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "a reverse chain on a compartment type may not name another patient")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?_has:Provenance:target:agent=Patient/456")
            .deny(Reason::OutsideCompartment),
        case(S3P, "a nested reverse chain is read to its last parameter")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line(
                "GET",
                "Patient?_has:Observation:patient:_has:AuditEvent:entity:agent=Patient/456",
            )
            .deny(Reason::OutsideCompartment),
        case(S3P, "a reverse chain naming the patient in context")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?_has:Provenance:target:agent=Patient/123")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "a reverse chain through an unknown type")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line("GET", "Patient?_has:Nope:patient:code=1")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a reverse chain cut short")
            .scopes("patient/Patient.rs")
            .patient("123")
            .line("GET", "Patient?_has:Observation:patient=1")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "_list on a type outside the compartment")
            .scopes("patient/Medication.rs")
            .patient("123")
            .line("GET", "Medication?_list=List/l9")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a named query on a type outside the compartment")
            .scopes("patient/Medication.rs")
            .patient("123")
            .line("GET", "Medication?_query=prescribed-to&patient=456")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a named query on a search of every type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_query=recent")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a named query on a compartment type is confined by the compartment")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?_query=recent")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "_list on a compartment type is confined by the compartment")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?_list=List/l9")
            .allow()
            .compartment("Patient/123"),
        case(S3P, "a chain on an outside type through a reference to a patient")
            .scopes("patient/Device.rs")
            .patient("123")
            .line("GET", "Device?patient.name=Smith")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain through an outside type that points to patients")
            .scopes("patient/DeviceMetric.rs")
            .patient("123")
            .line("GET", "DeviceMetric?source.patient=Patient/456")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain whose every step stays outside the compartment")
            .scopes("patient/PractitionerRole.rs")
            .patient("123")
            .line("GET", "PractitionerRole?location.organization.name=x")
            .allow(),
        case(S3P, "R5 _in on a type outside the compartment")
            .r5()
            .scopes("patient/Medication.rs")
            .patient("123")
            .line("GET", "Medication?_in=List/l9")
            .deny(Reason::UnsupportedRequest),
        case(S3P, "a chain on an outside type that stays outside the compartment")
            .scopes("patient/PractitionerRole.rs")
            .patient("123")
            .line("GET", "PractitionerRole?practitioner.name=Smith")
            .allow(),
        case(S3P, "_filter cannot be read, so it is refused")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?_filter=subject%20eq%20Patient/456")
            .deny(Reason::UnsupportedRequest),
        case(S3U, "user/ scopes leave reverse chains to the user's permissions")
            .scopes("user/Medication.rs")
            .fhir_user("Practitioner/7")
            .line("GET", "Medication?_has:MedicationRequest:medication:patient=Patient/456")
            .allow(),
        case(
            S3P,
            "another compartment's search of every type, trimmed, may hide another patient",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Practitioner/pr7/*?_elements=event,source")
        .deny(Reason::UnsupportedRequest),
        case(S3P, "another compartment's search of every type, summarised")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Device/d1/*?_summary=true")
            .deny(Reason::UnsupportedRequest),
        // Writes decided without their new version, and operations whose answer the check of
        // answers cannot judge (second review).
        case(S3P, "a patch of the patient's own record, its result unseen")
            .scopes("patient/Patient.u")
            .patient("123")
            .line("PATCH", "Patient/123")
            .allow()
            .expect(|decision| every_type_excluded_via(decision, "Patient", &["link"])),
        case(S3P, "a patch of the patient's Observation, its result unseen")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PATCH", "Observation/1")
            .stored(obs_of("123"))
            .allow()
            .compartment("Patient/123")
            .expect(|decision| {
                every_type_excluded_via(decision, "Observation", &["subject", "performer"])
            }),
        case(S3P, "a create decided on its request line alone")
            .scopes("patient/Observation.c")
            .patient("123")
            .line("POST", "Observation")
            .allow()
            .compartment("Patient/123")
            .expect(|decision| {
                every_type_excluded_via(decision, "Observation", &["subject", "performer"])
            }),
        case(S3P, "an update whose new version was checked carries no exclusion")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(obs_of("123"))
            .allow()
            .expect(|decision| every_type_excluded_via(decision, "Observation", &[])),
        case(
            S2,
            "$validate on an instance outside the compartment, its stored version unread",
        )
        .scopes("patient/Binary.r")
        .patient("123")
        .line("GET", "Binary/b1/$validate?mode=delete")
        .deny(Reason::UnsupportedRequest),
        case(
            S2,
            "$validate on an instance outside the compartment, its stored version read",
        )
        .scopes("patient/Binary.r")
        .patient("123")
        .line("GET", "Binary/b1/$validate?mode=delete")
        .stored(json!({"resourceType": "Binary", "id": "b1", "contentType": "text/plain"}))
        .allow(),
        case(S2, "$everything trimmed could hide whose a referenced resource is")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Patient/123/$everything?_elements=id")
            .deny(Reason::UnsupportedRequest),
        case(S2, "$everything whole")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Patient/123/$everything")
            .allow(),
        case(S3P, "another compartment's search of every type, untrimmed")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Practitioner/pr7/*")
            .allow()
            .compartment("Patient/123"),
        // An absolute `patient` (or fallback `fhirUser`) names a patient of the server at its
        // base; with the server's base known, another server's Patient/123 is not this one's.
        case(
            S3P,
            "known base: a patient claim under another base gives no patient context",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("https://b.example/fhir/Patient/123")
        .line("GET", "Observation?code=2345-7")
        .deny(Reason::MissingPatientContext)
        .expect(|decision| {
            decision
                .message
                .contains("patient of another FHIR server")
                .then_some(())
                .ok_or_else(|| format!("message {:?}", decision.message))
        })
        .ignored(&["patient/Observation.rs"]),
        case(
            S3P,
            "known base: a patient claim under another base, the stored resource its own",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("https://b.example/fhir/Patient/123")
        .line("GET", "Observation/1")
        .stored(obs_of("123"))
        .deny(Reason::MissingPatientContext),
        case(
            S3P,
            "known base: a patient claim under the server's base is its patient",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient(&format!("{BASE}/Patient/123"))
        .line("GET", "Observation?code=2345-7")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "known base: a relative or bare patient claim needs no base",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("Patient/123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "known base: a bare patient id needs no base",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "unknown base: an absolute patient claim under any base is read by its tail",
        )
        .scopes("patient/Observation.rs")
        .patient("https://b.example/fhir/Patient/123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "known base: a patient claim under another spelling of the base is refused, not guessed",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .patient("https://A.example/fhir/Patient/123")
        .line("GET", "Observation?code=2345-7")
        .deny(Reason::MissingPatientContext),
        case(
            S3P,
            "known base: a Patient fhirUser under another base supplies no patient",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .fhir_user("https://b.example/fhir/Patient/123")
        .line("GET", "Observation?code=2345-7")
        .deny(Reason::MissingPatientContext),
        case(
            S3P,
            "known base: a Patient fhirUser under the server's base supplies the patient",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs")
        .fhir_user(&format!("{BASE}/Patient/123"))
        .line("GET", "Observation?code=2345-7")
        .allow()
        .compartment("Patient/123"),
        case(
            S3P,
            "known base: a patient of another server leaves system/ scopes granting",
        )
        .policy(known_base)
        .scopes("patient/Observation.rs system/Observation.rs")
        .patient("https://b.example/fhir/Patient/123")
        .line("GET", "Observation?code=2345-7")
        .allow()
        .grant_scopes(&["system/Observation.rs"]),
    ]
}

/// Every grant covering `resource_type` asks the server to exclude other patients through
/// exactly `params`.
fn every_type_excluded_via(
    decision: &crate::decision::Decision,
    resource_type: &str,
    params: &[&str],
) -> Result<(), String> {
    let covering: Vec<_> = decision
        .grants
        .iter()
        .filter(|grant| {
            grant
                .resource_types
                .iter()
                .any(|name| name == resource_type)
        })
        .collect();
    if covering.is_empty() {
        return Err(format!("no grant covers {resource_type}"));
    }
    match covering
        .iter()
        .find(|grant| grant.exclude_other_patients_via != params)
    {
        Some(grant) => Err(format!(
            "{resource_type}: expected exclude_other_patients_via {params:?}, got {:?} in {:?}",
            grant.exclude_other_patients_via, grant.resource_types
        )),
        None => Ok(()),
    }
}

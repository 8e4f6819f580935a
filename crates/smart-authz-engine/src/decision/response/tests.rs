use serde_json::{Value, json};

use super::{EntryMode, ResponseError};
use crate::decision::{Engine, Outcome, Reason};
use crate::fhir::{FhirVersion, parse_request_line};
use crate::smart::TokenContext;

fn token(scope: &str) -> TokenContext {
    TokenContext::from_claims(
        &json!({ "scope": scope, "patient": "123", "fhirUser": "Practitioner/7" }),
        FhirVersion::R4,
    )
    .unwrap()
}

fn filter(scope: &str, line: &str, response: Value) -> super::FilteredResponse {
    let (method, path) = line.split_once(' ').unwrap();
    let request = parse_request_line(method, path).unwrap();
    Engine::default()
        .filter_response(&token(scope), &request, response)
        .unwrap()
}

fn observation(id: &str, patient: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": category,
        }]}],
        "code": { "text": "x" },
        "subject": { "reference": format!("Patient/{patient}") },
    })
}

fn searchset(entries: Vec<(Value, &str)>) -> Value {
    json!({
        "resourceType": "Bundle", "type": "searchset", "total": entries.len(),
        "link": [{ "relation": "self", "url": "https://fhir.example/Observation" }],
        "entry": entries.into_iter().map(|(resource, mode)| json!({
            "fullUrl": format!("https://fhir.example/{}/{}",
                resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap()),
            "resource": resource,
            "search": { "mode": mode },
        })).collect::<Vec<_>>(),
    })
}

/// `Type/id` of every entry resource of `body`, in order.
fn references(body: &Value) -> Vec<String> {
    body["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let resource = &entry["resource"];
                    format!(
                        "{}/{}",
                        resource["resourceType"].as_str().unwrap_or("?"),
                        resource["id"].as_str().unwrap_or("-")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_search_keeps_the_patients_entries_and_says_what_was_withheld() {
    let no_patient = json!({ "resourceType": "Observation", "id": "o3", "status": "final",
        "code": { "text": "x" } });
    let answer = searchset(vec![
        (observation("o1", "123", "laboratory"), "match"),
        (observation("o2", "456", "laboratory"), "match"),
        (no_patient, "match"),
    ]);
    let filtered = filter("patient/Observation.rs", "GET Observation", answer);
    assert_eq!(filtered.outcome, Outcome::Allow);
    assert!(filtered.filtered);
    assert_eq!(filtered.withheld, 2);
    assert_eq!(
        references(&filtered.body),
        ["Observation/o1", "OperationOutcome/-"]
    );
    let kept: Vec<bool> = filtered.entries.iter().map(|entry| entry.kept).collect();
    assert_eq!(kept, [true, false, false]);
    assert_eq!(filtered.entries[1].reason, Reason::OutsideCompartment);
    assert_eq!(
        filtered.entries[1].reference.as_deref(),
        Some("Observation/o2")
    );
    assert_eq!(filtered.entries[2].reason, Reason::OutsideCompartment);
    // The count of matches would tell how many resources of others exist.
    assert!(filtered.body.get("total").is_none());
    let outcome = &filtered.body["entry"][1];
    assert_eq!(outcome["search"]["mode"], "outcome");
    assert_eq!(outcome["resource"]["issue"][0]["code"], "suppressed");
    // That entries were withheld, never how many: the count of other patients' matches.
    let diagnostics = outcome["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap();
    assert!(
        diagnostics.starts_with("entries were withheld"),
        "{diagnostics}"
    );
    assert!(!diagnostics.contains('2'), "{diagnostics}");
    // Everything else of the Bundle is as the server wrote it.
    assert_eq!(filtered.body["link"][0]["relation"], "self");
    assert_eq!(filtered.body["type"], "searchset");
}

#[test]
fn nothing_withheld_leaves_the_bundle_as_it_was() {
    let answer = searchset(vec![(observation("o1", "123", "laboratory"), "match")]);
    let filtered = filter("patient/Observation.rs", "GET Observation", answer.clone());
    assert_eq!(filtered.withheld, 0);
    assert!(!filtered.changed());
    assert_eq!(filtered.body, answer);
}

#[test]
fn included_resources_pass_only_as_reads_of_them() {
    let practitioner = json!({ "resourceType": "Practitioner", "id": "p7" });
    let own = json!({ "resourceType": "Patient", "id": "123" });
    let other = json!({ "resourceType": "Patient", "id": "456" });
    let condition = json!({ "resourceType": "Condition", "id": "c1",
        "subject": { "reference": "Patient/123" } });
    let answer = searchset(vec![
        (observation("o1", "123", "laboratory"), "match"),
        (own, "include"),
        (other, "include"),
        (practitioner, "include"),
        (condition, "include"),
    ]);
    let line = "GET Observation?_include=Observation:subject&_include=Observation:performer";
    let filtered = filter("patient/Observation.rs patient/Patient.r", line, answer);
    assert_eq!(
        references(&filtered.body),
        ["Observation/o1", "Patient/123", "OperationOutcome/-"]
    );
    let modes: Vec<EntryMode> = filtered.entries.iter().map(|entry| entry.mode).collect();
    assert_eq!(modes[1..], [EntryMode::Include; 4]);
    // Patient/456: outside the compartment; Practitioner and Condition: no scope reads them.
    assert_eq!(filtered.entries[2].reason, Reason::OutsideCompartment);
    assert_eq!(filtered.entries[3].reason, Reason::NoMatchingScope);
    assert_eq!(filtered.entries[4].reason, Reason::NoMatchingScope);
}

#[test]
fn granular_filters_are_checked_on_each_entry() {
    let answer = searchset(vec![
        (observation("o1", "123", "vital-signs"), "match"),
        (observation("o2", "123", "laboratory"), "match"),
    ]);
    let scope = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";
    let filtered = filter(scope, "GET Observation", answer);
    assert_eq!(
        references(&filtered.body),
        ["Observation/o1", "OperationOutcome/-"]
    );
    assert_eq!(filtered.entries[1].reason, Reason::FilterMismatch);
}

#[test]
fn a_history_bundle_loses_the_versions_of_another_patient_without_an_outcome_entry() {
    let mut old = observation("o1", "456", "laboratory");
    old["meta"] = json!({ "versionId": "1" });
    let mut current = observation("o1", "123", "laboratory");
    current["meta"] = json!({ "versionId": "2" });
    let answer = json!({
        "resourceType": "Bundle", "type": "history", "total": 3,
        "entry": [
            { "resource": current, "request": { "method": "PUT", "url": "Observation/o1" },
              "response": { "status": "200" } },
            { "resource": old, "request": { "method": "POST", "url": "Observation" },
              "response": { "status": "201" } },
            // A delete has no resource: nothing to judge it by.
            { "request": { "method": "DELETE", "url": "Observation/o9" },
              "response": { "status": "204" } },
        ],
    });
    let filtered = filter(
        "patient/Observation.rs",
        "GET Observation/o1/_history",
        answer,
    );
    assert_eq!(filtered.withheld, 2);
    assert_eq!(references(&filtered.body), ["Observation/o1"]);
    assert_eq!(
        filtered.body["entry"][0]["resource"]["meta"]["versionId"],
        "2"
    );
    assert_eq!(filtered.body["entry"][0]["response"]["status"], "200");
    assert!(filtered.body.get("total").is_none());
    assert_eq!(filtered.entries[1].reason, Reason::OutsideCompartment);
    assert_eq!(filtered.entries[2].reason, Reason::UnsupportedRequest);
}

#[test]
fn a_single_resource_of_another_patient_denies_the_answer() {
    let filtered = filter(
        "patient/Observation.rs",
        "GET Observation/o2",
        observation("o2", "456", "laboratory"),
    );
    assert_eq!(filtered.outcome, Outcome::Deny);
    assert_eq!(filtered.reason, Reason::OutsideCompartment);
    assert_eq!(filtered.body, Value::Null);
    assert!(filtered.changed());

    let own = observation("o1", "123", "laboratory");
    let filtered = filter("patient/Observation.rs", "GET Observation/o1", own.clone());
    assert_eq!(filtered.outcome, Outcome::Allow);
    assert_eq!(filtered.body, own);
    assert!(!filtered.changed());
}

#[test]
fn the_servers_operation_outcomes_pass() {
    let error = json!({ "resourceType": "OperationOutcome", "id": "e1",
        "issue": [{ "severity": "error", "code": "not-found" }] });
    let filtered = filter(
        "patient/Observation.rs",
        "GET Observation/o9",
        error.clone(),
    );
    assert!(filtered.is_allowed());
    assert_eq!(filtered.body, error);

    let answer = searchset(vec![(error, "outcome")]);
    let filtered = filter("patient/Observation.rs", "GET Observation", answer);
    assert_eq!(filtered.withheld, 0);
}

#[test]
fn what_cannot_be_judged_is_dropped() {
    let answer = json!({
        "resourceType": "Bundle", "type": "searchset",
        "entry": [
            "not an object",
            { "resource": { "resourceType": "Observation",
                "subject": { "reference": "Patient/123" } } },
            { "resource": { "resourceType": "Bundle", "id": "b1", "type": "collection",
                "entry": [{ "resource": observation("o2", "456", "laboratory") }] } },
            { "search": { "mode": "match" } },
            { "resource": { "resourceType": "NotAType", "id": "x" } },
        ],
    });
    let filtered = filter("patient/*.rs", "GET Observation", answer);
    assert!(filtered.is_allowed());
    assert_eq!(filtered.withheld, 5);
    assert_eq!(references(&filtered.body), ["OperationOutcome/-"]);
    assert!(filtered.entries.iter().all(|entry| !entry.kept));
}

#[test]
fn a_grant_with_nothing_to_enforce_passes_the_answer_unread() {
    let answer = searchset(vec![(observation("o2", "456", "laboratory"), "match")]);
    for (scope, line) in [
        (
            "system/*.rs",
            "GET Observation?_include=Observation:subject",
        ),
        ("user/Observation.rs", "GET Observation?code=x"),
    ] {
        let filtered = filter(scope, line, answer.clone());
        assert!(filtered.is_allowed(), "{scope}");
        assert!(!filtered.filtered, "{scope}");
        assert_eq!(filtered.body, answer, "{scope}");
    }
    // A user/ grant of one type still has its includes judged: Patient is not readable.
    let with_patient = searchset(vec![
        (observation("o2", "456", "laboratory"), "match"),
        (json!({ "resourceType": "Patient", "id": "456" }), "include"),
    ]);
    let filtered = filter(
        "user/Observation.rs",
        "GET Observation?_include=Observation:subject",
        with_patient,
    );
    assert!(filtered.filtered);
    assert_eq!(
        references(&filtered.body),
        ["Observation/o2", "OperationOutcome/-"]
    );
}

/// A search by POST carries its parameters (an `_include` among them) in a body the answer's
/// faces never see: what it may bring back is unknown, so it is read.
#[test]
fn the_answer_to_a_search_by_post_is_always_read() {
    let with_patient = searchset(vec![
        (observation("o2", "456", "laboratory"), "match"),
        (json!({ "resourceType": "Patient", "id": "456" }), "include"),
    ]);
    let filtered = filter(
        "user/Observation.rs",
        "POST Observation/_search",
        with_patient,
    );
    assert!(filtered.filtered);
    assert_eq!(
        references(&filtered.body),
        ["Observation/o2", "OperationOutcome/-"]
    );
    // Once a face has added the body's parameters, the usual shortcut applies.
    let mut seen = parse_request_line("POST", "Observation/_search").unwrap();
    seen.params_in_body = false;
    let engine = Engine::default();
    let token = token("user/Observation.rs");
    let decision = engine.decide(&token, &seen, None, None);
    assert!(!engine.response_needs_filtering(&token, &seen, &decision));
}

#[test]
fn a_public_endpoint_needs_no_filtering() {
    let capabilities = json!({ "resourceType": "CapabilityStatement", "status": "active" });
    let filtered = filter("", "GET metadata", capabilities.clone());
    assert!(filtered.is_allowed());
    assert!(!filtered.filtered);
    assert_eq!(filtered.body, capabilities);
}

#[test]
fn an_answer_to_a_request_the_token_may_not_make_is_denied_whole() {
    let answer = searchset(vec![(observation("o1", "123", "laboratory"), "match")]);
    let filtered = filter("patient/Condition.rs", "GET Observation", answer);
    assert_eq!(filtered.outcome, Outcome::Deny);
    assert_eq!(filtered.reason, Reason::NoMatchingScope);
    assert!(
        filtered
            .message
            .contains("the request itself is not allowed")
    );
}

#[test]
fn a_read_of_a_bundle_resource_is_judged_as_one_resource() {
    let document = json!({ "resourceType": "Bundle", "id": "d1", "type": "document",
        "entry": [{ "resource": observation("o2", "456", "laboratory") }] });
    // The rule book reads Bundle as a type outside the Patient compartment; its entries are
    // other resources, so under a patient/ grant it cannot be judged: denied.
    let filtered = filter("patient/*.rs", "GET Bundle/d1", document.clone());
    assert_eq!(filtered.outcome, Outcome::Deny);
    assert_eq!(filtered.entries.len(), 1);
    let filtered = filter("system/*.rs", "GET Bundle/d1", document);
    assert!(filtered.is_allowed() && !filtered.filtered);
}

#[test]
fn a_batch_answer_keeps_its_status_entries() {
    let answer = json!({
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [
            { "response": { "status": "201", "location": "Observation/o5/_history/1" } },
            { "resource": observation("o1", "123", "laboratory"),
              "response": { "status": "200" } },
        ],
    });
    let filtered = filter("patient/Observation.cruds", "POST /", answer);
    assert_eq!(filtered.withheld, 0);
    assert!(filtered.entries.iter().all(|entry| entry.kept));
    assert_eq!(filtered.body["entry"].as_array().unwrap().len(), 2);
    // Not a searchset: no search.mode outcome entry (bdl-2).
    assert_eq!(filtered.body["entry"][0]["response"]["status"], "201");
}

/// The app pairs a batch's answers with its requests by position (FHIR R4
/// http.html#transaction-response): a withheld entry keeps its place.
#[test]
fn a_withheld_batch_entry_keeps_its_place_and_status() {
    let answer = json!({
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [
            { "resource": observation("o1", "123", "laboratory"),
              "response": { "status": "200 OK" } },
            { "fullUrl": "https://fhir.example/Observation/o2",
              "resource": observation("o2", "456", "laboratory"),
              "response": { "status": "200 OK", "etag": "W/\"3\"",
                            "lastModified": "2026-01-01T00:00:00Z" } },
            { "resource": observation("o3", "456", "vital-signs"),
              "response": { "status": "201 Created",
                            "location": "Observation/o3/_history/1" } },
            "not an entry",
        ],
    });
    let filtered = filter("patient/Observation.cruds", "POST /", answer);
    assert_eq!(filtered.withheld, 3);
    let entries = filtered.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["resource"]["id"], "o1");
    // The read: its status, no resource, no version of it, and why.
    assert_eq!(
        entries[1],
        json!({ "response": {
            "status": "200 OK",
            "outcome": entries[1]["response"]["outcome"].clone(),
        }})
    );
    let outcome = &entries[1]["response"]["outcome"];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "suppressed");
    // The write was done: it stays reported as done, so the app does not send it again.
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert_eq!(
        entries[2]["response"]["location"],
        "Observation/o3/_history/1"
    );
    assert!(entries[2].get("resource").is_none());
    // Nothing readable about the fourth: a place holder with no status.
    assert!(entries[3]["response"].get("status").is_none());
    assert_eq!(
        entries[3]["response"]["outcome"]["issue"][0]["code"],
        "suppressed"
    );
    assert!(
        !serde_json::to_string(&filtered.body)
            .unwrap()
            .contains("456")
    );
}

#[test]
fn status_entries_count_only_in_the_answer_to_a_batch() {
    // A search answered with a batch-response: its entries without a resource are not
    // statuses of requests the app made, and nothing holds their places.
    let answer = json!({
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [
            { "response": { "status": "200", "location": "Patient/456" } },
            { "resource": observation("o1", "123", "laboratory") },
            { "resource": observation("o2", "456", "laboratory") },
        ],
    });
    let filtered = filter("patient/Observation.rs", "GET Observation", answer);
    assert_eq!(filtered.withheld, 2);
    assert_eq!(references(&filtered.body), ["Observation/o1"]);
}

#[test]
fn an_operation_outcome_with_contained_resources_is_not_passed_unread() {
    let outcome = json!({ "resourceType": "OperationOutcome", "id": "e2",
        "issue": [{ "severity": "error", "code": "processing" }],
        "contained": [observation("o2", "456", "laboratory")] });
    let filtered = filter(
        "patient/Observation.rs",
        "GET Observation",
        searchset(vec![
            (observation("o1", "123", "laboratory"), "match"),
            (outcome.clone(), "outcome"),
        ]),
    );
    assert_eq!(filtered.withheld, 1);
    assert!(
        !serde_json::to_string(&filtered.body)
            .unwrap()
            .contains("456")
    );
    // The single answer, and a batch entry's response.outcome.
    let filtered = filter(
        "patient/Observation.rs",
        "GET Observation/o1",
        outcome.clone(),
    );
    assert_eq!(filtered.outcome, Outcome::Deny);
    let answer = json!({ "resourceType": "Bundle", "type": "batch-response",
        "entry": [{ "response": { "status": "400", "outcome": outcome } }] });
    let filtered = filter("patient/Observation.cruds", "POST /", answer);
    assert_eq!(filtered.withheld, 1);
    assert_eq!(filtered.body["entry"][0]["response"]["status"], "400");
    assert!(
        !serde_json::to_string(&filtered.body)
            .unwrap()
            .contains("456")
    );
}

#[test]
fn malformed_answers_are_errors_never_allows() {
    let engine = Engine::default();
    let request = parse_request_line("GET", "Observation").unwrap();
    let token = token("patient/Observation.rs");
    for (answer, error) in [
        (json!([1]), ResponseError::NotAnObject),
        (json!({ "id": "x" }), ResponseError::MissingResourceType),
        (
            json!({ "resourceType": "Bundle", "type": "searchset",
                "entry": { "resource": observation("o2", "456", "laboratory") } }),
            ResponseError::EntryNotAnArray,
        ),
    ] {
        assert_eq!(
            engine
                .filter_response(&token, &request, answer)
                .unwrap_err(),
            error
        );
    }
}

#[test]
fn a_device_pointing_to_another_patient_is_withheld() {
    // R4 Device is never in the Patient compartment; its `patient` reference still counts.
    let mine = json!({ "resourceType": "Device", "id": "d1",
        "patient": { "reference": "Patient/123" } });
    let theirs = json!({ "resourceType": "Device", "id": "d2",
        "patient": { "reference": "Patient/456" } });
    let answer = searchset(vec![(mine, "match"), (theirs, "match")]);
    let filtered = filter("patient/Device.rs", "GET Device", answer);
    assert_eq!(
        references(&filtered.body),
        ["Device/d1", "OperationOutcome/-"]
    );
}

#[test]
fn a_type_outside_the_compartment_is_read_back_under_patient_scopes() {
    // A Binary names its patient only in `securityContext`, which no search parameter lets
    // the server filter by: the answer is read, and another patient's Binary denied.
    let binary = |patient: &str| {
        json!({ "resourceType": "Binary", "id": "b1", "contentType": "application/pdf",
            "securityContext": { "reference": format!("Patient/{patient}") }, "data": "JVBERi0=" })
    };
    let other = filter("patient/Binary.r", "GET Binary/b1", binary("456"));
    assert!(other.filtered);
    assert_eq!(other.outcome, Outcome::Deny);
    assert_eq!(other.reason, Reason::OutsideCompartment);
    let own = filter("patient/Binary.r", "GET Binary/b1", binary("123"));
    assert!(own.filtered && own.is_allowed());
    // So is a Practitioner, though it rarely names a patient.
    let practitioner = json!({ "resourceType": "Practitioner", "id": "p1",
        "extension": [{ "url": "http://x", "valueReference": { "reference": "Patient/456" } }] });
    let answer = searchset(vec![(practitioner, "match")]);
    let filtered = filter("patient/Practitioner.rs", "GET Practitioner", answer);
    assert!(filtered.filtered);
    assert_eq!(filtered.withheld, 1);
    // Under a user/ scope the FHIR server applies the user's permissions: passed unread.
    let unread = filter("user/Binary.r", "GET Binary/b1", binary("456"));
    assert!(unread.is_allowed() && !unread.filtered);
}

/// A server's answer whose reference is an array reads, to the rules, as no reference: the
/// entry is dropped rather than kept as the patient's.
#[test]
fn an_entry_with_a_reference_that_is_not_a_string_is_dropped() {
    let mut odd = observation("o2", "123", "laboratory");
    odd["performer"] = json!([{ "reference": ["Patient/456"] }]);
    let answer = searchset(vec![
        (observation("o1", "123", "laboratory"), "match"),
        (odd, "match"),
    ]);
    let filtered = filter("patient/Observation.rs", "GET Observation", answer);
    assert_eq!(filtered.withheld, 1);
    assert!(!filtered.entries[1].kept);
    assert!(filtered.entries[0].kept);
}

#[test]
fn a_total_the_answer_does_not_show_is_removed() {
    // `_summary=count`: the count of every match on the server, another patient's included.
    let count = json!({ "resourceType": "Bundle", "type": "searchset", "total": 7 });
    let filtered = filter(
        "patient/Patient.rs",
        "GET Patient?identifier=http://h|999&_summary=count",
        count,
    );
    assert!(filtered.is_allowed());
    assert_eq!(filtered.body.get("total"), None);
    // Nor a count of nothing: kept where a count of something goes, it would tell whether
    // anyone's resources matched.
    let none = json!({ "resourceType": "Bundle", "type": "searchset", "total": 0 });
    let filtered = filter(
        "patient/Observation.rs",
        "GET Observation?code=http://loinc.org|75622-1&_summary=count",
        none,
    );
    assert!(filtered.is_allowed());
    assert_eq!(filtered.body.get("total"), None);
    assert!(filtered.rewritten);
    // A page of a longer search: the other pages are not seen.
    let mut page = searchset(vec![(observation("o1", "123", "laboratory"), "match")]);
    page["total"] = json!(40);
    let filtered = filter("patient/Observation.rs", "GET Observation", page);
    assert_eq!(filtered.withheld, 0);
    assert_eq!(filtered.body.get("total"), None);
    // The total of what the answer shows stays.
    let mut whole = searchset(vec![
        (observation("o1", "123", "laboratory"), "match"),
        (json!({ "resourceType": "Patient", "id": "123" }), "include"),
    ]);
    whole["total"] = json!(1);
    let filtered = filter(
        "patient/Observation.rs patient/Patient.rs",
        "GET Observation?_include=Observation:subject",
        whole,
    );
    assert_eq!(filtered.withheld, 0);
    assert_eq!(filtered.body["total"], json!(1));
    // An included entry the server left without a mode is no match to count.
    let mut unmarked = searchset(vec![(observation("o1", "123", "laboratory"), "match")]);
    unmarked["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "resource": { "resourceType": "Patient", "id": "123" } }));
    unmarked["total"] = json!(2);
    let filtered = filter(
        "patient/Observation.rs patient/Patient.rs",
        "GET Observation?_include=Observation:subject",
        unmarked,
    );
    assert_eq!(filtered.withheld, 0);
    assert_eq!(filtered.body.get("total"), None);
}

/// A `last` link tells the count of every match as `total` would (its page offset); it
/// goes where `total` goes, and the other links stay.
#[test]
fn a_last_link_goes_with_the_total() {
    let mut page = searchset(vec![(observation("o1", "123", "laboratory"), "match")]);
    page["total"] = json!(40);
    page["link"] = json!([
        { "relation": "self", "url": "https://fhir.example/Observation?_count=1" },
        { "relation": "next", "url": "https://fhir.example?_getpages=x&_getpagesoffset=1&_count=1" },
        { "relation": "last", "url": "https://fhir.example?_getpages=x&_getpagesoffset=39&_count=1" },
    ]);
    let filtered = filter(
        "patient/Observation.rs",
        "GET Observation?_count=1",
        page.clone(),
    );
    assert!(filtered.rewritten);
    let relations: Vec<&str> = filtered.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["relation"].as_str().unwrap())
        .collect();
    assert_eq!(relations, ["self", "next"]);
    // A whole answer, its total vouched for: the links stay as they were.
    page["total"] = json!(1);
    let filtered = filter("patient/Observation.rs", "GET Observation?_count=1", page);
    assert_eq!(filtered.body["link"].as_array().unwrap().len(), 3);
}

/// `s` is what a search needs (SMART 2.2 §3.0.2): the matches of a token holding `s`
/// without `r` pass when they are in its compartment and match its filters, as the server
/// should have made them. Included resources still need `r`.
#[test]
fn a_search_under_s_without_r_keeps_its_own_matches() {
    let patient = json!({ "resourceType": "Patient", "id": "123" });
    let answer = searchset(vec![
        (observation("o1", "123", "laboratory"), "match"),
        (observation("o2", "456", "laboratory"), "match"),
        (observation("o3", "123", "vital-signs"), "match"),
        (patient, "include"),
    ]);
    let filtered = filter(
        "patient/Observation.s?category=laboratory patient/Patient.s",
        "GET Observation?_include=Observation:subject",
        answer,
    );
    assert!(filtered.is_allowed(), "{}", filtered.message);
    assert_eq!(
        references(&filtered.body),
        ["Observation/o1", "OperationOutcome/-"]
    );
    assert_eq!(filtered.withheld, 3);
    assert_eq!(filtered.entries[3].mode, EntryMode::Include);
    assert_eq!(filtered.entries[3].reason, Reason::NoMatchingScope);
}

/// `s` grants only what the search could match: its own type, and, when it brings in
/// others, only entries the server marked `match` (an entry without a mode may be an
/// included one).
#[test]
fn s_grants_only_the_matches_of_the_type_searched() {
    let practitioner = json!({ "resourceType": "Practitioner", "id": "p1" });
    let unmarked = json!({
        "resourceType": "Bundle", "type": "searchset",
        "entry": [
            { "resource": observation("o1", "123", "laboratory") },
            { "resource": practitioner },
        ],
    });
    let filtered = filter(
        "patient/Observation.s patient/Practitioner.s",
        "GET Observation?_include=Observation:performer",
        unmarked.clone(),
    );
    // Without a mode, with includes asked for: neither is known to be a match.
    assert_eq!(references(&filtered.body), ["OperationOutcome/-"]);
    // Nor is it for a search by POST whose body, unread, may ask for includes.
    let filtered = filter(
        "patient/Observation.s patient/Practitioner.s",
        "POST Observation/_search",
        unmarked.clone(),
    );
    assert_eq!(references(&filtered.body), ["OperationOutcome/-"]);
    // Without includes, an entry without a mode is a match, of the searched type only.
    let filtered = filter(
        "patient/Observation.s patient/Practitioner.s",
        "GET Observation",
        unmarked,
    );
    assert_eq!(
        references(&filtered.body),
        ["Observation/o1", "OperationOutcome/-"]
    );
    // A system search: the types of `_type`.
    let condition = json!({ "resourceType": "Condition", "id": "c1",
        "subject": { "reference": "Patient/123" } });
    let answer = searchset(vec![
        (observation("o1", "123", "laboratory"), "match"),
        (condition, "match"),
    ]);
    let filtered = filter(
        "patient/Observation.s patient/Condition.s",
        "GET ?_type=Observation",
        answer.clone(),
    );
    assert_eq!(
        references(&filtered.body),
        ["Observation/o1", "OperationOutcome/-"]
    );
    let filtered = filter("patient/*.s", "GET ?_type=Observation,Condition", answer);
    assert_eq!(filtered.withheld, 0, "{:?}", filtered.entries);
}

#[test]
fn a_withheld_batch_entry_keeps_a_location_only_for_what_the_app_created() {
    let answer = json!({
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [
            // A conditional create that found another patient's Observation.
            { "resource": observation("o2", "456", "laboratory"),
              "response": { "status": "200 OK", "location": "Observation/o2/_history/3" } },
        ],
    });
    let filtered = filter("patient/Observation.crs", "POST /", answer);
    let response = &filtered.body["entry"][0]["response"];
    assert_eq!(response["status"], "200 OK");
    assert!(response.get("location").is_none(), "{response}");
}

/// The same conditional create answered `return=minimal`: no resource to judge, so the
/// entry keeps its status and only what the app's own creation shows.
#[test]
fn a_batch_status_entry_keeps_a_location_only_for_what_the_app_created() {
    let answer = json!({
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [
            { "fullUrl": "https://a.example/fhir/Observation/o2",
              "response": { "status": "200 OK", "location": "Observation/o2/_history/3",
                            "etag": "W/\"3\"", "lastModified": "2026-12-01T00:00:00Z",
                            "outcome": { "resourceType": "OperationOutcome", "issue": [{
                                "severity": "information", "code": "informational",
                                "diagnostics": "Resource Observation/o2 matched the condition" }] } } },
            { "response": { "status": "201 Created", "location": "Observation/o9/_history/1",
                            "etag": "W/\"1\"" } },
        ],
    });
    let filtered = filter("patient/Observation.crs", "POST /", answer);
    assert_eq!(filtered.withheld, 0);
    assert!(filtered.rewritten);
    assert_eq!(
        filtered.body["entry"][0],
        json!({ "response": { "status": "200 OK" } })
    );
    assert_eq!(
        filtered.body["entry"][1],
        json!({ "response": { "status": "201 Created", "location": "Observation/o9/_history/1" } })
    );
    // An error is about the app's own request: its outcome stays.
    let error = json!({ "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": "invalid", "diagnostics": "bad code" }] });
    let answer = json!({
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [{ "response": { "status": "400 Bad Request", "outcome": error } }],
    });
    let filtered = filter("patient/Observation.crs", "POST /", answer);
    assert_eq!(filtered.body["entry"][0]["response"]["outcome"], error);
}

#[test]
fn r5_bundle_issues_pass_only_plain() {
    let mut answer = searchset(vec![(observation("o1", "123", "laboratory"), "match")]);
    answer["issues"] = json!({ "resourceType": "OperationOutcome",
        "issue": [{ "severity": "warning", "code": "processing" }],
        "contained": [observation("o2", "456", "laboratory")] });
    let filtered = filter("patient/Observation.rs", "GET Observation", answer.clone());
    assert!(filtered.body.get("issues").is_none());
    assert!(filtered.rewritten);
    answer["issues"]
        .as_object_mut()
        .unwrap()
        .remove("contained");
    let filtered = filter("patient/Observation.rs", "GET Observation", answer);
    assert!(filtered.body.get("issues").is_some());
}

/// `entry_sources` names, for each entry of the filtered body, the answer's entry it is
/// unchanged, or none: the writer copies the server's text of those it names, so an entry
/// named there must be exactly the original one.
#[test]
fn every_entry_named_as_kept_is_the_original_entry() {
    let search = searchset(vec![
        (observation("o1", "123", "laboratory"), "match"),
        (observation("o2", "456", "laboratory"), "match"),
        (json!({ "resourceType": "Patient", "id": "123" }), "include"),
    ]);
    let batch = json!({
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [
            { "response": { "status": "201", "location": "Observation/o5/_history/1" } },
            { "resource": observation("o2", "456", "laboratory"), "response": { "status": "200" } },
            { "resource": observation("o1", "123", "laboratory"), "response": { "status": "200" } },
        ],
    });
    for (line, answer, expected) in [
        (
            "GET Observation?_include=Observation:subject",
            search,
            vec![Some(0), Some(2), None],
        ),
        ("POST /", batch, vec![None, None, Some(2)]),
    ] {
        let filtered = filter(
            "patient/Observation.cruds patient/Patient.r",
            line,
            answer.clone(),
        );
        assert_eq!(filtered.entry_sources, expected, "{line}");
        let written = filtered.body["entry"].as_array().unwrap();
        assert_eq!(written.len(), expected.len());
        for (position, source) in filtered.entry_sources.iter().enumerate() {
            if let Some(source) = source {
                assert_eq!(written[position], answer["entry"][source], "{line}");
            }
        }
    }
}

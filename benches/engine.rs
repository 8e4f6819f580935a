//! The engine's hot paths: scope parsing, one decision, request-line parsing, compartment
//! membership, filtering a search answer. Run with `cargo bench --bench engine`; medians are recorded in README.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark or example stops on a broken set-up"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use smart_authz::decision::Engine;
use smart_authz::fhir::{FhirVersion, Resource, parse_request_line};
use smart_authz::smart::{ScopeSet, TokenContext};

/// Ten scopes of a typical patient-facing app.
const SCOPES: &str = "openid fhirUser launch/patient offline_access patient/Patient.rs \
    patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory \
    patient/Condition.rs patient/MedicationRequest.rs patient/AllergyIntolerance.rs user/Practitioner.rs";

fn token() -> TokenContext {
    TokenContext {
        scopes: std::sync::Arc::new(ScopeSet::parse(SCOPES, FhirVersion::R4)),
        patient: Some("123".into()),
        fhir_user: Some("Patient/123".into()),
        ..TokenContext::default()
    }
}

/// An Observation of about 5 KB: a blood-pressure panel with many components and notes.
fn observation_5kb() -> Value {
    let components: Vec<Value> = (0..24)
        .map(|index| {
            json!({
                "code": {"coding": [{"system": "http://loinc.org", "code": format!("8480-{index}"), "display": "Systolic blood pressure"}]},
                "valueQuantity": {"value": 120 + index, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
            })
        })
        .collect();
    let observation = json!({
        "resourceType": "Observation",
        "id": "blood-pressure",
        "meta": {"lastUpdated": "2026-11-01T09:30:00Z", "tag": [{"system": "http://example.org/tags", "code": "bench"}]},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281"}],
        "basedOn": [{"identifier": {"system": "https://acme.org/identifiers", "value": "1234"}}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": "Patient/123"},
        "encounter": {"reference": "Encounter/enc-1"},
        "effectiveDateTime": "2026-11-01T09:30:00Z",
        "performer": [{"reference": "Practitioner/7"}, {"reference": "Patient/123"}],
        "focus": [{"reference": "Patient/999"}],
        "note": [{"text": "Measured sitting, left arm, after five minutes of rest."}],
        "component": components
    });
    let size = observation.to_string().len();
    assert!(
        (4_500..6_000).contains(&size),
        "the fixture is {size} bytes"
    );
    observation
}

fn benchmarks(criterion: &mut Criterion) {
    criterion.bench_function("parse 10-scope string", |bench| {
        bench.iter(|| ScopeSet::parse(black_box(SCOPES), FhirVersion::R4))
    });

    let engine = Engine::default();
    let token = token();
    let search =
        parse_request_line("GET", "Observation?code=http://loinc.org|8867-4&_count=50").unwrap();
    criterion.bench_function("decide search (cached token)", |bench| {
        bench.iter(|| engine.decide(black_box(&token), black_box(&search), None, None))
    });

    let read = parse_request_line("GET", "Condition/c-1").unwrap();
    let condition = Resource::Json(json!({
        "resourceType": "Condition", "id": "c-1",
        "subject": {"reference": "Patient/123"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}
    }));
    criterion.bench_function("decide read with stored resource", |bench| {
        bench.iter(|| engine.decide(black_box(&token), black_box(&read), Some(&condition), None))
    });

    criterion.bench_function("parse request line", |bench| {
        bench.iter(|| parse_request_line("GET", black_box("Observation?patient=Patient/123&code=http%3A%2F%2Floinc.org%7C8867-4&_count=50")))
    });

    let observation = Resource::Json(observation_5kb());
    criterion.bench_function("patient compartments of a 5 KB Observation", |bench| {
        bench.iter(|| black_box(&observation).patient_compartments(FhirVersion::R4, "Observation"))
    });

    let bytes = observation_5kb().to_string().into_bytes();
    criterion.bench_function("parse + compartments of a 5 KB Observation", |bench| {
        bench.iter(|| {
            let resource = Resource::from_json_bytes(black_box(&bytes)).unwrap();
            resource.patient_compartments(FhirVersion::R4, "Observation")
        })
    });

    // Enforcement on the way back: a 100-entry searchset (50 of Patient/123, 50 of
    // Patient/456), parsed strictly and filtered, as FilterResources and ext_proc do.
    let bundle = search_bundle(100).to_string().into_bytes();
    let lab = parse_request_line("GET", "Observation?code=http://loinc.org|2345-7").unwrap();
    criterion.bench_function("parse a 100-entry search Bundle", |bench| {
        bench.iter(|| smart_authz::fhir::parse_strict(black_box(&bundle)).unwrap())
    });
    criterion.bench_function(
        "filter a 100-entry search Bundle (parse + filter)",
        |bench| {
            bench.iter(|| {
                let answer = smart_authz::fhir::parse_strict(black_box(&bundle)).unwrap();
                let filtered = engine.filter_response(&token, &lab, answer).unwrap();
                assert_eq!(filtered.withheld, 50);
                filtered
            })
        },
    );
    // Writing the filtered answer back: anew, or keeping the server's text of what it kept
    // (decimals' precision; the answer ext_proc and FilterResources send).
    let answer = smart_authz::fhir::parse_strict(&bundle).unwrap();
    let filtered = engine.filter_response(&token, &lab, answer).unwrap();
    criterion.bench_function("write the filtered 100-entry Bundle anew", |bench| {
        bench.iter(|| smart_authz::fhir::to_fhir_json(black_box(&filtered.body), bundle.len()))
    });
    criterion.bench_function(
        "write the filtered 100-entry Bundle keeping the server's text",
        |bench| {
            bench.iter(|| {
                smart_authz::fhir::to_fhir_json_keeping(
                    black_box(&filtered.body),
                    &bundle,
                    &filtered.entry_sources,
                )
            })
        },
    );
}

/// A searchset of `entries` laboratory Observations, alternately of Patient/123 and 456.
fn search_bundle(entries: usize) -> Value {
    let entry: Vec<Value> = (0..entries)
        .map(|index| {
            let patient = if index % 2 == 0 { "123" } else { "456" };
            json!({
                "fullUrl": format!("https://fhir.example/Observation/o{index}"),
                "resource": {
                    "resourceType": "Observation", "id": format!("o{index}"), "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
                    "subject": {"reference": format!("Patient/{patient}")},
                    "effectiveDateTime": "2026-11-30T08:00:00Z",
                    "valueQuantity": {"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
                },
                "search": {"mode": "match"}
            })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "searchset", "total": entries, "entry": entry })
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);

//! Realistic FHIR resources (R4 unless named `_r5`) and small helpers for the table.
//! Every resource has id `1` unless said otherwise, to match request lines like `GET Type/1`.

use serde_json::{Value, json};

use crate::fhir::{CompartmentRef, ResourceFacts, SearchParam};

pub const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
pub const VITALS: &str = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";
pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// `{"reference": text}`.
pub fn reference(text: &str) -> Value {
    json!({ "reference": text })
}

/// `value` with `key` set to `new`.
pub fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

/// `value` without `key`.
pub fn without(mut value: Value, key: &str) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove(key);
    }
    value
}

fn category(code: &str, display: &str) -> Value {
    json!([{ "coding": [{ "system": OBS_CATEGORY, "code": code, "display": display }] }])
}

/// A final serum glucose result (laboratory), performed by Practitioner/7.
pub fn observation(subject: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": "1",
        "meta": { "versionId": "2", "lastUpdated": "2024-03-01T10:00:00Z" },
        "status": "final",
        "category": category("laboratory", "Laboratory"),
        "code": {
            "coding": [{
                "system": LOINC,
                "code": "2345-7",
                "display": "Glucose [Mass/volume] in Serum or Plasma"
            }],
            "text": "Glucose"
        },
        "subject": reference(subject),
        "effectiveDateTime": "2024-03-01T09:30:00Z",
        "performer": [reference("Practitioner/7")],
        "valueQuantity": {
            "value": 95,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL"
        }
    })
}

/// [`observation`] about `Patient/<patient>`.
pub fn obs_of(patient: &str) -> Value {
    observation(&format!("Patient/{patient}"))
}

/// A heart rate (vital-signs) of `Patient/<patient>`.
pub fn vital_signs_of(patient: &str) -> Value {
    let observation = with(
        obs_of(patient),
        "category",
        category("vital-signs", "Vital Signs"),
    );
    let observation = with(
        observation,
        "code",
        json!({ "coding": [{ "system": LOINC, "code": "8867-4", "display": "Heart rate" }] }),
    );
    with(
        observation,
        "valueQuantity",
        json!({ "value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min" }),
    )
}

/// A lab Observation carrying two categories (laboratory and social-history).
pub fn obs_two_categories(patient: &str) -> Value {
    with(
        obs_of(patient),
        "category",
        json!([
            { "coding": [{ "system": OBS_CATEGORY, "code": "social-history" }] },
            { "coding": [
                { "system": "http://example.org/local-categories", "code": "chem" },
                { "system": OBS_CATEGORY, "code": "laboratory" }
            ] }
        ]),
    )
}

/// A lab Observation coded in SNOMED only (no LOINC coding).
pub fn obs_snomed_only(patient: &str) -> Value {
    with(
        obs_of(patient),
        "code",
        json!({ "coding": [{ "system": SNOMED, "code": "33747003", "display": "Glucose measurement" }] }),
    )
}

/// A Condition (R4): diabetes on the problem list, asserted by Practitioner/7.
pub fn condition(subject: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": "1",
        "clinicalStatus": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"
        }] },
        "verificationStatus": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"
        }] },
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "problem-list-item"
        }] }],
        "code": { "coding": [{ "system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2" }] },
        "subject": reference(subject),
        "recordedDate": "2023-11-02",
        "asserter": reference("Practitioner/7")
    })
}

/// An ambulatory Encounter (R4).
pub fn encounter(subject: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "id": "1",
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"
        },
        "subject": reference(subject),
        "participant": [{ "individual": reference("Practitioner/7") }],
        "period": { "start": "2024-03-01T09:00:00Z", "end": "2024-03-01T09:40:00Z" },
        "serviceProvider": reference("Organization/1")
    })
}

/// A metformin order (R4).
pub fn medication_request(subject: &str) -> Value {
    json!({
        "resourceType": "MedicationRequest",
        "id": "1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": { "coding": [{
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"
        }] },
        "subject": reference(subject),
        "authoredOn": "2024-03-01",
        "requester": reference("Practitioner/7")
    })
}

/// A peanut allergy (R4) of `patient`, recorded by `recorder`.
pub fn allergy(patient: &str, recorder: &str) -> Value {
    json!({
        "resourceType": "AllergyIntolerance",
        "id": "1",
        "clinicalStatus": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "code": "active"
        }] },
        "code": { "coding": [{ "system": SNOMED, "code": "91935009", "display": "Peanut allergy" }] },
        "patient": reference(patient),
        "recorder": reference(recorder)
    })
}

/// A lipid panel report.
pub fn diagnostic_report(subject: &str) -> Value {
    json!({
        "resourceType": "DiagnosticReport",
        "id": "1",
        "status": "final",
        "code": { "coding": [{ "system": LOINC, "code": "57698-3", "display": "Lipid panel" }] },
        "subject": reference(subject),
        "result": [reference("Observation/1")]
    })
}

/// A DeviceUseStatement (R4 only) of `subject`.
pub fn device_use_statement(subject: &str) -> Value {
    json!({
        "resourceType": "DeviceUseStatement",
        "id": "1",
        "status": "active",
        "subject": reference(subject),
        "device": reference("Device/1")
    })
}

/// A Patient `id`.
pub fn patient(id: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "active": true,
        "name": [{ "family": "Chalmers", "given": ["Peter", "James"] }],
        "gender": "male",
        "birthDate": "1974-12-25"
    })
}

/// A Patient `id` linked (`seealso`) to `Patient/<other>`.
pub fn patient_linked(id: &str, other: &str) -> Value {
    with(
        patient(id),
        "link",
        json!([{ "other": reference(&format!("Patient/{other}")), "type": "seealso" }]),
    )
}

pub fn practitioner() -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": "1",
        "name": [{ "family": "Careful", "given": ["Adam"], "prefix": ["Dr"] }],
        "identifier": [{ "system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893" }]
    })
}

pub fn organization() -> Value {
    json!({
        "resourceType": "Organization",
        "id": "1",
        "name": "Burgers University Medical Center",
        "active": true
    })
}

pub fn medication() -> Value {
    json!({
        "resourceType": "Medication",
        "id": "1",
        "code": { "coding": [{
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"
        }] }
    })
}

pub fn location() -> Value {
    json!({ "resourceType": "Location", "id": "1", "name": "South Wing, second floor" })
}

/// An R4 Device, optionally assigned to a patient through `Device.patient`.
pub fn device_r4(patient: Option<&str>) -> Value {
    let device = json!({
        "resourceType": "Device",
        "id": "1",
        "status": "active",
        "deviceName": [{ "name": "Glucose monitor", "type": "user-friendly-name" }],
        "owner": reference("Organization/1")
    });
    match patient {
        Some(patient) => with(device, "patient", reference(patient)),
        None => device,
    }
}

// ---- R5 ---------------------------------------------------------------------------------

/// An R5 Condition: `subject`, and one participant `actor`.
pub fn condition_r5(subject: &str, participant_actor: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": "1",
        "clinicalStatus": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"
        }] },
        "code": { "coding": [{ "system": SNOMED, "code": "44054006" }] },
        "subject": reference(subject),
        "participant": [{
            "function": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/participation-role-type",
                "code": "informant"
            }] },
            "actor": reference(participant_actor)
        }]
    })
}

/// An R5 Encounter (class is a list of CodeableConcepts in R5).
pub fn encounter_r5(subject: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "id": "1",
        "status": "completed",
        "class": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"
        }] }],
        "subject": reference(subject),
        "participant": [{ "actor": reference("Practitioner/7") }],
        "actualPeriod": { "start": "2024-03-01T09:00:00Z" }
    })
}

/// An R5 DeviceAssociation of Device/1 with `subject`, optionally operated by `operator`.
pub fn device_association_r5(subject: &str, operator: Option<&str>) -> Value {
    let association = json!({
        "resourceType": "DeviceAssociation",
        "id": "1",
        "device": reference("Device/1"),
        "status": { "coding": [{
            "system": "http://hl7.org/fhir/deviceassociation-status", "code": "attached"
        }] },
        "subject": reference(subject)
    });
    match operator {
        Some(operator) => with(
            association,
            "operation",
            json!([{
                "status": { "coding": [{
                    "system": "http://hl7.org/fhir/deviceassociation-operationstatus",
                    "code": "on"
                }] },
                "operator": [reference(operator)]
            }]),
        ),
        None => association,
    }
}

/// An R5 DeviceUsage (formerly DeviceUseStatement) of `patient`.
pub fn device_usage_r5(patient: &str) -> Value {
    json!({
        "resourceType": "DeviceUsage",
        "id": "1",
        "status": "active",
        "patient": reference(patient),
        "device": { "reference": reference("Device/1") }
    })
}

/// An R5 Device (no `patient` element in R5).
pub fn device_r5() -> Value {
    json!({
        "resourceType": "Device",
        "id": "1",
        "status": "active",
        "name": [{ "value": "Glucose monitor", "type": "user-friendly-name" }]
    })
}

/// An R5 AllergyIntolerance of `patient` with one participant `actor`.
pub fn allergy_r5(patient: &str, participant_actor: &str) -> Value {
    json!({
        "resourceType": "AllergyIntolerance",
        "id": "1",
        "code": { "coding": [{ "system": SNOMED, "code": "91935009" }] },
        "patient": reference(patient),
        "participant": [{ "actor": reference(participant_actor) }]
    })
}

// ---- precomputed facts and bundles -------------------------------------------------------

/// Facts: the compartments (`Type/id`) and `name=value` search values of a resource.
pub fn facts(compartments: &[&str], values: &[(&str, &str)]) -> ResourceFacts {
    ResourceFacts {
        compartments: compartments
            .iter()
            .map(|text| CompartmentRef::parse(text).expect("Type/id"))
            .collect(),
        search_values: values
            .iter()
            .map(|(name, value)| SearchParam::new(*name, *value))
            .collect(),
    }
}

/// A Bundle entry with a request and an optional resource.
pub fn entry(method: &str, url: &str, resource: Option<Value>) -> Value {
    let mut entry = json!({ "request": { "method": method, "url": url } });
    if let Some(resource) = resource {
        entry["resource"] = resource;
    }
    entry
}

/// A Bundle of `kind` (`batch`, `transaction`, ...) with `entries`.
pub fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": kind, "entry": entries })
}

//! Proves the FHIR data the engine runs on is the official data: the copies in `data/fhir/`
//! are byte-identical to the reference copies in `../shared/fhir/` (when present, as in CI),
//! and the tables `build.rs` generated agree with the JSON in every entry.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use smart_authz_engine::fhir::FhirVersion;
use smart_authz_engine::fhir::tables::SearchParamKind;

fn folder(version: FhirVersion) -> &'static str {
    match version {
        FhirVersion::R4 => "r4",
        FhirVersion::R4B => "r4b",
        FhirVersion::R5 => "r5",
    }
}

fn data_dir(version: FhirVersion) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/fhir")
        .join(folder(version))
}

fn shared_dir(version: FhirVersion) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fhir")
        .join(folder(version))
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn copies_are_identical_to_the_shared_reference_data() {
    let mut compared = 0;
    for version in FhirVersion::ALL {
        let shared = shared_dir(version);
        if !shared.is_dir() {
            eprintln!(
                "note: {} is absent; only the generated tables are checked",
                shared.display()
            );
            continue;
        }
        for entry in std::fs::read_dir(data_dir(version)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            let reference = shared.join(name);
            assert!(
                reference.is_file(),
                "{} has no counterpart in shared/",
                path.display()
            );
            assert!(
                std::fs::read(&path).unwrap() == std::fs::read(&reference).unwrap(),
                "{} differs from {}",
                path.display(),
                reference.display()
            );
            compared += 1;
        }
    }
    if shared_dir(FhirVersion::R4).is_dir() {
        assert_eq!(compared, 18, "six files per version");
    }
}

#[test]
fn resource_types_are_those_of_the_patient_compartment_definition() {
    for version in FhirVersion::ALL {
        let definition = read_json(&data_dir(version).join("compartmentdefinition-patient.json"));
        let mut expected: Vec<&str> = definition["resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["code"].as_str().unwrap())
            .collect();
        expected.sort_unstable();
        assert_eq!(
            version.tables().resource_types,
            expected.as_slice(),
            "{version}"
        );
    }
}

#[test]
fn search_parameters_match_the_index() {
    for version in FhirVersion::ALL {
        let index = read_json(&data_dir(version).join("searchparam-index.json"));
        let mut count = 0;
        for (resource_type, params) in index["searchParameters"].as_object().unwrap() {
            for (code, param) in params.as_object().unwrap() {
                let table = version.tables().own_search_params(resource_type);
                let generated = table
                    .iter()
                    .find(|candidate| candidate.code == code)
                    .unwrap_or_else(|| panic!("{version} {resource_type}.{code} missing"));
                let expression = param
                    .get("expressionForType")
                    .and_then(Value::as_str)
                    .or_else(|| param["expression"].as_str())
                    .filter(|expression| !expression.is_empty());
                assert_eq!(
                    generated.expression, expression,
                    "{version} {resource_type}.{code}"
                );
                let kind = format!("{:?}", generated.kind).to_lowercase();
                assert_eq!(
                    Some(kind.as_str()),
                    param["type"].as_str(),
                    "{version} {resource_type}.{code}"
                );
                let targets: Vec<&str> = param
                    .get("target")
                    .and_then(Value::as_array)
                    .map(|targets| targets.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                assert_eq!(
                    generated.targets,
                    targets.as_slice(),
                    "{version} {resource_type}.{code}"
                );
                count += 1;
            }
        }
        let generated: usize = version
            .tables()
            .search_params
            .iter()
            .map(|(_, params)| params.len())
            .sum();
        assert_eq!(generated, count, "{version}: no extra parameters");
        assert_eq!(
            version.search_param("Observation", "subject").unwrap().kind,
            SearchParamKind::Reference
        );
    }
}

#[test]
fn compartments_match_the_compartment_definitions() {
    for version in FhirVersion::ALL {
        for table in version.tables().compartments {
            let file = format!(
                "compartmentdefinition-{}.json",
                table.compartment_type.to_lowercase()
            );
            let definition = read_json(&data_dir(version).join(file));
            for entry in definition["resource"].as_array().unwrap() {
                let resource_type = entry["code"].as_str().unwrap();
                let expected: Option<Vec<&str>> = entry.get("param").map(|params| {
                    params
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|param| *param != "{def}")
                        .collect()
                });
                let generated = table.params(resource_type).map(<[&str]>::to_vec);
                if resource_type == table.compartment_type && expected.is_none() {
                    // The compartment's own type is always a member through its id.
                    assert_eq!(generated, Some(Vec::new()));
                    continue;
                }
                assert_eq!(
                    generated, expected,
                    "{version} {} {resource_type}",
                    table.compartment_type
                );
            }
        }
    }
}

/// `shared/fhir/*/compartment-membership.json` is a second, independently derived view of the
/// same data: where present, the generated Patient compartment must agree with it.
#[test]
fn patient_compartment_agrees_with_the_shared_derived_membership() {
    for version in FhirVersion::ALL {
        let path = shared_dir(version).join("compartment-membership.json");
        if !path.is_file() {
            continue;
        }
        let membership = read_json(&path);
        let patient = &membership["compartments"]["Patient"];
        let compartment = version.patient_compartment();
        for (resource_type, params) in patient["members"].as_object().unwrap() {
            let expected: Vec<&str> = params
                .as_array()
                .unwrap()
                .iter()
                .map(|param| param["code"].as_str().unwrap())
                .filter(|code| *code != "{def}")
                .collect();
            assert_eq!(
                compartment.params(resource_type),
                Some(expected.as_slice()),
                "{version} {resource_type}"
            );
        }
        for resource_type in patient["neverInCompartment"].as_array().unwrap() {
            assert_eq!(
                compartment.params(resource_type.as_str().unwrap()),
                None,
                "{version} {resource_type}"
            );
        }
    }
}

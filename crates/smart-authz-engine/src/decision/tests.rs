//! The decision engine against the rule book (`docs/semantics.md`), as one
//! table. Every case names the rule-book section it checks; expectations come from the rule
//! book, not from the engine. Cases whose answer the rule book leaves open are named
//! `policy: ...` and assert the engine's current behaviour.
//!
//! `cargo test --lib decision::tests -- --nocapture` prints the number of cases per section.

mod contexts;
mod fixtures;
mod grammar;
mod granular;
mod harness;
mod letters;
mod r5;
mod regressions;
mod robustness;

use std::collections::{BTreeMap, BTreeSet};

use harness::{Case, S1, S2, S3, S3P, S3S, S3U, S4, S5, SECTIONS};

fn all_cases() -> Vec<Case> {
    let mut cases = grammar::cases();
    cases.extend(letters::cases());
    cases.extend(contexts::cases());
    cases.extend(granular::cases());
    cases.extend(r5::cases());
    cases.extend(regressions::cases());
    cases
}

#[test]
fn the_engine_follows_the_rule_book() {
    let cases = all_cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            case.run().err().map(|problem| {
                let version = if case.is_r5() { " (R5)" } else { "" };
                format!(
                    "[{}]{version} {}:\n      {problem}",
                    case.section, case.name
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree with the rule book:\n\n{}\n",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_section_of_the_rule_book_has_cases() {
    let cases = all_cases();
    let mut counts: BTreeMap<&str, usize> = SECTIONS.iter().map(|section| (*section, 0)).collect();
    let mut names = BTreeSet::new();
    for case in &cases {
        assert!(
            SECTIONS.contains(&case.section),
            "case {:?} names an unknown section {:?}",
            case.name,
            case.section
        );
        assert!(
            names.insert((case.section, case.name.clone())),
            "duplicate case [{}] {}",
            case.section,
            case.name
        );
        *counts.entry(case.section).or_default() += 1;
    }
    let r5 = cases.iter().filter(|case| case.is_r5()).count();
    let policy = cases
        .iter()
        .filter(|case| case.name.starts_with("policy:"))
        .count();
    println!("rule-book cases per section:");
    for section in SECTIONS {
        println!("  {section:<16} {:>4}", counts[section]);
    }
    println!("  {:<16} {:>4}", "total", cases.len());
    println!("  {:<16} {:>4}", "of which R5", r5);
    println!("  {:<16} {:>4}", "of which policy:", policy);
    for section in [S1, S2, S3, S3P, S3U, S3S, S4, S5] {
        assert!(counts[section] > 0, "no case for {section}");
    }
    assert!(cases.len() >= 170, "only {} cases", cases.len());
    assert!(r5 >= 12, "only {r5} R5 cases");
}

/// `Decision::is_allowed_outright`: what a caller that reads a yes or a no alone may act on.
#[test]
fn an_allow_is_outright_only_when_it_leaves_nothing_to_apply() {
    use std::sync::Arc;

    use crate::decision::Engine;
    use crate::fhir::{FhirVersion, Resource, parse_request_line};
    use crate::smart::{ScopeSet, TokenContext};

    let token = |scopes: &str, patient: Option<&str>| TokenContext {
        scopes: Arc::new(ScopeSet::parse(scopes, FhirVersion::R4)),
        patient: patient.map(Into::into),
        fhir_user: Some("Practitioner/7".into()),
        ..TokenContext::default()
    };
    let engine = Engine::default();
    let decide = |token: &TokenContext, method: &str, path: &str, stored: Option<&Resource>| {
        engine.decide(
            token,
            &parse_request_line(method, path).unwrap(),
            stored,
            None,
        )
    };
    let patient = token("patient/Observation.rs", Some("123"));
    let own = Resource::Json(fixtures::observation("Patient/123"));
    let cases = [
        // Judged on the stored version: nothing left.
        (decide(&patient, "GET", "Observation/1", Some(&own)), true),
        // A search of the compartment: the compartment is left to apply.
        (decide(&patient, "GET", "Observation?code=x", None), false),
        // A read without its stored version: membership is left to check.
        (decide(&patient, "GET", "Observation/1", None), false),
        // user/: the user's permissions are left to apply.
        (
            decide(
                &token("user/Observation.rs", None),
                "GET",
                "Observation/1",
                Some(&own),
            ),
            false,
        ),
        // A public endpoint: no grant at all.
        (decide(&patient, "GET", "metadata", None), true),
    ];
    for (index, (decision, outright)) in cases.iter().enumerate() {
        assert!(decision.is_allowed(), "case {index}: {decision:?}");
        assert_eq!(
            decision.is_allowed_outright(),
            *outright,
            "case {index}: {decision:?}"
        );
    }
    let denied = decide(&patient, "DELETE", "Observation/1", Some(&own));
    assert!(!denied.is_allowed_outright());
}

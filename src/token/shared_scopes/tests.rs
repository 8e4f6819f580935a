use serde_json::json;

use super::*;

fn text(scope: &str) -> ScopeClaim<'_> {
    ScopeClaim::Text(scope)
}

#[test]
fn tokens_with_the_same_claim_share_one_set_parsed_once() {
    let shared = SharedScopes::default();
    let first = shared.parse(text("patient/*.rs openid"), FhirVersion::R4);
    let second = shared.parse(text("patient/*.rs openid"), FhirVersion::R4);
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(Arc::strong_count(&first), 2);
    assert_eq!(
        *first,
        ScopeSet::parse("patient/*.rs openid", FhirVersion::R4)
    );
    let other = shared.parse(text("patient/Observation.rs"), FhirVersion::R4);
    assert!(!Arc::ptr_eq(&first, &other));
    // The same texts read for another version are another set.
    let r5 = shared.parse(text("patient/*.rs openid"), FhirVersion::R5);
    assert!(!Arc::ptr_eq(&first, &r5));
}

#[test]
fn a_list_is_its_own_key_and_its_items_are_never_joined() {
    let shared = SharedScopes::default();
    let joined = shared.parse(
        ScopeClaim::List(vec!["patient/*.rs openid"]),
        FhirVersion::R4,
    );
    let apart = shared.parse(
        ScopeClaim::List(vec!["patient/*.rs", "openid"]),
        FhirVersion::R4,
    );
    let as_text = shared.parse(text("patient/*.rs openid"), FhirVersion::R4);
    assert!(!Arc::ptr_eq(&joined, &apart));
    assert!(!Arc::ptr_eq(&apart, &as_text));
    // One item holding a space is one invalid scope, not two valid ones.
    assert_eq!(joined.entries().len(), 1);
    assert!(joined.entries()[0].parsed.is_err());
    assert_eq!(apart.entries().len(), 2);
    assert_eq!(*apart, *as_text);
}

#[test]
fn a_set_lives_only_as_long_as_a_token_holds_it() {
    let shared = SharedScopes::default();
    let first = shared.parse(text("patient/*.rs"), FhirVersion::R4);
    drop(first);
    let again = shared.parse(text("patient/*.rs"), FhirVersion::R4);
    assert_eq!(Arc::strong_count(&again), 1, "a new set, not a revived one");
}

#[test]
fn a_long_claim_is_parsed_for_its_token_alone() {
    let shared = SharedScopes::default();
    let long: String = (0..1_000)
        .map(|index| format!("patient/Observation.rs?code={index} "))
        .collect();
    assert!(long.len() > MAX_SHARED_CLAIM_BYTES);
    let first = shared.parse(text(&long), FhirVersion::R4);
    let second = shared.parse(text(&long), FhirVersion::R4);
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(*first, *second);
    assert_eq!(shared.tracked(), 0);
}

#[test]
fn the_table_stays_bounded_and_sweeps_dead_sets() {
    let shared = SharedScopes::default();
    let claims: Vec<String> = (0..MAX_SETS)
        .map(|index| format!("patient/Observation.rs?code={index}"))
        .collect();
    let alive: Vec<Arc<ScopeSet>> = claims
        .iter()
        .map(|claim| shared.parse(text(claim), FhirVersion::R4))
        .collect();
    assert_eq!(shared.tracked(), MAX_SETS);
    // Full of live sets: one more is not shared, and not tracked.
    let extra = shared.parse(text("patient/Condition.rs"), FhirVersion::R4);
    assert_eq!(shared.tracked(), MAX_SETS);
    let again = shared.parse(text("patient/Condition.rs"), FhirVersion::R4);
    assert!(!Arc::ptr_eq(&extra, &again));
    drop(alive);
    // The dead ones are swept to make room, within SWEEP_EVERY attempts.
    let mut kept = Vec::new();
    for index in 0..SWEEP_EVERY {
        let claim = format!("patient/Encounter.rs?code={index}");
        kept.push(shared.parse(text(&claim), FhirVersion::R4));
        if shared.tracked() < MAX_SETS {
            break;
        }
    }
    assert!(shared.tracked() < 10, "{}", shared.tracked());
}

#[test]
fn the_reader_gives_two_tokens_of_one_app_one_set_and_their_own_context() {
    let reader = ContextReader::new(FhirVersion::R4);
    let first = reader
        .read(&json!({"scope": "launch/patient patient/*.rs", "patient": "123"}))
        .unwrap();
    let second = reader
        .read(&json!({"scope": "launch/patient patient/*.rs", "patient": "456"}))
        .unwrap();
    assert!(Arc::ptr_eq(&first.scopes, &second.scopes));
    assert_eq!(first.patient.as_deref(), Some("123"));
    assert_eq!(second.patient.as_deref(), Some("456"));
    // What the engine alone reads from the same claims.
    let alone = TokenContext::from_claims(
        &json!({"scope": "launch/patient patient/*.rs", "patient": "123"}),
        FhirVersion::R4,
    )
    .unwrap();
    assert_eq!(first, alone);
    assert_eq!(
        reader.read(&json!({"scope": 7})),
        Err(ClaimsError::WrongType("scope"))
    );
}

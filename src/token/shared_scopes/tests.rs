use super::*;

fn set(scope: &str) -> Arc<ScopeSet> {
    Arc::new(ScopeSet::parse(scope, FhirVersion::R4))
}

#[test]
fn tokens_with_the_same_scopes_share_one_set() {
    let shared = SharedScopes::default();
    let first = shared.share(set("patient/*.rs openid"), FhirVersion::R4);
    let second = shared.share(set("patient/*.rs openid"), FhirVersion::R4);
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(Arc::strong_count(&first), 2);
    let other = shared.share(set("patient/Observation.rs"), FhirVersion::R4);
    assert!(!Arc::ptr_eq(&first, &other));
    // The same texts read for another version are another set.
    let r5 = shared.share(
        Arc::new(ScopeSet::parse("patient/*.rs openid", FhirVersion::R5)),
        FhirVersion::R5,
    );
    assert!(!Arc::ptr_eq(&first, &r5));
}

#[test]
fn a_set_lives_only_as_long_as_a_token_holds_it() {
    let shared = SharedScopes::default();
    let first = shared.share(set("patient/*.rs"), FhirVersion::R4);
    drop(first);
    let again = shared.share(set("patient/*.rs"), FhirVersion::R4);
    assert_eq!(Arc::strong_count(&again), 1, "a new set, not a revived one");
}

#[test]
fn the_table_stays_bounded_and_sweeps_dead_sets() {
    let shared = SharedScopes::default();
    let alive: Vec<Arc<ScopeSet>> = (0..MAX_SETS)
        .map(|index| {
            shared.share(
                set(&format!("patient/Observation.rs?code={index}")),
                FhirVersion::R4,
            )
        })
        .collect();
    assert_eq!(shared.tracked(), MAX_SETS);
    // Full of live sets: one more is not shared, and not tracked.
    let extra = shared.share(set("patient/Condition.rs"), FhirVersion::R4);
    assert_eq!(shared.tracked(), MAX_SETS);
    let again = shared.share(set("patient/Condition.rs"), FhirVersion::R4);
    assert!(!Arc::ptr_eq(&extra, &again));
    drop(alive);
    // The dead ones are swept to make room, within SWEEP_EVERY attempts.
    let mut kept = Vec::new();
    for index in 0..SWEEP_EVERY {
        kept.push(shared.share(
            set(&format!("patient/Encounter.rs?code={index}")),
            FhirVersion::R4,
        ));
        if shared.tracked() < MAX_SETS {
            break;
        }
    }
    assert!(shared.tracked() < 10, "{}", shared.tracked());
}

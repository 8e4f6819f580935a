use super::*;

#[test]
fn one_bad_scope_never_invalidates_the_others() {
    let set = ScopeSet::parse(
        "openid  fhirUser patient/Observation.sr patient/Condition.rs launch/patient",
        FhirVersion::R4,
    );
    assert_eq!(set.entries.len(), 5);
    let resource: Vec<&str> = set.resource_scopes().map(|(text, _)| text).collect();
    assert_eq!(resource, ["patient/Condition.rs"]);
    let invalid: Vec<&str> = set.invalid().map(|(text, _)| text).collect();
    assert_eq!(invalid, ["patient/Observation.sr"]);
}

#[test]
fn accepts_scp_arrays_and_drops_duplicates() {
    let set = ScopeSet::from_list(["user/*.rs", "user/*.rs", " "], FhirVersion::R4);
    // A blank item is an invalid scope, reported, not silently dropped.
    assert_eq!(set.entries.len(), 2);
    assert_eq!(set.invalid().count(), 1);
    assert_eq!(set.to_scope_string(), "user/*.rs");
}

#[test]
fn scopes_past_the_limit_grant_nothing() {
    let many: Vec<String> = (0..MAX_SCOPES + 10)
        .map(|index| format!("__ext{index}"))
        .collect();
    let set = ScopeSet::from_list(many.iter().map(String::as_str), FhirVersion::R4);
    assert_eq!(set.entries.len(), MAX_SCOPES + 10);
    assert_eq!(set.invalid().count(), 10);
    assert!(matches!(
        set.entries[MAX_SCOPES].parsed,
        Err(ScopeError::TooMany(MAX_SCOPES))
    ));
}

#[test]
fn tells_v1_from_v2() {
    let set = ScopeSet::parse(
        "patient/*.read user/*.rs system/*.* openid",
        FhirVersion::R4,
    );
    let v1: Vec<bool> = set.entries.iter().map(ScopeEntry::is_v1).collect();
    assert_eq!(v1, [true, false, true, false]);
}

#[test]
fn scopes_are_separated_by_spaces_only_and_never_trimmed_into_another_scope() {
    for (claim, invalid) in [
        ("system/*.rs\u{a0}", "system/*.rs\u{a0}"),
        ("patient/*.rs\tsystem/*.rs", "patient/*.rs\tsystem/*.rs"),
        ("openid\nsystem/*.rs", "openid\nsystem/*.rs"),
        ("system/*.rs\u{c}", "system/*.rs\u{c}"),
        ("\u{2003}system/*.rs", "\u{2003}system/*.rs"),
    ] {
        let set = ScopeSet::parse(claim, FhirVersion::R4);
        assert_eq!(
            set.resource_scopes().count(),
            0,
            "{claim:?} granted a scope"
        );
        let reported: Vec<&str> = set.invalid().map(|(text, _)| text).collect();
        assert_eq!(reported, [invalid], "{claim:?}");
        assert!(matches!(
            set.entries[0].parsed,
            Err(ScopeError::InvalidCharacter(_))
        ));
        // Never in the string that travels in headers.
        assert_eq!(set.to_scope_string(), "", "{claim:?}");
    }
    // Repeated spaces separate like one.
    let set = ScopeSet::parse("  patient/*.rs   openid ", FhirVersion::R4);
    assert_eq!(set.to_scope_string(), "patient/*.rs openid");
    // A scope left out leaves no gap: first, between and last.
    let set = ScopeSet::from_list(
        ["b\u{e9}ta", "patient/*.rs", "x\ty", "openid", "\"q\""],
        FhirVersion::R4,
    );
    assert_eq!(set.to_scope_string(), "patient/*.rs openid");
    // An scp array item holding a space is one invalid scope, not two.
    let set = ScopeSet::from_list(["patient/*.rs openid"], FhirVersion::R4);
    assert_eq!(set.resource_scopes().count(), 0);
}

/// Found by the `scope` fuzz target: a scope past the limit was reported as `TooMany`
/// before its characters were looked at, and its control character reached the header
/// string.
#[test]
fn a_scope_past_the_limit_with_a_control_character_stays_out_of_the_header() {
    let mut scopes: Vec<String> = (0..MAX_SCOPES)
        .map(|index| format!("__ext{index}"))
        .collect();
    scopes.push("lsd\u{f}".to_owned());
    let set = ScopeSet::parse(&scopes.join(" "), FhirVersion::R4);
    assert!(!set.to_scope_string().chars().any(char::is_control));
    assert!(matches!(
        set.entries.last().unwrap().parsed,
        Err(ScopeError::InvalidCharacter('\u{f}'))
    ));
}

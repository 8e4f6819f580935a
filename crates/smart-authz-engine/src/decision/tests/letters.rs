//! §2: what each letter permits, public endpoints, operations, batches and transactions.

use serde_json::json;

use super::fixtures::*;
use super::harness::*;
use crate::decision::{Obligation, OperationRule, Outcome, Reason};

pub fn cases() -> Vec<Case> {
    let mut cases = letters();
    cases.extend(letters_do_not_imply_each_other());
    cases.extend(public_endpoints());
    cases.extend(operations());
    cases.extend(bundles());
    cases
}

/// Each interaction with exactly the letter it needs (system/ scopes: no compartment).
fn letters() -> Vec<Case> {
    let rows: [(&str, &str, &str, &str); 17] = [
        (
            "read needs r",
            "system/Observation.r",
            "GET",
            "Observation/1",
        ),
        (
            "vread needs r",
            "system/Observation.r",
            "GET",
            "Observation/1/_history/2",
        ),
        (
            "history-instance needs r",
            "system/Observation.r",
            "GET",
            "Observation/1/_history",
        ),
        (
            "HEAD read needs r",
            "system/Observation.r",
            "HEAD",
            "Observation/1",
        ),
        (
            "create needs c",
            "system/Observation.c",
            "POST",
            "Observation",
        ),
        (
            "update needs u",
            "system/Observation.u",
            "PUT",
            "Observation/1",
        ),
        (
            "patch needs u",
            "system/Observation.u",
            "PATCH",
            "Observation/1",
        ),
        (
            "conditional update needs u",
            "system/Observation.u",
            "PUT",
            "Observation?identifier=http://acme.org/obs|6323",
        ),
        (
            "update-as-create needs u",
            "system/Observation.u",
            "PUT",
            "Observation/new-1",
        ),
        (
            "delete needs d",
            "system/Observation.d",
            "DELETE",
            "Observation/1",
        ),
        (
            "conditional delete needs d",
            "system/Observation.d",
            "DELETE",
            "Observation?identifier=http://acme.org/obs|6323",
        ),
        (
            "search-type needs s",
            "system/Observation.s",
            "GET",
            "Observation?code=2345-7",
        ),
        (
            "POST _search needs s",
            "system/Observation.s",
            "POST",
            "Observation/_search",
        ),
        (
            "history-type needs s",
            "system/Observation.s",
            "GET",
            "Observation/_history",
        ),
        (
            "search-system needs s",
            "system/Observation.s",
            "GET",
            "?_type=Observation",
        ),
        ("history-system needs s", "system/*.s", "GET", "_history"),
        (
            "search-compartment needs s",
            "system/Observation.s",
            "GET",
            "Patient/123/Observation?code=2345-7",
        ),
    ];
    let mut cases: Vec<Case> = rows
        .into_iter()
        .map(|(name, scope, method, path)| {
            case(S2, name)
                .scopes(scope)
                .line(method, path)
                .allow()
                .grant_scopes(&[scope])
                .no_compartment()
                .obligation(Obligation::ClientPolicy)
        })
        .collect();
    cases.extend([
        case(S2, "POST _search at system level needs s")
            .scopes("system/*.s")
            .line("POST", "_search")
            .allow()
            .types(&["*"]),
        case(S2, "update with the new version given, u")
            .scopes("system/Observation.u")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(obs_of("123"))
            .allow(),
        case(S2, "cruds allows every interaction: patch")
            .scopes("user/Observation.cruds")
            .fhir_user("Practitioner/7")
            .line("PATCH", "Observation/1")
            .allow()
            .obligation(Obligation::UserPermissions),
    ]);
    cases
}

/// No letter implies another.
fn letters_do_not_imply_each_other() -> Vec<Case> {
    let rows: [(&str, &str, &str, &str); 16] = [
        (
            "s alone cannot read an instance",
            "system/Observation.s",
            "GET",
            "Observation/1",
        ),
        (
            "s alone cannot vread",
            "system/Observation.s",
            "GET",
            "Observation/1/_history/2",
        ),
        (
            "s alone cannot read history-instance",
            "system/Observation.s",
            "GET",
            "Observation/1/_history",
        ),
        (
            "r alone cannot search",
            "system/Observation.r",
            "GET",
            "Observation?code=2345-7",
        ),
        (
            "r alone cannot POST _search",
            "system/Observation.r",
            "POST",
            "Observation/_search",
        ),
        (
            "r alone cannot read history-type",
            "system/Observation.r",
            "GET",
            "Observation/_history",
        ),
        (
            "r alone cannot search-system",
            "system/*.r",
            "GET",
            "?_type=Observation",
        ),
        (
            "r alone cannot search a compartment",
            "system/*.r",
            "GET",
            "Patient/123/Observation",
        ),
        (
            "rs cannot create",
            "system/Observation.rs",
            "POST",
            "Observation",
        ),
        (
            "rs cannot update",
            "system/Observation.rs",
            "PUT",
            "Observation/1",
        ),
        (
            "c cannot read",
            "system/Observation.c",
            "GET",
            "Observation/1",
        ),
        (
            "c cannot update",
            "system/Observation.c",
            "PUT",
            "Observation/1",
        ),
        (
            "u cannot create with POST",
            "system/Observation.u",
            "POST",
            "Observation",
        ),
        (
            "u cannot delete",
            "system/Observation.u",
            "DELETE",
            "Observation/1",
        ),
        (
            "d cannot read",
            "system/Observation.d",
            "GET",
            "Observation/1",
        ),
        (
            "letters on one type grant nothing on another",
            "system/Observation.cruds",
            "GET",
            "Condition/1",
        ),
    ];
    let mut cases: Vec<Case> = rows
        .into_iter()
        .map(|(name, scope, method, path)| {
            case(S2, name)
                .scopes(scope)
                .line(method, path)
                .deny(Reason::NoMatchingScope)
        })
        .collect();
    cases.push(
        case(S2, "no scope at all denies a read")
            .line("GET", "Observation/1")
            .deny(Reason::NoMatchingScope),
    );
    cases
}

fn public_endpoints() -> Vec<Case> {
    vec![
        case(S2, "GET metadata needs no scope at all")
            .line("GET", "metadata")
            .public()
            .no_grants(),
        case(
            S2,
            "GET .well-known/smart-configuration needs no scope at all",
        )
        .line("GET", ".well-known/smart-configuration")
        .public()
        .no_grants(),
        case(S2, "GET metadata with only an invalid scope")
            .scopes("patient/Observation.sr")
            .line("GET", "metadata")
            .public(),
    ]
}

fn operations() -> Vec<Case> {
    vec![
        // Patient/[id]/$everything
        case(
            S2,
            "$everything on the patient in context, over read∩search",
        )
        .scopes("patient/*.rs")
        .patient("123")
        .line("GET", "Patient/123/$everything")
        .allow()
        .types(&["*"])
        .compartment("Patient/123"),
        case(
            S2,
            "$everything returns the types both readable and searchable",
        )
        .scopes("patient/Observation.rs patient/Condition.r patient/Encounter.s patient/Patient.rs")
        .patient("123")
        .line("GET", "Patient/123/$everything")
        .allow()
        .types(&["Observation", "Patient"]),
        case(S2, "$everything: read and search may come from two scopes")
            .scopes("patient/Condition.r patient/Condition.s")
            .patient("123")
            .line("GET", "Patient/123/$everything")
            .allow()
            .types(&["Condition"]),
        case(S2, "$everything on another patient is denied")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Patient/456/$everything")
            .deny(Reason::OutsideCompartment),
        case(S2, "$everything with write-only scopes is denied")
            .scopes("patient/*.cud")
            .patient("123")
            .line("GET", "Patient/123/$everything")
            .deny(Reason::NoMatchingScope),
        case(
            S2,
            "$everything with read-only scopes is denied (no type searchable)",
        )
        .scopes("patient/*.r")
        .patient("123")
        .line("GET", "Patient/123/$everything")
        .deny(Reason::NoMatchingScope),
        case(S2, "$everything without a patient context")
            .scopes("patient/*.rs")
            .line("GET", "Patient/123/$everything")
            .deny(Reason::MissingPatientContext),
        case(
            S2,
            "$everything under user/ scopes, on the patient in context",
        )
        .scopes("user/*.rs")
        .fhir_user("Practitioner/7")
        .patient("456")
        .line("GET", "Patient/456/$everything")
        .allow()
        .obligation(Obligation::UserPermissions)
        .no_compartment(),
        case(S2, "$everything under user/ scopes, on another patient")
            .scopes("user/*.rs")
            .fhir_user("Practitioner/7")
            .patient("123")
            .line("GET", "Patient/456/$everything")
            .deny(Reason::OutsideCompartment),
        case(
            S2,
            "$everything under user/ scopes, without a patient in context",
        )
        .scopes("user/*.rs")
        .fhir_user("Practitioner/7")
        .line("GET", "Patient/456/$everything")
        .deny(Reason::MissingPatientContext),
        case(
            S2,
            "$everything under system/ scopes, without a patient in context",
        )
        .scopes("system/*.rs")
        .line("GET", "Patient/456/$everything")
        .deny(Reason::MissingPatientContext),
        case(
            S2,
            "$everything under system/ scopes, on the patient in context",
        )
        .scopes("system/*.rs")
        .patient("456")
        .line("GET", "Patient/456/$everything")
        .allow()
        .no_compartment(),
        case(S2, "$everything on an Encounter is not configured")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Encounter/1/$everything")
            .deny(Reason::UnsupportedRequest),
        case(
            S2,
            "$everything at type level is not Patient/[id]/$everything",
        )
        .scopes("system/*.rs")
        .line("GET", "Patient/$everything")
        .deny(Reason::UnsupportedRequest),
        // $lastn, $stats
        case(S2, "$lastn needs s on the type")
            .scopes("patient/Observation.s")
            .patient("123")
            .line("GET", "Observation/$lastn?category=vital-signs&max=3")
            .allow()
            .compartment("Patient/123"),
        case(S2, "$lastn with r alone is denied")
            .scopes("patient/Observation.r")
            .patient("123")
            .line("GET", "Observation/$lastn?category=vital-signs")
            .deny(Reason::NoMatchingScope),
        case(S2, "$lastn naming another patient is denied")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/$lastn?patient=Patient/456&code=8867-4")
            .deny(Reason::OutsideCompartment),
        case(S2, "$lastn on an instance is not a type-level search")
            .scopes("system/Observation.rs")
            .line("GET", "Observation/1/$lastn")
            .deny(Reason::UnsupportedRequest),
        case(S2, "$stats needs s on the type")
            .scopes("system/Observation.s")
            .line("GET", "Observation/$stats?code=8867-4&statistic=average")
            .allow(),
        case(S2, "$stats on a type the token cannot search")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Condition/$stats?code=44054006&statistic=count")
            .deny(Reason::NoMatchingScope),
        // $export
        case(S2, "$export with system/*.rs")
            .scopes("system/*.rs")
            .line("GET", "$export")
            .allow()
            .obligation(Obligation::ClientPolicy),
        case(S2, "Patient/$export with system/*.rs")
            .scopes("system/*.rs")
            .line("GET", "Patient/$export?_type=Observation,Condition")
            .allow(),
        case(S2, "Group/1/$export with system/*.rs")
            .scopes("system/*.rs")
            .line("GET", "Group/1/$export")
            .allow(),
        case(S2, "$export with patient/ scopes is denied")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Patient/$export")
            .deny(Reason::NoMatchingScope),
        case(S2, "$export with user/ scopes is denied")
            .scopes("user/*.rs")
            .fhir_user("Practitioner/7")
            .line("GET", "$export")
            .deny(Reason::NoMatchingScope),
        case(S2, "$export needs r and s: r alone")
            .scopes("system/*.r")
            .line("GET", "$export")
            .deny(Reason::NoMatchingScope),
        case(S2, "$export needs r and s: s alone")
            .scopes("system/*.s")
            .line("GET", "$export?_type=Observation")
            .deny(Reason::NoMatchingScope),
        case(S2, "$export _type must be covered: one type missing")
            .scopes("system/Observation.rs")
            .line("GET", "$export?_type=Observation,Condition")
            .deny(Reason::NoMatchingScope),
        case(S2, "$export _type covered by two scopes")
            .scopes("system/Observation.rs system/Condition.rs")
            .line("GET", "$export?_type=Observation,Condition")
            .allow()
            .types(&["Observation", "Condition"]),
        case(S2, "$export _type covered by r and s from separate scopes")
            .scopes("system/Observation.r system/Observation.s")
            .line("GET", "Group/1/$export?_type=Observation")
            .allow()
            .types(&["Observation"]),
        case(
            S2,
            "$export: patient/ scopes beside system/ scopes do not count",
        )
        .scopes("system/Observation.rs patient/*.rs")
        .patient("123")
        .line("GET", "$export?_type=Observation,Condition")
        .deny(Reason::NoMatchingScope),
        case(
            S2,
            "policy: $export without _type is limited to the covered types",
        )
        .scopes("system/Observation.rs system/Patient.rs")
        .line("GET", "$export")
        .allow()
        .types(&["Observation", "Patient"]),
        case(S2, "$export keeps the filters of granular system/ scopes")
            .scopes("system/Observation.rs?category=laboratory")
            .line("GET", "$export?_type=Observation")
            .allow()
            .filters(&[("category", &["laboratory"])]),
        case(
            S2,
            "$everything keeps the filters of granular patient/ scopes",
        )
        .scopes("patient/Observation.rs?category=laboratory patient/Condition.rs")
        .patient("123")
        .line("GET", "Patient/123/$everything")
        .allow()
        .types(&["Observation", "Condition"])
        .filters_of(
            "patient/Observation.rs?category=laboratory",
            &[("category", &["laboratory"])],
        )
        .filters_of("patient/Condition.rs", &[]),
        case(S2, "$export at type level on Observation is not configured")
            .scopes("system/*.rs")
            .line("GET", "Observation/$export")
            .deny(Reason::UnsupportedRequest),
        // $validate, unknown and configured operations
        case(S2, "$validate needs only a valid token")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("POST", "Observation/$validate")
            .allow(),
        case(S2, "$validate with a token holding only openid")
            .scopes("openid")
            .line("POST", "Observation/$validate")
            .allow(),
        case(
            S2,
            "$validate on an instance: the patient's own stored version",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1/$validate?mode=delete")
        .stored(obs_of("123"))
        .allow(),
        case(
            S2,
            "$validate on an instance: another patient's stored version",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1/$validate?mode=delete")
        .stored(obs_of("456"))
        .deny(Reason::OutsideCompartment),
        case(
            S2,
            "$validate on an instance without the stored version: not checkable",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("POST", "Observation/o1/$validate")
        .deny(Reason::UnsupportedRequest),
        case(
            S2,
            "$validate on an instance with a token holding only openid",
        )
        .scopes("openid")
        .line("POST", "Observation/o1/$validate")
        .deny(Reason::NoMatchingScope),
        case(
            S2,
            "$validate on an instance under a user/ read scope: nothing left to check",
        )
        .scopes("user/Observation.rs")
        .fhir_user("Practitioner/7")
        .line("POST", "Observation/o1/$validate")
        .allow(),
        case(
            S2,
            "POST $export: its _type is in a body the service does not read",
        )
        .scopes("system/Observation.rs")
        .line("POST", "$export")
        .deny(Reason::UnsupportedRequest),
        case(
            S2,
            "POST Observation/$lastn: the patient it names is in a body",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .line("POST", "Observation/$lastn")
        .deny(Reason::UnsupportedRequest),
        case(S2, "POST $everything: its parameters only narrow the grant")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("POST", "Patient/123/$everything")
            .allow(),
        case(S2, "unknown operation $meta is denied")
            .scopes("system/*.cruds")
            .line("GET", "Observation/1/$meta")
            .deny(Reason::UnsupportedRequest),
        case(S2, "unknown operation $closure is denied")
            .scopes("system/*.cruds")
            .line("POST", "$closure")
            .deny(Reason::UnsupportedRequest),
        case(
            S2,
            "configured rule $meta = r: allowed on an own Observation",
        )
        .policy(|policy| {
            policy.operations.insert(
                "meta".into(),
                OperationRule::Permissions {
                    letters: "r".into(),
                },
            );
        })
        .scopes("patient/Observation.r")
        .patient("123")
        .line("GET", "Observation/1/$meta")
        .stored(obs_of("123"))
        .allow(),
        case(
            S2,
            "configured rule $meta = r: another patient's Observation",
        )
        .policy(|policy| {
            policy.operations.insert(
                "meta".into(),
                OperationRule::Permissions {
                    letters: "r".into(),
                },
            );
        })
        .scopes("patient/Observation.r")
        .patient("123")
        .line("GET", "Observation/1/$meta")
        .stored(obs_of("456"))
        .deny(Reason::OutsideCompartment),
        case(S2, "configured rule $meta = r: a scope without r")
            .policy(|policy| {
                policy.operations.insert(
                    "meta".into(),
                    OperationRule::Permissions {
                        letters: "r".into(),
                    },
                );
            })
            .scopes("patient/Observation.s")
            .patient("123")
            .line("GET", "Observation/1/$meta")
            .stored(obs_of("123"))
            .deny(Reason::NoMatchingScope),
        case(S2, "configured rule Deny refuses a default operation")
            .policy(|policy| {
                policy
                    .operations
                    .insert("validate".into(), OperationRule::Deny);
            })
            .scopes("system/*.cruds")
            .line("POST", "Observation/$validate")
            .deny(Reason::UnsupportedRequest),
    ]
}

fn bundles() -> Vec<Case> {
    vec![
        case(S2, "transaction: every entry allowed")
            .scopes("patient/Observation.crs patient/Patient.r")
            .patient("123")
            .bundle(bundle(
                "transaction",
                vec![
                    entry("POST", "Observation", Some(obs_of("123"))),
                    entry("GET", "Observation?code=2345-7", None),
                    entry("GET", "Patient/123", None),
                ],
            ))
            .allow()
            .entries(&[Outcome::Allow, Outcome::Allow, Outcome::Allow]),
        case(S2, "transaction: one denied entry denies the whole")
            .scopes("patient/Observation.crs")
            .patient("123")
            .bundle(bundle(
                "transaction",
                vec![
                    entry("POST", "Observation", Some(obs_of("123"))),
                    entry("POST", "Observation", Some(obs_of("456"))),
                ],
            ))
            .deny(Reason::OutsideCompartment)
            .entries(&[Outcome::Allow, Outcome::Deny])
            .entry_reason(1, Reason::OutsideCompartment),
        case(S2, "transaction: a letter missing on one entry")
            .scopes("system/Observation.c")
            .bundle(bundle(
                "transaction",
                vec![
                    entry("POST", "Observation", Some(obs_of("123"))),
                    entry("DELETE", "Observation/9", None),
                ],
            ))
            .deny(Reason::NoMatchingScope)
            .entries(&[Outcome::Allow, Outcome::Deny]),
        case(
            S2,
            "policy: batch with one denied entry, entries decided alone",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .bundle(bundle(
            "batch",
            vec![
                entry("GET", "Observation?code=2345-7", None),
                entry("GET", "Observation?subject=Patient/456", None),
                entry("GET", "Patient/123/Observation", None),
            ],
        ))
        .deny(Reason::OutsideCompartment)
        .entries(&[Outcome::Allow, Outcome::Deny, Outcome::Allow]),
        case(S2, "batch: every entry allowed")
            .scopes("user/*.cruds")
            .fhir_user("Practitioner/7")
            .bundle(bundle(
                "batch",
                vec![
                    entry("PUT", "Observation/1", Some(obs_of("456"))),
                    entry("DELETE", "Condition/1", None),
                ],
            ))
            .allow()
            .entries(&[Outcome::Allow, Outcome::Allow]),
        case(S2, "batch entry with an absolute url is denied")
            .scopes("system/*.rs")
            .bundle(bundle(
                "batch",
                vec![
                    entry("GET", "https://other.example.org/fhir/Observation/1", None),
                    entry("GET", "Observation/1", None),
                ],
            ))
            .deny(Reason::UnsupportedRequest)
            .entries(&[Outcome::Deny, Outcome::Allow])
            .entry_reason(0, Reason::UnsupportedRequest),
        case(
            S2,
            "batch entries whose resource is not a resource are unreadable",
        )
        .scopes("patient/Observation.cruds")
        .patient("123")
        .bundle(bundle(
            "batch",
            vec![
                entry("POST", "Observation", Some(json!([obs_of("456")]))),
                entry("PUT", "Observation/1", Some(json!(null))),
                entry("POST", "Observation", Some(json!({ "status": "final" }))),
                entry("POST", "Observation", Some(obs_of("123"))),
            ],
        ))
        .deny(Reason::UnsupportedRequest)
        .entries(&[Outcome::Deny, Outcome::Deny, Outcome::Deny, Outcome::Allow])
        .entry_reason(0, Reason::UnsupportedRequest),
        case(S2, "batch entry with a network-path url is denied")
            .scopes("system/*.rs")
            .bundle(bundle(
                "batch",
                vec![
                    entry("GET", "//other.example.org/fhir/Observation/1", None),
                    entry("GET", "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", None),
                ],
            ))
            .deny(Reason::UnsupportedRequest)
            .entries(&[Outcome::Deny, Outcome::Deny]),
        case(
            S2,
            "batch entries whose query holds a URL are read on their path alone",
        )
        .scopes("patient/Observation.rs")
        .patient("123")
        .bundle(bundle(
            "batch",
            vec![
                entry("GET", "Observation?code=http://loinc.org|8867-4", None),
                entry("GET", "Observation?code=http%3A%2F%2Floinc.org%7C8867-4", None),
                entry(
                    "GET",
                    "/Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs&_count=10",
                    None,
                ),
            ],
        ))
        .allow()
        .entries(&[Outcome::Allow, Outcome::Allow, Outcome::Allow]),
        case(
            S2,
            "a conditional update whose identifier names a system URL",
        )
        .scopes("system/Patient.cu")
        .bundle(bundle(
            "transaction",
            vec![entry(
                "PUT",
                "Patient?identifier=http://hospital.example/mrn|123",
                Some(json!({ "resourceType": "Patient" })),
            )],
        ))
        .allow()
        .entries(&[Outcome::Allow]),
        case(S2, "batch entry with an unparsable url is denied")
            .scopes("system/*.rs")
            .bundle(bundle("batch", vec![entry("GET", "Observation//1", None)]))
            .deny(Reason::UnsupportedRequest)
            .entries(&[Outcome::Deny]),
        case(S2, "batch entry of an unknown type is denied")
            .scopes("system/*.rs")
            .bundle(bundle("batch", vec![entry("GET", "Foo/1", None)]))
            .deny(Reason::UnsupportedRequest)
            .entries(&[Outcome::Deny]),
        case(S2, "batch entry without a request is denied")
            .scopes("system/*.cruds")
            .bundle(json!({
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{ "resource": obs_of("123") }]
            }))
            .deny(Reason::UnsupportedRequest)
            .entries(&[Outcome::Deny]),
        case(S2, "a batch nested in a transaction entry is denied")
            .scopes("system/*.cruds")
            .bundle(bundle(
                "transaction",
                vec![entry(
                    "POST",
                    "",
                    Some(bundle("batch", vec![entry("GET", "Observation/1", None)])),
                )],
            ))
            .deny(Reason::UnsupportedRequest)
            .entries(&[Outcome::Deny]),
        case(
            S2,
            "transaction entry whose new resource id differs from its url",
        )
        .scopes("system/*.cruds")
        .bundle(bundle(
            "transaction",
            vec![entry("PUT", "Observation/2", Some(obs_of("123")))],
        ))
        .deny(Reason::UnsupportedRequest)
        .entries(&[Outcome::Deny]),
        case(S2, "an empty transaction is denied")
            .scopes("system/*.cruds")
            .bundle(bundle("transaction", vec![]))
            .deny(Reason::UnsupportedRequest),
        case(S2, "a batch without entries is denied")
            .scopes("system/*.cruds")
            .bundle(json!({ "resourceType": "Bundle", "type": "batch" }))
            .deny(Reason::UnsupportedRequest),
        case(S2, "a transaction whose entry is null is not read")
            .scopes("system/*.cruds")
            .bundle(json!({ "resourceType": "Bundle", "type": "transaction", "entry": null }))
            .bad_bundle(),
        case(S2, "a transaction whose entry is one object is not read")
            .scopes("system/*.cruds")
            .bundle(json!({
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": { "request": { "method": "DELETE", "url": "Observation/1" } }
            }))
            .bad_bundle(),
        case(S2, "a collection Bundle is not a batch")
            .scopes("system/*.cruds")
            .bundle(bundle(
                "collection",
                vec![entry("GET", "Observation/1", None)],
            ))
            .bad_bundle(),
        case(S2, "a Parameters resource is not a batch")
            .scopes("system/*.cruds")
            .bundle(json!({ "resourceType": "Parameters", "parameter": [] }))
            .bad_bundle(),
    ]
}

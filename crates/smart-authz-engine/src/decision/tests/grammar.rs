//! §1 scope grammar, and the fail-closed handling of bad input (§0).

use serde_json::json;

use super::fixtures::*;
use super::harness::*;
use crate::decision::{Obligation, Reason};
use crate::fhir::FhirVersion;

pub fn cases() -> Vec<Case> {
    let mut cases = v1_and_letters();
    cases.extend(invalid_scopes());
    cases.extend(granular_grammar());
    cases.extend(non_resource_scopes());
    cases.extend(strict_mode());
    cases.extend(bad_input());
    cases
}

fn v1_and_letters() -> Vec<Case> {
    vec![
        case(S1, "v1 read allows reading an own Observation like rs")
            .scopes("patient/Observation.read")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow()
            .grant_scopes(&["patient/Observation.read"]),
        case(S1, "v1 read allows searching like rs")
            .scopes("patient/Observation.read")
            .patient("123")
            .line("GET", "Observation?code=http://loinc.org|2345-7")
            .allow()
            .compartment("Patient/123"),
        case(S1, "v1 read cannot create")
            .scopes("patient/Observation.read")
            .patient("123")
            .line("POST", "Observation")
            .proposed(obs_of("123"))
            .deny(Reason::NoMatchingScope),
        case(S1, "v1 write allows create like cud")
            .scopes("patient/Observation.write")
            .patient("123")
            .line("POST", "Observation")
            .proposed(obs_of("123"))
            .allow(),
        case(S1, "v1 write never implies read")
            .scopes("patient/Observation.write")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::NoMatchingScope),
        case(S1, "v1 write never implies search")
            .scopes("user/Observation.write")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation?status=final")
            .deny(Reason::NoMatchingScope),
        case(S1, "v1 * allows delete like cruds")
            .scopes("system/Observation.*")
            .line("DELETE", "Observation/1")
            .allow(),
        case(S1, "v1 *.* allows reading any type")
            .scopes("system/*.*")
            .line("GET", "Condition/1")
            .allow()
            .types(&["Condition"]),
        case(S1, "v1 user/*.read cannot update")
            .scopes("user/*.read")
            .fhir_user("Practitioner/7")
            .line("PUT", "Observation/1")
            .proposed(obs_of("123"))
            .deny(Reason::NoMatchingScope),
        case(
            S1,
            "R4B type ClinicalUseDefinition is valid when R4B is configured",
        )
        .version(FhirVersion::R4B)
        .scopes("system/ClinicalUseDefinition.rs")
        .line("GET", "ClinicalUseDefinition/1")
        .allow(),
        case(S1, "R4B type ClinicalUseDefinition is invalid in R4")
            .scopes("system/ClinicalUseDefinition.rs system/Observation.rs")
            .line("GET", "Observation/1")
            .allow()
            .ignored(&["system/ClinicalUseDefinition.rs"]),
        case(S1, "v2 cud never implies read")
            .scopes("system/Observation.cud")
            .line("GET", "Observation/1")
            .deny(Reason::NoMatchingScope),
        case(S1, "* resource type covers every type")
            .scopes("system/*.rs")
            .line("GET", "Immunization/1")
            .allow()
            .obligation(Obligation::ClientPolicy),
        case(S1, "R4 type DeviceUseStatement is a valid R4 scope")
            .scopes("patient/DeviceUseStatement.rs")
            .patient("123")
            .line("GET", "DeviceUseStatement/1")
            .stored(device_use_statement("Patient/123"))
            .allow(),
        case(
            S1,
            "R5-only type DeviceUsage is invalid in R4, other scopes still grant",
        )
        .scopes("patient/DeviceUsage.rs patient/Observation.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(obs_of("123"))
        .allow()
        .grant_scopes(&["patient/Observation.rs"])
        .ignored(&["patient/DeviceUsage.rs"]),
    ]
}

/// One invalid scope per row: listed with a reason, and granting nothing.
fn invalid_scopes() -> Vec<Case> {
    let rows: [(&str, &str); 10] = [
        ("letters out of order (sr)", "system/Observation.sr"),
        ("duplicate letter (rrs)", "system/Observation.rrs"),
        ("letters out of order (dus)", "system/Observation.dus"),
        ("empty permissions", "system/Observation."),
        ("unknown letter (x)", "system/Observation.rx"),
        ("upper-case permissions", "system/Observation.RS"),
        ("upper-case context", "System/Observation.rs"),
        ("lower-case resource type", "system/observation.rs"),
        ("unknown context", "practitioner/Observation.rs"),
        ("unknown resource type", "system/Foo.rs"),
    ];
    let mut cases: Vec<Case> = rows
        .into_iter()
        .map(|(label, scope)| {
            case(
                S1,
                format!("invalid scope ({label}) is listed and grants nothing"),
            )
            .scopes(&format!("{scope} openid"))
            .line("GET", "Observation/1")
            .deny(Reason::NoMatchingScope)
            .ignored(&[scope])
        })
        .collect();
    cases.extend([
        case(S1, "missing '.' and permissions is invalid")
            .scopes("system/Observation")
            .line("GET", "Observation?code=x")
            .deny(Reason::NoMatchingScope)
            .ignored(&["system/Observation"]),
        case(S1, "one bad scope does not invalidate the others (union)")
            .scopes("patient/Observation.sr patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow()
            .grant_scopes(&["patient/Observation.rs"])
            .ignored(&["patient/Observation.sr"]),
        case(S1, "a bad scope on another type leaves a valid one working")
            .scopes("patient/Observation.sr patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition("Patient/123"))
            .allow()
            .ignored(&["patient/Observation.sr"]),
        case(S1, "an invalid scope reported on a deny too")
            .scopes("patient/Observation.sr patient/Condition.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::NoMatchingScope)
            .ignored(&["patient/Observation.sr"]),
    ]);
    cases
}

/// Unsupported granular scopes grant nothing, never the whole type.
fn granular_grammar() -> Vec<Case> {
    // Each scope would match the stored resource if its filter were dropped.
    let unsupported: [(&str, &str); 16] = [
        (
            "modifier code:in",
            "patient/Observation.rs?code:in=http://example.org/vs",
        ),
        (
            "chain subject.name",
            "patient/Observation.rs?subject.name=peter",
        ),
        (
            "_include",
            "patient/Observation.rs?_include=Observation:subject",
        ),
        (
            "_revinclude",
            "patient/Observation.rs?_revinclude=Provenance:target",
        ),
        (
            "_has",
            "patient/Observation.rs?_has:Observation:patient:code=1234",
        ),
        (
            "_filter",
            "patient/Observation.rs?_filter=code%20eq%202345-7",
        ),
        // `_query` runs a named query in the search's place (defined in R4 too).
        ("_query", "patient/Observation.rs?_query=mine"),
        // FHIR's `\,` escape is not read: `a\,b` could be one code or two.
        ("a backslash", "patient/Observation.rs?code=a%5C,b"),
        ("missing =", "patient/Observation.rs?category"),
        ("unknown parameter", "patient/Observation.rs?colour=red"),
        (
            "* with a type-specific parameter",
            "patient/*.rs?category=laboratory",
        ),
        (
            "bad percent-encoding",
            "patient/Observation.rs?category=%ZZ",
        ),
        ("empty query", "patient/Observation.rs?"),
        ("trailing &", "patient/Observation.rs?category=laboratory&"),
        (
            "R5-only common parameter _in on R4",
            "patient/*.rs?_in=List/1",
        ),
        (
            "a parameter of another type",
            "patient/Observation.rs?clinical-status=active",
        ),
    ];
    let mut cases: Vec<Case> = unsupported
        .into_iter()
        .map(|(label, scope)| {
            case(
                S1,
                format!("unsupported granular scope ({label}) grants nothing, not the whole type"),
            )
            .scopes(scope)
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .deny(Reason::NoMatchingScope)
            .ignored(&[scope])
        })
        .collect();
    cases.extend([
        case(S1, "R5-only parameter participant-actor on an R4 Condition scope")
            .scopes("patient/Condition.rs?participant-actor=Patient/123")
            .patient("123")
            .line("GET", "Condition?clinical-status=active")
            .deny(Reason::NoMatchingScope)
            .ignored(&["patient/Condition.rs?participant-actor=Patient/123"]),
        case(S1, "unsupported granular scope does not grant a search either")
            .scopes("patient/Observation.rs?code:in=http://example.org/vs")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::NoMatchingScope),
        case(S1, "unsupported granular scope beside a plain one: the plain one grants")
            .scopes("patient/Observation.rs?code:in=http://example.org/vs patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .grant_scopes(&["patient/Observation.rs"])
            .no_filters()
            .ignored(&["patient/Observation.rs?code:in=http://example.org/vs"]),
        case(S1, "granular values are percent-decoded")
            .scopes(
                "patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Claboratory",
            )
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .filters(&[("category", &[LAB])]),
        case(S1, "comma separates alternatives inside one value")
            .scopes("system/Observation.rs?category=laboratory,vital-signs")
            .line("GET", "Observation")
            .allow()
            .filters(&[("category", &["laboratory", "vital-signs"])]),
        case(S1, "& separates items that are ANDed")
            .scopes("system/Observation.rs?category=laboratory&status=final")
            .line("GET", "Observation")
            .allow()
            .filters(&[("category", &["laboratory"]), ("status", &["final"])]),
        case(S1, "* accepts a common parameter (_tag)")
            .scopes("patient/*.rs?_tag=http://example.org/tags|research")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .allow()
            .filters(&[("_tag", &["http://example.org/tags|research"])]),
        case(S1, "* accepts a common parameter (_profile)")
            .scopes(
                "system/*.rs?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
            )
            .line("GET", "Patient?family=chalmers")
            .allow()
            .filters(&[(
                "_profile",
                &["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
            )]),
        case(S1, "policy: v1 permissions with a granular query grant nothing")
            .scopes("patient/Observation.read?category=laboratory")
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::NoMatchingScope)
            .ignored(&["patient/Observation.read?category=laboratory"]),
    ]);
    cases
}

fn non_resource_scopes() -> Vec<Case> {
    vec![
        case(S1, "identity, launch and refresh scopes grant no resource access")
            .scopes(
                "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access",
            )
            .patient("123")
            .fhir_user("Patient/123")
            .line("GET", "Patient/123")
            .deny(Reason::NoMatchingScope)
            .no_grants(),
        case(S1, "launch/x?role= and extension scopes grant no resource access")
            .scopes(
                "launch/encounter?role=https://example.org/roles/nurse __custom_all https://example.org/scopes/everything",
            )
            .patient("123")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::NoMatchingScope)
            .no_grants(),
        case(S1, "non-resource scopes grant no search either")
            .scopes("openid fhirUser launch/patient offline_access")
            .patient("123")
            .line("GET", "?_type=Observation")
            .deny(Reason::NoMatchingScope),
        case(S1, "non-resource scopes beside a resource scope do not disturb it")
            .scopes("openid fhirUser launch/patient offline_access patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(obs_of("123"))
            .allow()
            .grant_scopes(&["patient/Observation.rs"]),
    ]
}

fn strict_mode() -> Vec<Case> {
    vec![
        case(S1, "strict mode refuses a token mixing v1 and v2")
            .policy(|policy| policy.strict_scopes = true)
            .scopes("patient/Observation.read patient/Condition.rs")
            .patient("123")
            .line("GET", "Condition/1")
            .stored(condition("Patient/123"))
            .deny(Reason::NoMatchingScope)
            .ignored(&["patient/Observation.read", "patient/Condition.rs"]),
        case(S1, "strict mode refuses a token mixing contexts")
            .policy(|policy| policy.strict_scopes = true)
            .scopes("patient/Observation.rs user/Observation.rs")
            .patient("123")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation?code=2345-7")
            .deny(Reason::NoMatchingScope)
            .ignored(&["patient/Observation.rs", "user/Observation.rs"]),
        case(
            S1,
            "strict mode accepts uniform v2 patient scopes with non-resource scopes",
        )
        .policy(|policy| policy.strict_scopes = true)
        .scopes("openid fhirUser launch/patient patient/Observation.rs patient/Condition.rs")
        .patient("123")
        .line("GET", "Observation/1")
        .stored(obs_of("123"))
        .allow(),
        case(S1, "strict mode accepts uniform v1 scopes")
            .policy(|policy| policy.strict_scopes = true)
            .scopes("user/Observation.read user/Condition.write")
            .fhir_user("Practitioner/7")
            .line("GET", "Observation/1")
            .allow(),
        case(
            S1,
            "strict mode is off by default: mixing v1, v2 and contexts is fine",
        )
        .scopes("patient/Observation.read user/Condition.rs")
        .patient("123")
        .fhir_user("Practitioner/7")
        .line("GET", "Observation/1")
        .stored(obs_of("123"))
        .allow(),
    ]
}

fn bad_input() -> Vec<Case> {
    vec![
        case(S0, "unknown resource type in the request")
            .scopes("system/*.cruds")
            .line("GET", "Foo/1")
            .deny(Reason::UnsupportedRequest),
        case(S0, "create of an unknown resource type")
            .scopes("system/*.cruds")
            .line("POST", "Foo")
            .proposed(json!({ "resourceType": "Foo" }))
            .deny(Reason::UnsupportedRequest),
        case(S0, "search of an unknown resource type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Foo?name=x")
            .deny(Reason::UnsupportedRequest),
        case(S0, "R5 type DeviceUsage requested on an R4 server")
            .scopes("system/*.rs")
            .line("GET", "DeviceUsage/1")
            .deny(Reason::UnsupportedRequest),
        case(S0, "stored JSON of the wrong resource type")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "Observation/1")
            .stored(condition("Patient/123"))
            .deny(Reason::UnsupportedRequest),
        case(S0, "new JSON of the wrong resource type")
            .scopes("system/*.cruds")
            .line("POST", "Observation")
            .proposed(condition("Patient/123"))
            .deny(Reason::UnsupportedRequest),
        case(S0, "new resource id differs from the URL id")
            .scopes("patient/Observation.u")
            .patient("123")
            .line("PUT", "Observation/1")
            .stored(obs_of("123"))
            .proposed(with(obs_of("123"), "id", json!("2")))
            .deny(Reason::UnsupportedRequest),
        case(S0, "stored resource id differs from the URL id")
            .scopes("patient/Observation.rs")
            .patient("123")
            .line("GET", "Observation/2")
            .stored(obs_of("123"))
            .deny(Reason::UnsupportedRequest),
        case(S0, "unknown type in _type of a system search")
            .scopes("patient/*.rs")
            .patient("123")
            .line("GET", "?_type=Observation,Foo")
            .deny(Reason::UnsupportedRequest),
        case(S0, "compartment search in a type that is no compartment")
            .scopes("system/*.rs")
            .line("GET", "Observation/1/Condition")
            .deny(Reason::UnsupportedRequest),
        case(S0, "a bare POST to the base is not decided as one request")
            .scopes("system/*.cruds")
            .line("POST", "")
            .deny(Reason::UnsupportedRequest),
    ]
}

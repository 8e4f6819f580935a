use serde_json::json;

use super::*;

/// The request line an evaluation of `action` on `resource` is read as.
fn parts(action: Value, resource: Value) -> Result<(String, String), Unreadable> {
    let subject = json!({ "type": "access_token", "id": "t" });
    read(Some(&subject), Some(&action), Some(&resource), None)
        .map(|evaluation| (evaluation.method, evaluation.path))
}

fn line(action: Value, resource: Value) -> (String, String) {
    parts(action, resource).unwrap()
}

#[test]
fn an_http_method_takes_the_path_from_the_resource_id() {
    assert_eq!(
        line(
            json!({ "name": "GET" }),
            json!({ "type": "fhir_request", "id": "Observation?code=x" })
        ),
        ("GET".to_owned(), "Observation?code=x".to_owned())
    );
}

#[test]
fn fhir_interactions_become_their_request_lines() {
    let cases = [
        (
            "read",
            "Observation",
            "o1",
            json!({}),
            "GET",
            "Observation/o1",
        ),
        (
            "vread",
            "Observation",
            "o1",
            json!({ "version_id": "2" }),
            "GET",
            "Observation/o1/_history/2",
        ),
        ("update", "Patient", "123", json!({}), "PUT", "Patient/123"),
        ("patch", "Patient", "123", json!({}), "PATCH", "Patient/123"),
        (
            "delete",
            "Patient",
            "123",
            json!({}),
            "DELETE",
            "Patient/123",
        ),
        (
            "history-instance",
            "Patient",
            "123",
            json!({}),
            "GET",
            "Patient/123/_history",
        ),
        (
            "history-type",
            "Patient",
            "",
            json!({}),
            "GET",
            "Patient/_history",
        ),
        (
            "create",
            "Observation",
            "",
            json!({}),
            "POST",
            "Observation",
        ),
        (
            "search-type",
            "Observation",
            "",
            json!({}),
            "GET",
            "Observation",
        ),
        (
            "search-type",
            "Observation",
            "",
            json!({ "query": "code=x&patient=123" }),
            "GET",
            "Observation?code=x&patient=123",
        ),
    ];
    for (name, resource_type, id, properties, method, path) in cases {
        let resource = json!({ "type": resource_type, "id": id, "properties": properties });
        assert_eq!(
            line(json!({ "name": name }), resource),
            (method.to_owned(), path.to_owned()),
            "{name}"
        );
    }
}

#[test]
fn a_part_that_could_carry_another_request_is_refused() {
    let refused = [
        // A type or an id with a path or query of its own.
        (
            json!({ "name": "read" }),
            json!({ "type": "Observation/o2", "id": "o1" }),
        ),
        (
            json!({ "name": "read" }),
            json!({ "type": "Observation", "id": "o1?_include=*" }),
        ),
        (
            json!({ "name": "read" }),
            json!({ "type": "Observation", "id": "o1/_history" }),
        ),
        (json!({ "name": "read" }), json!({ "type": "Observation" })),
        // An id on a type-level interaction, a query outside search.
        (
            json!({ "name": "search-type" }),
            json!({ "type": "Observation", "id": "o1" }),
        ),
        (
            json!({ "name": "read" }),
            json!({ "type": "Observation", "id": "o1", "properties": { "query": "x=1" } }),
        ),
        // An HTTP method with a resource that is not the request line.
        (
            json!({ "name": "GET" }),
            json!({ "type": "Observation", "id": "o1" }),
        ),
        // Unknown actions, wrong types.
        (
            json!({ "name": "get" }),
            json!({ "type": "fhir_request", "id": "Observation" }),
        ),
        (
            json!({ "name": "$everything" }),
            json!({ "type": "Patient", "id": "1" }),
        ),
        (
            json!({ "name": 7 }),
            json!({ "type": "fhir_request", "id": "Observation" }),
        ),
        (
            json!({}),
            json!({ "type": "fhir_request", "id": "Observation" }),
        ),
        (
            json!({ "name": "vread" }),
            json!({ "type": "Observation", "id": "o1" }),
        ),
        // A query or version beside an HTTP line, which would go unread.
        (
            json!({ "name": "GET" }),
            json!({ "type": "fhir_request", "id": "Observation",
                    "properties": { "query": "patient=456" } }),
        ),
        (
            json!({ "name": "GET" }),
            json!({ "type": "fhir_request", "id": "Observation/o1",
                    "properties": { "version_id": "1" } }),
        ),
        // A member this face does not read.
        (
            json!({ "name": "update" }),
            json!({ "type": "Observation", "id": "o1",
                    "properties": { "stord": { "resourceType": "Observation" } } }),
        ),
    ];
    for (action, resource) in refused {
        assert!(
            parts(action.clone(), resource.clone()).is_err(),
            "{action} {resource}"
        );
    }
}

#[test]
fn the_subject_is_an_access_token_and_the_rest_is_typed() {
    let action = json!({ "name": "GET" });
    let resource = json!({ "type": "fhir_request", "id": "Observation" });
    let user = json!({ "type": "user", "id": "alice" });
    assert!(read(Some(&user), Some(&action), Some(&resource), None).is_err());
    assert!(read(None, Some(&action), Some(&resource), None).is_err());
    let anonymous = json!({ "type": "access_token" });
    let evaluation = read(Some(&anonymous), Some(&action), Some(&resource), None).unwrap();
    assert_eq!(evaluation.token, "", "no id: no token");
    let context = json!({ "fhir_server": "a" });
    let evaluation = read(
        Some(&anonymous),
        Some(&action),
        Some(&resource),
        Some(&context),
    )
    .unwrap();
    assert_eq!(evaluation.fhir_server, "a");
    let bad_context = json!({ "fhir_server": ["a"] });
    assert!(
        read(
            Some(&anonymous),
            Some(&action),
            Some(&resource),
            Some(&bad_context)
        )
        .is_err()
    );
}

#[test]
fn headers_are_matched_without_case_and_never_twice() {
    let subject = json!({ "type": "access_token", "id": "t" });
    let action = json!({ "name": "POST" });
    let resource = json!({
        "type": "fhir_request",
        "id": "Observation",
        "properties": { "headers": { "If-None-Exist": "identifier=x" } },
    });
    let evaluation = read(Some(&subject), Some(&action), Some(&resource), None).unwrap();
    assert_eq!(evaluation.headers["if-none-exist"], "identifier=x");
    let twice = json!({
        "type": "fhir_request",
        "id": "Observation",
        "properties": { "headers": { "X-HTTP-Method-Override": "GET", "x-http-method-override": "DELETE" } },
    });
    assert!(read(Some(&subject), Some(&action), Some(&twice), None).is_err());
}

#[test]
fn debug_leaves_the_token_and_header_values_out() {
    let subject = json!({ "type": "access_token", "id": "secret-token-value" });
    let action = json!({ "name": "GET" });
    let resource = json!({ "type": "fhir_request", "id": "Observation" });
    let mut evaluation = read(Some(&subject), Some(&action), Some(&resource), None).unwrap();
    evaluation
        .headers
        .insert("authorization".into(), "Bearer other-secret".into());
    let shown = format!("{evaluation:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("authorization"), "{shown}");
}

/// AuthZEN 1.0 §10.1.1: "receivers MUST ignore unknown fields present in request ...
/// bodies"; only `resource.properties`, this service's own, is read strictly.
#[test]
fn members_outside_resource_properties_are_ignored() {
    let subject = json!({ "type": "access_token", "id": "t", "email": "x@example.org" });
    let action = json!({ "name": "read", "unheard_of": true });
    let resource =
        json!({ "type": "Observation", "id": "o1", "stored": { "resourceType": "Observation" } });
    let evaluation = read(Some(&subject), Some(&action), Some(&resource), None).unwrap();
    assert_eq!(evaluation.path, "Observation/o1");
    assert!(
        evaluation.stored.is_none(),
        "a stored outside properties is not read"
    );
    let strict = json!({ "type": "Observation", "id": "o1", "properties": { "stord": {} } });
    let error = read(Some(&subject), Some(&action), Some(&strict), None).unwrap_err();
    assert!(
        error.0.starts_with("resource.properties.stord"),
        "{}",
        error.0
    );
}

#[test]
fn a_structured_type_is_a_capitalised_fhir_type() {
    let search = json!({ "name": "search-type" });
    assert!(parts(search.clone(), json!({ "type": "metadata" })).is_err());
    assert_eq!(
        line(search, json!({ "type": "Observation" })),
        ("GET".to_owned(), "Observation".to_owned())
    );
}

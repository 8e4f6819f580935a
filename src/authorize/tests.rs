use tonic::Code;

use super::*;
use crate::decision::Reason;
use crate::fhir::Interaction;

#[test]
fn each_refusal_has_one_label_and_one_status() {
    let token = Refusal::Token(TokenError::Expired);
    assert_eq!(token.as_str(), "token_expired");
    assert_eq!(
        (token.status().http, token.status().grpc),
        (401, Code::Unauthenticated)
    );
    let invalid = Refusal::InvalidRequest("x".to_owned());
    assert_eq!(invalid.as_str(), "unsupported_request");
    assert_eq!(
        (invalid.status().http, invalid.status().grpc),
        (400, Code::InvalidArgument)
    );
    assert_eq!(Refusal::NoFhirBase.as_str(), "no_fhir_base");
    assert_eq!(Refusal::NoFhirBase.status().http, 403);
    let body = Refusal::BodyRequired("x".to_owned());
    assert_eq!(body.status().grpc, Code::PermissionDenied);
    for (refusal, name, http, grpc) in [
        (
            Refusal::UnknownServer("x".to_owned()),
            "unknown_fhir_server",
            400,
            Code::InvalidArgument,
        ),
        (
            Refusal::CallerUnauthenticated,
            "caller_unauthenticated",
            403,
            Code::Unauthenticated,
        ),
        (
            Refusal::CallerNotAllowed("x".to_owned()),
            "caller_not_allowed",
            403,
            Code::PermissionDenied,
        ),
    ] {
        assert_eq!(refusal.as_str(), name);
        assert_eq!((refusal.status().http, refusal.status().grpc), (http, grpc));
    }
    assert_eq!(decision_status(Reason::NoMatchingScope).http, 403);
    assert_eq!(decision_status(Reason::UnsupportedRequest).http, 400);
}

#[test]
fn every_token_error_is_named_as_the_api_names_it() {
    let errors = [
        (TokenError::Missing, "token_missing"),
        (TokenError::Malformed(String::new()), "token_malformed"),
        (
            TokenError::BadSignature(String::new()),
            "token_bad_signature",
        ),
        (TokenError::WrongIssuer(String::new()), "token_wrong_issuer"),
        (TokenError::WrongAudience, "token_wrong_audience"),
        (TokenError::Expired, "token_expired"),
        (TokenError::NotYetValid, "token_not_yet_valid"),
        (TokenError::Inactive, "token_inactive"),
    ];
    for (error, name) in errors {
        assert_eq!(Refusal::Token(error).as_str(), name);
    }
}

#[test]
fn an_http_line_is_read_into_a_fhir_request() {
    let line = HttpLine {
        method: "GET",
        path: "Observation/o1",
    };
    let request = line.read([]).unwrap();
    assert_eq!(request.interaction, Interaction::Read);
    assert_eq!(request.id.as_deref(), Some("o1"));
    let garbage = HttpLine {
        method: "GET",
        path: "Observation/1/2/3/4/5",
    };
    assert!(matches!(garbage.read([]), Err(Refusal::InvalidRequest(_))));
}

#[test]
fn a_method_override_to_another_method_is_refused() {
    let line = HttpLine {
        method: "POST",
        path: "Observation/_search",
    };
    // Any spelling a server may read as one: CGI, WSGI and PHP read `_` as `-`.
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "X-HTTP-Method-Override",
        "X_HTTP_Method_Override",
        "x_method-override",
    ] {
        let refused = line.read([("accept", "application/fhir+json"), (name, "DELETE")]);
        assert!(
            matches!(&refused, Err(Refusal::InvalidRequest(message)) if message.contains("DELETE")),
            "{name}: {refused:?}"
        );
    }
    // Every override header counts, not only the first one present.
    let second = line.read([
        ("x-http-method-override", "POST"),
        ("x_http_method_override", "DELETE"),
    ]);
    assert!(
        matches!(second, Err(Refusal::InvalidRequest(_))),
        "{second:?}"
    );
    // Naming the request's own method changes nothing; nor does a name that only looks alike.
    let same = line.read([
        ("x-http-method-override", "post"),
        ("x-http-methods", "DELETE"),
    ]);
    assert_eq!(same.unwrap().interaction, Interaction::SearchType);
}

#[test]
fn a_cascading_delete_is_refused() {
    let line = HttpLine {
        method: "DELETE",
        path: "Observation/o1",
    };
    for name in ["x-cascade", "X_Cascade"] {
        let refused = line.read([(name, "delete")]);
        assert!(
            matches!(&refused, Err(Refusal::InvalidRequest(message)) if message.contains("x-cascade")),
            "{refused:?}"
        );
    }
    assert!(line.read([]).is_ok());
    let in_query = HttpLine {
        method: "DELETE",
        path: "Observation/o1?_cascade=delete",
    };
    assert!(matches!(in_query.read([]), Err(Refusal::InvalidRequest(_))));
}

/// The faces read `If-None-Exist` by its name; another spelling a server may read as it
/// would make a conditional create of what the service decides as a plain one.
#[test]
fn if_none_exist_is_read_only_by_its_name() {
    let line = HttpLine {
        method: "POST",
        path: "Observation",
    };
    assert!(line.read([("If-None-Exist", "identifier=x|1")]).is_ok());
    let refused = line.read([("if_none_exist", "identifier=x|1")]);
    assert!(
        matches!(&refused, Err(Refusal::InvalidRequest(message)) if message.contains("if_none_exist")),
        "{refused:?}"
    );
}

#[test]
fn only_reads_of_a_public_path_are_public() {
    let public = vec!["/Questionnaire/intake/".to_owned()];
    let get = HttpLine {
        method: "GET",
        path: "Questionnaire/intake?_format=json",
    };
    assert!(get.is_public_path(&public));
    let head = HttpLine {
        method: "HEAD",
        ..get
    };
    assert!(head.is_public_path(&public));
    let post = HttpLine {
        method: "POST",
        ..get
    };
    assert!(!post.is_public_path(&public));
    let other = HttpLine {
        method: "GET",
        path: "Questionnaire/other",
    };
    assert!(!other.is_public_path(&public));
    assert!(!get.is_public_path(&[]));
    // A query that brings in other resources is never public.
    for query in [
        "_revinclude=QuestionnaireResponse:questionnaire",
        "_include=Questionnaire:subject",
        "_has:QuestionnaireResponse:questionnaire:status=completed",
        "subject.name=Ann",
        "%5Finclude=x",
        "code=%zz",
    ] {
        let line = HttpLine {
            method: "GET",
            path: &format!("Questionnaire/intake?{query}"),
        };
        assert!(!line.is_public_path(&public), "{query}");
    }
}

#[test]
fn headers_are_read_by_name_without_case_each_once() {
    let given = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    };
    let lower = given(&[("if-none-exist", "a"), ("content-type", "b")]);
    let read = headers_by_name(&lower).unwrap();
    assert!(matches!(read, std::borrow::Cow::Borrowed(_)));
    let mixed = given(&[("If-None-Exist", "a"), ("Content-Type", "b")]);
    let read = headers_by_name(&mixed).unwrap();
    assert_eq!(read.get("if-none-exist").map(String::as_str), Some("a"));
    assert_eq!(read.get("content-type").map(String::as_str), Some("b"));
    let twice = given(&[("If-None-Exist", "a"), ("if-none-exist", "b")]);
    let refusal = headers_by_name(&twice).unwrap_err();
    assert!(refusal.to_string().contains("given twice"), "{refusal}");
}

#[test]
fn a_batch_is_refused_past_its_limit() {
    assert!(batch_size_refusal(MAX_BATCH_ENTRIES).is_none());
    let refusal = batch_size_refusal(MAX_BATCH_ENTRIES + 1).unwrap();
    assert_eq!(refusal.status().grpc, Code::InvalidArgument);
    assert!(refusal.to_string().contains("10000"));
}

#[test]
fn a_check_shows_no_token_in_debug_output() {
    let request = crate::fhir::parse_request_line("GET", "Observation/1").unwrap();
    let check = Check {
        raw_token: "Bearer eyJ.secret.token",
        request: &request,
        line: None,
        stored: None,
        proposed: None,
        if_none_exist: None,
    };
    let shown = format!("{check:?}");
    assert!(
        !shown.contains("secret") && shown.contains("Observation"),
        "{shown}"
    );
}

#[test]
fn a_request_line_is_debugged_without_its_query() {
    let line = HttpLine {
        method: "GET",
        path: "Observation?access_token=secret-token&patient=123",
    };
    let debugged = format!("{line:?}");
    assert!(!debugged.contains("secret-token"), "{debugged}");
    assert!(!debugged.contains("patient"), "{debugged}");
    assert!(debugged.contains("\"Observation\""), "{debugged}");
    assert!(debugged.contains("query_bytes: 37"), "{debugged}");
}

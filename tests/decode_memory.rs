//! What a message is weighed at before it is decoded (`grpc::wire::weigh`), which the call
//! then holds from `max_buffered_request_bytes`, is at least what prost's decoding of it
//! takes at its peak: for the API's and Envoy's messages built to be large decoded for their
//! bytes (empty entries, parameters, headers, structs), for ordinary ones, and for ordinary
//! ones with bytes changed or cut short, which prost may refuse part way. A counting
//! allocator bounds the peak from above, and checks what the faces hold ahead for a batch entry
//! once it is read and decided.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::alloc::System;
use std::sync::Mutex;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest as EnvoyHttp, Request as EnvoyRequest,
};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, ProcessingRequest, processing_request,
};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use prost::Message;
use smart_authz::authorize::DECIDED_ENTRY_BYTES;
use smart_authz::decision::{BundleEntry, Decision, Engine};
use smart_authz::fhir::{FhirVersion, parse_request_line};
use smart_authz::grpc::pb;
use smart_authz::grpc::wire::{Schema, weigh};
use smart_authz::smart::TokenContext;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator counts every thread: one test at a time, each building its messages and
/// measuring them alone.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What an allocator spends beyond the bytes asked for, on average per allocation: glibc's
/// 8-byte header and rounding to 16 (as `tests/cache_memory.rs` counts it).
const MALLOC_OVERHEAD: usize = 16;

/// A bound from above on the most `M::decode(bytes)` holds at once, as stats_alloc's totals
/// tell it: every byte it allocates, and half of what reallocations grew blocks by. A
/// vector that doubles has grown by about its final size in all, and held its last old
/// block, half that, beside its new one while it was copied. Whether prost accepts the
/// bytes or refuses them part way (dropping what it built), with which of the two it did.
///
/// The allocator counts every thread, and the test harness's own threads allocate while a
/// test runs: the least of three decodings is the one no other thread added to.
fn peak_of_decoding<M: Message + Default>(bytes: &[u8]) -> (usize, bool) {
    let mut least = (usize::MAX, false);
    for _ in 0..3 {
        let region = Region::new(ALLOCATOR);
        let decoded = M::decode(bytes);
        let change = region.change();
        let accepted = decoded.is_ok();
        drop(decoded);
        let grown = usize::try_from(change.bytes_reallocated.max(0)).unwrap();
        let peak = change.bytes_allocated
            + grown / 2
            + (change.allocations + change.reallocations) * MALLOC_OVERHEAD;
        least = least.min((peak, accepted));
    }
    least
}

/// A unary method, as the listener weighs its requests: by the schema of its service, led
/// by its request message's fields (`Schema::reading`).
struct Method {
    schema: Schema,
    path: &'static str,
}

const CHECK_ACCESS: Method = Method {
    schema: Schema::API,
    path: "/smartauthz.v1.AuthzService/CheckAccess",
};
const BATCH_CHECK_ACCESS: Method = Method {
    schema: Schema::BATCH,
    path: "/smartauthz.v1.AuthzService/BatchCheckAccess",
};
const ENVOY_CHECK: Method = Method {
    schema: Schema::ENVOY,
    path: "/envoy.service.auth.v3.Authorization/Check",
};
/// A stream: each message is weighed as one request is.
const EXT_PROC: Method = Method {
    schema: Schema::ENVOY,
    path: "/envoy.service.ext_proc.v3.ExternalProcessor/Process",
};

fn request_headers(headers: Vec<HeaderValue>) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::RequestHeaders(HttpHeaders {
            headers: Some(HeaderMap { headers }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Weighed at least at the peak of its decoding, led by its request's fields (as the
/// listener weighs it) and not, never more when led, and, for an ordinary message, at most
/// `at_most` times the peak.
fn assert_weighed<M: Message + Default>(name: &str, message: &M, method: &Method, at_most: f64) {
    let bytes = message.encode_to_vec();
    let (peak, accepted) = peak_of_decoding::<M>(&bytes);
    assert!(accepted, "{name} decodes");
    let unled = weigh(&bytes, method.schema).unwrap();
    let weight = weigh(&bytes, method.schema.reading(method.path)).unwrap();
    let ratio = weight as f64 / peak as f64;
    eprintln!(
        "{name}: {} bytes, decoded peak {peak}, weighed {weight} ({ratio:.2}), {unled} unled",
        bytes.len()
    );
    assert!(
        weight >= peak,
        "{name}: weighed {weight} below the peak {peak}"
    );
    assert!(weight <= unled, "{name}: {weight} led, {unled} not");
    assert!(
        ratio <= at_most,
        "{name}: weighed {ratio:.2} times the peak"
    );
}

fn check_access(request: pb::check_access_request::Request) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        request: Some(request),
        ..Default::default()
    }
}

fn stored_facts(facts: pb::ResourceFacts) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        stored: Some(pb::Resource {
            content: Some(pb::resource::Content::Facts(facts)),
        }),
        ..Default::default()
    }
}

fn envoy_check(http: EnvoyHttp, metadata: Option<Metadata>) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(EnvoyRequest {
                http: Some(http),
                ..Default::default()
            }),
            metadata_context: metadata,
            ..Default::default()
        }),
    }
}

fn metadata(value: Value) -> Option<Metadata> {
    Some(Metadata {
        filter_metadata: [(
            "filter".to_owned(),
            Struct {
                fields: [("a".to_owned(), value)].into(),
            },
        )]
        .into(),
        ..Default::default()
    })
}

/// Just past a power of two: a vector of as many elements has just doubled, its peak the
/// largest for its length.
const MANY: usize = 65_537;

/// No bound on the ratio: what a hostile message is weighed at above its peak is only its
/// own refusal the sooner.
const ANY: f64 = f64::INFINITY;

#[test]
fn api_messages_large_for_their_bytes() {
    let _alone = alone();
    assert_weighed(
        "empty parameters",
        &check_access(pb::check_access_request::Request::Fhir(pb::FhirRequest {
            params: vec![pb::SearchParam::default(); MANY],
            ..Default::default()
        })),
        &CHECK_ACCESS,
        ANY,
    );
    assert_weighed(
        "headers of distinct names",
        &check_access(pb::check_access_request::Request::Http(pb::HttpRequest {
            headers: (0..MANY)
                .map(|index| (format!("{index:x}"), String::new()))
                .collect(),
            ..Default::default()
        })),
        &CHECK_ACCESS,
        ANY,
    );
    assert_weighed(
        "empty compartments",
        &stored_facts(pb::ResourceFacts {
            compartments: vec![String::new(); MANY],
            search_values: Vec::new(),
        }),
        &CHECK_ACCESS,
        ANY,
    );
    assert_weighed(
        "empty search values",
        &stored_facts(pb::ResourceFacts {
            compartments: Vec::new(),
            search_values: vec![pb::SearchParam::default(); MANY],
        }),
        &CHECK_ACCESS,
        ANY,
    );
    assert_weighed(
        "a batch of one empty entry",
        &pb::BatchCheckAccessRequest {
            entries: vec![pb::BatchEntry::default()],
            ..Default::default()
        },
        &BATCH_CHECK_ACCESS,
        ANY,
    );
    assert_weighed(
        "a batch of 8,193 empty entries",
        &pb::BatchCheckAccessRequest {
            entries: vec![pb::BatchEntry::default(); 8_193],
            ..Default::default()
        },
        &BATCH_CHECK_ACCESS,
        ANY,
    );
}

#[test]
fn envoy_messages_large_for_their_bytes() {
    let _alone = alone();
    assert_weighed(
        "empty header values",
        &envoy_check(
            EnvoyHttp {
                header_map: Some(HeaderMap {
                    headers: vec![HeaderValue::default(); MANY],
                }),
                ..Default::default()
            },
            None,
        ),
        &ENVOY_CHECK,
        ANY,
    );
    assert_weighed(
        "a list of empty values",
        &envoy_check(
            EnvoyHttp::default(),
            metadata(Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: vec![Value::default(); MANY],
                })),
            }),
        ),
        &ENVOY_CHECK,
        ANY,
    );
    assert_weighed(
        "a list of empty structs",
        &envoy_check(
            EnvoyHttp::default(),
            metadata(Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: vec![
                        Value {
                            kind: Some(Kind::StructValue(Struct::default())),
                        };
                        MANY
                    ],
                })),
            }),
        ),
        &ENVOY_CHECK,
        ANY,
    );
    assert_weighed(
        "a struct of distinct names",
        &envoy_check(
            EnvoyHttp::default(),
            metadata(Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: (0..MANY)
                        .map(|index| (format!("{index:x}"), Value::default()))
                        .collect(),
                })),
            }),
        ),
        &ENVOY_CHECK,
        ANY,
    );
    let nested = (0..30).fold(Value::default(), |inner, _| Value {
        kind: Some(Kind::StructValue(Struct {
            fields: [("a".to_owned(), inner)].into(),
        })),
    });
    assert_weighed(
        "structs 30 deep",
        &envoy_check(EnvoyHttp::default(), metadata(nested)),
        &ENVOY_CHECK,
        ANY,
    );
    assert_weighed(
        "ext_proc: empty header values",
        &request_headers(vec![HeaderValue::default(); MANY]),
        &EXT_PROC,
        ANY,
    );
}

/// A token shaped as an RS256 JWT: base64url of JSON claims, and 342 characters of
/// signature.
fn token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let signature: String = (0..342)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[usize::try_from(state % 64).unwrap()])
        })
        .collect();
    format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3Qta2V5In0.{}.{signature}",
        "eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoidXNlci0xIiwiYXVkIjoiaHR0cHM6Ly9maGlyLmV4YW1wbGUiLCJzY29wZSI6InBhdGllbnQvT2JzZXJ2YXRpb24ucnMgcGF0aWVudC9Db25kaXRpb24ucnMgbGF1bmNoL3BhdGllbnQgb3BlbmlkIGZoaXJVc2VyIiwicGF0aWVudCI6IjEyMyIsImV4cCI6MTc5NjQ0Nzg4Mn0"
    )
}

/// What an ordinary call holds decoded is covered too, and the weight does not make it
/// many times larger than it is: the budget still holds as many such calls.
#[test]
fn ordinary_messages() {
    let _alone = alone();
    let token = token();
    let read = pb::CheckAccessRequest {
        access_token: token.clone(),
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: "Observation/o1".into(),
            ..Default::default()
        })),
        stored: Some(pb::Resource {
            content: Some(pb::resource::Content::Facts(pb::ResourceFacts {
                compartments: vec!["Patient/123".into()],
                search_values: Vec::new(),
            })),
        }),
        request_id: "r-1".into(),
        ..Default::default()
    };
    assert_weighed("a read with its token", &read, &CHECK_ACCESS, 8.0);
    let json = serde_json::to_vec(&serde_json::json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": { "reference": "Patient/123" },
        "note": (0..100).map(|index| serde_json::json!({ "text": format!("note {index}") })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let resource = pb::CheckAccessRequest {
        access_token: token.clone(),
        stored: Some(pb::Resource {
            content: Some(pb::resource::Content::Json(json)),
        }),
        ..read.clone()
    };
    assert_weighed("a read with a JSON resource", &resource, &CHECK_ACCESS, 2.0);
    let entry = pb::BatchEntry {
        request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: "Observation/o1".into(),
            ..Default::default()
        })),
        stored: read.stored.clone(),
        proposed: None,
    };
    assert_weighed(
        "a batch of 20 reads",
        &pb::BatchCheckAccessRequest {
            access_token: token.clone(),
            entries: vec![entry; 20],
            ..Default::default()
        },
        &BATCH_CHECK_ACCESS,
        8.0,
    );
    let http = EnvoyHttp {
        method: "GET".into(),
        path: "/fhir/Observation?patient=123".into(),
        host: "fhir.example".into(),
        headers: [
            ("authorization".to_owned(), format!("Bearer {token}")),
            ("accept".to_owned(), "application/fhir+json".to_owned()),
            (":authority".to_owned(), "fhir.example".to_owned()),
        ]
        .into(),
        ..Default::default()
    };
    assert_weighed(
        "an Envoy check",
        &envoy_check(http, None),
        &ENVOY_CHECK,
        8.0,
    );
    let header = |key: &str, value: &str| HeaderValue {
        key: key.to_owned(),
        raw_value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    assert_weighed(
        "ext_proc: request headers",
        &request_headers(vec![
            header(":path", "/fhir/Observation?patient=123"),
            header("authorization", &format!("Bearer {token}")),
            header("accept", "application/fhir+json"),
        ]),
        &EXT_PROC,
        8.0,
    );
    assert_weighed(
        "ext_proc: a response body",
        &ProcessingRequest {
            request: Some(processing_request::Request::ResponseBody(HttpBody {
                body: serde_json::to_vec(&serde_json::json!({
                    "resourceType": "Observation",
                    "id": "o1",
                    "subject": { "reference": "Patient/123" },
                }))
                .unwrap(),
                end_of_stream: true,
                ..Default::default()
            })),
            ..Default::default()
        },
        &EXT_PROC,
        8.0,
    );
}

/// What a batch entry takes once its request is read and decided, beside the message it
/// came from: each face holds [`DECIDED_ENTRY_BYTES`] a entry from the budget for it, as
/// several batches may be between their entries at once (`authorize::between_entries`).
/// Searches decided for a patient app's token of nine scopes (the perf tool's), the parsed
/// requests and the decisions kept, as a call keeps them until it answers.
#[test]
fn a_decided_batch_entry_takes_at_most_what_is_held_for_it() {
    let _alone = alone();
    let claims = serde_json::json!({
        "sub": "user",
        "client_id": "app",
        "patient": "123",
        "scope": "openid fhirUser launch/patient patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs",
    });
    let token = TokenContext::from_claims(&claims, FhirVersion::R4).unwrap();
    let engine = Engine::default();
    let lines: Vec<String> = (0..1_000)
        .map(|index| format!("Observation?patient=123&code=c{index}"))
        .collect();

    let region = Region::new(ALLOCATOR);
    let entries: Vec<BundleEntry> = lines
        .iter()
        .map(|line| BundleEntry {
            request: Ok(parse_request_line("GET", line).unwrap()),
            stored: None,
            proposed: None,
            if_none_exist: None,
            patch: None,
        })
        .collect();
    let decisions: Vec<Decision> = entries
        .iter()
        .map(|entry| engine.decide_entry(&token, entry))
        .collect();
    let change = region.change();

    assert!(decisions.iter().all(Decision::is_allowed));
    let live = change.bytes_allocated + usize::try_from(change.bytes_reallocated.max(0)).unwrap()
        - change.bytes_deallocated
        + (change.allocations - change.deallocations) * MALLOC_OVERHEAD;
    let per_entry = live / lines.len();
    eprintln!("a decided entry: {per_entry} bytes, {DECIDED_ENTRY_BYTES} held for it");
    assert!(
        per_entry <= DECIDED_ENTRY_BYTES,
        "a decided entry takes {per_entry} bytes, more than the {DECIDED_ENTRY_BYTES} held"
    );
    drop((entries, decisions));
}

/// Weighed, when it is not refused, at least at what prost allocates decoding it, led by
/// `method`'s request and not.
fn assert_covered<M: Message + Default>(bytes: &[u8], method: &Method) {
    let (peak, _) = peak_of_decoding::<M>(bytes);
    for schema in [method.schema.reading(method.path), method.schema] {
        if let Ok(weight) = weigh(bytes, schema) {
            assert!(
                weight >= peak,
                "weighed {weight}, peak {peak}: {bytes:02x?}"
            );
        }
    }
}

/// proptest's defaults (`PROPTEST_CASES` sets how many), with a fixed seed unless
/// `PROPTEST_RNG_SEED` gives one: the suite runs the same cases every time, and a longer
/// search is a variable away (20,000 random cases passed when the test was written).
fn mutations() -> proptest::prelude::ProptestConfig {
    let mut config = proptest::prelude::ProptestConfig {
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0x5eed_c0de);
    }
    config
}

/// A byte changed at each of `edits` (a position, wrapped to the length, and its new
/// value), then the bytes cut at `cut` (wrapped to the length plus one).
fn mutated(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    if !bytes.is_empty() {
        for &(at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
    }
    bytes.truncate(cut % (bytes.len() + 1));
    bytes
}

proptest::proptest! {
    #![proptest_config(mutations())]

    /// Ordinary requests of each face with bytes changed and cut short, as a hostile or
    /// broken peer sends them: what the walk finds, led by the request's fields or not,
    /// is never less than what prost builds of them before it accepts or refuses them.
    #[test]
    fn mutated_requests_are_weighed_at_least_at_their_decoding(
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..6),
        cut in proptest::prelude::any::<usize>(),
    ) {
        let _alone = alone();
        let token = token();
        let read = pb::CheckAccessRequest {
            access_token: token.clone(),
            request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
                method: "GET".into(),
                path: "Observation?code=http://loinc.org|8867-4".into(),
                headers: [("if-none-exist".to_owned(), "code=x".to_owned())].into(),
                ..Default::default()
            })),
            stored: Some(pb::Resource {
                content: Some(pb::resource::Content::Facts(pb::ResourceFacts {
                    compartments: vec!["Patient/123".into()],
                    search_values: vec![pb::SearchParam { name: "code".into(), value: "x".into() }],
                })),
            }),
            ..Default::default()
        };
        assert_covered::<pb::CheckAccessRequest>(&mutated(read.encode_to_vec(), &edits, cut), &CHECK_ACCESS);
        let batch = pb::BatchCheckAccessRequest {
            access_token: token.clone(),
            entries: vec![
                pb::BatchEntry {
                    request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
                        method: "GET".into(),
                        path: "Observation/o1".into(),
                        ..Default::default()
                    })),
                    stored: read.stored.clone(),
                    proposed: None,
                };
                3
            ],
            ..Default::default()
        };
        assert_covered::<pb::BatchCheckAccessRequest>(&mutated(batch.encode_to_vec(), &edits, cut), &BATCH_CHECK_ACCESS);
        let http = EnvoyHttp {
            method: "GET".into(),
            path: "/fhir/Observation?patient=123".into(),
            headers: [
                ("authorization".to_owned(), format!("Bearer {token}")),
                ("accept".to_owned(), "application/fhir+json".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        // Deep enough that a refusal's stack outgrows its first four entries.
        let nested = (0..8).fold(Value::default(), |inner, _| Value {
            kind: Some(Kind::StructValue(Struct { fields: [("a".to_owned(), inner)].into() })),
        });
        assert_covered::<CheckRequest>(&mutated(envoy_check(http, metadata(nested)).encode_to_vec(), &edits, cut), &ENVOY_CHECK);
        let headers = request_headers(vec![
            HeaderValue { key: ":path".into(), raw_value: b"/fhir/Patient/123".to_vec(), ..Default::default() },
            HeaderValue { key: "authorization".into(), raw_value: format!("Bearer {token}").into_bytes(), ..Default::default() },
        ]);
        assert_covered::<ProcessingRequest>(&mutated(headers.encode_to_vec(), &edits, cut), &EXT_PROC);
    }
}

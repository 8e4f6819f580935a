use prost::Message as _;

use super::*;
use crate::grpc::pb;

fn entry(index: usize) -> pb::BatchEntry {
    pb::BatchEntry {
        request: Some(pb::batch_entry::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            path: format!("Observation/o{index}"),
            headers: [("if-none-exist".to_owned(), "code=x".to_owned())].into(),
            ..Default::default()
        })),
        stored: Some(pb::Resource {
            content: Some(pb::resource::Content::Facts(pb::ResourceFacts {
                compartments: vec!["Patient/123".into()],
                search_values: vec![pb::SearchParam {
                    name: "code".into(),
                    value: "x".into(),
                }],
            })),
        }),
        ..Default::default()
    }
}

fn batch(entries: usize) -> Vec<u8> {
    pb::BatchCheckAccessRequest {
        access_token: "token".into(),
        entries: (0..entries).map(entry).collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

const ENTRIES: Option<(u32, usize)> = Some((3, 10_000));

#[test]
fn a_full_batch_passes_and_one_entry_more_is_refused() {
    assert_eq!(check(&batch(10_000), ENTRIES), Ok(()));
    assert_eq!(
        check(&batch(10_001), ENTRIES),
        Err(TooCostly::Entries(10_000))
    );
}

/// 2 bytes on the wire, some 270 in memory: refused before prost builds any.
#[test]
fn empty_entries_are_refused_by_their_count() {
    let empty: Vec<u8> = [0x1a, 0x00].repeat(2 * 1024 * 1024);
    assert!(check(&empty, ENTRIES).is_err());
    let few: Vec<u8> = [0x1a, 0x00].repeat(10_001);
    assert_eq!(check(&few, ENTRIES), Err(TooCostly::Entries(10_000)));
}

/// Fields deeper in a request count too: the parameters of a structured request, the
/// headers of an HTTP line.
#[test]
fn nested_fields_are_counted() {
    let params = pb::CheckAccessRequest {
        request: Some(pb::check_access_request::Request::Fhir(pb::FhirRequest {
            params: vec![pb::SearchParam::default(); MAX_FIELDS + 1],
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(check(&params.encode_to_vec(), None), Err(TooCostly::Fields));
    let headers = pb::CheckAccessRequest {
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            headers: (0..MAX_FIELDS / 2)
                .map(|index| (index.to_string(), String::new()))
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(
        check(&headers.encode_to_vec(), None),
        Err(TooCostly::Fields)
    );
}

/// A large resource is one field: its JSON is no message.
#[test]
fn a_large_json_resource_is_one_field() {
    let json = serde_json::to_vec(&serde_json::json!({
        "resourceType": "Observation",
        "note": (0..100_000).map(|index| serde_json::json!({ "text": index.to_string() })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let request = pb::CheckAccessRequest {
        access_token: "token".into(),
        stored: Some(pb::Resource {
            content: Some(pb::resource::Content::Json(json)),
        }),
        ..Default::default()
    };
    assert_eq!(check(&request.encode_to_vec(), None), Ok(()));
}

/// What is no protobuf message is left to tonic, which refuses it.
#[test]
fn bytes_that_are_no_message_are_left_to_the_decoder() {
    for bytes in [&b"\xff\xff\xff"[..], b"\x0a\x05ab", b"{\"a\":1}", b""] {
        assert_eq!(check(bytes, ENTRIES), Ok(()), "{bytes:?}");
    }
}

#[test]
fn varints_are_read_as_protobuf_writes_them() {
    assert_eq!(varint(&[0x96, 0x01, 7]), Some((150, &[7u8][..])));
    assert_eq!(varint(&[0x80; 11]), None);
    assert_eq!(varint(&[]), None);
}

/// The shortcut for small messages: the largest message it lets pass unread, filled with
/// empty fields at the top, holds fewer than the limit even counted at every depth.
#[test]
fn a_message_too_small_to_break_a_limit_is_not_read() {
    let filled = [0x1a, 0x00].repeat(MAX_FIELDS / MAX_DEPTH);
    assert!(filled.len() / 2 * MAX_DEPTH <= MAX_FIELDS);
    assert_eq!(check(&filled, None), Ok(()));
    let mut fields = 0;
    assert_eq!(
        count(&filled, 0, &mut fields, None),
        Some(Some(0)),
        "it is a message"
    );
    assert!(fields <= MAX_FIELDS / MAX_DEPTH);
}

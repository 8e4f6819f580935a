use prost::Message as _;

use super::*;
use crate::grpc::pb;

/// What prost's refusal holds for a message of four levels or fewer: every message here
/// but the deep ones.
const SHALLOW_REFUSAL: usize = refusal_bytes(4);

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

const BATCH_CHECK_ACCESS: &str = "/smartauthz.v1.AuthzService/BatchCheckAccess";

/// The batch's schema as the listener uses it, led by its request's fields, and not.
fn batch_schemas() -> [Schema; 2] {
    [Schema::BATCH.reading(BATCH_CHECK_ACCESS), Schema::BATCH]
}

#[test]
fn a_full_batch_passes_and_one_entry_more_is_refused() {
    for schema in batch_schemas() {
        assert!(weigh(&batch(10_000), schema).is_ok());
        assert_eq!(
            weigh(&batch(10_001), schema),
            Err(TooCostly::Entries(10_000))
        );
    }
}

/// 2 bytes on the wire, some 270 in memory: refused before prost builds any.
#[test]
fn empty_entries_are_refused_by_their_count() {
    for schema in batch_schemas() {
        let empty: Vec<u8> = [0x1a, 0x00].repeat(2 * 1024 * 1024);
        assert!(weigh(&empty, schema).is_err());
        let few: Vec<u8> = [0x1a, 0x00].repeat(10_001);
        assert_eq!(weigh(&few, schema), Err(TooCostly::Entries(10_000)));
    }
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
    assert_eq!(
        weigh(&params.encode_to_vec(), Schema::API),
        Err(TooCostly::Fields)
    );
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
        weigh(&headers.encode_to_vec(), Schema::API),
        Err(TooCostly::Fields)
    );
}

/// A large resource is one field: its JSON is no message. It weighs its bytes and little
/// more.
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
    let bytes = request.encode_to_vec();
    // The token, the resource, its content.
    assert_eq!(
        weigh(&bytes, Schema::API),
        Ok(2 * bytes.len() + 4 * FIELD_BYTES + SHALLOW_REFUSAL)
    );
}

/// What is no protobuf message from its start is weighed as its bytes: tonic refuses it.
#[test]
fn bytes_that_are_no_message_are_left_to_the_decoder() {
    for bytes in [&b"\xff\xff\xff"[..], b"\x0a\x05ab", b"{\"a\":1}", b""] {
        assert_eq!(
            weigh(bytes, Schema::BATCH),
            Ok(2 * bytes.len() + FIELD_BYTES + SHALLOW_REFUSAL),
            "{bytes:?}"
        );
    }
}

#[test]
fn varints_are_read_as_protobuf_writes_them() {
    assert_eq!(varint(&[0x96, 0x01, 7]), Some((150, &[7u8][..])));
    assert_eq!(varint(&[0x80; 11]), None);
    assert_eq!(varint(&[]), None);
}

/// Every field counted has at least two bytes of its own (its key and a value or a
/// length), outside the payloads of the fields inside it: a message holds at most half its
/// bytes in fields, at every depth together, whatever its payloads read as.
#[test]
fn a_message_holds_at_most_half_its_bytes_in_fields() {
    for message in [
        [0x1a, 0x00].repeat(1000),
        nested_structs(40).encode_to_vec(),
        batch(20),
        (0..=255).collect::<Vec<u8>>(),
    ] {
        let (fields, _) = walk(&message, 100);
        assert!(
            fields <= message.len() / 2,
            "{fields} fields in {}",
            message.len()
        );
    }
}

/// A cached `CheckAccess`, the hot path: its token is read as no message, and the call
/// holds its bytes and a few kilobytes.
#[test]
fn a_read_with_its_token_weighs_its_bytes_and_a_few_fields() {
    let request = pb::CheckAccessRequest {
        access_token: format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.{}",
            "e".repeat(500),
            "s".repeat(342)
        ),
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
        ..Default::default()
    };
    let bytes = request.encode_to_vec();
    let weight = weigh(&bytes, Schema::API).unwrap();
    // The token, the request, its method and path, the resource, its facts, a compartment,
    // and the most fields one of its strings starts as (one): had it been a message field,
    // prost would have built it before refusing the message.
    assert_eq!(weight, 2 * bytes.len() + 9 * FIELD_BYTES + SHALLOW_REFUSAL);
    // Led by `CheckAccessRequest`'s fields, the token is a string.
    let led = weigh(&bytes, Schema::API.reading(CHECK_ACCESS)).unwrap();
    assert_eq!(led, 2 * bytes.len() + 8 * FIELD_BYTES + SHALLOW_REFUSAL);
}

const CHECK_ACCESS: &str = "/smartauthz.v1.AuthzService/CheckAccess";

/// A header value made of 200 empty fields (`0a 00`): read as a possible message it is 200
/// fields; led by the request's type, it is the string prost copies out.
fn read_with_a_header(value: &str) -> Vec<u8> {
    pb::CheckAccessRequest {
        request: Some(pb::check_access_request::Request::Http(pb::HttpRequest {
            method: "GET".into(),
            // `G` reads as no field (wire type 7) whichever way it is read.
            path: "G".into(),
            headers: [("G".to_owned(), value.to_owned())].into(),
            ..Default::default()
        })),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn led_by_its_type_a_string_is_one_field_whatever_it_reads_as() {
    let value = "\n\0".repeat(200);
    let bytes = read_with_a_header(&value);
    let led = weigh(&bytes, Schema::API.reading(CHECK_ACCESS)).unwrap();
    // The HTTP request, its method, path and header, the header's name and value; and the
    // message's own containers.
    assert_eq!(led, 2 * bytes.len() + 7 * FIELD_BYTES + SHALLOW_REFUSAL);
    // Unled, the value's fields are read too, a level deeper than any message of it.
    let unled = led + 200 * FIELD_BYTES + refusal_bytes(5) - SHALLOW_REFUSAL;
    assert_eq!(weigh(&bytes, Schema::API), Ok(unled));
    // A method the descriptors do not name is walked as before.
    let unknown = Schema::API.reading("/smartauthz.v1.AuthzService/Unknown");
    assert_eq!(weigh(&bytes, unknown), Ok(unled));
}

/// A declared message cut off after many fields: prost built them before it refused the
/// request, and the led walk counts them, as the unled one does.
#[test]
fn led_by_its_type_a_message_cut_off_counts_what_came_before() {
    let headers = (0..200).map(|index| (format!("G{index}"), "G".to_owned()));
    let http = pb::HttpRequest {
        method: "GET".into(),
        headers: headers.collect(),
        ..Default::default()
    }
    .encode_to_vec();
    // The HTTP request (field 3) holds its fields and then a field whose length runs past
    // the end of everything.
    let mut payload = http;
    payload.extend([0x12, 0x7f]);
    let mut bytes = vec![0x1a];
    push_varint(&mut bytes, payload.len());
    bytes.extend(payload);
    let led = weigh(&bytes, Schema::API.reading(CHECK_ACCESS)).unwrap();
    // Each header is an entry, a name and a value; and the method.
    assert!(
        led >= 2 * bytes.len() + (3 * 200 + 1) * FIELD_BYTES,
        "{led}"
    );
    assert!(led <= weigh(&bytes, Schema::API).unwrap());
}

/// prost skips a field its message does not declare; the walk reads it as any payload, so
/// an older descriptor set could only make it count more.
#[test]
fn led_by_its_type_an_undeclared_field_is_still_read() {
    let mut bytes = read_with_a_header("v");
    let payload = [0x0a, 0x00].repeat(100);
    bytes.extend([0x9a, 0x06]); // field 99, length-delimited
    push_varint(&mut bytes, payload.len());
    bytes.extend(&payload);
    let led = weigh(&bytes, Schema::API.reading(CHECK_ACCESS)).unwrap();
    assert_eq!(
        led,
        2 * bytes.len() + (8 + 100) * FIELD_BYTES + SHALLOW_REFUSAL
    );
}

/// Envoy's header values and path are strings too, and its metadata's structs are still
/// counted at every depth.
#[test]
fn an_envoy_check_is_led_by_its_type() {
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    const ENVOY_CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";
    let structs = match nested_structs(30).kind {
        Some(envoy_types::pb::google::protobuf::value::Kind::StructValue(structs)) => structs,
        _ => unreachable!(),
    };
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    path: "\n\0".repeat(100),
                    headers: [("x".to_owned(), "\n\0".repeat(100))].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            metadata_context: Some(Metadata {
                filter_metadata: [("f".to_owned(), structs)].into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let bytes = check.encode_to_vec();
    let led = weigh(&bytes, Schema::ENVOY.reading(ENVOY_CHECK)).unwrap();
    let unled = weigh(&bytes, Schema::ENVOY).unwrap();
    assert!(unled - led >= 200 * FIELD_BYTES, "{unled} unled, {led} led");
    assert!(led >= 2 * bytes.len() + 4 * 30 * FIELD_BYTES, "{led}");
}

/// A `google.protobuf.Value` of `levels` structs, each the only member of the one above.
fn nested_structs(levels: usize) -> envoy_types::pb::google::protobuf::Value {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    (0..levels).fold(Value::default(), |inner, _| Value {
        kind: Some(Kind::StructValue(Struct {
            fields: [("a".to_owned(), inner)].into(),
        })),
    })
}

/// Envoy's metadata nests `Struct` in `Struct`: counted as deep as prost decodes, where the
/// API's depth would stop.
#[test]
fn envoy_structs_are_counted_at_every_depth() {
    let bytes = nested_structs(30).encode_to_vec();
    let envoy = weigh(&bytes, Schema::ENVOY).unwrap();
    let api = weigh(&bytes, Schema::API).unwrap();
    // Each level: the struct value, the map's entry, its key and its value.
    assert!(
        envoy >= 2 * bytes.len() + (4 * 30 - 1) * FIELD_BYTES,
        "{envoy}"
    );
    assert!(api < envoy);
}

/// A batch's entries are counted at three times their size, as their vector grows, and
/// the first at the four its vector first holds.
#[test]
fn a_batch_entry_weighs_three_times_its_size() {
    let one = [0x1a, 0x00];
    let two = [0x1a, 0x00, 0x1a, 0x00];
    let each = weigh(&two, Schema::BATCH).unwrap() - weigh(&one, Schema::BATCH).unwrap();
    assert_eq!(each, 4 + 3 * size_of::<pb::BatchEntry>());
    assert_eq!(
        weigh(&two, Schema::API),
        Ok(8 + 3 * FIELD_BYTES + SHALLOW_REFUSAL)
    );
    // One entry: the message, the entry, and its vector's first four.
    assert_eq!(
        weigh(&one, Schema::BATCH),
        Ok(4 + FIELD_BYTES
            + 3 * size_of::<pb::BatchEntry>()
            + 4 * size_of::<pb::BatchEntry>()
            + SHALLOW_REFUSAL)
    );
}

/// 2 million empty entries after a group: prost skips the group (an unknown field) and
/// builds every entry after it, so the count reads past it too.
#[test]
fn a_group_hides_no_field() {
    // Field 15, a group holding a varint (field 1) and a nested group (field 2), ended.
    let mut message = vec![0x7b, 0x08, 0x01, 0x13, 0x14, 0x7c];
    message.extend([0x1a, 0x00].repeat(2 * 1024 * 1024));
    assert_eq!(weigh(&message, Schema::BATCH), Err(TooCostly::Fields));
    let few = [&message[..6], &[0x1a, 0x00].repeat(10_001)].concat();
    assert_eq!(weigh(&few, Schema::BATCH), Err(TooCostly::Entries(10_000)));
    // An end of group alone, or one of another group, is no field: the count stops there,
    // as prost does.
    assert_eq!(
        weigh(&[0x7c, 0x1a, 0x00], Schema::BATCH),
        Ok(6 + FIELD_BYTES + SHALLOW_REFUSAL)
    );
    assert_eq!(
        weigh(&[0x7b, 0x74, 0x1a, 0x00], Schema::BATCH),
        Ok(8 + FIELD_BYTES + SHALLOW_REFUSAL)
    );
}

/// Groups nest as deep as prost reads them (its own decoding says how deep): a group
/// prost skips hides nothing after it; deeper, prost refuses the message, and the count
/// stops too.
#[test]
fn groups_nest_as_deep_as_prost_reads() {
    let nested = |levels: usize| {
        [
            [0x7b].repeat(levels),
            [0x7c].repeat(levels),
            [0x1a, 0x00].to_vec(),
        ]
        .concat()
    };
    let fields = |message: &[u8]| walk(message, 5);
    let deepest = nested(RECURSION_LIMIT);
    assert!(pb::BatchCheckAccessRequest::decode(&deepest[..]).is_ok());
    assert_eq!(fields(&deepest), (2, true), "the group and the entry");
    let deeper = nested(RECURSION_LIMIT + 1);
    assert!(pb::BatchCheckAccessRequest::decode(&deeper[..]).is_err());
    assert_eq!(fields(&deeper), (0, false));
}

/// Payloads that stop reading as fields, one inside the other: had each been a message
/// field, prost built the fields of each before refusing the innermost, so their counts
/// add up.
#[test]
fn unfinished_payloads_inside_each_other_add_up() {
    // `0a <len> [ (0a 00) x 1000, 0a <len> [ (0a 00) x 1000, ff ], ff ]`
    let innermost = [[0x0a, 0x00].repeat(1000), vec![0xff]].concat();
    let mut middle = [0x0a, 0x00].repeat(1000);
    middle.push(0x0a);
    push_varint(&mut middle, innermost.len());
    middle.extend(&innermost);
    middle.push(0xff);
    let mut message = vec![0x0a];
    push_varint(&mut message, middle.len());
    message.extend(&middle);
    let mut walk = walker(&message, 100);
    let counted = walk
        .count(&message, message.len(), 0, None, None)
        .ok()
        .unwrap();
    assert!(counted.whole);
    assert_eq!(
        walk.fields, 1,
        "the outer field, its payload taken as bytes"
    );
    assert_eq!(counted.unfinished, 1000 + 1 + 1000);
}

/// prost checks a field's length against what is left of the whole message, and the end of
/// the payload holding it only once the field is decoded: a field running past its
/// payload is built whole, and counted so.
#[test]
fn a_field_running_past_its_payload_is_counted_as_prost_builds_it() {
    // `stored` (field 4) of 4 + 2N bytes holding `facts` (field 2) of 2N + 1 bytes: one
    // byte past `stored`, the byte after it, which ends no field.
    let entries = 100_000;
    let mut message = vec![0x22];
    push_varint(&mut message, 2 * entries + 4);
    message.push(0x12);
    push_varint(&mut message, 2 * entries + 1);
    message.extend([0x12, 0x00].repeat(entries));
    message.push(0x00);
    let message = &message[..];
    let peak = 3 * entries * size_of::<pb::SearchParam>();
    assert!(pb::CheckAccessRequest::decode(message).is_err());
    let weight = weigh(message, Schema::API).unwrap();
    assert!(weight > peak, "{weight} <= {peak}");
    let (fields, whole) = walk(message, 5);
    assert!(fields > entries, "{fields}");
    assert!(!whole);
}

/// Payloads that run past their ends are read again by those around them: once the reads
/// the message's bytes allow are spent, the walk stops, and the message is weighed at what
/// any message of its length may hold (prost builds a field for two bytes at least).
#[test]
fn reading_again_is_bounded() {
    // 20,000 fields, each a 2-byte payload whose field runs 127 bytes on, over the fields
    // after it: each read some 60 times.
    let mut message = [0x0a, 0x02, 0x0a, 0x7f].repeat(20_000);
    message.extend([0x08, 0x01].repeat(64));
    let mut walk = walker(&message, Schema::ENVOY.depth);
    walk.most_reads = message.len() * 8;
    assert!(matches!(
        walk.count(&message, message.len(), 0, None, None),
        Err(Stopped::Spent)
    ));
    assert_eq!(walk.reads, walk.most_reads + 1);
    assert_eq!(
        weigh(&message, Schema::ENVOY),
        // Stopped early: prost's refusal is weighed as deep as it may go.
        Ok(2 * message.len()
            + (message.len() / 2 + 1) * FIELD_BYTES
            + refusal_bytes(RECURSION_LIMIT + 1))
    );
    // Past 512 KiB, that is more fields than any request needs.
    let mut large = [0x0a, 0x02, 0x0a, 0x7f].repeat(150_000);
    large.extend([0x08, 0x01].repeat(64));
    assert_eq!(weigh(&large, Schema::ENVOY), Err(TooCostly::Fields));
}

/// A group is read to its end within the payload holding it: past it, prost refuses the
/// payload, having built nothing more of it. So a group start in each of many short
/// strings is not read on over the whole message after it.
#[test]
fn a_group_is_read_within_its_payload() {
    // 50,000 one-byte payloads, each a group start (field 6), every one followed by the
    // rest, which reads as fields to the end.
    let message = [0x0a, 0x01, 0x33].repeat(50_000);
    let mut walk = walker(&message, Schema::API.depth);
    let Ok(counted) = walk.count(&message, message.len(), 0, None, None) else {
        panic!("the walk stopped");
    };
    assert!(counted.whole);
    assert_eq!(walk.fields, 50_000);
    assert!(walk.reads <= 2 * 50_000, "{}", walk.reads);
}

fn walker(message: &[u8], deepest: usize) -> Walk {
    Walk {
        descriptors: &DESCRIPTORS,
        deepest,
        reached: 0,
        fields: 0,
        reads: 0,
        most_reads: message.len() * 8,
    }
}

/// The fields a walk counts, the unfinished chain included, and whether the message read
/// whole.
fn walk(message: &[u8], deepest: usize) -> (usize, bool) {
    let mut walk = walker(message, deepest);
    let Ok(counted) = walk.count(message, message.len(), 0, None, None) else {
        panic!("the walk stopped");
    };
    (walk.fields + counted.unfinished, counted.whole)
}

fn push_varint(bytes: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        bytes.push(u8::try_from(value & 0x7f).unwrap() | 0x80);
        value >>= 7;
    }
    bytes.push(u8::try_from(value).unwrap());
}

/// A message malformed at its end has had its earlier fields built when prost refuses it:
/// they are counted.
#[test]
fn fields_before_a_malformed_end_are_counted() {
    let mut message = [0x1a, 0x00].repeat(2 * 1024 * 1024);
    message.extend([0xff, 0xff]);
    assert_eq!(weigh(&message, Schema::BATCH), Err(TooCostly::Fields));
    // A payload of empty fields (a request's parameters) that ends with a byte that is no
    // field, inside a field of the request.
    let mut payload = [0x3a, 0x00].repeat(MAX_FIELDS);
    payload.push(0xff);
    let mut nested = vec![0x12];
    push_varint(&mut nested, payload.len());
    nested.extend(payload);
    assert_eq!(weigh(&nested, Schema::API), Err(TooCostly::Fields));
}

use super::*;

const CHECK_ACCESS: &str = "/smartauthz.v1.AuthzService/CheckAccess";
const BATCH_CHECK_ACCESS: &str = "/smartauthz.v1.AuthzService/BatchCheckAccess";
const FILTER_RESOURCES: &str = "/smartauthz.v1.AuthzService/FilterResources";
const INTROSPECT_TOKEN: &str = "/smartauthz.v1.AuthzService/IntrospectToken";
const ENVOY_CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";
const EXT_PROC: &str = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";

fn request(path: &str) -> MessageId {
    DESCRIPTORS
        .request_of(path)
        .unwrap_or_else(|| panic!("{path} has no request message"))
}

fn message_at(message: MessageId, number: u64) -> MessageId {
    match DESCRIPTORS.field(message, number) {
        Some(Kind::Message(inner)) => inner,
        other => panic!("field {number}: {other:?}"),
    }
}

/// Every method the listener weighs the messages of is known, each by its own request.
#[test]
fn every_weighed_method_has_its_request_message() {
    let methods = [
        CHECK_ACCESS,
        BATCH_CHECK_ACCESS,
        INTROSPECT_TOKEN,
        FILTER_RESOURCES,
        ENVOY_CHECK,
        // A stream: each of its messages is weighed as it arrives.
        EXT_PROC,
    ];
    let requests: Vec<MessageId> = methods.iter().map(|path| request(path)).collect();
    for (index, id) in requests.iter().enumerate() {
        assert!(!requests[..index].contains(id), "{}", methods[index]);
    }
    assert_eq!(
        DESCRIPTORS.request_of("/smartauthz.v1.AuthzService/Nothing"),
        None
    );
    assert_eq!(DESCRIPTORS.request_of("CheckAccess"), None);
}

/// `CheckAccessRequest` as authz.proto declares it: the token a string, the request and the
/// stored resource messages, a number it does not use unknown.
#[test]
fn fields_are_read_as_declared() {
    let check = request(CHECK_ACCESS);
    assert_eq!(DESCRIPTORS.field(check, 1), Some(Kind::Text));
    let http = message_at(check, 3);
    // HttpRequest: method, path, headers (a map: its entries are messages of two strings).
    assert_eq!(DESCRIPTORS.field(http, 1), Some(Kind::Text));
    let header = message_at(http, 3);
    assert_eq!(DESCRIPTORS.field(header, 1), Some(Kind::Text));
    assert_eq!(DESCRIPTORS.field(header, 2), Some(Kind::Text));
    let stored = message_at(check, 4);
    assert_ne!(stored, http);
    assert_eq!(DESCRIPTORS.field(check, 99), None);
}

/// Envoy's `CheckRequest` down to its headers, and the `Struct` of its metadata, whose
/// values nest structs as deep as the message goes.
#[test]
fn envoy_types_come_with_their_imports() {
    let check = request(ENVOY_CHECK);
    let attributes = message_at(check, 1);
    let http = message_at(message_at(attributes, 4), 2);
    let header = message_at(http, 3);
    assert_eq!(DESCRIPTORS.field(header, 2), Some(Kind::Text));
    // metadata_context (11): Metadata, whose filter_metadata (1) maps names to Structs.
    let metadata = message_at(attributes, 11);
    let entry = message_at(metadata, 1);
    let structure = message_at(entry, 2);
    let field = message_at(structure, 1);
    let value = message_at(field, 2);
    // Value's struct_value (5) is a Struct again.
    assert_eq!(message_at(value, 5), structure);
}

/// A set that does not decode leaves its methods unknown, and their walks untyped.
#[test]
fn an_unreadable_set_is_left_out() {
    let descriptors = Descriptors::read(&[b"\xff\xff\xff", pb::FILE_DESCRIPTOR_SET]);
    assert!(descriptors.request_of(CHECK_ACCESS).is_some());
    assert!(descriptors.request_of(ENVOY_CHECK).is_none());
    assert!(Descriptors::read(&[]).request_of(CHECK_ACCESS).is_none());
}

/// Field 1 as a varint, twice: kept as sent by a string or `bytes` field; a message would
/// keep one of the two, refuse them, or drop them as unknown, and encode otherwise.
const PROBE: &[u8] = &[0x08, 0x01, 0x08, 0x01];

/// `leaf` as the payload of the field at the end of `path` (field numbers from the top),
/// each field before it a message holding the next.
fn nested(path: &[u64], leaf: &[u8]) -> Vec<u8> {
    path.iter().rev().fold(leaf.to_vec(), |inner, &number| {
        let mut outer = Vec::new();
        prost::encoding::encode_varint(number << 3 | 2, &mut outer);
        prost::encoding::encode_varint(inner.len() as u64, &mut outer);
        outer.extend(inner);
        outer
    })
}

/// Every string and `bytes` field the descriptors name below `method`'s request, each
/// reached by the shortest path of fields from the top, is read as one by the code prost
/// decodes with (`M`): the probe comes back as it was sent. This is what the walk relies on
/// when it does not read into those fields; the vendored protos and the generated types
/// cannot part ways on it unnoticed. Returns how many fields were checked.
fn text_fields_are_text_in<M: prost::Message + Default>(method: &str) -> usize {
    let root = request(method);
    let mut paths = HashMap::from([(root, Vec::new())]);
    let mut queue = std::collections::VecDeque::from([root]);
    let mut checked = 0;
    while let Some(message) = queue.pop_front() {
        let prefix = paths[&message].clone();
        let fields = &DESCRIPTORS.fields[usize::try_from(message.0).unwrap()];
        for &(number, kind) in fields.iter() {
            let path: Vec<u64> = prefix.iter().copied().chain([number]).collect();
            match kind {
                Kind::Text => {
                    let bytes = nested(&path, PROBE);
                    let decoded = M::decode(bytes.as_slice())
                        .unwrap_or_else(|error| panic!("{method}, fields {path:?}: {error}"));
                    assert_eq!(
                        decoded.encode_to_vec(),
                        bytes,
                        "{method}, fields {path:?}: not a string or bytes in the generated code"
                    );
                    checked += 1;
                }
                Kind::Message(inner) => {
                    if let std::collections::hash_map::Entry::Vacant(entry) = paths.entry(inner) {
                        entry.insert(path);
                        queue.push_back(inner);
                    }
                }
            }
        }
    }
    checked
}

#[test]
fn every_text_field_is_text_in_the_generated_code() {
    use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
    use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingRequest;
    let envoy = text_fields_are_text_in::<CheckRequest>(ENVOY_CHECK);
    let ext_proc = text_fields_are_text_in::<ProcessingRequest>(EXT_PROC);
    assert!(
        envoy > 30 && ext_proc > 10,
        "{envoy} and {ext_proc} checked"
    );
    let api = [
        text_fields_are_text_in::<pb::CheckAccessRequest>(CHECK_ACCESS),
        text_fields_are_text_in::<pb::BatchCheckAccessRequest>(BATCH_CHECK_ACCESS),
        text_fields_are_text_in::<pb::FilterResourcesRequest>(FILTER_RESOURCES),
        text_fields_are_text_in::<pb::IntrospectTokenRequest>(INTROSPECT_TOKEN),
    ];
    assert!(api[..3].iter().all(|&checked| checked > 5), "{api:?}");
    assert!(api[3] >= 1, "{api:?}");
}

//! What a protobuf message would cost to decode, read from its bytes before tonic decodes
//! it: the API's messages and Envoy's `CheckRequest`.
//!
//! `max_request_bytes` and the budget of buffered bytes count a message's bytes, but prost
//! decodes each field into a Rust value that can be a hundred times larger: an empty
//! `BatchEntry` is 2 bytes on the wire and 272 in memory, an empty `SearchParam` or Envoy
//! `HeaderValue` 2 bytes and 48 or 72, three times that while the vector they are pushed
//! into grows. One 4 MiB `BatchCheckAccess` of empty entries would take over 500 MB before
//! its handler could refuse more than 10,000 of them. So the message's fields are counted
//! first, by the protobuf wire format alone (protobuf encoding, "Message Structure"): each
//! length-delimited payload that reads as a message is counted as one, down to the depth
//! of the schema's deepest field, which over-counts a string that happens to read as one
//! and never under-counts a message. The count refuses what no request needs, and gives
//! what the decoded message may take, which the call holds from the budget
//! (`app::overload`).

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::google::protobuf::{Any, Value};

use super::pb;

/// Most fields one message may hold, at every depth together. A batch of 10,000 entries,
/// each an HTTP line with a few headers and a stored resource, holds about 150,000.
pub const MAX_FIELDS: usize = 256 * 1024;

/// What one field may take once decoded, beyond the bytes of its strings: three elements
/// of the largest repeated message of the schemas below but a batch's entries (whose count
/// is bounded, and which are counted at their own size), as a vector that grows holds its
/// old and its new buffer, twice the length, at once. A field that is a scalar or a string
/// takes less; a map's entry is counted as two or three fields, its key and value among
/// them, which covers what its hash table spends.
pub const FIELD_BYTES: usize = 3 * largest(&[
    size_of::<pb::SearchParam>(),
    size_of::<String>(),
    size_of::<HeaderValue>(),
    size_of::<Value>(),
    size_of::<Any>(),
]);

/// The messages of one service, as their cost to decode is read.
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    /// How deep its messages nest: a payload below is no message of the schema, whatever
    /// it looks like (prost reads it as bytes, or skips it as an unknown field).
    depth: usize,
    /// A top-level repeated field whose occurrences are bounded: its count, its bound and
    /// the size of one element decoded.
    repeated: Option<(u32, usize, usize)>,
}

impl Schema {
    /// The API's requests but a batch: the deepest message at depth 4
    /// (`BatchCheckAccessRequest.entries.stored.facts.search_values`, the request at 0).
    pub const API: Schema = Schema {
        depth: 5,
        repeated: None,
    };

    /// `BatchCheckAccessRequest`, its `entries` (field 3) bounded.
    pub const BATCH: Schema = Schema {
        depth: 5,
        repeated: Some((
            3,
            crate::authorize::MAX_BATCH_ENTRIES,
            size_of::<pb::BatchEntry>(),
        )),
    };

    /// Envoy's `CheckRequest`: the `google.protobuf.Struct` of its metadata nests as deep
    /// as prost decodes at all (its recursion limit, 100).
    pub const ENVOY: Schema = Schema {
        depth: 100,
        repeated: None,
    };
}

/// Why a message is refused before it is decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooCostly {
    #[error(
        "the request holds more than {MAX_FIELDS} fields, which would take far more memory to decode than its bytes: split it"
    )]
    Fields,
    #[error("entries: at most {0} in one batch or transaction")]
    Entries(usize),
}

/// The bytes `message` (a protobuf message, without gRPC's frame prefix) may take while it
/// is decoded: twice its own bytes (the strings and bytes prost copies out of it; a `bytes`
/// field is copied twice, into `Bytes` and then into its `Vec`) and [`FIELD_BYTES`] a field
/// (a batch's entries at three times their size). Refused when it holds more than
/// [`MAX_FIELDS`] fields, or more occurrences of the schema's bounded field than its bound.
/// Bytes that are no message are weighed as bytes: the decoder refuses them.
pub fn weigh(message: &[u8], schema: Schema) -> Result<usize, TooCostly> {
    let mut fields = 0;
    let tracked = schema.repeated.map(|(field, _, _)| field);
    let top = count(message, 0, schema.depth, &mut fields, tracked).ok_or(TooCostly::Fields)?;
    let mut elements = 0;
    if let (Some(occurrences), Some((_, max, element))) = (top, schema.repeated) {
        if occurrences > max {
            return Err(TooCostly::Entries(max));
        }
        elements = occurrences.saturating_mul((3 * element).saturating_sub(FIELD_BYTES));
    }
    Ok((2 * message.len())
        .saturating_add(fields.saturating_mul(FIELD_BYTES))
        .saturating_add(elements))
}

const fn largest(sizes: &[usize]) -> usize {
    let mut largest = 0;
    let mut index = 0;
    while index < sizes.len() {
        if sizes[index] > largest {
            largest = sizes[index];
        }
        index += 1;
    }
    largest
}

/// Counts the fields of `bytes` read as a message at `depth` (of the schema's `deepest`)
/// into `fields`; `None` when they pass [`MAX_FIELDS`]. The inner value is `None` when
/// `bytes` is not a message (then it counts for nothing here, its field being counted by
/// its parent), or the occurrences of the field numbered `tracked`.
fn count(
    bytes: &[u8],
    depth: usize,
    deepest: usize,
    fields: &mut usize,
    tracked: Option<u32>,
) -> Option<Option<usize>> {
    let before = *fields;
    let mut occurrences = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((key, after_key)) = varint(rest) else {
            return undo(fields, before);
        };
        let field = key >> 3;
        if field == 0 {
            return undo(fields, before);
        }
        rest = match key & 7 {
            0 => match varint(after_key) {
                Some((_, after)) => after,
                None => return undo(fields, before),
            },
            1 => match after_key.get(8..) {
                Some(after) => after,
                None => return undo(fields, before),
            },
            5 => match after_key.get(4..) {
                Some(after) => after,
                None => return undo(fields, before),
            },
            2 => {
                let Some((length, after_length)) = varint(after_key) else {
                    return undo(fields, before);
                };
                let Some(payload) = usize::try_from(length)
                    .ok()
                    .and_then(|length| after_length.get(..length))
                else {
                    return undo(fields, before);
                };
                if depth + 1 < deepest {
                    count(payload, depth + 1, deepest, fields, None)?;
                }
                &after_length[payload.len()..]
            }
            // Groups (3, 4) are not used by proto3, and 6 and 7 are no wire type.
            _ => return undo(fields, before),
        };
        *fields += 1;
        if *fields > MAX_FIELDS {
            return None;
        }
        if tracked.map(u64::from) == Some(field) {
            occurrences += 1;
        }
    }
    Some(Some(occurrences))
}

/// `bytes` turned out not to be a message: what its payloads were counted for is taken
/// back, as prost will read it as bytes.
fn undo(fields: &mut usize, before: usize) -> Option<Option<usize>> {
    *fields = before;
    Some(None)
}

/// A base-128 varint and the bytes after it (at most 10 bytes, as protobuf's).
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[index + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests;

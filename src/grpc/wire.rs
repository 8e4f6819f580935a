//! What a `smartauthz.v1` message would cost to decode, read from its bytes before tonic
//! decodes it.
//!
//! `max_request_bytes` and the budget of buffered bytes count a message's bytes, but prost
//! decodes each field into a Rust value that can be a hundred times larger: an empty
//! `BatchEntry` is 2 bytes on the wire and about 270 in memory, an empty `SearchParam` or
//! header 2 to 6 bytes and about 50 to 100. One 4 MiB `BatchCheckAccess` of empty entries
//! would take over 500 MB before its handler could refuse more than 10,000 of them. So the
//! message's fields are counted first, by the protobuf wire format alone (protobuf
//! encoding, "Message Structure"): each length-delimited payload that reads as a message is
//! counted as one, down to the depth of this API's deepest field, which over-counts a
//! string that happens to read as one and never under-counts a message.

/// Most fields one message may hold, at every depth together. A batch of 10,000 entries,
/// each an HTTP line with a few headers and a stored resource, holds about 150,000.
pub const MAX_FIELDS: usize = 256 * 1024;

/// How deep this API's messages nest: the request is at depth 0, and its deepest message
/// at 4 (`BatchCheckAccessRequest.entries.stored.facts.search_values`). A payload below
/// that is no message of this API, whatever it looks like: prost reads it as bytes, or
/// skips it as an unknown field.
const MAX_DEPTH: usize = 5;

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

/// Refuses `message` (a protobuf message, without gRPC's frame prefix) when it holds more
/// than [`MAX_FIELDS`] fields, or more than `max_repeated` occurrences of the top-level
/// field `repeated` (the entries of a batch).
pub fn check(message: &[u8], repeated: Option<(u32, usize)>) -> Result<(), TooCostly> {
    // Every field takes at least 2 bytes (a key and a value or a length), inside each message
    // that holds it: a message holds at most half its bytes in fields at each depth. So
    // most messages, the hot path's among them, cannot break either limit and are not read.
    let most_fields = message.len() / 2 * MAX_DEPTH;
    let most_occurrences = message.len() / 2;
    if most_fields <= MAX_FIELDS && repeated.is_none_or(|(_, max)| most_occurrences <= max) {
        return Ok(());
    }
    let mut fields = 0;
    let top = count(message, 0, &mut fields, repeated.map(|(field, _)| field))
        .ok_or(TooCostly::Fields)?;
    match (top, repeated) {
        (Some(occurrences), Some((_, max))) if occurrences > max => Err(TooCostly::Entries(max)),
        _ => Ok(()),
    }
}

/// Counts the fields of `bytes` read as a message into `fields`; `None` when they pass
/// [`MAX_FIELDS`]. The inner value is `None` when `bytes` is not a message (then it counts
/// for nothing here, its field being counted by its parent), or the occurrences of the
/// field numbered `tracked`.
fn count(
    bytes: &[u8],
    depth: usize,
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
                if depth + 1 < MAX_DEPTH {
                    count(payload, depth + 1, fields, None)?;
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

//! What a protobuf message would cost to decode, read from its bytes before tonic decodes
//! it: the API's messages and Envoy's (`CheckRequest`, ext_proc's `ProcessingRequest`).
//!
//! `max_request_bytes` and the budget of buffered bytes count a message's bytes, but prost
//! decodes each field into a Rust value that can be a hundred times larger: an empty
//! `BatchEntry` is 2 bytes on the wire and 272 in memory, an empty `SearchParam` or Envoy
//! `HeaderValue` 2 bytes and 48 or 72, three times that while the vector they are pushed
//! into grows. One 4 MiB `BatchCheckAccess` of empty entries would take over 500 MB before
//! its handler could refuse more than 10,000 of them. So the message's fields are counted
//! first, by the protobuf wire format (protobuf encoding, "Message Structure"): each
//! length-delimited payload is read as a message, down to the depth of the schema's
//! deepest field, which over-counts a string that reads like a message and never
//! under-counts one. Where the service's descriptor sets name the method
//! ([`Schema::reading`], `descriptors`), the walk is led by its request's fields: a string
//! or `bytes` field is one value, as prost makes it, and is not read into, so a bearer
//! token or a header value costs the walk its key and length, not its bytes. The
//! count refuses what no request needs, and gives what the decoded message may take, which
//! the call holds from the budget (`app::overload`, `app::counted_messages`).

mod descriptors;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::google::protobuf::{Any, Value};

use self::descriptors::{DESCRIPTORS, Descriptors, Kind, MessageId};
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
    /// The message type at the top, when the descriptors know it ([`Schema::reading`]).
    message: Option<MessageId>,
}

impl Schema {
    /// The API's requests but a batch: the deepest message at depth 4
    /// (`BatchCheckAccessRequest.entries.stored.facts.search_values`, the request at 0).
    pub const API: Schema = Schema {
        depth: 5,
        repeated: None,
        message: None,
    };

    /// `BatchCheckAccessRequest`, its `entries` (field 3) bounded.
    pub const BATCH: Schema = Schema {
        depth: 5,
        repeated: Some((
            3,
            crate::authorize::MAX_BATCH_ENTRIES,
            size_of::<pb::BatchEntry>(),
        )),
        message: None,
    };

    /// Envoy's `CheckRequest` and ext_proc's `ProcessingRequest`: the
    /// `google.protobuf.Struct` of their metadata nests as deep as prost decodes at all
    /// (its recursion limit: a message at depth 100, the request at 0, is still decoded).
    pub const ENVOY: Schema = Schema {
        depth: RECURSION_LIMIT + 1,
        repeated: None,
        message: None,
    };

    /// This schema, led by the fields of the request message of the gRPC method at `path`
    /// (`/package.Service/Method`) where the service's descriptor sets name the method
    /// (`descriptors`): its strings are then read as strings, not as possible messages.
    #[must_use]
    pub fn reading(self, path: &str) -> Schema {
        Schema {
            message: DESCRIPTORS.request_of(path),
            ..self
        }
    }
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

/// Reads the descriptor sets the walks are led by ([`Schema::reading`]) now, where the
/// first call would.
pub fn read_descriptors() {
    std::sync::LazyLock::force(&DESCRIPTORS);
}

/// The bytes `message` (a protobuf message, without gRPC's frame prefix) may take while it
/// is decoded: twice its own bytes (the strings and bytes prost copies out of it; a `bytes`
/// field is copied twice, into `Bytes` and then into its `Vec`) and [`FIELD_BYTES`] a field
/// and one for the message itself (a batch's entries at three times their size, and the
/// first four at once), and what prost's refusal of it would hold ([`refusal_bytes`]).
/// Refused when it holds more than [`MAX_FIELDS`] fields, or more occurrences of the
/// schema's bounded field than its bound.
pub fn weigh(message: &[u8], schema: Schema) -> Result<usize, TooCostly> {
    let mut walk = Walk {
        descriptors: &DESCRIPTORS,
        deepest: schema.depth,
        reached: 0,
        fields: 0,
        reads: 0,
        // Each field read has two bytes of its own: a walk that reads no byte twice reads
        // at most half the message's bytes in fields. Short strings that read as a field
        // running on over the next ones are read again a few times a byte; a message read
        // more than that was built to be.
        most_reads: message.len().saturating_mul(8).max(4096),
    };
    let tracked = schema.repeated.map(|(field, _, _)| field);
    let (fields, occurrences, counted_all) =
        match walk.count(message, message.len(), 0, tracked, schema.message) {
            Ok(counted) => (walk.fields + counted.unfinished, counted.occurrences, true),
            Err(Stopped::TooMany) => return Err(TooCostly::Fields),
            // prost's cursor only moves on, at least two bytes a field built (a key, and a
            // value or a length): no message holds more than half its bytes in fields.
            Err(Stopped::Spent) => (message.len() / 2, message.len() / 2, false),
        };
    if fields > MAX_FIELDS {
        return Err(TooCostly::Fields);
    }
    // prost's error passes each message level it was read at, at most every level the walk
    // read (prost reads no deeper); every level of the schema when the walk stopped early.
    let levels = if counted_all {
        walk.reached + 1
    } else {
        schema.depth
    };
    // The message's own containers have no field of their own to be counted with: one more.
    let mut elements = FIELD_BYTES;
    if let Some((_, max, element)) = schema.repeated {
        if counted_all && occurrences > max {
            return Err(TooCostly::Entries(max));
        }
        elements += occurrences.saturating_mul((3 * element).saturating_sub(FIELD_BYTES));
        if occurrences > 0 {
            // A vector's first allocation holds four.
            elements += 4 * element;
        }
    }
    Ok((2 * message.len())
        .saturating_add(fields.saturating_mul(FIELD_BYTES))
        .saturating_add(elements)
        .saturating_add(refusal_bytes(levels)))
}

/// What prost's refusal of a message holds at its largest once its error has passed
/// `levels` message levels (prost's `DecodeError`): the boxed error, and the stack of
/// (message, field) names it pushes at each level, in a vector that doubles as it grows and
/// holds its old buffer beside its new one while it does; with the allocator's overhead on
/// each. A short message prost refuses at once takes this beside the little it built,
/// which can be more than its fields weigh (found by `tests/decode_memory.rs`'s mutated
/// requests).
pub const fn refusal_bytes(levels: usize) -> usize {
    /// The box (the error's kind and its stack's vector: 72 bytes), with overhead.
    const BOXED: usize = 128;
    const ENTRY: usize = size_of::<(&str, &str)>();
    const OVERHEAD: usize = 16;
    // A vector of 32-byte entries first holds four.
    let entries = if levels > 4 { levels } else { 4 }.next_power_of_two();
    BOXED + entries * ENTRY + entries / 2 * ENTRY + 2 * OVERHEAD
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

/// prost's recursion limit: messages and groups nest at most this deep, together.
const RECURSION_LIMIT: usize = 100;

/// Why a walk stopped before the end.
enum Stopped {
    /// More than [`MAX_FIELDS`] fields.
    TooMany,
    /// More reads than the message's bytes allow (`Walk::most_reads`).
    Spent,
}

/// What reading one payload as a message found.
struct Counted {
    /// Occurrences of the tracked field.
    occurrences: usize,
    /// Whether the payload read as fields to its end, and no further.
    whole: bool,
    /// The most fields prost may have built inside payloads within this one that stopped
    /// reading as fields before their end, beyond what the count keeps of them.
    unfinished: usize,
}

/// One walk of a message's fields (`weigh`).
///
/// prost decodes a message field by field, so a message malformed at its end has had its
/// earlier fields built when the decoder refuses it: at the top, what came before is
/// counted. prost checks a field's length against what is left of the whole message, and a
/// payload's own end only once its last field is decoded: a field that runs past the end
/// of the payload holding it is decoded whole (and its own fields, as far as they go)
/// before the payload is refused. So a payload is read from the bytes left in the whole
/// message, while its fields start before its end.
///
/// A payload that stops reading as fields, or runs past its end, is either no message (a
/// string, `bytes`: nothing of it is built, and the message goes on after it) or a message
/// prost refuses there, having built its fields so far, and those of each payload it was
/// in that stopped too, along the chain; nothing after it. So `fields` takes every such
/// payload as bytes, and [`Counted::unfinished`] keeps the largest chain: the weight is
/// their sum, never less than either case. Groups (proto2's, wire types 3 and 4) are
/// skipped as prost skips an unknown field: read to their end, nothing built.
struct Walk {
    /// The fields of the message types the walk may be led by.
    descriptors: &'static Descriptors,
    /// The schema's depth: a payload deeper is no message of it.
    deepest: usize,
    /// The deepest level a payload was read at as a message (the top at 0).
    reached: usize,
    /// The fields counted, payloads that stopped taken as bytes.
    fields: usize,
    /// Fields read so far, and how many may be: a payload that runs past the one holding
    /// it has its bytes read again by those around it. Past the bound the walk stops, and
    /// the message is weighed at what any message of its length may hold.
    reads: usize,
    most_reads: usize,
}

impl Walk {
    /// Counts the fields of the payload of `length` bytes at the start of `rest` (what is
    /// left of the whole message), read as a message at `depth`, with the occurrences of
    /// the field numbered `tracked`. With its type (`message`), its string and `bytes`
    /// fields are not read into, and its message fields are read as their types.
    fn count(
        &mut self,
        rest: &[u8],
        length: usize,
        depth: usize,
        tracked: Option<u32>,
        message: Option<MessageId>,
    ) -> Result<Counted, Stopped> {
        self.reached = self.reached.max(depth);
        let mut counted = Counted {
            occurrences: 0,
            whole: true,
            unfinished: 0,
        };
        let mut at = 0;
        while at < length {
            let Some((field, after)) = self.next_field(&rest[at..], depth, length - at)? else {
                counted.whole = false;
                return Ok(counted);
            };
            let next = rest.len() - after.len();
            if let Field::Payload(payload, payload_length) = field.value
                && depth + 1 < self.deepest
                && let Some(inner_type) = self.read_as(message, field.number)
            {
                let before = self.fields;
                let inner = self.count(payload, payload_length, depth + 1, None, inner_type)?;
                let chain = if inner.whole {
                    inner.unfinished
                } else {
                    // Taken as bytes here; had it been a message, its fields so far were
                    // built.
                    let built = self.fields - before;
                    self.fields = before;
                    built + inner.unfinished
                };
                counted.unfinished = counted.unfinished.max(chain);
            }
            at = next;
            self.fields += 1;
            if self.fields > MAX_FIELDS {
                return Err(Stopped::TooMany);
            }
            if tracked.map(u64::from) == Some(field.number) {
                counted.occurrences += 1;
            }
        }
        // A field ran past the end: prost decoded it, then refuses the payload.
        counted.whole = at == length;
        Ok(counted)
    }

    /// How the payload of field `number` of a message of type `message` is read: `None`, not
    /// at all (a string or `bytes`, which prost copies out and builds nothing inside);
    /// else as a message, of the field's type when the descriptors name it (a scalar's
    /// payload may be a packed array, and a number they do not name may be anything).
    fn read_as(&self, message: Option<MessageId>, number: u64) -> Option<Option<MessageId>> {
        match message.and_then(|message| self.descriptors.field(message, number)) {
            Some(Kind::Text) => None,
            Some(Kind::Message(inner)) => Some(Some(inner)),
            None => Some(None),
        }
    }

    /// The field at the start of `rest` (in a message at `depth`, of which `within` bytes
    /// are left) and the bytes after it; `None` where the bytes are no field (prost
    /// refuses them there).
    fn next_field<'a>(
        &mut self,
        rest: &'a [u8],
        depth: usize,
        within: usize,
    ) -> Result<Option<(Read<'a>, &'a [u8])>, Stopped> {
        self.reads += 1;
        if self.reads > self.most_reads {
            return Err(Stopped::Spent);
        }
        let Some((key, after_key)) = varint(rest) else {
            return Ok(None);
        };
        let number = key >> 3;
        if number == 0 {
            return Ok(None);
        }
        let read = match key & 7 {
            0 => varint(after_key).map(|(_, after)| (Field::Other, after)),
            1 => after_key.get(8..).map(|after| (Field::Other, after)),
            5 => after_key.get(4..).map(|after| (Field::Other, after)),
            2 => varint(after_key).and_then(|(length, after_length)| {
                let length = usize::try_from(length).ok()?;
                let after = after_length.get(length..)?;
                Some((Field::Payload(after_length, length), after))
            }),
            3 => {
                let left = within.saturating_sub(rest.len() - after_key.len());
                self.skip_group(after_key, number, depth + 1, left)?
                    .map(|after| (Field::Other, after))
            }
            // An end of group outside one, and 6 and 7, which are no wire type.
            _ => None,
        };
        Ok(read.map(|(value, after)| (Read { number, value }, after)))
    }

    /// The bytes after the end of the group numbered `number` whose fields `rest` starts
    /// with, at `depth` (messages and groups together); `None` when it does not end within
    /// the `within` bytes left of the payload holding it (prost refuses the payload there,
    /// having built nothing more of it), or nests deeper than prost reads (it skips a group
    /// at the depth of its limit, if empty).
    fn skip_group<'a>(
        &mut self,
        rest: &'a [u8],
        number: u64,
        depth: usize,
        within: usize,
    ) -> Result<Option<&'a [u8]>, Stopped> {
        if depth > RECURSION_LIMIT {
            return Ok(None);
        }
        let mut at = rest;
        loop {
            let read = rest.len() - at.len();
            if read >= within {
                return Ok(None);
            }
            let Some((key, after_key)) = varint(at) else {
                return Ok(None);
            };
            if key & 7 == 4 {
                return Ok((key >> 3 == number).then_some(after_key));
            }
            match self.next_field(at, depth, within - read)? {
                Some((_, after)) => at = after,
                None => return Ok(None),
            }
        }
    }
}

/// One field read from the wire: its number, and its payload when it is length-delimited.
struct Read<'a> {
    number: u64,
    value: Field<'a>,
}

enum Field<'a> {
    /// What is left of the whole message from the payload's start, and the payload's
    /// length.
    Payload(&'a [u8], usize),
    /// A varint, a fixed-width value, or a group skipped.
    Other,
}

/// A base-128 varint and the bytes after it (at most 10 bytes, as protobuf's).
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    // Most keys and lengths are one byte.
    if let Some((&byte, after)) = bytes.split_first()
        && byte < 0x80
    {
        return Some((u64::from(byte), after));
    }
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

//! JSON read the way no FHIR server behind the service can read differently: a document
//! with a duplicate member name anywhere is refused.
//!
//! RFC 8259 §4 leaves duplicate names undefined: serde_json keeps the last one, other parsers
//! the first. `{"subject": Patient/456, "subject": Patient/123}` would be decided as a
//! resource of Patient/123 and stored by a first-wins server as one of Patient/456, so the
//! only safe answer is to refuse it, never to guess.

use std::fmt;

mod keeping;
mod memory;

pub use keeping::to_fhir_json_keeping;

use memory::Meter;
pub use memory::TreeMemory;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Why bytes are not JSON the service accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Parses `bytes` as JSON, refusing any object with a member name twice.
///
/// The bytes are checked as UTF-8 once, whole, then read as text. serde_json reading bytes
/// checks each string on its own instead: the 300 names and values of a 5 KB resource one at
/// a time, a tenth of the instructions of a read decided with that resource. The same
/// documents are accepted: outside a string, a byte beyond ASCII is a syntax error either
/// way (RFC 8259 §8.1: JSON text is UTF-8).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    parse_strict_within(bytes, &mut |_| true)
}

/// [`parse_strict`], the memory of the tree it builds asked of `memory` ahead, in steps of
/// at least 16 KiB: a refusal stops the parse with an error, before the tree takes what was
/// refused; what was given and not used is told to `memory` at the end. JSON a caller
/// sends is parsed this way, so that the trees of many requests together stay within what
/// the service may hold.
pub fn parse_strict_within(bytes: &[u8], memory: &mut dyn TreeMemory) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|error| JsonError(format!("the JSON is not UTF-8: {error}")))?;
    let meter = Meter::new(memory);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue(&meter)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| JsonError(error.to_string()));
    meter.end();
    parsed
}

/// Writes `value` as JSON with `resourceType` first in every object, as FHIR's own examples
/// have it (FHIR R4 json.html); the other members follow in name order. Parsed objects do
/// not keep the order they were read in (keeping it costs the strict reader a quarter of
/// its speed), and some FHIR parsers expect the type before the rest of a resource.
///
/// `expected_bytes` sizes the buffer up front: the body a filtered answer replaces is about
/// as long, and a buffer grown from empty copied what it held at each doubling.
pub fn to_fhir_json(value: &Value, expected_bytes: usize) -> Vec<u8> {
    let mut written = Vec::with_capacity(expected_bytes);
    // Writing a `Value` into memory cannot fail: every key is a string.
    match serde_json::to_writer(&mut written, &TypeFirst(value)) {
        Ok(()) => written,
        Err(_) => Vec::new(),
    }
}

/// A `Value` serialized with `resourceType` first in each object.
struct TypeFirst<'a>(&'a Value);

impl Serialize for TypeFirst<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                if let Some(resource_type) = object.get("resourceType") {
                    map.serialize_entry("resourceType", &TypeFirst(resource_type))?;
                }
                for (name, member) in object.iter().filter(|(name, _)| *name != "resourceType") {
                    map.serialize_entry(name, &TypeFirst(member))?;
                }
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&TypeFirst(item))?;
                }
                seq.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// A `serde_json::Value` whose objects are checked for duplicate names as they are read,
/// its memory counted by the meter.
#[derive(Clone, Copy)]
struct StrictValue<'m, 'g>(&'m Meter<'g>);

impl<'de> DeserializeSeed<'de> for StrictValue<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_, '_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.0.string(value.len())?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.0.string(value.len())?;
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut values = Vec::with_capacity(items.size_hint().unwrap_or(0).min(1024));
        self.0.slots(0, values.capacity())?;
        while let Some(value) = items.next_element_seed(self)? {
            if values.len() == values.capacity() {
                // Asked before the buffer grows, so a refusal comes before the memory.
                let before = values.capacity();
                self.0.slots(before, before.saturating_mul(2).max(4))?;
            }
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let mut count = 0;
        while let Some(name) = members.next_key::<String>()? {
            count += 1;
            self.0.member(count, name.len())?;
            // One search of the map per member: the entry found empty is the one filled.
            match object.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(members.next_value_seed(self)?);
                }
                Entry::Occupied(taken) => {
                    return Err(de::Error::custom(format!(
                        "duplicate member {:?}: a JSON object may name each member once",
                        taken.key()
                    )));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests;

//! Writing a filtered answer with the text of the answer it was filtered from.
//!
//! serde_json reads a number as an `f64` (or an integer), and writes it back in its own
//! spelling: `2.50` comes back `2.5`, `12345678901234567890.5` as `1.2345678901234567e19`.
//! FHIR counts a decimal's precision as part of its value (R4 datatypes.html#decimal), so a
//! filter that rewrote every number of the resources it kept would change them. Here what
//! the filter kept is copied from the original text, as the server wrote it; only what it
//! changed (entries withheld, `total` removed, an outcome added) is written anew.

use std::collections::HashMap;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::to_fhir_json;

/// [`to_fhir_json`] of `value`, a filtered copy of the JSON text `original`, keeping the
/// original's text wherever the filter kept what it held. `entry_sources` says where each
/// item of `value`'s `entry` comes from: the position of the original entry it is,
/// unchanged, or `None` for one the filter wrote (`FilteredResponse::entry_sources`). Other
/// members are compared with the original's; unchanged objects keep their member order,
/// changed ones are written `resourceType` first.
pub fn to_fhir_json_keeping(
    value: &Value,
    original: &[u8],
    entry_sources: &[Option<usize>],
) -> Vec<u8> {
    let held = std::str::from_utf8(original).ok().and_then(|text| {
        serde_json::Deserializer::from_str(text)
            .deserialize_map(Members)
            .ok()
    });
    let (Value::Object(members), Some(held)) = (value, held) else {
        return to_fhir_json(value, original.len());
    };
    let mut out = Vec::with_capacity(original.len());
    out.push(b'{');
    for (index, (name, member)) in type_first(members).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_anew(&Value::String(name.clone()), &mut out);
        out.push(b':');
        match (name.as_str(), member, held.get(name.as_str())) {
            ("entry", Value::Array(entries), Some(Held::Entries(originals))) => {
                out.push(b'[');
                for (index, entry) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    let source = entry_sources.get(index).copied().flatten();
                    match source.and_then(|source| originals.get(source)) {
                        Some(raw) => copy(raw, &mut out),
                        None => write_anew(entry, &mut out),
                    }
                }
                out.push(b']');
            }
            (_, _, Some(Held::Other(raw))) => write_keeping(member, raw, &mut out),
            _ => write_anew(member, &mut out),
        }
    }
    out.push(b'}');
    out
}

/// A member of the original's top level: its entries apart, each as the server wrote it.
enum Held<'a> {
    Entries(Vec<&'a RawValue>),
    Other(&'a RawValue),
}

/// Reads the original's top level in one pass, its `entry` array item by item.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = HashMap<String, Held<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = HashMap::new();
        while let Some(name) = map.next_key::<String>()? {
            let held = if name == "entry" {
                // Not an array: read as any other member (the filter refused it anyway).
                match map.next_value::<&RawValue>()? {
                    raw if raw.get().starts_with('[') => {
                        serde_json::from_str(raw.get()).map_or(Held::Other(raw), Held::Entries)
                    }
                    raw => Held::Other(raw),
                }
            } else {
                Held::Other(map.next_value()?)
            };
            members.insert(name, held);
        }
        Ok(members)
    }
}

/// The members of an object, `resourceType` first (as [`to_fhir_json`] writes them).
fn type_first(members: &serde_json::Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    let first = members.get_key_value("resourceType");
    first.into_iter().chain(
        members
            .iter()
            .filter(|(name, _)| name.as_str() != "resourceType"),
    )
}

/// Whether the JSON text `raw` holds `value`.
fn holds(raw: &RawValue, value: &Value) -> bool {
    serde_json::from_str::<Value>(raw.get()).is_ok_and(|held| held == *value)
}

fn copy(raw: &RawValue, out: &mut Vec<u8>) {
    out.extend_from_slice(raw.get().as_bytes());
}

fn write_anew(value: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(&to_fhir_json(value, 0));
}

/// Writes `value`, where the original held `original`: copied when unchanged; otherwise an
/// object member by member and an array item by item, each compared with the original's
/// (the filter removes, replaces and appends items but never reorders them). For the small
/// members beside the entries (`link`, `meta`): each comparison parses what it compares.
fn write_keeping(value: &Value, original: &RawValue, out: &mut Vec<u8>) {
    if holds(original, value) {
        return copy(original, out);
    }
    match value {
        Value::Object(members) => {
            let Ok(held) = serde_json::from_str::<HashMap<String, &RawValue>>(original.get())
            else {
                return write_anew(value, out);
            };
            out.push(b'{');
            for (index, (name, member)) in type_first(members).enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_anew(&Value::String(name.clone()), out);
                out.push(b':');
                match held.get(name) {
                    Some(raw) => write_keeping(member, raw, out),
                    None => write_anew(member, out),
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            let Ok(held) = serde_json::from_str::<Vec<&RawValue>>(original.get()) else {
                return write_anew(value, out);
            };
            let mut next = 0;
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                match held[next..].iter().position(|raw| holds(raw, item)) {
                    Some(offset) => {
                        copy(held[next + offset], out);
                        next += offset + 1;
                    }
                    None => write_anew(item, out),
                }
            }
            out.push(b']');
        }
        _ => write_anew(value, out),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::to_fhir_json_keeping;

    fn keeping(value: &Value, original: &str, sources: &[Option<usize>]) -> String {
        String::from_utf8(to_fhir_json_keeping(value, original.as_bytes(), sources)).unwrap()
    }

    const ORIGINAL: &str = r#"{"type":"searchset","resourceType":"Bundle","total":2,"entry":[
        {"resource":{"resourceType":"Observation","id":"o1","valueQuantity":{"value":2.50,"unit":"mmol/L"}}},
        {"resource":{"resourceType":"Observation","id":"o2","valueQuantity":{"value":7.0}}}
    ],"link":[{"relation":"self","url":"x"},{"relation":"last","url":"y"}],"meta":{"x":1.10}}"#;

    #[test]
    fn what_the_filter_kept_leaves_as_the_server_wrote_it() {
        let mut filtered: Value = serde_json::from_str(ORIGINAL).unwrap();
        let bundle = filtered.as_object_mut().unwrap();
        bundle.remove("total");
        bundle["entry"].as_array_mut().unwrap().remove(1);
        bundle["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({"resource": {"resourceType": "OperationOutcome", "issue": []}}));
        bundle["link"].as_array_mut().unwrap().pop();
        let written = keeping(&filtered, ORIGINAL, &[Some(0), None]);
        // The kept resource's decimal keeps its precision, and its text its spelling; so do
        // the members the filter left alone.
        let kept = r#"{"resource":{"resourceType":"Observation","id":"o1","valueQuantity":{"value":2.50,"unit":"mmol/L"}}}"#;
        assert!(written.contains(kept), "{written}");
        assert!(written.contains(r#""meta":{"x":1.10}"#), "{written}");
        assert!(
            written.contains(r#""link":[{"relation":"self","url":"x"}]"#),
            "{written}"
        );
        assert!(!written.contains("o2") && !written.contains("total"));
        assert!(
            written.starts_with(r#"{"resourceType":"Bundle","#),
            "{written}"
        );
        let read: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(read, filtered);
    }

    #[test]
    fn an_entry_the_filter_wrote_is_written_anew() {
        let mut filtered: Value = serde_json::from_str(ORIGINAL).unwrap();
        filtered["entry"][1] = json!({"response": {"status": "403"}});
        // Claimed unchanged by a wrong source, the entry would be the original's: the
        // sources are the filter's word, and only they decide.
        let written = keeping(&filtered, ORIGINAL, &[Some(0), None]);
        assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), filtered);
        assert!(
            written.contains(r#"{"response":{"status":"403"}}"#),
            "{written}"
        );
    }

    #[test]
    fn large_numbers_beside_the_entries_keep_their_text() {
        let original =
            r#"{"resourceType":"Bundle","meta":{"a":12345678901234567890.5,"b":1},"entry":[]}"#;
        let mut filtered: Value = serde_json::from_str(original).unwrap();
        filtered["meta"]["b"] = json!(3);
        let written = keeping(&filtered, original, &[]);
        assert!(written.contains("12345678901234567890.5"), "{written}");
        assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), filtered);
    }

    #[test]
    fn text_that_is_not_a_json_object_is_written_anew() {
        let value = json!({"resourceType": "Bundle", "total": 1});
        for original in ["not json", "[1]"] {
            let written = keeping(&value, original, &[]);
            assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), value);
        }
    }
}

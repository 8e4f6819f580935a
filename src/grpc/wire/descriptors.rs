//! What the walk knows of a message's fields: read from the file descriptor sets the
//! service is built with (the API's, and Envoy's ext_authz and ext_proc with their imports;
//! the ones reflection serves). The API's come from the protos its code is generated from;
//! Envoy's from the protos `envoy-types` was generated from, vendored in `proto/third_party/`.
//!
//! A walk led by a method's request message descends into a field only where that field
//! is a message, and reads a string or `bytes` field as what prost makes of it: one value,
//! nothing built inside. Without the descriptors every payload is read as a possible
//! message, down to the schema's depth, and a bearer token or a header value is parsed
//! field by field before it is found to be none. A field number the descriptors do not
//! name, or a scalar (whose payload may be a packed array), is read as before, so a field
//! the code has and the descriptors lack is counted as any payload is. What the walk
//! cannot survive is a field the descriptors call a string or `bytes` that the code
//! decodes as a message (a change protobuf allows): a unit test sends every such field
//! through the generated types (`every_text_field_is_text_in_the_generated_code`).

use std::collections::HashMap;
use std::sync::LazyLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorSet};

use crate::grpc::pb;

/// A message type of [`Descriptors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(u32);

/// What prost makes of a length-delimited field, as far as the walk needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string or `bytes`: one value.
    Text,
    /// A message of that type (a map's entries are messages too).
    Message(MessageId),
}

/// The message types of the descriptor sets, and the request message of each method.
#[derive(Debug, Default)]
pub struct Descriptors {
    /// Each type's string, `bytes` and message fields, by number.
    fields: Vec<Box<[(u64, Kind)]>>,
    /// `/package.Service/Method` to its request message: looked up on every call, so by
    /// foldhash (its keys are the descriptors' own, none a caller's).
    requests: foldhash::HashMap<String, MessageId>,
}

/// The descriptors of every service whose requests the gRPC listener weighs.
pub static DESCRIPTORS: LazyLock<Descriptors> =
    LazyLock::new(|| Descriptors::read(&[pb::FILE_DESCRIPTOR_SET, pb::ENVOY_FILE_DESCRIPTOR_SET]));

impl Descriptors {
    /// The types and methods of `sets`, each an encoded `FileDescriptorSet`. A set that does
    /// not decode is left out (the build writes them; its methods are walked without types).
    pub fn read(sets: &[&[u8]]) -> Descriptors {
        let files: Vec<_> = sets
            .iter()
            .filter_map(|set| FileDescriptorSet::decode(*set).ok())
            .flat_map(|set| set.file)
            .collect();
        // First every type's full name, then its fields, which name other types.
        let mut names = HashMap::new();
        let mut types = Vec::new();
        for file in &files {
            let package = file.package();
            let prefix = if package.is_empty() {
                String::new()
            } else {
                format!(".{package}")
            };
            for message in &file.message_type {
                collect(&prefix, message, &mut names, &mut types);
            }
        }
        let fields = types.iter().map(|message| kinds(message, &names)).collect();
        let mut requests = foldhash::HashMap::default();
        for file in &files {
            for service in &file.service {
                let full = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                for method in &service.method {
                    if let Some(&id) = names.get(method.input_type()) {
                        requests
                            .entry(format!("/{full}/{}", method.name()))
                            .or_insert(id);
                    }
                }
            }
        }
        Descriptors { fields, requests }
    }

    /// The request message of the gRPC method at `path` (`/package.Service/Method`).
    pub fn request_of(&self, path: &str) -> Option<MessageId> {
        self.requests.get(path).copied()
    }

    /// What field `number` of `message` is, when it is a string, `bytes` or a message.
    pub fn field(&self, message: MessageId, number: u64) -> Option<Kind> {
        let fields = self.fields.get(usize::try_from(message.0).ok()?)?;
        fields
            .binary_search_by_key(&number, |&(field, _)| field)
            .ok()
            .map(|index| fields[index].1)
    }
}

/// Numbers `message` and its nested types, under their full names (`.package.Outer.Inner`,
/// as fields name them). A name met twice keeps its first number.
fn collect<'a>(
    prefix: &str,
    message: &'a DescriptorProto,
    names: &mut HashMap<String, MessageId>,
    types: &mut Vec<&'a DescriptorProto>,
) {
    let name = format!("{prefix}.{}", message.name());
    for nested in &message.nested_type {
        collect(&name, nested, names, types);
    }
    if let Ok(id) = u32::try_from(types.len())
        && !names.contains_key(&name)
    {
        names.insert(name, MessageId(id));
        types.push(message);
    }
}

/// The string, `bytes` and message fields of `message`, sorted by number.
fn kinds(message: &DescriptorProto, names: &HashMap<String, MessageId>) -> Box<[(u64, Kind)]> {
    let mut fields: Vec<(u64, Kind)> = message
        .field
        .iter()
        .filter_map(|field| {
            let number = u64::try_from(field.number()).ok()?;
            let kind = match field.r#type() {
                Type::String | Type::Bytes => Kind::Text,
                Type::Message => Kind::Message(*names.get(field.type_name())?),
                _ => return None,
            };
            Some((number, kind))
        })
        .collect();
    fields.sort_unstable_by_key(|&(number, _)| number);
    fields.into_boxed_slice()
}

#[cfg(test)]
mod tests;

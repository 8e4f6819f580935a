//! The FHIRPath subset used by compartment and search parameter expressions.

use serde_json::Value;

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {}

/// A node an expression selected: a JSON value and, when it was reached through a choice
/// element (`value[x]` stored as `valueCodeableConcept`), the type suffix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub type_name: Option<&'a str>,
}

/// An expression outside the supported subset, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirPathError {
    #[error("unsupported FHIRPath in {expression:?}: {detail}")]
    Unsupported { expression: String, detail: String },
}

impl Expression {
    pub fn parse(text: &str) -> Result<Self, FhirPathError> {
        todo!()
    }

    pub fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Node<'a>> {
        todo!()
    }
}

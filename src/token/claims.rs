//! The claims a verified token keeps for `IntrospectToken` answers beyond its parsed context,
//! issuer, audiences and expiry (RFC 7662 §2.2; SMART App Launch 2.2 token introspection):
//! typed, so the token cache holds a few small fields per token rather than a JSON map.

use serde_json::{Map, Value, json};

/// What introspection answers with that no other field of a verified token holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntrospectionClaims {
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    pub jti: Option<Box<str>>,
    pub token_type: Option<Box<str>>,
    /// Each `fhirContext` item as compact JSON: SMART 2.2 objects as they are, 2.0 strings
    /// wrapped as `{"reference": "..."}`.
    pub fhir_context: Box<[Box<str>]>,
    pub need_patient_banner: Option<bool>,
    pub intent: Option<Box<str>>,
    pub tenant: Option<Box<str>>,
    pub smart_style_url: Option<Box<str>>,
}

impl IntrospectionClaims {
    /// Reads them from verified claims; a claim of an unexpected type is left out (its
    /// token was accepted on the claims that decide, and introspection only reports).
    /// One pass over the members: most of these claims are absent from a token, and a
    /// look-up of each would compare its name with every member's, on every new token
    /// (docs/performance-log.md, "Fewer instructions around a new token's signature").
    pub fn read(claims: &Map<String, Value>) -> Self {
        let text = |value: &Value| value.as_str().map(Box::from);
        let mut read = IntrospectionClaims::default();
        for (name, value) in claims {
            match name.as_str() {
                "iat" => read.iat = super::jwt::numeric_date(value),
                "nbf" => read.nbf = super::jwt::numeric_date(value),
                "jti" => read.jti = text(value),
                "token_type" => read.token_type = text(value),
                "fhirContext" => read.fhir_context = fhir_context(value),
                "need_patient_banner" => read.need_patient_banner = value.as_bool(),
                "intent" => read.intent = text(value),
                "tenant" => read.tenant = text(value),
                "smart_style_url" => read.smart_style_url = text(value),
                _ => {}
            }
        }
        read
    }

    /// The heap bytes they hold, for the cache's weigher.
    pub fn heap_bytes(&self, allocation: impl Fn(usize) -> usize) -> usize {
        let texts = [
            &self.jti,
            &self.token_type,
            &self.intent,
            &self.tenant,
            &self.smart_style_url,
        ];
        let items: usize = self
            .fhir_context
            .iter()
            .map(|item| allocation(item.len()))
            .sum();
        texts
            .iter()
            .filter_map(|text| text.as_ref())
            .map(|text| allocation(text.len()))
            .sum::<usize>()
            + allocation(self.fhir_context.len() * std::mem::size_of::<Box<str>>())
            + items
    }
}

fn fhir_context(value: &Value) -> Box<[Box<str>]> {
    let Value::Array(items) = value else {
        return Box::default();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(reference) => Some(json!({ "reference": reference }).to_string()),
            Value::Object(_) => Some(item.to_string()),
            _ => None,
        })
        .map(Box::from)
        .collect()
}

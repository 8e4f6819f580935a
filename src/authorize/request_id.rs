//! The caller's request id (`request_id` of the gRPC API, Envoy's `x-request-id`): echoed in
//! the answer, the audit line and the span, so one decision can be found from the FHIR
//! server's own logs.

use super::Refusal;

/// Longest accepted request id: a UUID is 36 bytes, a W3C trace id 32.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The request id in `value`, `None` when empty. An id is echoed into logs and headers, so
/// only visible ASCII is accepted (no spaces, no control characters, no quotes to break
/// out of a log format), and at most [`MAX_REQUEST_ID_BYTES`]; anything else is refused
/// rather than cleaned up, so the id in the audit line is the one the caller sent.
pub fn request_id(value: &str) -> Result<Option<&str>, Refusal> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_REQUEST_ID_BYTES {
        return Err(Refusal::InvalidRequest(format!(
            "request id: at most {MAX_REQUEST_ID_BYTES} bytes"
        )));
    }
    if !value
        .bytes()
        .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\')
    {
        return Err(Refusal::InvalidRequest(
            "request id: visible ASCII only, without quotes or backslashes".to_owned(),
        ));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests;

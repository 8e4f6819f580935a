//! base64url without padding (RFC 4648 §5), the encoding of each segment of a compact JWS
//! (RFC 7515 §2).
//!
//! Decoded with base64-simd, which reads many characters at once: the segments of a new
//! RS256 token are about 860 characters of base64, and a decoder reading one character at a
//! time spent 8 instructions on each of them where this one spends under 2
//! (docs/performance-log.md, "Fewer instructions around a new token's signature").
//!
//! Strict as RFC 7515 §2 asks: no padding, no whitespace, no character of another alphabet,
//! and the bits the last character leaves over must be zero, so a segment has one spelling
//! only, as `base64`'s strict engine reads it too (the tests hold the two to that).

/// The bytes `segment` encodes, or `None` when it is not strict unpadded base64url.
pub fn decode(segment: &str) -> Option<Vec<u8>> {
    base64_simd::URL_SAFE_NO_PAD.decode_to_vec(segment).ok()
}

#[cfg(test)]
mod tests;

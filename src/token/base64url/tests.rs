use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use super::decode;

/// The `base64` crate's strict engine, the reading RFC 7515 §2 asks for.
fn strict(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

#[test]
fn one_spelling_per_segment() {
    assert_eq!(decode("QQ"), Some(b"A".to_vec()));
    assert_eq!(decode("QUE"), Some(b"AA".to_vec()));
    assert_eq!(decode("-_8"), Some(vec![0xfb, 0xff]));
    assert_eq!(decode(""), Some(Vec::new()));
    for refused in [
        "QR", "QUF", // leftover bits set: another spelling of `QQ`, `QUE`
        "QQ==", "QUE=", // padding
        "Q", "QUFBQ", // a length no byte string encodes
        "+/8",   // base64, not base64url
        "Q Q", "QQ\n", "\tQQ", // whitespace
        "QQ.", "Q\u{e9}", // neither alphabet
    ] {
        assert_eq!(decode(refused), None, "{refused:?}");
        assert_eq!(strict(refused), None, "{refused:?}");
    }
}

proptest! {
    /// Every encoding decodes to its bytes, across the lengths where the vectorised
    /// decoder switches between its wide and its scalar loops.
    #[test]
    fn decodes_what_was_encoded(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        prop_assert_eq!(decode(&URL_SAFE_NO_PAD.encode(&bytes)), Some(bytes));
    }

    /// A segment with one character changed, removed or added, anywhere, is read as the
    /// strict engine reads it: the same bytes or the same refusal.
    #[test]
    fn agrees_with_the_strict_engine_on_damaged_segments(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        at in any::<prop::sample::Index>(),
        damage in 0u8..3,
        character in prop::sample::select(
            b"AQgw_-+/=. \n\x00\x7fz9".to_vec(),
        ),
    ) {
        let mut segment = URL_SAFE_NO_PAD.encode(&bytes).into_bytes();
        let position = at.index(segment.len() + 1);
        match damage {
            0 if position < segment.len() => segment[position] = character,
            1 if position < segment.len() => {
                segment.remove(position);
            }
            _ => segment.insert(position, character),
        }
        let segment = String::from_utf8(segment).expect("ASCII");
        prop_assert_eq!(decode(&segment), strict(&segment), "{:?}", segment);
    }
}

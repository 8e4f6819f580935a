//! The load generator's side of a call whose request was encoded once, before the scenario,
//! and whose answer is read for the one field that says it was the expected one.
//!
//! A typed tonic client clones and encodes the request and decodes every string of the
//! answer on each call: for `CheckAccess` (a 1 KB request, a 250-byte answer) that kept the
//! generator's one CPU busier than the server's, so the server waited for calls and the
//! ratio measured the generator. With the bytes ready, each call costs the generator what a
//! `Health/Check` does, as with h2load's pre-encoded frames.

use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// A codec that sends [`Bytes`] as they are and returns the answer's bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Preencoded;

#[derive(Clone, Copy, Debug, Default)]
struct AsIs;

impl Encoder for AsIs {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for AsIs {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for Preencoded {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = AsIs;
    type Decoder = AsIs;

    fn encoder(&mut self) -> AsIs {
        AsIs
    }

    fn decoder(&mut self) -> AsIs {
        AsIs
    }
}

/// The answer field every measured call is judged by: field 1, a varint, in
/// `HealthCheckResponse` (`status`, 1 is SERVING) and `CheckAccessResponse` (`decision`).
/// prost skips the other fields without allocating.
#[derive(Clone, PartialEq, Message)]
struct FirstField {
    #[prost(int32, optional, tag = "1")]
    value: Option<i32>,
}

/// Envoy's `CheckResponse`: its `status` (field 1, a `google.rpc.Status` whose `code` is
/// field 1).
#[derive(Clone, PartialEq, Message)]
struct EnvoyAnswer {
    #[prost(message, optional, tag = "1")]
    status: Option<FirstField>,
}

/// What a measured call must answer.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Field 1 holds this value: SERVING (1) for Health, ALLOW for `CheckAccess`. It must
    /// not be zero: proto3 leaves a zero out, and a field left out never passes (so no
    /// zero, DECISION_UNSPECIFIED among them, is ever taken for the expected answer).
    FirstField(i32),
    /// Envoy's `CheckResponse` with a `status` whose code is OK (0), written out.
    EnvoyOk,
}

impl Expect {
    fn is_met_by(self, answer: &[u8]) -> bool {
        match self {
            Expect::FirstField(expected) => {
                debug_assert_ne!(expected, 0, "a zero is never written: expect another value");
                FirstField::decode(answer).is_ok_and(|answer| answer.value == Some(expected))
            }
            Expect::EnvoyOk => EnvoyAnswer::decode(answer).is_ok_and(|answer| {
                answer
                    .status
                    .is_some_and(|status| status.value.unwrap_or(0) == 0)
            }),
        }
    }
}

/// The encoded body of `message`, to send on every call.
pub fn encode(message: &impl Message) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// Sends `body` to `path` (`/package.Service/Method`) on `channel`; whether the answer is
/// the expected one.
pub async fn call(channel: &Channel, path: &'static str, body: Bytes, expect: Expect) -> bool {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if grpc.ready().await.is_err() {
        return false;
    }
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, Preencoded)
        .await
        .is_ok_and(|answer| expect.is_met_by(answer.get_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_judged_by_its_first_field_written_out() {
        let allow = FirstField { value: Some(1) }.encode_to_vec();
        assert!(Expect::FirstField(1).is_met_by(&allow));
        assert!(!Expect::FirstField(2).is_met_by(&allow));
        // proto3 leaves a zero out: an answer without the field is never the expected one.
        assert!(!Expect::FirstField(1).is_met_by(&[]));
        let ok = EnvoyAnswer {
            status: Some(FirstField { value: None }),
        }
        .encode_to_vec();
        assert!(Expect::EnvoyOk.is_met_by(&ok));
        assert!(!Expect::EnvoyOk.is_met_by(&[]));
        let denied = EnvoyAnswer {
            status: Some(FirstField { value: Some(7) }),
        }
        .encode_to_vec();
        assert!(!Expect::EnvoyOk.is_met_by(&denied));
    }
}

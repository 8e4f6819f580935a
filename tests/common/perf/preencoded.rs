//! The load generator's side of a call whose request was encoded once, before the scenario,
//! sent over a bare HTTP/2 connection, and whose answer is judged by what it must say:
//! mostly the one field that says it was the expected one.
//!
//! A typed tonic client clones and encodes the request and decodes every string of the
//! answer on each call: for `CheckAccess` (a 1 KB request, a 250-byte answer) that kept the
//! generator's one CPU busier than the server's, so the server waited for calls and the
//! ratio measured the generator. With the frame ready and h2's client alone, each call
//! costs the generator less than it costs the server, as h2load's pre-encoded frames do
//! (docs/performance-log.md, "The load generator at its limit").

use prost::Message;
use prost::bytes::Bytes;
use smart_authz::app::SingleWrite;

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
    /// Whatever this says of the answer's bytes (decoded whole, for a field beyond the
    /// first).
    Answer(fn(&[u8]) -> bool),
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
            Expect::Answer(judge) => judge(answer),
        }
    }
}

/// A request encoded once, as the gRPC message frame that travels on the wire (flag, length,
/// bytes): every call sends the same bytes, without a copy.
#[derive(Clone, Debug)]
pub struct Body(pub(super) Bytes);

impl Body {
    /// The whole frame, as h2load's `-d` file holds it.
    pub fn frame(&self) -> &[u8] {
        &self.0
    }
}

/// A gRPC frame's prefix: the compression flag and the message's length (big-endian u32).
const FRAME_PREFIX: usize = 5;

/// `message`, encoded, to send on every call.
pub fn encode(message: &impl Message) -> Body {
    let mut frame = Vec::with_capacity(FRAME_PREFIX + message.encoded_len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.encoded_len()).unwrap().to_be_bytes());
    message.encode(&mut frame).unwrap();
    Body(Bytes::from(frame))
}

/// The message of a gRPC frame that is the whole of `data`, uncompressed.
fn unframe(data: &[u8]) -> Option<&[u8]> {
    let (&[0, a, b, c, d], message) = data.split_first_chunk::<FRAME_PREFIX>()? else {
        return None;
    };
    (u32::from_be_bytes([a, b, c, d]) as usize == message.len()).then_some(message)
}

/// An HTTP/2 connection driven with the `h2` crate's client alone: a frame out, a frame
/// and the trailers in. A tonic channel adds a `tower::Buffer` hop (a task switch) and
/// hyper's client to each call.
#[derive(Clone, Debug)]
pub struct Link {
    send: h2::client::SendRequest<Bytes>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

impl Link {
    /// An HTTP/2 connection over `io` (already connected, and through TLS if the server
    /// asks for it), its driver spawned on the current runtime.
    pub async fn handshake<T>(
        io: T,
        scheme: http::uri::Scheme,
        authority: http::uri::Authority,
    ) -> Self
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // Without vectored writes h2 copies a request of up to 1 KB into its buffer and
        // writes many at once, as h2load does; with them, each went in a `writev` of its own.
        let (send, connection) = h2::client::handshake(SingleWrite(io))
            .await
            .expect("an HTTP/2 handshake");
        tokio::spawn(async move {
            // The connection ends when the server stops; nothing waits on that here.
            let _ = connection.await;
        });
        Link {
            send,
            scheme,
            authority,
        }
    }

    /// The answer's data, if the call ended with HTTP 200 and `grpc-status: 0` in its
    /// trailers.
    async fn unary(&self, path: &'static str, body: &Body) -> Option<Vec<u8>> {
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(http::uri::PathAndQuery::from_static(path))
            .build()
            .ok()?;
        let request = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .ok()?;
        let mut send = self.send.clone().ready().await.ok()?;
        let (answer, mut stream) = send.send_request(request, false).ok()?;
        stream.send_data(body.0.clone(), true).ok()?;
        let answer = answer.await.ok()?;
        if answer.status() != http::StatusCode::OK {
            return None;
        }
        let mut body = answer.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.ok()?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.ok()??;
        if trailers.get("grpc-status")? != "0" {
            return None;
        }
        Some(data)
    }
}

/// Sends `body` to `path` (`/package.Service/Method`) over `link`; whether the answer is
/// the expected one.
pub async fn call(link: &Link, path: &'static str, body: &Body, expect: Expect) -> bool {
    link.unary(path, body)
        .await
        .is_some_and(|data| unframe(&data).is_some_and(|answer| expect.is_met_by(answer)))
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

    #[test]
    fn an_answer_is_one_whole_uncompressed_frame() {
        let body = encode(&FirstField { value: Some(1) });
        assert_eq!(unframe(body.frame()), Some(&[8, 1][..]));
        assert_eq!(unframe(&[0, 0, 0, 0, 0]), Some(&[][..]));
        // Compressed, short, long, two frames, no prefix: none is an answer.
        assert_eq!(unframe(&[1, 0, 0, 0, 2, 8, 1]), None);
        assert_eq!(unframe(&[0, 0, 0, 0, 3, 8, 1]), None);
        assert_eq!(unframe(&[0, 0, 0, 0, 1, 8, 1]), None);
        assert_eq!(unframe(&[0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0, 2, 8, 1]), None);
        assert_eq!(unframe(&[0, 0, 0]), None);
    }
}

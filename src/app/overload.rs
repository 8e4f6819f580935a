//! Load shedding on the gRPC listener: every call takes a slot of the shared
//! [`Capacity`] (`max_concurrent_calls`); one beyond it is answered `RESOURCE_EXHAUSTED` at
//! once. Health checks are never shed: a busy replica is not a dead one.
//!
//! A unary call takes its slot once its whole message has arrived, within
//! [`MESSAGE_READ_TIMEOUT`]: a peer that opens streams and sends their headers but never
//! their message would otherwise hold a slot each for as long as it likes, and a few
//! connections of them every slot of the process. Reflection's stream holds a slot only
//! while it opens: tonic's call ends when the handler hands back its answer stream, so the
//! stream's messages are not counted. ext_proc's stream takes none to open: each request's
//! decision on it takes its own (`envoy::processor`), and an opening slot, still held when
//! the stream's first message is read, would race that decision for the last one. Streams
//! per connection are bounded (`max_concurrent_streams`), and the bytes of the messages
//! every connection has in reading by `max_buffered_request_bytes`: a unary call's message
//! read whole (`authorize::reading`) and then weighed as it will be decoded (`grpc::wire`),
//! both held until the call ends; a streaming call's counted message by message
//! ([`CountedMessages`]), ext_proc's weighed too. Health's messages are not counted
//! (health is never refused): its decoding limit is a few kilobytes instead
//! (`app::SMALL_MESSAGE_BYTES`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use tonic::body::Body;
use tower::{Layer, Service};

use super::counted_messages::CountedMessages;
use crate::authorize::{Capacity, MessageHeld, OVER_BUDGET, Unread, busy};
use crate::grpc::wire;
use crate::telemetry;

const HEALTH_PATH: &str = "/grpc.health.v1.Health/";
/// Its streams count each decision they take, not their opening.
const EXT_PROC_PATH: &str = "/envoy.service.ext_proc.v3.ExternalProcessor/";

/// The API's service: its messages are weighed before they are decoded.
const API_SERVICE: &str = "/smartauthz.v1.AuthzService/";
/// Envoy's ext_authz: its messages are weighed too.
const ENVOY_AUTHZ_SERVICE: &str = "/envoy.service.auth.v3.Authorization/";

/// The services whose every method is unary: their request body is one message, read
/// before the slot. Reflection's stream takes its slot when it opens, its body being the
/// stream itself.
const UNARY_SERVICES: [&str; 2] = [API_SERVICE, ENVOY_AUTHZ_SERVICE];

/// How long a unary call's message may take to arrive once its headers are in.
pub const MESSAGE_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits the calls in flight of every service it wraps, together with the other faces.
#[derive(Clone, Debug)]
pub struct ShedLayer {
    capacity: Capacity,
    max_request_bytes: usize,
}

impl ShedLayer {
    pub fn new(capacity: Capacity, max_request_bytes: usize) -> Self {
        ShedLayer {
            capacity,
            max_request_bytes,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            capacity: self.capacity.clone(),
            max_request_bytes: self.max_request_bytes,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Shed<S> {
    inner: S,
    capacity: Capacity,
    max_request_bytes: usize,
}

impl<S> Service<http::Request<Body>> for Shed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with(HEALTH_PATH) {
            return Box::pin(self.inner.call(request));
        }
        if path.starts_with(EXT_PROC_PATH) {
            let capacity = self.capacity.clone();
            let schema = wire::Schema::ENVOY.reading(path);
            let request =
                request.map(|body| Body::new(CountedMessages::weighed(body, capacity, schema)));
            return Box::pin(self.inner.call(request));
        }
        if !UNARY_SERVICES
            .iter()
            .any(|service| path.starts_with(service))
        {
            let request = counted(request, &self.capacity);
            let Some(slot) = self.capacity.enter() else {
                let refused = overloaded(&self.capacity);
                return Box::pin(async move { Ok(refused) });
            };
            let call = self.inner.call(request);
            return Box::pin(async move {
                let response = call.await;
                drop(slot);
                response
            });
        }
        // The service this one was made ready for serves the call; a clone stays for the
        // next (tower's guide, "the ready service is taken").
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let capacity = self.capacity.clone();
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // A gRPC message frame is a 5-byte prefix and the message.
            let read = capacity.read_whole(body, max_request_bytes.saturating_add(PREFIX));
            let mut read = match tokio::time::timeout(MESSAGE_READ_TIMEOUT, read).await {
                Ok(Ok(read)) => read,
                // The API's limit; tonic's decoder, refusing for a service this layer does
                // not read, names every service's (`size_limit_named`).
                Ok(Err(Unread::TooLarge)) => {
                    return Ok(tonic::Status::resource_exhausted(format!(
                        "the request is larger than max_request_bytes ({max_request_bytes} bytes)"
                    ))
                    .into_http());
                }
                Ok(Err(Unread::OverBudget)) => {
                    return Ok(busy(OVER_BUDGET).into_http());
                }
                Ok(Err(Unread::CutOff)) => {
                    return Ok(tonic::Status::cancelled("the request was cut off").into_http());
                }
                Err(_) => {
                    return Ok(tonic::Status::deadline_exceeded(format!(
                        "the request message did not arrive within {} s",
                        MESSAGE_READ_TIMEOUT.as_secs()
                    ))
                    .into_http());
                }
            };
            let decoded = match decoding_cost(parts.uri.path(), &read.bytes) {
                Ok(decoded) => decoded,
                Err(costly) => return Ok(costly.into_http()),
            };
            let holding = read.bytes.len() + decoded;
            let Some(decoded_held) = capacity.try_hold_bytes(decoded) else {
                return Ok(undecodable(&capacity, holding).into_http());
            };
            read.held.add(decoded_held);
            let Some(slot) = capacity.enter() else {
                return Ok(overloaded(&capacity));
            };
            // A small message is within the headroom the handler's judgement leaves for
            // what a call holds beside what it declares: the hot path inserts nothing.
            if holding > capacity.headroom() / 2 {
                parts.extensions.insert(MessageHeld(holding));
            }
            // Metadata a client sends as trailers (tonic merges them into the request's).
            let message = Full::new(read.bytes);
            let body = match read.trailers {
                None => Body::new(message),
                Some(trailers) => {
                    Body::new(message.with_trailers(std::future::ready(Some(Ok(trailers)))))
                }
            };
            let request = http::Request::from_parts(parts, body);
            let response = inner.call(request).await;
            drop((slot, read.held));
            response
        })
    }
}

/// What the message of a unary call may take once decoded (`grpc::wire`), to be held from
/// the budget while its call runs; refused before tonic decodes it when it holds more
/// fields than any request needs, or a batch more entries than one may have, which the
/// handler would refuse only once every entry was built.
fn decoding_cost(path: &str, framed: &[u8]) -> Result<usize, tonic::Status> {
    let schema = match path.strip_prefix(API_SERVICE) {
        Some("BatchCheckAccess") => wire::Schema::BATCH,
        Some(_) => wire::Schema::API,
        None if path.starts_with(ENVOY_AUTHZ_SERVICE) => wire::Schema::ENVOY,
        None => return Ok(0),
    }
    .reading(path);
    // An uncompressed message behind gRPC's 5-byte prefix; anything else is tonic's to
    // refuse (compressed messages are not accepted).
    let Some(message) = framed_message(framed) else {
        return Ok(0);
    };
    // tonic reads a unary call's body to its end, decoding every message after the first
    // before it drops them: what is weighed is all that is decoded.
    if framed.len() > PREFIX + message.len() {
        return Err(tonic::Status::invalid_argument(
            "a unary call carries one request message",
        ));
    }
    wire::weigh(message, schema).map_err(|costly| wire_refusal(&costly))
}

/// A message refused before it is decoded: too many fields is too costly for any retry, a
/// batch of too many entries a request to split.
pub(super) fn wire_refusal(costly: &wire::TooCostly) -> tonic::Status {
    match costly {
        wire::TooCostly::Fields => tonic::Status::resource_exhausted(costly.to_string()),
        wire::TooCostly::Entries(_) => tonic::Status::invalid_argument(costly.to_string()),
    }
}

/// The refusal of a call whose message, decoded, would take `bytes` of the budget in all
/// (with its own bytes) and the budget has not them free: too large when no retry finds
/// them (`RESOURCE_EXHAUSTED` without pushback), else busy (counted as shed).
pub(super) fn undecodable(capacity: &Capacity, bytes: usize) -> tonic::Status {
    if capacity.beyond_whole_budget(bytes) {
        return tonic::Status::resource_exhausted(format!(
            "the request would take more memory once decoded than max_buffered_request_bytes ({} bytes) allows: split it",
            capacity.buffered_limit()
        ));
    }
    telemetry::metrics::shed();
    busy(OVER_BUDGET)
}

/// The length of gRPC's message prefix: a compressed flag and a 4-byte big-endian length
/// (gRPC over HTTP/2, "Length-Prefixed-Message").
const PREFIX: usize = 5;

/// The first message of a unary call's body, uncompressed.
fn framed_message(framed: &[u8]) -> Option<&[u8]> {
    let (prefix, rest) = framed.split_first_chunk::<PREFIX>()?;
    let [0, length @ ..] = *prefix else {
        return None;
    };
    let length = usize::try_from(u32::from_be_bytes(length)).ok()?;
    rest.get(..length)
}

/// A streaming call's request, its messages counted against the budget of buffered bytes.
fn counted(request: http::Request<Body>, capacity: &Capacity) -> http::Request<Body> {
    request.map(|body| Body::new(CountedMessages::new(body, capacity.clone())))
}

/// The answer to a call beyond `max_concurrent_calls`.
fn overloaded(capacity: &Capacity) -> http::Response<Body> {
    busy(capacity.refusal_message()).into_http()
}

#[cfg(test)]
mod tests;

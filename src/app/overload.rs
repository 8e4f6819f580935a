//! Load shedding on the gRPC listener: every call takes a slot of the shared
//! [`Capacity`] (`max_concurrent_calls`); one beyond it is answered `RESOURCE_EXHAUSTED` at
//! once. Health checks are never shed: a busy replica is not a dead one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::authorize::Capacity;

const HEALTH_PATH: &str = "/grpc.health.v1.Health/";

/// Limits the calls in flight of every service it wraps, together with the other faces.
#[derive(Clone, Debug)]
pub struct ShedLayer {
    capacity: Capacity,
}

impl ShedLayer {
    pub fn new(capacity: Capacity) -> Self {
        ShedLayer { capacity }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            capacity: self.capacity.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Shed<S> {
    inner: S,
    capacity: Capacity,
}

impl<S, B> Service<http::Request<B>> for Shed<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with(HEALTH_PATH) {
            return Box::pin(self.inner.call(request));
        }
        let Some(slot) = self.capacity.enter() else {
            let refused = tonic::Status::resource_exhausted(self.capacity.refusal_message());
            return Box::pin(async move { Ok(refused.into_http()) });
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(slot);
            response
        })
    }
}

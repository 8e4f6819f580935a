//! Load shedding: at most `max_concurrent_calls` calls in flight across every connection;
//! one more is answered `RESOURCE_EXHAUSTED` at once (and counted) instead of queueing
//! without bound. A queue only turns an overload into timeouts for everyone, while a quick
//! refusal lets a client retry on another replica. Health checks are never shed: a busy
//! replica is not a dead one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::telemetry;

const HEALTH_PATH: &str = "/grpc.health.v1.Health/";

/// Limits the calls in flight of every service it wraps, together.
#[derive(Clone, Debug)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl ShedLayer {
    pub fn new(limit: usize) -> Self {
        ShedLayer {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: Arc::clone(&self.permits),
            limit: self.limit,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    limit: usize,
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
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            telemetry::metrics::shed();
            let limit = self.limit;
            return Box::pin(async move { Ok(overloaded(limit)) });
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(permit);
            response
        })
    }
}

/// A gRPC RESOURCE_EXHAUSTED answer, as trailers-only.
fn overloaded(limit: usize) -> http::Response<tonic::body::Body> {
    let status = tonic::Status::resource_exhausted(format!(
        "overloaded: more than {limit} calls in flight (max_concurrent_calls); retry, on another replica if there is one"
    ));
    status.into_http()
}

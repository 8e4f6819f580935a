//! A tiny in-process HTTP server for unit tests of introspection and discovery: answers
//! per path as the test sets them, can be slow, and records what it received. Only for
//! faults and unit-level behaviour; real authorization servers are tested in `tests/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The path, without the query.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
}

impl Received {
    /// The decoded value of a form field of the body.
    pub fn form(&self, name: &str) -> Option<String> {
        self.body.split('&').find_map(|pair| {
            let (field, value) = pair.split_once('=')?;
            (field == name).then(|| {
                percent_encoding::percent_decode_str(&value.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }
}

/// What one path answers: status, JSON body text and a delay.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
    pub delay: Duration,
}

type Responder = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

#[derive(Default)]
struct Shared {
    responders: Mutex<HashMap<String, Responder>>,
    received: Mutex<Vec<Received>>,
}

/// The server; clones share it.
#[derive(Clone)]
pub struct FakeServer {
    /// `http://127.0.0.1:port`, without a trailing slash.
    pub base: String,
    shared: Arc<Shared>,
}

impl FakeServer {
    /// Starts a server on 127.0.0.1 that answers 404 until paths are set.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakeServer {
            base: format!("http://{address}"),
            shared,
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `path` answers `status` with `body` from now on.
    pub fn set(&self, path: &str, status: StatusCode, body: impl Into<String>) {
        let body = body.into();
        self.respond(path, move |_, _| Answer {
            status,
            body: body.clone(),
            delay: Duration::ZERO,
        });
    }

    /// `path` answers with `responder(request, nth call to this path starting at 0)`.
    pub fn respond(
        &self,
        path: &str,
        responder: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static,
    ) {
        self.shared
            .responders
            .lock()
            .unwrap()
            .insert(path.to_owned(), Arc::new(responder));
    }

    /// The requests `path` received so far.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.path == path)
            .cloned()
            .collect()
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.received(path).len()
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let request = Received {
        path: uri.path().to_owned(),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body,
    };
    let nth = {
        let mut received = shared.received.lock().unwrap();
        let nth = received
            .iter()
            .filter(|earlier| earlier.path == request.path)
            .count();
        received.push(request.clone());
        nth
    };
    let responder = shared
        .responders
        .lock()
        .unwrap()
        .get(&request.path)
        .cloned();
    let answer = match responder {
        Some(responder) => responder(&request, nth),
        None => Answer {
            status: StatusCode::NOT_FOUND,
            body: "{\"error\":\"not_found\"}".to_owned(),
            delay: Duration::ZERO,
        },
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    (
        answer.status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
}

//! The deny vocabulary of the layer around the engine: why a request was refused before the
//! engine could decide it, and how each refusal is answered on HTTP (Envoy) and gRPC.
//!
//! The engine's own denies are [`Reason`]s of a [`Decision`](crate::decision::Decision);
//! a refused token is a [`TokenError`]. Both name themselves with `as_str()`, and
//! [`Refusal::as_str`] is the one place that names the rest.

use tonic::Code;

use crate::decision::Reason;
use crate::token::TokenError;

/// Why a request was not decided by the engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The token was refused (RFC 6750 §3.1 `invalid_token`).
    #[error("denied: {0}")]
    Token(TokenError),
    /// The request cannot be read as a FHIR request, or breaks a limit.
    #[error("{0}")]
    InvalidRequest(String),
    /// An HTTP path under no configured FHIR base (Envoy face).
    #[error("the path is under no configured FHIR base")]
    NoFhirBase,
    /// The request is decided on its body, which was not forwarded whole.
    #[error("{0}")]
    BodyRequired(String),
    /// The request names no configured FHIR server, or none when it must.
    #[error("{0}")]
    UnknownServer(String),
    /// Mutual TLS: the connection presented no client certificate.
    #[error("a client certificate is required")]
    CallerUnauthenticated,
    /// Mutual TLS: the caller's certificate is not bound to what it asked for.
    #[error("{0}")]
    CallerNotAllowed(String),
    /// A FHIR server's answer that cannot be filtered, so may not go back unread.
    #[error("{1}")]
    Answer(AnswerProblem, String),
    /// The memory reading the request needs is held by other calls: a retry may get it.
    #[error("{0}")]
    Overloaded(String),
    /// Reading the request would take more memory than the service holds for all of them.
    #[error("{0}")]
    TooLarge(String),
}

/// Why an answer cannot be filtered (docs/response-filtering.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerProblem {
    /// Larger than `response_filter.max_body_bytes`.
    TooLarge,
    /// Not FHIR JSON the service reads (not JSON, a duplicate member, no resourceType).
    Unreadable,
    /// Compressed, or in a content type other than FHIR JSON.
    Encoded,
    /// The body asked for never came: the stream ended first.
    Missing,
    /// The ext_proc filter's `processing_mode` keeps back or streams past what the answer is
    /// judged by (the request headers, the answer's status, its whole body): Envoy's
    /// configuration, not the FHIR server, is to fix.
    ProcessingMode,
}

/// How an answer is carried on each face.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The HTTP status of an Envoy denied response.
    pub http: u16,
    /// The gRPC code: of the `CheckResponse.status` on the Envoy face, and of the error of a
    /// refused `CheckAccess` call where the refusal is not a token's.
    pub grpc: Code,
}

impl Status {
    const UNAUTHORIZED: Status = Status {
        http: 401,
        grpc: Code::Unauthenticated,
    };
    const BAD_REQUEST: Status = Status {
        http: 400,
        grpc: Code::InvalidArgument,
    };
    pub const FORBIDDEN: Status = Status {
        http: 403,
        grpc: Code::PermissionDenied,
    };
}

/// The reason of an allow a face will not pass on as one: the grants it leaves are the
/// caller's to apply, and the caller does not say it applies them (AuthZEN without
/// `context.enforces_grants`, Envoy writes without `[envoy] server_checks_writes`). The
/// decision, and its audit line, stay the engine's allow.
pub const GRANTS_NOT_ENFORCED: &str = "grants_not_enforced";

impl Refusal {
    /// The same refusal, its message naming the `field` of the request it is about.
    pub fn in_field(self, field: &str) -> Refusal {
        match self {
            Refusal::InvalidRequest(message) => {
                Refusal::InvalidRequest(format!("{field}: {message}"))
            }
            Refusal::BodyRequired(message) => Refusal::BodyRequired(format!("{field}: {message}")),
            other => other,
        }
    }

    /// The `reason` label of metrics, audit lines and spans.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Token(error) => error.as_str(),
            Refusal::InvalidRequest(_) | Refusal::BodyRequired(_) => {
                Reason::UnsupportedRequest.as_str()
            }
            Refusal::NoFhirBase => "no_fhir_base",
            Refusal::UnknownServer(_) => "unknown_fhir_server",
            Refusal::CallerUnauthenticated => "caller_unauthenticated",
            Refusal::CallerNotAllowed(_) => "caller_not_allowed",
            Refusal::Answer(AnswerProblem::TooLarge, _) => "answer_too_large",
            Refusal::Answer(AnswerProblem::Unreadable, _) => "answer_unreadable",
            Refusal::Answer(AnswerProblem::Encoded, _) => "answer_encoded",
            Refusal::Answer(AnswerProblem::Missing, _) => "answer_missing",
            Refusal::Answer(AnswerProblem::ProcessingMode, _) => "processing_mode",
            Refusal::Overloaded(_) => "overloaded",
            Refusal::TooLarge(_) => "request_too_large",
        }
    }

    /// The answer's status on each face.
    pub fn status(&self) -> Status {
        match self {
            Refusal::Token(_) => Status::UNAUTHORIZED,
            // The proxy, not the app, lacks a certificate: the app is not asked to log in.
            Refusal::CallerUnauthenticated => Status {
                http: 403,
                grpc: Code::Unauthenticated,
            },
            Refusal::InvalidRequest(_) | Refusal::UnknownServer(_) => Status::BAD_REQUEST,
            Refusal::NoFhirBase | Refusal::BodyRequired(_) | Refusal::CallerNotAllowed(_) => {
                Status::FORBIDDEN
            }
            // The app's token is not at fault: the gateway cannot deliver what it cannot read.
            Refusal::Answer(problem, _) => Status {
                http: 502,
                grpc: match problem {
                    AnswerProblem::TooLarge => Code::ResourceExhausted,
                    AnswerProblem::Missing => Code::Aborted,
                    AnswerProblem::ProcessingMode => Code::FailedPrecondition,
                    AnswerProblem::Unreadable | AnswerProblem::Encoded => Code::InvalidArgument,
                },
            },
            Refusal::Overloaded(_) => Status {
                http: 503,
                grpc: Code::ResourceExhausted,
            },
            Refusal::TooLarge(_) => Status {
                http: 413,
                grpc: Code::ResourceExhausted,
            },
        }
    }
}

/// The status of an engine's deny: 400 for a request it cannot read, 403 otherwise (RFC 6750
/// §3.1 `insufficient_scope`).
pub fn decision_status(reason: Reason) -> Status {
    if reason == Reason::UnsupportedRequest {
        Status::BAD_REQUEST
    } else {
        Status::FORBIDDEN
    }
}

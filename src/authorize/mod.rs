//! The one authorization pipeline every face calls: public check, authenticate, decide, and
//! one event reported per answer.
//!
//! A face (the gRPC API, Envoy's ext_authz) decodes its wire format into domain types, hands
//! them to the [`Authorizer`], and encodes the [`Verdict`] it gets back. Every rule that is not
//! about a wire format lives here or below, once, so the faces cannot drift apart:
//! - public endpoints ([`Interaction::is_public`](crate::fhir::Interaction::is_public) and the
//!   configured public paths) need no token;
//! - HTTP request lines, and their method override headers, are read by [`HttpLine`];
//! - the limits of a request ([`MAX_BATCH_ENTRIES`]);
//! - which FHIR server a request is for, and whether the caller may ask for it ([`Servers`]);
//! - a token is judged once, its fingerprint computed where it is hashed, and honoured only
//!   by the servers it was issued for ([`FhirServer::accepts`]);
//! - a token verified for one FHIR version is re-read for an engine of another;
//! - the deny vocabulary ([`Refusal`]) and its statuses.
//!
//! No resource is parsed for a caller without a valid token: [`Authorizer::check`] runs the
//! whole pipeline on a request decoded up front (AuthZEN's, whose JSON is the request);
//! [`Authorizer::check_reading`] and [`Authorizer::check_bundle_reading`] read the resource
//! versions or a batch's entries once the token is admitted (gRPC). A face that must read
//! more of the request once the token is known (the body Envoy forwards) calls
//! [`Authorizer::admit`] and then decides through the [`Admitted`] token.
//!
//! An issuer that cannot be reached is [`Unavailable`]: never an allow.

mod admitted;
mod answer;
mod capacity;
mod cooperative;
mod off_runtime;
mod reading;
mod refusal;
mod request;
mod request_id;
mod servers;
#[cfg(test)]
mod tests;
mod tree_budget;

use std::sync::Arc;

use tracing::Span;

pub use self::admitted::Admitted;
pub use self::answer::{
    AnswerAhead, AnswerCheck, AnswerPlan, DEFAULT_MAX_ANSWER_BYTES, filtered_body_off_runtime,
};
pub use self::capacity::{Capacity, Slot, busy};
pub use self::cooperative::between_entries;
pub use self::off_runtime::{off_runtime_if_large, parse_off_runtime};
pub use self::reading::{Held, MessageHeld, OVER_BUDGET, ReadBody, Unread};
pub use self::refusal::{AnswerProblem, GRANTS_NOT_ENFORCED, Refusal, Status, decision_status};
pub use self::request::{
    HttpLine, IF_NONE_EXIST_HEADER, METHOD_OVERRIDE_HEADERS, add_search_body, add_search_body_only,
    headers_by_name, reads_as,
};
pub use self::request_id::{MAX_REQUEST_ID_BYTES, request_id};
pub use self::servers::{Caller, FhirServer, Release, Servers};
pub use self::tree_budget::{DECIDED_ENTRY_BYTES, MeteredParse, TreeBudget};
use crate::decision::{BundleDecision, BundleEntry, BundleKind, Decision, Outcome};
use crate::fhir::{FhirRequest, Interaction, Resource, structured};
use crate::telemetry::{DecisionEvent, EventToken, Observer, Rpc, traces};
use crate::token::{
    AuthError, Authenticated, Authenticator, BearerToken, TokenError, TokenFingerprint,
    VerifiedToken,
};

/// Most entries accepted in one batch or transaction.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

/// The refusal of a batch or transaction of `entries` entries, when it has too many: a face
/// may ask before it decodes them.
pub fn batch_size_refusal(entries: usize) -> Option<Refusal> {
    (entries > MAX_BATCH_ENTRIES).then(|| {
        Refusal::InvalidRequest(format!(
            "entries: at most {MAX_BATCH_ENTRIES} in one batch or transaction"
        ))
    })
}

/// The token could not be judged (an issuer's keys, discovery or introspection endpoint
/// are unreachable). Never an allow: the faces answer gRPC `UNAVAILABLE`, and Envoy's
/// `failure_mode_allow` must stay false.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("issuer {issuer} is unavailable: {detail}")]
pub struct Unavailable {
    pub issuer: String,
    pub detail: String,
}

/// The gRPC error of every face.
impl From<Unavailable> for tonic::Status {
    fn from(unavailable: Unavailable) -> Self {
        tonic::Status::unavailable(unavailable.to_string())
    }
}

/// The answer of the pipeline.
#[derive(Debug)]
pub enum Verdict<D> {
    /// A public endpoint: allowed without a token.
    Public(D),
    /// Refused before the engine decided: a refused token, a request over a limit, a body
    /// that cannot be read.
    Refused(Refusal),
    /// The engine's decision for a verified token.
    Decided {
        decision: D,
        token: Arc<VerifiedToken>,
    },
}

/// Whether the pipeline goes on to the engine, after the public check and the token.
#[derive(Debug)]
pub enum Admission<'a> {
    /// A public endpoint: allowed without a token.
    Public(Decision),
    /// The token was refused.
    Refused(Refusal),
    /// The token was verified: decide through it.
    Admitted(Admitted<'a>),
}

/// One call of a face: the RPC it serves, its span, the caller's request id and the FHIR
/// server it is for once known (every event of the call names them).
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub rpc: Rpc,
    pub span: &'a Span,
    pub request_id: Option<&'a str>,
    pub fhir_server: Option<&'a str>,
    /// The item of a request that carries several, each decided on its own (AuthZEN
    /// `evaluations`): its events name it, and leave the span, which is the whole call's.
    pub entry: Option<usize>,
}

impl<'a> Call<'a> {
    pub fn new(rpc: Rpc, span: &'a Span) -> Self {
        Call {
            rpc,
            span,
            request_id: None,
            fhir_server: None,
            entry: None,
        }
    }

    /// The same call, deciding its item `index`.
    pub fn for_entry(self, index: usize) -> Self {
        Call {
            entry: Some(index),
            ..self
        }
    }

    /// The same call with the caller's request id (read by [`request_id`]); recorded on the
    /// span.
    pub fn with_request_id(self, request_id: Option<&'a str>) -> Self {
        if let Some(id) = request_id {
            traces::record_request_id(self.span, id);
        }
        Call { request_id, ..self }
    }

    /// The same call, now known to be for `server`; recorded on the span.
    pub fn for_server(self, server: &'a FhirServer) -> Self {
        traces::record_fhir_server(self.span, server.name());
        Call {
            fhir_server: Some(server.name()),
            ..self
        }
    }
}

/// One request to decide, as the face decoded it. Its `Debug` leaves the token out.
#[derive(Clone, Copy)]
pub struct Check<'a> {
    /// The `Authorization` value or bare token.
    pub raw_token: &'a str,
    pub request: &'a FhirRequest,
    /// The HTTP line the request was read from, when it came as one (public paths are
    /// matched on it).
    pub line: Option<HttpLine<'a>>,
    /// The resource as stored now.
    pub stored: Option<&'a Resource>,
    /// The new version of the resource.
    pub proposed: Option<&'a Resource>,
    /// The `If-None-Exist` query of a conditional create.
    pub if_none_exist: Option<&'a str>,
}

/// Stands for a token in `Debug` output: a token must never reach a log line.
const TOKEN_LEFT_OUT: &str = "<left out>";

/// The reason of an `IntrospectToken` answer that reports a token active.
const TOKEN_ACTIVE: &str = "token_active";

impl std::fmt::Debug for Check<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Check")
            .field("raw_token", &TOKEN_LEFT_OUT)
            .field("request", self.request)
            .field("line", &self.line)
            .field("stored", &self.stored)
            .field("proposed", &self.proposed)
            .field("if_none_exist", &self.if_none_exist)
            .finish()
    }
}

/// Runs the pipeline for every face; shared by them.
#[derive(Debug)]
pub struct Authorizer {
    authenticator: Arc<Authenticator>,
    observer: Observer,
    /// Paths relative to a FHIR base that need no token (`[envoy] public_paths`), for the
    /// servers that name none of their own.
    public_paths: Vec<String>,
    servers: Servers,
    /// Largest FHIR server answer filtered (`[response_filter] max_body_bytes`).
    max_answer_bytes: usize,
    /// The process's budget of request memory, which parsed trees count against.
    capacity: Capacity,
}

impl Authorizer {
    pub fn new(
        authenticator: Arc<Authenticator>,
        observer: Observer,
        public_paths: Vec<String>,
        servers: Servers,
    ) -> Self {
        Authorizer {
            authenticator,
            observer,
            public_paths,
            servers,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            // Unbounded until the service gives its own (`with_capacity`).
            capacity: Capacity::new(1, usize::MAX),
        }
    }

    /// The same pipeline, filtering answers of at most `bytes`.
    pub fn with_max_answer_bytes(self, bytes: usize) -> Self {
        Authorizer {
            max_answer_bytes: bytes,
            ..self
        }
    }

    /// The same pipeline, counting the trees it parses in `capacity`'s budget of request
    /// memory.
    pub fn with_capacity(self, capacity: Capacity) -> Self {
        Authorizer { capacity, ..self }
    }

    /// An empty budget for one call's parsed trees ([`TreeBudget`]).
    pub fn tree_budget(&self) -> TreeBudget {
        self.capacity.tree_budget()
    }

    /// The server a gRPC or AuthZEN request to decide names, in the FHIR release it names
    /// (`fhir_version`, [`Release::read`]), if `caller` may ask for it; a refusal is
    /// reported (`raw_token` only fingerprinted for the audit).
    pub fn server_named(
        &self,
        call: Call<'_>,
        caller: &Caller,
        name: &str,
        fhir_version: &str,
        raw_token: &str,
    ) -> Result<&Arc<FhirServer>, Refusal> {
        self.servers
            .named_in(caller, name, || Release::read(fhir_version))
            .inspect_err(|refusal| self.caller_refused(call, raw_token, refusal))
    }

    /// The server an `IntrospectToken` call names, which decides nothing: in its configured
    /// release, whatever its Envoy bases serve.
    pub fn server_to_introspect(
        &self,
        call: Call<'_>,
        caller: &Caller,
        name: &str,
        raw_token: &str,
    ) -> Result<&Arc<FhirServer>, Refusal> {
        self.servers
            .named(caller, name, Release::Configured)
            .inspect_err(|refusal| self.caller_refused(call, raw_token, refusal))
    }

    /// The server of an Envoy request and its path relative to the server's base, if
    /// `caller` may ask for it; a refusal is reported.
    pub fn server_routed<'p>(
        &self,
        call: Call<'_>,
        caller: &Caller,
        authority: &str,
        path: &'p str,
        raw_token: &str,
    ) -> Result<(&Arc<FhirServer>, &'p str), Refusal> {
        self.servers
            .route(caller, authority, path)
            .inspect_err(|refusal| self.caller_refused(call, raw_token, refusal))
    }

    /// Reports a refusal of the server or caller checks; a caller refused by its
    /// certificate is also logged with its details for the operator.
    fn caller_refused(&self, call: Call<'_>, raw_token: &str, refusal: &Refusal) {
        if let Refusal::CallerNotAllowed(detail) = refusal {
            tracing::warn!(rpc = call.rpc.as_str(), %detail, "caller refused");
        }
        self.refused(call, raw_token, None, refusal);
    }

    /// Decides one request for `server`.
    pub async fn check(
        &self,
        call: Call<'_>,
        server: &FhirServer,
        check: Check<'_>,
    ) -> Result<Verdict<Decision>, Unavailable> {
        Ok(match self.admit_check(call, server, &check).await? {
            Ok(admitted) => admitted.decide(
                check.request,
                check.stored,
                check.proposed,
                None,
                check.if_none_exist,
            ),
            Err(verdict) => verdict,
        })
    }

    /// [`Authorizer::check`], with the resource's versions read by `read` only once the
    /// token is admitted, as the Envoy face reads a body: a caller without a valid token does
    /// not get megabytes of JSON parsed into a tree many times their size. `check.stored`
    /// and `check.proposed` are left aside (give `None`); a refusal of `read` is reported
    /// with the token it came with.
    pub async fn check_reading(
        &self,
        call: Call<'_>,
        server: &FhirServer,
        check: Check<'_>,
        read: impl Future<Output = Result<(Option<Resource>, Option<Resource>), Refusal>>,
    ) -> Result<Verdict<Decision>, Unavailable> {
        let admitted = match self.admit_check(call, server, &check).await? {
            Ok(admitted) => admitted,
            Err(verdict) => return Ok(verdict),
        };
        Ok(match read.await {
            Ok((stored, proposed)) => admitted.decide(
                check.request,
                stored.as_ref(),
                proposed.as_ref(),
                None,
                check.if_none_exist,
            ),
            Err(refusal) => {
                admitted.refuse(Some(check.request), refusal.clone());
                Verdict::Refused(refusal)
            }
        })
    }

    /// The token of `check` admitted, or the verdict that ends the request before any
    /// version of its resource is read: a public endpoint's allow, a refused token.
    async fn admit_check<'a>(
        &'a self,
        call: Call<'a>,
        server: &'a FhirServer,
        check: &Check<'_>,
    ) -> Result<Result<Admitted<'a>, Verdict<Decision>>, Unavailable> {
        let admission = self
            .admit(
                call,
                server,
                check.raw_token,
                Some(check.request),
                check.line,
            )
            .await?;
        Ok(match admission {
            Admission::Public(decision) => Err(Verdict::Public(decision)),
            Admission::Refused(refusal) => Err(Verdict::Refused(refusal)),
            Admission::Admitted(admitted) => Ok(admitted),
        })
    }

    /// Decides a batch or transaction for `server`, entry by entry (one event per entry),
    /// its entries read by `read` only once the token is admitted (see
    /// [`Authorizer::check_reading`]).
    pub async fn check_bundle_reading(
        &self,
        call: Call<'_>,
        server: &FhirServer,
        raw_token: &str,
        kind: BundleKind,
        read: impl Future<Output = Result<Vec<BundleEntry>, Refusal>>,
    ) -> Result<Verdict<BundleDecision>, Unavailable> {
        // A Bundle of this form carries no request line, so is never public.
        let admission = self.admit(call, server, raw_token, None, None).await?;
        Ok(match admission {
            Admission::Admitted(admitted) => match read.await {
                Ok(entries) => admitted.decide_bundle(None, kind, &entries).await,
                Err(refusal) => {
                    admitted.refuse(None, refusal.clone());
                    Verdict::Refused(refusal)
                }
            },
            Admission::Refused(refusal) => Verdict::Refused(refusal),
            Admission::Public(_) => {
                let refusal = Refusal::InvalidRequest("a batch is never public".to_owned());
                self.refused(call, raw_token, None, &refusal);
                Verdict::Refused(refusal)
            }
        })
    }

    /// Whether the request is a read of one of `server`'s public paths: its line as given,
    /// or the line a structured request stands for, so that both forms of one request are
    /// decided alike. A structured operation is never public: it may be sent as a POST with
    /// a body, which its structured form does not say and a public path never covers.
    fn on_public_path(
        &self,
        server: &FhirServer,
        request: Option<&FhirRequest>,
        line: Option<HttpLine<'_>>,
    ) -> bool {
        let paths = server.public_paths(&self.public_paths);
        if paths.is_empty() {
            return false;
        }
        match (line, request) {
            (Some(line), _) => line.is_public_path(paths),
            (None, Some(request)) if request.interaction != Interaction::Operation => {
                structured::request_line(request).is_ok_and(|(method, path)| {
                    HttpLine {
                        method,
                        path: &path,
                    }
                    .is_public_path(paths)
                })
            }
            (None, _) => false,
        }
    }

    /// The first half of the pipeline: a public endpoint passes; otherwise the token is
    /// authenticated, must be one `server` honours (a refusal is reported here), and is read
    /// for the server's FHIR version. `request` is what a refusal's event names.
    pub async fn admit<'a>(
        &'a self,
        call: Call<'a>,
        server: &'a FhirServer,
        raw_token: &str,
        request: Option<&FhirRequest>,
        line: Option<HttpLine<'_>>,
    ) -> Result<Admission<'a>, Unavailable> {
        let public = request.is_some_and(|request| request.interaction.is_public())
            || self.on_public_path(server, request, line);
        if public {
            let decision = Decision::public_endpoint();
            self.report_decision(call, &decision, request, None, None);
            return Ok(Admission::Public(decision));
        }
        let bearer = match BearerToken::from_header(raw_token) {
            Ok(bearer) => bearer,
            Err(error) => return Ok(self.token_refused(call, error, request, None)),
        };
        let fingerprint = bearer.fingerprint();
        let token = match self.authenticator.authenticate_bearer(&bearer).await {
            Ok(authenticated) => {
                traces::record_token(call.span, &authenticated);
                authenticated.token
            }
            Err(AuthError::Rejected(error)) => {
                return Ok(self.token_refused(call, error, request, Some(fingerprint)));
            }
            Err(AuthError::Unavailable { issuer, detail }) => {
                return Err(Unavailable { issuer, detail });
            }
        };
        if let Err(error) = server.accepts(&token) {
            // Audited with who the token speaks for: a token replayed against another
            // server is worth more to an investigator than its fingerprint alone.
            let refusal = Refusal::Token(error);
            let who = admitted::event_token(server.engine(), &token.context);
            self.report_refusal(call, &refusal, request, Some(who), Some(fingerprint));
            return Ok(Admission::Refused(refusal));
        }
        Ok(Admission::Admitted(Admitted::new(
            self,
            call,
            server.engine(),
            token,
            fingerprint,
        )))
    }

    /// Whether `caller` may introspect tokens; a refusal is reported (`raw_token` only
    /// fingerprinted, as every refusal's audit line names the token).
    pub fn may_introspect(
        &self,
        call: Call<'_>,
        caller: &Caller,
        raw_token: &str,
    ) -> Result<(), Refusal> {
        self.servers
            .may_introspect(caller)
            .inspect_err(|refusal| self.caller_refused(call, raw_token, refusal))
    }

    /// Judges a token alone, for `server` (RFC 7662 introspection of this service): `None`
    /// when it is refused or not one `server` honours. Its patient is the one `server`
    /// decides for, as in every other answer. One event either way: an active answer hands
    /// the token's claims to the caller, which the audit log records as an allow
    /// (`token_active`).
    pub async fn introspect(
        &self,
        call: Call<'_>,
        server: &FhirServer,
        raw_token: &str,
    ) -> Result<Option<Authenticated>, Unavailable> {
        let bearer = match BearerToken::from_header(raw_token) {
            Ok(bearer) => bearer,
            Err(error) => {
                self.token_refused(call, error, None, None);
                return Ok(None);
            }
        };
        let fingerprint = bearer.fingerprint();
        let authenticated = match self.authenticator.authenticate_bearer(&bearer).await {
            Ok(authenticated) => authenticated,
            Err(AuthError::Rejected(error)) => {
                self.token_refused(call, error, None, Some(fingerprint));
                return Ok(None);
            }
            Err(AuthError::Unavailable { issuer, detail }) => {
                return Err(Unavailable { issuer, detail });
            }
        };
        traces::record_token(call.span, &authenticated);
        let token = admitted::with_patient_in_context(
            server.engine(),
            &authenticated.token,
            &authenticated.token.context,
        );
        // The token as it came, not as rendered: the audit line names its claim too.
        let who = admitted::event_token(server.engine(), &authenticated.token.context);
        if let Err(error) = server.accepts(&authenticated.token) {
            let refusal = Refusal::Token(error);
            self.report_refusal(call, &refusal, None, Some(who), Some(fingerprint));
            return Ok(None);
        }
        self.observer.decided(
            &DecisionEvent {
                rpc: call.rpc,
                outcome: Outcome::Allow,
                reason: TOKEN_ACTIVE,
                request: None,
                grants: &[],
                token: Some(who),
                token_fingerprint: Some(fingerprint),
                entry: call.entry,
                fhir_server: call.fhir_server,
                request_id: call.request_id,
                withheld: None,
            },
            call.span,
        );
        Ok(Some(Authenticated {
            token,
            ..authenticated
        }))
    }

    /// Reports a refusal a face found before the token was judged (a request it cannot
    /// read): one deny event, like every other answer.
    pub fn refused(
        &self,
        call: Call<'_>,
        raw_token: &str,
        request: Option<&FhirRequest>,
        refusal: &Refusal,
    ) {
        // The token was not judged, so not hashed yet: hash it only for an audit line.
        let fingerprint = if self.observer.audits(Outcome::Deny) {
            BearerToken::from_header(raw_token)
                .ok()
                .map(|bearer| bearer.fingerprint())
        } else {
            None
        };
        self.report_refusal(call, refusal, request, None, fingerprint);
    }

    fn token_refused(
        &self,
        call: Call<'_>,
        error: TokenError,
        request: Option<&FhirRequest>,
        fingerprint: Option<TokenFingerprint>,
    ) -> Admission<'static> {
        let refusal = Refusal::Token(error);
        self.report_refusal(call, &refusal, request, None, fingerprint);
        Admission::Refused(refusal)
    }

    /// The event of a deny that is not the engine's.
    fn report_refusal(
        &self,
        call: Call<'_>,
        refusal: &Refusal,
        request: Option<&FhirRequest>,
        token: Option<EventToken<'_>>,
        fingerprint: Option<TokenFingerprint>,
    ) {
        self.observer.decided(
            &DecisionEvent {
                rpc: call.rpc,
                outcome: Outcome::Deny,
                reason: refusal.as_str(),
                request,
                grants: &[],
                token,
                token_fingerprint: fingerprint,
                entry: call.entry,
                fhir_server: call.fhir_server,
                request_id: call.request_id,
                withheld: None,
            },
            call.span,
        );
    }

    /// The event of a decision; `entry` for an entry of a batch or transaction.
    fn report_decision(
        &self,
        call: Call<'_>,
        decision: &Decision,
        request: Option<&FhirRequest>,
        token: Option<(EventToken<'_>, TokenFingerprint)>,
        entry: Option<usize>,
    ) {
        self.observer.decided(
            &DecisionEvent {
                rpc: call.rpc,
                outcome: decision.outcome,
                reason: decision.reason.as_str(),
                request,
                grants: &decision.grants,
                token: token.map(|(token, _)| token),
                token_fingerprint: token.map(|(_, fingerprint)| fingerprint),
                entry: entry.or(call.entry),
                fhir_server: call.fhir_server,
                request_id: call.request_id,
                withheld: None,
            },
            call.span,
        );
    }
}

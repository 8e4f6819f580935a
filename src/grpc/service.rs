//! `AuthzService`: decode the call, run the [`Authorizer`] pipeline, encode its verdict.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Span;

use super::pb;
use super::pb::authz_service_server::AuthzService;
use super::{answer, convert};
use crate::authorize::{
    AnswerCheck, Authorizer, Call, Caller, Check, FhirServer, MessageHeld, Refusal,
    batch_size_refusal, between_entries, request_id,
};
use crate::decision::BundleEntry;
use crate::telemetry::{self, Rpc, traces};

/// What a request to decide says of itself, before what it asks: read first, by one rule
/// for every method.
struct Named<'a> {
    token: &'a str,
    request_id: &'a str,
    fhir_server: &'a str,
    fhir_version: &'a str,
}

/// The service implementation: shared, cheap to clone.
#[derive(Clone)]
pub struct AuthzGrpc {
    authorizer: Arc<Authorizer>,
}

impl AuthzGrpc {
    pub fn new(authorizer: Arc<Authorizer>) -> Self {
        AuthzGrpc { authorizer }
    }

    /// The call of a decision: its request id read and its server named, in the FHIR
    /// release the request names; a refusal is reported and answered.
    fn decision_call<'a>(
        &'a self,
        call: Call<'a>,
        caller: &Caller,
        named: Named<'a>,
    ) -> Result<(Call<'a>, &'a Arc<FhirServer>), Status> {
        let id = request_id(named.request_id)
            .map_err(|refusal| self.unreadable(call, named.token, refusal))?;
        let call = call.with_request_id(id);
        let server = self
            .authorizer
            .server_named(
                call,
                caller,
                named.fhir_server,
                named.fhir_version,
                named.token,
            )
            .map_err(|refusal| convert::refusal_status(&refusal))?;
        Ok((call.for_server(server), server))
    }

    /// A request this face cannot read, reported as every face reports one (its audit line
    /// names the token's fingerprint and the request id when they were read), and answered
    /// with the refusal's code.
    fn unreadable(&self, call: Call<'_>, raw_token: &str, refusal: Refusal) -> Status {
        self.authorizer.refused(call, raw_token, None, &refusal);
        convert::refusal_status(&refusal)
    }

    /// The hot path, so a function returning an `async move` block rather than an `async
    /// fn`: an `async fn` keeps its arguments twice in its future, as parameters and as the
    /// locals they are moved into (rust-lang/rust#62958), here the 320-byte message.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` would hold its argument twice"
    )]
    fn check_access_observed(
        &self,
        caller: Caller,
        held: MessageHeld,
        message: pb::CheckAccessRequest,
        span: Span,
    ) -> impl Future<Output = Result<Response<pb::CheckAccessResponse>, Status>> + Send + '_ {
        async move {
            let token = &message.access_token;
            let (call, server) = self.decision_call(
                Call::new(Rpc::CheckAccess, &span),
                &caller,
                Named {
                    token,
                    request_id: &message.request_id,
                    fhir_server: &message.fhir_server,
                    fhir_version: &message.fhir_version,
                },
            )?;
            let (request, line) = convert::check_request(message.request.as_ref())
                .map_err(|refusal| self.unreadable(call, token, refusal))?;
            let check = Check {
                raw_token: token,
                request: &request,
                line,
                stored: None,
                proposed: None,
                if_none_exist: convert::if_none_exist(message.request.as_ref()),
            };
            // Held until the decision is answered, as the trees it counts are.
            let mut tree = self.authorizer.tree_budget();
            tree.holding(held.0.max(
                convert::json_bytes(message.stored.as_ref())
                    + convert::json_bytes(message.proposed.as_ref()),
            ));
            let read = async {
                let stored = convert::resource(message.stored, "stored", &mut tree).await?;
                Ok((
                    stored,
                    convert::resource(message.proposed, "proposed", &mut tree).await?,
                ))
            };
            let verdict = self
                .authorizer
                .check_reading(call, server, check, read)
                .await?;
            let mut response = convert::check_response(verdict)?;
            response.request_id.clone_from(&message.request_id);
            Ok(Response::new(response))
        }
    }

    async fn batch_check_access_observed(
        &self,
        caller: Caller,
        held: MessageHeld,
        message: pb::BatchCheckAccessRequest,
        span: Span,
    ) -> Result<Response<pb::BatchCheckAccessResponse>, Status> {
        let token = &message.access_token;
        let (call, server) = self.decision_call(
            Call::new(Rpc::BatchCheckAccess, &span),
            &caller,
            Named {
                token,
                request_id: &message.request_id,
                fhir_server: &message.fhir_server,
                fhir_version: &message.fhir_version,
            },
        )?;
        let unreadable = |refusal| self.unreadable(call, token, refusal);
        let kind = convert::bundle_kind(message.bundle_type).map_err(unreadable)?;
        // The pipeline's own rule, before the entries are read (a request that cannot be
        // read is an error on this face, not a decision). A message of more entries is
        // refused before tonic decodes it (`app::overload`, `grpc::wire`); this is the rule
        // as the handler sees it.
        if let Some(refusal) = batch_size_refusal(message.entries.len()) {
            return Err(unreadable(refusal));
        }
        let mut tree = self.authorizer.tree_budget();
        tree.holding(
            held.0.max(
                message
                    .entries
                    .iter()
                    .map(|entry| {
                        convert::json_bytes(entry.stored.as_ref())
                            + convert::json_bytes(entry.proposed.as_ref())
                    })
                    .sum(),
            ),
        );
        let read = async {
            let tree = &mut tree;
            tree.take_entries(message.entries.len())?;
            let mut entries = Vec::with_capacity(message.entries.len());
            for (index, entry) in message.entries.into_iter().enumerate() {
                let field = format!("entries[{index}]");
                let (request, _line) = convert::entry_request(entry.request.as_ref(), &field)?;
                // Most entries carry no version: their fields' names are then never needed.
                let stored = match entry.stored {
                    None => None,
                    stored => convert::resource(stored, &format!("{field}.stored"), tree).await?,
                };
                let proposed = match entry.proposed {
                    None => None,
                    proposed => {
                        convert::resource(proposed, &format!("{field}.proposed"), tree).await?
                    }
                };
                entries.push(BundleEntry {
                    request: Ok(request),
                    stored,
                    proposed,
                    if_none_exist: convert::entry_if_none_exist(entry.request.as_ref()),
                    // A batch entry of this API carries no patch document.
                    patch: None,
                });
                between_entries().await;
            }
            Ok(entries)
        };
        let verdict = self
            .authorizer
            .check_bundle_reading(call, server, token, kind, read)
            .await?;
        let mut response = convert::bundle_check_response(verdict)?;
        response.request_id.clone_from(&message.request_id);
        Ok(Response::new(response))
    }

    async fn filter_resources_observed(
        &self,
        caller: Caller,
        held: MessageHeld,
        mut message: pb::FilterResourcesRequest,
        span: Span,
    ) -> Result<Response<pb::FilterResourcesResponse>, Status> {
        let body = std::mem::take(&mut message.response);
        let (call, server) = self.decision_call(
            Call::new(Rpc::FilterResources, &span),
            &caller,
            Named {
                token: &message.access_token,
                request_id: &message.request_id,
                fhir_server: &message.fhir_server,
                fhir_version: &message.fhir_version,
            },
        )?;
        let (request, line) = convert::answered_request(message.request.as_ref())
            .map_err(|refusal| self.unreadable(call, &message.access_token, refusal))?;
        let check = AnswerCheck {
            raw_token: &message.access_token,
            request: &request,
            line,
            body: &body,
        };
        let mut tree = self.authorizer.tree_budget();
        tree.holding(held.0.max(body.len()));
        let verdict = self
            .authorizer
            .filter_answer(call, server, check, &mut tree)
            .await?;
        let mut response = answer::filter_response(verdict, body).await?;
        response.request_id.clone_from(&message.request_id);
        Ok(Response::new(response))
    }

    async fn introspect_token_observed(
        &self,
        caller: Caller,
        message: pb::IntrospectTokenRequest,
        span: Span,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        let call = Call::new(Rpc::IntrospectToken, &span);
        let id = request_id(&message.request_id)
            .map_err(|refusal| self.unreadable(call, &message.token, refusal))?;
        let call = call.with_request_id(id);
        self.authorizer
            .may_introspect(call, &caller, &message.token)
            .map_err(|refusal| convert::refusal_status(&refusal))?;
        let server = self
            .authorizer
            .server_to_introspect(call, &caller, &message.fhir_server, &message.token)
            .map_err(|refusal| convert::refusal_status(&refusal))?;
        let call = call.for_server(server);
        let token = message.token;
        if token.trim().is_empty() {
            let refusal = Refusal::InvalidRequest("token: required (RFC 7662 §2.1)".to_owned());
            self.authorizer.refused(call, "", None, &refusal);
            return Err(convert::refusal_status(&refusal));
        }
        let mut response = match self.authorizer.introspect(call, server, &token).await? {
            Some(authenticated) => convert::introspection(&authenticated),
            // RFC 7662 §2.2: an inactive token yields `active: false` and nothing else.
            None => pb::IntrospectTokenResponse::default(),
        };
        response.request_id.clone_from(&message.request_id);
        traces::record_token_active(&span, response.active);
        Ok(Response::new(response))
    }
}

/// The answer of a method, boxed as the generated trait (`#[async_trait]`) wants it.
type Answer<'f, T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send + 'f>>;

/// One call of `rpc`, observed and boxed: its span, caller and the budget its message holds
/// are read from the request, then `call` builds the future of its message.
fn answer<'f, M, T, F>(
    rpc: Rpc,
    request: Request<M>,
    call: impl FnOnce(Caller, MessageHeld, M, Span) -> F,
) -> Answer<'f, T>
where
    F: Future<Output = Result<Response<T>, Status>> + Send + 'f,
{
    let span = traces::rpc_span(rpc, request.metadata());
    let caller = Caller::of(request.extensions());
    let held = request
        .extensions()
        .get::<MessageHeld>()
        .copied()
        .unwrap_or_default();
    let call = call(caller, held, request.into_inner(), span.clone());
    Box::pin(telemetry::observe(rpc, span, call))
}

/// Written without `#[async_trait]`, whose `async` block would hold the request twice beside
/// the observed call: each method boxes its observed call directly. Every call builds and
/// copies its future, 1.5 KB for `CheckAccess` where the block was 3.4 KB
/// (docs/performance-log.md, "Futures copied per call"). Only `CheckAccess`, the hot path, is
/// also kept from holding its message twice; the other messages are small or rarer.
impl AuthzService for AuthzGrpc {
    fn check_access<'s, 'f>(
        &'s self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Answer<'f, pb::CheckAccessResponse>
    where
        's: 'f,
        Self: 'f,
    {
        answer(Rpc::CheckAccess, request, |caller, held, message, span| {
            self.check_access_observed(caller, held, message, span)
        })
    }

    fn batch_check_access<'s, 'f>(
        &'s self,
        request: Request<pb::BatchCheckAccessRequest>,
    ) -> Answer<'f, pb::BatchCheckAccessResponse>
    where
        's: 'f,
        Self: 'f,
    {
        answer(
            Rpc::BatchCheckAccess,
            request,
            |caller, held, message, span| {
                self.batch_check_access_observed(caller, held, message, span)
            },
        )
    }

    fn introspect_token<'s, 'f>(
        &'s self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Answer<'f, pb::IntrospectTokenResponse>
    where
        's: 'f,
        Self: 'f,
    {
        answer(Rpc::IntrospectToken, request, |caller, _, message, span| {
            self.introspect_token_observed(caller, message, span)
        })
    }

    fn filter_resources<'s, 'f>(
        &'s self,
        request: Request<pb::FilterResourcesRequest>,
    ) -> Answer<'f, pb::FilterResourcesResponse>
    where
        's: 'f,
        Self: 'f,
    {
        answer(
            Rpc::FilterResources,
            request,
            |caller, held, message, span| {
                self.filter_resources_observed(caller, held, message, span)
            },
        )
    }
}

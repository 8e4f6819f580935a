//! The pipeline on the way back: a FHIR server's answer judged for the token that asked for
//! it, every resource as a read of it (docs/response-filtering.md). `FilterResources` and
//! Envoy's ext_proc face both come here, so they filter alike.
//!
//! The order is the request's: public check and token first (no answer is parsed for a
//! caller without a valid token), then the size limit, then the strict JSON reader (a
//! duplicate member is refused: the app's parser might keep the other one), then the engine.

use serde_json::Value;

use super::off_runtime::BLOCKING_PARSE_BYTES;
use super::{
    Admission, Admitted, AnswerProblem, Authorizer, Call, FhirServer, HttpLine, Refusal,
    TreeBudget, Unavailable, Verdict,
};
use crate::decision::{Decision, Engine, FilteredResponse, Outcome};
use crate::fhir::{FhirRequest, Interaction, parse_strict_within, to_fhir_json_keeping};
use crate::smart::TokenContext;
use crate::telemetry::metrics;

/// Default of [`Authorizer::with_max_answer_bytes`] (`[response_filter] max_body_bytes`).
pub const DEFAULT_MAX_ANSWER_BYTES: usize = crate::config::DEFAULT_MAX_BODY_BYTES;

/// A FHIR server's answer to filter, as the face received it. Its `Debug` leaves the token
/// out.
#[derive(Clone, Copy)]
pub struct AnswerCheck<'a> {
    /// The `Authorization` value or bare token the request was made with.
    pub raw_token: &'a str,
    /// The request that produced the answer.
    pub request: &'a FhirRequest,
    /// Its HTTP line, when it came as one (public paths are matched on it).
    pub line: Option<HttpLine<'a>>,
    /// The answer's body, uncompressed.
    pub body: &'a [u8],
}

impl std::fmt::Debug for AnswerCheck<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AnswerCheck")
            .field("request", &self.request)
            .field("line", &self.line)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A request whose answer the face will see later (Envoy's ext_proc), as the face received
/// it. Its `Debug` leaves the token out.
#[derive(Clone, Copy)]
pub struct AnswerAhead<'a> {
    /// The `Authorization` value or bare token the request was made with.
    pub raw_token: &'a str,
    pub request: &'a FhirRequest,
    /// Its HTTP line, when it came as one (public paths are matched on it).
    pub line: Option<HttpLine<'a>>,
    /// The request's `If-None-Exist` header: a conditional create runs it as a search,
    /// decided here as ext_authz decides it, so that a route without ext_authz does not let
    /// the server look for another patient's resource.
    pub if_none_exist: Option<&'a str>,
    /// How the face's peer said it sends the answer's body, when that cannot be relied on
    /// to have the answer judged before the client sees any of it (Envoy's ext_proc
    /// `response_body_mode` `NONE` or a streamed one). A `mode_override` asking for the whole
    /// body is honoured only under `allow_mode_override`, which Envoy does not report.
    pub unfit_body_mode: Option<&'a str>,
}

impl std::fmt::Debug for AnswerAhead<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AnswerAhead")
            .field("request", &self.request)
            .field("line", &self.line)
            .field("unfit_body_mode", &self.unfit_body_mode)
            .finish_non_exhaustive()
    }
}

/// What a face that sees the request before its answer should do with the answer.
#[derive(Debug)]
pub enum AnswerPlan {
    /// Let it through unread: a public endpoint, or a grant that leaves nothing to check.
    PassThrough,
    /// Read it and filter it.
    Filter,
    /// The request itself is refused or denied: answer this instead of forwarding.
    Refuse(Verdict<Decision>),
}

impl Authorizer {
    /// Decides `ahead.request` as [`Authorizer::check`] would, for a face that will see the
    /// answer later (Envoy's ext_proc): whether the answer needs filtering, or the request
    /// must be refused now.
    pub async fn plan_answer(
        &self,
        call: Call<'_>,
        server: &FhirServer,
        ahead: AnswerAhead<'_>,
    ) -> Result<AnswerPlan, Unavailable> {
        let AnswerAhead {
            raw_token,
            request,
            line,
            if_none_exist,
            unfit_body_mode,
        } = ahead;
        let admitted = match self
            .admit(call, server, raw_token, Some(request), line)
            .await?
        {
            Admission::Public(_) => return Ok(AnswerPlan::PassThrough),
            Admission::Refused(refusal) => {
                return Ok(AnswerPlan::Refuse(Verdict::Refused(refusal)));
            }
            Admission::Admitted(admitted) => admitted,
        };
        // A batch or transaction is decided entry by entry from its body, which ext_authz
        // reads and this face does not; its answer is always read, entry by entry.
        if matches!(
            request.interaction,
            Interaction::Batch | Interaction::Transaction
        ) {
            return Ok(match answer_unseen(None, unfit_body_mode) {
                Some(refusal) => {
                    admitted.refuse(Some(request), refusal.clone());
                    AnswerPlan::Refuse(Verdict::Refused(refusal))
                }
                None => AnswerPlan::Filter,
            });
        }
        let decision = admitted.decision(request, None, None, if_none_exist);
        let needs_filtering =
            admitted
                .engine
                .response_needs_filtering(admitted.context(), request, &decision);
        // An answer that must be read and will not be is refused now, before the upstream.
        if needs_filtering
            && decision.is_allowed()
            && let Some(refusal) = answer_unseen(line, unfit_body_mode)
        {
            admitted.refuse(Some(request), refusal.clone());
            return Ok(AnswerPlan::Refuse(Verdict::Refused(refusal)));
        }
        Ok(match admitted.conclude(request, decision) {
            Verdict::Decided { decision, .. } if decision.is_allowed() => {
                if needs_filtering {
                    AnswerPlan::Filter
                } else {
                    AnswerPlan::PassThrough
                }
            }
            denied => AnswerPlan::Refuse(denied),
        })
    }

    /// Judges the answer `check.body` to `check.request` for `server`.
    /// The answer's tree and what is filtered from it count in `budget`: keep it until the
    /// filtered answer is written.
    pub async fn filter_answer(
        &self,
        call: Call<'_>,
        server: &FhirServer,
        check: AnswerCheck<'_>,
        budget: &mut TreeBudget,
    ) -> Result<Verdict<FilteredResponse>, Unavailable> {
        let admitted = match self
            .admit(
                call,
                server,
                check.raw_token,
                Some(check.request),
                check.line,
            )
            .await?
        {
            Admission::Public(decision) => return Ok(Verdict::Public(passed_unread(&decision))),
            Admission::Refused(refusal) => return Ok(Verdict::Refused(refusal)),
            Admission::Admitted(admitted) => admitted,
        };
        if check.body.len() > self.max_answer_bytes {
            let refusal = Refusal::Answer(
                AnswerProblem::TooLarge,
                format!(
                    "the answer is {} bytes, above response_filter.max_body_bytes ({}): not passed unread",
                    check.body.len(),
                    self.max_answer_bytes
                ),
            );
            admitted.refuse(Some(check.request), refusal.clone());
            return Ok(Verdict::Refused(refusal));
        }
        // Parsed and judged together, on the blocking pool when large: both take
        // milliseconds for a Bundle of thousands of entries, which the runtime must not.
        let judged = if check.body.len() <= BLOCKING_PARSE_BYTES {
            judge(
                admitted.engine,
                admitted.context(),
                check.request,
                check.body,
                budget,
            )
        } else {
            let engine = admitted.engine.clone();
            let context = admitted.context().clone();
            let request = check.request.clone();
            // The copy the pool reads is counted in the fork, which holds it until the
            // judging ends, whether or not the call still waits for it.
            let mut fork = budget.fork();
            if fork.take(check.body.len()) {
                let body = check.body.to_vec();
                let judged = tokio::task::spawn_blocking(move || {
                    let judged = judge(&engine, &context, &request, &body, &mut fork);
                    (judged, fork)
                })
                .await;
                match judged {
                    Ok((judged, fork)) => {
                        budget.absorb(fork);
                        judged
                    }
                    Err(_) => Err("judging the answer was cancelled".to_owned()),
                }
            } else {
                budget.absorb(fork);
                Err("the answer's copy was refused memory".to_owned())
            }
        };
        if let Some(refusal) = budget.refusal() {
            // An answer too large to read is the FHIR server's, as one over max_body_bytes.
            let refusal = match refusal {
                Refusal::TooLarge(message) => Refusal::Answer(AnswerProblem::TooLarge, message),
                busy => busy,
            };
            admitted.refuse(Some(check.request), refusal.clone());
            return Ok(Verdict::Refused(refusal));
        }
        Ok(admitted.filtered(check.request, judged))
    }
}

/// Parses `body` strictly and filters it for `context`; why not, as a refusal's text.
fn judge(
    engine: &Engine,
    context: &TokenContext,
    request: &FhirRequest,
    body: &[u8],
    budget: &mut TreeBudget,
) -> Result<FilteredResponse, String> {
    let answer = budget
        .parse(body, parse_strict_within)
        .map_err(|error| format!("the answer is not JSON the service reads: {error}"))?;
    engine
        .filter_response(context, request, answer)
        .map_err(|error| error.to_string())
}

impl Admitted<'_> {
    /// The event of a judged answer, with the withheld entries counted.
    fn filtered(
        self,
        request: &FhirRequest,
        judged: Result<FilteredResponse, String>,
    ) -> Verdict<FilteredResponse> {
        match judged {
            Ok(filtered) => {
                metrics::record_withheld(self.call.rpc, filtered.withheld);
                self.report(
                    Some(request),
                    filtered.outcome,
                    filtered.reason.as_str(),
                    Some(filtered.withheld),
                );
                Verdict::Decided {
                    decision: filtered,
                    token: self.rendered_token(),
                }
            }
            Err(error) => {
                let refusal = Refusal::Answer(AnswerProblem::Unreadable, error);
                self.refuse(Some(request), refusal.clone());
                Verdict::Refused(refusal)
            }
        }
    }
}

/// Why an answer that must be read will not reach the face before the client, if it will
/// not.
fn answer_unseen(line: Option<HttpLine<'_>>, unfit_body_mode: Option<&str>) -> Option<Refusal> {
    // A HEAD's answer has no body to read, yet its status and headers (ETag,
    // Last-Modified) would tell whether another patient's resource exists.
    if line.is_some_and(|line| line.method.eq_ignore_ascii_case("HEAD")) {
        return Some(Refusal::InvalidRequest(
            "HEAD cannot be checked on the way back (its answer has no body): send GET".to_owned(),
        ));
    }
    unfit_body_mode.map(|mode| {
        Refusal::Answer(
            AnswerProblem::ProcessingMode,
            format!(
                "the ext_proc filter sends the response body as {mode}, so an answer that must \
                 be read could reach the client unjudged: configure response_body_mode: BUFFERED"
            ),
        )
    })
}

/// The verdict of an answer that needs no reading (a public endpoint).
fn passed_unread(decision: &Decision) -> FilteredResponse {
    FilteredResponse {
        outcome: Outcome::Allow,
        reason: decision.reason,
        message: decision.message.clone(),
        filtered: false,
        entries: Vec::new(),
        withheld: 0,
        rewritten: false,
        body: Value::Null,
        entry_sources: Vec::new(),
    }
}

/// The bytes to send back for an allowed `filtered` answer of `original`: `None` when they
/// are the bytes the server sent (nothing withheld or removed, or the answer was not read).
/// What was kept keeps the server's text, decimals' precision included.
fn filtered_body(filtered: &FilteredResponse, original: &[u8]) -> Option<Vec<u8>> {
    (filtered.is_allowed() && filtered.rewritten)
        .then(|| to_fhir_json_keeping(&filtered.body, original, &filtered.entry_sources))
}

/// [`filtered_body`], on the blocking pool when the answer is large, as it was judged there.
/// Takes the filtered body out of `filtered` (it is written, not copied, there). `None`
/// when that task was cancelled (the runtime stopping): nothing may then be sent.
pub async fn filtered_body_off_runtime(
    filtered: &mut FilteredResponse,
    original: &[u8],
) -> Option<Option<Vec<u8>>> {
    if original.len() <= BLOCKING_PARSE_BYTES || !(filtered.is_allowed() && filtered.rewritten) {
        return Some(filtered_body(filtered, original));
    }
    let body = std::mem::take(&mut filtered.body);
    let sources = std::mem::take(&mut filtered.entry_sources);
    let original = original.to_vec();
    tokio::task::spawn_blocking(move || Some(to_fhir_json_keeping(&body, &original, &sources)))
        .await
        .ok()
}

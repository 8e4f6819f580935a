//! The answer of `FilterResources`: the engine's verdict on a FHIR server's answer, and the
//! body to send back.

use tonic::Status;

use super::convert::{outcome, reason, refusal_status, subject, token_reason};
use super::pb;
use crate::authorize::{Refusal, Verdict, filtered_body_off_runtime};
use crate::decision::{EntryMode, EntryVerdict, FilteredResponse};

/// A refused token is a deny with the token's reason; any other refusal (an answer too
/// large or unreadable) is a gRPC error with the refusal's code, never an allow.
pub async fn filter_response(
    verdict: Verdict<FilteredResponse>,
    original: Vec<u8>,
) -> Result<pb::FilterResourcesResponse, Status> {
    match verdict {
        Verdict::Refused(Refusal::Token(error)) => Ok(pb::FilterResourcesResponse {
            decision: pb::Decision::Deny as i32,
            reason: token_reason(&error) as i32,
            message: format!("denied: {error}"),
            ..pb::FilterResourcesResponse::default()
        }),
        Verdict::Refused(refusal) => Err(refusal_status(&refusal)),
        Verdict::Public(filtered) => filtered_message(filtered, original, None).await,
        Verdict::Decided { decision, token } => {
            filtered_message(decision, original, Some(subject(&token))).await
        }
    }
}

async fn filtered_message(
    mut filtered: FilteredResponse,
    original: Vec<u8>,
    subject: Option<pb::Subject>,
) -> Result<pb::FilterResourcesResponse, Status> {
    let body = if filtered.is_allowed() {
        filtered_body_off_runtime(&mut filtered, &original)
            .await
            .ok_or_else(|| Status::unavailable("the service is stopping"))?
            .unwrap_or(original)
    } else {
        Vec::new()
    };
    Ok(pb::FilterResourcesResponse {
        decision: outcome(filtered.outcome) as i32,
        reason: reason(filtered.reason) as i32,
        message: filtered.message,
        filtered: filtered.filtered,
        entries: filtered.entries.into_iter().map(entry).collect(),
        withheld: u32::try_from(filtered.withheld).unwrap_or(u32::MAX),
        body,
        subject,
        // Set by the service from the request.
        request_id: String::new(),
    })
}

fn entry(verdict: EntryVerdict) -> pb::EntryVerdict {
    pb::EntryVerdict {
        index: u32::try_from(verdict.index).unwrap_or(u32::MAX),
        reference: verdict.reference.unwrap_or_default(),
        mode: match verdict.mode {
            EntryMode::Match => pb::EntryMode::Match,
            EntryMode::Include => pb::EntryMode::Include,
            EntryMode::Outcome => pb::EntryMode::Outcome,
        } as i32,
        kept: verdict.kept,
        reason: reason(verdict.reason) as i32,
        message: verdict.message,
    }
}

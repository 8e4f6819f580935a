//! The decision audit log: one JSON line per decision, written by [`AuditLayer`] for the
//! events of the [`AUDIT_TARGET`] target, so it can be routed apart from ordinary logs
//! (stdout, whatever the log format, while logs go to stderr).
//!
//! A line says who (client, user, patient) did what (interaction, type, id), the answer and
//! why (decision, reason, granting scopes), and when (time, trace id). The token itself
//! never appears: only its fingerprint, the first 8 hex digits of its SHA-256, enough to
//! correlate the lines of one token and useless for replaying it.
//!
//! ```json
//! {"time":"2026-11-02T10:15:03.123456Z","face":"grpc","rpc":"CheckAccess","fhir_server":"a","decision":"deny","reason":"outside_compartment","interaction":"read","resource_type":"Observation","resource_id":"obs-9","client_id":"growth-chart","sub":"user-1","patient":"123","token_fingerprint":"3f9a0c1d","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}
//! ```

use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Span, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::layer::{Context, Layer};

use super::{DecisionEvent, traces};

pub mod batched;

/// The `tracing` target of audit events.
pub const AUDIT_TARGET: &str = "smart_authz::audit";

/// Emits the audit event of one decision.
pub(super) fn write(event: &DecisionEvent<'_>, span: &Span) {
    let fingerprint = event
        .token_fingerprint
        .map(|fingerprint| fingerprint.to_string());
    let trace_id = traces::trace_id(span);
    let context = event.token.map(|token| token.context);
    let request = event.request;
    let scopes: Option<String> = (!event.grants.is_empty()).then(|| {
        let mut scopes = String::new();
        for grant in event.grants {
            if scopes.split(' ').all(|seen| seen != grant.scope) {
                if !scopes.is_empty() {
                    scopes.push(' ');
                }
                scopes.push_str(&grant.scope);
            }
        }
        scopes
    });
    let compartment = request
        .and_then(|request| request.compartment.as_ref())
        .map(ToString::to_string);
    tracing::info!(
        target: AUDIT_TARGET,
        face = event.rpc.face().as_str(),
        rpc = event.rpc.as_str(),
        fhir_server = event.fhir_server,
        request_id = event.request_id,
        entry = event.entry,
        decision = event.outcome.as_str(),
        reason = event.reason,
        interaction = request.map(|request| request.interaction.as_str()),
        resource_type = request.and_then(|request| request.resource_type.as_deref()),
        resource_id = request.and_then(|request| request.id.as_deref()),
        compartment = compartment.as_deref(),
        operation = request.and_then(|request| request.operation.as_deref()),
        client_id = context.and_then(|context| context.client_id.as_deref()),
        sub = context.and_then(|context| context.sub.as_deref()),
        fhirUser = context.and_then(|context| context.fhir_user.as_deref()),
        patient = event.token.and_then(|token| token.patient),
        patient_claim = claimed_patient(event),
        scopes = scopes.as_deref(),
        withheld = event.withheld,
        token_fingerprint = fingerprint.as_deref(),
        trace_id = trace_id.as_deref(),
    );
}

/// The token's `patient` claim as written, when the patient the decision was for is not it
/// (a claim under another server's base, none at all): an investigator still sees whom the
/// token named. `None` when the two agree.
fn claimed_patient<'a>(event: &DecisionEvent<'a>) -> Option<&'a str> {
    let token = event.token?;
    let context = token.context;
    (context.patient.as_deref() != token.patient)
        .then(|| {
            context
                .patient_url
                .as_deref()
                .or(context.patient.as_deref())
        })
        .flatten()
}

/// Writes every event it sees as one JSON object per line: `time` (RFC 3339, UTC) and the
/// event's fields. Install it with a filter on [`AUDIT_TARGET`].
pub struct AuditLayer<W> {
    writer: W,
}

impl<W> AuditLayer<W>
where
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    pub fn new(writer: W) -> Self {
        AuditLayer { writer }
    }
}

impl<S, W> Layer<S> for AuditLayer<W>
where
    S: Subscriber,
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut line = Vec::with_capacity(512);
        line.extend_from_slice(b"{\"time\":\"");
        let _ = SystemTime.format_time(&mut Writer::new(&mut TextInto(&mut line)));
        line.push(b'"');
        event.record(&mut JsonFields { line: &mut line });
        line.extend_from_slice(b"}\n");
        // An audit line that cannot be written is lost, never a failed decision.
        let _ = self.writer.make_writer().write_all(&line);
    }
}

/// Appends `,"name":value` for every field, escaped by `serde_json` straight into the line
/// (a `serde_json::Value` per field, formatted through `Display`, cost about a microsecond
/// a line).
struct JsonFields<'a> {
    line: &'a mut Vec<u8>,
}

impl JsonFields<'_> {
    fn push(&mut self, field: &Field, value: impl serde::Serialize) {
        self.line.push(b',');
        // Into a `Vec`, a string, a number or a bool cannot fail to serialize.
        let _ = serde_json::to_writer(&mut *self.line, field.name());
        self.line.push(b':');
        let _ = serde_json::to_writer(&mut *self.line, &value);
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

/// Text written onto the bytes of the line (the time's formatter writes text).
struct TextInto<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for TextInto<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;

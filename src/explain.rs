//! `smart-authz explain`: one decision, printed for a person or as JSON, so a FHIR engineer
//! can see why a request is allowed or denied without running the service.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::authorize::add_search_body_only;
use crate::decision::{BundleDecision, Decision, Engine, Policy, bundle_entries};
use crate::fhir::{
    FhirRequest, FhirVersion, Interaction, RequestLineError, Resource, parse_request_line,
    parse_strict,
};
use crate::smart::{Scope, ScopeSet, TokenContext};

/// The launch context of a token, as `explain` and `token` take it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LaunchArgs {
    /// The patient in context (id or Patient/id).
    #[arg(long)]
    pub patient: Option<String>,
    /// The user's FHIR resource, e.g. Practitioner/7.
    #[arg(long)]
    pub fhir_user: Option<String>,
    /// The encounter in context.
    #[arg(long)]
    pub encounter: Option<String>,
}

/// The arguments of `explain`.
#[derive(Clone, Debug, clap::Args)]
pub struct ExplainArgs {
    /// The granted scopes, space-separated, e.g. "patient/*.rs openid".
    #[arg(long, default_value = "")]
    pub scope: String,
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// The FHIR release: r4, r4b or r5.
    #[arg(long, default_value = "r4")]
    pub fhir_version: FhirVersion,
    /// The resource as stored now (FHIR JSON), for reads, deletes, updates.
    #[arg(long)]
    pub stored: Option<PathBuf>,
    /// The new version (FHIR JSON) for creates, updates and patches; a Bundle for `POST /`.
    #[arg(long)]
    pub resource: Option<PathBuf>,
    /// The form body of a `POST _search`, e.g. "patient=123&code=x", read as the faces read
    /// it; none: the search has no body.
    #[arg(long)]
    pub body: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD.
    pub method: String,
    /// Path relative to the FHIR base, with its query, e.g. "Observation?code=x".
    pub path: String,
}

/// Why `explain` could not decide (a deny is not an error).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("invalid request line: {0}")]
    RequestLine(#[from] RequestLineError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Resource { path: PathBuf, message: String },
    #[error("invalid --patient: {0}")]
    Patient(String),
    #[error("invalid --body: {0}")]
    Body(String),
    #[error("cannot write the JSON report: {0}")]
    Report(serde_json::Error),
}

/// The rendered report and whether the request was allowed.
pub struct Explanation {
    pub allowed: bool,
    pub output: String,
}

/// Decides the request described by `args` and renders the answer.
pub fn explain(args: &ExplainArgs) -> Result<Explanation, ExplainError> {
    let mut request = parse_request_line(&args.method, &args.path)?;
    let body = args.body.as_deref().unwrap_or_default();
    // Every input is on the command line: a search given no body has none. Other POST
    // requests keep what the request line says of their body (an operation's parameters).
    let length = body.len().to_string();
    add_search_body_only(&mut request, body.as_bytes(), |name| {
        (name == "content-length").then_some(length.as_str())
    })
    .map_err(|refusal| ExplainError::Body(refusal.to_string()))?;
    let token = token_context(args)?;
    let engine = Engine::new(Policy::for_version(args.fhir_version));
    let stored = args.stored.as_ref().map(read_json).transpose()?;
    let proposed = args.resource.as_ref().map(read_json).transpose()?;
    if request.interaction == Interaction::Batch {
        return explain_bundle(args, &engine, &token, proposed);
    }
    let resource =
        |value: Option<Value>, path: &Option<PathBuf>| -> Result<Option<Resource>, ExplainError> {
            let Some(value) = value else { return Ok(None) };
            Resource::from_json(value)
                .map(Some)
                .map_err(|error| ExplainError::Resource {
                    path: path.clone().unwrap_or_default(),
                    message: error.to_string(),
                })
        };
    let stored = resource(stored, &args.stored)?;
    let proposed = resource(proposed, &args.resource)?;
    let decision = engine.decide(&token, &request, stored.as_ref(), proposed.as_ref());
    let output = if args.json {
        let report = Report {
            decision: &decision,
            request: &request,
            fhir_version: args.fhir_version,
            scopes: scope_report(&token.scopes),
        };
        serde_json::to_string_pretty(&report).map_err(ExplainError::Report)?
    } else {
        render_text(&decision, &request, &token)
    };
    Ok(Explanation {
        allowed: decision.is_allowed(),
        output,
    })
}

fn explain_bundle(
    args: &ExplainArgs,
    engine: &Engine,
    token: &TokenContext,
    bundle: Option<Value>,
) -> Result<Explanation, ExplainError> {
    let path = args.resource.clone().unwrap_or_default();
    let bundle = bundle.ok_or_else(|| ExplainError::Resource {
        path: path.clone(),
        message: "POST to the FHIR base needs the Bundle as --resource".to_owned(),
    })?;
    let (kind, entries) = bundle_entries(bundle).map_err(|error| ExplainError::Resource {
        path,
        message: error.to_string(),
    })?;
    let decision = engine.decide_bundle(token, kind, &entries);
    let output = if args.json {
        serde_json::to_string_pretty(&decision).map_err(ExplainError::Report)?
    } else {
        render_bundle(&decision)
    };
    Ok(Explanation {
        allowed: decision.outcome == crate::decision::Outcome::Allow,
        output,
    })
}

fn token_context(args: &ExplainArgs) -> Result<TokenContext, ExplainError> {
    let patient = match args.launch.patient.as_deref() {
        None => None,
        Some(patient) => Some(
            crate::fhir::reference::id_of("Patient", patient)
                .ok_or_else(|| ExplainError::Patient(patient.to_owned()))?
                .to_owned(),
        ),
    };
    Ok(TokenContext {
        scopes: std::sync::Arc::new(ScopeSet::parse(&args.scope, args.fhir_version)),
        patient,
        patient_url: args
            .launch
            .patient
            .clone()
            .filter(|patient| patient.contains("://")),
        encounter: args.launch.encounter.clone(),
        fhir_user: args.launch.fhir_user.clone(),
        client_id: None,
        sub: None,
    })
}

fn read_json(path: &PathBuf) -> Result<Value, ExplainError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExplainError::Read {
        path: path.clone(),
        source,
    })?;
    parse_strict(text.as_bytes()).map_err(|error| ExplainError::Resource {
        path: path.clone(),
        message: error.to_string(),
    })
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    request: &'a FhirRequest,
    fhir_version: FhirVersion,
    scopes: Vec<ScopeReport>,
}

/// How each granted scope was read.
#[derive(Serialize)]
struct ScopeReport {
    scope: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    canonical: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn scope_report(scopes: &ScopeSet) -> Vec<ScopeReport> {
    scopes
        .entries()
        .iter()
        .map(|entry| match &entry.parsed {
            Ok(scope) => ScopeReport {
                scope: entry.text.clone(),
                kind: scope.kind(),
                canonical: matches!(scope, Scope::Resource(_)).then(|| scope.to_string()),
                error: None,
            },
            Err(error) => ScopeReport {
                scope: entry.text.clone(),
                kind: "invalid",
                canonical: None,
                error: Some(error.to_string()),
            },
        })
        .collect()
}

fn render_text(decision: &Decision, request: &FhirRequest, token: &TokenContext) -> String {
    let mut out = String::new();
    let verdict = if decision.is_allowed() {
        "ALLOW"
    } else {
        "DENY"
    };
    let _ = writeln!(out, "{verdict} ({})", decision.reason.as_str());
    let _ = writeln!(out, "  {}", decision.message);
    let _ = writeln!(
        out,
        "request: {}{}",
        request.interaction,
        describe_target(request)
    );
    for grant in &decision.grants {
        let _ = writeln!(
            out,
            "grant: {} [{}]",
            grant.scope,
            serde_json::to_string(&grant.obligation)
                .unwrap_or_default()
                .trim_matches('"')
        );
        let _ = writeln!(out, "  types: {}", grant.resource_types.join(", "));
        if let Some(compartment) = &grant.compartment {
            let _ = match grant.compartment_params.as_slice() {
                [] => writeln!(out, "  limit to compartment {compartment}"),
                params => writeln!(
                    out,
                    "  limit to compartment {compartment} via {}",
                    params.join(" | ")
                ),
            };
        }
        if !grant.exclude_other_patients_via.is_empty() {
            let _ = writeln!(
                out,
                "  exclude results pointing to another patient via {}",
                grant.exclude_other_patients_via.join(" | ")
            );
        }
        if grant.answer_must_be_read {
            let _ = writeln!(
                out,
                "  read each resource of the answer for a reference to another patient"
            );
        }
        for item in &grant.filters {
            let _ = writeln!(out, "  and {} = {}", item.param, item.values.join(" or "));
        }
    }
    if let Some(included) = &decision.included_resources {
        let _ = writeln!(
            out,
            "included resources: only {} (each must pass the same decision)",
            included.readable_types.join(", ")
        );
    }
    for ignored in &decision.ignored_scopes {
        let _ = writeln!(out, "ignored: {}: {}", ignored.scope, ignored.reason);
    }
    let others: Vec<String> = token
        .scopes
        .entries()
        .iter()
        .filter_map(|entry| match &entry.parsed {
            Ok(scope) if !matches!(scope, Scope::Resource(_)) => {
                Some(format!("{} ({})", entry.text, scope.kind()))
            }
            _ => None,
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "no resource access from: {}", others.join(", "));
    }
    out
}

fn describe_target(request: &FhirRequest) -> String {
    let mut target = String::new();
    if let Some(compartment) = &request.compartment {
        let _ = write!(target, " in {compartment}");
    }
    if let Some(resource_type) = &request.resource_type {
        let _ = write!(target, " {resource_type}");
    }
    if let Some(id) = &request.id {
        let _ = write!(target, "/{id}");
    }
    if let Some(operation) = &request.operation {
        let _ = write!(target, " ${operation}");
    }
    for param in &request.params {
        let _ = write!(target, " {}={}", param.name, param.value);
    }
    target
}

fn render_bundle(decision: &BundleDecision) -> String {
    let mut out = String::new();
    let verdict = if decision.outcome == crate::decision::Outcome::Allow {
        "ALLOW"
    } else {
        "DENY"
    };
    let kind = serde_json::to_string(&decision.kind).unwrap_or_default();
    let _ = writeln!(
        out,
        "{verdict} {} ({})",
        kind.trim_matches('"'),
        decision.reason.as_str()
    );
    let _ = writeln!(out, "  {}", decision.message);
    for (index, entry) in decision.entries.iter().enumerate() {
        let verdict = if entry.is_allowed() { "allow" } else { "deny" };
        let _ = writeln!(out, "entry {index}: {verdict}: {}", entry.message);
    }
    out
}

//! smart-authz: SMART on FHIR App Launch 2.x authorization decisions in one place.
//!
//! A FHIR server asks "may this token do this request?"; smart-authz answers allow or deny,
//! with the reason, the scopes that granted it, and the constraints the server must still
//! apply (a Patient compartment, granular search filters). The rule book is SMART App
//! Launch 2.2 "Scopes and Launch Context" plus the product policy in `docs/semantics.md`.
//!
//! # Layout
//!
//! Each layer imports only the ones below it (`tests/architecture.rs` checks every import),
//! top first:
//! - [`app`]: wiring: one server with the API, ext_authz, health and reflection, on TCP
//!   (TLS and mutual TLS with certificates reloaded from disk, `app::tls`) and optionally a
//!   Unix socket; the HTTP listeners (AuthZEN, `/metrics`), bounded and timed; graceful
//!   shutdown. [`mint`] and [`explain`]: the `token` and `explain` commands.
//! - [`grpc`], [`envoy`] and [`authzen`]: the faces. `smartauthz.v1.AuthzService`, Envoy's
//!   ext_authz v3 `Check` and ext_proc v3 `Process` (answers filtered on the way back), and
//!   the AuthZEN HTTP JSON API decode their wire format, call the pipeline, encode its
//!   verdict.
//! - [`authorize`]: the one pipeline every face calls: which FHIR server is asking and
//!   whether the caller may, public check, token, engine, one event per answer, and the same
//!   on the way back for a FHIR server's answer; the deny vocabulary and its HTTP and gRPC
//!   statuses.
//! - [`telemetry`]: logs, OpenTelemetry traces, Prometheus metrics and the audit log.
//! - [`token`]: JWT verification against each issuer's keys (fetched and refreshed), RFC
//!   7662 introspection, discovery, the cache of verified tokens; its own upstream metrics.
//! - [`config`]: every configuration type: the TOML file and `SMART_AUTHZ_*` environment,
//!   validated. A leaf above the engine.
//! - The engine, the `smart-authz-engine` crate of this workspace (pure: no I/O, no async, no
//!   clock), re-exported here: [`decision`] (`decide(token, request, stored, proposed)`
//!   returns a [`decision::Decision`]), [`smart`] (the scope grammar and the launch context)
//!   and [`fhir`] (versions and their generated tables, request lines, references, the
//!   FHIRPath subset, the facts read from a resource).
//!
//! A deny is a `Decision`, never an error; an error means the service could not decide, and
//! never becomes an allow.

pub use smart_authz_engine::{decision, fhir, smart};

pub mod app;
pub mod authorize;
pub mod authzen;
pub mod config;
pub mod envoy;
pub mod explain;
pub mod grpc;
pub mod mint;
pub mod telemetry;
pub mod token;

//! smart-authz: SMART on FHIR App Launch 2.x authorization decisions in one place.
//!
//! A FHIR server asks "may this token do this request?"; smart-authz answers allow or deny,
//! with the reason, the scopes that granted it, and the constraints the server must still
//! apply (a Patient compartment, granular search filters). The rule book is SMART App
//! Launch 2.2 "Scopes and Launch Context" plus the product policy in `docs/semantics.md`.
//!
//! # Layout
//!
//! The pure core (no I/O, no async, no clock):
//! - [`smart`]: the scope grammar (`patient/Observation.rs?category=...`, v1 words, launch,
//!   identity and extension scopes) and the launch context read from a token's claims.
//! - [`fhir`]: FHIR versions with tables generated from the official definitions
//!   (`data/fhir/`, by `build.rs`), interactions, the REST request-line parser, references,
//!   the FHIRPath subset, and the facts read from a resource (compartments, search values).
//! - [`decision`]: the engine. `decide(token, request, stored, proposed)` returns a
//!   [`decision::Decision`]; batches and transactions are decided entry by entry. Policy knobs
//!   live in [`decision::Policy`].
//!
//! The edges:
//! - [`token`]: JWT verification against each issuer's keys (fetched and refreshed), and
//!   the cache of verified tokens.
//! - [`grpc`]: the `smartauthz.v1.AuthzService` face and its protobuf conversions.
//! - [`envoy`]: the Envoy ext_authz v3 face (service meshes), on the same engine and cache.
//! - [`app`]: wiring: one server with the API, health and reflection; graceful shutdown.
//! - [`config`]: the TOML file and `SMART_AUTHZ_*` environment, validated.
//! - [`telemetry`]: logs, OpenTelemetry traces, Prometheus metrics and the audit log.
//! - [`explain`] and [`mint`]: the `explain` and `token` commands.
//!
//! A deny is a `Decision`, never an error; an error means the service could not decide, and
//! never becomes an allow.

pub use smart_authz_engine::{decision, fhir, smart};

pub mod app;
pub mod authorize;
pub mod config;
pub mod envoy;
pub mod explain;
pub mod grpc;
pub mod mint;
pub mod telemetry;
pub mod token;

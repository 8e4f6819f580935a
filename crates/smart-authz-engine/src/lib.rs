//! The decision engine of smart-authz: SMART on FHIR App Launch 2.x scopes judged against
//! FHIR requests, with no I/O, no async runtime and no clock, so a FHIR server written in
//! Rust can embed it and every rule can be tested exhaustively.
//!
//! The rule book is SMART App Launch 2.2 "Scopes and Launch Context" plus the product
//! policy in `docs/semantics.md` of the smart-authz repository.
//!
//! # Layout
//!
//! Each module imports only the ones below it:
//! - [`decision`]: the engine. `decide(token, request, stored, proposed)` returns a
//!   [`decision::Decision`]; batches and transactions are decided entry by entry, and a
//!   FHIR server's answer is filtered on the way back, every resource judged as a read of
//!   it (`Engine::filter_response`). Policy knobs live in [`decision::Policy`].
//! - [`smart`]: the scope grammar (`patient/Observation.rs?category=...`, v1 words, launch,
//!   identity and extension scopes) and the launch context read from a token's claims.
//! - [`fhir`]: FHIR versions with tables generated from the official definitions
//!   (`data/fhir/`, by this crate's `build.rs`), interactions, the REST request-line parser,
//!   references, the FHIRPath subset, and the facts read from a resource (compartments,
//!   search values).
//!
//! A deny is a `Decision`, never an error.

pub mod decision;
pub mod fhir;
pub mod smart;

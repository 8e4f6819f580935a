//! The FHIR model: versions and their definition tables, interactions, the REST request-line
//! parser, references, and the facts the engine reads from a resource (compartments, search
//! values) through a small FHIRPath subset. Pure: no I/O.

pub mod facts;
pub mod fhirpath;
pub mod interaction;
pub mod json;
pub mod reference;
pub mod request_line;
pub mod structured;
pub mod tables;
pub mod version;

pub use facts::{FilterMatch, Resource, ResourceFacts};
pub use interaction::{CompartmentRef, FhirRequest, Interaction, SearchParam};
pub use json::{
    JsonError, TreeMemory, parse_strict, parse_strict_within, to_fhir_json, to_fhir_json_keeping,
};
pub use request_line::{RequestLineError, parse_request_line};
pub use structured::{StructuredError, validate_structured};
pub use version::FhirVersion;

#![forbid(unsafe_code)]
pub mod fhir;

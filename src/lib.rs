#![forbid(unsafe_code)]
pub mod fhir;
pub mod smart;

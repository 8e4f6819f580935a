#![forbid(unsafe_code)]
pub mod decision;
pub mod explain;
pub mod fhir;
pub mod smart;

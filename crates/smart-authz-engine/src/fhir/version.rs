//! The FHIR versions smart-authz knows, each with its generated tables.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::fhirpath::{Expression, FhirPathError};
use super::tables::{self, CompartmentTable, SearchParamDef, VersionTables};

/// A FHIR release. Scope grammar, compartments and search parameters depend on it, so the
/// service is configured with exactly one (R4 4.0.1 unless configured otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FhirVersion {
    #[default]
    R4,
    R4B,
    R5,
}

/// A version name that is not `r4`, `r4b` or `r5` (or their numbers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown FHIR version {0:?}: expected r4, r4b or r5")]
pub struct UnknownFhirVersion(pub String);

impl FhirVersion {
    pub const ALL: [FhirVersion; 3] = [FhirVersion::R4, FhirVersion::R4B, FhirVersion::R5];

    pub fn tables(self) -> &'static VersionTables {
        match self {
            FhirVersion::R4 => &tables::R4,
            FhirVersion::R4B => &tables::R4B,
            FhirVersion::R5 => &tables::R5,
        }
    }

    /// True when `name` is a resource type of this version (case-sensitive).
    pub fn is_resource_type(self, name: &str) -> bool {
        self.tables().is_resource_type(name)
    }

    /// The search parameter `code` of `resource_type`, inherited ones included.
    pub fn search_param(self, resource_type: &str, code: &str) -> Option<&'static SearchParamDef> {
        self.tables().search_param(resource_type, code)
    }

    /// The FHIRPath expression `text` of a search parameter, parsed
    /// ([`VersionTables::expression`]).
    pub fn expression(self, text: &str) -> Result<Cow<'static, Expression>, FhirPathError> {
        self.tables().expression(text)
    }

    /// The Patient CompartmentDefinition of this version.
    pub fn patient_compartment(self) -> &'static CompartmentTable {
        self.tables().patient_compartment
    }

    /// The search parameters linking `resource_type` to the Patient compartment, `None` when
    /// the type is never in it.
    pub fn patient_compartment_params(
        self,
        resource_type: &str,
    ) -> Option<&'static [&'static str]> {
        self.tables().patient_compartment_params(resource_type)
    }
}

impl fmt::Display for FhirVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            FhirVersion::R4 => "R4",
            FhirVersion::R4B => "R4B",
            FhirVersion::R5 => "R5",
        })
    }
}

impl FromStr for FhirVersion {
    type Err = UnknownFhirVersion;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "r4" | "4.0" | "4.0.1" => Ok(FhirVersion::R4),
            "r4b" | "4.3" | "4.3.0" => Ok(FhirVersion::R4B),
            "r5" | "5.0" | "5.0.0" => Ok(FhirVersion::R5),
            _ => Err(UnknownFhirVersion(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests;

//! The FHIR versions smart-authz knows, each with its generated tables.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

    /// The Patient CompartmentDefinition of this version.
    pub fn patient_compartment(self) -> &'static CompartmentTable {
        self.tables().patient_compartment
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
mod tests {
    use super::*;

    #[test]
    fn resource_type_counts_match_the_compartment_definitions() {
        assert_eq!(FhirVersion::R4.tables().resource_types.len(), 145);
        assert_eq!(FhirVersion::R4B.tables().resource_types.len(), 140);
        assert_eq!(FhirVersion::R5.tables().resource_types.len(), 157);
    }

    #[test]
    fn resource_types_are_case_sensitive_and_versioned() {
        assert!(FhirVersion::R4.is_resource_type("Observation"));
        assert!(!FhirVersion::R4.is_resource_type("observation"));
        assert!(FhirVersion::R4.is_resource_type("DeviceUseStatement"));
        assert!(!FhirVersion::R5.is_resource_type("DeviceUseStatement"));
        assert!(FhirVersion::R5.is_resource_type("DeviceUsage"));
    }

    #[test]
    fn search_params_include_inherited_ones() {
        let code = FhirVersion::R4.search_param("Observation", "code").unwrap();
        assert_eq!(code.expression, Some("Observation.code"));
        assert!(
            FhirVersion::R4
                .search_param("Observation", "_tag")
                .is_some()
        );
        assert!(
            FhirVersion::R4
                .search_param("Observation", "nonsense")
                .is_none()
        );
    }

    #[test]
    fn patient_compartment_uses_the_official_parameters() {
        let compartment = FhirVersion::R4.patient_compartment();
        assert_eq!(
            compartment.params("Observation"),
            Some(&["subject", "performer"][..])
        );
        assert_eq!(compartment.params("Patient"), Some(&["link"][..]));
        assert_eq!(compartment.params("Practitioner"), None);
        assert_eq!(compartment.params("Device"), None);
        assert_eq!(
            FhirVersion::R5.patient_compartment().params("Patient"),
            Some(&["link"][..])
        );
    }

    #[test]
    fn parses_version_names() {
        assert_eq!("r4b".parse(), Ok(FhirVersion::R4B));
        assert_eq!("R5".parse(), Ok(FhirVersion::R5));
        assert!("r6".parse::<FhirVersion>().is_err());
    }
}

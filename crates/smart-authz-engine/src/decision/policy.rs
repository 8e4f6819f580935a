//! The points the SMART specification leaves to the server, with the defaults of
//! docs/semantics.md. Every default is the fail-closed reading of the rule book.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fhir::FhirVersion;
use crate::smart::Permissions;

/// How `patient/` scopes treat resource types that are never in the Patient compartment
/// (Practitioner, Organization, Medication, R4 Device, ...): docs/semantics.md §3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonCompartmentAccess {
    /// Read and search without a compartment constraint, unless the resource is known to
    /// reference another patient; writes denied.
    #[default]
    ReadAndSearch,
    /// `patient/` scopes never reach them.
    Deny,
}

/// What an operation (`$name`) requires; docs/semantics.md §2 "operations".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum OperationRule {
    /// `Patient/[id]/$everything`: the patient context must be `id` (under every context),
    /// over the types the token can both read and search.
    PatientEverything,
    /// Needs `s` on the type, like a search of that type (`$lastn`, `$stats`).
    TypeSearch,
    /// Bulk export: `system/` scopes with `r` and `s` on every exported type.
    BulkExport,
    /// Needs nothing beyond a valid token at type or system level (`$validate`); on an
    /// instance, what a read of it needs, verified on the stored version.
    ValidToken,
    /// Needs these letters on the request's resource type, like a read (instance level) or
    /// a search (type level) of it.
    Permissions { letters: String },
    /// Denied.
    Deny,
}

impl OperationRule {
    /// The letters of a `Permissions` rule, or `None` if they are not a valid letter set.
    pub fn letters(&self) -> Option<Permissions> {
        let OperationRule::Permissions { letters } = self else {
            return None;
        };
        let mut set = Permissions::NONE;
        for letter in letters.chars() {
            set = set.with(crate::smart::Permission::from_letter(letter)?);
        }
        (!set.is_empty()).then_some(set)
    }
}

/// The configurable points of the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The FHIR release whose resource types, search parameters and compartments apply.
    /// Configured at the top level (`fhir_version`), not in `[policy]`.
    #[serde(skip)]
    pub fhir_version: FhirVersion,
    /// A `fhirUser` that is a Patient supplies the patient context when `patient` is absent
    /// (docs/semantics.md §3, default on).
    pub patient_from_fhir_user: bool,
    /// Accept `sub` as the user identity for `user/` scopes when `fhirUser` is absent
    /// (default off).
    pub user_from_sub: bool,
    /// Refuse every resource scope of a token that mixes SMART v1 and v2 syntax or several
    /// contexts (default off).
    pub strict_scopes: bool,
    pub non_compartment_types: NonCompartmentAccess,
    /// Operation name (without `$`) to rule. Operations not listed are denied.
    pub operations: BTreeMap<String, OperationRule>,
    /// The FHIR server's base URLs, without a trailing `/`: an absolute reference counts
    /// toward a compartment or a granular filter only under one of them. Empty: unknown, and
    /// any `http(s)` base is read by its `Type/id` tail. Set from `[[fhir_servers]]
    /// base_urls`, not in `[policy]`.
    #[serde(skip)]
    pub base_urls: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        let operations = [
            ("everything", OperationRule::PatientEverything),
            ("lastn", OperationRule::TypeSearch),
            ("stats", OperationRule::TypeSearch),
            ("export", OperationRule::BulkExport),
            ("validate", OperationRule::ValidToken),
        ]
        .into_iter()
        .map(|(name, rule)| (name.to_owned(), rule))
        .collect();
        Policy {
            fhir_version: FhirVersion::R4,
            patient_from_fhir_user: true,
            user_from_sub: false,
            strict_scopes: false,
            non_compartment_types: NonCompartmentAccess::ReadAndSearch,
            operations,
            base_urls: Vec::new(),
        }
    }
}

impl Policy {
    /// The default policy for another FHIR version.
    pub fn for_version(fhir_version: FhirVersion) -> Self {
        Policy {
            fhir_version,
            ..Policy::default()
        }
    }
}

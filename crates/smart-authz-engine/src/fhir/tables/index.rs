//! Hash look-ups over one version's tables, built once, when an engine of the version is made.
//!
//! The tables are sorted slices, and a search by binary search costs a string comparison
//! per step: about forty per decision on a search (the type among ~150, the parameter among
//! its ~30, then the inherited lists for a result parameter such as `_count`), half of the
//! engine's time (`cargo bench --bench engine`, "decide search"). Here each question is one
//! hash and one comparison. The sorted slices stay the definition; this is their index, and
//! its tests hold it equal to them for every type and code of every version.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use foldhash::fast::FixedState;

use super::{SearchParamDef, VersionTables};
use crate::fhir::fhirpath::{Expression, FhirPathError};

/// The tables' keys are fixed at build time, so a fixed seed opens no flooding: a request
/// can only look up, never insert.
type Map<K, V> = HashMap<K, V, FixedState>;

/// What the tables say of one type.
pub(super) struct TypeRow {
    /// A concrete resource type of the version (not `Resource` or `DomainResource`).
    pub(super) is_resource_type: bool,
    /// Its links to the Patient compartment, `None` when it is never in it.
    pub(super) patient_compartment: Option<&'static [&'static str]>,
}

/// The index of one [`VersionTables`].
pub struct TableIndex {
    /// Every type with a row in the tables (its own parameters, the Patient compartment, or
    /// both, and the abstract `Resource` and `DomainResource`).
    types: Map<&'static str, TypeRow>,
    /// (type, code) for every type of `types`, its inherited parameters folded in (nearest
    /// ancestor first, as [`VersionTables::search_param_by_search`] reads them).
    search_params: Map<(&'static str, &'static str), &'static SearchParamDef>,
    /// Every parameter's expression, parsed the first time it is asked for: a resource is
    /// checked against the same few expressions again and again (each entry of a search
    /// answer against its type's compartment links), and parsing one allocated its steps
    /// anew each time. Parsed all up front, R5's 1,900 would hold about 400 KB more per
    /// version, for the few dozen a deployment uses.
    expressions: Map<&'static str, OnceLock<Result<Expression, FhirPathError>>>,
}

impl TableIndex {
    /// Indexes `tables`: for R5, 159 types and 4,353 (type, code) pairs, under a millisecond
    /// and a few hundred kilobytes.
    pub(super) fn build(tables: &'static VersionTables) -> Self {
        let known = tables
            .resource_types
            .iter()
            .copied()
            .chain(tables.search_params.iter().map(|(name, _)| *name))
            .chain(
                tables
                    .patient_compartment
                    .members
                    .iter()
                    .map(|(name, _)| *name),
            );
        let mut types = Map::default();
        let mut search_params = Map::default();
        for resource_type in known {
            if types.contains_key(resource_type) {
                continue;
            }
            let row = TypeRow {
                is_resource_type: tables.resource_types.binary_search(&resource_type).is_ok(),
                patient_compartment: tables.patient_compartment.params(resource_type),
            };
            types.insert(resource_type, row);
            for params in tables.param_lists(resource_type) {
                for param in params {
                    search_params
                        .entry((resource_type, param.code))
                        .or_insert(param);
                }
            }
        }
        let mut expressions = Map::default();
        let every_param = tables.search_params.iter().flat_map(|(_, params)| *params);
        for text in every_param.filter_map(|param| param.expression) {
            expressions.entry(text).or_insert_with(OnceLock::new);
        }
        TableIndex {
            types,
            search_params,
            expressions,
        }
    }

    /// The row of `resource_type`, when the tables have one; its look-ups are then all here.
    pub(super) fn row(&self, resource_type: &str) -> Option<&TypeRow> {
        self.types.get(resource_type)
    }

    /// The parameter `code` of a known type, inherited ones included.
    pub(super) fn search_param(
        &self,
        resource_type: &str,
        code: &str,
    ) -> Option<&'static SearchParamDef> {
        self.search_params.get(&(resource_type, code)).copied()
    }

    /// The parsed expression `text`, when it is one of the tables' own.
    pub(super) fn expression(&self, text: &str) -> Option<&Result<Expression, FhirPathError>> {
        let cell = self.expressions.get(text)?;
        Some(cell.get_or_init(|| Expression::parse(text)))
    }
}

impl fmt::Debug for TableIndex {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TableIndex")
            .field("types", &self.types.len())
            .field("search_params", &self.search_params.len())
            .field("expressions", &self.expressions.len())
            .finish()
    }
}

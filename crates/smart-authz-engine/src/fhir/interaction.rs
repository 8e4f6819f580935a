//! FHIR RESTful interactions and the request the engine decides on.
//!
//! The shape mirrors the service's API (`FhirRequest` in the proto): one flat struct whose
//! fields are meaningful per interaction, checked by the engine before any
//! decision is made.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A FHIR RESTful interaction (FHIR R4 http.html), plus the two public endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interaction {
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    Create,
    SearchType,
    SearchSystem,
    SearchCompartment,
    /// `GET metadata`.
    Capabilities,
    /// `GET .well-known/smart-configuration`.
    SmartConfiguration,
    /// `POST [base]` with a Bundle: a batch or a transaction, decided entry by entry.
    Batch,
    Transaction,
    /// `$name` at system, type or instance level.
    Operation,
}

impl Interaction {
    /// The name used in FHIR's documentation and in the API (`search-type`, `vread`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::Create => "create",
            Interaction::SearchType => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::SearchCompartment => "search-compartment",
            Interaction::Capabilities => "capabilities",
            Interaction::SmartConfiguration => "smart-configuration",
            Interaction::Batch => "batch",
            Interaction::Transaction => "transaction",
            Interaction::Operation => "operation",
        }
    }

    /// True for the endpoints every client may call without a token: the CapabilityStatement
    /// (FHIR R4 http.html#capabilities) and the SMART configuration (SMART App Launch 2.2
    /// conformance.html), which a client reads before it has one.
    pub fn is_public(self) -> bool {
        matches!(
            self,
            Interaction::Capabilities | Interaction::SmartConfiguration
        )
    }

    /// True for the interactions that change what the server holds: a batch or transaction
    /// may hold writes. Their requests are decided with the resources they write, and their
    /// answers come after the write is done.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Interaction::Create
                | Interaction::Update
                | Interaction::Patch
                | Interaction::Delete
                | Interaction::Batch
                | Interaction::Transaction
        )
    }

    /// True for the interactions that return many resources and take search parameters.
    pub fn is_search(self) -> bool {
        matches!(
            self,
            Interaction::SearchType
                | Interaction::SearchSystem
                | Interaction::SearchCompartment
                | Interaction::HistoryType
                | Interaction::HistorySystem
        )
    }
}

impl fmt::Display for Interaction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One `name=value` pair of a query string or of precomputed resource facts, percent-decoded.
/// `name` keeps any modifier (`code:in`) or chain (`subject.name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SearchParam {
    pub name: String,
    pub value: String,
}

impl SearchParam {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        SearchParam {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A compartment instance such as `Patient/123`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CompartmentRef {
    pub compartment_type: String,
    pub id: String,
}

impl CompartmentRef {
    pub fn new(compartment_type: impl Into<String>, id: impl Into<String>) -> Self {
        CompartmentRef {
            compartment_type: compartment_type.into(),
            id: id.into(),
        }
    }

    /// Parses `Type/id`.
    pub fn parse(text: &str) -> Option<Self> {
        let (compartment_type, id) = text.split_once('/')?;
        if compartment_type.is_empty() || id.is_empty() || id.contains('/') {
            return None;
        }
        Some(CompartmentRef::new(compartment_type, id))
    }
}

impl fmt::Display for CompartmentRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.compartment_type, self.id)
    }
}

/// The request to decide on, relative to the FHIR base.
///
/// - `resource_type`: the type read, written or searched; for `search-compartment` the type
///   searched inside the compartment (`None` or `*` for all types); `None` at system level.
/// - `id`, `version_id`: instance and version; `id` is `None` for conditional writes.
/// - `compartment`: only for `search-compartment` (`Patient/123` in `Patient/123/Observation`).
/// - `operation`: the operation name without `$`, only for `Operation`.
/// - `params`: the query, in order, percent-decoded.
/// - `params_in_body`: a `POST .../_search`, whose form body may carry more parameters
///   (FHIR R4 http.html §3.1.0.7.1) than `params` holds: true until a face has added them.
///   What the answer to such a search may hold cannot be told from `params` alone. Also a
///   `POST` operation, whose parameters come in a `Parameters` body (FHIR R4
///   operations.html §2.4.1.1): rules that read an operation's parameters refuse it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FhirRequest {
    pub interaction: Interaction,
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub compartment: Option<CompartmentRef>,
    pub operation: Option<String>,
    pub params: Vec<SearchParam>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub params_in_body: bool,
}

impl FhirRequest {
    /// A `POST` search whose form body's parameters (FHIR R4 http.html §3.1.0.7.1) are not in
    /// `params` yet: what it asks for cannot be told.
    pub fn has_unread_search_body(&self) -> bool {
        self.params_in_body && self.interaction.is_search()
    }

    /// A request with only the interaction set; fill the rest with the `with_*` methods.
    pub fn new(interaction: Interaction) -> Self {
        FhirRequest {
            interaction,
            resource_type: None,
            id: None,
            version_id: None,
            compartment: None,
            operation: None,
            params: Vec::new(),
            params_in_body: false,
        }
    }

    pub fn with_type(mut self, resource_type: impl Into<String>) -> Self {
        self.resource_type = Some(resource_type.into());
        self
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push(SearchParam::new(name, value));
        self
    }

    /// Values of every parameter called exactly `name`, in order.
    pub fn param_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |param| param.name == name)
            .map(|param| param.value.as_str())
    }
}

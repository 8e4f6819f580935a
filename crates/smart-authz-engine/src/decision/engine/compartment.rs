//! The Patient compartment rules for `patient/` scopes (docs/semantics.md §3 "patient/").

use super::{Access, Refusal, Session};
use crate::decision::policy::NonCompartmentAccess;
use crate::decision::{Grant, Reason};
use crate::fhir::reference::parse_reference;
use crate::fhir::tables::SearchParamDef;
use crate::fhir::{FhirVersion, Interaction, Resource};
use crate::smart::{Permission, ResourceSelector};

/// The pseudo resource type under which a search across types checks its parameters.
pub(super) const SYSTEM_LEVEL: &str = "Resource";

impl Session<'_> {
    /// The Patient compartment rules of docs/semantics.md §3 "patient/".
    pub(super) fn check_patient_compartment(
        &self,
        grant: &mut Grant,
        patient: &str,
        resource_type: &str,
        access: Access,
    ) -> Result<(), Refusal> {
        let version = self.version();
        let Some(params) = version.patient_compartment_params(resource_type) else {
            return self.check_outside_compartment_type(grant, patient, resource_type, access);
        };
        if access == Access::Search {
            self.check_search_names_only(patient, resource_type)?;
            self.check_others_not_trimmed(resource_type)?;
            grant.compartment = Some(format!("Patient/{patient}"));
            grant.compartment_params = compartment_params(resource_type, params);
            return Ok(());
        }
        if resource_type == "Patient" && access == Access::Create {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                "a Patient cannot be created under patient/ scopes",
            ));
        }
        // A Patient is another patient's own record, whatever links it to this one: a
        // `link` puts Patient/456 in Patient/123's compartment for reading, but writing it
        // writes into Patient/456's record (§3). Refused by its id alone, as facts need
        // not list the Patient's own id among its compartments.
        if resource_type == "Patient"
            && access.is_write()
            && let Some(id) = self.request.id.as_deref()
            && id != patient
        {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "Patient/{id} is another patient's own record: patient/ scopes write only Patient/{patient}"
                ),
            ));
        }
        // A conditional update that matches nothing creates the resource (FHIR R4 http.html
        // "Conditional update"): for a Patient, the creation refused just above.
        if resource_type == "Patient"
            && self.request.interaction == Interaction::Update
            && self.request.id.is_none()
        {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                "a conditional update of a Patient may create one, which patient/ scopes cannot",
            ));
        }
        // A conditional update, patch or delete (`DELETE Observation?subject=...`) runs its
        // query as a search first: one naming another patient is refused as that search is.
        if self.request.id.is_none() && !self.request.params.is_empty() {
            self.check_search_names_only(patient, resource_type)?;
        }
        // The patient's own record keeps the links it has: a `Patient.link` names the same
        // person's other records, not another person's (FHIR R4 patient.html "Link").
        let keeps_stored_patients =
            resource_type == "Patient" && self.request.id.as_deref() == Some(patient);
        let mut verified = true;
        let mut unseen_may_name_others = false;
        let mut stored_members: Vec<String> = Vec::new();
        for (label, resource) in self.versions.touched_by(access) {
            let Some(resource) = resource else {
                verified = false;
                unseen_may_name_others |= label == "new" || !keeps_stored_patients;
                continue;
            };
            let members = resource.patient_compartments_at(version, self.locality(), resource_type);
            if !members.iter().any(|id| id == patient) {
                return Err(Refusal::new(
                    Reason::OutsideCompartment,
                    format!(
                        "the {label} {resource_type} is not in the compartment of Patient/{patient}"
                    ),
                ));
            }
            if access == Access::Read {
                continue;
            }
            if label == "stored" && keeps_stored_patients {
                // Local members only: a foreign reference in the stored version must not let
                // the new one name that patient on this server.
                stored_members = members;
                continue;
            }
            if let Some(link) = resource.unreadable_patient_link(version, resource_type) {
                return Err(Refusal::new(
                    Reason::OutsideCompartment,
                    format!(
                        "the {label} {resource_type} holds {link}: it could name another patient"
                    ),
                ));
            }
            // Another patient counts under any base: a base spelling the configuration does
            // not list may still be this server's (fail closed).
            let members = if self.locality().knows_bases() {
                resource.patient_compartments(version, resource_type)
            } else {
                members
            };
            // A write may not touch another patient's compartment as well (§3): neither put
            // the resource there nor change or delete one that is already there, which would
            // write into that patient's record.
            if let Some(other) = members
                .iter()
                .find(|id| *id != patient && !stored_members.contains(id))
            {
                return Err(Refusal::new(
                    Reason::OutsideCompartment,
                    match label {
                        "new" => {
                            format!("the new {resource_type} would also belong to Patient/{other}")
                        }
                        _ => format!(
                            "the stored {resource_type} also belongs to Patient/{other}: writing it writes into that patient's record"
                        ),
                    },
                ));
            }
        }
        // A write with a version not given (a PATCH, whose result the caller cannot compute;
        // a write decided on the request line alone; an update or delete without the stored
        // version): the server must refuse one whose resource names another patient through
        // a compartment link, before or after, as the loop above refuses a given one (§3).
        if unseen_may_name_others && access != Access::Read {
            grant.exclude_other_patients_via =
                params.iter().map(|&param| param.to_owned()).collect();
        }
        if resource_type == "Patient"
            && let Some(id) = self.request.id.as_deref()
        {
            if id == patient {
                // The patient's own record is in the compartment by its id (and a new
                // version keeps that id: validate() checked it).
                return Ok(());
            }
            // Another Patient is in it only through `link`, which only the stored version
            // can show (the loop above checked it when given).
            if self.versions.stored.is_none() {
                return Err(Refusal::new(
                    Reason::OutsideCompartment,
                    format!("Patient/{id} is not the patient in context (Patient/{patient})"),
                ));
            }
        }
        // The stored resource is the current version: it says nothing of the versions a
        // history or a vread returns, which may have belonged to another patient. The server
        // applies the compartment to every version it returns.
        if !verified || self.reads_past_versions() {
            grant.compartment = Some(format!("Patient/{patient}"));
            grant.compartment_params = if resource_type == "Patient" && access.is_write() {
                // A conditional patch or delete of Patients: the compartment's other
                // members are other patients' own records (refused above by id), so the
                // write may match the patient's own record alone.
                vec!["_id".to_owned()]
            } else {
                compartment_params(resource_type, params)
            };
        }
        Ok(())
    }

    /// True for the interactions that return versions other than the current one.
    pub(super) fn reads_past_versions(&self) -> bool {
        matches!(
            self.request.interaction,
            Interaction::HistoryInstance | Interaction::Vread
        )
    }

    /// Types never in the Patient compartment: configurable; by default readable and
    /// searchable unless known to belong to another patient, never writable.
    fn check_outside_compartment_type(
        &self,
        grant: &mut Grant,
        patient: &str,
        resource_type: &str,
        access: Access,
    ) -> Result<(), Refusal> {
        if self.policy.non_compartment_types == NonCompartmentAccess::Deny {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "{resource_type} is never in the Patient compartment, and the policy keeps patient/ scopes from it"
                ),
            ));
        }
        if access.is_write() {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "patient/ scopes cannot {} {resource_type}, which is never in the Patient compartment",
                    access.verb()
                ),
            ));
        }
        self.check_not_trimmed(resource_type)?;
        let stored = match access {
            Access::Search => {
                self.check_search_names_only(patient, resource_type)?;
                None
            }
            _ => self.versions.stored,
        };
        // Not verified here (no stored version, past versions the current one does not
        // speak for, or the caller's facts, which list compartments and search values but
        // not every reference such a resource holds): the server must leave out what points
        // to another patient.
        let verified = matches!(stored, Some(Resource::Json(_))) && !self.reads_past_versions();
        if !verified {
            grant.exclude_other_patients_via =
                patient_reference_params(self.version(), resource_type);
            // No parameter to leave them out by: only reading each resource can.
            grant.answer_must_be_read = grant.exclude_other_patients_via.is_empty();
        }
        let Some(stored) = stored else {
            return Ok(());
        };
        if let Some(other) = stored
            .referenced_patients(self.version(), resource_type)
            .into_iter()
            .find(|id| id != patient)
        {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!("the stored {resource_type} belongs to another patient (Patient/{other})"),
            ));
        }
        // Trimmed (`_elements`, `_summary` in a body this service did not read), it may have
        // lost the reference that names its patient (R4 search.html#summary: a server marks
        // such a resource SUBSETTED).
        if stored.is_subsetted() {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "the stored {resource_type} is trimmed (SUBSETTED): the reference naming its patient may be gone"
                ),
            ));
        }
        // A patient it names but not by id may be another (fail closed).
        if let Some(mention) = stored.unidentified_patient(self.version(), resource_type) {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "the stored {resource_type} holds {mention}: it could be another patient's"
                ),
            ));
        }
        Ok(())
    }

    /// [`Self::check_not_trimmed`] for a search of every type under `patient/*`: its answer
    /// may hold types outside the compartment unless the policy keeps them out, or the search
    /// is the patient's own compartment (`Patient/123/*`; another patient's is refused before),
    /// which holds only its members. Another compartment's (`Practitioner/7/*`) holds types
    /// outside the Patient compartment (R4 MessageHeader, Linkage, ...).
    pub(super) fn check_untyped_search_not_trimmed(&self) -> Result<(), Refusal> {
        let own_compartment = self
            .request
            .compartment
            .as_ref()
            .is_some_and(|compartment| compartment.compartment_type == "Patient");
        if self.policy.non_compartment_types == NonCompartmentAccess::Deny
            || own_compartment
            || !self.trims_answers()
        {
            return Ok(());
        }
        Err(Refusal::new(
            Reason::UnsupportedRequest,
            "_elements and _summary (or a POST search's unread body) are refused on a search of every type under patient/ scopes: a trimmed resource outside the compartment could hide the patient it belongs to (list the types in _type)",
        ))
    }

    /// Refuses `_elements` and `_summary` (but `_summary=count` and `false`) on a type outside
    /// the Patient compartment: whether such a resource is another patient's is read from
    /// every reference it holds (§3), and a trimmed answer would hide them from the check of
    /// the answer.
    fn check_not_trimmed(&self, resource_type: &str) -> Result<(), Refusal> {
        if self.trims_answers() {
            return Err(Refusal::new(
                Reason::UnsupportedRequest,
                format!(
                    "_elements and _summary (or a POST search's unread body) are refused on {resource_type} under patient/ scopes: a trimmed {resource_type} could hide the patient it belongs to"
                ),
            ));
        }
        Ok(())
    }

    /// [`Self::check_not_trimmed`] for a search of a compartment type whose answer also
    /// carries other resources (`_include`, `_revinclude`, `_contained`): the compartment
    /// confines the matches, not those, and a trimmed one outside the compartment could hide
    /// the patient it belongs to (`Observation?_include=Observation:focus&_summary=text`).
    /// Only where one could pass: the token's patient/ scopes read some type outside the
    /// compartment. An unread `POST` body is left to the check of the answer, which
    /// withholds a resource outside the compartment marked trimmed (`SUBSETTED`).
    fn check_others_not_trimmed(&self, resource_type: &str) -> Result<(), Refusal> {
        if self.policy.non_compartment_types == NonCompartmentAccess::Deny
            || !crate::decision::response::brings_other_types(self.request)
            || !self.trims_answers()
            || !self.reads_outside_compartment()
        {
            return Ok(());
        }
        Err(Refusal::new(
            Reason::UnsupportedRequest,
            format!(
                "_elements and _summary are refused with _include, _revinclude or _contained on {resource_type} under patient/ scopes: a trimmed resource it brings could hide the patient it belongs to"
            ),
        ))
    }

    /// Whether a patient/ scope of the token reads a type never in the Patient compartment.
    fn reads_outside_compartment(&self) -> bool {
        self.candidates.iter().any(|candidate| {
            candidate.patient.is_some()
                && candidate.scope.permissions.contains(Permission::Read)
                && match &candidate.scope.resource {
                    ResourceSelector::All => true,
                    ResourceSelector::Type(resource_type) => self
                        .version()
                        .patient_compartment_params(resource_type)
                        .is_none(),
                }
        })
    }

    /// Whether the request asks for trimmed resources: `_elements`, or a `_summary` other
    /// than `count` (no resources) and `false` (whole ones). A `POST` search whose body was
    /// not read may ask for them there: only its answer is checked (the faces refuse to
    /// decide it), and that check cannot tell a trimmed resource's patient.
    fn trims_answers(&self) -> bool {
        self.request.has_unread_search_body()
            || self.request.params.iter().any(|param| {
                let name = param.name.split(':').next().unwrap_or_default();
                name == "_elements"
                    || (name == "_summary" && !matches!(param.value.as_str(), "count" | "false"))
            })
    }

    /// Denies a search that names another patient: a compartment search on another Patient,
    /// a reference parameter that can target Patient with another patient's id, or a
    /// parameter that reads other resources where no compartment confines the answer
    /// ([`Self::check_reach`]).
    pub(super) fn check_search_names_only(
        &self,
        patient: &str,
        resource_type: &str,
    ) -> Result<(), Refusal> {
        self.check_reach(patient, resource_type)?;
        let request = self.request;
        if let Some(compartment) = &request.compartment
            && compartment.compartment_type == "Patient"
            && compartment.id != patient
        {
            return Err(Refusal::new(
                Reason::OutsideCompartment,
                format!(
                    "search in the compartment of {compartment}, but the patient in context is Patient/{patient}"
                ),
            ));
        }
        for param in &request.params {
            if let Some(other) =
                self.other_patient_named(param.name.as_str(), &param.value, patient, resource_type)
            {
                let named = if other.contains('/') {
                    other.to_owned()
                } else {
                    format!("Patient/{other}")
                };
                let message = if parse_reference(other).is_none() && other.contains('/') {
                    format!(
                        "search parameter {}={} holds {named}, which is no reference this service can read: it could name another patient",
                        param.name, param.value
                    )
                } else {
                    format!(
                        "search parameter {}={} names another patient ({named})",
                        param.name, param.value
                    )
                };
                return Err(Refusal::new(Reason::OutsideCompartment, message));
            }
        }
        Ok(())
    }

    /// The id of a patient other than `patient` that the search parameter names, if any, or
    /// the whole reference of a Patient on another server (its base URLs known), or a value
    /// with a `/` that is no readable reference. A bare id on a parameter that can target
    /// Patient counts as a Patient id (fail closed).
    pub(super) fn other_patient_named<'v>(
        &self,
        name: &str,
        value: &'v str,
        patient: &str,
        resource_type: &str,
    ) -> Option<&'v str> {
        let (base, modifier) = match name.split_once(':') {
            Some((base, modifier)) => (base, Some(modifier)),
            None => (name, None),
        };
        if base.contains('.') {
            return None;
        }
        // A server may read type modifiers without case (HAPI: `:patient` is Patient).
        let type_modifier_ok =
            modifier.is_none_or(|modifier| modifier.eq_ignore_ascii_case("Patient"));
        // Whether a bare id in this parameter is a Patient id; a literal `Patient/<id>`
        // always names a patient.
        let mut defined = true;
        let bare_ids_are_patients = if resource_type == "Patient" && base == "_id" {
            true
        } else if let Some(definition) = self.version().search_param(resource_type, base) {
            // `:missing`, `:identifier`, `:text`, `:not` or another target type: the value
            // is no Patient id; the compartment constraint still applies.
            if !definition.targets_type("Patient") || !type_modifier_ok {
                return None;
            }
            true
        } else if resource_type == SYSTEM_LEVEL {
            // A system-level search spans types: `patient` takes bare Patient ids, and so
            // does any parameter typed `:Patient` (`subject:Patient=456`).
            if !type_modifier_ok {
                return None;
            }
            base == "patient" || modifier.is_some()
        } else {
            // A parameter the version does not define (a server's own SearchParameter):
            // what its values are is unknown, but a reference to a Patient names one.
            defined = false;
            false
        };
        value.split(',').find_map(|alternative| {
            let named = if alternative.contains('/') {
                match parse_reference(alternative) {
                    // Another server's Patient is never the patient in context.
                    Some(("Patient", _))
                        if self.locality().knows_bases()
                            && self.locality().resolve(alternative).is_none() =>
                    {
                        return Some(alternative);
                    }
                    Some(("Patient", id)) => id,
                    Some(_) => return None,
                    // `patient/456`, `Patient/456/`, ` Patient/456`: a server may read
                    // another patient where this service reads nothing; refuse, never guess.
                    None if defined => return Some(alternative),
                    // A URL, a path: an undefined parameter may take any text.
                    None => return None,
                }
            } else if bare_ids_are_patients {
                alternative
            } else {
                return None;
            };
            (!named.is_empty() && named != patient).then_some(named)
        })
    }
}

/// The reference search parameters of `resource_type` that can point to a Patient.
fn patient_reference_params(version: FhirVersion, resource_type: &str) -> Vec<String> {
    patient_references(version, resource_type)
        .map(|param| param.code.to_owned())
        .collect()
}

/// Whether `resource_type` has a search parameter that can point to a Patient.
pub(super) fn points_to_patients(version: FhirVersion, resource_type: &str) -> bool {
    patient_references(version, resource_type).next().is_some()
}

fn patient_references(
    version: FhirVersion,
    resource_type: &str,
) -> impl Iterator<Item = &'static SearchParamDef> {
    version
        .tables()
        .own_search_params(resource_type)
        .iter()
        .filter(|param| param.targets_type("Patient"))
}

/// The parameters linking `resource_type` to the Patient compartment, for the server's
/// filter; a Patient links by its own id.
fn compartment_params(resource_type: &str, params: &[&str]) -> Vec<String> {
    let own_id = (resource_type == "Patient").then_some("_id");
    own_id
        .into_iter()
        .chain(params.iter().copied())
        .map(str::to_owned)
        .collect()
}

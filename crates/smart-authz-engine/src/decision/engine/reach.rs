//! Search parameters that select through resources other than the searched one, under
//! patient/ scopes (docs/semantics.md §3 "patient/", "Parameters that reach other resources").
//!
//! The compartment constraint limits what a search returns, not what its parameters read.
//! On a type in the Patient compartment that is enough: whatever a parameter reads, only the
//! patient's own resources come back. On a type outside it (Medication, Location,
//! Practitioner, ...), or a search of every type, nothing limits the answer, and a
//! parameter that reads other resources turns the search into a question about them:
//! `Medication?_has:MedicationRequest:medication:patient=456` lists another patient's
//! medications, and no resource in the answer points to that patient, so the check of the
//! answer cannot catch it either. Those parameters are refused there; a reverse chain on a
//! compartment type is read, and refused when it names another patient, as a plain
//! parameter would be.

use super::compartment::{SYSTEM_LEVEL, points_to_patients};
use super::{Refusal, Session};
use crate::decision::Reason;

/// The most references a chain may follow (`a.b.c` follows two) under patient/ scopes. Each
/// link is looked up in every type the one before may point to, so a longer chain is work
/// that grows with its length and its targets; real searches chain two or three.
const MAX_CHAINED_REFERENCES: usize = 6;

impl Session<'_> {
    /// Refuses `_filter` (never read here), and on a search whose answer the compartment
    /// does not confine: a reverse chain (`_has`), `_list`, `_in` and `_query`, and a chain that can
    /// reach a patient's records at any step ([`Self::chain_reaches_patients`]). On a
    /// confined search, a reverse chain whose last parameter names another patient is
    /// refused as that parameter would be.
    pub(super) fn check_reach(&self, patient: &str, resource_type: &str) -> Result<(), Refusal> {
        let confined = resource_type != SYSTEM_LEVEL
            && self
                .version()
                .patient_compartment_params(resource_type)
                .is_some();
        for param in &self.request.params {
            let name = param.name.as_str();
            if name.matches('.').count() > MAX_CHAINED_REFERENCES {
                return Err(Refusal::new(
                    Reason::UnsupportedRequest,
                    format!(
                        "search parameter {name} chains more than {MAX_CHAINED_REFERENCES} references, which patient/ scopes do not follow"
                    ),
                ));
            }
            let base = name.split([':', '.']).next().unwrap_or_default();
            match base {
                "_filter" => {
                    return Err(Refusal::new(
                        Reason::UnsupportedRequest,
                        "_filter is refused under patient/ scopes: this service does not read its expressions, which can name another patient",
                    ));
                }
                "_has" if !confined => return Err(unconfined(name, resource_type)),
                "_has" => self.check_reverse_chain(name, &param.value, patient)?,
                // `_in` (R5) asks for membership in a List, Group or CareTeam, as `_list` does.
                // `_query` runs a named query the server defines in the search's place (R4
                // search.html#query), which may select by anything.
                "_list" | "_in" | "_query" if !confined => {
                    return Err(unconfined(name, resource_type));
                }
                // No parameter every type shares is a reference: a chain on a search of every
                // type begins with some types' own parameter, which a server may resolve on each.
                _ if !confined
                    && name.contains('.')
                    && (resource_type == SYSTEM_LEVEL
                        || self.chain_reaches_patients(resource_type, name)) =>
                {
                    return Err(unconfined(name, resource_type));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `_has:T:link:param=value` (nested `_has:` allowed before `param`): `param` is a
    /// parameter of `T`, and a value naming another patient there is refused.
    fn check_reverse_chain(&self, name: &str, value: &str, patient: &str) -> Result<(), Refusal> {
        let Some((resource_type, inner)) = reverse_chain_end(name) else {
            return Err(Refusal::new(
                Reason::UnsupportedRequest,
                format!(
                    "search parameter {name} is no reverse chain this service can read (_has:Type:reference:parameter)"
                ),
            ));
        };
        if !self.version().is_resource_type(resource_type) {
            return Err(Refusal::new(
                Reason::UnsupportedRequest,
                format!("unknown resource type {resource_type} in search parameter {name}"),
            ));
        }
        match self.other_patient_named(inner, value, patient, resource_type) {
            Some(other) => Err(Refusal::new(
                Reason::OutsideCompartment,
                format!("search parameter {name}={value} names another patient ({other})"),
            )),
            None => Ok(()),
        }
    }

    /// Whether the chain `chain` (`subject.name`, `source:Device.patient.name`) on
    /// `resource_type` can read a patient's records: through a type in the Patient
    /// compartment (Patient included), or a type outside it that can point to a Patient (R4
    /// Device, Task), at any step. A link the version does not define (a server's own
    /// SearchParameter) may reach anything, patients included (fail closed).
    fn chain_reaches_patients(&self, resource_type: &str, chain: &str) -> bool {
        // A reverse chain at its end (`practitioner._has:Observation:performer:patient=`)
        // reads other resources, as one on its own would (R4 search.html#has).
        if chain.contains("_has:") {
            return true;
        }
        let version = self.version();
        let Some((link, rest)) = chain.split_once('.') else {
            return false;
        };
        let (link, only) = match link.split_once(':') {
            Some((link, target)) => (link, Some(target)),
            None => (link, None),
        };
        let Some(definition) = version.search_param(resource_type, link) else {
            return true;
        };
        // A type modifier that names none of the link's targets as written may still be
        // followed: HAPI reads `:schedule` as Schedule (type names without case), and a link
        // to `Any` takes whichever type is named. Fail closed.
        if only.is_some_and(|only| !definition.targets.contains(&only)) {
            return true;
        }
        definition
            .targets
            .iter()
            .filter(|target| only.is_none_or(|only| only == **target))
            .any(|target| {
                matches!(*target, "Any" | "Resource")
                    || version.patient_compartment_params(target).is_some()
                    || points_to_patients(version, target)
                    || self.chain_reaches_patients(target, rest)
            })
    }
}

/// The refusal of a parameter that reads other resources on a search no compartment confines.
fn unconfined(name: &str, resource_type: &str) -> Refusal {
    let searched = if resource_type == SYSTEM_LEVEL {
        "a search of every type".to_owned()
    } else {
        format!("{resource_type}, which is outside the Patient compartment")
    };
    Refusal::new(
        Reason::UnsupportedRequest,
        format!(
            "search parameter {name} is refused on {searched} under patient/ scopes: it selects by resources of other patients, which no constraint on the answer can confine"
        ),
    )
}

/// The resource type and parameter a reverse chain ends in: `Observation` and `code` for
/// `_has:Observation:patient:code`, `AuditEvent` and `agent` for
/// `_has:Observation:patient:_has:AuditEvent:entity:agent`.
fn reverse_chain_end(name: &str) -> Option<(&str, &str)> {
    let mut rest = name;
    let mut end = None;
    while let Some(after) = rest.strip_prefix("_has:") {
        let (resource_type, after) = after.split_once(':')?;
        let (link, after) = after.split_once(':')?;
        if resource_type.is_empty() || link.is_empty() {
            return None;
        }
        end = Some(resource_type);
        rest = after;
    }
    let resource_type = end?;
    (!rest.is_empty() && !rest.starts_with("_has")).then_some((resource_type, rest))
}

#[cfg(test)]
mod tests {
    use super::reverse_chain_end;

    #[test]
    fn a_reverse_chain_is_read_to_its_last_parameter() {
        assert_eq!(
            reverse_chain_end("_has:Observation:patient:code"),
            Some(("Observation", "code"))
        );
        assert_eq!(
            reverse_chain_end("_has:Observation:patient:_has:AuditEvent:entity:agent"),
            Some(("AuditEvent", "agent"))
        );
        assert_eq!(
            reverse_chain_end("_has:Observation:patient:code:text"),
            Some(("Observation", "code:text"))
        );
        for unreadable in [
            "_has",
            "_has:Observation",
            "_has:Observation:patient",
            "_has:Observation:patient:",
            "_has::patient:code",
            "_has:Observation::code",
            "_has:Observation:patient:_has",
            "code",
        ] {
            assert_eq!(reverse_chain_end(unreadable), None, "{unreadable}");
        }
    }
}

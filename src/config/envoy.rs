//! The `[envoy]` configuration: where the FHIR API lives in the proxied paths, which paths
//! are public, and whether searches are narrowed to the compartment.

use serde::{Deserialize, Serialize};

use crate::fhir::FhirVersion;

/// How the ext_authz face reads proxied requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvoyConfig {
    /// FHIR bases as path prefixes, e.g. `/fhir/R4/`, when no `[[fhir_servers]]` are
    /// configured (each server has its `envoy_prefixes` then); default `/`. The longest
    /// matching prefix wins; a request under none of them is denied.
    pub bases: Vec<FhirBase>,
    /// Paths relative to a base that pass without a token, besides `metadata` and
    /// `.well-known/smart-configuration` (which always do).
    pub public_paths: Vec<String>,
    /// Set the compartment's own search parameter (`patient=123`, or `_id=123` on Patient)
    /// on allowed type searches whose every grant carries that compartment.
    pub narrow_searches: bool,
    /// The FHIR server checks an allowed write against the constraints it is sent
    /// (`x-smart-constraints`: the compartment, the other patients it may not name), on the
    /// stored version and the new one. Without it, a write the service could not judge whole
    /// (an update, patch or delete, whose stored version Envoy never has; a create whose body
    /// was not forwarded) is denied: the server would carry it out unchecked, and the answer
    /// comes too late to undo it.
    pub server_checks_writes: bool,
}

/// One FHIR base behind the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirBase {
    /// The path prefix, starting and ending with `/`.
    pub prefix: String,
    /// The FHIR version served there; the service's `fhir_version` when absent.
    #[serde(default)]
    pub fhir_version: Option<FhirVersion>,
}

impl EnvoyConfig {
    /// Checks the prefixes; the message names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (index, base) in self.bases.iter().enumerate() {
            if !base.prefix.starts_with('/') || !base.prefix.ends_with('/') {
                return Err((
                    format!("envoy.bases[{index}].prefix"),
                    format!("{:?} must start and end with '/'", base.prefix),
                ));
            }
            // Two bases with one prefix: which one's FHIR version a request gets would
            // depend on their order.
            if self.bases[..index]
                .iter()
                .any(|earlier| earlier.prefix == base.prefix)
            {
                return Err((
                    format!("envoy.bases[{index}].prefix"),
                    format!("{:?} is given twice", base.prefix),
                ));
            }
        }
        check_public_paths(&self.public_paths, "envoy.public_paths")
    }
}

/// Public paths (`[envoy]`'s or a server's, under `key`) must each name a path under the
/// base; the message names the key.
pub(super) fn check_public_paths(paths: &[String], key: &str) -> Result<(), (String, String)> {
    for (index, path) in paths.iter().enumerate() {
        let refused = if path.trim_matches('/').is_empty() {
            "must name a path under the base (an empty path would make every system search public)"
        } else if path.contains(['?', '#', '*']) || path.contains(char::is_whitespace) {
            // Matched as literal text against the request's path alone: such an entry would
            // never match, and what it was meant to open would stay closed unannounced.
            "must be a literal path (no query, fragment, wildcard or space): a request's path is compared with it as written"
        } else {
            continue;
        };
        return Err((format!("{key}[{index}]"), refused.to_owned()));
    }
    Ok(())
}

impl FhirBase {
    /// The whole path space: `/`.
    pub fn root() -> Self {
        FhirBase {
            prefix: "/".to_owned(),
            fhir_version: None,
        }
    }

    /// `path` relative to this base, when it is under it: `/fhir/R4` and `/fhir/R4?...` are
    /// the base itself.
    pub fn relative_path<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(&self.prefix).or_else(|| {
            let bare = self.prefix.trim_end_matches('/');
            let rest = path.strip_prefix(bare)?;
            (rest.is_empty() || rest.starts_with('?')).then_some(rest)
        })
    }
}

#[cfg(test)]
mod tests;

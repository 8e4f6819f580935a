//! The `[tls]` section (TLS and mutual TLS on the gRPC listener) and the `[[callers]]`
//! entries (which client certificate may ask for which FHIR server).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, FhirServerConfig, invalid};

/// `[tls]` as written in the file; absent means plaintext.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain of the listener, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s) that sign client certificates: turns mutual TLS on.
    pub client_ca_file: Option<PathBuf>,
    /// How often the three files are read again; a changed file is served to new
    /// connections (default 10; Kubernetes updates mounted Secrets within about a minute).
    pub reload_secs: u64,
}

/// A validated `[tls]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub reload_interval: Duration,
}

/// One `[[callers]]` entry as written: a client certificate identity and what it may ask.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallerFile {
    /// A subject alternative name of the client certificate: a URI such as the SPIFFE ID
    /// `spiffe://cluster.local/ns/fhir/sa/fhir-a`, or a DNS name.
    pub identity: String,
    /// The `[[fhir_servers]]` names it may ask for; `["*"]` for all.
    pub fhir_servers: Vec<String>,
    /// Whether it may call `IntrospectToken` (default false).
    pub introspect: bool,
}

/// A validated caller binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerConfig {
    pub identity: String,
    /// `None`: every server.
    pub fhir_servers: Option<Vec<String>>,
    pub introspect: bool,
}

const DEFAULT_RELOAD_SECS: u64 = 10;

pub(super) fn validate_tls(file: TlsFile) -> Result<Option<TlsConfig>, ConfigError> {
    let (cert_file, key_file) = match (file.cert_file, file.key_file) {
        (None, None) => {
            if file.client_ca_file.is_some() {
                return Err(invalid(
                    "tls.client_ca_file",
                    "mutual TLS needs the listener's own cert_file and key_file",
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(invalid("tls.key_file", "missing (cert_file is set)")),
        (None, Some(_)) => return Err(invalid("tls.cert_file", "missing (key_file is set)")),
        (Some(cert), Some(key)) => (cert, key),
    };
    Ok(Some(TlsConfig {
        cert_file,
        key_file,
        client_ca_file: file.client_ca_file,
        reload_interval: Duration::from_secs(if file.reload_secs == 0 {
            DEFAULT_RELOAD_SECS
        } else {
            file.reload_secs
        }),
    }))
}

pub(super) fn validate_callers(
    files: Vec<CallerFile>,
    tls: Option<&TlsConfig>,
    servers: &[FhirServerConfig],
) -> Result<Vec<CallerConfig>, ConfigError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    if tls.is_none_or(|tls| tls.client_ca_file.is_none()) {
        return Err(invalid(
            "callers",
            "callers are known by their client certificates: set tls.client_ca_file",
        ));
    }
    let mut callers: Vec<CallerConfig> = Vec::with_capacity(files.len());
    for (index, file) in files.into_iter().enumerate() {
        if file.identity.is_empty() {
            return Err(invalid(format!("callers[{index}].identity"), "missing"));
        }
        if callers
            .iter()
            .any(|caller| caller.identity == file.identity)
        {
            return Err(invalid(
                format!("callers[{index}].identity"),
                format!("{:?} is listed twice", file.identity),
            ));
        }
        if file.fhir_servers.is_empty() {
            return Err(invalid(
                format!("callers[{index}].fhir_servers"),
                "list the FHIR servers it may ask for, or [\"*\"] for all",
            ));
        }
        let fhir_servers = if file.fhir_servers.iter().any(|name| name == "*") {
            None
        } else {
            for (position, name) in file.fhir_servers.iter().enumerate() {
                if !servers.iter().any(|server| &server.name == name) {
                    return Err(invalid(
                        format!("callers[{index}].fhir_servers[{position}]"),
                        format!("{name:?} is not the name of any FHIR server"),
                    ));
                }
            }
            Some(file.fhir_servers)
        };
        callers.push(CallerConfig {
            identity: file.identity,
            fhir_servers,
            introspect: file.introspect,
        });
    }
    Ok(callers)
}

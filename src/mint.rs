//! `smart-authz token`: mints access tokens signed with the development issuer's key
//! (`examples/dev/`), so the first run needs no authorization server. The key is public:
//! such tokens are only accepted by the development configuration.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::{Config, DEVELOPMENT_JWKS, DEVELOPMENT_PRIVATE_KEY};
use crate::explain::LaunchArgs;

/// The arguments of `token`.
#[derive(Clone, Debug, clap::Args)]
pub struct MintArgs {
    /// Granted scopes, space-separated, e.g. "patient/*.rs openid".
    #[arg(long)]
    pub scope: String,
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// The OAuth client id.
    #[arg(long, default_value = "dev-client")]
    pub client_id: String,
    /// Subject (`sub`).
    #[arg(long, default_value = "dev-user")]
    pub sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub expires_in: u64,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("signing: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// A signed JWT for the development issuer and its first audience.
pub fn mint(args: &MintArgs) -> Result<String, MintError> {
    let development = Config::from_development()?;
    let issuer = &development.issuers[0];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer.issuer));
    claims.insert("aud".into(), json!(issuer.audiences[0]));
    claims.insert("sub".into(), json!(args.sub));
    claims.insert("client_id".into(), json!(args.client_id));
    claims.insert("scope".into(), json!(args.scope));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + args.expires_in));
    claims.insert("jti".into(), json!(token_id(now, args)));
    let optional = [
        ("patient", &args.launch.patient),
        ("fhirUser", &args.launch.fhir_user),
        ("encounter", &args.launch.encounter),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            claims.insert(name.into(), json!(value));
        }
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = development_kid();
    let key = EncodingKey::from_rsa_pem(DEVELOPMENT_PRIVATE_KEY.as_bytes())?;
    Ok(encode(&header, &Value::Object(claims), &key)?)
}

fn development_kid() -> Option<String> {
    let jwks: Value = serde_json::from_str(DEVELOPMENT_JWKS).ok()?;
    jwks["keys"][0]["kid"].as_str().map(str::to_owned)
}

/// A unique-enough `jti` for development tokens.
fn token_id(now: u64, args: &MintArgs) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{now}.{nanos}.{}.{}", args.scope, args.sub));
    digest
        .iter()
        .take(12)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

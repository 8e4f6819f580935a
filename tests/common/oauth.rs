//! Real OAuth 2.0 servers from npm, run by the tests on 127.0.0.1 (see `tests/node/`):
//!
//! - [`OidcProvider`]: panva's `oidc-provider` — client_credentials tokens, opaque (no
//!   resource indicator) or RFC 9068 JWT (resource `https://fhir.test/r4`), RFC 7662
//!   introspection, RFC 7009 revocation and OIDC discovery.
//! - [`MockServer`]: `oauth2-mock-server` — JWTs with arbitrary claims and expiry, signed
//!   ES256 or RS256, with a JWKS. Its `/introspect` says `active: true` for anything: never
//!   use it.
//!
//! Both need Node.js (`node`, or the `NODE` environment variable) and the packages in
//! `tests/node/node_modules`, installed on first use by [`ensure_node_modules`].
//! Node's stderr is captured ([`OidcProvider::logs`]); set `OAUTH_HARNESS_VERBOSE=1` to
//! echo it to the test's stderr as well.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// The resource indicator (and JWT audience) of the FHIR server.
pub const FHIR_RESOURCE: &str = super::AUDIENCE;

/// The client that obtains tokens (client_credentials, HTTP Basic).
pub const APP_CLIENT_ID: &str = "app";
pub const APP_CLIENT_SECRET: &str = "app-secret";
/// A resource server authenticating to introspection with HTTP Basic.
pub const RS_BASIC_CLIENT_ID: &str = "rs-basic";
/// A resource server authenticating to introspection with form credentials.
pub const RS_POST_CLIENT_ID: &str = "rs-post";
/// The secret of both resource servers.
pub const RS_CLIENT_SECRET: &str = "rs-secret";

/// How long a server may take to print its ready line. oidc-provider loads in a second or
/// two alone, but a suite starts one per test in parallel on a 2-core machine, where 20 s
/// was seen to run out, and once a start stalled past 90 s; a stalled start is retried once
/// ([`NodeServer::spawn`]), and a server that never starts still fails the test.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for another test process's `npm ci`.
const NPM_LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// At most this much of a server's stderr is kept.
const LOG_LIMIT: usize = 64 * 1024;

/// `tests/node` in this crate.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("node")
}

fn node_modules_complete(dir: &Path) -> bool {
    let modules = dir.join("node_modules");
    // npm writes `.package-lock.json` last.
    modules.join(".package-lock.json").is_file()
        && modules.join("oidc-provider").join("package.json").is_file()
        && modules
            .join("oauth2-mock-server")
            .join("package.json")
            .is_file()
}

/// Installs `tests/node/node_modules` with `npm ci` when missing: once per process, and
/// under a lock file (`tests/node/.npm-ci.lock`) shared with concurrent test binaries.
/// Panics when npm fails.
pub fn ensure_node_modules() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = node_dir();
        if node_modules_complete(&dir) {
            return;
        }
        let _lock = LockFile::acquire(&dir.join(".npm-ci.lock"));
        if node_modules_complete(&dir) {
            return; // another process installed them while we waited
        }
        let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_owned());
        let output = Command::new(&npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{npm} ci` in {}: {error} (the OAuth tests need Node.js and npm)",
                    dir.display()
                )
            });
        assert!(
            output.status.success() && node_modules_complete(&dir),
            "`{npm} ci` in {} failed ({}):\n{}\n{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// An exclusive lock: a file created with `create_new`, removed on drop. A lock older than
/// the wait timeout is stale (its owner died) and is taken over.
struct LockFile(PathBuf);

impl LockFile {
    fn acquire(path: &Path) -> LockFile {
        let started = Instant::now();
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let _ = writeln!(file, "{}", std::process::id());
                    return LockFile(path.to_owned());
                }
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(path)
                        .and_then(|meta| meta.modified())
                        .ok()
                        .and_then(|modified| SystemTime::now().duration_since(modified).ok());
                    if age.is_some_and(|age| age > NPM_LOCK_TIMEOUT) {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    assert!(
                        started.elapsed() < NPM_LOCK_TIMEOUT,
                        "timed out waiting for {} (remove it if no npm is running)",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => panic!("cannot create {}: {error}", path.display()),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A Node.js server process: killed (and reaped) on drop. It also exits by itself when
/// this process dies, since it watches its stdin pipe (`--exit-on-stdin-close`).
pub struct NodeServer {
    child: Child,
    _stdin: Option<ChildStdin>,
    logs: Arc<Mutex<String>>,
    /// The ready line the server printed.
    pub ready: Value,
}

impl NodeServer {
    /// Runs `node tests/node/<script> --port <port>` and waits for its ready line. A server
    /// that prints none in time is killed and started once more: on a loaded CI machine a
    /// rare start has stalled past the timeout while its retry took a second.
    pub async fn spawn(script: &str, port: u16) -> Result<NodeServer, String> {
        match NodeServer::spawn_once(script, port).await {
            Err(first) if first.contains("no ready line") => {
                eprintln!("{first}\nstarting it once more");
                NodeServer::spawn_once(script, port).await
            }
            outcome => outcome,
        }
    }

    async fn spawn_once(script: &str, port: u16) -> Result<NodeServer, String> {
        ensure_node_modules();
        let dir = node_dir();
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
        let mut child = Command::new(&node)
            .arg(dir.join(script))
            .args(["--port", &port.to_string(), "--exit-on-stdin-close"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                format!("cannot run `{node}` (the OAuth tests need Node.js): {error}")
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(String::new()));

        let verbose = std::env::var_os("OAUTH_HARNESS_VERBOSE").is_some();
        let sink = logs.clone();
        let name = script.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if verbose {
                    eprintln!("[{name}] {line}");
                }
                append_log(&sink, &line);
            }
        });

        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Value>();
        let sink = logs.clone();
        // Reads until EOF, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                match serde_json::from_str::<Value>(line.trim()) {
                    Ok(value) if value.get("issuer").is_some() && ready_tx.is_some() => {
                        let _ = ready_tx.take().unwrap().send(value);
                    }
                    _ => append_log(&sink, &format!("(stdout) {}", line.trim_end())),
                }
            }
        });

        let mut server = NodeServer {
            child,
            _stdin: stdin,
            logs,
            ready: Value::Null,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(ready)) => {
                server.ready = ready;
                Ok(server)
            }
            outcome => {
                server.kill();
                // Let the stderr thread collect the last words.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let why = match outcome {
                    Err(_) => format!("no ready line within {READY_TIMEOUT:?}"),
                    _ => "it exited before printing its ready line".to_owned(),
                };
                Err(format!(
                    "node {script} --port {port}: {why}; its stderr:\n{}",
                    server.logs()
                ))
            }
        }
    }

    /// What the server wrote to stderr so far (its last 64 KiB).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Kills the process and waits for it to exit (its port is free afterwards).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn string(&self, key: &str) -> String {
        self.ready[key]
            .as_str()
            .unwrap_or_else(|| panic!("ready line without {key}: {}", self.ready))
            .to_owned()
    }

    fn port(&self) -> u16 {
        self.ready["port"]
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .unwrap_or_else(|| panic!("ready line without port: {}", self.ready))
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn append_log(logs: &Mutex<String>, line: &str) {
    let mut logs = logs.lock().unwrap();
    logs.push_str(line);
    logs.push('\n');
    if logs.len() > LOG_LIMIT {
        let mut cut = logs.len() - LOG_LIMIT;
        while !logs.is_char_boundary(cut) {
            cut += 1;
        }
        logs.drain(..cut);
    }
}

/// Characters escaped in `application/x-www-form-urlencoded` values: all but
/// `A-Za-z0-9*-._`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// An `application/x-www-form-urlencoded` body (reqwest's `form` feature is not enabled).
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                utf8_percent_encode(name, FORM),
                utf8_percent_encode(value, FORM)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A loopback HTTP client: no proxy, short timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// POSTs a form, returning the status and the JSON body (`Null` when not JSON).
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    basic: Option<(&str, &str)>,
    pairs: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form(pairs));
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The payload of a JWT, decoded without any verification.
pub fn jwt_payload(token: &str) -> Value {
    jwt_part(token, 1)
}

/// The protected header of a JWT, decoded without any verification.
pub fn jwt_header(token: &str) -> Value {
    jwt_part(token, 0)
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|error| panic!("JWT part {index} is not base64url: {error}"));
    serde_json::from_slice(&bytes).expect("a JSON JWT part")
}

/// `oidc-provider` on 127.0.0.1 (`tests/node/oidc-provider-server.mjs`).
///
/// Endpoints: `/token`, `/token/introspection`, `/token/revocation`, `/jwks`,
/// `/.well-known/openid-configuration`, and `GET /__stats` (request counters).
/// Introspection of a JWT access token is refused by oidc-provider (400
/// `unsupported_token_type`): only opaque tokens are introspectable.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`
    pub issuer: String,
    pub port: u16,
    http: reqwest::Client,
    process: Option<NodeServer>,
}

impl OidcProvider {
    /// Starts the provider on an ephemeral port.
    pub async fn start() -> OidcProvider {
        OidcProvider::start_on(0).await
    }

    /// Starts the provider on `port` (0: ephemeral); panics when it cannot.
    pub async fn start_on(port: u16) -> OidcProvider {
        OidcProvider::try_start_on(port)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts the provider on `port` (0: ephemeral).
    pub async fn try_start_on(port: u16) -> Result<OidcProvider, String> {
        let process = NodeServer::spawn("oidc-provider-server.mjs", port).await?;
        Ok(OidcProvider {
            issuer: process.string("issuer"),
            port: process.port(),
            http: http_client(),
            process: Some(process),
        })
    }

    /// Kills the provider (its state — tokens, counters — is lost).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts a fresh provider on the same port (after [`OidcProvider::stop`], or killing
    /// the running one first). Tokens issued before are unknown to the new one.
    pub async fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        // The port was just released; retry briefly in case something races for it.
        for _ in 0..20 {
            match NodeServer::spawn("oidc-provider-server.mjs", self.port).await {
                Ok(process) => {
                    self.process = Some(process);
                    return;
                }
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot restart the provider on port {}: {last}", self.port);
    }

    /// Whether the provider process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(NodeServer::is_running)
    }

    /// The provider's stderr so far.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(NodeServer::logs)
            .unwrap_or_default()
    }

    /// `127.0.0.1:<port>`, e.g. the target of a [`super::proxy::TcpProxy`].
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The OIDC discovery document.
    pub async fn discovery(&self) -> Value {
        self.get_json(&self.discovery_url()).await
    }

    /// The JWKS.
    pub async fn jwks(&self) -> Value {
        self.get_json(&self.jwks_uri()).await
    }

    async fn get_json(&self, url: &str) -> Value {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response.json().await.expect("a JSON document")
    }

    /// A raw token request as `app` (HTTP Basic): `grant_type=client_credentials` is
    /// added unless `params` has a `grant_type`. Returns the status and the JSON body.
    pub async fn token_request(&self, params: &[(&str, &str)]) -> (u16, Value) {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if !params.iter().any(|(name, _)| *name == "grant_type") {
            pairs.push(("grant_type", "client_credentials"));
        }
        pairs.extend_from_slice(params);
        post_form(
            &self.http,
            &self.token_endpoint(),
            Some((APP_CLIENT_ID, APP_CLIENT_SECRET)),
            &pairs,
        )
        .await
    }

    /// An access token from `params` (see [`OidcProvider::token_request`]); panics unless
    /// the request succeeds.
    pub async fn token_with(&self, params: &[(&str, &str)]) -> String {
        let (status, body) = self.token_request(params).await;
        assert_eq!(status, 200, "token request {params:?}: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_owned()
    }

    /// An OPAQUE access token (no resource indicator) with `scope`, and a `patient` claim
    /// when given. Valid for 600 s.
    pub async fn opaque_token(&self, scope: &str, patient: Option<&str>) -> String {
        let mut params = vec![("scope", scope)];
        if let Some(patient) = patient {
            params.push(("patient", patient));
        }
        self.token_with(&params).await
    }

    /// An RFC 9068 JWT access token (resource indicator [`FHIR_RESOURCE`], so `aud` is it),
    /// signed RS256 with a key of [`OidcProvider::jwks_uri`], with `scope` and a `patient`
    /// claim when given.
    pub async fn jwt_token(&self, scope: &str, patient: Option<&str>) -> String {
        let mut params = vec![("scope", scope), ("resource", FHIR_RESOURCE)];
        if let Some(patient) = patient {
            params.push(("patient", patient));
        }
        self.token_with(&params).await
    }

    /// Revokes an opaque token (as `app`, its owner); panics unless the provider says 200.
    pub async fn revoke(&self, token: &str) {
        let (status, body) = post_form(
            &self.http,
            &self.revocation_endpoint(),
            Some((APP_CLIENT_ID, APP_CLIENT_SECRET)),
            &[("token", token)],
        )
        .await;
        assert_eq!(status, 200, "revocation: {body}");
    }

    /// Introspects `token` as `client_id`/`secret`, with HTTP Basic (`basic`) or form
    /// credentials. Returns the status and the JSON body.
    pub async fn introspect_as(
        &self,
        client_id: &str,
        secret: &str,
        basic: bool,
        token: &str,
    ) -> (u16, Value) {
        if basic {
            post_form(
                &self.http,
                &self.introspection_endpoint(),
                Some((client_id, secret)),
                &[("token", token)],
            )
            .await
        } else {
            post_form(
                &self.http,
                &self.introspection_endpoint(),
                None,
                &[
                    ("token", token),
                    ("client_id", client_id),
                    ("client_secret", secret),
                ],
            )
            .await
        }
    }

    /// The introspection response for `token` as `rs-basic`; panics unless 200.
    pub async fn introspect(&self, token: &str) -> Value {
        let (status, body) = self
            .introspect_as(RS_BASIC_CLIENT_ID, RS_CLIENT_SECRET, true, token)
            .await;
        assert_eq!(status, 200, "introspection: {body}");
        body
    }

    /// The counters of `GET /__stats`.
    pub async fn stats(&self) -> Value {
        self.get_json(&format!("{}/__stats", self.issuer)).await
    }

    /// How many POSTs reached the introspection endpoint since the provider (re)started.
    pub async fn introspection_count(&self) -> u64 {
        self.stats().await["introspections"]
            .as_u64()
            .expect("an introspection count")
    }
}

/// `oauth2-mock-server` on 127.0.0.1 (`tests/node/mock-server.mjs`): mints JWTs with any
/// claims and expiry, signed ES256 (default) or RS256; both keys are in its JWKS.
pub struct MockServer {
    /// `http://127.0.0.1:<port>`
    pub issuer: String,
    pub port: u16,
    pub jwks_uri: String,
    /// The `kid` of the ES256 key.
    pub es256_kid: String,
    /// The `kid` of the RS256 key.
    pub rs256_kid: String,
    http: reqwest::Client,
    process: Option<NodeServer>,
}

impl MockServer {
    /// Starts the mock server on an ephemeral port.
    pub async fn start() -> MockServer {
        MockServer::start_on(0).await
    }

    /// Starts the mock server on `port` (0: ephemeral). Keys are new on every start.
    pub async fn start_on(port: u16) -> MockServer {
        let process = NodeServer::spawn("mock-server.mjs", port)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        MockServer {
            issuer: process.string("issuer"),
            port: process.port(),
            jwks_uri: process.string("jwks_uri"),
            es256_kid: process.ready["kids"]["ES256"]
                .as_str()
                .expect("ES256 kid")
                .to_owned(),
            rs256_kid: process.ready["kids"]["RS256"]
                .as_str()
                .expect("RS256 kid")
                .to_owned(),
            http: http_client(),
            process: Some(process),
        }
    }

    /// Kills the mock server.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// An ES256 JWT: `iss` (the mock's issuer), `iat`, `nbf` (iat - 10),
    /// `exp = iat + expires_in` (negative: already expired), then `claims` merged in (they
    /// win; a `null` claim is removed, e.g. `{"nbf": null}`).
    pub async fn token(&self, claims: Value, expires_in: i64) -> String {
        self.token_with_alg("ES256", claims, expires_in).await
    }

    /// Like [`MockServer::token`], signed with `alg` (`ES256` or `RS256`).
    pub async fn token_with_alg(&self, alg: &str, claims: Value, expires_in: i64) -> String {
        assert!(claims.is_object(), "claims must be a JSON object");
        let claims = claims.to_string();
        let expires_in = expires_in.to_string();
        let (status, body) = post_form(
            &self.http,
            &self.token_endpoint(),
            None,
            &[
                ("grant_type", "client_credentials"),
                ("alg", alg),
                ("expires_in", &expires_in),
                ("claims", &claims),
            ],
        )
        .await;
        assert_eq!(status, 200, "mock token request: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_owned()
    }

    /// The mock server's JWKS (the ES256 and RS256 public keys).
    pub async fn jwks(&self) -> Value {
        let response = self
            .http
            .get(&self.jwks_uri)
            .send()
            .await
            .expect("the mock JWKS");
        response.json().await.expect("a JSON JWKS")
    }

    /// The mock server's stderr so far.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(NodeServer::logs)
            .unwrap_or_default()
    }
}

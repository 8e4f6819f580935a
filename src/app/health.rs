//! The service's health as probes and load balancers see it (`grpc.health.v1`):
//! - `liveness`: SERVING from the start until the process exits (startup and liveness
//!   probes: a pod is restarted only when it stops answering at all);
//! - `""` and each API service: NOT_SERVING until every issuer's keys and discovered
//!   endpoints have loaded once (a new pod takes no traffic before it can judge tokens), then
//!   SERVING; NOT_SERVING again from the shutdown signal on, so endpoints and load balancers
//!   stop sending new calls before the drain.
//!
//! After the first load an issuer outage does not flip readiness: the keys and endpoints are
//! kept, and marking every replica unready at once would turn one issuer's outage into an
//! outage for all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::envoy::{EnvoyAuthz, EnvoyProcessor};
use crate::grpc::AuthzGrpc;
use crate::grpc::pb::authz_service_server::AuthzServiceServer;
use crate::token::Authenticator;

/// The service name of the liveness status.
pub const LIVENESS: &str = "liveness";

/// How often readiness is looked at until it is reached.
const READINESS_POLL: Duration = Duration::from_millis(200);
/// How long before a pod still not ready says which issuers it waits for.
const PENDING_WARNING: Duration = Duration::from_secs(5);

/// The names whose status is readiness.
fn readiness_names() -> [&'static str; 4] {
    [
        "",
        <AuthzServiceServer<AuthzGrpc> as NamedService>::NAME,
        <AuthorizationServer<EnvoyAuthz> as NamedService>::NAME,
        <ExternalProcessorServer<EnvoyProcessor> as NamedService>::NAME,
    ]
}

/// The health statuses of one process.
pub struct Health {
    reporter: HealthReporter,
    /// The task that flips readiness once the issuers are loaded.
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl Health {
    /// Live, not ready.
    pub async fn starting(reporter: HealthReporter) -> Arc<Self> {
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        set_readiness(&reporter, ServingStatus::NotServing).await;
        Arc::new(Health {
            reporter,
            watcher: Mutex::new(None),
        })
    }

    /// Becomes ready now if every issuer is loaded, else as soon as they are.
    pub async fn ready_when_loaded(self: &Arc<Self>, authenticator: Arc<Authenticator>) {
        if authenticator.pending_issuers().is_empty() {
            set_readiness(&self.reporter, ServingStatus::Serving).await;
            return;
        }
        let reporter = self.reporter.clone();
        let watcher = tokio::spawn(async move {
            let started = Instant::now();
            let mut warned = false;
            loop {
                tokio::time::sleep(READINESS_POLL).await;
                let pending = authenticator.pending_issuers();
                if pending.is_empty() {
                    tracing::info!("every issuer's keys are loaded: ready");
                    set_readiness(&reporter, ServingStatus::Serving).await;
                    return;
                }
                if !warned && started.elapsed() >= PENDING_WARNING {
                    warned = true;
                    tracing::warn!(
                        ?pending,
                        "not ready: waiting for these issuers' keys or discovery"
                    );
                }
            }
        });
        *self.watcher.lock().await = Some(watcher);
    }

    /// Not ready from now on, for good: the shutdown has begun.
    pub async fn shutting_down(&self) {
        if let Some(watcher) = self.watcher.lock().await.take() {
            watcher.abort();
            let _ = watcher.await;
        }
        set_readiness(&self.reporter, ServingStatus::NotServing).await;
    }
}

async fn set_readiness(reporter: &HealthReporter, status: ServingStatus) {
    for name in readiness_names() {
        reporter.set_service_status(name, status).await;
    }
}

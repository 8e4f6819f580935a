//! Wiring: builds the shared state from a [`Config`] and serves every gRPC service on one
//! listener until `shutdown` resolves, then drains in-flight calls.

use std::future::Future;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::config::Config;
use crate::decision::Engine;
use crate::envoy::EnvoyAuthz;
use crate::grpc::AuthzGrpc;
use crate::grpc::pb::FILE_DESCRIPTOR_SET;
use crate::grpc::pb::authz_service_server::AuthzServiceServer;
use crate::token::{Authenticator, KeySetupError};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Keys(#[from] KeySetupError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `AuthzService`, Envoy's `Authorization` (ext_authz), gRPC health and reflection
/// on `listener` until `shutdown`.
///
/// Tests bind `127.0.0.1:0` themselves and pass the listener, so they know the port.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AppError> {
    let authenticator =
        Authenticator::new(&config.issuers, &config.cache, config.policy.fhir_version).await?;
    let envoy = EnvoyAuthz::new(config.envoy.clone(), &config.policy, authenticator.clone());
    let authz = AuthzGrpc::new(Engine::new(config.policy.clone()), authenticator);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthzServiceServer<AuthzGrpc>>()
        .await;
    health_reporter
        .set_serving::<AuthorizationServer<EnvoyAuthz>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let authz = AuthzServiceServer::new(authz).max_decoding_message_size(config.max_request_bytes);

    tracing::info!(
        listen = %listener.local_addr().map(|address| address.to_string()).unwrap_or_default(),
        fhir_version = %config.policy.fhir_version,
        issuers = config.issuers.len(),
        "smart-authz serving"
    );
    if config.development {
        tracing::warn!(
            "running on the built-in DEVELOPMENT configuration: its signing key is public; never expose this server"
        );
    }
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(authz)
        .add_service(
            AuthorizationServer::new(envoy).max_decoding_message_size(config.max_request_bytes),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight calls");
        })
        .await?;
    Ok(())
}

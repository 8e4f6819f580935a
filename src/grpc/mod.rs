//! The gRPC face: `smartauthz.v1.AuthzService` (proto/smartauthz/v1/authz.proto).
//!
//! This layer only translates: protobuf messages become domain types (never reaching the
//! engine as such), the token goes to the [`Authenticator`](crate::token::Authenticator), the
//! request to the [`Engine`](crate::decision::Engine), and the answer back to protobuf.

mod answer;
mod convert;
mod redact;
mod service;
pub mod wire;

pub use service::AuthzGrpc;

/// The generated protobuf types and service stubs.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("smartauthz.v1");

    /// The encoded file descriptor set, for gRPC reflection and the walk that weighs the
    /// API's requests (`wire`).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/smartauthz_v1_descriptor.bin"));

    /// Envoy's ext_authz v3 and ext_proc v3 services and their imports, compiled by
    /// `build.rs` from `proto/third_party/` (the code comes from `envoy-types`), for
    /// reflection and the walk that weighs their requests (`wire`).
    pub const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));
}

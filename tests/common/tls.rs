//! Certificates made in the test (rcgen): a CA, the server's certificate for 127.0.0.1, and
//! client certificates with the identities (SANs) mutual TLS binds; and TLS clients.

use std::net::SocketAddr;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority whose certificates go into a temporary directory.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub dir: TempDir,
}

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pem {
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki {
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A TLS client trusting this CA and offering HTTP/2 alone, as a gRPC client does.
    pub fn h2_connector(&self) -> tokio_rustls::TlsConnector {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::aws_lc_rs};

        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem().as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }

    /// The server's certificate, for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> Pem {
        self.leaf(
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            Vec::new(),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose SANs are the URI `uri` and the DNS name `dns`.
    pub fn client(&self, uri: &str, dns: &str) -> Pem {
        let extra = vec![SanType::URI(uri.try_into().unwrap())];
        self.leaf(
            vec![dns.to_owned()],
            extra,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn leaf(&self, names: Vec<String>, extra: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Pem {
        let mut params = CertificateParams::new(names).unwrap();
        params.subject_alt_names.extend(extra);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes `contents` to `name` in the directory (atomically, as Kubernetes swaps a
    /// mounted Secret) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let staged = self.dir.path().join(format!(".{name}.new"));
        std::fs::write(&staged, contents).unwrap();
        std::fs::rename(&staged, &path).unwrap();
        path
    }

    /// Writes the server's certificate and key (and the client CA when given) and returns
    /// the `[tls]` section serving them.
    pub fn tls_toml(&self, server: &Pem, client_ca: Option<&str>) -> String {
        let cert = self.write("server.pem", &server.cert);
        let key = self.write("server.key", &server.key);
        let mut toml = format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\nreload_secs = 1\n",
            cert.display().to_string(),
            key.display().to_string()
        );
        if let Some(ca) = client_ca {
            let path = self.write("client-ca.pem", ca);
            toml.push_str(&format!(
                "client_ca_file = {:?}\n",
                path.display().to_string()
            ));
        }
        toml
    }
}

/// A TLS channel to `address` that trusts `ca_pem`, presenting `identity` when given.
pub async fn connect(
    address: SocketAddr,
    ca_pem: &str,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

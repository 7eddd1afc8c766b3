//! Certificates made at test time: a private CA, a server certificate for 127.0.0.1 signed by
//! it, a client certificate for mutual TLS, and a second, unrelated CA whose certificates
//! nobody trusts. Written as PEM files, the way an operator mounts them from a Secret.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;

use kit::TempDir;

/// One certificate and its key, in DER (for the receiver) and as PEM files (for rodent).
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

pub struct Pki {
    /// Holds the files; removed with the `Pki`.
    _dir: TempDir,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    ca_der: CertificateDer<'static>,
    /// A CA that signed nothing the receiver presents.
    pub other_ca: PathBuf,
    pub server: Leaf,
    pub client: Leaf,
    /// A client certificate from the other CA: the receiver refuses it.
    pub stranger: Leaf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("a key pair is generated");
    CertifiedIssuer::self_signed(params, key).expect("the CA signs itself")
}

impl Pki {
    pub fn new() -> Self {
        let dir = TempDir::new("pki");
        let ca_issuer = ca("rodent test CA");
        let other_issuer = ca("someone else's CA");
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("the temp dir is writable");
            path
        };
        let leaf = |name: &str, issuer: &CertifiedIssuer<'static, KeyPair>, server: bool| {
            let names = if server {
                vec!["127.0.0.1".to_string(), "localhost".to_string()]
            } else {
                Vec::new()
            };
            let mut params = CertificateParams::new(names).expect("valid names");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![if server {
                ExtendedKeyUsagePurpose::ServerAuth
            } else {
                ExtendedKeyUsagePurpose::ClientAuth
            }];
            let key = KeyPair::generate().expect("a key pair is generated");
            let cert = params
                .signed_by(&key, issuer)
                .expect("the CA signs the certificate");
            Leaf {
                cert: write(&format!("{name}.pem"), &cert.pem()),
                key: write(&format!("{name}.key"), &key.serialize_pem()),
                der: cert.der().clone(),
                key_der: key.serialize_der(),
            }
        };
        let server = leaf("server", &ca_issuer, true);
        let client = leaf("client", &ca_issuer, false);
        let stranger = leaf("stranger", &other_issuer, false);
        Self {
            ca: write("ca.pem", &ca_issuer.pem()),
            ca_der: ca_issuer.der().clone(),
            other_ca: write("other-ca.pem", &other_issuer.pem()),
            server,
            client,
            stranger,
            _dir: dir,
        }
    }

    fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.server.key_der.clone()).into()
    }

    /// The receiver's TLS: the server certificate, no client certificate asked for.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.server.der.clone()], self.server_key())
            .expect("the server certificate matches its key")
    }

    /// The receiver's TLS for mutual TLS: a client certificate signed by the CA is required.
    pub fn mtls_server_config(&self) -> ServerConfig {
        let provider = Arc::new(ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("the CA is a valid trust anchor");
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .expect("the client verifier builds");
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server.der.clone()], self.server_key())
            .expect("the server certificate matches its key")
    }
}

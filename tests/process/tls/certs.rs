//! Certificates made at test time, as cert-manager would issue them: a private CA and server
//! certificates for 127.0.0.1 signed by it, each with a name of its own (so a client can tell
//! which one it was served) and a `notAfter` of its own; and clients of several kinds that
//! trust the CA: reqwest on rustls, a bare rustls handshake, curl, openssl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The CA every test certificate is signed by.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, as PEM.
#[derive(Clone)]
pub struct Issued {
    /// The common name: which certificate this is.
    pub name: String,
    pub cert: String,
    pub key: String,
    pub der: Vec<u8>,
    /// `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "rodent test CA");
        let key = KeyPair::generate().expect("a key pair is generated");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("the CA signs itself"),
        }
    }

    /// A certificate for 127.0.0.1 named `name`, valid until 1 January of `until` (UTC).
    pub fn issue(&self, name: &str, until: i32) -> Issued {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("valid names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let key = KeyPair::generate().expect("a key pair is generated");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the CA signs the certificate");
        let leap = |y: i32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days: i64 = (1970..until).map(|y| if leap(y) { 366 } else { 365 }).sum();
        Issued {
            name: name.to_string(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
            not_after: days * 86_400,
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A rustls client that trusts this CA alone and offers `alpn`.
    pub fn client_config(&self, alpn: &[&str]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.issuer.der().to_vec()))
            .expect("the CA is a valid trust anchor");
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config
    }

    /// reqwest on rustls, trusting this CA, offering `alpn` (`h2` and `http/1.1` lets the
    /// server choose).
    pub fn reqwest(&self, builder: reqwest::ClientBuilder, alpn: &[&str]) -> reqwest::Client {
        builder
            .tls_backend_preconfigured(self.client_config(alpn))
            .build()
            .expect("the client builds")
    }

    /// Shakes hands on a new connection to `port` and returns the certificate served, and the
    /// protocol chosen by ALPN.
    pub async fn served(&self, port: u16, alpn: &[&str]) -> (Vec<u8>, Option<String>) {
        let connector = TlsConnector::from(Arc::new(self.client_config(alpn)));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("the port accepts");
        let name = ServerName::try_from("127.0.0.1").expect("an IP address is a name");
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("the handshake succeeds");
        let (_, session) = tls.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("a certificate was served")
            .to_vec();
        let protocol = session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        (leaf, protocol)
    }
}

/// Writes `issued` as `tls.crt` and `tls.key` in `dir`, in place; returns their paths.
pub fn write(dir: &Path, issued: &Issued) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &issued.cert).expect("the certificate is written");
    std::fs::write(&key, &issued.key).expect("the key is written");
    (cert, key)
}

/// Replaces one file with `mv`, as an operator rotating by hand does: the new content is written
/// beside it, then moved over it.
pub fn mv(path: &Path, contents: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, contents).expect("the new file is written");
    let status = Command::new("mv")
        .arg(&new)
        .arg(path)
        .status()
        .expect("mv runs");
    assert!(status.success(), "mv {} {}", new.display(), path.display());
}

/// The subject line of the certificate `openssl s_client` is served on `port`.
pub fn openssl_subject(ca: &Path, port: u16) -> String {
    let output = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_return_error",
            "-brief",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let printed = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "openssl s_client failed:\n{printed}"
    );
    printed
        .lines()
        .find(|l| l.starts_with("Peer certificate:"))
        .unwrap_or_else(|| panic!("no peer certificate in:\n{printed}"))
        .to_string()
}

//! The image serving HTTPS, with the certificate and key mounted read-only as a Secret would
//! be: its HEALTHCHECK (`rodent probe ready`, unchanged) turns healthy over HTTPS, a client that
//! trusts the CA is served, and replacing the mounted files rotates the certificate for new
//! connections without a restart.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use super::*;

/// A CA, and a server certificate for 127.0.0.1 named `name` signed by it: (cert, key) PEM.
fn issue(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("valid names");
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key pair is generated");
    let cert = params.signed_by(&key, ca).expect("the CA signs");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn the_healthcheck_works_over_https_and_a_replaced_certificate_is_served() {
    require!(engine());
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "rodent test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let dir = kit::TempDir::new("container-tls");
    let secret = dir.join("secret");
    std::fs::create_dir(&secret).unwrap();
    let write = |(cert, key): (String, String)| {
        // Written beside, then renamed over: a file the service reads is never half written.
        for (name, contents) in [("tls.crt", cert), ("tls.key", key)] {
            let new = secret.join(format!(".{name}"));
            std::fs::write(&new, contents).unwrap();
            std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .unwrap();
            std::fs::rename(&new, secret.join(name)).unwrap();
        }
    };
    write(issue(&ca, "rodent-one"));
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let volume = format!("{}:/tls:ro", secret.display());
    let container = Container::run(
        &[
            "--volume",
            &volume,
            "--env",
            "RODENT_TLS_CERT=/tls/tls.crt",
            "--env",
            "RODENT_TLS_KEY=/tls/tls.key",
        ],
        &[],
    )
    .await;
    let port = docker_ok(&["port", &container.name, "8080/tcp"]).await;
    let address = port.lines().next().expect("a published port").to_string();

    let healthy = holds_within(HEALTHY_WITHIN, async || {
        container.inspect("{{.State.Health.Status}}").await == "healthy"
    })
    .await;
    assert!(
        healthy,
        "health status is {:?} after {HEALTHY_WITHIN:?}; logs:\n{}",
        container.inspect("{{json .State.Health}}").await,
        container.logs().await
    );

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("the CA is a trust anchor");
    let tls = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let served = async || -> Option<String> {
        let client = kit::client_builder()
            .tls_backend_preconfigured(tls.clone())
            .tls_info(true)
            .build()
            .ok()?;
        let response = client
            .get(format!("https://{address}/readyz"))
            .send()
            .await
            .ok()?;
        let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
        let leaf = info.peer_certificate()?.to_vec();
        Some(if leaf.windows(10).any(|w| w == b"rodent-one") {
            "rodent-one".to_string()
        } else if leaf.windows(10).any(|w| w == b"rodent-two") {
            "rodent-two".to_string()
        } else {
            "another".to_string()
        })
    };
    assert_eq!(served().await.as_deref(), Some("rodent-one"));

    write(issue(&ca, "rodent-two"));
    let rotated = holds_within(Duration::from_secs(10), async || {
        served().await.as_deref() == Some("rodent-two")
    })
    .await;
    assert!(rotated, "logs:\n{}", container.logs().await);
    assert!(container.running().await);
}

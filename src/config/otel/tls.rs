//! TLS to the collector: the PEM files the `OTEL_EXPORTER_OTLP_*CERTIFICATE` and `*CLIENT_KEY`
//! variables name, read and checked with the rest of the configuration (a file that cannot be
//! used is a configuration error naming its variable), and the rustls client configuration
//! made from them.
//!
//! rustls runs on ring: 2.2 MB smaller than aws-lc-rs and without its C library to build (see
//! BENCHMARKS.md). The public roots are built in (webpki-roots), since the image has no CA
//! bundle to read. The files are read once: a rotated certificate applies at the next start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::read::Reader;
use crate::config::error::ConfigError;

/// A PEM file's contents, as read when the configuration was validated.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Pem {
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

/// Never the contents: a private key is a secret.
impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Pem").field(&self.path).finish()
    }
}

/// How rodent authenticates the collector, and itself to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tls {
    /// The certificates trusted to sign the collector's (`…CERTIFICATE`): they replace the
    /// built-in public roots, as the specification's "trusted certificate" does elsewhere.
    pub ca: Option<Pem>,
    /// The certificate chain and key presented for mutual TLS (`…CLIENT_CERTIFICATE`,
    /// `…CLIENT_KEY`).
    pub client: Option<(Pem, Pem)>,
}

impl Tls {
    /// What the log says about it.
    pub(crate) fn describe(&self) -> &'static str {
        match (&self.ca, &self.client) {
            (None, None) => "public roots",
            (None, Some(_)) => "public roots, client certificate",
            (Some(_), None) => "private CA",
            (Some(_), Some(_)) => "private CA, client certificate",
        }
    }

    /// The rustls configuration for an `https://` collector.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let roots = match &self.ca {
            Some(ca) => trusted(&ca.contents)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots);
        match &self.client {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates(&cert.contents)?, private_key(&key.contents)?)
                .map_err(|e| format!("the private key of that certificate ({e})")),
        }
    }
}

impl Reader<'_> {
    /// A PEM file named by `OTEL_EXPORTER_OTLP_TRACES_<NAME>` or, failing that,
    /// `OTEL_EXPORTER_OTLP_<NAME>`, with the variable it came from. Both are read and checked.
    fn signal_file(
        &mut self,
        name: &str,
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Option<(String, Pem)> {
        let mut found = None;
        for variable in [
            format!("OTEL_EXPORTER_OTLP_{name}"),
            format!("OTEL_EXPORTER_OTLP_TRACES_{name}"),
        ] {
            let pem = self.parse(&variable, None, |raw| {
                let pem = read(raw)?;
                check(&pem.contents)?;
                Ok(Some(pem))
            });
            if let Some(pem) = pem {
                found = Some((variable, pem));
            }
        }
        found
    }

    /// The TLS files. Each is checked on its own, then the client certificate and key
    /// together: both or neither, and the one the other's.
    pub(super) fn tls(&mut self) -> Tls {
        let ca = self.signal_file("CERTIFICATE", |pem| trusted(pem).map(drop));
        let cert = self.signal_file("CLIENT_CERTIFICATE", |pem| certificates(pem).map(drop));
        let key = self.signal_file("CLIENT_KEY", |pem| private_key(pem).map(drop));
        let client = match (cert, key) {
            (Some((_, cert)), Some((key_variable, key))) => {
                let pair = Tls {
                    ca: None,
                    client: Some((cert, key)),
                };
                match pair.client_config() {
                    Ok(_) => pair.client,
                    Err(expected) => {
                        let path = pair.client.as_ref().map(|(_, key)| key.path.clone());
                        let raw = path.unwrap_or_default().display().to_string();
                        self.errors
                            .push(ConfigError::invalid(&key_variable, &raw, expected));
                        None
                    }
                }
            }
            (Some((variable, _)), None) => {
                let missing = variable.replace("CLIENT_CERTIFICATE", "CLIENT_KEY");
                self.errors.push(ConfigError::invalid(
                    &missing,
                    "",
                    format!("the private key of the certificate {variable} names"),
                ));
                None
            }
            (None, Some((variable, _))) => {
                let missing = variable.replace("CLIENT_KEY", "CLIENT_CERTIFICATE");
                self.errors.push(ConfigError::invalid(
                    &missing,
                    "",
                    format!("the certificate whose private key {variable} names"),
                ));
                None
            }
            (None, None) => None,
        };
        Tls {
            ca: ca.map(|(_, pem)| pem),
            client,
        }
    }
}

/// Reads the file at `path`.
pub(super) fn read(path: &str) -> Result<Pem, String> {
    let contents = std::fs::read(Path::new(path))
        .map_err(|e| format!("a readable PEM file (cannot read it: {e})"))?;
    Ok(Pem {
        path: PathBuf::from(path),
        contents,
    })
}

/// The CA certificates in a PEM file, as trust anchors.
pub(super) fn trusted(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("a PEM file of CA certificates (one cannot be trusted: {e})"))?;
    }
    Ok(roots)
}

/// The certificates in a PEM file: at least one, every one well-formed.
pub(super) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a PEM file of certificates ({e})"))?;
    if certs.is_empty() {
        return Err("a PEM file of certificates (it holds no CERTIFICATE block)".into());
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1). The parser's own message is not
/// passed on: it may quote the file.
pub(super) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "a PEM file holding a private key (it holds none)".to_string()
        }
        _ => "a PEM file holding a private key (it is not valid PEM)".to_string(),
    })
}

//! [`Pair`]: a certificate chain and its private key, read from the PEM files
//! `RODENT_TLS_CERT` and `RODENT_TLS_KEY` (through the bounded reader of `files`) and checked
//! to belong together.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::InconsistentKeys;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::expiry;
use crate::config::Config;

/// A rotation writes the certificate and the key one after the other, and a read between the two
/// writes finds a pair that does not belong together (or a file half written): it is read again
/// after each of these waits before the pair counts as refused.
pub(crate) const RETRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// Where the pair is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Files {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Files {
    /// The pair the configuration names, when it names one (both or neither: the configuration
    /// checks it).
    pub(crate) fn of(config: &Config) -> Option<Self> {
        Some(Self {
            cert: config.tls_cert()?.to_path_buf(),
            key: config.tls_key()?.to_path_buf(),
        })
    }
}

/// A certificate chain and its key, checked to belong together.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub(crate) certified: Arc<CertifiedKey>,
    /// The certificate's `notAfter`, in seconds since the Unix epoch.
    pub(crate) expires: Option<i64>,
    /// The files as read, to tell a pair that changed from one read again.
    contents: (Vec<u8>, Vec<u8>),
}

/// Why a pair was refused: the variable whose file is at fault, and why, never any of the
/// file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={:?} cannot be used: {reason}", path.display().to_string())]
pub(crate) struct PairError {
    pub(crate) variable: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
}

impl Pair {
    /// Whether `other` was read from the very same contents.
    pub(crate) fn same_as(&self, other: &Pair) -> bool {
        self.contents == other.contents
    }

    /// Reads and checks the pair; blocks up to the reader's bound. At start and for the
    /// commands; the rotation reads with [`Pair::read_async`].
    pub(crate) fn read(files: &Files) -> Result<Self, PairError> {
        let cert = crate::files::read(&files.cert);
        let key = crate::files::read(&files.key);
        Self::build(files, cert, key)
    }

    /// [`Pair::read`], waiting without blocking a thread of the runtime.
    pub(crate) async fn read_async(files: &Files) -> Result<Self, PairError> {
        let (cert, key) = tokio::join!(
            crate::files::read_async(&files.cert),
            crate::files::read_async(&files.key)
        );
        Self::build(files, cert, key)
    }

    /// [`Pair::read`], read again after each of the [`RETRIES`] waits while it is refused.
    pub(crate) fn read_settled(files: &Files) -> Result<Self, PairError> {
        let mut read = Self::read(files);
        for wait in RETRIES {
            if read.is_ok() {
                break;
            }
            std::thread::sleep(wait);
            read = Self::read(files);
        }
        read
    }

    fn build(
        files: &Files,
        cert: Result<Vec<u8>, crate::files::ReadError>,
        key: Result<Vec<u8>, crate::files::ReadError>,
    ) -> Result<Self, PairError> {
        let cert_error = |reason: String| PairError {
            variable: "RODENT_TLS_CERT",
            path: files.cert.clone(),
            reason,
        };
        let key_error = |reason: String| PairError {
            variable: "RODENT_TLS_KEY",
            path: files.key.clone(),
            reason,
        };
        let cert = cert.map_err(|e| cert_error(e.to_string()))?;
        let key = key.map_err(|e| key_error(e.to_string()))?;
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(pem_problem(&e, "certificate")))?;
        if chain.is_empty() {
            return Err(cert_error(
                "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        let private = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| key_error(pem_problem(&e, "private key")))?;
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(private)
            .map_err(|e| key_error(format!("the key cannot be used: {e}")))?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            // A key whose public half cannot be compared; rustls serves it as well.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(key_error(
                    "it is not the key of the certificate in RODENT_TLS_CERT".into(),
                ));
            }
            Err(other) => {
                return Err(cert_error(format!(
                    "the certificate cannot be used: {other}"
                )));
            }
        }
        let expires = expiry::not_after(certified.cert[0].as_ref());
        Ok(Self {
            certified: Arc::new(certified),
            expires,
            contents: (cert, key),
        })
    }
}

/// What is wrong with a PEM file, without any of its text (a line of a key file is part of the
/// key).
fn pem_problem(error: &pem::Error, what: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("it holds no PEM {what}"),
        pem::Error::MissingSectionEnd { .. } => {
            format!("its PEM {what} is not complete (no END line)")
        }
        pem::Error::Base64Decode(_) => format!("its PEM {what} is not valid base64"),
        _ => format!("its PEM {what} cannot be read"),
    }
}

/// The crypto rodent serves TLS with: *ring*, as for the collector (see Cargo.toml).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

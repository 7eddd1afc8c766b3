//! HTTPS on the main port (`RODENT_TLS_CERT`, `RODENT_TLS_KEY`): HTTP/1.1 and HTTP/2 by ALPN,
//! real clients (reqwest and rustls, curl, openssl), the probes over HTTPS, a bad pair refused,
//! and the certificate rotated under keep-alive load without a request lost.

mod certs;
mod grpc;
mod rotation;
mod serving;

use std::path::Path;

use kit::{Rodent, rodent};

/// rodent serving HTTPS with the pair at `cert` and `key`.
fn serving(cert: &Path, key: &Path) -> kit::Spawn {
    rodent()
        .env("RODENT_TLS_CERT", cert.to_str().unwrap())
        .env("RODENT_TLS_KEY", key.to_str().unwrap())
}

fn https(rodent: &Rodent, path: &str) -> String {
    format!("https://{}{path}", rodent.addr())
}

//! HTTP as the tests speak it: a client that opens a connection per request, and requests
//! written by hand on a raw socket, for what a client library would hide.

use std::net::SocketAddr;

use serde_json::Value;

use crate::PATIENCE;

/// Where every reqwest client of the tests starts. reqwest speaks TLS through rustls on *ring*,
/// rodent's own crypto, with no provider of its own (no aws-lc to build). It starts from one
/// rustls configuration built once, trusting nothing: reqwest's own default reads the system's
/// certificate store for every client, which in a debug build takes longer than a test's drain
/// delay, and a test speaking HTTPS hands reqwest its own (`tls_backend_preconfigured`). The
/// provider is installed for the process too, so that a client built some other way does not
/// panic.
pub fn client_builder() -> reqwest::ClientBuilder {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    static PLAIN: std::sync::OnceLock<rustls::ClientConfig> = std::sync::OnceLock::new();
    let plain = PLAIN.get_or_init(|| {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    });
    reqwest::Client::builder().tls_backend_preconfigured(plain.clone())
}

/// A fresh HTTP client that keeps no idle connections, so every request opens its own.
pub fn client() -> reqwest::Client {
    client_builder()
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE)
        .build()
        .expect("the client builds")
}

/// An HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// Connects with a read timeout, for tests that talk HTTP by hand.
pub fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("rodent accepts the connection");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads one response with a `Content-Length` body (every response rodent itself writes has
/// one), leaving the connection ready for the next.
pub fn read_response(stream: &mut std::net::TcpStream) -> std::io::Result<RawResponse> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed after {} bytes of head", head.len()),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().expect("a numeric content-length"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Sends a GET on an open connection and reads the answer.
pub fn get_on(stream: &mut std::net::TcpStream, path: &str) -> std::io::Result<RawResponse> {
    use std::io::Write;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: rodent\r\n\r\n")?;
    read_response(stream)
}

/// Reads until the peer closes; `Ok` when it closed cleanly (FIN), `Err` on a reset.
pub fn read_to_close(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok(rest)
}

/// A port that was free a moment ago, for a program that must be given its port up front (a
/// load balancer, a replacement bound to the port of the instance it replaces).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("the OS picks a free port")
        .port()
}

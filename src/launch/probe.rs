//! The client side of the probes: `rodent probe [live|ready|grpc]`, the health check of an image
//! that has no shell and no curl. `live` and `ready` are plain blocking HTTP/1.1 over std, so the
//! command starts no runtime; over TLS (rustls' blocking stream) where the service serves HTTPS,
//! trusting the certificate it serves (see `tls::pinned`). `grpc` calls
//! `grpc.health.v1.Health/Check` with tonic's client, on a runtime of one thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::config::Config;

/// Which probe to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    Live,
    Ready,
}

impl Probe {
    pub(super) fn path(self) -> &'static str {
        match self {
            Self::Live => "/healthz",
            Self::Ready => "/readyz",
        }
    }
}

/// Where the service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    /// HTTPS, trusting this certificate (`None`: the public roots); plain HTTP when unset.
    pub(super) tls: Option<Option<PathBuf>>,
}

impl Target {
    /// The service this configuration describes, reached over loopback when it listens on every
    /// address: on its management port when it has one, where the probes are.
    pub(super) fn from_config(config: &Config) -> Self {
        let host = match config.host {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        };
        // The management port speaks plain HTTP, whatever the main port speaks.
        let tls = match config.management_port {
            Some(_) => None,
            None => config.tls_cert().map(|cert| Some(cert.to_path_buf())),
        };
        Self {
            host: host.to_string(),
            port: config.management_port.unwrap_or(config.port),
            tls,
        }
    }

    /// Parses `http://host[:port]` or `https://host[:port]` (port 80 or 443 when absent; IPv6
    /// hosts in brackets). HTTPS trusts `trusted` (`RODENT_TLS_CERT`), or the public roots.
    pub(super) fn parse(url: &str, trusted: Option<PathBuf>) -> Result<Self, String> {
        let bad = || format!("{url:?} is not a URL of the form http[s]://host[:port]");
        let (rest, default_port, tls) = match url.strip_prefix("https://") {
            Some(rest) => (rest, 443, Some(trusted)),
            None => (url.strip_prefix("http://").ok_or_else(bad)?, 80, None),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), port.parse().map_err(|_| bad())?),
                None => (authority.to_string(), default_port),
            }
        };
        Ok(Self { host, port, tls })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Calls the probe and returns the status code it answered.
pub(super) fn check(target: &Target, probe: Probe, timeout: Duration) -> Result<u16, String> {
    let authority = target.authority();
    let addresses = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?;
    let mut last_error = format!("{} resolves to no address", target.host);
    let tls = match &target.tls {
        Some(trusted) => Some(crate::tls::pinned::client(trusted.as_deref(), b"http/1.1")?),
        None => None,
    };
    for address in addresses {
        let stream = match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => stream,
            Err(e) => {
                last_error = format!("cannot connect to {address}: {e}");
                continue;
            }
        };
        let io = |e: std::io::Error| format!("probe of {authority}{} failed: {e}", probe.path());
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        return match &tls {
            None => request(stream, &authority, probe.path()),
            Some(client) => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("{}: {e}", target.host))?;
                let connection = rustls::ClientConnection::new(client.clone(), name)
                    .map_err(|e| format!("probe of {authority}: {e}"))?;
                request(
                    rustls::StreamOwned::new(connection, stream),
                    &authority,
                    probe.path(),
                )
            }
        };
    }
    Err(last_error)
}

fn request(mut stream: impl Read + Write, authority: &str, path: &str) -> Result<u16, String> {
    let io = |e: std::io::Error| format!("probe of {authority}{path} failed: {e}");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: rodent-probe\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut status_line = String::new();
    BufReader::new(stream)
        .read_line(&mut status_line)
        .map_err(io)?;
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!("{authority}{path} answered something that is not HTTP: {status_line:?}")
        })
}

/// Calls `grpc.health.v1.Health/Check` for `service` (empty: the whole server) and returns the
/// status it answered: `SERVING`, `NOT_SERVING`, or the gRPC error.
pub(super) fn check_grpc(
    target: &Target,
    service: &str,
    timeout: Duration,
) -> Result<String, String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let authority = target.authority();
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let address = format!("{scheme}://{authority}");
    // tonic is built without its TLS features: over HTTPS, the channel runs over a TLS stream
    // made here, with the same trust as the HTTP probes and HTTP/2 by ALPN.
    let tls = match &target.tls {
        Some(trusted) => {
            let config = crate::tls::pinned::client(trusted.as_deref(), b"h2")?;
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| format!("{} is not a host name", target.host))?;
            Some((tokio_rustls::TlsConnector::from(config), name))
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        // The scheme tonic sees is always `http`: TLS, when there is any, is the connector's.
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| format!("{address} is not a gRPC address: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let connected = match tls {
            None => endpoint.connect().await,
            Some((connector, name)) => {
                endpoint
                    .connect_with_connector(tower::service_fn(move |_: axum::http::Uri| {
                        let (connector, name, authority) =
                            (connector.clone(), name.clone(), authority.clone());
                        async move {
                            let tcp = tokio::net::TcpStream::connect(authority).await?;
                            let tls = connector.connect(name, tcp).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                        }
                    }))
                    .await
            }
        };
        let channel = connected.map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let request = HealthCheckRequest {
            service: service.to_string(),
        };
        let response = HealthClient::new(channel)
            .check(request)
            .await
            .map_err(|status| {
                format!(
                    "grpc.health.v1.Health/Check of {address} failed: {:?}: {}",
                    status.code(),
                    status.message()
                )
            })?;
        let status = ServingStatus::try_from(response.get_ref().status)
            .map_or("an unknown status", |status| status.as_str_name());
        Ok(status.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, String> {
        Target::parse(url, None)
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("http://rodent:8080").unwrap(),
            Target {
                host: "rodent".into(),
                port: 8080,
                tls: None,
            }
        );
        assert_eq!(parse("http://10.0.0.1").unwrap().port, 80);
        assert_eq!(
            parse("http://[::1]:9000/").unwrap(),
            Target {
                host: "::1".into(),
                port: 9000,
                tls: None,
            }
        );
        let cert = PathBuf::from("/tls/tls.crt");
        assert_eq!(
            Target::parse("https://rodent", Some(cert.clone())).unwrap(),
            Target {
                host: "rodent".into(),
                port: 443,
                tls: Some(Some(cert)),
            }
        );
        assert!(parse("rodent:8080").is_err());
        assert!(parse("http://host:port").is_err());
        assert_eq!(
            parse("http://[::1]:9000").unwrap().authority(),
            "[::1]:9000"
        );
    }
}

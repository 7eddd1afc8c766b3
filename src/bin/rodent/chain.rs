//! Chains of services, for tracing and mesh tests: `POST /echo` forwards its body to every
//! backend of `RODENT_BACKENDS` at once, and answers what each said.
//!
//! - The hop count travels in `x-rodent-hops`; a request that already went through
//!   [`MAX_HOPS`] forwards is refused with 508, so a list that points back at itself ends.
//! - The trace context (as `OTEL_PROPAGATORS` says) and `x-request-id` go along, each call in a
//!   client span of its own when traces are exported.
//! - Each call is bounded by what is left of the request's own deadline, less [`ANSWER_WITHIN`]
//!   to answer; a backend that fails, answers 5xx or does not answer in time gives a 502
//!   naming it.
//!
//! The client is hyper-util's, already in the binary (under the trace exporter), with the same
//! rustls on *ring* for `https://` backends: no second HTTP stack, no second TLS stack.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rodent::config::{Current, format_duration};
use rodent::http::{Deadline, Problem, Propagation};
use serde_json::{Value, json};
use tracing::Instrument;
use tracing::field::Empty;

use crate::settings::Settings;

/// The header that counts the forwards a request went through.
pub(crate) const HOPS: HeaderName = HeaderName::from_static("x-rodent-hops");
/// A request that already went through this many forwards is refused (508): a chain is at most
/// this many services deep, counting the first.
pub(crate) const MAX_HOPS: u32 = 10;
/// Kept from the request's deadline to answer, whatever the backends do.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_millis(50);
/// Idle connections to backends are kept this long for the next request.
const IDLE_CONNECTIONS_FOR: Duration = Duration::from_secs(30);

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What `POST /echo` needs to forward.
#[derive(Clone)]
pub(crate) struct Chain {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    settings: Current<Settings>,
    propagation: Propagation,
    user_agent: HeaderValue,
}

impl Chain {
    pub(crate) fn new(
        settings: Current<Settings>,
        propagation: Propagation,
        name: &str,
        version: &str,
    ) -> Self {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_CONNECTIONS_FOR)
            .build(connector);
        let user_agent = HeaderValue::try_from(format!("{name}/{version}"))
            .unwrap_or_else(|_| HeaderValue::from_static("rodent"));
        Self {
            client,
            settings,
            propagation,
            user_agent,
        }
    }

    /// The backends `POST /echo` forwards to now.
    pub(crate) fn backends(&self) -> Arc<[Uri]> {
        self.settings.get().backends.clone()
    }

    /// Forwards `body` to every backend at once and answers what each said, or a 502 naming
    /// the first that failed. `incoming` are the request's headers, `hops` the forwards it went
    /// through ([`hops`]).
    pub(crate) async fn forward(
        &self,
        backends: &[Uri],
        incoming: &HeaderMap,
        deadline: Deadline,
        body: Bytes,
        hops: u32,
    ) -> Response {
        // A backend's answer is kept up to the body limit, as a request's body is.
        let limit = self.settings.config().body_limit();
        let budget = deadline.remaining().saturating_sub(ANSWER_WITHIN);
        let calls = backends
            .iter()
            .map(|url| self.call(url, incoming, hops + 1, body.clone(), budget, limit));
        let answers = futures_util::future::join_all(calls).await;
        let failed = answers.iter().find_map(|answer| answer.failure.clone());
        let listed: Vec<Value> = answers.into_iter().map(|answer| answer.listed).collect();
        match failed {
            None => axum::Json(json!({ "backends": listed })).into_response(),
            Some((url, why)) => Problem::new(StatusCode::BAD_GATEWAY)
                .detail(format!("the backend {url} {why}"))
                .extension("backend", url)
                .extension("backends", listed)
                .into_response(),
        }
    }

    /// One backend's call, in a client span of its own.
    async fn call(
        &self,
        url: &Uri,
        incoming: &HeaderMap,
        hops: u32,
        body: Bytes,
        budget: Duration,
        limit: usize,
    ) -> Answer {
        let span = tracing::info_span!(
            "POST",
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = "POST",
            http.response.status_code = Empty,
            url.full = %url,
            server.address = url.host().unwrap_or_default(),
            server.port = url.port_u16(),
            error.type = Empty,
        );
        let request = span.in_scope(|| self.request(url, incoming, hops, body));
        let outcome = tokio::time::timeout(budget, self.send(request, limit))
            .instrument(span.clone())
            .await;
        let answer = match outcome {
            Ok(Ok((status, body))) => Answer::answered(url, status, body),
            Ok(Err(why)) => Answer::failed(url, why),
            Err(_) => Answer::failed(
                url,
                format!(
                    "did not answer within {}, what was left of this request's time",
                    format_duration(Duration::from_millis(budget.as_millis() as u64))
                ),
            ),
        };
        if let Some(status) = answer.status {
            span.record("http.response.status_code", status);
        }
        if let Some((_, why)) = &answer.failure {
            span.record("otel.status_code", "error");
            span.record(
                "error.type",
                answer
                    .status
                    .map_or("unanswered".to_string(), |s| s.to_string()),
            );
            tracing::warn!(parent: &span, backend = %url, reason = %why, "backend call failed");
        }
        answer
    }

    /// The request to `url`: the body, its content type, the next hop count, the request id
    /// and the trace context.
    fn request(
        &self,
        url: &Uri,
        incoming: &HeaderMap,
        hops: u32,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = url.clone();
        let headers = request.headers_mut();
        if let Some(content_type) = incoming.get(header::CONTENT_TYPE) {
            headers.insert(header::CONTENT_TYPE, content_type.clone());
        }
        if let Some(id) = incoming.get(X_REQUEST_ID) {
            headers.insert(X_REQUEST_ID, id.clone());
        }
        headers.insert(HOPS, HeaderValue::from(hops));
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        self.propagation.inject(incoming, headers);
        request
    }

    /// Sends `request` and reads the answer, at most `limit` bytes of it.
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(StatusCode, Answered), String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("could not be reached: {}", chain_of(&e)))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                format!(
                    "answered {}, but its body failed: {e}",
                    parts.status.as_u16()
                )
            })?
            .to_bytes();
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        Ok((parts.status, Answered { bytes, is_json }))
    }
}

/// What a backend answered.
struct Answered {
    bytes: Bytes,
    is_json: bool,
}

/// One backend's line in the answer, and why it failed, if it did.
struct Answer {
    listed: Value,
    status: Option<u16>,
    failure: Option<(String, String)>,
}

impl Answer {
    fn answered(url: &Uri, status: StatusCode, body: Answered) -> Self {
        let shown = if body.is_json {
            serde_json::from_slice(&body.bytes).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&body.bytes).into_owned())
            })
        } else {
            Value::String(String::from_utf8_lossy(&body.bytes).into_owned())
        };
        let code = status.as_u16();
        let failure = status
            .is_server_error()
            .then(|| (url.to_string(), format!("answered {code}")));
        Self {
            listed: json!({ "url": url.to_string(), "status": code, "body": shown }),
            status: Some(code),
            failure,
        }
    }

    fn failed(url: &Uri, why: String) -> Self {
        Self {
            listed: json!({ "url": url.to_string(), "status": null, "error": why }),
            status: None,
            failure: Some((url.to_string(), why)),
        }
    }
}

/// The forwards a request went through: 0 without the header. Refused past [`MAX_HOPS`] (508),
/// or when the header is not a number (400).
pub(crate) fn hops(headers: &HeaderMap) -> Result<u32, Problem> {
    let Some(value) = headers.get(HOPS) else {
        return Ok(0);
    };
    let hops = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST)
                .detail(format!("{HOPS} must be a whole number of hops"))
        })?;
    if hops >= MAX_HOPS {
        return Err(Problem::new(StatusCode::LOOP_DETECTED)
            .detail(format!(
                "this request already went through {hops} forwards ({HOPS}); at most {MAX_HOPS} \
                 are followed, so a chain that points back at itself ends"
            ))
            .extension("hops", hops));
    }
    Ok(hops)
}

/// An error with its causes, on one line: hyper-util's says only "client error (Connect)".
fn chain_of(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_counted_and_bounded() {
        let mut headers = HeaderMap::new();
        assert_eq!(hops(&headers).unwrap(), 0);
        headers.insert(HOPS, HeaderValue::from(MAX_HOPS - 1));
        assert_eq!(hops(&headers).unwrap(), MAX_HOPS - 1);
        headers.insert(HOPS, HeaderValue::from(MAX_HOPS));
        assert_eq!(
            hops(&headers).unwrap_err().status(),
            StatusCode::LOOP_DETECTED
        );
        headers.insert(HOPS, HeaderValue::from_static("many"));
        assert_eq!(
            hops(&headers).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}

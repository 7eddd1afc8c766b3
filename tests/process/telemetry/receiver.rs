//! A small OTLP receiver standing in for a collector: `POST /v1/traces` (http/protobuf) and the
//! gRPC `TraceService/Export`, on one port, in plain text or over TLS. It runs on its own thread
//! and runtime, so a test blocking on a log line or an exit code never stalls an export.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use kit::PATIENCE;

/// One span as the receiver got it, with what came around it.
#[derive(Clone, Debug)]
pub struct Received {
    pub span: Span,
    pub resource: HashMap<String, String>,
    /// The headers (or gRPC metadata) of the export request that carried it.
    pub headers: HashMap<String, String>,
}

impl Received {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An attribute rendered as text (strings as they are, numbers in decimal).
    pub fn attribute(&self, key: &str) -> Option<String> {
        attributes(&self.span.attributes).remove(key)
    }

    pub fn event_names(&self) -> Vec<&str> {
        self.span.events.iter().map(|e| e.name.as_str()).collect()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

#[derive(Default)]
struct Collected {
    spans: Mutex<Vec<Received>>,
    grew: Condvar,
    /// TLS handshakes that failed (a client that did not trust the server, or presented no
    /// certificate where one is required).
    handshakes_failed: AtomicUsize,
    /// TLS handshakes that completed with a client certificate.
    client_certificates: AtomicUsize,
}

impl Collected {
    fn push(&self, request: ExportTraceServiceRequest, headers: &HeaderMap) {
        let headers: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(Received {
                        span,
                        resource: resource.clone(),
                        headers: headers.clone(),
                    });
                }
            }
        }
        self.grew.notify_all();
    }
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    scheme: &'static str,
    collected: Arc<Collected>,
    stop: Option<oneshot::Sender<()>>,
}

impl Receiver {
    /// A plain-text receiver (`http://`).
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// A receiver behind TLS with `config` (`https://`): ALPN offers h2 and http/1.1, so gRPC
    /// and http/protobuf share the port as they do in plain text.
    pub fn start_tls(mut config: ServerConfig) -> Self {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::spawn(Some(TlsAcceptor::from(Arc::new(config))))
    }

    fn spawn(tls: Option<TlsAcceptor>) -> Self {
        let collected = Arc::new(Collected::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let state = collected.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the receiver's runtime starts");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("the receiver binds");
                bound
                    .send(listener.local_addr().unwrap())
                    .expect("the test waits for the address");
                let grpc =
                    tonic::service::Routes::new(TraceServiceServer::new(Grpc(state.clone())))
                        .into_axum_router();
                let app = Router::new()
                    .route("/v1/traces", post(http_export))
                    .with_state(state.clone())
                    .merge(grpc);
                match tls {
                    None => axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                        .expect("the receiver serves"),
                    Some(tls) => {
                        tokio::select! {
                            () = serve_tls(listener, tls, app, state) => {}
                            _ = stopped => {}
                        }
                    }
                }
            });
        });
        Self {
            addr: addr.recv().expect("the receiver reports its address"),
            scheme,
            collected,
            stop: Some(stop),
        }
    }

    /// The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT` (either protocol).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn handshakes_failed(&self) -> usize {
        self.collected.handshakes_failed.load(Ordering::Relaxed)
    }

    pub fn client_certificates(&self) -> usize {
        self.collected.client_certificates.load(Ordering::Relaxed)
    }

    pub fn spans(&self) -> Vec<Received> {
        self.collected.spans.lock().unwrap().clone()
    }

    /// Waits for a span matching `matches`, at most [`PATIENCE`].
    pub fn wait_for(&self, what: &str, matches: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + PATIENCE;
        let mut spans = self.collected.spans.lock().unwrap();
        loop {
            if let Some(found) = spans.iter().find(|s| matches(s)) {
                return found.clone();
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
                panic!("no span {what} within {PATIENCE:?}; received: {names:?}");
            };
            spans = self.collected.grew.wait_timeout(spans, left).unwrap().0;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Accepts TLS connections and serves `app` on each, HTTP/1.1 or h2 as ALPN chose.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: TlsAcceptor,
    app: Router,
    collected: Arc<Collected>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (tls, app, collected) = (tls.clone(), app.clone(), collected.clone());
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(stream) => stream,
                Err(_) => {
                    collected.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            if stream.get_ref().1.peer_certificates().is_some() {
                collected
                    .client_certificates
                    .fetch_add(1, Ordering::Relaxed);
            }
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                .await;
        });
    }
}

async fn http_export(
    State(collected): State<Arc<Collected>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            collected.push(request, &headers);
            let answer = ExportTraceServiceResponse::default().encode_to_vec();
            ([(header::CONTENT_TYPE, "application/x-protobuf")], answer).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

struct Grpc(Arc<Collected>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        self.0.push(request.into_inner(), &headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

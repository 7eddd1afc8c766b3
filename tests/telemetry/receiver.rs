//! A small OTLP receiver standing in for a collector: `POST /v1/traces` (http/protobuf) and the
//! gRPC `TraceService/Export`, on one port. It runs on its own thread and runtime, so a test
//! blocking on a log line or an exit code never stalls an export.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
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

use crate::support::PATIENCE;

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
    collected: Arc<Collected>,
    stop: Option<oneshot::Sender<()>>,
}

impl Receiver {
    pub fn start() -> Self {
        let collected = Arc::new(Collected::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let state = collected.clone();
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
                    .with_state(state)
                    .merge(grpc);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the receiver serves");
            });
        });
        Self {
            addr: addr.recv().expect("the receiver reports its address"),
            collected,
            stop: Some(stop),
        }
    }

    /// The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT` (either protocol).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
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

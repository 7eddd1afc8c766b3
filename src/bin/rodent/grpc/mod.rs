//! The reference service's gRPC routes: `rodent.echo.v1.Echo`
//! (`proto/rodent/echo/v1/echo.proto`), served by tonic on the HTTP port. The unary methods are
//! registered with the call's deadline ([`rodent::Rodent::grpc_routes`]), `Stream` without the
//! handler timeout ([`rodent::Rodent::unbounded_grpc_routes`]); rodent serves
//! `grpc.health.v1.Health` beside them.
//!
//! | part | owns |
//! | --- | --- |
//! | this file | the echo service |
//! | `pb` | the protobuf code, generated from `proto/` and committed |
//! | `generated` | the test that keeps `pb` what `proto/` says |

#[cfg(test)]
mod generated;
#[allow(clippy::all, clippy::pedantic, unreachable_pub)]
#[rustfmt::skip]
mod pb;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures_util::stream::{self, Stream};
use pb::echo_server::{self, EchoServer};
use pb::{
    DelayRequest, DelayResponse, EchoRequest, EchoResponse, StatusRequest, StatusResponse,
    StreamRequest, StreamResponse,
};
use rodent::{Drain, Lifecycle};
use tonic::{Code, Request, Response, Status};

use crate::routes::{STOPPING, instance};

/// How often `Stream` sends a message.
const STREAM_EVERY: Duration = Duration::from_millis(100);

/// The unary methods: `Echo`, `Delay`, `Status`.
pub(crate) fn unary() -> Router {
    let server = EchoServer::new(Echo::new());
    ["Echo", "Delay", "Status"]
        .into_iter()
        .fold(Router::new(), |router, method| {
            router.route_service(&path(method), server.clone())
        })
}

/// The streaming method: `Stream`.
pub(crate) fn streaming() -> Router {
    Router::new().route_service(&path("Stream"), EchoServer::new(Echo::new()))
}

fn path(method: &str) -> String {
    format!("/{}/{method}", echo_server::SERVICE_NAME)
}

/// `rodent.echo.v1.Echo`.
struct Echo {
    /// The host name: the pod name in Kubernetes, the container id in Docker.
    instance: Arc<str>,
}

impl Echo {
    fn new() -> Self {
        Self {
            instance: instance().into(),
        }
    }
}

type Lines = Pin<Box<dyn Stream<Item = Result<StreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl echo_server::Echo for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
            instance: self.instance.to_string(),
        }))
    }

    async fn delay(
        &self,
        request: Request<DelayRequest>,
    ) -> Result<Response<DelayResponse>, Status> {
        let ms = request.into_inner().ms;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Response::new(DelayResponse { delay_ms: ms }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let StatusRequest { code, message } = request.into_inner();
        let Some(code) = i32::try_from(code)
            .ok()
            .filter(|code| (0..=16).contains(code))
        else {
            return Err(Status::invalid_argument(format!(
                "{code} is not a status this method can answer (0 to 16)"
            )));
        };
        match Code::from_i32(code) {
            Code::Ok => Ok(Response::new(StatusResponse {})),
            code if message.is_empty() => Err(Status::new(code, "requested through Status")),
            code => Err(Status::new(code, message)),
        }
    }

    type StreamStream = Lines;

    async fn stream(&self, request: Request<StreamRequest>) -> Result<Response<Lines>, Status> {
        // rodent puts the service's lifecycle in every request it serves.
        let drain = request
            .extensions()
            .get::<Lifecycle>()
            .map(Drain::new)
            .ok_or_else(|| Status::internal("served outside rodent: no lifecycle"))?;
        let lines = request
            .into_inner()
            .ms
            .div_ceil(STREAM_EVERY.as_millis() as u64);
        let start = Some((drain, 0u64));
        let stream = stream::unfold(start, move |state| async move {
            let (drain, sent) = state?;
            if sent >= lines {
                return None;
            }
            let wait = if sent == 0 {
                Duration::ZERO
            } else {
                STREAM_EVERY
            };
            tokio::select! {
                biased;
                () = drain.signaled() => Some((Err(Status::unavailable(STOPPING)), None)),
                () = tokio::time::sleep(wait) => {
                    Some((Ok(StreamResponse { line: sent + 1 }), Some((drain, sent + 1))))
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

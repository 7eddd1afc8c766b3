//! The bare tonic server rodent's gRPC is measured against: the reference service's echo service
//! (`proto/rodent/echo/v1/echo.proto`) on tonic's own server, with tonic-health's health service
//! set to SERVING once, at start, and tonic's graceful shutdown on SIGTERM or SIGINT. Nothing
//! more: no drain delay, no deadline of its own, and a health service that never says
//! NOT_SERVING (as podinfo's does not). It is what a gRPC service gets without rodent.
//!
//! It reads `RODENT_HOST` and `RODENT_PORT` and prints the same `listening` and `ready` lines as
//! `baseline.rs`, so that the benchmarks and the Kubernetes tests start it as they start rodent.
//!
//! ```sh
//! RODENT_PORT=8081 cargo run --release --example grpc_baseline
//! ```

use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{self, Stream};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

// The example shares the address and the signals with the HTTP references, not their routes.
#[allow(dead_code)]
mod common;

#[allow(clippy::all, clippy::pedantic, dead_code, unreachable_pub)]
#[rustfmt::skip]
#[path = "../src/bin/rodent/grpc/pb.rs"]
mod pb;

use pb::echo_server::{self, EchoServer};
use pb::{
    DelayRequest, DelayResponse, EchoRequest, EchoResponse, StatusRequest, StatusResponse,
    StreamRequest, StreamResponse,
};

struct Echo {
    instance: String,
}

type Lines = Pin<Box<dyn Stream<Item = Result<StreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl echo_server::Echo for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
            instance: self.instance.clone(),
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
        match Code::from_i32(code as i32) {
            Code::Ok => Ok(Response::new(StatusResponse {})),
            code => Err(Status::new(code, message)),
        }
    }

    type StreamStream = Lines;

    async fn stream(&self, request: Request<StreamRequest>) -> Result<Response<Lines>, Status> {
        let lines = request.into_inner().ms.div_ceil(100);
        let stream = stream::unfold(0u64, move |sent| async move {
            if sent >= lines {
                return None;
            }
            if sent > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some((Ok(StreamResponse { line: sent + 1 }), sent + 1))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tokio::main]
async fn main() {
    let listener = TcpListener::bind(common::address())
        .await
        .expect("the address binds");
    let bound = listener
        .local_addr()
        .expect("a bound listener has an address");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<EchoServer<Echo>>().await;
    let instance = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string());
    println!(r#"{{"message":"listening","address":"{bound}"}}"#);
    println!(r#"{{"message":"ready"}}"#);
    Server::builder()
        .add_service(health)
        .add_service(EchoServer::new(Echo { instance }))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            common::terminated(),
        )
        .await
        .expect("the server runs");
}

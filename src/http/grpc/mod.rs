//! gRPC on the service's port: how rodent answers a gRPC call itself, the call's deadline, and
//! the `grpc.health.v1.Health` service that tells the lifecycle's truth.
//!
//! A gRPC client reads a call's outcome from `grpc-status`, not from the HTTP status: an HTTP
//! 503 reaches it as UNAVAILABLE whatever the cause, and a problem+json body means nothing to
//! it. So on the routes an application registers as gRPC
//! ([`Rodent::grpc_routes`](crate::Rodent::grpc_routes)), rodent's own answers are gRPC
//! statuses in a trailers-only response: UNAVAILABLE after the listener closed and when
//! overloaded (the call was not run, so retrying it elsewhere is safe), DEADLINE_EXCEEDED past
//! the deadline, INTERNAL for a panic; a gRPC call no route matches gets UNIMPLEMENTED.
//!
//! | part | owns |
//! | --- | --- |
//! | this file | telling a gRPC call apart, rodent's answers to one |
//! | `deadline` | the call's deadline: the handler timeout or the client's `grpc-timeout` |
//! | `health` | `grpc.health.v1.Health`, answered from readiness |

mod deadline;
mod health;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::Response;
pub(crate) use deadline::GrpcDeadlineLayer;
pub(crate) use health::health_routes;
use tonic::{Code, Status};

use super::problem::Panicked;

/// Whether the request is a gRPC call: its content type is `application/grpc` or one of its
/// `+proto`, `+json` variants.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// rodent's answer to a gRPC call: `code` and `message` in a trailers-only response (HTTP 200,
/// the status in the head, no body).
pub(crate) fn answer(code: Code, message: impl Into<String>) -> Response {
    Status::new(code, message).into_http::<Body>()
}

/// A gRPC handler panicked: INTERNAL, marked for the access layer as the HTTP answer is.
pub(crate) fn panic_response(_payload: Box<dyn std::any::Any + Send>) -> Response {
    // The panic hook has already logged the message and location.
    let mut response = answer(
        Code::Internal,
        "the handler panicked; the process keeps serving",
    );
    response.extensions_mut().insert(Panicked);
    response
}

#[cfg(test)]
mod tests;

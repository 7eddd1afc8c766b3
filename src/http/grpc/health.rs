//! `grpc.health.v1.Health`, the standard gRPC health service, answered from the same readiness
//! as `/readyz`: SERVING while ready, NOT_SERVING from the first SIGTERM on (in the same moment
//! `/readyz` fails, as both read one lifecycle state), while taken out of rotation and while a
//! readiness check fails. The same answer holds for the empty service name (the whole server)
//! and for every service the application registered as gRPC; an unknown one is NOT_FOUND
//! (`Check`) or SERVICE_UNKNOWN (`Watch`), as the service's definition asks.
//!
//! `Watch` sends the status at once and then every change, and ends with UNAVAILABLE when the
//! drain is signaled (the listener closed), so that an open watch never holds the exit and its
//! client reconnects to another instance.
//!
//! The generated types are tonic-health's; its own service is not used, as its statuses are set
//! by hand through a reporter and would be a second truth beside the lifecycle.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures_util::Stream;
use futures_util::stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::http::Instance;
use crate::lifecycle::Drain;
use crate::lifecycle::readiness::Selection;

/// The health service's own name, which it answers for too.
const SERVICE: &str = "grpc.health.v1.Health";

/// How often an open `Watch` evaluates the application's readiness checks again; changes of the
/// lifecycle state and of the readiness switch are sent at once.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// What the last message of a `Watch` the drain ended says.
const STOPPING: &str = "the service is stopping; reconnect to reach another instance";

/// The health service's routes, one per method; `services` are the names of the application's
/// gRPC services.
pub(crate) fn health_routes(instance: Arc<Instance>, services: Vec<String>) -> Router {
    let server = HealthServer::new(LifecycleHealth {
        instance,
        services: services.into(),
    });
    Router::new()
        .route_service(&format!("/{SERVICE}/Check"), server.clone())
        .route_service(&format!("/{SERVICE}/Watch"), server)
}

struct LifecycleHealth {
    instance: Arc<Instance>,
    services: Arc<[String]>,
}

impl LifecycleHealth {
    fn knows(&self, service: &str) -> bool {
        service.is_empty() || service == SERVICE || self.services.iter().any(|s| s == service)
    }

    /// The answer `/readyz` gives now.
    async fn status(instance: &Instance) -> ServingStatus {
        let outcomes = instance
            .readiness
            .evaluate(&instance.lifecycle, &Selection::default())
            .await;
        if outcomes.iter().all(|outcome| outcome.passed()) {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

fn message(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for LifecycleHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        if !self.knows(service) {
            return Err(Status::not_found(format!("no service named {service:?}")));
        }
        Ok(Response::new(message(Self::status(&self.instance).await)))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let watching = Watching {
            instance: self.instance.clone(),
            known: self.knows(&request.get_ref().service),
            drain: Drain::new(&self.instance.lifecycle),
            changes: self.instance.lifecycle.subscribe(),
            sent: None,
        };
        let updates = stream::unfold(Some(watching), |watching| async move {
            let mut watching = watching?;
            match watching.next().await {
                Some(status) => Some((Ok(message(status)), Some(watching))),
                None => Some((Err(Status::unavailable(STOPPING)), None)),
            }
        });
        Ok(Response::new(Box::pin(updates)))
    }
}

/// One open `Watch`.
struct Watching {
    instance: Arc<Instance>,
    known: bool,
    drain: Drain,
    changes: tokio::sync::watch::Receiver<crate::lifecycle::State>,
    sent: Option<ServingStatus>,
}

impl Watching {
    /// The next status to send: the first one, then each change; `None` once the drain is
    /// signaled.
    async fn next(&mut self) -> Option<ServingStatus> {
        let recheck = self.known && self.instance.readiness.has_checks();
        loop {
            if self.drain.is_signaled() {
                return None;
            }
            let status = if self.known {
                LifecycleHealth::status(&self.instance).await
            } else {
                ServingStatus::ServiceUnknown
            };
            if self.sent != Some(status) {
                self.sent = Some(status);
                return Some(status);
            }
            tokio::select! {
                () = self.drain.signaled() => return None,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep(RECHECK_EVERY), if recheck => {}
            }
        }
    }
}

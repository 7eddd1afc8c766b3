//! The HTTP surface every rodent service has: probes, metrics, the admin API and the middleware
//! stack, wrapped around the application's own routes.
//!
//! What every request goes through is one `ServiceBuilder` stack (`stack`), composed once:
//! tower-http's request id, panic catching, handler timeout, body limit and body stall timeout,
//! with rodent's own layers among them: `access` (span, access log, metrics, in-flight count, by
//! matched route), `edge` (the drain rules, problem+json for every error) and `guard` (load
//! shedding, rodent's answers for what tower-http's layers refuse). rodent's operational routes
//! (probes, `/metrics`, the admin API) have a shorter stack, without shedding, the timeout or
//! the body bounds, so they answer fast while the application is saturated. gRPC routes have
//! stacks of their own (`grpc`), where rodent answers in `grpc-status` and a call's deadline
//! replaces the handler timeout; the gRPC health service is served with the probes.

mod access;
pub(crate) mod admin;
mod application;
mod body;
mod deadline;
mod edge;
mod grpc;
mod guard;
mod instance;
mod metrics;
mod note;
mod probes;
mod problem;
mod routes;
mod stack;

pub use crate::observe::telemetry::context::Propagation;
pub(crate) use application::Application;
pub use deadline::Deadline;
pub(crate) use instance::Instance;
pub use note::AccessNote;
pub use problem::Problem;
pub(crate) use stack::Routes;

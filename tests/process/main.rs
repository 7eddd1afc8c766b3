//! The real `rodent` binary, as a user runs it: real processes, real signals, real sockets,
//! real peers. One test binary for every suite that starts the binary (except the Kubernetes
//! one), so that the release build links one test executable, not six: a suite is a module
//! here, run alone with `scripts/test --test process <suite>::`.
//!
//! A new process-level test goes into the suite it belongs to, and uses the kit
//! (`tests/kit`, the `kit` crate): `kit::rodent()` to start the binary, `kit::eventually` to
//! wait, `Spawn::run` for a command that ends, `kit::PidFile` for an instance with a PID file,
//! `Rodent::metrics` for `/metrics`.

mod grpc;
mod host;
mod hostile;
mod lifecycle;
mod reference;
mod rolling;
mod supervision;
mod telemetry;
mod tls;

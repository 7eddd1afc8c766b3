//! The `rodent` binary: the reference service platform teams deploy to test rollouts, probes,
//! timeouts, telemetry, and what their platform does to a workload that errs, stalls or dies.
//! It is an application like any other on the library, built only on its public API: what it
//! needs and the API lacks is added to the API.
//!
//! | part | owns |
//! | --- | --- |
//! | this file | the application: its name, version, settings and setup |
//! | `settings` | its own variables: faults, backends |
//! | `routes` | the reference routes |
//! | `faults` | injected errors and delays, and `/admin/faults` |
//! | `chain` | `POST /echo` forwarded to the backends |
//! | `introspect` | `GET /headers`, `GET /env` |
//! | `grpc` | the reference gRPC service, on the same port |

mod chain;
mod faults;
mod grpc;
mod introspect;
mod routes;
mod settings;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use rodent::{Crash, Event};

use chain::Chain;
use faults::Faults;
use settings::Settings;

fn main() -> std::process::ExitCode {
    rodent::app!()
        .commit(env!("BUILD_INFO_COMMIT"))
        .settings(Settings::read)
        .main(|service, settings| async move {
            let config = service.config();
            let build = config.build_info();
            let faults = Faults::new(settings.clone());
            let chain = Chain::new(
                settings.clone(),
                service.propagation(),
                build.name,
                build.version,
            );
            let configured = settings.get();
            let crash = service.crash_handle();
            let mut service = service
                .routes(routes::routes(build, chain, faults))
                .grpc_routes(grpc::unary())
                .unbounded_grpc_routes(grpc::streaming())
                .protected_routes(
                    Router::new()
                        .route("/env", get(introspect::env))
                        .with_state(settings.clone()),
                )
                .admin_routes(faults::admin_routes(faults))
                .admin_routes(crash_route(crash))
                .metric(
                    "rodent_faults_injected",
                    "Faults injected into application requests, by kind: error or delay",
                    faults.metric(),
                )
                .on_event(reset_on_reload(faults));
            if configured.unready {
                service = service.readiness_check("fault", || async {
                    Err("RODENT_FAULT_UNREADY is set: this instance never turns ready".into())
                });
            }
            if configured.unhealthy {
                service
                    .lifecycle()
                    .fail_liveness("RODENT_FAULT_UNHEALTHY is set: /healthz fails on purpose");
            }
            Ok(service)
        })
}

/// `POST /admin/crash`: exit 1 at once, without the drain, to test restart policies.
fn crash_route(crash: Crash) -> Router {
    Router::new()
        .route("/crash", post(crash_now))
        .with_state(crash)
}

async fn crash_now(State(crash): State<Crash>) {
    crash.now("POST /admin/crash");
}

/// A reload (SIGHUP) puts the configured faults back, whatever the admin API set.
fn reset_on_reload(faults: &'static Faults) -> impl Fn(&Event) + Send + Sync + 'static {
    move |event| {
        if matches!(event, Event::Reloaded) {
            faults.reset();
        }
    }
}

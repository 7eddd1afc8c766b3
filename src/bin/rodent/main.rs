//! The `rodent` binary: the reference service platform teams deploy to test rollouts, probes,
//! timeouts and telemetry. It is an application like any other on the library, built only on
//! its public API: what it needs and the API lacks is added to the API.
//!
//! | part | owns |
//! | --- | --- |
//! | this file | the application: its name, version and setup |
//! | `routes` | the reference routes |
//! | `grpc` | the reference gRPC service, on the same port |

mod grpc;
mod routes;

fn main() -> std::process::ExitCode {
    rodent::app!()
        .commit(env!("BUILD_INFO_COMMIT"))
        .main(|service, _settings| async move {
            let build = service.config().build_info();
            Ok(service
                .routes(routes::routes(build))
                .grpc_routes(grpc::unary())
                .unbounded_grpc_routes(grpc::streaming()))
        })
}

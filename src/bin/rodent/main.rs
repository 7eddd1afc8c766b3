//! The `rodent` binary: the library's command line and lifecycle around the reference routes,
//! HTTP and gRPC.

mod grpc;

fn main() -> std::process::ExitCode {
    rodent::launch::main(|service| {
        service
            .routes(rodent::reference::routes())
            .grpc_routes(grpc::unary())
            .unbounded_grpc_routes(grpc::streaming())
    })
}

//! The `rodent` binary: the library's command line and lifecycle around the reference routes.

fn main() -> std::process::ExitCode {
    rodent::launch::main(|service| service.routes(rodent::reference::routes()))
}

//! The check that keeps the committed protobuf code (`pb.rs`) what `proto/` says: it is
//! generated again here, without a `protoc` binary (protox compiles the `.proto` files in Rust),
//! and compared. `RODENT_UPDATE_GENERATED=1 cargo test --bin rodent generated` rewrites it.
//!
//! Committed rather than generated at build time, so that building rodent (the image's source
//! stage included) needs neither protox nor tonic's build crate.

use std::path::Path;

/// What `pb.rs` starts with, before the generated code.
const HEADER: &str = "// @generated from proto/rodent/echo/v1/echo.proto by tonic-prost-build (through protox).\n\
// Do not edit: `RODENT_UPDATE_GENERATED=1 cargo test --bin rodent generated` writes it again.\n\n";

#[test]
fn generated_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let descriptors = protox::compile(["rodent/echo/v1/echo.proto"], [root.join("proto")])
        .expect("proto/ compiles");
    let out = std::env::temp_dir().join(format!("rodent-generated-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    tonic_prost_build::configure()
        .build_transport(false)
        .out_dir(&out)
        .compile_fds(descriptors)
        .expect("tonic-prost-build generates the code");
    let generated = std::fs::read_to_string(out.join("rodent.echo.v1.rs")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    let expected = format!("{HEADER}{generated}");
    let committed_path = root.join("src/bin/rodent/grpc/pb.rs");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != expected {
        if std::env::var_os("RODENT_UPDATE_GENERATED").is_some() {
            std::fs::write(&committed_path, expected).unwrap();
        } else {
            panic!(
                "{} is not what proto/ generates; run \
                 `RODENT_UPDATE_GENERATED=1 cargo test --bin rodent generated`",
                committed_path.display()
            );
        }
    }
}

//! Records what `/version`, `rodent version` and the `rodent_build_info` metric report.
//!
//! The values reach the crate as `BUILD_INFO_*` variables. Cargo also sets those in the
//! environment of whatever it runs (`cargo run`, `cargo test`), so they must not start with
//! `RODENT_`: rodent would read them as configuration and warn about unknown variables.

use std::path::Path;
use std::process::Command;

fn main() {
    // The commit can be given from outside, where there is no git checkout (a Docker build).
    println!("cargo:rerun-if-env-changed=RODENT_BUILD_COMMIT");
    // Only watch git files that exist: a missing path would make cargo rerun this every build.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("RODENT_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILD_INFO_COMMIT={commit}");
    println!("cargo:rustc-env=BUILD_INFO_RUSTC={rustc_version}");
    println!(
        "cargo:rustc-env=BUILD_INFO_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=BUILD_INFO_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    pack_relative_relocations();
}

/// A statically linked glibc build (the image's binary) is position independent, so it carries
/// one relocation for every pointer in its data, 24 bytes each: 0.6 MB of a 10 MB binary.
/// Packed (DT_RELR, glibc 2.36 and binutils 2.38 on), the same relocations take a few kilobytes,
/// and the binary keeps its address randomization. glibc's own start-up code applies them, so a
/// static binary asks nothing of the machine it runs on; a dynamically linked one would need a
/// loader of glibc 2.36 or later, so those are left as they are. An older linker ignores the
/// option with a warning.
fn pack_relative_relocations() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|feature| feature == "crt-static");
    if static_crt && var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg=-Wl,-z,pack-relative-relocs");
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

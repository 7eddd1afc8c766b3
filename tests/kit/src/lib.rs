//! The kit rodent's integration tests share, compiled once for every test binary.
//!
//! - [`rodent()`] starts the real binary on port 0 with a clean environment and waits until it
//!   serves; the [`Rodent`] it gives reads the process's JSON log, sends it signals, waits for
//!   its exit. [`Spawn::run`] runs a command to its end: `(code, stdout, stderr)`.
//! - [`eventually`] is the one way to wait for a condition: a deadline, never a sleep that
//!   hopes ([`eventually_async`] for a check that awaits; `try_` for a test that reports what
//!   it saw before it asserts).
//! - [`Metrics`] is one scrape of `/metrics` ([`Rodent::metrics`]).
//! - [`PidFile`] is a directory for an instance's PID file (and log file), which kills what the
//!   file names when dropped.
//! - [`KubeletVolume`]: files laid out and swapped as the kubelet does a mounted ConfigMap.
//! - [`TempDir`], the raw HTTP helpers ([`connect`], [`get_on`], [`read_response`]), and
//!   [`require_tool`] / [`require_root`], which skip a test outside CI and fail it in CI.
//! - [`namespace`] (PID 1 in a PID namespace), [`load`] (constant load, every request
//!   counted), [`plot`] (figures of a scenario), [`stalled`] (a stdout that stops taking
//!   lines).
//!
//! The binaries under test are found beside the test binary that runs (Cargo puts test
//! binaries in `deps/`, next to which it puts `rodent` and `examples/`), so this crate, unlike
//! a module of each test binary, needs no `CARGO_BIN_EXE_*`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

mod http;
pub mod load;
mod metrics;
pub mod namespace;
mod pid_file;
pub mod plot;
mod process;
mod require;
pub mod stalled;
mod temp_dir;
mod volume;
mod wait;

pub use http::{
    RawResponse, client, client_builder, connect, free_port, get_on, read_response, read_to_close,
};
pub use metrics::{Metrics, wait_in_flight};
pub use pid_file::PidFile;
pub use process::{Log, Rodent, Spawn, code_of, rodent};
pub use require::{require_root, require_tool};
pub use temp_dir::TempDir;
pub use volume::KubeletVolume;
pub use wait::{eventually, eventually_async, try_eventually, try_eventually_async};

/// How long a test waits for something that should take milliseconds. Generous: the suite runs
/// in parallel on two cores.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Where Cargo put the test binary that runs: `target/[<triple>/]<profile>/deps/`.
fn deps_dir() -> &'static Path {
    static DEPS: OnceLock<PathBuf> = OnceLock::new();
    DEPS.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        exe.parent()
            .expect("the test binary lives in a directory")
            .to_path_buf()
    })
}

/// The `rodent` binary built with the tests (`target/[<triple>/]<profile>/rodent`).
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let binary = deps_dir()
            .parent()
            .expect("deps/ lives in the profile's directory")
            .join("rodent");
        assert!(
            binary.exists(),
            "{} is missing: run the tests through cargo (`scripts/test`), which builds it",
            binary.display()
        );
        binary
    })
}

/// An example program built next to the `rodent` binary (`cargo test` builds examples).
pub fn example(name: &str) -> PathBuf {
    binary()
        .parent()
        .expect("the binary lives in a directory")
        .join("examples")
        .join(name)
}

/// The bare axum baseline (`examples/baseline.rs`), which `cargo test` builds next to rodent.
pub fn baseline_binary() -> PathBuf {
    let binary = example("baseline");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples, but a run limited with `--test` \
         does not; build them first with `scripts/test --no-run`",
        binary.display()
    );
    binary
}

/// The target directory of this build, where the tests keep what they leave to be read
/// (`target/<triple>` under `scripts/test`, which passes `--target`; `target` without it).
pub fn target_dir() -> &'static Path {
    deps_dir()
        .parent()
        .and_then(Path::parent)
        .expect("deps/ lives two levels below the target directory")
}

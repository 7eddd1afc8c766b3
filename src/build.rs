//! Who is running: the application's name and version (rodent's own for the `rodent` binary),
//! and what rodent was built with. Reported by `--version`, `version`, the `starting` log line,
//! `service.name` and `service.version` on traces, and the `rodent_build_info` metric; the name
//! also names the default PID file.

use serde::Serialize;

/// rodent's own version: the library's, whatever application embeds it.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit rodent was built from, or `unknown` (a build outside a checkout).
const COMMIT: &str = env!("BUILD_INFO_COMMIT");
const RUSTC: &str = env!("BUILD_INFO_RUSTC");
const TARGET: &str = env!("BUILD_INFO_TARGET");
const PROFILE: &str = env!("BUILD_INFO_PROFILE");

/// An application's name and version, as [`App`](crate::App) declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    /// The commit the application was built from, when it says.
    pub(crate) commit: Option<&'static str>,
    /// One line on what it is, for `--help`.
    pub(crate) about: Option<&'static str>,
}

impl Identity {
    /// rodent's own identity: the `rodent` binary, and a [`Config`](crate::Config) read
    /// without an [`App`](crate::App).
    pub(crate) const RODENT: Identity = Identity {
        name: "rodent",
        version: VERSION,
        commit: Some(COMMIT),
        about: None,
    };

    pub(crate) fn commit(&self) -> &'static str {
        self.commit.unwrap_or("unknown")
    }

    pub(crate) fn build_info(&self) -> BuildInfo {
        BuildInfo {
            name: self.name,
            version: self.version,
            commit: self.commit(),
            rodent: VERSION,
            rustc: RUSTC,
            target: TARGET,
            profile: PROFILE,
        }
    }
}

/// What is running, as `version` prints it and the `rodent_build_info` metric labels it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BuildInfo {
    /// The application's name.
    pub name: &'static str,
    /// The application's version.
    pub version: &'static str,
    /// The commit the application was built from, or `unknown`.
    pub commit: &'static str,
    /// The version of the rodent library it runs on.
    pub rodent: &'static str,
    /// The compiler rodent was built with.
    pub rustc: &'static str,
    /// The target triple rodent was built for.
    pub target: &'static str,
    /// The cargo profile rodent was built with (`release`, `debug`).
    pub profile: &'static str,
}

/// Whether `name` can name an application: it becomes a file name (the PID file), a command
/// name and a `service.name`, so it is kept to letters, digits, `-`, `_` and `.`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

//! What was built: reported by `/version`, `rodent version` and `rodent_build_info`.

use serde::Serialize;

pub const NAME: &str = env!("CARGO_PKG_NAME");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from, or `unknown` (a build outside a checkout).
pub const COMMIT: &str = env!("BUILD_INFO_COMMIT");
pub const RUSTC: &str = env!("BUILD_INFO_RUSTC");
pub const TARGET: &str = env!("BUILD_INFO_TARGET");
pub const PROFILE: &str = env!("BUILD_INFO_PROFILE");

/// Build information as `/version` serves it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub commit: &'static str,
    pub rustc: &'static str,
    pub target: &'static str,
    pub profile: &'static str,
}

pub const INFO: BuildInfo = BuildInfo {
    name: NAME,
    version: VERSION,
    commit: COMMIT,
    rustc: RUSTC,
    target: TARGET,
    profile: PROFILE,
};

//! What a test needs from the machine: missing outside CI, the test is skipped with a message
//! saying why; missing in CI (`CI` set), the test fails.

use std::process::{Command, Stdio};

/// Whether an external tool the test needs is present. In CI (`CI` set) a missing tool fails
/// the test; elsewhere the test is skipped with a message saying what to install.
pub fn require_tool(tool: &str, install_hint: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required in CI but is not installed ({install_hint})");
    }
    eprintln!("SKIPPED: {tool} is not installed ({install_hint})");
    false
}

/// Whether this test can run as root. In CI a missing privilege fails the test; elsewhere the
/// test is skipped with a message saying why.
pub fn require_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("this test must run as root in CI ({why})");
    }
    eprintln!("SKIPPED: not root ({why})");
    false
}

//! The systemd example (`examples/systemd/`) as systemd itself reads it: `systemd-analyze
//! verify` parses both units and reports every setting it does not understand.

use std::path::Path;
use std::process::Command;

use kit::{TempDir, require_tool};

#[test]
fn the_example_units_verify_without_a_complaint() {
    if !require_tool(
        "systemd-analyze",
        "apt-get install systemd; see scripts/ci/tools.sh",
    ) {
        return;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd");
    let dir = TempDir::new("units");
    for unit in ["rodent.socket", "rodent.service"] {
        let text = std::fs::read_to_string(examples.join(unit)).expect("the example exists");
        // verify checks that ExecStart names an executable: the one just built.
        let text = text.replace(
            "/usr/local/bin/rodent",
            kit::binary().to_str().expect("a UTF-8 path"),
        );
        std::fs::write(dir.join(unit), text).unwrap();
    }
    let output = Command::new("systemd-analyze")
        .current_dir(dir.path())
        .args(["verify", "./rodent.socket", "./rodent.service"])
        .output()
        .expect("systemd-analyze runs");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {}\n{complaints}",
        output.status
    );
}

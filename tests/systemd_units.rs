//! The shipped systemd unit files pass `systemd-analyze verify` (a tool:
//! ignored by default, run by `scripts/test-all`).

mod support;

/// The harness's one check for a tool (a missing one fails under scripts/test-all).
use support::have_tool as have;

use std::path::Path;
use std::process::Command;

use support::{bin, temp_dir};

#[test]
#[ignore = "needs systemd-analyze: scripts/test-all"]
fn the_unit_files_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = temp_dir("units");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for name in ["echoplex.service", "echoplex.socket"] {
        let text = std::fs::read_to_string(repo.join(name)).expect("unit file");
        // verify checks that ExecStart's binary exists: point it at the one built.
        std::fs::write(
            dir.join(name),
            text.replace("/usr/local/bin/echoplex", bin()),
        )
        .expect("copy");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("echoplex.socket"))
        .arg(dir.join("echoplex.service"))
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("echoplex"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

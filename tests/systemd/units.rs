//! The unit files in `systemd/` pass `systemd-analyze verify`, and the service's sandbox keeps
//! `systemd-analyze security` at an exposure of at most 3.0.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::require_tool;

const UNITS: &[&str] = &[
    "act-runner.service",
    "act-runner-metrics.socket",
    "act-runner@.service",
    "act-runner-cache.service",
    "act-runner-cache.socket",
];

/// The units copied into a temporary directory with `ExecStart=` pointing at the built binary
/// (verify checks that the command exists; the host has no /usr/bin/act_runner).
fn staged_units() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for unit in UNITS {
        let text = std::fs::read_to_string(source.join(unit)).unwrap();
        let text = text.replace("/usr/bin/act_runner", env!("CARGO_BIN_EXE_act_runner"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let path = dir.path().to_owned();
    (dir, path)
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    if !require_tool("systemd-analyze") {
        return;
    }
    let (_dir, path) = staged_units();
    for unit in UNITS {
        let unit_path = match *unit {
            "act-runner@.service" => path.join("act-runner@.service"),
            other => path.join(other),
        };
        // --man=no: the man page comes with the Debian package, not with the source tree.
        let output = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "{unit}: {stderr}"
        );
    }
}

#[test]
fn service_exposure_is_at_most_3() {
    if !require_tool("systemd-analyze") {
        return;
    }
    let (_dir, path) = staged_units();
    for unit in [
        "act-runner.service",
        "act-runner@.service",
        "act-runner-cache.service",
    ] {
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(path.join(unit))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("{stdout}"));
        let exposure: f64 = line
            .split(':')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        println!("{unit}: {}", line.trim());
        assert!(exposure <= 3.0, "{unit}: {line}");
    }
}

#[test]
fn the_socket_and_service_name_each_other() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let socket = std::fs::read_to_string(source.join("act-runner-metrics.socket")).unwrap();
    let service = std::fs::read_to_string(source.join("act-runner.service")).unwrap();
    assert!(socket.lines().any(|l| l == "FileDescriptorName=metrics"));
    assert!(socket.lines().any(|l| l == "Service=act-runner.service"));
    assert!(socket.lines().any(|l| l == "ListenStream=127.0.0.1:9101"));
    assert!(
        service
            .lines()
            .any(|l| l == "Sockets=act-runner-metrics.socket")
    );
    assert!(service.lines().any(|l| l == "Type=notify"));
    assert!(
        service
            .lines()
            .any(|l| l == "RestartPreventExitStatus=77 78")
    );
    assert_eq!(act_runner::systemd::METRICS_FD_NAME, "metrics");
}

#[test]
fn the_cache_socket_and_service_name_each_other() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let socket = std::fs::read_to_string(source.join("act-runner-cache.socket")).unwrap();
    let service = std::fs::read_to_string(source.join("act-runner-cache.service")).unwrap();
    assert!(socket.lines().any(|l| l == "FileDescriptorName=cache"));
    assert!(
        socket
            .lines()
            .any(|l| l == "Service=act-runner-cache.service")
    );
    assert!(
        service
            .lines()
            .any(|l| l == "Sockets=act-runner-cache.socket")
    );
    assert!(
        service
            .lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/act_runner cache-server "))
    );
    assert!(service.lines().any(|l| l == "Type=notify"));
    assert!(service.lines().any(|l| l == "RestartPreventExitStatus=78"));
    assert_eq!(act_runner::systemd::CACHE_FD_NAME, "cache");
    let rules = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/rules"))
        .unwrap();
    assert!(rules.contains("systemd/act-runner-cache.service"));
    assert!(rules.contains("systemd/act-runner-cache.socket"));
}

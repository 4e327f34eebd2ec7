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

/// `Key=value` lines of a unit file, in order (comments and section headers left out).
fn directives(unit: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(unit);
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn values<'a>(directives: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    directives
        .iter()
        .filter(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
        .collect()
}

/// Issue 23: on a minimal Debian (minbase plus what the package pulls in) every command a unit
/// runs must exist: the runner itself, or the shell every Debian system has (`/bin/kill` comes
/// from procps, which the package does not depend on).
#[test]
fn every_unit_command_is_the_runner_or_the_shell() {
    for unit in UNITS {
        for (key, value) in directives(unit) {
            if !key.starts_with("Exec") {
                continue;
            }
            let program = value
                .trim_start_matches(['-', '@', ':', '+', '!'])
                .split_whitespace()
                .next()
                .unwrap_or_default();
            assert!(
                ["/usr/bin/act_runner", "/bin/sh"].contains(&program),
                "{unit}: {key}={value} needs {program}, which the package does not pull in"
            );
        }
    }
}

/// Issue 22's soak: the daemon's units cap glibc's malloc arenas, without which RSS grew with the
/// number of jobs run while the live heap stayed flat (packaging/bench/soak.sh reads the value
/// from `act-runner.service`, so the benchmark measures what is deployed).
#[test]
fn the_daemon_units_cap_malloc_arenas() {
    for unit in ["act-runner.service", "act-runner@.service"] {
        let service = directives(unit);
        assert!(
            values(&service, "Environment").contains(&"MALLOC_ARENA_MAX=2"),
            "{unit} does not set Environment=MALLOC_ARENA_MAX=2"
        );
    }
}

/// Issue 23: `systemctl stop act-runner` sticks (the stop goes down to the socket, so no scrape
/// starts the runner again), `systemctl start` brings both back, and a restart (not a stop)
/// leaves the socket listening.
#[test]
fn a_stop_goes_down_to_the_socket_and_a_start_brings_it_up() {
    let service = directives("act-runner.service");
    let socket = "act-runner-metrics.socket";
    assert_eq!(values(&service, "PropagatesStopTo"), [socket]);
    assert!(values(&service, "Wants").contains(&socket));
    assert!(
        values(&service, "After")
            .iter()
            .any(|v| v.split_whitespace().any(|u| u == socket))
    );
    // PartOf=/BindsTo= would also restart or stop the socket on a restart, losing the backlog.
    let socket_directives = directives(socket);
    for key in ["PartOf", "BindsTo", "StopPropagatedFrom"] {
        assert!(
            values(&socket_directives, key).is_empty(),
            "{socket}: {key}="
        );
    }
}

/// Issue 23: every default path of a runner lands in a directory its unit may write: for an
/// instance of the template, its own state or cache directory (not the user's home, which is the
/// default unit's and read-only there).
#[test]
fn every_default_path_lands_in_the_units_own_writable_directories() {
    let sysusers = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/act-runner.sysusers"),
    )
    .unwrap();
    let user_home = sysusers
        .lines()
        .find(|line| line.starts_with("u act-runner "))
        .and_then(|line| line.split_whitespace().find(|word| word.starts_with('/')))
        .unwrap()
        .to_owned();
    for (unit, instance) in [("act-runner.service", ""), ("act-runner@.service", "b2")] {
        let unit_directives = directives(unit);
        let expand = |value: &str| value.replace("%i", instance);
        let one = |key: &str| {
            let found = values(&unit_directives, key);
            assert_eq!(found.len(), 1, "{unit}: {key}= {found:?}");
            expand(found[0])
        };
        let home = values(&unit_directives, "Environment")
            .iter()
            .find_map(|value| value.strip_prefix("HOME="))
            .map_or_else(|| user_home.clone(), expand);
        let writable = [
            PathBuf::from("/var/lib").join(one("StateDirectory")),
            PathBuf::from("/var/cache").join(one("CacheDirectory")),
        ];
        let working_directory = PathBuf::from(one("WorkingDirectory"));
        // systemd sets STATE_DIRECTORY= from StateDirectory=.
        let env = act_runner::config::LoadEnv {
            home: PathBuf::from(&home),
            state_directory: Some(writable[0].clone()),
            xdg_cache_home: None,
        };
        let config = act_runner::config::Config::load_with(None, &env)
            .unwrap()
            .config;
        let runner_file = working_directory.join(&config.runner.file);
        let defaults = [
            ("runner.file", runner_file.clone()),
            (
                "the spool",
                act_runner::daemon::execution::state_dir(&runner_file),
            ),
            ("cache.dir", config.cache.dir.clone()),
            ("host.workdir_parent", config.host.workdir_parent.clone()),
        ];
        for (what, path) in defaults {
            assert!(
                writable.iter().any(|dir| path.starts_with(dir)),
                "{unit} (instance {instance:?}): {what} defaults to {}, outside {writable:?}",
                path.display()
            );
        }
    }
}

/// Issue 23: each runner unit delegates its cgroup and leaves the cgroup file system writable, so
/// the daemon can give every host job a cgroup of its own (`systemd::job_cgroups`).
#[test]
fn the_runner_units_delegate_their_cgroup_and_may_write_it() {
    for unit in ["act-runner.service", "act-runner@.service"] {
        let directives = directives(unit);
        assert_eq!(values(&directives, "Delegate"), ["yes"], "{unit}");
        assert_eq!(
            values(&directives, "ProtectControlGroups"),
            ["no"],
            "{unit}"
        );
    }
}

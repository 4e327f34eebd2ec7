//! The local Docker test images (built by `build.sh` beside this file, no registry needed) and a
//! connection to the daemon for tests that need Docker for real.
//!
//! Without Docker a test fails when `CI` is set and is skipped with a printed reason otherwise.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use act_runner::executor::backend::docker::connect;
use bollard::Docker;

/// Debian 12 with bash, git, nodejs, python3, ca-certificates, coreutils, procps.
pub const DEBIAN_IMAGE: &str = "act-runner-test/debian:12";
/// A busybox-static root file system: `sh`, `sleep`, `wget`, `httpd`, ...
pub const BUSYBOX_IMAGE: &str = "act-runner-test/busybox:latest";

/// A Docker client when the daemon and the test images are available. Builds the images once per
/// test process if they are missing (cached by content hash, so usually a no-op).
pub async fn docker() -> Option<Docker> {
    let host = match connect::discover_docker_host_from_process("") {
        Ok(host) => host,
        Err(err) => return unavailable(&err.to_string()),
    };
    let docker = match connect::connect(&host).await {
        Ok(docker) => docker,
        Err(err) => return unavailable(&err.to_string()),
    };
    if let Err(reason) = ensure_images() {
        return unavailable(reason);
    }
    Some(docker)
}

fn ensure_images() -> Result<(), &'static str> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/images/build.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .map_err(|err| err.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} failed: {status}", script.display()))
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(_) => {
            Err("the test images could not be built (see tests/support/images/build.sh output)")
        }
    }
}

fn unavailable<T>(reason: &str) -> Option<T> {
    super::require(false, &format!("Docker is not available: {reason}"));
    None
}

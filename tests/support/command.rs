//! Running the `act_runner` binary in a scratch directory with a clean environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fresh working directory and `HOME` for one test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `act_runner` with the scratch dir as cwd and `HOME`, no inherited token or credentials,
    /// and a bound on how long it may run.
    pub fn act_runner(&self) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::cargo_bin("act_runner").unwrap();
        command
            .current_dir(self.path())
            .env("HOME", self.path())
            .env_remove("GITEA_RUNNER_REGISTRATION_TOKEN")
            .env_remove("GITEA_RUNNER_LABELS")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .timeout(Duration::from_secs(60));
        command
    }
}

//! Shared test code: the fake Gitea, the Docker test images, and running the binary.
#![allow(dead_code)]

pub mod command;
pub mod fake_gitea;
pub mod images;

/// Whether a test's prerequisite (Docker, a tool, an image) is there. Missing, the test fails
/// under `CI`, where a skip would hide a failure, and is skipped with the reason printed elsewhere.
pub fn require(available: bool, reason: &str) -> bool {
    if !available {
        assert!(std::env::var_os("CI").is_none(), "{reason}");
        eprintln!("skipped: {reason}");
    }
    available
}

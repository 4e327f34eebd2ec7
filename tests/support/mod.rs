//! Shared test code: the fake Gitea and the Docker test images.
#![allow(dead_code)]

pub mod fake_gitea;
pub mod images;

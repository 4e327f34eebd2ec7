//! Shared test code: the fake Gitea, the Docker test images, and running the binary.
#![allow(dead_code)]

pub mod command;
pub mod fake_gitea;
pub mod images;

//! Shared test code: the fake Gitea and the Docker test images.
#![allow(dead_code)]

pub mod images;

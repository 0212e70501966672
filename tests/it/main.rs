//! End-to-end tests: the whole pipeline (`switchboard dev`'s stack) against the local AWS
//! emulator, with destinations played by scripted HTTP receivers on 127.0.0.1.

// Test support panics on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod utils;

mod deliver;
mod events;
mod hardening;
mod ingest;
mod isolation;
mod ops;
mod ordering;
mod package;
mod privilege;
mod requests;
mod review;
mod review_slack;
mod rotation;
mod secrets;
mod support;
mod transform;
mod two_way;
mod walking_skeleton;

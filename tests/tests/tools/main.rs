//! What a user runs and deploys: `scar local`, the examples and their templates, the outputs of
//! `build.sh`, and the test harness itself. One test binary, one module per subject.
//!
//! Run: `cargo test -p scar-e2e --test tools` (one module: `... --test tools examples::`).

#[path = "../support/demo.rs"]
mod demo_support;

mod build;
mod examples;
mod harness;
mod image_push;
mod local;
mod local_http;

//! The namespace engine through `scar run`, the `scar` launcher, and the Lambda simulator the
//! other tests rely on. One test binary, one module per subject.
//!
//! Run: `cargo test -p scar-e2e --test engines` (one module: `... --test engines launcher::`).

mod lambda_sim;
mod launcher;
mod namespace;

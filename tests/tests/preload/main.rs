//! The preload engine end to end: path mapping, the loader, a pristine cache, reaping and static
//! programs. One test binary, one module per subject.
//!
//! Run: `cargo test -p scar-e2e --test preload` (one module: `... --test preload preload_reap::`).

#[path = "../support/bootstrap.rs"]
mod bootstrap_support;

mod preload;
mod preload_loader;
mod preload_pristine;
mod preload_reap;
mod preload_static;

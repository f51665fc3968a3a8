//! Pulling images: from a registry, layouts and archives (also from S3), from ECR, hostile images
//! and registries, and a cache you can trust. One test binary, one module per subject.
//!
//! Run: `cargo test -p scar-e2e --test pull` (one module: `... --test pull pull_hostile::`).

#[path = "../support/bootstrap.rs"]
mod bootstrap_support;
#[path = "../support/pull.rs"]
mod pull_support;

mod cache_trust;
mod pull;
mod pull_archive;
mod pull_ecr;
mod pull_framed;
mod pull_framed_retry;
mod pull_hostile;
mod pull_ranges;
mod shared_cache;

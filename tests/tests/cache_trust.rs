//! A cache you can trust (#17): hostile images and hostile registries, each checked as root and
//! as an unprivileged user (the Lambda simulator's uid 993). Nothing outside the cache changes,
//! nothing unverified is ever published, one image's config never serves another, credentials go
//! only where they belong and nothing secret is logged.
//!
//! One test binary, one module per subject.

mod pull_support;

#[path = "cache_trust/extract.rs"]
mod extract;

#[path = "cache_trust/verify.rs"]
mod verify;

#[path = "cache_trust/hygiene.rs"]
mod hygiene;

#[path = "cache_trust/credentials.rs"]
mod credentials;

//! A cache you can trust (#17): hostile images and hostile registries, each checked as root and
//! as an unprivileged user (the Lambda simulator's uid 993). Nothing outside the cache changes,
//! nothing unverified is ever published, one image's config never serves another, credentials go
//! only where they belong and nothing secret is logged.
//!
//! One module per subject.

mod extract;

mod verify;

mod hygiene;

mod credentials;

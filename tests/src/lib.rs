//! Test harness: real services on free loopback ports, one instance per test, stopped on drop.
//!
//! - [`Registry`]: the CNCF distribution registry (`docker-registry`), anonymous or basic auth.
//! - [`S3Server`]: `s3s-fs` in-process with SigV4 checked, objects on disk.
//! - [`RuntimeApi`]: the Lambda Runtime API of `cargo lambda watch --only-lambda-apis`;
//!   [`runtime_proxy::RuntimeProxy`] in front of it adds the headers of today's Runtime API.
//! - [`ecr::EcrStandIn`]: ECR's `GetAuthorizationToken`, SigV4 checked, for ECR-named registries.
//! - [`container`]: one container run by an engine, its output collected.
//! - [`images`]: test root filesystems (static busybox, the host's loader and libc) as directories.
//! - [`debian_images`]: real-world images from Debian packages (ffmpeg, ImageMagick, Python, a JVM,
//!   perl; arm64 through qemu; musl), pushed to a [`Registry`].
//! - [`dist`]: the outputs of `build.sh` (run before the tests); [`zip_listing`] reads zips.
//!
//! The API is synchronous: tests are plain `#[test]` functions. A service that cannot start
//! panics at once with one line naming the missing package or the port.

pub mod cache;
pub mod container;
pub mod debian_images;
pub mod dist;
pub mod ecr;
pub mod fault;
pub mod images;
pub mod lambda_sim;
pub mod loader_images;
pub mod oci;
pub mod registry;
pub mod runtime_api;
pub mod runtime_proxy;
pub mod s3;
pub mod service;
pub mod throttle;
pub mod token;
pub mod workspace;
pub mod zip_listing;

pub use registry::Registry;
pub use runtime_api::{Invocation, RuntimeApi};
pub use s3::S3Server;

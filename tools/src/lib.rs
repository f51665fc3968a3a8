//! The library half of `scar-tools`: what the `scar` commands share with the tests.
//!
//! [`oci`] writes OCI image layouts (`scar image from-dir`, `scar bench`'s images, the tests'
//! fixtures); it lives here, beside its users, and not in `scar-rootfs`, whose code the
//! bootstrap carries. [`throttle`] holds each loopback connection to a bandwidth, for the
//! cold-start section of `scar bench` and the ranged-pull tests.

pub mod oci;
pub mod throttle;

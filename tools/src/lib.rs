//! The library half of `scar-tools`: what the `scar` commands share with the tests.
//!
//! [`oci`] writes OCI image layouts (`scar image from-dir`, `scar bench`'s images, the tests'
//! fixtures); it lives here, beside its users, and not in `scar-rootfs`, whose code the
//! bootstrap carries.

pub mod oci;

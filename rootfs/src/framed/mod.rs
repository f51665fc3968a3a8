//! Framed images: an image's root filesystem flattened into one object of independent zstd
//! frames with an index, made for cold starts from S3 (`scar image push`, `SCAR_IMAGE=s3://`).
//! The layout is in [`format`].

pub mod format;
pub mod frame_digest;
pub mod parallel;
pub mod read;
mod tar_walk;
pub mod write;

//! Downloading image archives from S3 (to disk, never held in memory): large ones as parallel
//! ranges written at their offsets ([`super::s3_ranges`]).

use std::path::Path;

use super::error::SourceError;
use super::s3_ranges::{self, Object};
use crate::options::PullOptions;

/// Download `s3://bucket/key` to `dest`.
pub(super) async fn download(
    bucket: &str,
    key: &str,
    dest: &Path,
    options: &PullOptions,
) -> Result<(), SourceError> {
    Object::new(bucket, key, options)
        .download(dest, s3_ranges::in_flight(options))
        .await
}

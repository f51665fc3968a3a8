//! Downloading image archives from S3 (streamed to disk, never held in memory).

use std::path::Path;

use tokio::io::AsyncWriteExt;

use super::error::SourceError;
use crate::options::PullOptions;

/// Download `s3://bucket/key` to `dest`.
pub(super) async fn download(
    bucket: &str,
    key: &str,
    dest: &Path,
    options: &PullOptions,
) -> Result<(), SourceError> {
    let location = format!("s3://{bucket}/{key}");
    let err = |detail: String| SourceError::S3 {
        location: location.clone(),
        detail,
    };
    let from_env;
    let s3 = match &options.s3 {
        Some(s3) => s3,
        None => {
            from_env = crate::aws::S3::from_env();
            &from_env
        }
    };
    let object = s3
        .client()
        .await
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| err(describe(&e)))?;
    let mut body = object.body.into_async_read();
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|source| SourceError::Io {
            op: "create",
            path: dest.to_owned(),
            source,
        })?;
    tokio::io::copy(&mut body, &mut file)
        .await
        .map_err(|e| err(e.to_string()))?;
    file.flush().await.map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// What went wrong with a GetObject, in one line with the way out.
fn describe(
    e: &aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> String {
    crate::aws::describe(
        e,
        "S3",
        &[
            (
                "NoSuchKey",
                "the object does not exist: check the bucket and key in the image name and that the archive was uploaded",
            ),
            (
                "NoSuchBucket",
                "the bucket does not exist: check the bucket in the image name",
            ),
            (
                "AccessDenied",
                "the function's role (or the AWS credentials) needs s3:GetObject on it",
            ),
        ],
    )
}

//! Stage-out: every regular file under the output directory goes to `SCAR_OUTPUT/<relative
//! path>`.
//!
//! Bodies stream from the files (nothing is read whole into memory). Files above
//! [`MULTIPART_THRESHOLD`] go up in parts; at most [`CONCURRENCY`] requests are in flight
//! across all files and parts, which bounds memory and keeps a small function from starving its
//! own network. Each request is retried by the SDK ([`scar_rootfs::aws::S3_MAX_ATTEMPTS`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use scar_rootfs::aws::describe;
use tokio::sync::Semaphore;

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Size of each part (grown for huge files: S3 allows at most 10 000 parts).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Requests in flight at once, across files and parts.
pub const CONCURRENCY: usize = 4;
const MAX_PARTS: u64 = 10_000;

/// The way out of the S3 errors an upload meets most.
const UPLOAD_HINTS: &[(&str, &str)] = &[
    (
        "AccessDenied",
        "the function's role needs s3:PutObject on the output bucket",
    ),
    (
        "NoSuchBucket",
        "the output bucket does not exist: check SCAR_OUTPUT",
    ),
];

/// One file to upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedUpload {
    /// The file on the host.
    pub path: PathBuf,
    /// The destination key.
    pub key: String,
    /// Its size when planned.
    pub size: u64,
    /// `Content-Type` from the extension.
    pub content_type: &'static str,
}

/// A file that was not uploaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadFailure {
    /// The file (relative to the output directory) or its destination URL.
    pub what: String,
    /// What went wrong.
    pub reason: String,
}

/// What stage-out did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// `s3://` URLs of confirmed uploads, sorted.
    pub uploaded: Vec<String>,
    /// Files that could not be uploaded.
    pub failed: Vec<UploadFailure>,
}

/// Walk `output_dir` and plan one upload per regular file under `prefix` (empty or ending
/// in `/`). Symlinks, sockets and the like are reported as failures rather than followed: a
/// script must not be able to make the supervisor upload `/proc/self/environ`.
pub fn plan(output_dir: &Path, prefix: &str) -> (Vec<PlannedUpload>, Vec<UploadFailure>) {
    let mut planned = Vec::new();
    let mut failed = Vec::new();
    let mut pending = vec![output_dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                failed.push(UploadFailure {
                    what: dir.display().to_string(),
                    reason: format!("cannot list: {err}"),
                });
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    failed.push(UploadFailure {
                        what: dir.display().to_string(),
                        reason: format!("cannot list: {err}"),
                    });
                    continue;
                }
            };
            let path = entry.path();
            let relative = path.strip_prefix(output_dir).unwrap_or(&path).to_owned();
            let shown = relative.display().to_string();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(err) => {
                    failed.push(UploadFailure {
                        what: shown,
                        reason: err.to_string(),
                    });
                    continue;
                }
            };
            if meta.is_dir() {
                pending.push(path);
            } else if !meta.is_file() {
                failed.push(UploadFailure {
                    what: shown,
                    reason: "not a regular file (symlinks are not followed)".into(),
                });
            } else {
                match relative_key(&relative) {
                    Some(rel) => planned.push(PlannedUpload {
                        key: format!("{prefix}{rel}"),
                        content_type: content_type(&rel),
                        size: meta.len(),
                        path,
                    }),
                    None => failed.push(UploadFailure {
                        what: shown,
                        reason: "the file name is not UTF-8, so it cannot be an S3 key".into(),
                    }),
                }
            }
        }
    }
    planned.sort_by(|a, b| a.key.cmp(&b.key));
    (planned, failed)
}

fn relative_key(relative: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

/// `Content-Type` for a key, from its extension.
pub fn content_type(key: &str) -> &'static str {
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "out" => "text/plain",
        "csv" => "text/csv",
        "htm" | "html" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "zst" => "application/zstd",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "tif" | "tiff" => "image/tiff",
        "bmp" => "image/bmp",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        _ => "application/octet-stream",
    }
}

/// Part size for a file of `size` bytes: [`PART_SIZE`], grown so that there are at most
/// 10 000 parts.
pub fn part_size(size: u64) -> u64 {
    PART_SIZE.max(size.div_ceil(MAX_PARTS))
}

/// Upload every planned file to `bucket`.
pub async fn upload_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    plans: Vec<PlannedUpload>,
) -> UploadReport {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let results: Vec<(String, Result<(), String>)> = futures::stream::iter(plans)
        .map(|plan| {
            let permits = permits.clone();
            async move {
                let url = format!("s3://{bucket}/{}", plan.key);
                let result = if plan.size > MULTIPART_THRESHOLD {
                    upload_multipart(s3, bucket, &plan, &permits).await
                } else {
                    upload_single(s3, bucket, &plan, &permits).await
                };
                (url, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut report = UploadReport::default();
    for (url, result) in results {
        match result {
            Ok(()) => report.uploaded.push(url),
            Err(reason) => report.failed.push(UploadFailure { what: url, reason }),
        }
    }
    report.uploaded.sort();
    report.failed.sort_by(|a, b| a.what.cmp(&b.what));
    report
}

async fn body(path: &Path, offset: u64, length: u64) -> Result<ByteStream, String> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(length))
        .build()
        .await
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

async fn upload_single(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    plan: &PlannedUpload,
    permits: &Semaphore,
) -> Result<(), String> {
    let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
    s3.put_object()
        .bucket(bucket)
        .key(&plan.key)
        .content_type(plan.content_type)
        .content_length(plan.size as i64)
        .body(body(&plan.path, 0, plan.size).await?)
        .send()
        .await
        .map_err(|e| describe(&e, "S3", UPLOAD_HINTS))?;
    Ok(())
}

async fn upload_multipart(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    plan: &PlannedUpload,
    permits: &Semaphore,
) -> Result<(), String> {
    let created = {
        let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
        s3.create_multipart_upload()
            .bucket(bucket)
            .key(&plan.key)
            .content_type(plan.content_type)
            .send()
            .await
            .map_err(|e| describe(&e, "S3", UPLOAD_HINTS))?
    };
    let upload_id = created
        .upload_id()
        .ok_or("S3 returned no upload id")?
        .to_owned();
    let result = upload_parts(s3, bucket, plan, &upload_id, permits).await;
    if result.is_err() {
        // An abandoned multipart upload is billed storage until a lifecycle rule removes it.
        let abort = s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(&plan.key)
            .upload_id(&upload_id)
            .send()
            .await;
        if let Err(err) = abort {
            tracing::warn!(key = %plan.key, err = %describe(&err, "S3", UPLOAD_HINTS), "could not abort the multipart upload");
        }
    }
    result
}

async fn upload_parts(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    plan: &PlannedUpload,
    upload_id: &str,
    permits: &Semaphore,
) -> Result<(), String> {
    let part_size = part_size(plan.size);
    let count = plan.size.div_ceil(part_size);
    let mut parts: Vec<CompletedPart> = futures::stream::iter(0..count)
        .map(|index| async move {
            let offset = index * part_size;
            let length = part_size.min(plan.size - offset);
            let number = (index + 1) as i32;
            let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
            let part = s3
                .upload_part()
                .bucket(bucket)
                .key(&plan.key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(length as i64)
                .body(body(&plan.path, offset, length).await?)
                .send()
                .await
                .map_err(|e| format!("part {number}: {}", describe(&e, "S3", UPLOAD_HINTS)))?;
            Ok::<_, String>(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .build(),
            )
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number());
    let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(&plan.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| describe(&e, "S3", UPLOAD_HINTS))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_regular_file_is_planned_under_the_prefix_with_its_relative_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("a b.mp4"), b"v").unwrap();
        std::fs::write(dir.path().join("sub/deeper/été.txt"), b"text").unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let (planned, failed) = plan(dir.path(), "results/");
        assert!(failed.is_empty(), "{failed:?}");
        let keys: Vec<_> = planned
            .iter()
            .map(|p| (p.key.as_str(), p.size, p.content_type))
            .collect();
        assert_eq!(
            keys,
            [
                ("results/a b.mp4", 1, "video/mp4"),
                ("results/sub/deeper/été.txt", 4, "text/plain")
            ]
        );
    }

    #[test]
    fn symlinks_are_reported_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let (planned, failed) = plan(dir.path(), "");
        assert!(planned.is_empty());
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].what, "passwd");
    }

    #[test]
    fn a_missing_output_directory_is_a_reported_failure() {
        let (planned, failed) = plan(Path::new("/nonexistent/scar-output"), "");
        assert!(planned.is_empty());
        assert_eq!(failed.len(), 1);
    }

    #[test]
    fn content_types_come_from_the_extension() {
        assert_eq!(content_type("x/Photo.JPG"), "image/jpeg");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(content_type("a.tar.gz"), "application/gzip");
    }

    #[test]
    fn parts_grow_only_for_files_past_ten_thousand_parts() {
        assert_eq!(part_size(200 * 1024 * 1024), PART_SIZE);
        let huge = 5 * 1024 * 1024 * 1024 * 1024u64;
        assert!(huge.div_ceil(part_size(huge)) <= MAX_PARTS);
    }
}

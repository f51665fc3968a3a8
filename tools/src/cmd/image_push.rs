//! `scar image push`: an image, pulled into the cache, written as a framed image (see
//! `scar_rootfs::framed::format`) to S3 or to a file.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use scar_rootfs::cache::{Cache, CacheError, Hold};
use scar_rootfs::framed::write::{WriteError, WriteOptions, Written, write_tree};
use scar_rootfs::image::PreparedImage;

use super::pull::PullArgs;

/// Bytes per part of a multipart upload; smaller objects go up in one PutObject.
const PART: u64 = 64 * 1024 * 1024;
/// Bytes in a MiB.
const MIB: u64 = 1024 * 1024;

/// Arguments of `scar image push`.
#[derive(clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub pull: PullArgs,
    /// Where to put it: s3://BUCKET/KEY.
    #[arg(
        value_name = "DEST",
        required_unless_present = "output",
        conflicts_with = "output"
    )]
    pub dest: Option<String>,
    /// Write it to this file instead (use it as SCAR_IMAGE=framed:FILE).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// zstd compression level (higher: smaller objects, slower pushes; pulls decode about as
    /// fast).
    #[arg(long, default_value_t = scar_rootfs::framed::write::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Huffman-code literals too: objects a few percent smaller, frames decoding about a sixth
    /// slower (worth it only where the network, not the CPU, is the wall).
    #[arg(long)]
    pub compress_literals: bool,
    /// Uncompressed MiB of tar per frame.
    #[arg(long = "frame-mib", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub frame_mib: u64,
}

/// Why `scar image push` failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// DEST is not `s3://bucket/key`.
    #[error("`{0}` is not an S3 location: write s3://BUCKET/KEY (or --output FILE)")]
    Location(String),
    /// The pulled image could not be held against eviction.
    #[error("{0}")]
    Hold(CacheError),
    /// Writing the framed image failed.
    #[error("cannot write {image} as a framed image to {path}: {error}")]
    Write {
        /// The image.
        image: String,
        /// The file being written.
        path: PathBuf,
        /// Why.
        error: WriteError,
    },
    /// A file operation failed.
    #[error("cannot {op} {path}: {error}")]
    File {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The upload failed (the message says what to do).
    #[error("cannot upload to s3://{bucket}/{key}: {message}")]
    Upload {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The service's answer and the way out.
        message: String,
    },
}

/// Run `scar image push`.
pub fn run(args: PushArgs) -> ExitCode {
    let dest = match &args.dest {
        Some(dest) => match parse_s3(dest) {
            Some(location) => Some(location),
            None => return super::fail(&PushError::Location(dest.clone())),
        },
        None => None,
    };
    if let Some((bucket, key)) = &dest
        && let Err(err) = check_bucket(bucket, key)
    {
        return super::fail(&err);
    }
    let (prepared, report) = match super::pull::prepare(&args.pull) {
        Ok(pulled) => pulled,
        Err(code) => return code,
    };
    eprintln!("{}", super::pull::summary(&args.pull.image, &report));
    let started = Instant::now();
    let result = match (&dest, &args.output) {
        (Some((bucket, key)), _) => to_s3(&args, &prepared, bucket, key),
        (None, Some(file)) => to_file(&args, &prepared, file),
        // clap requires one of them.
        (None, None) => return ExitCode::FAILURE,
    };
    let written = match result {
        Ok(written) => written,
        Err(err) => return super::fail(&err),
    };
    let name = match (&dest, &args.output) {
        (Some((bucket, key)), _) => format!("s3://{bucket}/{key}"),
        // Absolute, so the name works from any directory.
        (None, file) => {
            let file = file.as_deref().unwrap_or(Path::new(""));
            let file = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
            format!("framed:{}", file.display())
        }
    };
    let index = &written.index;
    eprintln!("frames: {}", index.frames.len());
    eprintln!("tar bytes: {}", index.tar_size());
    eprintln!(
        "compressed bytes: {} ({} with the index)",
        index.compressed_size(),
        written.object_len
    );
    eprintln!("seconds: {:.2}", started.elapsed().as_secs_f64());
    println!("SCAR_IMAGE={name}@{}", written.index_digest);
    ExitCode::SUCCESS
}

/// `s3://bucket/key` as (bucket, key).
fn parse_s3(dest: &str) -> Option<(String, String)> {
    let (bucket, key) = dest.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_owned(), key.to_owned()))
}

/// Write the framed image of `prepared` to `path`, fsynced; the image is held in the cache
/// meanwhile, so no eviction removes the tree being read.
fn write_file(
    args: &PushArgs,
    prepared: &PreparedImage,
    path: &Path,
) -> Result<Written, PushError> {
    let _hold = Hold::take(&prepared.root, &args.pull.image).map_err(PushError::Hold)?;
    let file_err = |op| {
        move |error| PushError::File {
            op,
            path: path.to_owned(),
            error,
        }
    };
    let file = File::create(path).map_err(file_err("create"))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let options = WriteOptions {
        level: args.level,
        compress_literals: args.compress_literals,
        frame_target: args.frame_mib * MIB,
        ..WriteOptions::default()
    };
    let written = write_tree(
        &prepared.root,
        &prepared.config,
        &args.pull.image,
        &mut out,
        &options,
    )
    .map_err(|error| PushError::Write {
        image: args.pull.image.clone(),
        path: path.to_owned(),
        error,
    })?;
    let file = out
        .into_inner()
        .map_err(|e| file_err("write")(e.into_error()))?;
    file.sync_all().map_err(file_err("fsync"))?;
    Ok(written)
}

/// Removes a temporary file when dropped (after a failure as after a rename, when it is gone).
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `--output FILE`: write `FILE.tmp-<pid>`, then rename it, so FILE is never half written.
fn to_file(args: &PushArgs, prepared: &PreparedImage, file: &Path) -> Result<Written, PushError> {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let temp = Temp(PathBuf::from(name));
    let written = write_file(args, prepared, &temp.0)?;
    std::fs::rename(&temp.0, file).map_err(|error| PushError::File {
        op: "rename the written image to",
        path: file.to_owned(),
        error,
    })?;
    // The rename itself survives a crash once the directory is synced (best effort: some file
    // systems refuse fsync on a directory).
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!("fsync {}: {e}", dir.display());
    }
    Ok(written)
}

/// To S3: a temporary file in the cache's ingest area, uploaded, then removed.
fn to_s3(
    args: &PushArgs,
    prepared: &PreparedImage,
    bucket: &str,
    key: &str,
) -> Result<Written, PushError> {
    let cache_dir = args.pull.cache.dir();
    let cache = Cache::open(&cache_dir).map_err(PushError::Hold)?;
    let temp = Temp(cache.ingest_path("push.scarf"));
    if let Some(dir) = temp.0.parent() {
        std::fs::create_dir_all(dir).map_err(|error| PushError::File {
            op: "create",
            path: dir.to_owned(),
            error,
        })?;
    }
    let written = write_file(args, prepared, &temp.0)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| PushError::File {
            op: "start the upload of",
            path: temp.0.clone(),
            error,
        })?;
    runtime.block_on(upload(&temp.0, written.object_len, bucket, key))?;
    Ok(written)
}

/// Fail early, before pulling and writing, when the bucket does not exist. Any other answer
/// (403 without s3:ListBucket, which PutObject does not need) lets the upload try.
fn check_bucket(bucket: &str, key: &str) -> Result<(), PushError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PushError::Upload {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: e.to_string(),
        })?;
    let answer = runtime.block_on(async {
        let s3 = scar_rootfs::aws::S3::from_env();
        s3.client().await.head_bucket().bucket(bucket).send().await
    });
    match answer {
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {
            Err(PushError::Upload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: format!("NoSuchBucket: {}", HINTS[0].1),
            })
        }
        Err(e) => {
            tracing::debug!(
                "HeadBucket {bucket}: {}; trying the upload",
                scar_rootfs::aws::error_chain(&e)
            );
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

/// What to do about the usual refusals.
const HINTS: &[(&str, &str)] = &[
    (
        "NoSuchBucket",
        "the bucket does not exist: create it or fix the name",
    ),
    (
        "AccessDenied",
        "the credentials need s3:PutObject on the key (and s3:AbortMultipartUpload for images of 64 MiB or more)",
    ),
];

/// Upload `path` (`len` bytes) to `bucket`/`key`: one PutObject below [`PART`], else a
/// multipart upload of [`PART`]-byte parts, aborted on any failure.
async fn upload(path: &Path, len: u64, bucket: &str, key: &str) -> Result<(), PushError> {
    let s3 = scar_rootfs::aws::S3::from_env();
    let client = s3.client().await;
    let failed = |message: String| PushError::Upload {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
    };
    if len < PART {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| failed(scar_rootfs::aws::error_chain(&e)))?;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| failed(scar_rootfs::aws::describe(&e, "S3", HINTS)))?;
        return Ok(());
    }
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| failed(scar_rootfs::aws::describe(&e, "S3", HINTS)))?;
    let Some(upload_id) = created.upload_id() else {
        return Err(failed("S3 started a multipart upload without an id".into()));
    };
    let result = upload_parts(client, path, bucket, key, upload_id).await;
    if let Err(message) = result {
        let abort = client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = abort {
            tracing::warn!(
                "could not abort the multipart upload {upload_id}: {}",
                scar_rootfs::aws::describe(&e, "S3", HINTS)
            );
        }
        return Err(failed(message));
    }
    Ok(())
}

/// The parts of a multipart upload, then its completion; the error is the message.
async fn upload_parts(
    client: &aws_sdk_s3::Client,
    path: &Path,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut parts = Vec::new();
    for number in 1i32.. {
        let mut part = Vec::with_capacity(PART as usize);
        (&mut file)
            .take(PART)
            .read_to_end(&mut part)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if part.is_empty() {
            break;
        }
        let sent = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| scar_rootfs::aws::describe(&e, "S3", HINTS))?;
        parts.push(
            CompletedPart::builder()
                .set_e_tag(sent.e_tag().map(str::to_owned))
                .part_number(number)
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| scar_rootfs::aws::describe(&e, "S3", HINTS))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_need_a_bucket_and_a_key() {
        assert_eq!(
            parse_s3("s3://b/k/x.scarf"),
            Some(("b".into(), "k/x.scarf".into()))
        );
        for bad in ["s3://b", "s3://b/", "s3:///k", "b/k", "framed:x"] {
            assert_eq!(parse_s3(bad), None, "{bad}");
        }
    }
}

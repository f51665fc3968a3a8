//! Staging: the per-request directory and the streamed download of an input object.
//!
//! `/tmp/<request-id>/input` and `/tmp/<request-id>/output` are the paths the paper's scripts
//! use (`OUTPUT_DIR="/tmp/$REQUEST_ID/output"`), so they are bound into the container at the
//! same paths. The directory is removed when the [`RequestDir`] is dropped, which also happens
//! while a panicking handler unwinds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use scar_rootfs::aws::{describe, error_chain};
use scar_rootfs::cache::remove_tree;
use tokio::io::AsyncWriteExt;

use crate::event::S3Input;

/// Where request directories live: Lambda's only writable filesystem.
pub const REQUEST_ROOT: &str = "/tmp";

/// Buffer between the S3 body stream and the file: few, large writes without holding the
/// object in memory.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The request id cannot be used as a directory name.
    #[error("request id {0:?} is not a safe directory name (letters, digits, `-`, `_`, `.` only)")]
    UnsafeRequestId(String),
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The key does not end in a file name.
    #[error(
        "s3://{bucket}/{key} does not end in a file name: only objects, not folders, can be processed"
    )]
    NoFileName {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The object does not exist.
    #[error("s3://{bucket}/{key} does not exist (or the function's role may not read it)")]
    NoSuchObject {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// S3 refused or failed the download.
    #[error("downloading s3://{bucket}/{key}: {message}")]
    Download {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// What went wrong, with the SDK's context.
        message: String,
    },
    /// The download did not finish before the container's stop time.
    #[error("downloading s3://{bucket}/{key} did not finish before the deadline")]
    Timeout {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StageError + 'a {
    move |source| StageError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// `/tmp/<request-id>` with `input/`, `output/`, the read-only `.scar/` (event file, script)
/// and the engine's private `.scratch/`.
#[derive(Debug)]
pub struct RequestDir {
    root: PathBuf,
    /// `flock` on [`BUSY`] for the directory's life: the sweep of leftovers
    /// ([`leftover_request_dirs`]) of another bootstrap on the same host (tests, `scar local`)
    /// leaves a live directory alone.
    _busy: Option<nix::fcntl::Flock<std::fs::File>>,
}

/// The file under a request directory that its live owner holds locked.
const BUSY: &str = ".busy";

impl RequestDir {
    /// Create a fresh request directory under `base` (leftovers of an earlier attempt of the same
    /// request are removed first).
    pub fn create(base: &Path, request_id: &str) -> Result<Self, StageError> {
        if !is_safe_request_id(request_id) {
            return Err(StageError::UnsafeRequestId(request_id.to_owned()));
        }
        let mut dir = Self {
            root: base.join(request_id),
            _busy: None,
        };
        if dir.root.exists() {
            remove_tree(&dir.root).map_err(io("removing the leftover", &dir.root))?;
        }
        // Locked before `.scar/` and `.scratch/` exist: a concurrent invocation's sweep takes a
        // directory holding both for a leftover unless its lock is held.
        std::fs::create_dir_all(&dir.root).map_err(io("creating", &dir.root))?;
        let busy = dir.root.join(BUSY);
        let file = std::fs::File::create(&busy).map_err(io("creating", &busy))?;
        dir._busy = Some(
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
                |(_, errno)| StageError::Io {
                    action: "locking",
                    path: busy.clone(),
                    source: errno.into(),
                },
            )?,
        );
        for sub in [dir.input(), dir.output(), dir.meta(), dir.scratch()] {
            std::fs::create_dir_all(&sub).map_err(io("creating", &sub))?;
        }
        // The image's `User` may not be the uid the supervisor runs as; the output directory
        // must stay writable for it. Nothing else shares this sandbox's /tmp.
        set_mode(&dir.output(), 0o777)?;
        Ok(dir)
    }

    /// `/tmp/<request-id>`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `/tmp/<request-id>/input`.
    pub fn input(&self) -> PathBuf {
        self.root.join("input")
    }

    /// `/tmp/<request-id>/output`.
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }

    /// `/tmp/<request-id>/.scar`: event file and script, bound read-only.
    pub fn meta(&self) -> PathBuf {
        self.root.join(".scar")
    }

    /// `/tmp/<request-id>/.scratch`: the engine's private space, not bound into the container.
    pub fn scratch(&self) -> PathBuf {
        self.root.join(".scratch")
    }

    /// Empty `input/` and `output/` between two records of one event.
    pub fn reset(&self) -> Result<(), StageError> {
        for sub in [self.input(), self.output()] {
            remove_tree(&sub).map_err(io("emptying", &sub))?;
            std::fs::create_dir_all(&sub).map_err(io("creating", &sub))?;
        }
        set_mode(&self.output(), 0o777)
    }
}

impl Drop for RequestDir {
    fn drop(&mut self) {
        // The script may have left read-only directories (`chmod -R a-w` on its outputs).
        if let Err(err) = remove_tree(&self.root) {
            tracing::warn!(path = %self.root.display(), %err, "could not remove the request directory");
        }
    }
}

/// The request directories under `base` that earlier invocations left (the sandbox's previous
/// process crashed or was stopped mid-invocation, or a removal failed): directories named like
/// a request id, owned by this uid, holding the `.scar/` and `.scratch/` that
/// [`RequestDir::create`] makes, not `keep` (the cache directory, when it is under `base`) and
/// not in use (its [`BUSY`] file locked by a live bootstrap). Symlinks are never taken (nor
/// followed).
pub fn leftover_request_dirs(base: &Path, keep: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_safe_request_id))
        .map(|e| e.path())
        .filter(|p| p != keep)
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == me))
        .filter(|p| is_dir(&p.join(".scar")) && is_dir(&p.join(".scratch")))
        .filter(|p| !in_use(p))
        .collect()
}

/// Whether a live bootstrap holds `dir`'s [`BUSY`] lock (a directory without one is not in use).
fn in_use(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(BUSY)) else {
        return false;
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err()
}

/// Remove `dirs` (see [`leftover_request_dirs`]), read-only ones included; returns how many
/// went. A failure is logged and the others are still removed.
pub fn remove_request_dirs(dirs: &[PathBuf]) -> usize {
    let mut removed = 0;
    for dir in dirs {
        match remove_tree(dir) {
            Ok(()) => removed += 1,
            Err(err) => {
                tracing::warn!(path = %dir.display(), %err, "could not remove an earlier request's directory")
            }
        }
    }
    removed
}

/// Whether `request_id` can name a directory under `/tmp` without escaping it.
pub fn is_safe_request_id(request_id: &str) -> bool {
    !request_id.is_empty()
        && request_id.len() <= 128
        && request_id != "."
        && request_id != ".."
        && request_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", path))
}

/// The file name an input object gets: the last segment of its key. A segment longer than
/// 255 bytes (which `File::create` would refuse) becomes `<stem>~<hash><.ext>`: the
/// stem cut at a character boundary, 16 hex digits of the sha256 of the whole key (two keys
/// differing only past the cut get two names), and the extension when it has at most 16
/// bytes, so that tools going by the extension still do. The script finds the whole key in
/// `SCAR_INPUT_KEY`.
pub fn input_file_name(input: &S3Input) -> Result<String, StageError> {
    let name = input.key.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || name == "." || name == ".." {
        return Err(StageError::NoFileName {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
        });
    }
    Ok(crate::event::fit_file_name(name, input.key.as_bytes()))
}

/// Download `input` to `dest`, streaming; stop at `until`. Returns the size written.
pub async fn download(
    s3: &aws_sdk_s3::Client,
    input: &S3Input,
    dest: &Path,
    until: Instant,
) -> Result<u64, StageError> {
    let work = download_unbounded(s3, input, dest);
    match tokio::time::timeout_at(until.into(), work).await {
        Ok(result) => result,
        Err(_) => Err(StageError::Timeout {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
        }),
    }
}

async fn download_unbounded(
    s3: &aws_sdk_s3::Client,
    input: &S3Input,
    dest: &Path,
) -> Result<u64, StageError> {
    let failed = |message: String| StageError::Download {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        message,
    };
    let response = s3
        .get_object()
        .bucket(&input.bucket)
        .key(&input.key)
        .send()
        .await
        .map_err(|err| {
            let missing = err.as_service_error().is_some_and(|e| e.is_no_such_key())
                || err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404);
            if missing {
                StageError::NoSuchObject {
                    bucket: input.bucket.clone(),
                    key: input.key.clone(),
                }
            } else {
                failed(describe(
                    &err,
                    "S3",
                    &[(
                        "AccessDenied",
                        "the function's role needs s3:GetObject on the input object",
                    )],
                ))
            }
        })?;
    let file = tokio::fs::File::create(dest)
        .await
        .map_err(io("creating", dest))?;
    let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut body = response.body;
    let mut written = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| failed(error_chain(&e)))? {
        writer
            .write_all(&chunk)
            .await
            .map_err(io("writing", dest))?;
        written += chunk.len() as u64;
    }
    writer.flush().await.map_err(io("writing", dest))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(key: &str) -> S3Input {
        S3Input {
            bucket: "b".into(),
            key: key.into(),
            size: None,
            etag: None,
            event_time: None,
        }
    }

    #[test]
    fn the_input_file_is_named_after_the_last_key_segment() {
        assert_eq!(
            input_file_name(&input("a/b/My Film.mp4")).unwrap(),
            "My Film.mp4"
        );
        assert_eq!(input_file_name(&input("plain")).unwrap(), "plain");
        for bad in ["dir/", "a/..", "."] {
            assert!(input_file_name(&input(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_name_over_255_bytes_is_shortened_keeping_its_extension() {
        let long = format!("dir/{}.mp4", "a".repeat(300));
        let name = input_file_name(&input(&long)).unwrap();
        assert_eq!(name.len(), 255, "{name}");
        assert!(name.ends_with(".mp4"), "{name}");
        let (stem, rest) = name.split_once('~').expect("a ~ before the hash");
        assert_eq!(stem, "a".repeat(255 - 1 - 16 - 4));
        let hash = rest.strip_suffix(".mp4").unwrap();
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
        // The hash is of the whole key: the same name under another prefix differs.
        let elsewhere = input_file_name(&input(&format!("other/{}.mp4", "a".repeat(300)))).unwrap();
        assert_ne!(name, elsewhere);
        // Stable: staging the same key twice gives the same name.
        assert_eq!(input_file_name(&input(&long)).unwrap(), name);
    }

    #[test]
    fn a_name_of_exactly_255_bytes_is_kept() {
        let exact = "b".repeat(251) + ".txt";
        assert_eq!(input_file_name(&input(&exact)).unwrap(), exact);
    }

    #[test]
    fn a_long_multibyte_name_is_cut_at_a_character_boundary() {
        // "é" is 2 bytes and "😀" 4: no cut position may fall inside one.
        for filler in ["é", "😀", "aé"] {
            let long = filler.repeat(200) + ".txt";
            let name = input_file_name(&input(&long)).unwrap();
            assert!(name.len() <= 255, "{} bytes", name.len());
            assert!(name.len() > 255 - 4, "{} bytes: cut too short", name.len());
            assert!(name.ends_with(".txt"), "{name}");
            let stem = name.split('~').next().unwrap();
            assert!(long.starts_with(stem), "{stem} is not a prefix of the name");
        }
    }

    #[test]
    fn two_long_keys_differing_only_at_the_end_get_different_names() {
        let base = "x".repeat(400);
        let one = input_file_name(&input(&format!("{base}1.csv"))).unwrap();
        let two = input_file_name(&input(&format!("{base}2.csv"))).unwrap();
        assert_ne!(one, two);
        assert!(one.len() <= 255 && two.len() <= 255);
        assert!(one.ends_with(".csv") && two.ends_with(".csv"));
    }

    #[test]
    fn an_extension_longer_than_16_bytes_or_a_leading_dot_is_not_kept_apart() {
        let long_ext = format!("{}.{}", "n".repeat(250), "e".repeat(20));
        let name = input_file_name(&input(&long_ext)).unwrap();
        assert!(name.len() <= 255);
        assert!(!name.contains('.'), "{name}");
        let dotfile = format!(".{}", "h".repeat(300));
        let name = input_file_name(&input(&dotfile)).unwrap();
        assert_eq!(name.len(), 255);
        assert!(name.starts_with(".hhh"), "{name}");
    }

    #[test]
    fn a_request_directory_is_created_fresh_and_removed_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let dir = RequestDir::create(base.path(), "8f5b-11ee").unwrap();
        let root = dir.root().to_owned();
        std::fs::write(dir.output().join("x"), b"x").unwrap();
        assert!(dir.input().is_dir() && dir.meta().is_dir() && dir.scratch().is_dir());
        dir.reset().unwrap();
        assert!(!dir.output().join("x").exists());
        drop(dir);
        assert!(!root.exists());
    }

    #[test]
    fn a_leftover_directory_of_the_same_request_is_replaced() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("r1/output")).unwrap();
        std::fs::write(base.path().join("r1/output/stale"), b"old").unwrap();
        let dir = RequestDir::create(base.path(), "r1").unwrap();
        assert!(!dir.output().join("stale").exists());
    }

    #[test]
    fn leftover_request_directories_are_found_and_removed_even_read_only_and_nothing_else() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let mut old = RequestDir::create(base.path(), "0b1e-old").unwrap();
        let old_root = old.root().to_owned();
        // As a crashed process leaves it: the lock went with the process.
        old._busy = None;
        std::fs::create_dir_all(old.output().join("deep/er")).unwrap();
        std::fs::write(old.output().join("deep/er/result"), b"x").unwrap();
        for d in ["deep/er", "deep", ""] {
            std::fs::set_permissions(old.output().join(d), std::fs::Permissions::from_mode(0o555))
                .unwrap();
        }
        std::mem::forget(old); // nor does its Drop run
        let plain = base.path().join("not-a-request");
        std::fs::create_dir(&plain).unwrap();
        let cache = base.path().join("scar");
        std::fs::create_dir_all(cache.join(".scar")).unwrap();
        std::fs::create_dir_all(cache.join(".scratch")).unwrap();
        std::os::unix::fs::symlink(&old_root, base.path().join("link-to-old")).unwrap();
        let live = RequestDir::create(base.path(), "live-one").unwrap();
        let found = leftover_request_dirs(base.path(), &cache);
        assert_eq!(found, vec![old_root.clone()]);
        assert_eq!(remove_request_dirs(&found), 1);
        assert!(!old_root.exists());
        assert!(plain.exists() && cache.exists() && live.root().exists());
    }

    #[test]
    fn request_ids_that_could_escape_tmp_are_refused() {
        let base = tempfile::tempdir().unwrap();
        for bad in ["..", "../etc", "a/b", "", "x y"] {
            assert!(
                matches!(
                    RequestDir::create(base.path(), bad),
                    Err(StageError::UnsafeRequestId(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_directory_is_removed_when_a_handler_panics() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("r-panic");
        let path = base.path().to_owned();
        let result = std::panic::catch_unwind(move || {
            let _dir = RequestDir::create(&path, "r-panic").unwrap();
            panic!("handler bug");
        });
        assert!(result.is_err());
        assert!(!root.exists());
    }
}

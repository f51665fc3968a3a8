//! Builds in `tmp/` and whether they are abandoned: each is locked by its builder through its
//! [`BUILDING`] file, which also carries the build's heartbeat (its mtime).

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::{CacheError, io_err};
use super::lock::{Attempt, BUILDING, CacheLock};
use super::remove::remove_tree;

/// The file inside a build directory holding the bytes its builder expects to take (see
/// `reserve.rs`).
pub const RESERVED: &str = ".reserved";

static GRAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether the build directory `dir` is abandoned: nobody holds its [`BUILDING`] lock and its
/// heartbeat is at least `silent` old. A directory without that file is not a build of this
/// version (an eviction's or a failed removal's grave, or a build of an older version, which
/// held the cache's lock throughout) and counts as abandoned. `Some(lock)` keeps the build's
/// lock held while the caller removes it.
fn abandoned(dir: &Path, silent: Duration) -> Result<Option<Option<CacheLock>>, CacheError> {
    let path = dir.join(BUILDING);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Ok(Some(None));
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if age < silent {
        return Ok(None);
    }
    Ok(match CacheLock::attempt(&path)? {
        Attempt::Got(lock) => Some(Some(lock)),
        Attempt::Busy(_) => None,
    })
}

/// Remove the build directory `dir` if abandoned (see [`abandoned`]): renamed away first
/// (a builder that comes back finds nothing to publish), then removed. Whether it was. Call
/// with the cache's exclusive lock held: publication takes it too, so a build is never
/// published half removed.
pub(super) fn remove_build(dir: &Path, silent: Duration) -> Result<bool, CacheError> {
    let Some(_build_lock) = abandoned(dir, silent)? else {
        return Ok(false);
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = match dir.parent() {
        Some(parent) if !name.starts_with("swept-") => {
            let n = GRAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let grave = parent.join(format!("swept-{}-{n}-{name}", std::process::id()));
            match std::fs::rename(dir, &grave) {
                Ok(()) => grave,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_err("rename", dir)(e)),
            }
        }
        // Already a grave (a removal that failed half way): removed where it is.
        _ => dir.to_owned(),
    };
    remove_tree(&target).map_err(io_err("remove", &target))?;
    Ok(true)
}

//! Why the cache could not do something.

use std::io;
use std::path::{Path, PathBuf};

/// Why the cache could not do something.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Not enough room even after evicting everything evictable.
    #[error(
        "image needs about {need_mib} MiB, {free_mib} MiB free in {dir}: raise SCAR_CACHE_MAX_MB, use a larger /tmp (Lambda ephemeral storage) or a smaller image"
    )]
    CannotFit {
        /// Estimated need in MiB.
        need_mib: u64,
        /// What is available in MiB.
        free_mib: u64,
        /// The cache directory.
        dir: PathBuf,
    },
    /// The cache directory, `refs/` or `rootfs/` belongs to another user or is writable by
    /// others (the text names the path, its owner and mode, and the fix).
    #[error("{0}")]
    Untrusted(String),
    /// A metadata file is not what this version writes.
    #[error("{path} is corrupt ({source}): remove it or run `scar cache gc`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CacheError + use<'a> {
    move |source| CacheError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

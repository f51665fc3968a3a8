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
    /// Not enough room even after evicting everything evictable (images in use are not).
    #[error(
        "image needs about {need_mib} MiB, {free_mib} MiB free in {dir}{}",
        cannot_fit_fix(*in_use, *in_use_mib)
    )]
    CannotFit {
        /// Estimated need in MiB.
        need_mib: u64,
        /// What is available in MiB.
        free_mib: u64,
        /// The cache directory.
        dir: PathBuf,
        /// How many images could not be evicted because running containers use them.
        in_use: usize,
        /// Their size in MiB.
        in_use_mib: u64,
    },
    /// The image's root filesystem was evicted between finding it and starting a run in it.
    #[error(
        "the image was evicted from the cache while this invocation started: {image} ({dir} is gone); retry: the next attempt pulls it again"
    )]
    Evicted {
        /// The image as the user named it.
        image: String,
        /// Its directory in the cache.
        dir: PathBuf,
    },
    /// A running container uses the image, so it cannot be removed now.
    #[error(
        "{image} is in use by a running container (scar run, scar local or an invocation using the cache {dir}): it was not removed; remove it once that run ends"
    )]
    InUse {
        /// The image (its reference, else its ChainID).
        image: String,
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

/// The advice after [`CacheError::CannotFit`]'s figures: images in use mean the cache is full
/// only for now.
fn cannot_fit_fix(in_use: usize, in_use_mib: u64) -> String {
    let fix =
        "raise SCAR_CACHE_MAX_MB, use a larger /tmp (Lambda ephemeral storage) or a smaller image";
    match in_use {
        0 => format!(": {fix}"),
        n => format!(
            ": the cache is full and in use ({n} image{} of {in_use_mib} MiB used by running containers cannot be evicted now): retry once they end, or {fix}",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// Create `dir` and its parents, 0755 whatever the umask says: `trust::check` refuses a
/// group-writable cache, and nobody else may swap what is inside.
pub(super) fn make_dirs(dir: &Path) -> Result<(), CacheError> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
        .create(dir)
        .map_err(io_err("mkdir", dir))
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

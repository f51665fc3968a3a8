//! The cache lock: one `flock`ed file shared by every process using the cache on this host.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::CacheError;

/// A held lock on the cache; released on drop.
pub struct CacheLock {
    _lock: Flock<File>,
}

impl CacheLock {
    /// Shared: readers resolving a cached image.
    pub fn shared(path: &Path) -> Result<Self, CacheError> {
        Self::take(path, FlockArg::LockShared)
    }

    /// Exclusive: anyone publishing, evicting or collecting garbage.
    pub fn exclusive(path: &Path) -> Result<Self, CacheError> {
        Self::take(path, FlockArg::LockExclusive)
    }

    fn take(path: &Path, arg: FlockArg) -> Result<Self, CacheError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| CacheError::Io {
                op: "open lock",
                path: path.to_owned(),
                source,
            })?;
        let lock = Flock::lock(file, arg).map_err(|(_, errno)| CacheError::Io {
            op: "flock",
            path: PathBuf::from(path),
            source: std::io::Error::from(errno),
        })?;
        Ok(Self { _lock: lock })
    }
}

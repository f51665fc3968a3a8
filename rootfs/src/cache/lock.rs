//! The cache lock: one `flock`ed file shared by every process using the cache on this host.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::CacheError;

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

    /// Exclusive if nobody holds the lock now, else `None` at once: for housekeeping that
    /// must never wait behind (or hold up) a pull, such as the sweep of leftovers.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>, CacheError> {
        match Self::take(path, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err(CacheError::Io {
                op: "flock",
                source,
                ..
            }) if source.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
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

//! The cache's locks: `flock`ed files. The cache's own (`<cache>/lock`) is shared by every
//! process using the cache; the same type also locks one image's pull (`pulls/<chainid>.lock`)
//! and one build in `tmp/` (its `.building`), whose holders write their heartbeat through it.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::CacheError;

/// The lock file inside a build directory under `tmp/`, held by its builder while it runs.
pub const BUILDING: &str = ".building";

/// A held lock on the cache; released on drop.
pub struct CacheLock {
    lock: Flock<File>,
}

/// What an attempt to take a lock without waiting found.
pub(super) enum Attempt {
    /// Taken.
    Got(CacheLock),
    /// Someone holds it; what its file says (a heartbeat line, or nothing).
    Busy(String),
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
        match Self::attempt(path)? {
            Attempt::Got(lock) => Ok(Some(lock)),
            Attempt::Busy(_) => Ok(None),
        }
    }

    /// Exclusive if nobody holds the lock now, else what the holder wrote in the file.
    pub(super) fn attempt(path: &Path) -> Result<Attempt, CacheError> {
        let file = open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Attempt::Got(Self { lock })),
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut line = String::new();
                // A line being rewritten may read torn: it then differs, which only counts as
                // a sign of life.
                let _ = file.read_to_string(&mut line);
                Ok(Attempt::Busy(line))
            }
            Err((_, errno)) => Err(flock_err(path, errno)),
        }
    }

    fn take(path: &Path, arg: FlockArg) -> Result<Self, CacheError> {
        let file = open(path)?;
        let lock = Flock::lock(file, arg).map_err(|(_, errno)| flock_err(path, errno))?;
        Ok(Self { lock })
    }

    /// Replace the file's content with `line` (a heartbeat), through the locked descriptor;
    /// its modification time moves with it.
    pub(super) fn write_beat(&self, line: &[u8]) -> std::io::Result<()> {
        self.lock.write_all_at(line, 0)?;
        self.lock.set_len(line.len() as u64)
    }

    /// Whether the locked file was unlinked since it was opened (a sweep removed it): the
    /// lock then guards nothing that others can see.
    pub(super) fn unlinked(&self) -> bool {
        self.lock.metadata().is_ok_and(|m| m.nlink() == 0)
    }
}

fn open(path: &Path) -> Result<File, CacheError> {
    open_lock_file(path).map_err(|source| CacheError::Io {
        op: "open lock",
        path: path.to_owned(),
        source,
    })
}

/// Open (creating it, never truncating: a heartbeat may be in it) a lock file for `flock`, read
/// and write: on NFS a shared lock needs the file open for reading, an exclusive one for writing.
pub(super) fn open_lock_file(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn flock_err(path: &Path, errno: nix::errno::Errno) -> CacheError {
    CacheError::Io {
        op: "flock",
        path: PathBuf::from(path),
        source: std::io::Error::from(errno),
    }
}

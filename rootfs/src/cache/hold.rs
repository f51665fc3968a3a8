//! Which cached images are in use: a run holds its image, and eviction takes only what nobody
//! holds.
//!
//! Each published image has a lock file, `rootfs/<chainid hex>/in-use` (made when it is
//! published, or by the first hold of an image an older version published). A run (a
//! container of the bootstrap, `scar run`, `scar local`) takes a shared `flock` on it for its
//! whole life ([`Hold`]); eviction takes it exclusive without waiting ([`Claim`]) and removes
//! the image only with it held, so that concurrent invocations of Lambda Managed Instances, or
//! two processes sharing one cache, never lose the root filesystem under a running container.
//! `flock` locks belong to an open file, not to a process: two holds of one bootstrap count as
//! two.
//!
//! A hold may open the file just before an eviction renames the image away and unlinks the
//! file; its `flock` then waits for the eviction to end and finds the file unlinked (no link
//! left), which is the [`CacheError::Evicted`] error rather than a hold on nothing. Eviction
//! keeps an image it will not remove claimed only while it counts what it can free, so a hold
//! otherwise waits only for the removal of its own image, then fails.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::error::CacheError;
use super::lock::open_lock_file;

/// The lock file's name inside an image's directory.
pub(super) const IN_USE: &str = "in-use";

/// An image held by a run; it cannot be evicted until this is dropped.
#[derive(Debug)]
pub struct Hold {
    /// `None` on a read-only file system, where nothing can be evicted either.
    _lock: Option<Flock<File>>,
}

impl Hold {
    /// Hold the cached image whose root filesystem is `root` (`PreparedImage::root`,
    /// `<cache>/rootfs/<id>/root`) for as long as the returned value lives. `image` names it
    /// in the error: [`CacheError::Evicted`] when the image was evicted (or is being evicted)
    /// since it was found. Costs one `open`, one `flock` and one `fstat`; waits only while an
    /// eviction has the image's lock, which it then removes (or, rarely, looked at and kept).
    pub fn take(root: &Path, image: &str) -> Result<Self, CacheError> {
        let dir = root.parent().unwrap_or(root);
        let path = dir.join(IN_USE);
        let evicted = || CacheError::Evicted {
            image: image.to_owned(),
            dir: dir.to_owned(),
        };
        let file = match open(&path) {
            Ok(file) => file,
            // The image's directory is gone: renamed away by an eviction.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(evicted()),
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                tracing::debug!(path = %path.display(), "read-only cache: the image is not held, nothing can evict it either");
                return Ok(Self { _lock: None });
            }
            Err(source) => {
                return Err(CacheError::Io {
                    op: "open",
                    path,
                    source,
                });
            }
        };
        let lock =
            Flock::lock(file, FlockArg::LockShared).map_err(|(_, errno)| CacheError::Io {
                op: "flock",
                path: path.clone(),
                source: io::Error::from(errno),
            })?;
        // Unlinked while this waited for the lock: the eviction that had it removed the image.
        let links = lock
            .metadata()
            .map_err(|source| CacheError::Io {
                op: "fstat",
                path,
                source,
            })?
            .nlink();
        if links == 0 {
            return Err(evicted());
        }
        Ok(Self { _lock: Some(lock) })
    }
}

/// What eviction finds when it tries to take an image.
pub(super) enum Claimed {
    /// Nobody holds it: it may be removed while the claim lives.
    Free(Claim),
    /// A run holds it.
    InUse,
    /// Its directory is gone (someone else removed it).
    Gone,
}

/// The exclusive lock on an image, taken to remove it: no [`Hold`] can start until it is
/// dropped, and one that waited for it then finds the lock file unlinked.
pub(super) struct Claim {
    _lock: Flock<File>,
}

impl Claim {
    /// Claim the image in `dir` (`rootfs/<id>`) if nobody holds it, without waiting.
    pub(super) fn try_take(dir: &Path) -> Result<Claimed, CacheError> {
        let path = dir.join(IN_USE);
        let file = match open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claimed::Gone),
            Err(source) => {
                return Err(CacheError::Io {
                    op: "open",
                    path,
                    source,
                });
            }
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Claimed::Free(Self { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Claimed::InUse),
            Err((_, errno)) => Err(CacheError::Io {
                op: "flock",
                path,
                source: io::Error::from(errno),
            }),
        }
    }

    /// Unlink the lock file once its image has been renamed to `moved` (the same directory,
    /// out of `rootfs/`), before the rest goes: a hold waiting for this claim then sees no link
    /// left, even if removing the rest fails half way.
    pub(super) fn unlink(&self, moved: &Path) -> Result<(), CacheError> {
        let path = moved.join(IN_USE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::Io {
                op: "unlink",
                path,
                source,
            }),
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    open_lock_file(path)
}

//! The sweep of leftovers: build directories in `tmp/` and downloads in `ingest/` of pulls that
//! crashed or were stopped (a sandbox ended mid-pull, a pull past its deadline whose thread
//! went on), and pull locks (`pulls/`) of images nobody pulls any more.
//!
//! Safe for a cache shared by several processes or sandboxes (EFS), where pulls build without
//! the cache's lock: the sweep runs only under the cache's exclusive lock taken without
//! waiting (skipped when anyone holds it), and each build in `tmp/` is locked by its builder
//! (`.building`). A build goes only when its lock can be taken without waiting: on a local file
//! system its builder is then dead (the kernel released the lock with the process). On NFS a
//! free lock can also be the lost lease of a sandbox Lambda froze, which may thaw and carry
//! on, so there the build must also have been silent (its heartbeat, the lock file's mtime)
//! for the stale limit (`SCAR_CACHE_STALE_SECONDS`). Either way the build is first renamed
//! away, then removed: a builder that thaws afterwards finds its directory gone and fails at
//! publication (which needs the cache's lock, held here throughout), so no half-removed tree
//! is ever published. (On NFS a POSIX lock belongs to the process: the sweep of a process that
//! is itself building would get its own build's lock; the silence it also requires keeps such a
//! build, which beats, alive.) `ingest/` also receives S3 archives downloaded before any lock is taken,
//! so an entry there goes only once it has not changed for [`STALE_INGEST`]; so does a pull
//! lock nobody holds.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::building::remove_build;
use super::error::{CacheError, io_err};
use super::lock::CacheLock;
use super::pulling::stale_limit;
use super::remove::remove_tree;
use super::store::Cache;

/// How long an `ingest/` entry must have been left unchanged to count as abandoned: the
/// longest Lambda invocation (a download in progress changes its file continuously).
pub const STALE_INGEST: Duration = Duration::from_secs(15 * 60);

/// What a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Entries removed from `tmp/`.
    pub tmp: usize,
    /// Entries removed from `ingest/`.
    pub ingest: usize,
}

/// Whether `path` is on NFS, where a free lock does not prove its holder dead.
fn on_nfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NFS_SUPER_MAGIC)
}

fn age_of(meta: &std::fs::Metadata, now: SystemTime) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or_default()
}

impl Cache {
    /// Remove abandoned work areas (see the module's documentation); `None` when the cache is
    /// busy (its lock is held: a pull is publishing, an image is being evicted) and nothing
    /// was touched.
    pub fn sweep(&self) -> Result<Option<Swept>, CacheError> {
        let Some(_lock) = CacheLock::try_exclusive(&self.root().join("lock"))? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let silent = if on_nfs(self.root()) {
            stale_limit()
        } else {
            Duration::ZERO
        };
        let mut swept = Swept::default();
        for sub in ["tmp", "ingest"] {
            let dir = self.root().join(sub);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("readdir", &dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err("readdir", &dir))?;
                let path = entry.path();
                // The entry's own times: a symlink is judged (and removed) as itself.
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let removed = if sub == "tmp" {
                    meta.is_dir() && remove_build(&path, silent)?
                        || !meta.is_dir() && unlink(&path)?
                } else {
                    age_of(&meta, now) >= STALE_INGEST
                        && if meta.is_dir() {
                            remove_tree(&path).map_err(io_err("remove", &path))?;
                            true
                        } else {
                            unlink(&path)?
                        }
                };
                if removed && sub == "tmp" {
                    swept.tmp += 1;
                } else if removed {
                    swept.ingest += 1;
                }
            }
        }
        self.sweep_pull_locks(now)?;
        if swept != Swept::default() {
            tracing::info!(
                tmp = swept.tmp,
                ingest = swept.ingest,
                cache = %self.root().display(),
                "removed the leftovers of pulls that did not finish"
            );
        }
        Ok(Some(swept))
    }

    /// Unlink pull locks nobody holds that have not beaten for [`STALE_INGEST`].
    fn sweep_pull_locks(&self, now: SystemTime) -> Result<(), CacheError> {
        let Ok(entries) = std::fs::read_dir(self.root().join("pulls")) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let old = std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.is_file() && age_of(&m, now) >= STALE_INGEST);
            // Unlinked with the lock held: a puller that opened it meanwhile sees it unlinked
            // once it gets the lock, and takes a fresh one (`Cache::try_pull`).
            if old && let Some(_held) = CacheLock::try_exclusive(&path)? {
                unlink(&path)?;
            }
        }
        Ok(())
    }
}

/// Remove a file; whether it was there.
fn unlink(path: &Path) -> Result<bool, CacheError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("unlink", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &std::path::Path, ago: Duration) {
        let when = SystemTime::now() - ago;
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_times(std::fs::FileTimes::new().set_modified(when))
            .unwrap();
    }

    #[test]
    fn leftovers_go_but_not_while_a_pull_holds_the_lock_nor_a_fresh_download() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path()).unwrap();
        let build = cache.new_tmp().unwrap();
        std::fs::create_dir_all(build.join("root/etc")).unwrap();
        let fresh = cache.ingest_path("archive.tar");
        std::fs::write(&fresh, b"downloading").unwrap();
        let stale = cache.ingest_path("abc");
        std::fs::write(&stale, b"left").unwrap();
        age(&stale, STALE_INGEST + Duration::from_secs(60));

        let held = cache.lock(true).unwrap();
        assert_eq!(cache.sweep().unwrap(), None, "busy: nothing touched");
        assert!(build.exists() && stale.exists());
        drop(held);

        let swept = cache.sweep().unwrap().unwrap();
        assert_eq!(swept, Swept { tmp: 1, ingest: 1 });
        assert!(!build.exists() && !stale.exists());
        assert!(fresh.exists(), "a download still being written stays");
    }
}

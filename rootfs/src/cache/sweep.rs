//! The sweep of leftovers: build directories in `tmp/` and downloads in `ingest/` of pulls that
//! crashed or were stopped (a sandbox ended mid-pull, a pull past its deadline whose thread
//! went on). Safe for a cache shared by several processes or sandboxes (EFS): it runs only
//! under the cache's exclusive lock taken without waiting, and skips the sweep when anyone
//! holds the lock, since every pull builds under `tmp/` with the lock held. `ingest/` also
//! receives S3 archives downloaded before the lock is taken, so an entry there goes only once
//! it has not changed for [`STALE_INGEST`].

use std::time::{Duration, SystemTime};

use super::error::{CacheError, io_err};
use super::lock::CacheLock;
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

impl Cache {
    /// Remove abandoned work areas (see the module's documentation); `None` when the cache is
    /// busy (its lock is held: a pull is running) and nothing was touched.
    pub fn sweep(&self) -> Result<Option<Swept>, CacheError> {
        let Some(_lock) = CacheLock::try_exclusive(&self.root().join("lock"))? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let mut swept = Swept::default();
        for (sub, min_age) in [("tmp", Duration::ZERO), ("ingest", STALE_INGEST)] {
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
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age < min_age {
                    continue;
                }
                if meta.is_dir() {
                    remove_tree(&path).map_err(io_err("remove", &path))?;
                } else {
                    std::fs::remove_file(&path).map_err(io_err("unlink", &path))?;
                }
                if sub == "tmp" {
                    swept.tmp += 1;
                } else {
                    swept.ingest += 1;
                }
            }
        }
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

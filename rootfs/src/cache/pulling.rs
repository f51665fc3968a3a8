//! One pull per image at a time, across every process and sandbox sharing the cache (EFS).
//!
//! The protocol, for a pull that resolved an image (its ChainID known) the cache lacks:
//! 1. Take `pulls/<chainid hex>.lock` exclusive without waiting. Got it: look the image up once
//!    more (it may have been published just before), else build it. The cache's own lock is
//!    taken only for the short steps that need it (making room, publishing), never across the
//!    download, so warm starts of other images never wait behind a pull.
//! 2. Not got it: another process pulls the image. Poll ([`POLL`]) until it is published (use
//!    it), or the lock is free (its holder died, the kernel or the NFS server released it: take
//!    it and build), or the holder's [heartbeat](super::heartbeat) has been silent for the stale
//!    limit (`SCAR_CACHE_STALE_SECONDS`, a sandbox frozen by Lambda mid-pull keeps its lock on
//!    NFS until its lease expires): then build without the lock.
//! 3. A build is private (`tmp/<name>/`, locked through its `.building` while it runs) and
//!    published by one rename; a second publisher of the same image finds it there and drops
//!    its own build ([`Cache::publish`]), so several builders are only wasted work.
//!
//! On NFS (EFS), Linux turns `flock` into a POSIX lock of the whole file, which belongs to
//! the process, not to the open file: two pulls of one image in one process would both get
//! it (the bootstrap runs one pull per sandbox at a time; `ImageSlot` shares it), and they then
//! both build, which the publish step tolerates.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::{CacheError, make_dirs};
use super::heartbeat::Silence;
use super::lock::{Attempt, BUILDING, CacheLock};
use super::records::ImageRecord;
use super::store::Cache;
use crate::digest::Digest;

/// The variable setting the stale limit, in whole seconds.
pub const SCAR_CACHE_STALE_SECONDS: &str = "SCAR_CACHE_STALE_SECONDS";

/// How long another pull's heartbeat may stay silent before a waiter pulls on its own.
pub const DEFAULT_STALE: Duration = Duration::from_secs(30);

/// How often a waiter looks again.
pub const POLL: Duration = Duration::from_millis(200);

/// The stale limit: `SCAR_CACHE_STALE_SECONDS` when it is a whole number of seconds from 1,
/// else (with a warning when set but malformed) [`DEFAULT_STALE`].
pub fn stale_limit() -> Duration {
    let Ok(text) = std::env::var(SCAR_CACHE_STALE_SECONDS) else {
        return DEFAULT_STALE;
    };
    match text.trim().parse::<u64>() {
        Ok(secs) if secs >= 1 => Duration::from_secs(secs),
        _ => {
            tracing::warn!(
                value = %text,
                default_s = DEFAULT_STALE.as_secs(),
                "{SCAR_CACHE_STALE_SECONDS} is not a whole number of seconds from 1: using the default"
            );
            DEFAULT_STALE
        }
    }
}

/// What a pull does once its turn came (see the module's documentation).
pub enum Turn {
    /// The image is published: use it.
    Ready(ImageRecord),
    /// Build it, holding the image's pull lock, or without it (`None`) when its holder went
    /// silent.
    Build(Option<CacheLock>),
}

/// One look at an image's pull.
enum Step {
    Done(Turn),
    /// Someone pulls it; what its heartbeat says.
    Busy(String),
}

impl Cache {
    /// Where the pull lock of the image with this ChainID lives.
    pub fn pull_lock_path(&self, chain_id: &Digest) -> PathBuf {
        self.root()
            .join("pulls")
            .join(format!("{}.lock", chain_id.hex()))
    }

    /// Take the pull lock of `chain_id` without waiting, or read its holder's heartbeat.
    fn try_pull(&self, chain_id: &Digest) -> Result<Attempt, CacheError> {
        let path = self.pull_lock_path(chain_id);
        if let Some(dir) = path.parent() {
            make_dirs(dir)?;
        }
        // A lock file the sweep unlinked between our open and our flock locks nothing others
        // see: look again (the next open makes a fresh one).
        for _ in 0..3 {
            match CacheLock::attempt(&path)? {
                Attempt::Got(lock) if lock.unlinked() => continue,
                other => return Ok(other),
            }
        }
        Ok(Attempt::Busy(String::new()))
    }

    fn step(&self, chain_id: &Digest) -> Result<Step, CacheError> {
        if let Some(record) = self.lookup(chain_id)? {
            return Ok(Step::Done(Turn::Ready(record)));
        }
        Ok(match self.try_pull(chain_id)? {
            // Published between the lookup and the lock: its puller released the lock then.
            Attempt::Got(lock) => Step::Done(match self.lookup(chain_id)? {
                Some(record) => Turn::Ready(record),
                None => Turn::Build(Some(lock)),
            }),
            Attempt::Busy(line) => Step::Busy(line),
        })
    }

    /// Wait for this process's turn to pull the image with `chain_id` (named `image` in the
    /// log), polling every [`POLL`]; `None` once `deadline` passed first. `stale` is the
    /// limit past which a silent holder no longer counts ([`stale_limit`]); `moved` is called
    /// each time the holder's heartbeat changes (its pull is alive and progressing), so that a
    /// waiter can tell a long wait from a stalled one.
    pub async fn wait_turn(
        &self,
        chain_id: &Digest,
        image: &str,
        deadline: Option<Instant>,
        stale: Duration,
        moved: &(dyn Fn() + Send + Sync),
    ) -> Result<Option<Turn>, CacheError> {
        let mut silence = Silence::default();
        let started = Instant::now();
        let mut said = false;
        loop {
            let (cache, id) = (self.clone(), *chain_id);
            let step = tokio::task::spawn_blocking(move || cache.step(&id))
                .await
                .map_err(|e| CacheError::Io {
                    op: "wait for another pull",
                    path: self.pull_lock_path(chain_id),
                    source: std::io::Error::other(e.to_string()),
                })??;
            let line = match step {
                Step::Done(turn) => {
                    if said {
                        tracing::info!(
                            image,
                            waited_s = started.elapsed().as_secs_f64(),
                            "the other pull ended"
                        );
                    }
                    return Ok(Some(turn));
                }
                Step::Busy(line) => line,
            };
            if silence.moved(&line) {
                moved();
            }
            let silent = silence.observe(&line, Instant::now());
            if silent >= stale {
                tracing::warn!(
                    image,
                    silent_s = silent.as_secs(),
                    holder = line.split_whitespace().next().unwrap_or("?"),
                    "another sandbox's pull of this image has been silent past {SCAR_CACHE_STALE_SECONDS} (frozen or stalled): pulling it here without waiting"
                );
                return Ok(Some(Turn::Build(None)));
            }
            if !said {
                tracing::info!(image, "waiting for another sandbox's pull of {image}");
                said = true;
            }
            let next = Instant::now() + POLL;
            if deadline.is_some_and(|d| next >= d) {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A fresh private build directory under `tmp/`, with its `.building` lock held: the
    /// sweep leaves it alone while the lock is held (see `sweep.rs`). Call with the cache's
    /// exclusive lock held: the sweep takes it too, so it never finds the directory in the
    /// instant before its lock file exists (and removes it as a build without one).
    pub fn new_build(&self) -> Result<(PathBuf, CacheLock), CacheError> {
        let dir = self.new_tmp()?;
        let lock = CacheLock::exclusive(&dir.join(BUILDING))?;
        Ok((dir, lock))
    }
}

//! How much room the cache has, and least-recently-used eviction to make more.

use std::path::Path;
use std::time::SystemTime;

use super::error::{CacheError, io_err};
use super::hold::{Claim, Claimed};
use super::records::ImageRecord;
use super::store::{Cache, read_json};
use crate::digest::Digest;

/// A mebibyte.
pub(super) const MIB: u64 = 1024 * 1024;

/// Space kept free on the file system besides the image (logs, the request's input/output).
const RESERVE: u64 = 8 * MIB;

/// A published image with its last use.
#[derive(Clone, Debug)]
pub struct CachedImage {
    /// Its metadata.
    pub record: ImageRecord,
    /// When it was last resolved (LRU order).
    pub last_used: SystemTime,
}

impl Cache {
    /// Every published image, least recently used first.
    pub fn images(&self) -> Result<Vec<CachedImage>, CacheError> {
        let dir = self.root().join("rootfs");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("readdir", &dir))? {
            let entry = entry.map_err(io_err("readdir", &dir))?;
            let path = entry.path();
            let Ok(Some(record)) = read_json::<ImageRecord>(&path.join("image.json")) else {
                continue;
            };
            let last_used = std::fs::metadata(path.join("last-used"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(CachedImage { record, last_used });
        }
        out.sort_by_key(|i| i.last_used);
        Ok(out)
    }

    /// Bytes the published images (by their records) and kept blobs occupy.
    pub fn usage(&self) -> Result<u64, CacheError> {
        let images: u64 = self.images()?.iter().map(|i| i.record.size).sum();
        let blobs: u64 = std::fs::read_dir(self.root().join("blobs/sha256"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        Ok(images + blobs)
    }

    /// Room for a new image now: the cap minus what is used, bounded by the file system's free
    /// space minus a small reserve.
    pub fn room(&self, cap: Option<u64>) -> Result<u64, CacheError> {
        let free = free_space(self.root())?.saturating_sub(RESERVE);
        Ok(match cap {
            Some(cap) => free.min(cap.saturating_sub(self.usage()?)),
            None => free,
        })
    }

    /// Evict least-recently-used images (never `keep`, never one a run holds: see
    /// [`Hold`](super::Hold)) until `need` bytes fit; returns the room available afterwards.
    /// Evicts nothing when the room already suffices, and nothing either when evicting every
    /// other image not in use could not make it suffice (the pull fails anyway; the images stay
    /// for the next one). Call with the exclusive lock held.
    pub fn make_room(
        &self,
        need: u64,
        cap: Option<u64>,
        keep: Option<&Digest>,
    ) -> Result<u64, CacheError> {
        let cannot_fit = |free: u64, in_use: &[CachedImage]| CacheError::CannotFit {
            need_mib: need.div_ceil(MIB),
            free_mib: free / MIB,
            dir: self.root().to_owned(),
            in_use: in_use.len(),
            in_use_mib: in_use
                .iter()
                .map(|i| i.record.size)
                .sum::<u64>()
                .div_ceil(MIB),
        };
        if let Some(cap) = cap
            && need > cap
        {
            return Err(cannot_fit(cap, &[]));
        }
        // Each round evicts at least one image (or fails), so this ends. A second round is
        // needed only when the file system's free space, not the cap, bounds the room and the
        // images freed less than their records say.
        loop {
            let room = self.room(cap)?;
            if room >= need {
                return Ok(room);
            }
            let Candidates {
                mut claimed,
                in_use,
            } = self.claim_all(keep)?;
            let freeable: u64 = claimed.iter().map(|(i, _)| i.record.size).sum();
            if room.saturating_add(freeable) < need {
                return Err(cannot_fit(room.saturating_add(freeable), &in_use));
            }
            // Only the oldest images whose sizes make the room stay claimed: a run starting in
            // any other does not wait for the removals.
            let mut enough = room;
            let wanted = claimed
                .iter()
                .take_while(|(i, _)| {
                    let short = enough < need;
                    enough = enough.saturating_add(i.record.size);
                    short
                })
                .count();
            claimed.truncate(wanted);
            for (image, claim) in claimed {
                tracing::info!(
                    image = %image.record.reference,
                    size_mib = image.record.size / MIB,
                    "evicting least recently used image to make room"
                );
                self.remove_claimed(&image.record.chain_id, claim)?;
                if self.room(cap)? >= need {
                    break;
                }
            }
        }
    }

    /// Every image but `keep`, least recently used first, claimed for eviction if nobody holds
    /// it, and those that runs hold (logged: they stay).
    fn claim_all(&self, keep: Option<&Digest>) -> Result<Candidates, CacheError> {
        let mut claimed = Vec::new();
        let mut in_use = Vec::new();
        for image in self.images()? {
            if Some(&image.record.chain_id) == keep {
                continue;
            }
            match Claim::try_take(&self.image_dir(&image.record.chain_id))? {
                Claimed::Free(claim) => claimed.push((image, claim)),
                Claimed::InUse => {
                    tracing::info!(
                        image = %image.record.reference,
                        size_mib = image.record.size / MIB,
                        "not evicting an image a running container uses"
                    );
                    in_use.push(image);
                }
                Claimed::Gone => {}
            }
        }
        Ok(Candidates { claimed, in_use })
    }
}

/// The images eviction may take, as [`Cache::claim_all`] found them.
struct Candidates {
    /// Claimed, least recently used first.
    claimed: Vec<(CachedImage, Claim)>,
    /// Held by runs.
    in_use: Vec<CachedImage>,
}

/// What [`Cache::trim`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// How many images it evicted.
    pub evicted: usize,
    /// The images it would have evicted but running containers use (their references).
    pub in_use: Vec<String>,
}

impl Cache {
    /// Evict least-recently-used images until the cache uses at most `cap` bytes, skipping
    /// those in use. Call with the exclusive lock held.
    pub fn trim(&self, cap: u64) -> Result<Trimmed, CacheError> {
        let mut usage = self.usage()?;
        let mut trimmed = Trimmed::default();
        for image in self.images()? {
            if usage <= cap {
                break;
            }
            match Claim::try_take(&self.image_dir(&image.record.chain_id))? {
                Claimed::Free(claim) => {
                    self.remove_claimed(&image.record.chain_id, claim)?;
                    trimmed.evicted += 1;
                }
                Claimed::InUse => {
                    trimmed.in_use.push(image.record.reference);
                    continue;
                }
                Claimed::Gone => {}
            }
            usage = usage.saturating_sub(image.record.size);
        }
        Ok(trimmed)
    }
}

/// Bytes an unprivileged user may still write on the file system holding `dir`.
pub fn free_space(dir: &Path) -> Result<u64, CacheError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| CacheError::Io {
        op: "statvfs",
        path: dir.to_owned(),
        source: std::io::Error::from(e),
    })?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A published image of `size` bytes (by its record) named `name`.
    fn image(cache: &Cache, name: &str, size: u64) -> Digest {
        let chain_id = Digest::of(name.as_bytes());
        let build = cache.new_tmp().unwrap();
        std::fs::create_dir(build.join("root")).unwrap();
        let record = ImageRecord {
            reference: name.to_owned(),
            chain_id,
            verified_diff_ids: Some(vec![chain_id]),
            size,
            layers: 1,
        };
        cache.publish(&build, &record).unwrap();
        chain_id
    }

    fn present(cache: &Cache, id: &Digest) -> bool {
        cache.image_dir(id).join("image.json").exists()
    }

    #[test]
    fn nothing_is_evicted_when_the_room_already_suffices() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path()).unwrap();
        let a = image(&cache, "a", 30 * MIB);
        let b = image(&cache, "b", 30 * MIB);
        // 100 MiB cap, 60 used: 40 fit as they are.
        let room = cache.make_room(40 * MIB, Some(100 * MIB), None).unwrap();
        assert_eq!(room, 40 * MIB);
        assert!(present(&cache, &a) && present(&cache, &b));
    }

    #[test]
    fn only_as_many_images_as_the_need_takes_are_evicted_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path()).unwrap();
        let ids: Vec<Digest> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                image(&cache, n, 30 * MIB)
            })
            .collect();
        // 100 MiB cap, 90 used: 45 MiB need two evictions (10 + 30 < 45 <= 10 + 60).
        let room = cache.make_room(45 * MIB, Some(100 * MIB), None).unwrap();
        assert_eq!(room, 70 * MIB);
        assert!(!present(&cache, &ids[0]) && !present(&cache, &ids[1]));
        assert!(present(&cache, &ids[2]), "the newest image stays");
    }

    #[test]
    fn when_evicting_everything_would_not_do_nothing_is_evicted() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path()).unwrap();
        let a = image(&cache, "a", 30 * MIB);
        let b = image(&cache, "b", 30 * MIB);
        // 100 MiB cap: 95 MiB would need both images gone and `b` is the one in use.
        let err = cache
            .make_room(95 * MIB, Some(100 * MIB), Some(&b))
            .unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::CannotFit {
                    need_mib: 95,
                    free_mib: 70,
                    ..
                }
            ),
            "{err}"
        );
        assert!(present(&cache, &a) && present(&cache, &b));
    }
}

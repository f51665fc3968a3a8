//! How much room the cache has, and least-recently-used eviction to make more.

use std::path::Path;
use std::time::SystemTime;

use super::{Cache, CacheError, ImageRecord, MIB, io_err, read_json};
use crate::digest::Digest;

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
        let dir = self.root.join("rootfs");
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
        let blobs: u64 = std::fs::read_dir(self.root.join("blobs/sha256"))
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
        let free = free_space(&self.root)?.saturating_sub(RESERVE);
        Ok(match cap {
            Some(cap) => free.min(cap.saturating_sub(self.usage()?)),
            None => free,
        })
    }

    /// Evict least-recently-used images (never `keep`) until `need` bytes fit; returns the
    /// room available afterwards. Call with the exclusive lock held.
    pub fn make_room(
        &self,
        need: u64,
        cap: Option<u64>,
        keep: Option<&Digest>,
    ) -> Result<u64, CacheError> {
        if let Some(cap) = cap
            && need > cap
        {
            return Err(CacheError::CannotFit {
                need_mib: need.div_ceil(MIB),
                free_mib: cap / MIB,
                dir: self.root.clone(),
            });
        }
        let mut room = self.room(cap)?;
        if room >= need {
            return Ok(room);
        }
        for image in self.images()? {
            if Some(&image.record.chain_id) == keep {
                continue;
            }
            tracing::info!(
                image = %image.record.reference,
                size_mib = image.record.size / MIB,
                "evicting least recently used image to make room"
            );
            self.remove_image(&image.record.chain_id)?;
            room = self.room(cap)?;
            if room >= need {
                return Ok(room);
            }
        }
        Err(CacheError::CannotFit {
            need_mib: need.div_ceil(MIB),
            free_mib: room / MIB,
            dir: self.root.clone(),
        })
    }
}

impl Cache {
    /// Evict least-recently-used images until the cache uses at most `cap` bytes; returns how
    /// many were evicted. Call with the exclusive lock held.
    pub fn trim(&self, cap: u64) -> Result<usize, CacheError> {
        let mut usage = self.usage()?;
        let mut evicted = 0;
        for image in self.images()? {
            if usage <= cap {
                break;
            }
            self.remove_image(&image.record.chain_id)?;
            usage = usage.saturating_sub(image.record.size);
            evicted += 1;
        }
        Ok(evicted)
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

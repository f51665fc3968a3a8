//! The cache's directory and what it holds: opening and locking it, references, configs,
//! publishing and removing roots, kept blobs and work areas. Eviction (`space.rs`) and the
//! sweep of leftovers (`sweep.rs`) add their methods to [`Cache`] from their own files.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::building::{RESERVED, remove_build};
use super::error::{CacheError, io_err, make_dirs};
use super::hold::{Claim, Claimed, IN_USE};
use super::lock::{BUILDING, CacheLock};
use super::records::{ImageRecord, RefRecord};
use super::remove::remove_tree;
use super::trust;
use crate::digest::Digest;
use crate::image::ImageConfig;

/// A cache rooted at one directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Open (creating its directories) the cache at `root`.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        // Created in this order, so the last one there means all are: a warm start then costs
        // one stat here rather than four mkdirs and four stats.
        if !root.join("ingest").is_dir() {
            for sub in ["refs", "rootfs", "configs", "tmp", "ingest"] {
                make_dirs(&root.join(sub))?;
            }
        }
        // Four more stats on the warm path: whose the cache is (see `trust`).
        trust::check(root)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Take the lock shared (for reading) or exclusive (for writing).
    pub fn lock(&self, exclusive: bool) -> Result<CacheLock, CacheError> {
        let path = self.root.join("lock");
        if exclusive {
            CacheLock::exclusive(&path)
        } else {
            CacheLock::shared(&path)
        }
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        self.root.join("refs").join(escape(reference))
    }

    /// Where the image with this ChainID lives (whether or not it is there).
    pub fn image_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("rootfs").join(chain_id.hex())
    }

    /// The remembered resolution of `reference`, if any.
    pub fn read_ref(&self, reference: &str) -> Result<Option<RefRecord>, CacheError> {
        read_json(&self.ref_path(reference))
    }

    /// Remember that `reference` resolves to `record`.
    pub fn write_ref(&self, record: &RefRecord) -> Result<(), CacheError> {
        let path = self.ref_path(&record.reference);
        write_json_atomic(self, &path, record)
    }

    /// Forget a reference.
    pub fn remove_ref(&self, reference: &str) -> Result<bool, CacheError> {
        let path = self.ref_path(reference);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("unlink", &path)(e)),
        }
    }

    /// The published image with this ChainID, if complete and proven verified (see
    /// [`ImageRecord::proves`]); marks it used (LRU). An unproven one counts as absent: the
    /// pull rebuilds it and [`Cache::publish`] replaces it.
    pub fn lookup(&self, chain_id: &Digest) -> Result<Option<ImageRecord>, CacheError> {
        let dir = self.image_dir(chain_id);
        let Some(record) = read_json::<ImageRecord>(&dir.join("image.json"))? else {
            return Ok(None);
        };
        if !record.proves(chain_id) {
            tracing::info!(
                chain_id = %chain_id,
                "cached image has no proof that its layers were verified (an older scar wrote it): building it again"
            );
            return Ok(None);
        }
        touch(&dir.join("last-used"));
        Ok(Some(record))
    }

    fn config_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("configs")
            .join(format!("{}.json", digest.hex()))
    }

    /// The runtime config of the image whose config blob has this digest, if stored.
    pub fn read_config(&self, digest: &Digest) -> Result<Option<ImageConfig>, CacheError> {
        read_json(&self.config_path(digest))
    }

    /// Store an image's runtime config under its config digest (atomically: a reader sees the
    /// whole file or none). Content-addressed, so one already there is left as it is.
    pub fn write_config(&self, digest: &Digest, config: &ImageConfig) -> Result<(), CacheError> {
        let path = self.config_path(digest);
        if path.exists() {
            return Ok(());
        }
        // A cache made by an older version has no `configs/` (`open` stops at its first check);
        // 0755 whatever the umask, as `open` makes the others: nobody else may swap a config.
        if let Some(dir) = path.parent() {
            make_dirs(dir)?;
        }
        write_json_atomic(self, &path, config)
    }

    /// A fresh private build directory under `tmp/`.
    pub fn new_tmp(&self) -> Result<PathBuf, CacheError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "{}-{nanos}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.root.join("tmp").join(name);
        std::fs::create_dir(&dir).map_err(io_err("mkdir", &dir))?;
        Ok(dir)
    }

    /// Publish a complete build directory (holding `root/`) as the image `record` describes:
    /// write its metadata, then rename it into place in one step.
    pub fn publish(&self, build: &Path, record: &ImageRecord) -> Result<PathBuf, CacheError> {
        let meta = build.join("image.json");
        let text = serde_json::to_vec_pretty(record).map_err(|source| CacheError::Corrupt {
            path: meta.clone(),
            source,
        })?;
        std::fs::write(&meta, text).map_err(io_err("write", &meta))?;
        touch(&build.join("last-used"));
        // The lock file runs hold ([`Hold`](super::Hold)), there from the start: a run then
        // adds nothing to the image's directory (a hold would otherwise make it).
        let in_use = build.join(IN_USE);
        std::fs::File::create(&in_use).map_err(io_err("create", &in_use))?;
        // The builder's lock file and reservation have no use once published (the builder
        // keeps its descriptor).
        for name in [BUILDING, RESERVED] {
            let path = build.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("unlink", &path)(e));
                }
                _ => {}
            }
        }
        let dest = self.image_dir(&record.chain_id);
        // A root under this key that does not prove its layers (an older version's) makes
        // room for the verified one: moved aside in one step, then removed.
        let stale = read_json::<ImageRecord>(&dest.join("image.json")).map_or(dest.exists(), |r| {
            r.is_none_or(|r| !r.proves(&record.chain_id))
        });
        if stale {
            let grave = self.root.join("tmp").join(format!(
                "unproven-{}-{}",
                record.chain_id.hex(),
                TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            if std::fs::rename(&dest, &grave).is_ok() {
                remove_tree(&grave).map_err(io_err("remove", &grave))?;
            }
        }
        match std::fs::rename(build, &dest) {
            Ok(()) => Ok(dest),
            // Someone published the same ChainID first (a pull that went on without the
            // image's pull lock, see `pulling.rs`): theirs stays, this build goes.
            Err(e)
                if read_json::<ImageRecord>(&dest.join("image.json"))
                    .is_ok_and(|r| r.is_some_and(|r| r.proves(&record.chain_id))) =>
            {
                tracing::debug!(err = %e, "image already published");
                let _ = remove_tree(build);
                Ok(dest)
            }
            Err(e) => Err(io_err("rename", build)(e)),
        }
    }

    /// Remove a published image and any reference pointing at it; refused with
    /// [`CacheError::InUse`] while a run holds it (see [`Hold`](super::Hold)).
    pub fn remove_image(&self, chain_id: &Digest) -> Result<(), CacheError> {
        match Claim::try_take(&self.image_dir(chain_id))? {
            Claimed::Free(claim) => self.remove_claimed(chain_id, claim),
            Claimed::InUse => Err(CacheError::InUse {
                image: self.name_of(chain_id),
                dir: self.root.clone(),
            }),
            Claimed::Gone => Ok(()),
        }
    }

    /// Remove the image `claim` holds exclusive, and any reference pointing at it. The claim is
    /// released only once the image is gone, so no run can start in a half-removed one.
    pub(super) fn remove_claimed(&self, chain_id: &Digest, claim: Claim) -> Result<(), CacheError> {
        // Rename out of `rootfs/` first: the image stops being visible atomically, then dies.
        let dir = self.image_dir(chain_id);
        let grave = self.root.join("tmp").join(format!(
            "evict-{}-{}-{}",
            chain_id.hex(),
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::rename(&dir, &grave) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("rename", &dir)(e)),
        }
        claim.unlink(&grave)?;
        remove_tree(&grave).map_err(io_err("remove", &grave))?;
        drop(claim);
        for r in self.refs()? {
            if r.chain_id == *chain_id {
                self.remove_ref(&r.reference)?;
            }
        }
        Ok(())
    }

    /// How an image is named in messages: the reference it was pulled as, else its ChainID.
    pub(super) fn name_of(&self, chain_id: &Digest) -> String {
        read_json::<ImageRecord>(&self.image_dir(chain_id).join("image.json"))
            .ok()
            .flatten()
            .map_or_else(|| chain_id.to_string(), |r| r.reference)
    }

    /// All remembered references.
    pub fn refs(&self) -> Result<Vec<RefRecord>, CacheError> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("readdir", &dir))? {
            let entry = entry.map_err(io_err("readdir", &dir))?;
            if let Ok(Some(r)) = read_json::<RefRecord>(&entry.path()) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Remove crash leftovers (`tmp/`, `ingest/`; not a build whose builder still holds its
    /// lock), references to images no longer present and configs no reference names. Call
    /// with the exclusive lock held.
    pub fn collect_garbage(&self) -> Result<u64, CacheError> {
        let mut removed = 0;
        for sub in ["tmp", "ingest"] {
            let dir = self.root.join(sub);
            for entry in std::fs::read_dir(&dir).map_err(io_err("readdir", &dir))? {
                let entry = entry.map_err(io_err("readdir", &dir))?;
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if sub == "tmp" {
                        if !remove_build(&path, std::time::Duration::ZERO)? {
                            continue;
                        }
                    } else {
                        remove_tree(&path).map_err(io_err("remove", &path))?;
                    }
                } else {
                    std::fs::remove_file(&path).map_err(io_err("unlink", &path))?;
                }
                removed += 1;
            }
        }
        let mut named = std::collections::HashSet::new();
        for r in self.refs()? {
            if !self.image_dir(&r.chain_id).join("image.json").exists() {
                self.remove_ref(&r.reference)?;
                removed += 1;
            } else if let Some(config) = r.config {
                named.insert(format!("{}.json", config.hex()));
            }
        }
        let configs = self.root.join("configs");
        if let Ok(entries) = std::fs::read_dir(&configs) {
            for entry in entries {
                let entry = entry.map_err(io_err("readdir", &configs))?;
                if named.contains(entry.file_name().to_string_lossy().as_ref()) {
                    continue;
                }
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io_err("unlink", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Where a kept compressed blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Move a verified download into `blobs/sha256/`.
    pub fn keep_blob(&self, download: &Path, digest: &Digest) -> Result<(), CacheError> {
        let dest = self.blob_path(digest);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("mkdir", dir))?;
        }
        std::fs::rename(download, &dest).map_err(io_err("rename", download))
    }

    /// A path for a temporary download in `ingest/`.
    pub fn ingest_path(&self, name: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("ingest")
            .join(format!("{}-{n}-{name}", std::process::id()))
    }
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CacheError::Corrupt {
            path: path.to_owned(),
            source,
        })
}

fn write_json_atomic<T: serde::Serialize>(
    cache: &Cache,
    path: &Path,
    value: &T,
) -> Result<(), CacheError> {
    let text = serde_json::to_vec(value).map_err(|source| CacheError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    let tmp = cache.ingest_path("ref");
    std::fs::write(&tmp, text).map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("rename", &tmp))
}

/// Reference → file name: anything but `[A-Za-z0-9._-]` is percent-escaped.
fn escape(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len() + 8);
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How stale a `last-used` mark may get before a lookup renews it: LRU eviction needs no finer
/// order, and a warm start then reads the mark instead of writing (and journaling) it.
pub(super) const TOUCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Mark a file as just used (creating it when missing); LRU order is its mtime.
fn touch(path: &Path) {
    let now = std::time::SystemTime::now();
    let fresh = std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|mtime| {
            now.duration_since(mtime)
                .is_ok_and(|age| age < TOUCH_INTERVAL)
        });
    if fresh {
        return;
    }
    let now = std::fs::FileTimes::new().set_modified(now);
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path);
    if let Ok(f) = file {
        let _ = f.set_times(now);
    }
}

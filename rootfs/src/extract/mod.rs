//! Applying layer tars onto a root filesystem, in order, with OCI whiteout semantics and no way
//! for an entry to write outside the root.
//!
//! Works unprivileged: directories stay owner-writable while layers are applied and get their
//! real modes and times at [`Extractor::finish`]; ownership is applied only as root; device
//! nodes are skipped; setuid/setgid bits are dropped (an image must not smuggle privilege onto
//! the host's filesystem).

mod fsops;
mod path;
pub mod pipeline;
mod whiteout;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use path::Resolver;

/// Mode bits kept from the archive: permissions and sticky, not setuid/setgid.
const MODE_MASK: u32 = 0o1777;
/// Bytes charged per entry on top of its content (inode, directory entry).
const ENTRY_OVERHEAD: u64 = 512;
/// Copy buffer for file contents.
const COPY_BUF: usize = 256 * 1024;

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// A file-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The layer stream could not be read (corrupt, truncated, digest mismatch).
    #[error("reading the layer failed: {source}")]
    Read {
        /// The underlying error; its inner error may be a digest mismatch.
        #[source]
        source: io::Error,
    },
    /// An absolute entry name.
    #[error("layer entry `{entry}` has an absolute name: refused, images must use relative names")]
    AbsoluteName {
        /// The entry name.
        entry: String,
    },
    /// A `..` component.
    #[error("layer entry `{entry}` contains `..`: refused, it could write outside the image")]
    DotDot {
        /// The entry name.
        entry: String,
    },
    /// A parent symlink that climbs out of the root.
    #[error(
        "layer entry `{entry}` goes through a symlink that points outside the image root: refused"
    )]
    SymlinkEscape {
        /// The entry name.
        entry: String,
    },
    /// Symlink loop in a parent.
    #[error("layer entry `{entry}` goes through too many symlinks (a loop?)")]
    SymlinkLoop {
        /// The entry name.
        entry: String,
    },
    /// A parent component is a file.
    #[error("layer entry `{entry}`: parent {parent} is not a directory")]
    NotADirectory {
        /// The entry name.
        entry: String,
        /// The offending parent.
        parent: PathBuf,
    },
    /// A hardlink whose target is outside or absent.
    #[error(
        "layer entry `{entry}` is a hardlink to `{target}`, which is not a file inside the image: refused"
    )]
    BadHardlink {
        /// The entry name.
        entry: String,
        /// The link target as written in the tar.
        target: String,
    },
    /// More bytes than the space allowed.
    #[error(
        "the image expands past {limit_mib} MiB, all the cache may use: raise SCAR_CACHE_MAX_MB or free space (a decompression bomb?)"
    )]
    Budget {
        /// The limit in MiB.
        limit_mib: u64,
    },
    /// ENOSPC.
    #[error(
        "no space left while writing {path}: free space in the cache directory or raise its size"
    )]
    NoSpace {
        /// File being written.
        path: PathBuf,
    },
}

impl ExtractError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return Self::NoSpace {
                path: path.to_owned(),
            };
        }
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// What applying one layer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries in the tar.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Device nodes and other entries not materialised.
    pub skipped: u64,
}

/// Final metadata of a directory, applied once all layers are in.
#[derive(Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: i64,
    owner: Option<(u32, u32)>,
}

/// Applies layers in order onto one root.
pub struct Extractor {
    resolver: Resolver,
    dirs: HashMap<PathBuf, DirMeta>,
    privileged: bool,
    budget: u64,
    charged: u64,
    buf: Vec<u8>,
    /// Owner and group new files get: euid and egid, unless the root is in a setgid
    /// directory (then the group is inherited and `None` makes every chown happen). The
    /// directories extraction creates are never setgid themselves (the bit is dropped).
    creator: Option<(u32, u32)>,
}

impl Extractor {
    /// Extract into `root` (an existing, empty directory), writing at most `budget` bytes.
    pub fn new(root: &Path, budget: u64) -> Self {
        Self {
            resolver: Resolver::new(root),
            dirs: HashMap::new(),
            // SAFETY: geteuid has no preconditions and cannot fail.
            privileged: unsafe { libc::geteuid() } == 0,
            budget,
            charged: 0,
            buf: vec![0; COPY_BUF],
            creator: creator(root),
        }
    }

    /// Bytes charged against the budget so far (content plus per-entry overhead).
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// Apply one uncompressed layer tar on top of what is already there.
    pub fn apply_layer(&mut self, tar: impl Read) -> Result<LayerStats, ExtractError> {
        let mut archive = tar::Archive::new(tar);
        let mut stats = LayerStats::default();
        // Names this layer wrote: an opaque whiteout removes only what lower layers put there.
        let mut written: HashSet<PathBuf> = HashSet::new();
        let entries = archive
            .entries()
            .map_err(|source| ExtractError::Read { source })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| ExtractError::Read { source })?;
            stats.entries += 1;
            self.charge(ENTRY_OVERHEAD)?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let mut comps = path::clean_name(&raw)?;
            let Some(file_name) = comps.pop() else {
                continue; // "./": the root itself
            };
            if let Some(kind) = whiteout::classify(&file_name) {
                whiteout::apply(&mut self.resolver, &name, &comps, kind, &written)?;
                continue;
            }
            let Some(parent) = self.resolver.resolve_dir(&name, &comps, true)? else {
                continue;
            };
            let rel = parent.join(&file_name);
            let full = self.resolver.root().join(&rel);
            let kind = entry.header().entry_type();
            let header = entry.header();
            let mode = header.mode().unwrap_or(0o644) & MODE_MASK;
            let mtime = header.mtime().unwrap_or(0) as i64;
            let owner = match (header.uid(), header.gid()) {
                (Ok(u), Ok(g)) if self.privileged => Some((u as u32, g as u32)),
                _ => None,
            };
            let xattrs = collect_xattrs(&mut entry);
            use tar::EntryType as T;
            match kind {
                T::Directory => {
                    self.make_dir(&full)?;
                    self.dirs
                        .insert(rel.clone(), DirMeta { mode, mtime, owner });
                    if !xattrs.is_empty() {
                        fsops::set_xattrs(&full, &xattrs);
                    }
                }
                T::Regular | T::Continuous | T::GNUSparse => {
                    let n = self.write_file(&mut entry, &full, mode, mtime, owner, &xattrs)?;
                    stats.bytes_written += n;
                }
                T::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    self.replace(&full, false)?;
                    fsops::symlink(&target, &full)?;
                    // A new symlink can change what any later parent resolves to.
                    self.resolver.invalidate();
                    if let Some((u, g)) = owner {
                        fsops::lchown(&full, u, g);
                    }
                    fsops::set_xattrs(&full, &xattrs);
                    fsops::set_times_nofollow(&full, mtime);
                }
                T::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    self.hardlink(&name, &target, &full)?;
                }
                T::Fifo => {
                    self.replace(&full, false)?;
                    fsops::mkfifo(&full, mode)?;
                    fsops::set_times_nofollow(&full, mtime);
                }
                T::Char | T::Block => {
                    // Device nodes need CAP_MKNOD and would give the container host devices.
                    tracing::debug!(entry = %name, "skipping device node");
                    stats.skipped += 1;
                    continue;
                }
                other => {
                    tracing::debug!(entry = %name, kind = ?other, "skipping unsupported entry type");
                    stats.skipped += 1;
                    continue;
                }
            }
            written.insert(rel);
        }
        Ok(stats)
    }

    /// Give directories their final modes, owners and times (deepest first, so setting a parent
    /// read-only or its mtime comes after its children are done).
    pub fn finish(self) -> Result<(), ExtractError> {
        let mut dirs: Vec<(PathBuf, DirMeta)> = self.dirs.into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        let root = self.resolver.root().to_owned();
        for (rel, meta) in dirs {
            let full = root.join(&rel);
            // A later layer may have removed or replaced it; only real directories are touched.
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            if let Some((u, g)) = meta.owner {
                fsops::lchown(&full, u, g);
            }
            fsops::chmod(&full, meta.mode)?;
            fsops::set_times_nofollow(&full, meta.mtime);
        }
        Ok(())
    }

    fn charge(&mut self, bytes: u64) -> Result<(), ExtractError> {
        self.charged += bytes;
        if self.charged > self.budget {
            return Err(ExtractError::Budget {
                limit_mib: self.budget / (1024 * 1024),
            });
        }
        Ok(())
    }

    /// Make `full` a directory, keeping an existing one (layers merge directories).
    fn make_dir(&mut self, full: &Path) -> Result<(), ExtractError> {
        match std::fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => self.replace(full, false)?,
            Err(_) => {}
        }
        // Owner-writable until finish(): later entries and layers must be able to write in it.
        fsops::mkdir(full, 0o700)
    }

    /// Remove whatever is at `full` so a new entry can take its place.
    fn replace(&mut self, full: &Path, keep_dir: bool) -> Result<(), ExtractError> {
        match std::fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() => {
                if keep_dir {
                    return Ok(());
                }
                fsops::remove_tree(full)?;
                self.resolver.invalidate();
                Ok(())
            }
            Ok(_) => std::fs::remove_file(full).map_err(|e| ExtractError::io("unlink", full, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExtractError::io("lstat", full, e)),
        }
    }

    fn write_file(
        &mut self,
        entry: &mut impl Read,
        full: &Path,
        mode: u32,
        mtime: i64,
        owner: Option<(u32, u32)>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<u64, ExtractError> {
        use std::os::unix::fs::OpenOptionsExt;
        let create = || {
            File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(full)
        };
        // Most names are new: try first, and clear the way only when something is there (an
        // lstat per file less; O_EXCL never follows a symlink, so one there is replaced too).
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.replace(full, false)?;
                create()
            }
            other => other,
        };
        let mut file = file.map_err(|e| ExtractError::io("create", full, e))?;
        let mut total = 0u64;
        let mut buf = std::mem::take(&mut self.buf);
        let result = loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => break Err(ExtractError::Read { source }),
            };
            if let Err(e) = self.charge(n as u64) {
                break Err(e);
            }
            if let Err(e) = file.write_all(&buf[..n]) {
                break Err(ExtractError::io("write", full, e));
            }
            total += n as u64;
        };
        self.buf = buf;
        result?;
        fsops::set_xattrs(full, xattrs);
        // A new file is already ours: chown only when the image wants someone else.
        if let Some((u, g)) = owner.filter(|&o| Some(o) != self.creator) {
            fsops::fchown(&file, u, g);
        }
        fsops::fchmod(&file, full, mode)?;
        fsops::set_file_mtime(&file, mtime);
        Ok(total)
    }

    fn hardlink(&mut self, name: &str, target: &[u8], full: &Path) -> Result<(), ExtractError> {
        let bad = || ExtractError::BadHardlink {
            entry: name.to_owned(),
            target: String::from_utf8_lossy(target).into_owned(),
        };
        let mut comps: Vec<OsString> = match path::clean_name(target) {
            Ok(c) => c,
            Err(_) => return Err(bad()),
        };
        let Some(file_name) = comps.pop() else {
            return Err(bad());
        };
        let Some(parent) = self.resolver.resolve_dir(name, &comps, false)? else {
            return Err(bad());
        };
        let source = self.resolver.root().join(parent).join(file_name);
        match std::fs::symlink_metadata(&source) {
            Ok(m) if !m.is_dir() => {}
            _ => return Err(bad()),
        }
        if source == full {
            return Ok(());
        }
        self.replace(full, false)?;
        std::fs::hard_link(&source, full).map_err(|e| ExtractError::io("link", full, e))
    }
}

/// Who owns the files created under `root`, when that is known without asking each one.
fn creator(root: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root).ok()?;
    if meta.mode() & libc::S_ISGID != 0 {
        return None;
    }
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    Some(unsafe { (libc::geteuid(), libc::getegid()) })
}

/// `SCHILY.xattr.*` PAX records of an entry.
fn collect_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    exts.filter_map(Result::ok)
        .filter_map(|ext| {
            ext.key_bytes()
                .strip_prefix(b"SCHILY.xattr.")
                .map(|k| (k.to_vec(), ext.value_bytes().to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests;

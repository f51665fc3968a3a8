//! Applying layer tars onto a root filesystem, in order, with OCI whiteout semantics and no way
//! for an entry to write outside the root.
//!
//! Works unprivileged: directories stay owner-writable while layers are applied and get their
//! real modes and times at [`Extractor::finish`]; ownership is applied only as root; device
//! nodes are skipped; setuid/setgid bits are dropped and only `user.*` extended attributes are
//! applied (an image must not smuggle privilege onto the host's filesystem: no setuid root, no
//! `security.capability`).
//!
//! No operation follows a symlink: entries' parents are resolved inside the root by
//! [`path::Resolver`] (symlinks followed in user space, as a chroot would), final components
//! are created with `O_EXCL`/`O_NOFOLLOW`, `lsetxattr`, `lchown`, `utimensat(NOFOLLOW)`,
//! `linkat` without `AT_SYMLINK_FOLLOW`; the directory metadata deferred to
//! [`Extractor::finish`] is applied on descriptors opened from the root one component at a
//! time with `O_NOFOLLOW`, so a directory that a later entry replaced with a symlink is
//! skipped rather than followed out of the root.
//!
//! The space charged against the budget is what the file system spends: contents rounded up
//! to its block size, a block per directory (implicit parents included) and per long symlink,
//! and a per-entry overhead for the inode and directory entry.

mod error;
mod fsops;
mod path;
pub mod pipeline;
mod whiteout;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use error::ExtractError;
use path::Resolver;

/// Mode bits kept from the archive: permissions and sticky, not setuid/setgid.
const MODE_MASK: u32 = 0o1777;
/// Bytes charged per entry on top of its blocks: an inode (256 bytes on ext4, about as much
/// memory on tmpfs) and its directory entry (name plus 8 bytes, in the parent's blocks).
const ENTRY_OVERHEAD: u64 = 512;
/// Longest symlink target kept in the inode itself (ext4's "fast symlinks"); longer ones take a
/// block.
const INLINE_SYMLINK: usize = 60;
/// Examples named in the one log line about dropped extended attributes.
const DROPPED_EXAMPLES: usize = 3;
/// Copy buffer for file contents.
const COPY_BUF: usize = 256 * 1024;

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
    /// The file system's allocation unit: contents are charged in whole blocks.
    block: u64,
    /// Extended attributes not applied because an image may not set them (all but `user.*`).
    dropped_xattrs: u64,
    /// A few of them, as `name on path`, for the log line at [`Extractor::finish`].
    dropped_examples: Vec<String>,
    buf: Vec<u8>,
    /// Owner and group new files get: euid and egid, unless the root is in a setgid
    /// directory (then the group is inherited and `None` makes every chown happen). The
    /// directories extraction creates are never setgid themselves (the bit is dropped).
    creator: Option<(u32, u32)>,
    /// What the kernel takes from a new file's mode, when only the umask does
    /// ([`fsops::creation_mask`]).
    creation_mask: Option<u32>,
    /// Bytes charged by every extractor of one root, when several work on it at once.
    shared_charge: Option<Arc<AtomicU64>>,
    /// A flattened tree, several extractors at once: nothing is ever replaced (a name that is
    /// there already is an error, not something to remove), and links wait in `links`.
    flat: bool,
    /// Symlinks and hardlinks met in `flat` mode, for [`Extractor::apply_links`].
    links: Vec<Link>,
}

/// Threads an extraction spreads over: one per core, at most 8 (Lambda gives a function at most
/// 6).
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Directories a thread of [`Extractor::finish`] takes at least (fewer are not worth a thread).
const MIN_DIRS_PER_THREAD: usize = 64;

/// Symlinks a thread of [`Extractor::apply_links_on`] takes at least.
const MIN_LINKS_PER_THREAD: usize = 64;

/// [`ExtractError::NotFlat`] for `entry`, a name a flattened tree has already (or one below a
/// symlink's).
fn name_taken(entry: String) -> ExtractError {
    ExtractError::NotFlat {
        entry,
        what: "names what is there already (a name twice, or a name under a symlink)",
    }
}

/// `work` on runs of `items` side by side, up to `threads` runs of at least `min` items each,
/// on scoped threads named `name` (this thread does a run itself when no thread can be had):
/// the runs' results in order, or the first run's error. Items too few for two runs are
/// done on this thread. A thread that panics is an error of `op` on `root` saying so.
fn side_by_side<'a, T: Sync, R: Send>(
    items: &'a [T],
    (threads, min): (usize, usize),
    (name, op, root): (&str, &'static str, &Path),
    work: impl Fn(&'a [T]) -> Result<R, ExtractError> + Sync,
) -> Result<Vec<R>, ExtractError> {
    let per_thread = items.len().div_ceil(threads.max(1)).max(min.max(1));
    if items.len() <= per_thread {
        return work(items).map(|r| vec![r]);
    }
    let work = &work;
    std::thread::scope(|scope| {
        let runs: Vec<_> = items
            .chunks(per_thread)
            .map(|run| {
                let spawned = std::thread::Builder::new()
                    .name(name.into())
                    .spawn_scoped(scope, move || work(run));
                // No thread to be had: this one does that run itself.
                spawned.map_err(|_| run)
            })
            .collect();
        runs.into_iter()
            .map(|run| match run {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    let why = format!("a thread of {name} panicked");
                    Err(ExtractError::io(op, root, io::Error::other(why)))
                }),
                Err(run) => work(run),
            })
            .collect()
    })
}

/// [`ExtractError::NotFlat`] for the first link whose name lies below a symlink's: a flattened
/// tree has none (its writer does not walk into symlinks), and links made side by side must not
/// resolve through one another.
fn refuse_links_under_symlinks(links: &[Link]) -> Result<(), ExtractError> {
    let names = |l: &Link| path::clean_name(&l.raw).ok();
    let symlinks: HashSet<Vec<OsString>> = links
        .iter()
        .filter(|l| l.kind == tar::EntryType::Symlink)
        .filter_map(names)
        .collect();
    for link in links {
        let Some(comps) = names(link) else { continue };
        if (1..comps.len()).any(|k| symlinks.contains(&comps[..k])) {
            return Err(name_taken(String::from_utf8_lossy(&link.raw).into_owned()));
        }
    }
    Ok(())
}

/// Give the directories `dirs` (relative to `root`, open as `root_fd`) their final owner, mode
/// and time; a directory no longer there as a directory is skipped.
fn apply_dir_meta(
    root: &Path,
    root_fd: &std::os::fd::OwnedFd,
    dirs: &[(PathBuf, DirMeta)],
) -> Result<(), ExtractError> {
    for (rel, meta) in dirs {
        let full = root.join(rel);
        let Some(dir) = fsops::open_dir_beneath(root_fd, rel, &full)? else {
            tracing::debug!(dir = %rel.display(), "directory replaced since its entry: its metadata is not applied");
            continue;
        };
        if let Some((u, g)) = meta.owner {
            fsops::fchown(&dir, u, g);
        }
        fsops::fchmod(&dir, &full, meta.mode)?;
        fsops::set_file_mtime(&dir, meta.mtime);
    }
    Ok(())
}

/// A symlink or hardlink entry kept for later: in a flattened tree extracted by several threads
/// at once, no symlink exists until every file is written, so no thread's path can cross one.
pub struct Link {
    raw: Vec<u8>,
    kind: tar::EntryType,
    target: Vec<u8>,
    mtime: i64,
    owner: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Extractor {
    /// Extract into `root` (an existing, empty directory), writing at most `budget` bytes.
    pub fn new(root: &Path, budget: u64) -> Self {
        Self {
            resolver: Resolver::new(root),
            dirs: HashMap::new(),
            privileged: nix::unistd::geteuid().is_root(),
            budget,
            charged: 0,
            block: fsops::block_size(root),
            dropped_xattrs: 0,
            dropped_examples: Vec::new(),
            buf: vec![0; COPY_BUF],
            creator: creator(root),
            creation_mask: fsops::creation_mask(root),
            shared_charge: None,
            flat: false,
            links: Vec::new(),
        }
    }

    /// One of several extractors of a flattened tree (no whiteouts, each name once, nothing
    /// under a symlink) into `root` at once, each given whole entries: they share the budget
    /// through `charged`, replace nothing (a name met twice is [`ExtractError::NotFlat`]) and
    /// keep symlinks and hardlinks for [`Extractor::apply_links`], so no path crosses a symlink
    /// while they work. Their directories' metadata goes to the extractor that finishes, by
    /// [`Extractor::absorb`].
    pub fn flat(root: &Path, budget: u64, charged: Arc<AtomicU64>) -> Self {
        let mut x = Self::new(root, budget);
        x.shared_charge = Some(charged);
        x.flat = true;
        x
    }

    /// Take over what `other`, a [`flat`](Self::flat) extractor of the same root, left for the
    /// end: its directories' metadata and dropped-attribute counts (its links are taken by
    /// [`Extractor::take_links`]).
    pub fn absorb(&mut self, other: Extractor) {
        self.dirs.extend(other.dirs);
        self.dropped_xattrs += other.dropped_xattrs;
        for example in other.dropped_examples {
            if self.dropped_examples.len() < DROPPED_EXAMPLES {
                self.dropped_examples.push(example);
            }
        }
        if let Some(charged) = other.shared_charge {
            self.charged = self.charged.max(charged.load(Ordering::Relaxed));
        }
    }

    /// The links this [`flat`](Self::flat) extractor has kept since it was last asked, in
    /// order.
    pub fn take_links(&mut self) -> Vec<Link> {
        std::mem::take(&mut self.links)
    }

    /// [`Extractor::apply_links`] on up to `threads` threads: the symlinks side by side, each
    /// thread a run of them in tar order (an extractor of its own charging the shared `charged`,
    /// as the [`flat`](Self::flat) ones did), then the hardlinks in order on this one (a
    /// hardlink may name a symlink). Safe side by side because no link is made under another:
    /// a name below a symlink's is refused first ([`ExtractError::NotFlat`]), so no thread's
    /// path crosses a symlink another thread makes. The large bench image has some 900
    /// symlinks, which one thread made while the others had nothing left to do.
    pub fn apply_links_on(
        &mut self,
        links: Vec<Link>,
        threads: usize,
        charged: &Arc<AtomicU64>,
    ) -> Result<(), ExtractError> {
        refuse_links_under_symlinks(&links)?;
        let (symlinks, hardlinks): (Vec<Link>, Vec<Link>) = links
            .into_iter()
            .partition(|l| l.kind == tar::EntryType::Symlink);
        let root = self.resolver.root().to_owned();
        let budget = self.budget;
        let runs = side_by_side(
            &symlinks,
            (threads, MIN_LINKS_PER_THREAD),
            ("scar-links", "symlink", &root),
            |run| {
                let mut x = Extractor::flat(&root, budget, charged.clone());
                x.apply_links(run).map(|()| x)
            },
        )?;
        for run in runs {
            self.absorb(run);
        }
        self.apply_links(&hardlinks)
    }

    /// Make the links the [`flat`](Self::flat) extractors kept, in tar order, once every file
    /// is there: a name already taken is [`ExtractError::NotFlat`] (a file under what should
    /// be a symlink, or a name twice), never replaced.
    pub fn apply_links(&mut self, links: &[Link]) -> Result<(), ExtractError> {
        let flat = std::mem::replace(&mut self.flat, true);
        let result = links.iter().try_for_each(|link| {
            let name = String::from_utf8_lossy(&link.raw).into_owned();
            let mut comps = path::clean_name(&link.raw)?;
            let Some(file_name) = comps.pop() else {
                return Ok(());
            };
            let Some(parent) = self.resolve_parent(&name, &comps)? else {
                return Ok(());
            };
            if link.kind == tar::EntryType::Symlink {
                return self.flat_symlink(&parent, &file_name, link);
            }
            let full = self.resolver.root().join(parent).join(&file_name);
            self.link(&name, &full, link.kind, &link.target)
        });
        self.flat = flat;
        result
    }

    /// A symlink of a flattened tree, made in its parent `parent` (a real directory, relative
    /// to the root) opened once for the links made there: a name already taken is
    /// [`ExtractError::NotFlat`], never replaced. Nothing the resolver remembers changes (it
    /// remembers real directories only, and the symlink takes a name that was free), so unlike
    /// [`Extractor::link`] it does not forget them: each link would otherwise walk its parents
    /// again (the large bench image has some 900 symlinks, made after every file).
    fn flat_symlink(
        &mut self,
        parent: &Path,
        file_name: &std::ffi::OsStr,
        link: &Link,
    ) -> Result<(), ExtractError> {
        if link.target.len() > INLINE_SYMLINK {
            self.charge(self.block)?;
        }
        let rel = parent.join(file_name);
        let full = self.resolver.root().join(&rel);
        let dir = self
            .resolver
            .open_dir(parent)
            .map_err(|e| ExtractError::io("open", &full, e))?;
        match fsops::symlink_at(&link.target, dir, file_name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(name_taken(rel.display().to_string()));
            }
            Err(e) => return Err(ExtractError::io("symlink", &full, e)),
        }
        fsops::symlink_meta_at(dir, file_name, link.owner, link.mtime);
        // Extended attributes change no time of the link.
        fsops::set_xattrs(&full, fsops::XattrTarget::Path, &link.xattrs);
        Ok(())
    }

    /// Bytes charged against the budget so far: what the file system spends (contents in whole
    /// blocks, a block per directory, a per-entry overhead), never less than `du` reports.
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
                if self.flat {
                    let what = "is a whiteout";
                    return Err(ExtractError::NotFlat { entry: name, what });
                }
                let removed = whiteout::apply(&mut self.resolver, &name, &comps, kind, &written)?;
                self.forget(&removed);
                continue;
            }
            let kind = entry.header().entry_type();
            if self.flat && matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                self.keep_link(&mut entry, raw, kind, &name);
                continue;
            }
            let Some(parent) = self.resolve_parent(&name, &comps)? else {
                continue;
            };
            let rel = parent.join(&file_name);
            let full = self.resolver.root().join(&rel);
            let mode = entry.header().mode().unwrap_or(0o644) & MODE_MASK;
            let (mtime, owner) = self.time_and_owner(entry.header());
            let xattrs = self.keep_user_xattrs(collect_xattrs(&mut entry), &rel);
            use tar::EntryType as T;
            match kind {
                T::Directory => {
                    self.make_dir(&full)?;
                    self.dirs
                        .insert(rel.clone(), DirMeta { mode, mtime, owner });
                    fsops::set_xattrs(&full, fsops::XattrTarget::Path, &xattrs);
                }
                T::Regular | T::Continuous | T::GNUSparse => {
                    let at = (parent.as_path(), file_name.as_os_str());
                    let n =
                        self.write_file(&mut entry, at, &full, (mode, mtime, owner), &xattrs)?;
                    stats.bytes_written += n;
                }
                T::Symlink | T::Link => {
                    self.link(&name, &full, kind, &link_target(&entry))?;
                    if kind == T::Symlink {
                        symlink_meta(&full, owner, &xattrs, mtime);
                    }
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
    /// read-only or its mtime comes after its children are done), and log the extended
    /// attributes that were dropped.
    ///
    /// Each directory is reached from the root with no symlink followed (`openat2`, or one
    /// component at a time with `O_NOFOLLOW`) and changed through its descriptor: a record whose
    /// path now crosses a symlink or a file (a later entry replaced a directory) is stale and
    /// skipped, never applied where the symlink points. The directories of one depth are
    /// independent, and are shared among the cores.
    pub fn finish(self) -> Result<(), ExtractError> {
        if self.dropped_xattrs > 0 {
            let more = self.dropped_xattrs - self.dropped_examples.len() as u64;
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            tracing::warn!(
                "dropped {} extended attribute{} that an image may not set (only user.* are applied): {}{tail}",
                self.dropped_xattrs,
                if self.dropped_xattrs == 1 { "" } else { "s" },
                self.dropped_examples.join(", "),
            );
        }
        let mut dirs: Vec<(PathBuf, DirMeta)> = self.dirs.into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        let root = self.resolver.root().to_owned();
        let root_fd = fsops::open_root(&root)?;
        let threads = threads();
        // A depth at a time, deepest first: a directory is reached through its parents, whose
        // final modes may not let it be.
        for level in dirs.chunk_by(|a, b| a.0.components().count() == b.0.components().count()) {
            side_by_side(
                level,
                (threads, MIN_DIRS_PER_THREAD),
                ("scar-finish", "finish", &root),
                |part| apply_dir_meta(&root, &root_fd, part),
            )?;
        }
        Ok(())
    }

    /// The `user.*` attributes of `xattrs`; the others are counted for the log line of
    /// [`finish`](Self::finish) (`security.capability` would give a binary privileges, and
    /// `trusted.*`/`system.*` belong to the host).
    fn keep_user_xattrs(
        &mut self,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
        rel: &Path,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (kept, dropped): (Vec<_>, Vec<_>) = xattrs
            .into_iter()
            .partition(|(name, _)| name.starts_with(b"user."));
        for (name, _) in dropped {
            self.dropped_xattrs += 1;
            if self.dropped_examples.len() < DROPPED_EXAMPLES {
                self.dropped_examples.push(format!(
                    "{} on {}",
                    String::from_utf8_lossy(&name),
                    rel.display()
                ));
            }
        }
        kept
    }

    /// Drop the deferred records of `removed` paths and everything below them.
    fn forget(&mut self, removed: &[PathBuf]) {
        if removed.is_empty() || self.dirs.is_empty() {
            return;
        }
        let removed: HashSet<&Path> = removed.iter().map(PathBuf::as_path).collect();
        self.dirs
            .retain(|p, _| !p.ancestors().any(|a| removed.contains(a)));
    }

    fn charge(&mut self, bytes: u64) -> Result<(), ExtractError> {
        self.charged = match &self.shared_charge {
            Some(shared) => shared.fetch_add(bytes, Ordering::Relaxed) + bytes,
            None => self.charged + bytes,
        };
        if self.charged > self.budget {
            return Err(ExtractError::Budget {
                limit_mib: self.budget / (1024 * 1024),
            });
        }
        Ok(())
    }

    /// Keep a symlink or hardlink entry of a flattened tree for [`Extractor::apply_links`].
    fn keep_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: Vec<u8>,
        kind: tar::EntryType,
        name: &str,
    ) {
        let (mtime, owner) = self.time_and_owner(entry.header());
        let target = link_target(entry);
        let xattrs = self.keep_user_xattrs(collect_xattrs(entry), Path::new(name));
        self.links.push(Link {
            raw,
            kind,
            target,
            mtime,
            owner,
            xattrs,
        });
    }

    /// The directory `comps` (of entry `name`) resolved inside the root and made where missing;
    /// `None` when it cannot be.
    fn resolve_parent(
        &mut self,
        name: &str,
        comps: &[OsString],
    ) -> Result<Option<PathBuf>, ExtractError> {
        let resolved = self.resolver.resolve_dir(name, comps, true);
        // Implicit parents take a block each, whether or not the entry then succeeds.
        let created = self.resolver.take_created();
        self.charge(created.saturating_mul(self.block))?;
        resolved
    }

    /// An entry's mtime, and its owner when ownership is applied (as root).
    fn time_and_owner(&self, header: &tar::Header) -> (i64, Option<(u32, u32)>) {
        let owner = match (header.uid(), header.gid()) {
            (Ok(u), Ok(g)) if self.privileged => Some((u as u32, g as u32)),
            _ => None,
        };
        (header.mtime().unwrap_or(0) as i64, owner)
    }

    /// Make `full` a symlink to `target` or (`kind` [`tar::EntryType::Link`]) a hardlink.
    fn link(
        &mut self,
        name: &str,
        full: &Path,
        kind: tar::EntryType,
        target: &[u8],
    ) -> Result<(), ExtractError> {
        if kind == tar::EntryType::Link {
            return self.hardlink(name, target, full);
        }
        if target.len() > INLINE_SYMLINK {
            self.charge(self.block)?;
        }
        self.replace(full, false)?;
        fsops::symlink(target, full)?;
        // A new symlink can change what any later parent resolves to.
        self.resolver.invalidate();
        Ok(())
    }

    /// Make `full` a directory, keeping an existing one (layers merge directories).
    fn make_dir(&mut self, full: &Path) -> Result<(), ExtractError> {
        match std::fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => self.replace(full, false)?,
            Err(_) => {}
        }
        self.charge(self.block)?;
        // Owner-writable until finish(): later entries and layers must be able to write in it.
        match fsops::mkdir(full, 0o700) {
            // Another extractor of a flattened tree made it meanwhile, as a parent of its own.
            Err(_) if self.flat && std::fs::symlink_metadata(full).is_ok_and(|m| m.is_dir()) => {
                Ok(())
            }
            other => other,
        }
    }

    /// Remove whatever is at `full` so a new entry can take its place.
    fn replace(&mut self, full: &Path, keep_dir: bool) -> Result<(), ExtractError> {
        if self.flat && std::fs::symlink_metadata(full).is_ok() {
            let rel = full.strip_prefix(self.resolver.root()).unwrap_or(full);
            return Err(name_taken(rel.display().to_string()));
        }
        match std::fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() => {
                if keep_dir {
                    return Ok(());
                }
                fsops::remove_tree(full)?;
                self.resolver.invalidate();
                if let Ok(rel) = full.strip_prefix(self.resolver.root()) {
                    let rel = rel.to_owned();
                    self.forget(&[rel]);
                }
                Ok(())
            }
            Ok(_) => std::fs::remove_file(full).map_err(|e| ExtractError::io("unlink", full, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExtractError::io("lstat", full, e)),
        }
    }

    /// Write the file `name` in `dir` (resolved, relative to the root), `full` being its
    /// path, with `meta` (mode, mtime, owner when applied) and `xattrs`.
    fn write_file(
        &mut self,
        entry: &mut impl Read,
        (dir, name): (&Path, &std::ffi::OsStr),
        full: &Path,
        (mode, mtime, owner): (u32, i64, Option<(u32, u32)>),
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<u64, ExtractError> {
        // Created with its final mode when the umask takes nothing from it (a descriptor opened
        // for writing stays writable whatever the mode), so no fchmod follows. Not with
        // extended attributes: setting `user.*` ones needs write permission on the file.
        let direct = xattrs.is_empty()
            && self
                .creation_mask
                .is_some_and(|mask| mode & (mask | 0o7000) == 0);
        let create_mode = if direct { mode } else { 0o600 };
        let create = |resolver: &mut Resolver| {
            let at = resolver.open_dir(dir)?;
            fsops::create_file_at(at, name, create_mode)
        };
        // Most names are new: try first, and clear the way only when something is there (an
        // lstat per file less; O_EXCL never follows a symlink, so one there is replaced too).
        let file = match create(&mut self.resolver) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.replace(full, false)?;
                create(&mut self.resolver)
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
        // The file occupies whole blocks.
        self.charge(total.div_ceil(self.block) * self.block - total)?;
        fsops::set_xattrs(full, fsops::XattrTarget::File(&file), xattrs);
        // A new file is already ours: chown only when the image wants someone else.
        if let Some((u, g)) = owner.filter(|&o| Some(o) != self.creator) {
            fsops::fchown(&file, u, g);
        }
        if !direct {
            fsops::fchmod(&file, full, mode)?;
        }
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
        // linkat(2) without AT_SYMLINK_FOLLOW (what std does on Linux): a link to a symlink is
        // a second symlink, not the file it points to.
        std::fs::hard_link(&source, full).map_err(|e| ExtractError::io("link", full, e))?;
        // A new name for a symlink can change what later parents resolve to.
        self.resolver.invalidate();
        Ok(())
    }
}

/// What a symlink or hardlink entry points to.
fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Vec<u8> {
    entry
        .link_name_bytes()
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

/// A new symlink's owner, extended attributes and time.
fn symlink_meta(full: &Path, owner: Option<(u32, u32)>, xattrs: &[(Vec<u8>, Vec<u8>)], mtime: i64) {
    if let Some((u, g)) = owner {
        fsops::lchown(full, u, g);
    }
    fsops::set_xattrs(full, fsops::XattrTarget::Path, xattrs);
    fsops::set_times_nofollow(full, mtime);
}

/// Who owns the files created under `root`, when that is known without asking each one.
fn creator(root: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root).ok()?;
    if meta.mode() & libc::S_ISGID != 0 {
        return None;
    }
    Some((
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    ))
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

//! The tar side of the framed image writer: walking a tree in a fixed order (a directory
//! before its children, names sorted byte-wise) and cutting the tar of its entries into frames
//! of the target size, handed to the compressing threads of [`super::write`].

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

/// Why the tree could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// Reading the tree failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path in the tree.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file's size changed while it was read.
    #[error("{} changed while it was being written (its size is not what it was)", path.display())]
    Changed {
        /// The path in the tree.
        path: PathBuf,
    },
}

/// Tar block size: headers and the padding of contents.
const BLOCK: u64 = 512;
/// Bytes a tar header's name and link name fields hold; longer ones get a GNU long entry.
const NAME_FIELD: usize = 100;
/// Read buffer for file contents.
const CHUNK: usize = 256 * 1024;

/// Uncompressed tar bytes of one frame, numbered in tar order.
pub struct Job {
    /// Its number: frames are written in this order.
    pub seq: u64,
    /// The tar bytes.
    pub tar: Vec<u8>,
    /// Whether it goes on with the previous frame's last entry.
    pub continues: bool,
}

/// Cuts the tar into frames as the walker produces it.
pub struct Framer {
    target: usize,
    buf: Vec<u8>,
    /// Whether the frame being filled goes on with the previous frame's last entry.
    continues: bool,
    seq: u64,
    jobs: SyncSender<Job>,
    bufs: Receiver<Vec<u8>>,
}

/// The writer went away (it failed): the walker stops quietly, the writer reports why.
struct Gone;

impl Framer {
    /// A framer cutting at `target` bytes, sending frames to `jobs` and taking an empty
    /// buffer from `bufs` for each.
    pub fn new(target: u64, jobs: SyncSender<Job>, bufs: Receiver<Vec<u8>>) -> Self {
        Self {
            target: usize::try_from(target).unwrap_or(usize::MAX),
            buf: Vec::new(),
            continues: false,
            seq: 0,
            jobs,
            bufs,
        }
    }

    /// Begin an entry (or the end blocks) of `total` bytes: a frame that has something in it
    /// and would pass the target ends first, so the entry starts the next one.
    fn begin(&mut self, total: u64) -> Result<(), Gone> {
        if !self.buf.is_empty() && self.buf.len() as u64 + total > self.target as u64 {
            self.cut(false)?;
        }
        Ok(())
    }

    /// Append bytes of the current entry, cutting frames of exactly the target size.
    fn put(&mut self, mut bytes: &[u8]) -> Result<(), Gone> {
        while !bytes.is_empty() {
            if self.buf.len() >= self.target {
                self.cut(true)?;
            }
            let take = bytes.len().min(self.target - self.buf.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Hand the current frame to the workers; the next one `continues` this one's entry.
    fn cut(&mut self, continues: bool) -> Result<(), Gone> {
        let fresh = self.bufs.recv().map_err(|_| Gone)?;
        let tar = std::mem::replace(&mut self.buf, fresh);
        let job = Job {
            seq: self.seq,
            tar,
            continues: self.continues,
        };
        self.jobs.send(job).map_err(|_| Gone)?;
        self.seq += 1;
        self.continues = continues;
        Ok(())
    }

    /// The tar's two zero blocks end the last frame, which is then handed over.
    fn end(mut self) -> Result<(), Gone> {
        self.begin(2 * BLOCK)?;
        self.put(&[0u8; 2 * BLOCK as usize])?;
        self.cut(false)
    }
}

/// Walk the tree in tar order and feed its entries to `framer`; returns the entries written
/// and the entries skipped.
pub fn walk(root: &Path, mut framer: Framer) -> Result<(u64, u64), WalkError> {
    let mut walker = Walker {
        owners: nix::unistd::geteuid().is_root(),
        links: std::collections::HashMap::new(),
        entries: 0,
        skipped: 0,
        chunk: vec![0; CHUNK],
    };
    let mut stack = Stack(vec![(
        PathBuf::new(),
        sorted_names(root)?.into_iter(),
        None,
    )]);
    while let Some((dir, names, _)) = stack.0.last_mut() {
        let Some(name) = names.next() else {
            stack.0.pop();
            continue;
        };
        let rel = dir.join(name);
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full).map_err(|source| WalkError::Read {
            path: full.clone(),
            source,
        })?;
        match walker.entry(&mut framer, &rel, &full, &meta) {
            Ok(()) => {}
            Err(Stop::Gone) => return Ok((walker.entries, walker.skipped)),
            Err(Stop::Failed(e)) => return Err(e),
        }
        if meta.is_dir() {
            let (names, opened) = open_dir(&full, &meta)?;
            stack.0.push((rel, names.into_iter(), opened));
        }
    }
    if framer.end().is_err() {
        // The writer failed and says why.
        return Ok((walker.entries, walker.skipped));
    }
    Ok((walker.entries, walker.skipped))
}

/// The directories being walked, innermost last, each with the mode to put back when it is
/// done. Dropped (at the end, or on an early return), it puts the modes back innermost first:
/// an outer directory made unsearchable again would hide the inner ones.
struct Stack(Vec<(PathBuf, std::vec::IntoIter<OsString>, Option<Widened>)>);

impl Drop for Stack {
    fn drop(&mut self) {
        while self.0.pop().is_some() {}
    }
}

/// A file or directory of ours whose mode was widened to be read ([`widen`]); the mode goes
/// back with [`Widened::restore`], or on drop.
struct Widened {
    path: PathBuf,
    mode: u32,
    restored: bool,
}

impl Widened {
    /// Put the mode back now, saying whether that failed.
    fn restore(mut self) -> io::Result<()> {
        self.restored = true;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(self.mode))
    }
}

impl Drop for Widened {
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        let mode = std::fs::Permissions::from_mode(self.mode);
        if let Err(err) = std::fs::set_permissions(&self.path, mode) {
            tracing::warn!(path = %self.path.display(), mode = format!("{:o}", self.mode), %err, "cannot put a mode back after reading");
        }
    }
}

/// Add the owner's `bits` to the mode of `full` (`meta` its metadata, read before), when it is
/// ours: an unprivileged pull writes every entry as the user with the image's mode, so what the
/// image makes unreadable is ours but refuses us. `None` when it is not ours.
fn widen(full: &Path, meta: &Metadata, bits: u32) -> io::Result<Option<Widened>> {
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(None);
    }
    let mode = meta.permissions().mode() & 0o7777;
    std::fs::set_permissions(full, std::fs::Permissions::from_mode(mode | bits))?;
    Ok(Some(Widened {
        path: full.to_owned(),
        mode,
        restored: false,
    }))
}

/// The names of the directory `full` (`meta` its metadata), sorted. One the image makes
/// unreadable or unsearchable (`d---------`) gets the owner's read and search bits ([`widen`])
/// while its subtree is walked, and its mode back when the returned guard drops (the mode
/// written in the tar is the one read before).
fn open_dir(full: &Path, meta: &Metadata) -> Result<(Vec<OsString>, Option<Widened>), WalkError> {
    let refused = match sorted_names(full) {
        Err(WalkError::Read { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
            source
        }
        other => return other.map(|names| (names, None)),
    };
    match widen(full, meta, 0o500) {
        Ok(Some(guard)) => Ok((sorted_names(full)?, Some(guard))),
        _ => Err(WalkError::Read {
            path: full.to_owned(),
            source: refused,
        }),
    }
}

/// The names in a directory, sorted byte-wise (the order tar entries come in).
fn sorted_names(dir: &Path) -> Result<Vec<OsString>, WalkError> {
    let read = |source| WalkError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        names.push(entry.map_err(read)?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Why the walk stops early.
enum Stop {
    Gone,
    Failed(WalkError),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Stop::Gone
    }
}

impl From<WalkError> for Stop {
    fn from(e: WalkError) -> Self {
        Stop::Failed(e)
    }
}

/// State of the walk: what makes one entry's tar bytes.
struct Walker {
    /// Whether owners are kept (running as root) or written as 0:0.
    owners: bool,
    /// First path of each multiply linked file, by (device, inode).
    links: std::collections::HashMap<(u64, u64), PathBuf>,
    entries: u64,
    skipped: u64,
    chunk: Vec<u8>,
}

impl Walker {
    /// Write one entry: its header (and GNU long-name entries), then its contents.
    fn entry(
        &mut self,
        framer: &mut Framer,
        rel: &Path,
        full: &Path,
        meta: &Metadata,
    ) -> Result<(), Stop> {
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        let (uid, gid) = if self.owners {
            (meta.uid(), meta.gid())
        } else {
            (0, 0)
        };
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header.set_size(0);
        let mut name = rel.as_os_str().as_bytes().to_vec();
        let mut link: Option<Vec<u8>> = None;
        let mut data_len = 0u64;
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            name.push(b'/');
        } else if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = std::fs::read_link(full).map_err(|source| WalkError::Read {
                path: full.to_owned(),
                source,
            })?;
            link = Some(target.into_os_string().into_vec());
        } else if kind.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
        } else if kind.is_file() {
            let first = if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                match self.links.get(&key) {
                    Some(first) => Some(first.clone()),
                    None => {
                        self.links.insert(key, rel.to_owned());
                        None
                    }
                }
            } else {
                None
            };
            if let Some(first) = first {
                header.set_entry_type(tar::EntryType::Link);
                link = Some(first.into_os_string().into_vec());
            } else {
                header.set_entry_type(tar::EntryType::Regular);
                data_len = meta.len();
                header.set_size(data_len);
            }
        } else {
            tracing::debug!(path = %rel.display(), "leaving out a socket or device node");
            self.skipped += 1;
            return Ok(());
        }
        let head = head_bytes(&mut header, &name, link.as_deref());
        framer.begin(head.len() as u64 + data_len.div_ceil(BLOCK) * BLOCK)?;
        framer.put(&head)?;
        self.entries += 1;
        if data_len > 0 {
            self.contents(framer, full, data_len)?;
        }
        Ok(())
    }

    /// Stream a file's `len` bytes and the padding to the next block.
    fn contents(&mut self, framer: &mut Framer, full: &Path, len: u64) -> Result<(), Stop> {
        let failed = |source| WalkError::Read {
            path: full.to_owned(),
            source,
        };
        let mut file = open_file(full).map_err(failed)?;
        let mut left = len;
        while left > 0 {
            let want = self
                .chunk
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.chunk[..want]) {
                Ok(0) => {
                    return Err(WalkError::Changed {
                        path: full.to_owned(),
                    }
                    .into());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(e).into()),
            };
            framer.put(&self.chunk[..n])?;
            left -= n as u64;
        }
        let pad = (BLOCK - len % BLOCK) % BLOCK;
        framer.put(&[0u8; BLOCK as usize][..pad as usize])?;
        Ok(())
    }
}

/// Open a file of the tree for reading. A file the image makes unreadable (mode 000:
/// `/etc/shadow` of Amazon Linux and RHEL) gets the owner's read bit ([`widen`]) for the `open`
/// and its mode back at once (the descriptor keeps its access). The mode written in the tar is
/// the one read before.
fn open_file(full: &Path) -> io::Result<File> {
    let open = || {
        File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(full)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let meta = std::fs::symlink_metadata(full)?;
            if !meta.is_file() {
                return Err(e);
            }
            let Some(widened) = widen(full, &meta, 0o400)? else {
                return Err(e);
            };
            let file = open();
            let restored = widened.restore();
            let file = file?;
            restored?;
            Ok(file)
        }
        other => other,
    }
}

/// The header block of an entry, preceded by GNU long name (`L`) and long link (`K`) entries
/// when the name or the link target do not fit the header's 100-byte fields. Names and targets
/// are written as they are, byte for byte.
fn head_bytes(header: &mut tar::Header, name: &[u8], link: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK as usize);
    if name.len() > NAME_FIELD {
        long_entry(&mut out, b'L', name);
    }
    let field = &mut header.as_old_mut().name;
    let n = name.len().min(NAME_FIELD);
    field[..n].copy_from_slice(&name[..n]);
    if let Some(link) = link {
        if link.len() > NAME_FIELD {
            long_entry(&mut out, b'K', link);
        }
        let field = &mut header.as_old_mut().linkname;
        let n = link.len().min(NAME_FIELD);
        field[..n].copy_from_slice(&link[..n]);
    }
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out
}

/// A GNU long name or long link entry: `value` and a NUL, padded to a block.
fn long_entry(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let mut header = tar::Header::new_gnu();
    let field = &mut header.as_old_mut().name;
    let label = b"././@LongLink";
    field[..label.len()].copy_from_slice(label);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(value.len() as u64 + 1);
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(value);
    out.push(0);
    let pad = (BLOCK - (value.len() as u64 + 1) % BLOCK) % BLOCK;
    out.resize(out.len() + pad as usize, 0);
}

//! Writing a framed image (layout in [`super::format`]) from a directory tree: the image's
//! flattened root as the cache holds it.
//!
//! One thread walks the tree in a fixed order and builds the tar, cutting it into frames of
//! [`WriteOptions::frame_target`] bytes; `threads` workers compress the frames, each as an
//! independent zstd frame; the calling thread writes them in order, then the index and the
//! trailer. At most `2 * threads` frames are in flight, so memory stays bounded whatever the
//! size of the tree or of its files (a file is streamed into frames, never read whole).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::format::{FORMAT, FRAME_TARGET, Frame, Index, Trailer};
use crate::digest::Digest;
use crate::image::ImageConfig;

/// Tar block size: headers and the padding of contents.
const BLOCK: u64 = 512;
/// Bytes a tar header's name and link name fields hold; longer ones get a GNU long entry.
const NAME_FIELD: usize = 100;
/// Read buffer for file contents.
const CHUNK: usize = 256 * 1024;

/// How to write a framed image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd compression level (1..=19).
    pub level: i32,
    /// Uncompressed tar bytes per frame (at most `4 * FRAME_TARGET`, which readers accept).
    pub frame_target: u64,
    /// Threads compressing frames.
    pub threads: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            level: 3,
            frame_target: FRAME_TARGET,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What [`write_tree`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The index written before the trailer.
    pub index: Index,
    /// The digest of the index bytes: the image's pinned name and cache key.
    pub index_digest: Digest,
    /// Bytes written in all (frames, index, trailer).
    pub object_len: u64,
    /// Sockets and device nodes left out.
    pub skipped: u64,
}

/// Why a framed image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
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
    /// Writing the object failed.
    #[error("cannot write the framed image: {0}")]
    Output(#[source] io::Error),
    /// zstd failed.
    #[error("cannot compress a frame: {0}")]
    Compress(#[source] io::Error),
    /// The options cannot give an object readers accept.
    #[error("invalid options: {0}")]
    Options(String),
}

/// Write the tree under `root` (not itself an entry) as a framed image of `config`, named
/// `source` in its index, to `out`. The same tree gives the same bytes.
pub fn write_tree(
    root: &Path,
    config: &ImageConfig,
    source: &str,
    out: &mut impl Write,
    options: &WriteOptions,
) -> Result<Written, WriteError> {
    if !(1..=4 * FRAME_TARGET).contains(&options.frame_target) {
        return Err(WriteError::Options(format!(
            "frame target {} is not between 1 and {} bytes",
            options.frame_target,
            4 * FRAME_TARGET
        )));
    }
    if !(1..=22).contains(&options.level) {
        return Err(WriteError::Options(format!(
            "zstd level {} is not between 1 and 22",
            options.level
        )));
    }
    let threads = options.threads.max(1);
    let (job_tx, job_rx) = sync_channel::<Job>(threads);
    let (done_tx, done_rx) = sync_channel::<Result<Done, WriteError>>(threads);
    // Empty buffers handed back and forth: the walker takes one per frame and the writer
    // returns it once the frame is written, which bounds the frames in flight.
    let (buf_tx, buf_rx) = sync_channel::<Vec<u8>>(2 * threads);
    for _ in 0..2 * threads {
        // Cannot fail: the channel has room for every one and its receiver is alive.
        let _ = buf_tx.send(Vec::new());
    }
    let job_rx = Arc::new(Mutex::new(job_rx));
    std::thread::scope(|scope| {
        let walker = scope.spawn(move || {
            let framer = Framer::new(options.frame_target, job_tx, buf_rx);
            walk(root, framer)
        });
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let level = options.level;
            scope.spawn(move || compress_frames(&job_rx, &done_tx, level));
        }
        // Only the workers keep these: when they are gone, the walker and the writer see it.
        drop(done_tx);
        drop(job_rx);
        let written = write_frames(out, done_rx, buf_tx);
        // The walker ends once the writer is gone (no buffers) or the tree is done.
        let walked = walker
            .join()
            .unwrap_or_else(|_| Err(WriteError::Options("the tree walker panicked".into())));
        let (frames, at) = written?;
        let (entries, skipped) = walked?;
        finish(out, config, source, frames, at, entries, skipped)
    })
}

/// Write the index and the trailer after the frames.
fn finish(
    out: &mut impl Write,
    config: &ImageConfig,
    source: &str,
    frames: Vec<Frame>,
    at: u64,
    entries: u64,
    skipped: u64,
) -> Result<Written, WriteError> {
    let index = Index {
        format: FORMAT.into(),
        source: source.into(),
        config: config.clone(),
        frames,
        entries,
    };
    let (bytes, index_digest) = index.encode();
    let trailer = Trailer {
        index_offset: at,
        index_len: bytes.len() as u64,
        index_digest,
    };
    out.write_all(&bytes).map_err(WriteError::Output)?;
    out.write_all(&trailer.encode())
        .map_err(WriteError::Output)?;
    out.flush().map_err(WriteError::Output)?;
    Ok(Written {
        index,
        index_digest,
        object_len: at + bytes.len() as u64 + trailer.encode().len() as u64,
        skipped,
    })
}

/// Uncompressed tar bytes of one frame, numbered in tar order.
struct Job {
    seq: u64,
    tar: Vec<u8>,
    continues: bool,
}

/// A compressed frame, with the buffer of its tar bytes to reuse.
struct Done {
    seq: u64,
    compressed: Vec<u8>,
    size: u64,
    digest: Digest,
    continues: bool,
    buf: Vec<u8>,
}

/// A worker: compress frames until the walker is done or the writer is gone.
fn compress_frames(
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<Result<Done, WriteError>>,
    level: i32,
) {
    let mut compressor = match zstd::bulk::Compressor::new(level) {
        Ok(c) => c,
        Err(e) => {
            let _ = done.send(Err(WriteError::Compress(e)));
            return;
        }
    };
    loop {
        // A poisoned lock means another worker panicked: stop too.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let result = compressor
            .compress(&job.tar)
            .map_err(WriteError::Compress)
            .map(|compressed| Done {
                seq: job.seq,
                compressed,
                size: job.tar.len() as u64,
                digest: Digest::of(&job.tar),
                continues: job.continues,
                buf: {
                    job.tar.clear();
                    std::mem::take(&mut job.tar)
                },
            });
        if done.send(result).is_err() {
            return;
        }
    }
}

/// The writer: put compressed frames in order into `out`; returns the frames and the offset
/// after the last one.
fn write_frames(
    out: &mut impl Write,
    done: Receiver<Result<Done, WriteError>>,
    bufs: SyncSender<Vec<u8>>,
) -> Result<(Vec<Frame>, u64), WriteError> {
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut frames = Vec::new();
    let mut at = 0u64;
    for result in done {
        let frame = result?;
        pending.insert(frame.seq, frame);
        while let Some(frame) = pending.remove(&(frames.len() as u64)) {
            out.write_all(&frame.compressed)
                .map_err(WriteError::Output)?;
            let length = frame.compressed.len() as u64;
            frames.push(Frame {
                offset: at,
                length,
                size: frame.size,
                digest: frame.digest,
                continues: frame.continues,
            });
            at += length;
            // The walker may be done and gone: then the buffer is simply dropped.
            let _ = bufs.send(frame.buf);
        }
    }
    if !pending.is_empty() {
        return Err(WriteError::Compress(io::Error::other(
            "a frame was lost between the compressing threads",
        )));
    }
    Ok((frames, at))
}

/// Cuts the tar into frames as the walker produces it.
struct Framer {
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
    fn new(target: u64, jobs: SyncSender<Job>, bufs: Receiver<Vec<u8>>) -> Self {
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
fn walk(root: &Path, mut framer: Framer) -> Result<(u64, u64), WriteError> {
    let mut walker = Walker {
        owners: nix::unistd::geteuid().is_root(),
        links: std::collections::HashMap::new(),
        entries: 0,
        skipped: 0,
        chunk: vec![0; CHUNK],
    };
    let mut stack = vec![(PathBuf::new(), sorted_names(root)?.into_iter())];
    while let Some((dir, names)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        let rel = dir.join(name);
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full).map_err(|source| WriteError::Read {
            path: full.clone(),
            source,
        })?;
        match walker.entry(&mut framer, &rel, &full, &meta) {
            Ok(()) => {}
            Err(Stop::Gone) => return Ok((walker.entries, walker.skipped)),
            Err(Stop::Failed(e)) => return Err(e),
        }
        if meta.is_dir() {
            let names = sorted_names(&full)?;
            stack.push((rel, names.into_iter()));
        }
    }
    if framer.end().is_err() {
        // The writer failed and says why.
        return Ok((walker.entries, walker.skipped));
    }
    Ok((walker.entries, walker.skipped))
}

/// The names in a directory, sorted byte-wise (the order tar entries come in).
fn sorted_names(dir: &Path) -> Result<Vec<OsString>, WriteError> {
    let read = |source| WriteError::Read {
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
    Failed(WriteError),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Stop::Gone
    }
}

impl From<WriteError> for Stop {
    fn from(e: WriteError) -> Self {
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
            let target = std::fs::read_link(full).map_err(|source| WriteError::Read {
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
        let failed = |source| WriteError::Read {
            path: full.to_owned(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(full)
            .map_err(failed)?;
        let mut left = len;
        while left > 0 {
            let want = self
                .chunk
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.chunk[..want]) {
                Ok(0) => {
                    return Err(WriteError::Changed {
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

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;

//! Writing a framed image (layout in [`super::format`]) from a directory tree: the image's
//! flattened root as the cache holds it.
//!
//! One thread walks the tree in a fixed order and builds the tar, cutting it into frames of
//! [`WriteOptions::frame_target`] bytes; `threads` workers compress the frames, each as an
//! independent zstd frame; the calling thread writes them in order, then the index and the
//! trailer. At most `2 * threads` frames are in flight, so memory stays bounded whatever the
//! size of the tree or of its files (a file is streamed into frames, never read whole).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::format::{FORMAT, FRAME_TARGET, Frame, FrameDigest, Index, Trailer};
use super::tar_walk::{Framer, Job, walk};
use crate::digest::Digest;
use crate::image::ImageConfig;

pub use super::tar_walk::WalkError;

/// The zstd level a push uses unless told otherwise: with raw literals, objects a little smaller
/// than level 3 with Huffman-coded ones and decoded faster on an idle core (the large bench
/// image: 264.5 MB against 271.7 MB; its tar decoded at 1.28 GB/s against 1.08 GB/s on one
/// core of this build), at a quarter of level 3's push speed.
pub const DEFAULT_LEVEL: i32 = 9;

/// How to write a framed image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd compression level (1..=19).
    pub level: i32,
    /// Huffman-code the literals (the bytes no match covers) as well. Off by default: at level 9
    /// raw literals cost a few percent of size and decode about 1.2x as fast on an idle core
    /// (within a pull, beside the file system's work, the gain was within the noise).
    pub compress_literals: bool,
    /// Uncompressed tar bytes per frame (at most `4 * FRAME_TARGET`, which readers accept).
    pub frame_target: u64,
    /// Threads compressing frames.
    pub threads: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            level: DEFAULT_LEVEL,
            compress_literals: false,
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
    /// Reading the tree failed (the message names the path).
    #[error(transparent)]
    Walk(#[from] WalkError),
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
            let (level, literals) = (options.level, options.compress_literals);
            scope.spawn(move || compress_frames(&job_rx, &done_tx, level, literals));
        }
        // Only the workers keep these: when they are gone, the walker and the writer see it.
        drop(done_tx);
        drop(job_rx);
        let written = write_frames(out, done_rx, buf_tx);
        // The walker ends once the writer is gone (no buffers) or the tree is done.
        let walked = walker
            .join()
            .map_err(|_| WriteError::Options("the tree walker panicked".into()))?;
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

/// A compressed frame, with the buffer of its tar bytes to reuse.
struct Done {
    seq: u64,
    compressed: Vec<u8>,
    size: u64,
    digest: FrameDigest,
    continues: bool,
    buf: Vec<u8>,
}

/// A worker: compress frames until the walker is done or the writer is gone.
fn compress_frames(
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<Result<Done, WriteError>>,
    level: i32,
    compress_literals: bool,
) {
    let compressor = zstd::bulk::Compressor::new(level).and_then(|mut c| {
        if !compress_literals {
            use zstd::zstd_safe::{CParameter, ParamSwitch};
            c.set_parameter(CParameter::LiteralCompressionMode(ParamSwitch::Disable))?;
        }
        Ok(c)
    });
    let mut compressor = match compressor {
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
                digest: FrameDigest::of(&compressed),
                compressed,
                size: job.tar.len() as u64,
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

#[cfg(test)]
#[path = "write_tests.rs"]
pub(super) mod tests;

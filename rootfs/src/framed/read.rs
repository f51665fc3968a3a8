//! Applying a framed image ([`super::format`]): its frames, fetched as ranges of a few MiB at
//! frame boundaries, are checked against the index and decoded on every core before any of
//! their bytes reach the extractor, and handed on in order as one tar stream.
//!
//! Memory stays bounded whatever the image's size: the fetcher holds its ranges in flight, and
//! at most [`FrameReader`]'s window of frames (one per core and the one being read) is being
//! decoded or waiting to be read; a frame's slot is given back only once the extractor has read
//! all of it.
//! The buffers of decoded frames go round a pool rather than back to the allocator: frames are
//! a few MiB each, and freeing and asking again for blocks that size from several threads
//! leaves the heap larger than the window.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::format::{Frame, Index};
use crate::digest::Digest;
use crate::extract::{ExtractError, Extractor};

/// Compressed bytes a range request asks for at most, unless one frame alone is larger: frames
/// are added to a range while it stays within this, so the ranges in flight bound the memory.
pub const GROUP_TARGET: u64 = 4 * 1024 * 1024;

/// Why a framed image could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The compressed bytes could not be had.
    #[error("{0}")]
    Fetch(String),
    /// A frame does not decode to the bytes the index names.
    #[error("{object}: frame {frame}/{frames} is corrupt or replaced ({detail}); nothing was kept")]
    Corrupt {
        /// `s3://bucket/key` or the path.
        object: String,
        /// 1-based frame number.
        frame: usize,
        /// Frames in all.
        frames: usize,
        /// What did not match.
        detail: String,
    },
    /// The frames ended before the tar did, or the reader stopped.
    #[error("{object}: {detail}")]
    Stream {
        /// `s3://bucket/key` or the path.
        object: String,
        /// What happened.
        detail: String,
    },
    /// The tar could not be extracted.
    #[error("{object}: {source}")]
    Extract {
        /// `s3://bucket/key` or the path.
        object: String,
        /// What failed.
        #[source]
        source: ExtractError,
    },
}

/// Consecutive frames fetched with one range request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// First byte in the object.
    pub start: u64,
    /// Last byte, included.
    pub end: u64,
    /// Which frames of the index.
    pub frames: Range<usize>,
}

/// The index's frames cut into ranges of at most [`GROUP_TARGET`] bytes (or one frame), at
/// frame boundaries.
pub fn groups(index: &Index) -> Vec<Group> {
    let mut out = Vec::new();
    let mut first = 0;
    while first < index.frames.len() {
        let start = index.frames[first].offset;
        let mut last = first;
        while last + 1 < index.frames.len()
            && index.frames[last + 1].offset + index.frames[last + 1].length - start <= GROUP_TARGET
        {
            last += 1;
        }
        let end = index.frames[last].offset + index.frames[last].length - 1;
        out.push(Group {
            start,
            end,
            frames: first..last + 1,
        });
        first = last + 1;
    }
    out
}

/// What a frame became once decoded: its bytes, or why they were refused.
type Decoded = Result<Vec<u8>, ReadError>;

/// Buffers of frames read whole, for the decoders to fill again.
type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// The tar of a framed image, read in order from frames decoded on `threads` threads.
pub struct FrameReader {
    results: Receiver<(usize, Decoded)>,
    /// Frames decoded ahead of the one being read.
    ready: BTreeMap<usize, Decoded>,
    /// One slot per frame handed to the decoders and not read yet.
    slots: Receiver<()>,
    frames: usize,
    /// The frame being read and how far.
    next: usize,
    current: Vec<u8>,
    at: usize,
    /// The first error seen, kept for [`apply`] (the extractor sees only an `io::Error`).
    failure: Arc<Mutex<Option<ReadError>>>,
    object: String,
    pool: Pool,
}

impl FrameReader {
    /// Decode the frames of `index` whose compressed bytes `compressed` yields group by group
    /// (the groups of [`groups`], in order), on `threads` threads, for the object `object`.
    pub fn new(
        object: &str,
        index: &Index,
        compressed: impl Iterator<Item = Result<Bytes, String>> + Send + 'static,
        threads: usize,
    ) -> Self {
        let threads = threads.max(1);
        steady_heap();
        let frames: Arc<[Frame]> = index.frames.clone().into();
        let groups = groups(index);
        // The frame being read and one per decoder besides: every decoder has a frame to work
        // on while the extractor reads (measured on 2 cores, the large bench image from a
        // local file: 1.58 s with a frame per decoder counting the one read, 1.50 s with this,
        // 1.48 s with two more; each frame is 4 MiB of memory).
        let (slot_tx, slots) = mpsc::sync_channel::<()>(threads + 1);
        let (job_tx, jobs) = mpsc::sync_channel::<(usize, Bytes)>(0);
        let jobs = Arc::new(Mutex::new(jobs));
        let (result_tx, results) = mpsc::channel();
        let pool = Pool::default();
        for _ in 0..threads {
            let (jobs, results, frames) = (jobs.clone(), result_tx.clone(), frames.clone());
            let (object, pool) = (object.to_owned(), pool.clone());
            std::thread::spawn(move || decode_jobs(&object, &frames, &jobs, &results, &pool));
        }
        let (object_name, count) = (object.to_owned(), frames.len());
        std::thread::spawn(move || {
            feed(
                &object_name,
                &frames,
                &groups,
                compressed,
                &slot_tx,
                &job_tx,
                &result_tx,
            )
        });
        Self {
            results,
            ready: BTreeMap::new(),
            slots,
            frames: count,
            next: 0,
            current: Vec::new(),
            at: 0,
            failure: Arc::new(Mutex::new(None)),
            object: object.to_owned(),
            pool,
        }
    }

    /// Where the first error is kept once the reader fails.
    pub fn failure(&self) -> Arc<Mutex<Option<ReadError>>> {
        self.failure.clone()
    }

    fn fail(&self, err: ReadError) -> io::Error {
        let text = err.to_string();
        if let Ok(mut slot) = self.failure.lock()
            && slot.is_none()
        {
            *slot = Some(err);
        }
        io::Error::new(io::ErrorKind::InvalidData, text)
    }

    /// Make the next frame current; false at the end of the tar.
    fn advance(&mut self) -> io::Result<bool> {
        if self.next >= self.frames {
            return Ok(false);
        }
        let decoded = loop {
            if let Some(d) = self.ready.remove(&self.next) {
                break d;
            }
            match self.results.recv() {
                Ok((i, d)) => {
                    self.ready.insert(i, d);
                }
                Err(_) => {
                    return Err(self.fail(ReadError::Stream {
                        object: self.object.clone(),
                        detail: "the frame decoders stopped".into(),
                    }));
                }
            }
        };
        let decoded = decoded.map_err(|e| self.fail(e))?;
        let read = std::mem::replace(&mut self.current, decoded);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(read);
        }
        self.at = 0;
        self.next += 1;
        // The previous frame is read whole: its slot goes to a frame further on.
        let _ = self.slots.try_recv();
        Ok(true)
    }
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.current.len() {
            if !self.advance()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Make glibc's allocator give blocks of a MiB or more back to the system when they are freed.
///
/// Its default threshold for that grows with the largest block freed, up to 32 MiB: after the
/// first frame, buffers of a few MiB come from per-thread heaps that keep what was freed, and a
/// pull's peak memory grows by several MiB per thread that touched a buffer (measured: 78 MiB
/// against 60 MiB for a 300 MiB image with four ranges in flight). musl maps large blocks
/// alone already.
fn steady_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets allocator parameters, under the allocator's own lock;
            // glibc allows it at any time, from any thread, and no memory changes hands.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        });
    }
}

/// Hand each frame of each group to the decoders, a slot per frame; a group that cannot be
/// had becomes the error of its first frame.
fn feed(
    object: &str,
    frames: &[Frame],
    groups: &[Group],
    mut compressed: impl Iterator<Item = Result<Bytes, String>>,
    slots: &SyncSender<()>,
    jobs: &SyncSender<(usize, Bytes)>,
    results: &mpsc::Sender<(usize, Decoded)>,
) {
    for group in groups {
        // The slot of the group's first frame before its bytes: a group is not taken from the
        // fetcher (which then starts the next range) while the window is full.
        if slots.send(()).is_err() {
            return;
        }
        let bytes = match compressed.next() {
            Some(Ok(b)) if b.len() as u64 == group.end - group.start + 1 => b,
            Some(Ok(b)) => {
                let detail = format!(
                    "{object}: bytes {}-{} came back as {} bytes",
                    group.start,
                    group.end,
                    b.len()
                );
                return_err(results, group.frames.start, ReadError::Fetch(detail));
                return;
            }
            Some(Err(detail)) => {
                return_err(results, group.frames.start, ReadError::Fetch(detail));
                return;
            }
            None => {
                let err = ReadError::Stream {
                    object: object.to_owned(),
                    detail: format!(
                        "the object's bytes stopped before frame {} (truncated, or the pull stopped)",
                        group.frames.start + 1
                    ),
                };
                return_err(results, group.frames.start, err);
                return;
            }
        };
        for i in group.frames.clone() {
            let f = &frames[i];
            let from = (f.offset - group.start) as usize;
            let Some(frame) = bytes.get(from..from + f.length as usize) else {
                return;
            };
            // Blocks while the window of frames is full: the reader frees a slot per frame.
            let slot = i == group.frames.start || slots.send(()).is_ok();
            if !slot || jobs.send((i, bytes.slice_ref(frame))).is_err() {
                return;
            }
        }
    }
}

/// Report `err` as frame `i`'s outcome (the reader reaches it in order).
fn return_err(results: &mpsc::Sender<(usize, Decoded)>, i: usize, err: ReadError) {
    let _ = results.send((i, Err(err)));
}

/// A decoding thread: frames in, checked bytes out.
fn decode_jobs(
    object: &str,
    frames: &[Frame],
    jobs: &Mutex<Receiver<(usize, Bytes)>>,
    results: &mpsc::Sender<(usize, Decoded)>,
    pool: &Pool,
) {
    let Ok(mut decompressor) = zstd::bulk::Decompressor::new() else {
        return;
    };
    loop {
        // The lock is held only to take a job, never while decoding.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((i, compressed)) = job else {
            return;
        };
        let buf = pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        let decoded =
            decode_into(&mut decompressor, &frames[i], &compressed, buf).map_err(|detail| {
                ReadError::Corrupt {
                    object: object.to_owned(),
                    frame: i + 1,
                    frames: frames.len(),
                    detail,
                }
            });
        if results.send((i, decoded)).is_err() {
            return;
        }
    }
}

/// Frame `frame`'s tar bytes from its compressed bytes, checked against the index.
pub fn decode(frame: &Frame, compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
    decode_into(&mut decompressor, frame, compressed, Vec::new())
}

/// [`decode`] into `out` (a buffer to reuse) with `decompressor`.
fn decode_into(
    decompressor: &mut zstd::bulk::Decompressor<'_>,
    frame: &Frame,
    compressed: &[u8],
    mut out: Vec<u8>,
) -> Result<Vec<u8>, String> {
    // The bytes checked before they are decoded: nothing unverified reaches the decoder.
    let digest = Digest::of(compressed);
    if digest != frame.digest {
        return Err(format!(
            "its bytes are {digest}, the index says {}",
            frame.digest
        ));
    }
    out.clear();
    // No more room than the index allows: a frame that decodes to more fails here.
    out.reserve_exact(frame.size as usize);
    decompressor
        .decompress_to_buffer(compressed, &mut out)
        .map_err(|e| format!("it does not decode to {} bytes: {e}", frame.size))?;
    if out.len() as u64 != frame.size {
        return Err(format!(
            "it decodes to {} bytes, the index says {}",
            out.len(),
            frame.size
        ));
    }
    Ok(out)
}

/// What [`apply`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Tar entries.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Bytes charged against the budget.
    pub charged: u64,
}

/// Extract the tar `reader` gives (a [`FrameReader`], wrapped by the caller if it likes, say
/// to stop at a deadline) into `root`, an empty directory, writing at most `budget` bytes.
/// Every frame is read, so every frame is checked, even after the tar's end.
pub fn apply(
    object: &str,
    root: &Path,
    budget: u64,
    mut reader: impl Read,
    failure: &Mutex<Option<ReadError>>,
) -> Result<Applied, ReadError> {
    let mut extractor = Extractor::new(root, budget);
    let result = extractor.apply_layer(&mut reader).and_then(|stats| {
        io::copy(&mut reader, &mut io::sink())
            .map(|_| stats)
            .map_err(|source| ExtractError::Read { source })
    });
    let stats = match result {
        Ok(stats) => stats,
        Err(source) => {
            // The reader's own error says which frame and why; the extractor's wraps its text.
            let kept = failure.lock().ok().and_then(|mut slot| slot.take());
            return Err(kept.unwrap_or_else(|| ReadError::Extract {
                object: object.to_owned(),
                source,
            }));
        }
    };
    let charged = extractor.charged();
    extractor.finish().map_err(|source| ReadError::Extract {
        object: object.to_owned(),
        source,
    })?;
    Ok(Applied {
        entries: stats.entries,
        bytes_written: stats.bytes_written,
        charged,
    })
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;

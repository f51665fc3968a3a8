//! Extracting a framed image on every core: each thread takes a segment (a frame beginning at
//! an entry boundary and the frames that continue its last entry), checks and decodes its
//! frames and extracts their entries itself, while the other threads do the same with the next
//! segments. One thread reading the tar in order, however fast the frames decode, leaves the
//! other cores idle while it creates files (measured on 2 cores: that thread busy three
//! quarters of the pull, the decoders a third each); extracting a flattened tree on two threads
//! takes half as long as on one.
//!
//! It is safe because the tree is flat ([`Extractor::flat`]): no entry replaces another, and no
//! symlink or hardlink is made until every thread is done, so no thread's path can cross a
//! symlink another thread has just made. An object that is not a flattened tree (a name twice,
//! a name under a symlink, a whiteout) is refused with [`ExtractError::NotFlat`].
//!
//! Memory stays bounded: the fetched frames wait for their thread in a window of a few frames
//! (the fetcher stops taking ranges while it is full), and each thread holds one decoded frame.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;

use super::format::{Frame, Index};
use super::read::{Applied, Group, ReadError, decode_into, groups};
use crate::extract::{ExtractError, Extractor, Link};

/// Wraps each segment's reader (the pull's deadline, say).
pub type Wrap<'a> = &'a (dyn Fn(Box<dyn Read + Send>) -> Box<dyn Read + Send> + Sync);

/// The segments of `index`: runs of frames whose first begins at an entry boundary.
pub fn segments(index: &Index) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for (i, frame) in index.frames.iter().enumerate() {
        match out.last_mut() {
            Some(last) if frame.continues => last.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// Extract the framed image `index` of `object`, whose compressed bytes `compressed` yields
/// group by group ([`groups`]), into `root` (an empty directory) on `threads` threads, writing
/// at most `budget` bytes. Every frame is checked, even after the tar's end.
pub fn apply(
    object: &str,
    index: &Index,
    compressed: impl Iterator<Item = Result<Bytes, String>> + Send + 'static,
    threads: usize,
    (root, budget): (&Path, u64),
    wrap: Wrap<'_>,
) -> Result<Applied, ReadError> {
    let threads = threads.max(1);
    steady_heap();
    let shared = Arc::new(Shared {
        object: object.to_owned(),
        frames: index.frames.clone().into(),
        store: Mutex::new(Store::default()),
        changed: Condvar::new(),
        // A frame for each thread to start and one more to go on with (compressed, about a
        // quarter of a decoded frame each).
        window: 2 * threads,
        failure: Mutex::new(None),
        pool: Mutex::new(Vec::new()),
        decoders: Mutex::new(Vec::new()),
    });
    let segments = segments(index);
    let next = AtomicUsize::new(0);
    let charged = Arc::new(AtomicU64::new(0));
    // Not joined: it may be waiting for the network when an error ends the pull, and it stops
    // by itself once it is told to.
    let (feeder, groups) = (shared.clone(), groups(index));
    let spawned = std::thread::Builder::new()
        .name("scar-frames".into())
        .spawn(move || feed(&feeder, &groups, compressed));
    if let Err(err) = spawned {
        return Err(stream(object, &format!("cannot start a thread: {err}")));
    }
    let workers = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let worker = Worker {
                    shared: &shared,
                    segments: &segments,
                    next: &next,
                    wrap,
                };
                let extractor = Extractor::flat(root, budget, charged.clone());
                std::thread::Builder::new()
                    .name("scar-extract".into())
                    .spawn_scoped(scope, move || worker.run(extractor))
            })
            .collect();
        let done: Vec<_> = workers
            .into_iter()
            .map(|w| match w {
                Ok(w) => w
                    .join()
                    .map_err(|_| "an extraction thread panicked".to_string()),
                Err(err) => {
                    let why = format!("cannot start a thread: {err}");
                    let _ = shared.fail(stream(object, &why));
                    Err(why)
                }
            })
            .collect();
        // The feeder may wait for room no worker will make now.
        shared.stop();
        done
    });
    if let Some(err) = shared.failure.lock().ok().and_then(|mut f| f.take()) {
        return Err(err);
    }
    let mut finisher = Extractor::new(root, budget);
    let mut links: Vec<(usize, Vec<Link>)> = Vec::new();
    let mut applied = Applied::default();
    for worker in workers {
        let done = worker.map_err(|why| stream(object, &why))?;
        applied.entries += done.entries;
        applied.bytes_written += done.bytes_written;
        finisher.absorb(done.extractor);
        links.extend(done.links);
    }
    links.sort_by_key(|(segment, _)| *segment);
    let extract = |source| ReadError::Extract {
        object: object.to_owned(),
        source,
    };
    finisher
        .apply_links_on(
            links.into_iter().flat_map(|(_, l)| l).collect(),
            threads,
            &charged,
        )
        .map_err(extract)?;
    applied.charged = finisher.charged();
    finisher.finish().map_err(extract)?;
    Ok(applied)
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

fn stream(object: &str, detail: &str) -> ReadError {
    ReadError::Stream {
        object: object.to_owned(),
        detail: detail.to_owned(),
    }
}

/// What the threads share.
struct Shared {
    object: String,
    frames: Arc<[Frame]>,
    store: Mutex<Store>,
    /// Signalled when a frame arrives or is taken, and when everything stops.
    changed: Condvar,
    /// Frames fetched and not yet taken, at most (more while a group is handed over).
    window: usize,
    /// The first error, which is the pull's.
    failure: Mutex<Option<ReadError>>,
    /// Buffers of decoded frames, passed from segment to segment.
    pool: Mutex<Vec<Vec<u8>>>,
    /// zstd decoders, passed from segment to segment: a new one is some 160 KiB of tables that
    /// the kernel maps and zeroes for each of a pull's hundreds of segments.
    decoders: Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
}

/// Frames fetched and waiting for the thread whose segment they belong to.
#[derive(Default)]
struct Store {
    waiting: BTreeMap<usize, Bytes>,
    /// Frames handed over so far: frame `i < delivered` is waiting or taken.
    delivered: usize,
    /// Why frames from `delivered` on will never come.
    ended: Option<String>,
    /// Everything stops (an error, or the end).
    stopped: bool,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A thread that panicked holding the lock left the store as consistent as any other
        // moment does: a map and counters.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `err` if it is the first, and stop everything.
    fn fail(&self, err: ReadError) -> io::Error {
        let text = err.to_string();
        if let Ok(mut slot) = self.failure.lock()
            && slot.is_none()
        {
            *slot = Some(err);
        }
        self.stop();
        io::Error::new(io::ErrorKind::InvalidData, text)
    }

    fn stop(&self) {
        self.store().stopped = true;
        self.changed.notify_all();
    }

    /// Frame `i`'s compressed bytes, once fetched.
    fn take(&self, i: usize) -> Result<Bytes, ReadError> {
        let mut store = self.store();
        loop {
            if let Some(bytes) = store.waiting.remove(&i) {
                self.changed.notify_all();
                return Ok(bytes);
            }
            if store.stopped {
                return Err(stream(&self.object, "the pull stopped"));
            }
            if i < store.delivered {
                return Err(stream(&self.object, "a frame was asked for twice"));
            }
            if let Some(why) = &store.ended {
                return Err(ReadError::Fetch(why.clone()));
            }
            store = self.changed.wait(store).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Hand the frames of each group to the store, waiting while the window is full.
fn feed(
    shared: &Shared,
    groups: &[Group],
    mut compressed: impl Iterator<Item = Result<Bytes, String>>,
) {
    for group in groups {
        {
            let mut store = shared.store();
            while store.waiting.len() >= shared.window && !store.stopped {
                store = shared
                    .changed
                    .wait(store)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if store.stopped {
                return;
            }
        }
        let want = group.end - group.start + 1;
        let bytes = match compressed.next() {
            Some(Ok(b)) if b.len() as u64 == want => b,
            other => {
                let why = match other {
                    Some(Ok(b)) => format!(
                        "{}: bytes {}-{} came back as {} bytes",
                        shared.object,
                        group.start,
                        group.end,
                        b.len()
                    ),
                    Some(Err(detail)) => detail,
                    None => format!(
                        "{}: the object's bytes stopped before frame {} (truncated, or the pull stopped)",
                        shared.object,
                        group.frames.start + 1
                    ),
                };
                shared.store().ended = Some(why);
                shared.changed.notify_all();
                return;
            }
        };
        let mut store = shared.store();
        for i in group.frames.clone() {
            let f = &shared.frames[i];
            let from = (f.offset - group.start) as usize;
            let Some(frame) = bytes.get(from..from + f.length as usize) else {
                store.ended = Some(format!(
                    "{}: frame {} is out of its range",
                    shared.object,
                    i + 1
                ));
                break;
            };
            store.waiting.insert(i, bytes.slice_ref(frame));
            store.delivered = i + 1;
        }
        drop(store);
        shared.changed.notify_all();
    }
}

/// One extraction thread.
struct Worker<'a> {
    shared: &'a Arc<Shared>,
    segments: &'a [Range<usize>],
    next: &'a AtomicUsize,
    wrap: Wrap<'a>,
}

/// What a thread did.
struct Done {
    extractor: Extractor,
    entries: u64,
    bytes_written: u64,
    /// The links it kept, by segment.
    links: Vec<(usize, Vec<Link>)>,
}

impl Worker<'_> {
    fn run(self, mut extractor: Extractor) -> Done {
        let (mut entries, mut bytes_written, mut links) = (0, 0, Vec::new());
        loop {
            let s = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(frames) = self.segments.get(s) else {
                break;
            };
            match self.segment(&mut extractor, frames.clone()) {
                Ok((n, bytes)) => {
                    entries += n;
                    bytes_written += bytes;
                    links.push((s, extractor.take_links()));
                }
                Err(err) => {
                    if let Some(err) = err {
                        let _ = self.shared.fail(err);
                    }
                    break;
                }
            }
        }
        Done {
            extractor,
            entries,
            bytes_written,
            links,
        }
    }

    /// Check, decode and extract the frames of one segment; every frame is read whole.
    fn segment(
        &self,
        extractor: &mut Extractor,
        frames: Range<usize>,
    ) -> Result<(u64, u64), Option<ReadError>> {
        let reader = SegmentReader {
            shared: self.shared.clone(),
            next: frames.start,
            end: frames.end,
            buf: Vec::new(),
            at: 0,
            decompressor: None,
        };
        let mut input = (self.wrap)(Box::new(reader));
        let result = extractor.apply_layer(&mut input).and_then(|stats| {
            io::copy(&mut input, &mut io::sink())
                .map(|_| stats)
                .map_err(|source| ExtractError::Read { source })
        });
        result
            .map(|stats| (stats.entries, stats.bytes_written))
            .map_err(|source| {
                // An error of the reader (or of another thread) is kept already, and says
                // which frame and why better than the extractor's wrapping of it.
                let kept = self.shared.failure.lock().map_or(true, |f| f.is_some());
                (!kept).then(|| ReadError::Extract {
                    object: self.shared.object.clone(),
                    source,
                })
            })
    }
}

/// The tar bytes of one segment's frames, each checked and decoded when reached.
struct SegmentReader {
    shared: Arc<Shared>,
    next: usize,
    end: usize,
    buf: Vec<u8>,
    at: usize,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl SegmentReader {
    fn advance(&mut self) -> Result<(), ReadError> {
        let i = self.next;
        let compressed = self.shared.take(i)?;
        let decompressor = match &mut self.decompressor {
            Some(d) => d,
            None => {
                let kept = self.shared.decoders.lock().ok().and_then(|mut d| d.pop());
                let decoder = match kept {
                    Some(d) => d,
                    None => zstd::bulk::Decompressor::new()
                        .map_err(|e| stream(&self.shared.object, &format!("zstd: {e}")))?,
                };
                self.decompressor.insert(decoder)
            }
        };
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            buf = self
                .shared
                .pool
                .lock()
                .ok()
                .and_then(|mut p| p.pop())
                .unwrap_or_default();
        }
        let frames = &self.shared.frames;
        self.buf = decode_into(decompressor, &frames[i], &compressed, buf).map_err(|detail| {
            ReadError::Corrupt {
                object: self.shared.object.clone(),
                frame: i + 1,
                frames: frames.len(),
                detail,
            }
        })?;
        self.at = 0;
        self.next += 1;
        Ok(())
    }
}

impl Read for SegmentReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.buf.len() {
            if self.next >= self.end {
                return Ok(0);
            }
            if let Err(err) = self.advance() {
                return Err(self.shared.fail(err));
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for SegmentReader {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() > 0
            && let Ok(mut pool) = self.shared.pool.lock()
        {
            pool.push(buf);
        }
        // A decoder that failed on a frame is left in a state a new frame resets: each frame is
        // decoded alone, from its start.
        if let Some(decoder) = self.decompressor.take()
            && let Ok(mut decoders) = self.shared.decoders.lock()
        {
            decoders.push(decoder);
        }
    }
}

#[cfg(test)]
#[path = "parallel_tests.rs"]
mod tests;

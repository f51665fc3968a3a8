//! A pull bounded by a deadline ([`PullOptions::deadline`](crate::options::PullOptions::deadline)):
//! the bootstrap's invocation deadline minus its margin.
//!
//! Dropping a future does not stop the blocking thread that extracts the layers, nor the
//! download tasks feeding it, so the deadline is enforced where the bytes flow: every read of a
//! layer's compressed stream checks a [`Stop`] shared with the async side, which trips it at the
//! deadline (or when the pull's future is dropped) and closes the download channels, so a read
//! blocked on the network returns at once. The extraction then ends with an error, its build
//! directory is removed by the thread itself, and nothing is published.
//!
//! A pull stopped here is told as a [`PartialPull`] (how far it got); the orchestrator above
//! turns it into its own error.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::cache::CacheLock;
use crate::source::Layer;

const MIB: u64 = 1024 * 1024;

/// Shared between the async side of a pull and its extraction thread: whether to stop.
///
/// It also holds the build's lock (and the image's pull lock): every clone lives until the
/// extraction thread is done with the build directory, so a sweep (which takes a build's lock
/// without waiting) never takes the work area of a pull whose future was dropped while its
/// thread still writes.
#[derive(Clone)]
pub(crate) struct Stop {
    deadline: Option<Instant>,
    tripped: Arc<AtomicBool>,
    _lock: Option<Arc<CacheLock>>,
}

impl Stop {
    /// A stop that trips by itself at `deadline` (never when `None`), or when told to.
    pub(crate) fn new(deadline: Option<Instant>) -> Self {
        Self {
            deadline,
            tripped: Arc::new(AtomicBool::new(false)),
            _lock: None,
        }
    }

    /// The same stop, keeping `lock` held as long as any clone of it lives.
    pub(crate) fn holding(mut self, lock: Arc<CacheLock>) -> Self {
        self._lock = Some(lock);
        self
    }

    /// The deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How far a pull stopped after `layers_done` layers got, when it stopped for the
    /// deadline (another error is then only its consequence).
    pub(crate) fn explain(
        &self,
        layers_done: usize,
        layers: &[Layer],
        downloaded: &AtomicU64,
        kept: bool,
    ) -> Option<PartialPull> {
        self.stopped()
            .then(|| progress(layers_done, layers, downloaded, kept))
    }

    /// Stop now.
    pub(crate) fn trip(&self) {
        self.tripped.store(true, Ordering::Relaxed);
    }

    /// Whether the pull must stop (told to, or past its deadline).
    pub(crate) fn stopped(&self) -> bool {
        self.tripped.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// `input`, failing with [`io::ErrorKind::TimedOut`] once the pull must stop.
    pub(crate) fn reader(&self, input: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        Box::new(StopReader {
            inner: input,
            stop: self.clone(),
        })
    }

    /// Trips this stop and aborts `task` when dropped: the pull's future went away (or ended).
    pub(crate) fn guard(&self, task: Option<tokio::task::AbortHandle>) -> StopGuard {
        StopGuard {
            stop: self.clone(),
            task,
        }
    }
}

/// See [`Stop::guard`].
pub(crate) struct StopGuard {
    stop: Stop,
    task: Option<tokio::task::AbortHandle>,
}

impl StopGuard {
    /// Stop the pull now: trip, and abort the downloads so that blocked reads return.
    pub(crate) fn stop_now(&self) {
        self.stop.trip();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.stop_now();
    }
}

struct StopReader {
    inner: Box<dyn Read + Send>,
    stop: Stop,
}

impl StopReader {
    fn timed_out() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the pull's deadline passed while reading the layer",
        )
    }
}

impl Read for StopReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.stopped() {
            return Err(Self::timed_out());
        }
        let result = self.inner.read(buf);
        // A download aborted at the deadline ends its stream early: that is the deadline, not
        // a truncated blob.
        if self.stop.stopped() {
            return Err(Self::timed_out());
        }
        result
    }
}

/// How far a pull got, for the error of a pull stopped at its deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartialPull {
    /// Layers completely applied.
    pub layers_done: usize,
    /// Layers of the image (0 when the image was not resolved yet).
    pub layers: usize,
    /// Compressed bytes read.
    pub downloaded: u64,
    /// Compressed bytes of all layers, when the source knows them.
    pub total: Option<u64>,
    /// Whether the compressed blobs of the applied layers are kept (the next pull resumes).
    pub kept: bool,
}

impl PartialPull {
    /// What was pulled, to be followed by when it stopped: `pulled 2 of 5 layers, 180 of 420
    /// MiB,` (or `pulled nothing (...)` when the image was not even resolved).
    pub fn pulled(&self) -> String {
        if self.layers == 0 {
            return "pulled nothing (the image's manifest and config had not arrived)".to_owned();
        }
        let total = self
            .total
            .map(|t| format!(" of {}", mib(t)))
            .unwrap_or_default();
        format!(
            "pulled {} of {} layers, {}{total} MiB,",
            self.layers_done,
            self.layers,
            mib(self.downloaded)
        )
    }

    /// What the next pull does: start again, or resume from the kept blobs.
    pub fn next(&self) -> &'static str {
        if self.kept && self.layers_done > 0 {
            "resumes from the layers downloaded so far"
        } else {
            "starts again"
        }
    }
}

impl std::fmt::Display for PartialPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} before the deadline; nothing was published and the next pull {}",
            self.pulled(),
            self.next()
        )
    }
}

/// Whole MiB, rounded up (a started MiB shows as 1, not 0).
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

/// Run `work` (resolving, locking: no layer applied yet) until `deadline`; past it, the pull
/// got nothing done.
pub(crate) async fn before<F: Future>(
    deadline: Option<Instant>,
    work: F,
) -> Result<F::Output, PartialPull> {
    let Some(deadline) = deadline else {
        return Ok(work.await);
    };
    tokio::time::timeout_at(deadline.into(), work)
        .await
        .map_err(|_| PartialPull::default())
}

/// Wait for the extraction thread `work`; at `deadline` stop the pull (`guard`) and wait for
/// the thread to notice, which it does at its next read.
pub(crate) async fn finish<T>(
    work: tokio::task::JoinHandle<T>,
    guard: &StopGuard,
    deadline: Option<Instant>,
) -> Result<T, tokio::task::JoinError> {
    let mut work = work;
    if let Some(deadline) = deadline {
        match tokio::time::timeout_at(deadline.into(), &mut work).await {
            Ok(joined) => return joined,
            Err(_) => guard.stop_now(),
        }
    }
    work.await
}

/// The progress of a pull stopped after `layers_done` of `layers` layers.
pub(crate) fn progress(
    layers_done: usize,
    layers: &[Layer],
    downloaded: &AtomicU64,
    kept: bool,
) -> PartialPull {
    PartialPull {
        layers_done,
        layers: layers.len(),
        downloaded: downloaded.load(Ordering::Relaxed),
        total: layers.iter().map(|l| l.size).sum(),
        kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_read_past_the_deadline_times_out_and_one_before_it_reads() {
        let stop = Stop::new(Some(Instant::now() + Duration::from_secs(60)));
        let mut reader = stop.reader(Box::new(&b"abc"[..]));
        let mut buf = [0u8; 2];
        assert_eq!(reader.read(&mut buf).unwrap(), 2);
        stop.trip();
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let past = Stop::new(Some(Instant::now()));
        let err = past
            .reader(Box::new(&b"abc"[..]))
            .read(&mut buf)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn a_stream_ended_by_the_stop_is_a_timeout_not_an_end_of_file() {
        struct EndsAndTrips(Stop);
        impl Read for EndsAndTrips {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                self.0.trip();
                Ok(0)
            }
        }
        let stop = Stop::new(None);
        let mut reader = stop.reader(Box::new(EndsAndTrips(stop.clone())));
        let err = reader.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn the_guard_trips_the_stop_when_dropped() {
        let stop = Stop::new(None);
        drop(stop.guard(None));
        assert!(stop.stopped());
    }

    #[test]
    fn the_progress_says_how_far_the_pull_got() {
        let p = PartialPull {
            layers_done: 2,
            layers: 5,
            downloaded: 180 * MIB,
            total: Some(420 * MIB),
            kept: false,
        };
        assert_eq!(
            p.to_string(),
            "pulled 2 of 5 layers, 180 of 420 MiB, before the deadline; nothing was published and the next pull starts again"
        );
        let resumed = PartialPull {
            kept: true,
            total: None,
            ..p
        };
        assert!(resumed.to_string().contains("180 MiB, before"), "{resumed}");
        assert!(resumed.to_string().contains("resumes"), "{resumed}");
        let nothing = PartialPull::default().to_string();
        assert!(nothing.starts_with("pulled nothing"), "{nothing}");
        assert!(nothing.ends_with("starts again"), "{nothing}");
    }
}

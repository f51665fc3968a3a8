//! The heartbeat of a pull: proof, for the sandboxes waiting on it and for the sweep, that the
//! process building an image is alive and getting somewhere.
//!
//! A thread rewrites the locked files of the pull (its `pulls/<chainid>.lock` and its build's
//! `.building`) every [`BEAT`] with one line, `<pid> <bytes> <unix ms>`, but only while the
//! pull's byte counter moves (or before the pull has one): a sandbox Lambda froze runs no
//! thread at all, and one whose download stalled stops beating too, so either looks silent
//! to the others (see [`Silence`]). The writes go through the file descriptors that hold the
//! locks: on NFS a `flock` is a POSIX lock of the whole file, which closing *any* descriptor of
//! that file in the process would drop, so nothing here opens the files again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::lock::CacheLock;

/// How often a live pull beats.
pub const BEAT: Duration = Duration::from_secs(1);

/// A pull's byte counter, attached once the pull knows it (`PullEvent::Resolved`).
pub type Counter = Arc<OnceLock<Arc<AtomicU64>>>;

/// The beating thread; it stops when this is dropped.
pub struct Heartbeat {
    _stop: mpsc::Sender<()>,
}

impl Heartbeat {
    /// Beat on `locks` now and then every [`BEAT`] while `counter` moves (always while it is
    /// not attached yet).
    pub fn start(locks: Vec<Arc<CacheLock>>, counter: Counter) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let beat = move |bytes: u64| {
            let line = line(bytes);
            for lock in &locks {
                if let Err(err) = lock.write_beat(line.as_bytes()) {
                    tracing::debug!(%err, "cannot write the pull's heartbeat");
                }
            }
        };
        beat(0);
        // Without a thread (none to be had) the pull only looks silent: others then pull too.
        let spawned = std::thread::Builder::new()
            .name("scar-heartbeat".into())
            .spawn(move || {
                let mut last = None;
                loop {
                    match stopped.recv_timeout(BEAT) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Dropped (or, never, sent): the pull is over.
                        _ => return,
                    }
                    let now = counter.get().map(|c| c.load(Ordering::Relaxed));
                    if now.is_none() || now != last {
                        beat(now.unwrap_or(0));
                    }
                    last = now;
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "cannot start the pull's heartbeat");
        }
        Self { _stop: stop }
    }
}

/// The heartbeat line: who, how far, when.
fn line(bytes: u64) -> String {
    format!(
        "{} {bytes} {}\n",
        std::process::id(),
        unix_millis(SystemTime::now())
    )
}

fn unix_millis(when: SystemTime) -> u64 {
    when.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The writer's own time of a heartbeat line, if it parses.
fn stamp(line: &str) -> Option<SystemTime> {
    let millis: u64 = line.split_whitespace().nth(2)?.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(millis))
}

/// How long a waiter has seen a pull's heartbeat stay the same.
///
/// Silence counts both by the waiter's clock (how long it saw the same line) and by the
/// writer's (the age of the line's stamp), so that a waiter arriving at a sandbox frozen for
/// minutes does not wait a whole stale limit more; but it always needs to have seen the line
/// unchanged for [`Silence::MIN_SEEN`] (or the limit, when shorter), so that clocks that
/// disagree cannot make a live pull look dead: a live one rewrites the line every [`BEAT`].
#[derive(Debug, Default)]
pub struct Silence {
    seen: Option<(String, Instant)>,
}

impl Silence {
    /// Beats a live pull cannot miss in a row.
    pub const MIN_SEEN: Duration = Duration::from_secs(3);

    /// Whether `line` differs from the line seen before it (the pull moved since); `false` for
    /// the first line seen.
    pub fn moved(&self, line: &str) -> bool {
        self.seen.as_ref().is_some_and(|(seen, _)| seen != line)
    }

    /// Note the heartbeat `line` read now; returns how long the pull has been silent.
    pub fn observe(&mut self, line: &str, now: Instant) -> Duration {
        let since = match &self.seen {
            Some((seen, since)) if seen == line => *since,
            _ => {
                self.seen = Some((line.to_owned(), now));
                now
            }
        };
        let local = now.saturating_duration_since(since);
        let written = stamp(line)
            .and_then(|s| SystemTime::now().duration_since(s).ok())
            .unwrap_or_default();
        // The writer's clock only adds to what was seen here (see the type's doc).
        if written > local && local >= Self::MIN_SEEN {
            written
        } else {
            local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_grows_while_the_line_stays_and_resets_when_it_changes() {
        let mut s = Silence::default();
        let t0 = Instant::now();
        let a = line(1);
        assert_eq!(s.observe(&a, t0), Duration::ZERO);
        assert_eq!(
            s.observe(&a, t0 + Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        let b = format!(
            "{} 2 {}\n",
            std::process::id(),
            unix_millis(SystemTime::now())
        );
        assert_ne!(a, b);
        assert_eq!(s.observe(&b, t0 + Duration::from_secs(3)), Duration::ZERO);
    }

    #[test]
    fn an_old_stamp_counts_only_once_the_line_was_seen_unchanged_for_a_while() {
        let old = format!(
            "1 5 {}\n",
            unix_millis(SystemTime::now() - Duration::from_secs(600))
        );
        let mut s = Silence::default();
        let t0 = Instant::now();
        assert_eq!(
            s.observe(&old, t0),
            Duration::ZERO,
            "one look proves nothing"
        );
        let later = s.observe(&old, t0 + Silence::MIN_SEEN);
        assert!(later >= Duration::from_secs(599), "{later:?}");
        // A stamp from a clock ahead of ours never shortens the silence.
        let ahead = format!(
            "1 5 {}\n",
            unix_millis(SystemTime::now() + Duration::from_secs(600))
        );
        let mut s = Silence::default();
        s.observe(&ahead, t0);
        assert_eq!(
            s.observe(&ahead, t0 + Duration::from_secs(4)),
            Duration::from_secs(4)
        );
    }
}

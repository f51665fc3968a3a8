//! The run: start the container through an engine, stream its output to the function log line
//! by line, keep the tails for the response, and stop the tree at the stop time.
//!
//! The engine interface is blocking (`std::process` pipes, a blocking `wait`), so this runs on a
//! blocking thread with one reader thread per stream.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use scar_rootfs::engine::{Engine, EngineError, Outcome, RunSpec, Unconfined};

/// Bytes of each stream kept for the response.
pub const TAIL_BYTES: usize = 64 * 1024;
/// Longest piece of a line logged as one log event; longer lines are split.
const MAX_LOG_LINE: u64 = 16 * 1024;
/// How long to wait for the streams to close once the main process is gone: a daemonised
/// grandchild may keep a pipe open, which must not hold the invocation hostage.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The last [`TAIL_BYTES`] bytes of a stream.
#[derive(Debug, Default)]
pub struct Tail {
    bytes: VecDeque<u8>,
    truncated: bool,
}

impl Tail {
    /// Append `data`, dropping the oldest bytes beyond the cap.
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > TAIL_BYTES {
            self.truncated = true;
            &data[data.len() - TAIL_BYTES..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(TAIL_BYTES);
        if overflow > 0 {
            self.truncated = true;
            self.bytes.drain(..overflow);
        }
        self.bytes.extend(data);
    }

    /// The kept bytes as text (invalid UTF-8 replaced; a character cut at the start of the tail
    /// shows as a replacement character).
    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut joined = Vec::with_capacity(a.len() + b.len());
        joined.extend_from_slice(a);
        joined.extend_from_slice(b);
        String::from_utf8_lossy(&joined).into_owned()
    }

    /// Whether older output was dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// The tails of both streams, shared by every run of one invocation.
#[derive(Clone, Debug, Default)]
pub struct Tails {
    /// stdout.
    pub stdout: Arc<Mutex<Tail>>,
    /// stderr.
    pub stderr: Arc<Mutex<Tail>>,
}

impl Tails {
    /// Text of the stdout tail.
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().map(|t| t.text()).unwrap_or_default()
    }

    /// Text of the stderr tail.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|t| t.text()).unwrap_or_default()
    }
}

/// How a run ended, and which programs ran without confinement.
#[derive(Clone, Debug)]
pub struct Ran {
    /// How the container ended.
    pub outcome: Outcome,
    /// Statically linked programs that ran (or were refused) with the host's view.
    pub unconfined: Unconfined,
}

/// Start `spec` with `engine`, stream its output, and wait until it ends or `stop_at` passes
/// (then SIGTERM, SIGKILL after `grace`). When this returns, the engine has killed every process
/// of the container and the readers have ended or been silenced: no later line is logged
/// under `request_id`.
pub fn run_container(
    engine: &dyn Engine,
    spec: &RunSpec,
    stop_at: Instant,
    grace: Duration,
    request_id: &str,
    tails: &Tails,
) -> Result<Ran, EngineError> {
    let mut container = engine.spawn(spec)?;
    tracing::debug!(pid = container.pid(), "container started");
    let (done_tx, done_rx) = mpsc::channel();
    let live = Arc::new(AtomicBool::new(true));
    let mut readers = 0;
    if let Some(stdout) = container.stdout.take() {
        spawn_reader(
            stdout,
            Reader {
                name: "stdout",
                request_id: request_id.to_owned(),
                tail: tails.stdout.clone(),
                live: live.clone(),
            },
            done_tx.clone(),
        );
        readers += 1;
    }
    if let Some(stderr) = container.stderr.take() {
        spawn_reader(
            stderr,
            Reader {
                name: "stderr",
                request_id: request_id.to_owned(),
                tail: tails.stderr.clone(),
                live: live.clone(),
            },
            done_tx.clone(),
        );
        readers += 1;
    }
    drop(done_tx);
    let outcome = container.wait(Some(stop_at), grace);
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    for _ in 0..readers {
        let left = drain_until.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            tracing::warn!(
                "a process outside the container's reach still holds its output open; its further output is dropped"
            );
            break;
        }
    }
    // A reader still blocked belongs to a pipe someone else holds: it must never log under
    // this request id again (the next invocation's log would show it).
    live.store(false, Ordering::Release);
    let unconfined = container.unconfined();
    outcome.map(|outcome| Ran {
        outcome,
        unconfined,
    })
}

/// One stream's reader: where its lines go, and whether the run still wants them.
struct Reader {
    name: &'static str,
    request_id: String,
    tail: Arc<Mutex<Tail>>,
    live: Arc<AtomicBool>,
}

fn spawn_reader(stream: impl Read + Send + 'static, reader: Reader, done: mpsc::Sender<()>) {
    let name = reader.name;
    let spawned = std::thread::Builder::new()
        .name(format!("scar-{name}"))
        .spawn(move || {
            stream_lines(stream, &reader);
            let _ = done.send(());
        });
    if let Err(err) = spawned {
        tracing::error!(%err, stream = name, "cannot start the thread reading the container's output");
    }
}

/// Log each line of `stream` as it comes and keep the tail, until the run abandons it.
fn stream_lines(stream: impl Read, r: &Reader) {
    let (name, request_id, tail) = (r.name, r.request_id.as_str(), &r.tail);
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LOG_LINE)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(%err, stream = name, "reading the container's output failed");
                return;
            }
        }
        if !r.live.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut tail) = tail.lock() {
            tail.push(&line);
        }
        let text = String::from_utf8_lossy(&line);
        // This thread is not in the invocation's span: the line names its request id itself.
        tracing::info!(
            request_id = %request_id,
            stream = name,
            "{}",
            text.trim_end_matches(['\n', '\r'])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_only_the_last_64_kib() {
        let mut tail = Tail::default();
        tail.push(b"first\n");
        assert_eq!(tail.text(), "first\n");
        assert!(!tail.truncated());
        for i in 0..20_000 {
            tail.push(format!("line {i:05}\n").as_bytes());
        }
        let text = tail.text();
        assert_eq!(text.len(), TAIL_BYTES);
        assert!(text.ends_with("line 19999\n"));
        assert!(!text.contains("first"));
        assert!(tail.truncated());
    }

    #[test]
    fn one_huge_write_keeps_its_end() {
        let mut tail = Tail::default();
        let mut big = vec![b'a'; TAIL_BYTES * 2];
        big.extend_from_slice(b"END");
        tail.push(&big);
        assert!(tail.text().ends_with("aEND"));
        assert_eq!(tail.text().len(), TAIL_BYTES);
    }

    #[test]
    fn streamed_lines_all_reach_the_tail_including_an_unterminated_last_line() {
        let reader = Reader {
            name: "stdout",
            request_id: "r1".into(),
            tail: Arc::new(Mutex::new(Tail::default())),
            live: Arc::new(AtomicBool::new(true)),
        };
        let long = "x".repeat(40_000);
        let input = format!("one\ntwo\n{long}\nlast");
        stream_lines(input.as_bytes(), &reader);
        assert_eq!(reader.tail.lock().unwrap().text(), input);
    }

    #[test]
    fn container_lines_carry_the_request_id_in_text_and_json() {
        use crate::config::LogFormat;
        use crate::logs::tests::Captured;
        for format in [LogFormat::Text, LogFormat::Json] {
            let reader = Reader {
                name: "stdout",
                request_id: "r1".into(),
                tail: Arc::new(Mutex::new(Tail::default())),
                live: Arc::new(AtomicBool::new(true)),
            };
            let captured = Captured::default();
            let subscriber = crate::logs::subscriber("info", format, captured.clone());
            tracing::subscriber::with_default(subscriber, || {
                stream_lines(&b"hello\nworld\n"[..], &reader);
            });
            let lines = captured.lines();
            assert_eq!(lines.len(), 2, "{lines:?}");
            for line in lines {
                match format {
                    LogFormat::Text => assert!(line.contains("request_id=r1"), "{line}"),
                    LogFormat::Json => {
                        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                        assert_eq!(value["request_id"], "r1", "{line}");
                        assert_eq!(value["stream"], "stdout", "{line}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_abandoned_reader_keeps_and_logs_nothing_more() {
        let reader = Reader {
            name: "stdout",
            request_id: "r1".into(),
            tail: Arc::new(Mutex::new(Tail::default())),
            live: Arc::new(AtomicBool::new(false)),
        };
        stream_lines(&b"late line\n"[..], &reader);
        assert_eq!(reader.tail.lock().unwrap().text(), "");
    }
}

//! One local "sandbox": the embedded Runtime API and S3 endpoint, and the bootstrap process
//! serving invocations one at a time, restarted after it exits (as Lambda starts a new
//! sandbox).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

use super::runtime_api::{Notice, Reply, RuntimeApi};
use super::s3::S3Endpoint;
use super::sandbox::{self, Launch, SandboxError};

/// Extra time past the function's timeout before the sandbox is killed: Lambda's own deadline
/// is enforced by the bootstrap; this only catches a runtime that never answers.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How one invocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The function's response document.
    Response(serde_json::Value),
    /// The function's error document (`errorType`, `errorMessage`).
    Error {
        /// `errorType`.
        error_type: String,
        /// `errorMessage` (or the whole document when it has none).
        message: String,
    },
    /// The bootstrap reported `/runtime/init/error` and exited.
    InitError {
        /// `errorType`.
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
    /// The bootstrap exited without answering.
    Exited(String),
    /// Nothing came back within the function's timeout; the bootstrap was killed.
    TimedOut(Duration),
}

/// Why the session itself failed (not the function).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The bootstrap could not be started.
    #[error("cannot start the bootstrap {path}: {source}")]
    Spawn {
        /// The program started.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Preparing the command failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// The local sandbox.
pub struct Session {
    api: RuntimeApi,
    /// The S3 endpoint: it serves as long as the session lives.
    _s3: S3Endpoint,
    notices: mpsc::UnboundedReceiver<Notice>,
    launch: Launch,
    child: Option<Child>,
    timeout: Duration,
    /// Prefix for forwarded log lines.
    label: String,
}

/// What came of sending one event: the runtime's reply, or an outcome without one.
#[derive(Debug)]
pub enum Exchange {
    /// The runtime answered (a streamed answer may still be arriving).
    Replied(Reply),
    /// No answer: the bootstrap failed to start, exited or ran out of time.
    Ended(Outcome),
}

/// What woke the invocation loop up.
enum Event {
    Reply(Option<Reply>),
    Notice(Notice),
    Exited(Option<ExitStatus>),
    Limit,
}

/// A response body as a document: its JSON, or its text as a string.
fn response_document(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The outcome of an error report: its type, and its `errorMessage` or whole text.
fn error_outcome(error_type: String, body: &[u8]) -> Outcome {
    let message = document_field(body, "errorMessage")
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    Outcome::Error {
        error_type,
        message,
    }
}

fn document_field(body: &[u8], field: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

impl Session {
    /// A session over running endpoints; the bootstrap starts on the first invocation.
    pub fn new(
        api: RuntimeApi,
        s3: S3Endpoint,
        notices: mpsc::UnboundedReceiver<Notice>,
        launch: Launch,
        timeout: Duration,
    ) -> Self {
        Self {
            api,
            _s3: s3,
            notices,
            launch,
            child: None,
            timeout,
            label: "bootstrap".into(),
        }
    }

    fn start(&mut self) -> Result<(), SessionError> {
        let mut command = sandbox::command(&self.launch)?;
        let path = self.launch.bootstrap.clone();
        let mut child = command
            .spawn()
            .map_err(|source| SessionError::Spawn { path, source })?;
        // The bootstrap's log is the invocation's progress: forward it line by line as it comes.
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward(BufReader::new(stdout), self.label.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward(BufReader::new(stderr), self.label.clone()));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Send one event and wait for its outcome; `on_start` is called when the bootstrap takes it.
    pub async fn invoke(
        &mut self,
        payload: Bytes,
        on_start: impl FnMut(&str),
    ) -> Result<Outcome, SessionError> {
        Ok(match self.exchange(|_| payload, on_start).await? {
            Exchange::Replied(Reply::Response(body)) => Outcome::Response(response_document(&body)),
            Exchange::Replied(Reply::Stream(stream)) => {
                // Not an HTTP front: the stream is the function's result, read whole.
                let mut pieces = stream.pieces;
                let mut body = Vec::new();
                while let Some(piece) = pieces.recv().await {
                    match piece {
                        Ok(bytes) => body.extend_from_slice(&bytes),
                        Err(broke) => return Ok(error_outcome(broke.error_type, &broke.body)),
                    }
                }
                Outcome::Response(response_document(&body))
            }
            Exchange::Replied(Reply::Error { error_type, body }) => {
                error_outcome(error_type, &body)
            }
            Exchange::Ended(outcome) => outcome,
        })
    }

    /// Send the event `payload` makes from the request id and wait for the runtime's reply as
    /// it is (a streamed one still arriving), or for the outcome that took its place.
    pub async fn exchange(
        &mut self,
        payload: impl FnOnce(&str) -> Bytes,
        mut on_start: impl FnMut(&str),
    ) -> Result<Exchange, SessionError> {
        if self.child.is_none() {
            self.start()?;
        }
        let mut invocation = self.api.invoke_with(payload);
        let started_at = Instant::now();
        let mut init_error: Option<(String, String)> = None;
        // The limit is counted from the start, generous enough to cover a cold start.
        let limit = tokio::time::sleep(self.timeout + KILL_GRACE + Duration::from_secs(10));
        tokio::pin!(limit);
        loop {
            let Some(child) = self.child.as_mut() else {
                return Ok(Exchange::Ended(Outcome::Exited(
                    "the bootstrap is not running".into(),
                )));
            };
            let event = tokio::select! {
                reply = &mut invocation.reply => Event::Reply(reply.ok()),
                Some(notice) = self.notices.recv() => Event::Notice(notice),
                status = child.wait() => Event::Exited(status.ok()),
                () = &mut limit => Event::Limit,
            };
            match event {
                Event::Reply(Some(reply)) => return Ok(Exchange::Replied(reply)),
                Event::Reply(None) => {
                    return Ok(Exchange::Ended(Outcome::Exited(
                        "the runtime API stopped".into(),
                    )));
                }
                Event::Notice(Notice::Started { request_id })
                    if request_id == invocation.request_id =>
                {
                    on_start(&request_id)
                }
                Event::Notice(Notice::Started { .. }) => {}
                Event::Notice(Notice::InitError { error_type, body }) => {
                    let message = document_field(&body, "errorMessage")
                        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                    init_error = Some((error_type, message));
                }
                Event::Exited(status) => {
                    self.child = None;
                    self.api.abandon(&invocation.request_id);
                    // An init error report sent just before the exit may still be queued.
                    while let Ok(notice) = self.notices.try_recv() {
                        if let Notice::InitError { error_type, body } = notice {
                            let message = document_field(&body, "errorMessage")
                                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                            init_error = Some((error_type, message));
                        }
                    }
                    return Ok(Exchange::Ended(match init_error {
                        Some((error_type, message)) => Outcome::InitError {
                            error_type,
                            message,
                        },
                        None => Outcome::Exited(describe_exit(status)),
                    }));
                }
                Event::Limit => {
                    self.stop().await;
                    self.api.abandon(&invocation.request_id);
                    return Ok(Exchange::Ended(Outcome::TimedOut(started_at.elapsed())));
                }
            }
        }
    }

    /// How long an invocation may take before the sandbox is stopped: the function's timeout,
    /// and a grace for the bootstrap to report its own deadline first.
    pub fn limit(&self) -> Duration {
        self.timeout + KILL_GRACE
    }

    /// Stop the bootstrap (at the end of the session, or after a timeout).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The data directory path an `s3://bucket/key` URL of this session stands for.
    pub fn local_path(data_dir: &Path, buckets: &[String], url: &str) -> Option<PathBuf> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/')?;
        buckets
            .iter()
            .any(|b| b == bucket)
            .then(|| data_dir.join(key))
    }
}

fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("the bootstrap exited with status {code} without answering"),
            (None, Some(signal)) => format!("the bootstrap was killed by signal {signal}"),
            _ => "the bootstrap ended".into(),
        },
        None => "the bootstrap ended (its status could not be read)".into(),
    }
}

async fn forward<R: tokio::io::AsyncBufRead + Unpin>(reader: R, label: String) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("  {label} | {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_of_served_buckets_map_to_files_of_the_data_directory() {
        let buckets = vec!["scar-local".to_owned()];
        let dir = Path::new("/data");
        assert_eq!(
            Session::local_path(dir, &buckets, "s3://scar-local/output/a.png"),
            Some(PathBuf::from("/data/output/a.png"))
        );
        assert_eq!(
            Session::local_path(dir, &buckets, "s3://elsewhere/output/a.png"),
            None
        );
        assert_eq!(Session::local_path(dir, &buckets, "https://x/y"), None);
    }
}

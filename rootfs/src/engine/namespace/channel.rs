//! The report channel between a container's init (or the helper) and the engine, shared by
//! every start path: reports travel as JSON lines over a close-on-exec pipe, and end of file
//! with no failure reported means the command was executed.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::engine::types::EngineError;

/// Exit status of the helper (or the direct start's init) when the container could not be
/// set up.
pub const SETUP_FAILED: i32 = 125;

/// A failed step of the container set-up: what was done to which path, and the errno.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {errno}")]
pub struct SetupError {
    /// The step, e.g. `pivot_root into /tmp/scar/run/root`.
    pub step: String,
    /// The errno.
    pub errno: Errno,
}

impl SetupError {
    /// A failed step.
    pub fn new(step: impl Into<String>, errno: Errno) -> Self {
        Self {
            step: step.into(),
            errno,
        }
    }
}

/// One message from the helper to the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// The container's init runs with this host PID.
    Ready {
        /// Host PID of the PID-namespace init.
        init_pid: i32,
    },
    /// Something worth a log line (e.g. why overlayfs was not used).
    Note {
        /// The text.
        message: String,
    },
    /// The namespaces cannot be used on this host (e.g. the uid map is refused): the
    /// engine is unavailable, as the probe would have found.
    Unavailable {
        /// The failed step and what it usually means.
        reason: String,
    },
    /// A setup step failed.
    SetupFailed {
        /// The step, with the path it worked on.
        step: String,
        /// errno.
        errno: i32,
    },
    /// The command could not be executed.
    ExecFailed {
        /// argv\[0\].
        command: String,
        /// What went wrong.
        reason: String,
    },
}

/// The helper's end of the report pipe.
pub struct Reporter {
    fd: OwnedFd,
}

impl Reporter {
    /// Take ownership of the inherited report fd.
    ///
    /// # Safety
    /// `fd` must be an open fd that nothing else in this process owns.
    pub unsafe fn from_raw(fd: RawFd) -> Self {
        // SAFETY: the caller guarantees `fd` is open and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self { fd }
    }

    /// Take ownership of a report fd this process created.
    pub fn from_owned(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// Send one report; a failure to send is ignored (the engine then sees a bare exit).
    pub fn send(&self, report: &Report) {
        let Ok(mut line) = serde_json::to_vec(report) else {
            return;
        };
        line.push(b'\n');
        // One write(2): lines under PIPE_BUF arrive whole.
        let mut file = std::mem::ManuallyDrop::new(
            // SAFETY: the File is never dropped (ManuallyDrop), so the fd stays owned by self.
            unsafe { std::fs::File::from_raw_fd(self.fd.as_raw_fd()) },
        );
        let _ = file.write_all(&line);
    }

    /// The fd, e.g. to keep it out of a child.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// Parse the report stream: one JSON object per line; unreadable lines are skipped.
pub fn parse_reports(bytes: &[u8]) -> Vec<Report> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect()
}

/// Report a failed step and end this process (the helper, or the direct start's init).
pub fn fail(reporter: &Reporter, err: SetupError) -> ! {
    reporter.send(&Report::SetupFailed {
        step: err.step,
        errno: err.errno as i32,
    });
    // Nothing of the C library's exit: with the direct start this address space is the
    // caller's, which goes on.
    super::raw::exit(SETUP_FAILED)
}

/// The engine's side: read the report pipe to its end.
pub fn read_reports(fd: OwnedFd) -> Vec<Report> {
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(fd).read_to_end(&mut bytes);
    parse_reports(&bytes)
}

/// What the reports say: the init's PID when it announced one, and the first failure.
pub fn verdict(reports: Vec<Report>) -> (Option<Pid>, Option<EngineError>) {
    let mut init_pid = None;
    let mut failure = None;
    for report in reports {
        match report {
            Report::Ready { init_pid: pid } => init_pid = Some(Pid::from_raw(pid)),
            Report::Note { message } => tracing::info!("{message}"),
            Report::Unavailable { reason } => {
                failure.get_or_insert(EngineError::NamespaceUnavailable(reason));
            }
            Report::SetupFailed { step, errno } => {
                failure.get_or_insert(EngineError::Setup {
                    step,
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
            Report::ExecFailed { command, reason } => {
                failure.get_or_insert(EngineError::Exec { command, reason });
            }
        }
    }
    (init_pid, failure)
}

/// The namespace engine cannot run here: the reason, and what to use instead.
pub fn namespace_unavailable(reason: &str) -> EngineError {
    EngineError::NamespaceUnavailable(format!(
        "{reason}; on this host use the preload engine (--engine preload, SCAR_ENGINE=preload)"
    ))
}

/// A failed call of the engine's own side (before or around the start), as an engine error.
pub fn errno_setup(step: &str) -> impl FnOnce(Errno) -> EngineError + '_ {
    move |errno| EngineError::Setup {
        step: step.to_string(),
        source: std::io::Error::from_raw_os_error(errno as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_as_json_lines() {
        let reports = vec![
            Report::Note {
                message: "overlay refused".into(),
            },
            Report::Ready { init_pid: 42 },
            Report::ExecFailed {
                command: "nope".into(),
                reason: "not found".into(),
            },
        ];
        let mut bytes = Vec::new();
        for report in &reports {
            bytes.extend(serde_json::to_vec(report).unwrap());
            bytes.push(b'\n');
        }
        bytes.extend(b"garbage\n");
        assert_eq!(parse_reports(&bytes), reports);
    }

    #[test]
    fn the_first_failure_wins_and_the_init_pid_is_kept() {
        let (pid, failure) = verdict(vec![
            Report::Ready { init_pid: 7 },
            Report::SetupFailed {
                step: "pivot_root into /r".into(),
                errno: libc::EPERM,
            },
            Report::ExecFailed {
                command: "x".into(),
                reason: "later".into(),
            },
        ]);
        assert_eq!(pid, Some(Pid::from_raw(7)));
        let Some(EngineError::Setup { step, source }) = failure else {
            panic!("{failure:?}")
        };
        assert_eq!(step, "pivot_root into /r");
        assert_eq!(source.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn a_failed_step_sent_by_a_reporter_is_read_back_whole() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let reporter = Reporter::from_owned(write);
        reporter.send(&Report::SetupFailed {
            step: "sethostname(scar)".into(),
            errno: libc::EPERM,
        });
        drop(reporter);
        assert_eq!(
            read_reports(read),
            vec![Report::SetupFailed {
                step: "sethostname(scar)".into(),
                errno: libc::EPERM,
            }]
        );
    }
}

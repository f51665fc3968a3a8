//! What the engine hands to its helper process, and what the helper reports back.
//!
//! The spec travels as JSON over an inherited pipe (it can be larger than an environment
//! variable may hold: `EVENT` alone may be 128 KiB). Reports travel back as JSON lines over a
//! close-on-exec pipe: end of file with no error means the command was executed.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use super::affinity::CpuMask;
use serde::{Deserialize, Serialize};

/// Environment variable that turns a re-executed binary into the container helper; its value
/// is `<config fd>,<report fd>`.
pub const HELPER_ENV: &str = "SCAR_CONTAINER_INIT";

/// argv\[0\] of the helper, so `ps` shows what it is.
pub const HELPER_ARG0: &str = "scar-container-init";

/// The container, as the helper needs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InitConfig {
    /// The image's root filesystem (never modified).
    pub root: PathBuf,
    /// The engine's scratch directory: a tmpfs private to the helper's mount namespace is
    /// mounted over it, holding the new root's mount point and the overlay's upper and work.
    pub run_dir: PathBuf,
    /// The command.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub workdir: String,
    /// Host paths bound in.
    pub mounts: Vec<BindMount>,
    /// The container's hostname.
    pub hostname: String,
    /// The CPU mask the command gets back before it executes, where the start pinned the
    /// init to the caller's CPU ([`super::affinity`]). Not sent to the helper, which is not
    /// pinned.
    #[serde(skip)]
    pub affinity: Option<CpuMask>,
    /// The init's parent reads the record and does not wait for the init's exit when the
    /// command has ended and the init is alone (the direct start, see
    /// [`super::init::run`]). Not sent to the helper, whose monitor waits for that exit.
    #[serde(skip)]
    pub parent_reads_record: bool,
}

/// One host path bound into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: PathBuf,
    /// Read-only.
    pub read_only: bool,
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
}

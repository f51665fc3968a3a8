//! Timing one child process: wall time from spawn to reap, and its peak RSS as GNU time reports
//! it (the `ru_maxrss` of `wait4`: the tool's own high-water mark, or that of the largest
//! descendant it reaped, which is what "peak memory of this tool" means for a tool that forks
//! helpers).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One measured run of one command (or of a sequence of commands, see [`Sample::then`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Wall-clock seconds from spawn to reap.
    pub secs: f64,
    /// Peak resident set size in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
}

impl Sample {
    /// The cost of running `self` and then `next`: times add up, memory peaks do not.
    pub fn then(self, next: Sample) -> Sample {
        Sample {
            secs: self.secs + next.secs,
            max_rss_kib: self.max_rss_kib.max(next.max_rss_kib),
        }
    }
}

/// Why a measured command gave no number.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started at all (usually: not installed).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program name.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `wait4` failed.
    #[error("wait4 on {program}: {source}")]
    Wait {
        /// The program name.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command ran but failed; `detail` is the tail of its stderr.
    #[error("{program} exited with {status}: {detail}")]
    Failed {
        /// The program name.
        program: String,
        /// Exit code or signal, as text.
        status: String,
        /// Last line(s) of stderr.
        detail: String,
    },
    /// The command ran past its time limit and was killed.
    #[error("{program} still running after {secs} s: killed")]
    TimedOut {
        /// The program name.
        program: String,
        /// The limit.
        secs: u64,
    },
    /// A scratch file for the command's output could not be used.
    #[error("scratch file {path}: {source}")]
    Scratch {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl RunError {
    /// One short line for a table cell.
    pub fn short(&self) -> String {
        let text = self.to_string().replace(['\n', '|'], " ");
        if text.chars().count() > 110 {
            let cut: String = text.chars().take(107).collect();
            format!("{cut}...")
        } else {
            text
        }
    }
}

/// GNU time: the small parent whose child's `ru_maxrss` is the tool's own.
const GNU_TIME: &str = "/usr/bin/time";

/// Whether peak memory can be measured (GNU time, Debian package `time`, is installed).
pub fn can_measure_rss() -> bool {
    Path::new(GNU_TIME).is_file()
}

/// Run `cmd` to completion with stdout discarded and stderr kept in `scratch` (read back on
/// failure), killing its whole process group after `limit`; the peak RSS is measured too.
///
/// Why GNU time: the kernel records the high-water RSS of the memory a process had before
/// `exec` into that process's `ru_maxrss`, and a child spawned by this bench starts out as a copy
/// of the bench (several MiB). A tool forked by the tiny `time` process instead carries only
/// `time`'s own ~2 MiB. That extra exec costs about a millisecond, so starts that are timed to
/// the millisecond use [`measure_time_only`] and take their memory from a separate run.
pub fn measure(cmd: &mut Command, scratch: &Path, limit: Duration) -> Result<Sample, RunError> {
    if !can_measure_rss() {
        return measure_time_only(cmd, scratch, limit);
    }
    let rss_file = scratch.with_extension("rss");
    let mut wrapped = Command::new(GNU_TIME);
    wrapped
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut sample = spawn_and_wait(&mut wrapped, &program, scratch, limit)?;
    let text = std::fs::read_to_string(&rss_file).unwrap_or_default();
    sample.max_rss_kib = text
        .lines()
        .rev()
        .find_map(|line| line.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(sample)
}

/// Like [`measure`] but with no wrapper: the most exact wall time, and no memory figure
/// (`max_rss_kib` is 0).
pub fn measure_time_only(
    cmd: &mut Command,
    scratch: &Path,
    limit: Duration,
) -> Result<Sample, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut sample = spawn_and_wait(cmd, &program, scratch, limit)?;
    sample.max_rss_kib = 0;
    Ok(sample)
}

fn spawn_and_wait(
    cmd: &mut Command,
    program: &str,
    scratch: &Path,
    limit: Duration,
) -> Result<Sample, RunError> {
    let program = program.to_string();
    let scratch_err = |source| RunError::Scratch {
        path: scratch.display().to_string(),
        source,
    };
    let mut stderr = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(scratch)
        .map_err(scratch_err)?;
    let stderr_for_child = stderr.try_clone().map_err(scratch_err)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_for_child)
        // Its own process group, so a timeout can stop the helpers it forked too.
        .process_group(0);

    let start = Instant::now();
    let child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id() as libc::pid_t;
    let (waited, timed_out) = wait_within(pid, start + limit);
    let secs = start.elapsed().as_secs_f64();
    let status = waited.map_err(|source| RunError::Wait {
        program: program.clone(),
        source,
    })?;
    drop(child);
    if timed_out {
        return Err(RunError::TimedOut {
            program,
            secs: limit.as_secs(),
        });
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(Sample {
            secs,
            max_rss_kib: 0,
        });
    }
    let status = if libc::WIFEXITED(status) {
        format!("status {}", libc::WEXITSTATUS(status))
    } else {
        format!("signal {}", libc::WTERMSIG(status))
    };
    Err(RunError::Failed {
        program,
        status,
        detail: stderr_tail(&mut stderr),
    })
}

/// Reap `pid`, killing its process group if it runs past `deadline`; whether it was killed.
///
/// The deadline is watched on a pidfd in this thread: a watchdog thread started per run
/// would be created, and scheduled, while the tool under measure starts, and would add its
/// cost to every tool's figure. Kernels without pidfds (before 5.3) get that thread.
fn wait_within(pid: libc::pid_t, deadline: Instant) -> (Result<libc::c_int, std::io::Error>, bool) {
    use scar_rootfs::engine::process::{pidfd_open, wait_readable};
    let kill_group = move || {
        // The child is not reaped yet, so its pid still names its group, not a recycled one.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    if let Some(pidfd) = pidfd_open(nix::unistd::Pid::from_raw(pid)) {
        // A poll error (not a timeout) leaves the plain wait below.
        let timed_out = !wait_readable(&pidfd, deadline) && Instant::now() >= deadline;
        if timed_out {
            kill_group();
        }
        return (wait4(pid), timed_out);
    }
    let (reaped_tx, reaped_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let left = deadline.saturating_duration_since(Instant::now());
        if reaped_rx.recv_timeout(left) == Err(mpsc::RecvTimeoutError::Timeout) {
            kill_group();
            return true;
        }
        false
    });
    let waited = wait4(pid);
    let _ = reaped_tx.send(());
    (waited, watchdog.join().unwrap_or(false))
}

/// Reap `pid`, retrying on EINTR, and return its wait status.
fn wait4(pid: libc::pid_t) -> Result<libc::c_int, std::io::Error> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: the pointer is to a live, writable local of the right type.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The last non-empty lines of a failed tool's stderr, joined into one line.
fn stderr_tail(file: &mut File) -> String {
    let len = file.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(2)..].join(" / ");
    if tail.is_empty() {
        "no message on stderr".to_string()
    } else {
        tail
    }
}

/// Median, minimum and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Median seconds.
    pub median: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Largest peak RSS over the runs, KiB.
    pub max_rss_kib: u64,
    /// How many runs.
    pub runs: usize,
}

impl Stats {
    /// Summarise `samples`; `None` when there are none.
    pub fn of(samples: &[Sample]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut secs: Vec<f64> = samples.iter().map(|s| s.secs).collect();
        secs.sort_by(f64::total_cmp);
        let n = secs.len();
        let median = if n % 2 == 1 {
            secs[n / 2]
        } else {
            (secs[n / 2 - 1] + secs[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: secs[0],
            max: secs[n - 1],
            max_rss_kib: samples.iter().map(|s| s.max_rss_kib).max().unwrap_or(0),
            runs: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: f64, rss: u64) -> Sample {
        Sample {
            secs,
            max_rss_kib: rss,
        }
    }

    #[test]
    fn median_of_an_odd_count_is_the_middle_value() {
        let stats = Stats::of(&[sample(3.0, 1), sample(1.0, 5), sample(2.0, 2)]).unwrap();
        assert_eq!((stats.median, stats.min, stats.max), (2.0, 1.0, 3.0));
        assert_eq!(stats.max_rss_kib, 5);
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_pair() {
        let stats = Stats::of(&[
            sample(4.0, 1),
            sample(1.0, 1),
            sample(2.0, 1),
            sample(3.0, 1),
        ]);
        assert_eq!(stats.unwrap().median, 2.5);
    }

    #[test]
    fn sequenced_samples_add_times_and_keep_the_larger_peak() {
        let both = sample(1.5, 100).then(sample(2.0, 40));
        assert_eq!(both, sample(3.5, 100));
    }

    #[test]
    fn a_failing_command_reports_its_stderr_tail() {
        let dir = std::env::temp_dir().join(format!("scar-bench-measure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = measure(
            Command::new("sh").args(["-c", "echo first >&2; echo 'the reason' >&2; exit 3"]),
            &dir.join("stderr"),
            Duration::from_secs(30),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("status 3") && text.contains("the reason"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_command_that_allocates_shows_its_peak_memory() {
        let dir = std::env::temp_dir().join(format!("scar-bench-rss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // `head -c` of 64 MiB into `sort` makes sort hold it in memory.
        let sample = measure(
            Command::new("sh").args([
                "-c",
                "head -c 67108864 /dev/zero | tr '\\0' a | sort >/dev/null",
            ]),
            &dir.join("stderr"),
            Duration::from_secs(120),
        )
        .unwrap();
        assert!(sample.max_rss_kib > 32 * 1024, "{sample:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_command_past_its_limit_is_killed() {
        let dir = std::env::temp_dir().join(format!("scar-bench-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = measure(
            Command::new("sleep").arg("100"),
            &dir.join("stderr"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Starting the container straight from the caller, with no helper process.
//!
//! A single-threaded caller (the `scar run` command line, before it starts any thread) may
//! run arbitrary code in the child of a plain clone(2), so there the engine clones the
//! container's init directly into new user, mount, PID, IPC and UTS namespaces: no re-exec of
//! the binary, no spec over a pipe, no probe process, one process less. The init maps its
//! ids, builds the root filesystem and goes on exactly as the helper's init does
//! ([`super::init::run`]); reports come back over the same close-on-exec pipe.
//!
//! Process tree: caller (monitor) → init (PID 1) → command, the same as bubblewrap's.
//!
//! A multithreaded caller (the bootstrap, a test harness) keeps the helper path: after a
//! clone in a multithreaded process the child may only make async-signal-safe calls.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::signal::{SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, dup2_stderr, dup2_stdin, dup2_stdout, pipe2};

use super::affinity::{CpuMask, Pinned};
use super::channel::{
    Report, Reporter, SETUP_FAILED, SetupError, errno_setup, fail, namespace_unavailable,
    parse_reports, verdict,
};
use super::config::InitConfig;
use super::probe::{self, NamespaceSupport, Step};
use super::steps::{self, IdMaps, waited_signals};
use super::syscall::{LinuxSyscall, Syscall, Target};
use super::{init, raw};
use crate::engine::fork::{SharedStack, clone_shared};
use crate::engine::process::{outcome_of, wait_or_stop, wait_readable};
use crate::engine::types::{Container, ContainerHandle, EngineError, Outcome, Stdio};

/// What the start needs to know of this process: whether it has a single thread, and where
/// its argument strings lie.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelfStat {
    /// This process has exactly one thread.
    pub single_threaded: bool,
    /// Where its argument strings lie (`arg_start`, `arg_end`), which the init overwrites.
    args: Option<[usize; 2]>,
}

/// The argument strings' area of a binary that received `argv` itself (see
/// [`set_argument_area`]).
static ARGUMENT_AREA: std::sync::OnceLock<[usize; 2]> = std::sync::OnceLock::new();

/// For a binary whose `main` receives `argc` and `argv` (`#![no_main]`): the area its argument
/// strings fill, `argv[0]` to the end of the last one (the kernel lays them out one after the
/// other), so that the start need not read `/proc/self/stat` for it. A new process's first
/// read of that file costs some 20 µs on a virtual machine: its `/proc` entries are made then.
pub fn set_argument_area(start: usize, end: usize) {
    if start < end {
        let _ = ARGUMENT_AREA.set([start, end]);
    }
}

impl SelfStat {
    /// The argument strings' area found.
    pub fn argument_area(&self) -> Option<[usize; 2]> {
        self.args
    }

    /// Find it out: with the argument area set by [`set_argument_area`], the thread count
    /// from `/proc/self/task`; else both from one read of `/proc/self/stat`. A process whose
    /// `/proc` cannot be read counts as multithreaded.
    pub fn read() -> Self {
        if let Some(args) = ARGUMENT_AREA.get() {
            return Self {
                single_threaded: is_single_threaded(),
                args: Some(*args),
            };
        }
        use std::io::Read;
        // One read: the line is far shorter than the buffer.
        let mut buf = [0u8; 1024];
        let Ok(len) = std::fs::File::open("/proc/self/stat").and_then(|mut f| f.read(&mut buf))
        else {
            return Self::default();
        };
        Self::parse(&String::from_utf8_lossy(&buf[..len]))
    }

    fn parse(stat: &str) -> Self {
        // Fields after the `)` that ends the command name, from field 3 on: num_threads is
        // field 20, arg_start and arg_end are fields 48 and 49.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return Self::default();
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |field: usize| fields.get(field - 3).and_then(|f| f.parse::<usize>().ok());
        Self {
            single_threaded: number(20) == Some(1),
            args: number(48).zip(number(49)).map(|(start, end)| [start, end]),
        }
    }
}

/// Whether this process has exactly one thread: the link count of `/proc/self/task` is two
/// plus the number of threads (a `stat`, where reading `/proc/self/stat` makes the kernel
/// format every field of it).
pub fn is_single_threaded() -> bool {
    nix::sys::stat::stat("/proc/self/task").is_ok_and(|task| task.st_nlink == 3)
}

/// One standard stream of the command: the child's end, and the caller's end of a pipe.
struct StreamEnds {
    child: Option<OwnedFd>,
    caller: Option<OwnedFd>,
}

fn stream(kind: Stdio, input: bool) -> Result<StreamEnds, EngineError> {
    match kind {
        Stdio::Inherit => Ok(StreamEnds {
            child: None,
            caller: None,
        }),
        Stdio::Null => {
            let flags = if input {
                OFlag::O_RDONLY
            } else {
                OFlag::O_WRONLY
            };
            let null = open("/dev/null", flags | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(errno_setup("opening /dev/null"))?;
            Ok(StreamEnds {
                child: Some(null),
                caller: None,
            })
        }
        Stdio::Piped => {
            let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
            let (child, caller) = if input { (read, write) } else { (write, read) };
            Ok(StreamEnds {
                child: Some(child),
                caller: Some(caller),
            })
        }
    }
}

/// Stack of the init in the direct start: its set-up runs the engine's ordinary Rust code.
/// Pages are only backed where touched (a few dozen KiB).
const INIT_STACK: usize = 1 << 20;

/// What the cloned init needs, on the caller's stack (valid until the hand-over, during
/// which the caller waits; see [`start`]). The descriptors are numbers in the init's own copy
/// of the descriptor table, which the init owns.
struct InitJob<'a> {
    config: &'a InitConfig,
    maps: &'a IdMaps,
    report: RawFd,
    status: RawFd,
    stdio: [Option<RawFd>; 3],
    args: Option<[usize; 2]>,
    /// The caller's CPU mask, for the command (the init runs pinned to the caller's CPU).
    affinity: Option<CpuMask>,
}

/// Start the container from this single-threaded process.
///
/// The init is cloned with `CLONE_VM`: it shares this address space (no page-table copy, no
/// copy-on-write faults on either side, and this process's exit does not tear the memory
/// down while the init still uses it). Until the init hands over (closes the report pipe, the
/// command started), this process only waits in a raw read(2), touching nothing the init
/// uses; after it, the init makes raw system calls only ([`super::raw`]).
pub(super) fn start(
    config: &InitConfig,
    stdio: [Stdio; 3],
    stat: SelfStat,
) -> Result<Container, EngineError> {
    let maps = IdMaps::of_caller();
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
    let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
    let mut streams = [
        stream(stdio[0], true)?,
        stream(stdio[1], false)?,
        stream(stdio[2], false)?,
    ];
    let stack = SharedStack::map(INIT_STACK).map_err(|(step, errno)| errno_setup(step)(errno))?;
    // Allocated before the clone: the caller must not allocate while the init runs.
    let mut reports = Vec::with_capacity(REPORTS_BUFFER);
    // This process, the init and the command's start on this CPU: see `affinity`.
    let pinned = Pinned::here();
    let job = InitJob {
        config,
        maps: &maps,
        report: report_write.into_raw_fd(),
        status: status_write.into_raw_fd(),
        stdio: streams
            .each_mut()
            .map(|s| s.child.take().map(IntoRawFd::into_raw_fd)),
        args: stat.args,
        affinity: pinned.saved(),
    };
    // Blocked before the clone so that the init, which waits for them synchronously, loses
    // none; this process gets its own mask back after the hand-over.
    let mut saved = nix::sys::signal::SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&waited_signals()),
        Some(&mut saved),
    )
    .map_err(errno_setup("blocking signals"))?;
    // SAFETY: `stack.top()` is the end of a private writable mapping that outlives the init's
    // use of it (unmapped only once the init is reaped), and `job` lives on this stack until
    // the hand-over, which this function waits for before it returns or touches anything the
    // init may use (see `start`'s comment). This process is single-threaded (checked by the
    // caller), so no lock is held and the init may run any code until the hand-over.
    let cloned = unsafe { clone_shared(init_entry, &job, stack.top(), steps::NAMESPACES.bits()) };
    // The init is on this CPU now: this process, which only waits from here on, need not be.
    drop(pinned);
    // The init's descriptors, closed here with raw calls (no errno written).
    for fd in [Some(job.report), Some(job.status)]
        .into_iter()
        .chain(job.stdio)
        .flatten()
    {
        raw::close(fd);
    }
    let init = match cloned {
        Ok(init) => init,
        Err(errno) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
            return Err(refused(Step::CloneAll, errno, &maps));
        }
    };
    let handed_over = read_until_handover(report_read.as_raw_fd(), &mut reports);
    if let Err(errno) = handed_over {
        // The init may still be running in this address space: end it before going on.
        raw::kill(init.as_raw(), libc::SIGKILL);
        let _ = waitpid(init, None);
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
        return Err(errno_setup("reading the container init's reports")(errno));
    }
    drop(report_read);
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
    let (_, failure) = verdict(parse_reports(&reports));
    if let Some(err) = failure {
        let _ = kill(init, Signal::SIGKILL);
        let _ = waitpid(init, None);
        drop(stack);
        if let EngineError::NamespaceUnavailable(reason) = &err {
            probe::record(NamespaceSupport::Unavailable(reason.clone()));
            return Err(namespace_unavailable(reason));
        }
        return Err(err);
    }
    probe::record(NamespaceSupport::Available);
    let [stdin, stdout, stderr] = streams.map(|s| s.caller);
    Ok(Container {
        stdin: stdin.map(ChildStdin::from),
        stdout: stdout.map(ChildStdout::from),
        stderr: stderr.map(ChildStderr::from),
        handle: Box::new(DirectHandle {
            init,
            status: Some(status_read),
            state: InitState::Running,
            stack: Some(stack),
        }),
    })
}

/// Reports kept from the init's set-up (a few lines; more is read and dropped, so the init
/// never blocks on a full pipe).
const REPORTS_BUFFER: usize = 16 * 1024;

/// Read the report pipe until end of file (the hand-over) with raw read(2)s into `reports`'
/// spare capacity: nothing allocated, no errno written. An error other than EINTR (none is
/// expected on a pipe this process made) is returned before anything else runs.
fn read_until_handover(fd: RawFd, reports: &mut Vec<u8>) -> Result<(), Errno> {
    let mut overflow = [std::mem::MaybeUninit::<u8>::uninit(); 512];
    loop {
        let spare = reports.spare_capacity_mut();
        let buf = if spare.is_empty() {
            &mut overflow[..]
        } else {
            spare
        };
        let got = raw::read(fd, buf);
        match got {
            0 => return Ok(()),
            n if n == -(libc::EINTR as isize) => continue,
            n if n < 0 => return Err(Errno::from_raw(-n as i32)),
            n => {
                if !reports.spare_capacity_mut().is_empty() {
                    // SAFETY: the kernel wrote `n` bytes at the start of the spare capacity.
                    unsafe { reports.set_len(reports.len() + n as usize) };
                }
            }
        }
    }
}

/// The init's entry on its own stack.
extern "C" fn init_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `InitJob` on the caller's stack, valid until the hand-over (see
    // `start`); the init reads it only before.
    let job = unsafe { &*arg.cast::<InitJob>() };
    // SAFETY: these are the init's own copies of descriptors made for it, owned by nothing
    // else in its descriptor table.
    let (report, status, stdio) = unsafe {
        (
            OwnedFd::from_raw_fd(job.report),
            OwnedFd::from_raw_fd(job.status),
            job.stdio.map(|fd| fd.map(|fd| OwnedFd::from_raw_fd(fd))),
        )
    };
    child(job, report, status, stdio)
}

/// The namespace engine cannot run here: the reason, as the probe would give it.
fn refused(step: Step, errno: Errno, maps: &IdMaps) -> EngineError {
    let reason = probe::explain(step, errno, maps.uid, maps.gid);
    let err = namespace_unavailable(&reason);
    probe::record(NamespaceSupport::Unavailable(reason));
    err
}

/// The cloned child: PID 1 of the new PID namespace. Never returns.
fn child(job: &InitJob, report: OwnedFd, status: OwnedFd, stdio: [Option<OwnedFd>; 3]) -> ! {
    let reporter = Reporter::from_owned(report);
    // The duplicates are not close-on-exec: the command inherits them.
    let [stdin, stdout, stderr] = stdio;
    let streams = stdin
        .map_or(Ok(()), dup2_stdin)
        .and_then(|()| stdout.map_or(Ok(()), dup2_stdout))
        .and_then(|()| stderr.map_or(Ok(()), dup2_stderr));
    if let Err(errno) = streams {
        fail(
            &reporter,
            SetupError::new("dup2 of a standard stream", errno),
        );
    }
    let (mut pinned, _pins) =
        match set_up(&LinuxSyscall::default(), job.config, job.maps, &reporter) {
            Ok(built) => built,
            Err(Refusal::Unavailable(reason)) => {
                reporter.send(&Report::Unavailable { reason });
                raw::exit(SETUP_FAILED);
            }
            Err(Refusal::Setup(err)) => fail(&reporter, err),
        };
    pinned.affinity = job.affinity;
    pinned.parent_reads_record = true;
    // Only now: a non-dumpable process's /proc/self files belong to the host's root, so an
    // unprivileged caller could no longer write its uid_map.
    conceal_caller(job.args);
    init::run(&pinned, &reporter, status)
}

/// Why the cloned init stops before it goes on as an init.
#[derive(Debug)]
enum Refusal {
    /// The id maps were refused: the engine is unavailable here (the text the probe gives).
    Unavailable(String),
    /// Another step failed.
    Setup(SetupError),
}

/// The cloned init's steps before it goes on as the helper's init does, in order: setgroups,
/// uid_map, gid_map (the namespaces came with the clone), hostname, the root filesystem.
fn set_up(
    sys: &impl Syscall,
    config: &InitConfig,
    maps: &IdMaps,
    reporter: &Reporter,
) -> Result<(InitConfig, Vec<Target>), Refusal> {
    steps::map_ids(sys, maps).map_err(|(step, errno)| {
        Refusal::Unavailable(probe::explain(step, errno, maps.uid, maps.gid))
    })?;
    steps::build_root(sys, config, reporter).map_err(Refusal::Setup)
}

/// The init shares the caller's memory, which may hold secrets (its environment, registry
/// credentials). Non-dumpable, the container's root cannot read that memory or
/// `/proc/1/environ`: the address space belongs to the host's user namespace, where container
/// root has no CAP_SYS_PTRACE. The command line, which anyone may read, is overwritten, so
/// `/proc/1/cmdline` reads `scar-container-init`, as with the helper. Both are properties of
/// the shared memory: the caller becomes non-dumpable too, and its own command line reads the
/// same from then on (it has parsed its arguments long before).
fn conceal_caller(args: Option<[usize; 2]>) {
    let _ = nix::sys::prctl::set_dumpable(false);
    let Some([start, end]) = args else {
        return;
    };
    let Some(len) = end
        .checked_sub(start)
        .filter(|len| *len > 0 && *len < 1 << 24)
    else {
        return;
    };
    // SAFETY: the kernel reports [start, end) as this process's argument strings, placed by
    // execve(2) on the caller's writable stack; the caller waits (see `start`) and reads them
    // no more (std's saved argv is not consulted after the arguments are parsed).
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area.fill(0);
        let n = HELPER_TITLE.len().min(len.saturating_sub(1));
        area[..n].copy_from_slice(&HELPER_TITLE[..n]);
    }
}

/// What `/proc/1/cmdline` shows.
const HELPER_TITLE: &[u8] = b"scar-container-init";

/// The running container: the init is this process's child.
struct DirectHandle {
    init: Pid,
    /// The init writes how the command ended here: `[0, code, alone]` or `[1, signal, alone]`.
    status: Option<OwnedFd>,
    /// What became of the init, for `Drop`.
    state: InitState,
    /// The init's stack: unmapped once the init is reaped, left mapped while it may still run
    /// on it.
    stack: Option<SharedStack>,
}

/// Whether the init still needs this process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InitState {
    /// Running: `Drop` stops and reaps it.
    Running,
    /// Reaped by `wait`.
    Reaped,
    /// Its command ended and it was alone in its PID namespace: it is only tearing the
    /// namespaces down, and is reaped if it is done by the time of `Drop` (else by whoever
    /// inherits it when this process exits).
    Finishing,
}

impl DirectHandle {
    /// The init's record, read until it arrives or the init is gone (end of file).
    fn read_record(&mut self) -> Option<[u8; 3]> {
        use std::io::Read;
        let mut record = [0u8; 3];
        let mut pipe = std::fs::File::from(self.status.take()?);
        pipe.read_exact(&mut record).ok().map(|()| record)
    }
}

/// The command's end as the init recorded it.
fn recorded_outcome(init: Pid, kind: u8, value: u8, timed_out: bool) -> Outcome {
    match kind {
        1 => Outcome {
            code: None,
            signal: Some(i32::from(value)),
            timed_out,
        },
        _ => outcome_of(
            nix::sys::wait::WaitStatus::Exited(init, i32::from(value)),
            timed_out,
        ),
    }
}

impl ContainerHandle for DirectHandle {
    fn pid(&self) -> u32 {
        self.init.as_raw() as u32
    }

    fn wait(&mut self, deadline: Option<Instant>, grace: Duration) -> Result<Outcome, EngineError> {
        let init = self.init;
        // The record comes when the command ends, before the init's exit (within the
        // deadline, if any). When the init was alone, it is all that is needed: the rest of
        // the init's exit (the mount and other namespaces torn down, a few hundred
        // microseconds) need not be waited for, and the init puts it off until this process
        // has ended (see `init::linger`).
        let recorded = match (deadline, self.status.as_ref()) {
            (None, Some(_)) => true,
            (Some(until), Some(status)) => wait_readable(status, until),
            (_, None) => false,
        };
        if recorded {
            match self.read_record() {
                Some([kind, value, 1]) => {
                    self.state = InitState::Finishing;
                    return Ok(recorded_outcome(init, kind, value, false));
                }
                Some([kind, value, _]) => {
                    let outcome = wait_or_stop(init, deadline, grace, |sig| {
                        let _ = kill(init, sig);
                    })?;
                    self.state = InitState::Reaped;
                    return Ok(recorded_outcome(init, kind, value, outcome.timed_out));
                }
                None => {}
            }
        }
        // SIGTERM reaches the command through the init; SIGKILL ends the init, and with it
        // every process of the PID namespace.
        let outcome = wait_or_stop(init, deadline, grace, |sig| {
            let _ = kill(init, sig);
        })?;
        self.state = InitState::Reaped;
        // The init's own status is 128 + signal for a killed command; the record says which.
        Ok(match self.read_record() {
            Some([kind, value, _]) => recorded_outcome(init, kind, value, outcome.timed_out),
            None => outcome,
        })
    }
}

impl Drop for DirectHandle {
    fn drop(&mut self) {
        match self.state {
            // A container dropped without `wait` is stopped, not leaked.
            InitState::Running => {
                let _ = kill(self.init, Signal::SIGKILL);
                let _ = waitpid(self.init, None);
            }
            InitState::Finishing => {
                let reaped = waitpid(self.init, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                    .is_ok_and(|status| status != nix::sys::wait::WaitStatus::StillAlive);
                if !reaped {
                    // Its last instructions may still run on the stack; this process ends
                    // soon, and the memory with it.
                    std::mem::forget(self.stack.take());
                }
            }
            InitState::Reaped => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::namespace::channel::read_reports;
    use crate::engine::namespace::syscall::double::{config, image, position, reporter};
    use nix::unistd::{Gid, Uid};

    fn maps() -> IdMaps {
        IdMaps::of(Uid::from_raw(993), Gid::from_raw(990))
    }

    #[test]
    fn the_cloned_init_maps_its_ids_before_the_hostname_and_any_mount_and_unshares_nothing() {
        let sys = image();
        let (reporter, reports) = reporter();
        let (pinned, _pins) = set_up(&sys, &config(vec![]), &maps(), &reporter).unwrap();
        let lines = sys.lines();
        assert_eq!(
            &lines[..4],
            [
                "write /proc/self/setgroups deny",
                "write /proc/self/uid_map 0 993 1",
                "write /proc/self/gid_map 0 990 1",
                "sethostname scar",
            ],
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("unshare")),
            "{lines:#?}"
        );
        assert!(position(&lines, "pin /cache/rootfs/abc") < position(&lines, "mount"));
        assert_eq!(
            pinned.root,
            std::path::Path::new("/pinned/cache/rootfs/abc")
        );
        drop(reporter);
        // Notes only (no overlay trouble here, so none at all).
        assert!(
            read_reports(reports)
                .iter()
                .all(|r| matches!(r, Report::Note { .. }))
        );
    }

    #[test]
    fn a_refused_uid_map_makes_the_engine_unavailable_with_the_probes_words_and_mounts_nothing() {
        let mut sys = image();
        sys.fail
            .insert("write /proc/self/uid_map".into(), Errno::EPERM);
        let (reporter, _reports) = reporter();
        let refusal = set_up(&sys, &config(vec![]), &maps(), &reporter).unwrap_err();
        let Refusal::Unavailable(reason) = refusal else {
            panic!("{refusal:?}")
        };
        assert_eq!(
            reason,
            probe::explain(Step::UidMap, Errno::EPERM, maps().uid, maps().gid)
        );
        assert!(reason.contains("AWS Lambda"), "{reason}");
        assert!(
            !sys.lines()
                .iter()
                .any(|l| l.starts_with("mount") || l.starts_with("sethostname"))
        );
    }

    #[test]
    fn a_failed_mount_after_the_maps_is_a_set_up_failure_naming_its_step() {
        let mut sys = image();
        sys.fail.insert("mount tmpfs".into(), Errno::ENOSPC);
        let (reporter, _reports) = reporter();
        let refusal = set_up(&sys, &config(vec![]), &maps(), &reporter).unwrap_err();
        let Refusal::Setup(err) = refusal else {
            panic!("{refusal:?}")
        };
        assert_eq!(
            err.step,
            "mounting a tmpfs on the run directory /scratch/run"
        );
        assert_eq!(err.errno, Errno::ENOSPC);
    }

    #[test]
    fn self_stat_finds_the_thread_count_and_the_argument_area_past_an_odd_command_name() {
        // A command name may hold spaces and parentheses; fields count from the last `)`.
        let mut line = String::from("4242 (a) b (c) R 1 4242 4242 0 -1 4194560 99 0 0 0 0 0");
        // Fields 16 to 19, then num_threads (20), then fields 21 to 47.
        line.push_str(" 0 0 20 0 1");
        line.push_str(&" 0".repeat(27));
        line.push_str(" 140000 140123 140123 140456 0");
        let stat = SelfStat::parse(&line);
        assert!(stat.single_threaded, "{line}");
        assert_eq!(stat.args, Some([140000, 140123]));
        let threaded = SelfStat::parse(&line.replace(" 0 0 20 0 1 ", " 0 0 20 0 3 "));
        assert!(!threaded.single_threaded);
        assert!(!SelfStat::parse("no parenthesis").single_threaded);
    }

    #[test]
    fn the_thread_count_tells_a_forked_child_from_the_multithreaded_harness() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = stopped.recv();
        });
        assert!(!is_single_threaded(), "two threads at least");
        // SAFETY: the child makes only a stat(2) (nix formats the short path on the stack)
        // and ends with exit_group.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => raw::exit(if is_single_threaded() { 0 } else { 1 }),
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        stop.send(()).unwrap();
        other.join().unwrap();
    }

    #[test]
    fn this_process_s_argument_area_is_found() {
        let stat = SelfStat::read();
        let [start, end] = stat.args.expect("arg_start and arg_end");
        let argv0 = std::env::args_os().next().unwrap();
        assert!(end - start > argv0.len(), "{start}..{end} holds argv[0]");
    }
}

//! The shared probe: can this process run the namespace engine?
//!
//! `auto` and the bootstrap both ask [`namespace_support`]; the answer is found once per process.
//! The probe runs in a cloned child so the caller's own namespaces are never touched, and it
//! walks the same steps the engine takes: `unshare(CLONE_NEWUSER)` (refused with ENOSPC when
//! `user.max_user_namespaces` is 0, EPERM under seccomp or `unprivileged_userns_clone=0`),
//! `setgroups` deny, the `uid_map`/`gid_map` writes (refused with EPERM on AWS Lambda, see
//! aws-lambda-base-images issue 143), the other namespaces and a private mount propagation.

use std::ffi::CStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::{Gid, Uid};

use super::syscall::{LinuxSyscall, ProcSelf, Syscall};

/// Whether the namespace engine can run on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceSupport {
    /// User, mount, PID, IPC and UTS namespaces can be created and the uid mapped.
    Available,
    /// They cannot; the text says which step failed and why.
    Unavailable(String),
}

impl NamespaceSupport {
    /// True when the namespace engine can run.
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available)
    }
}

static SUPPORT: OnceLock<NamespaceSupport> = OnceLock::new();

/// The probe's answer, computed on first use and then shared by every caller in this process.
pub fn namespace_support() -> &'static NamespaceSupport {
    SUPPORT.get_or_init(probe_in_child)
}

/// The answer when this process already found it without the probe (the engine's direct
/// start is itself the probe); `None` when nobody has looked yet.
pub fn known_support() -> Option<&'static NamespaceSupport> {
    SUPPORT.get()
}

/// Record what a direct start found, so later callers in this process agree with it.
pub(crate) fn record(support: NamespaceSupport) {
    let _ = SUPPORT.set(support);
}

/// One step of the probe, in the order the engine takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    UnshareUser = 1,
    DenySetgroups = 2,
    UidMap = 3,
    GidMap = 4,
    UnshareOthers = 5,
    PrivateMounts = 6,
    /// clone(2) straight into every new namespace (the engine's direct start).
    CloneAll = 7,
}

impl Step {
    fn from_u32(value: u32) -> Option<Self> {
        [
            Self::UnshareUser,
            Self::DenySetgroups,
            Self::UidMap,
            Self::GidMap,
            Self::UnshareOthers,
            Self::PrivateMounts,
            Self::CloneAll,
        ]
        .into_iter()
        .find(|step| *step as u32 == value)
    }
}

/// What a step does, in the words of its system call (`writing `0 1000 1` to /proc/self/uid_map`).
pub(crate) fn describe(step: Step, uid: Uid, gid: Gid) -> String {
    match step {
        Step::UnshareUser => "unshare(CLONE_NEWUSER)".to_string(),
        Step::DenySetgroups => "writing `deny` to /proc/self/setgroups".to_string(),
        Step::UidMap => format!("writing `0 {uid} 1` to /proc/self/uid_map"),
        Step::GidMap => format!("writing `0 {gid} 1` to /proc/self/gid_map"),
        Step::UnshareOthers => {
            "unshare(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS)".to_string()
        }
        Step::PrivateMounts => "making mounts private in a new mount namespace".to_string(),
        Step::CloneAll => {
            "clone(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS)".to_string()
        }
    }
}

/// Explain a failed step for a person: the step, the errno and what it usually means.
pub(crate) fn explain(step: Step, errno: Errno, uid: Uid, gid: Gid) -> String {
    let what = describe(step, uid, gid);
    let hint = match (step, errno) {
        (Step::UnshareUser | Step::CloneAll, Errno::ENOSPC) => {
            "the user-namespace limit is reached (is /proc/sys/user/max_user_namespaces 0?)"
        }
        (Step::UnshareUser | Step::CloneAll, Errno::EPERM) => {
            "user namespaces are forbidden here (seccomp, kernel.unprivileged_userns_clone=0 or an AppArmor policy)"
        }
        (Step::UnshareUser | Step::CloneAll, Errno::EINVAL) => {
            "the kernel was built without user namespaces"
        }
        (Step::UidMap | Step::GidMap, Errno::EPERM) => {
            "the host refuses uid/gid maps in new user namespaces (AWS Lambda does)"
        }
        _ => "",
    };
    let mut text = format!("{what} failed: {errno:?} ({})", errno.desc());
    if !hint.is_empty() {
        text.push_str(": ");
        text.push_str(hint);
    }
    text
}

/// Run the probe in a cloned child and turn its report into a [`NamespaceSupport`].
fn probe_in_child() -> NamespaceSupport {
    let support = match run_probe() {
        Ok(support) => support,
        Err(err) => {
            NamespaceSupport::Unavailable(format!("the user-namespace probe could not run: {err}"))
        }
    };
    match &support {
        NamespaceSupport::Available => tracing::debug!("user namespaces are available"),
        NamespaceSupport::Unavailable(reason) => {
            tracing::debug!(%reason, "user namespaces are unavailable")
        }
    }
    support
}

fn run_probe() -> Result<NamespaceSupport, Errno> {
    let uid = Uid::current();
    let gid = Gid::current();
    // Everything the child needs is prepared before the clone: it shares this (multithreaded)
    // process's memory and may only make raw syscalls on these buffers.
    let uid_map = format!("0 {uid} 1\n");
    let gid_map = format!("0 {gid} 1\n");
    let child = ProbeChild {
        uid_map: uid_map.as_bytes(),
        gid_map: gid_map.as_bytes(),
        failure: AtomicU64::new(0),
    };
    // SAFETY: `probe_entry` only makes raw syscalls through `probe_steps`, writes its result
    // into the atomic in `child`, and returns (the libc wrapper then calls exit(2)); `child`
    // lives on this frame until the child has exited.
    let pid = unsafe { crate::engine::fork::vfork_run(probe_entry, &child) }?;
    let status = loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let failure = child.failure.load(Ordering::SeqCst);
    // The child reports through shared memory; its exit status says the same thing. Under
    // qemu-user, `CLONE_VM|CLONE_VFORK` becomes a plain fork: the report never reaches us, so a
    // failing child with no report must not read as "available".
    let exited_cleanly = matches!(status, Ok(nix::sys::wait::WaitStatus::Exited(_, 0)));
    if failure == 0 && !exited_cleanly {
        return Ok(NamespaceSupport::Unavailable(format!(
            "the user-namespace probe failed without a report ({status:?}): its memory is not shared with this process (e.g. under qemu-user), so namespaces are treated as unavailable"
        )));
    }
    if failure == 0 {
        return Ok(NamespaceSupport::Available);
    }
    let step = Step::from_u32((failure >> 32) as u32).unwrap_or(Step::UnshareUser);
    let errno = Errno::from_raw((failure & 0xffff_ffff) as i32);
    Ok(NamespaceSupport::Unavailable(explain(
        step, errno, uid, gid,
    )))
}

/// What the probe's child reads and writes (shared memory: CLONE_VM).
struct ProbeChild<'a> {
    uid_map: &'a [u8],
    gid_map: &'a [u8],
    /// `step << 32 | errno` of the first failing step, 0 when every step worked.
    failure: AtomicU64,
}

extern "C" fn probe_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ProbeChild` on the suspended parent's stack (see `run_probe`).
    let child = unsafe { &*(arg as *const ProbeChild) };
    match probe_steps(child.uid_map, child.gid_map) {
        Ok(()) => 0,
        Err((step, errno)) => {
            let record = (u64::from(step as u32) << 32) | u64::from(errno as i32 as u32);
            child.failure.store(record, Ordering::SeqCst);
            1
        }
    }
}

/// The probe proper, run in the cloned child of a multithreaded process: async-signal-safe
/// calls only, nothing allocated (`CStr` paths are passed to the kernel as they are).
fn probe_steps(uid_map: &[u8], gid_map: &[u8]) -> Result<(), (Step, Errno)> {
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| (Step::UnshareUser, e))?;
    write_id_maps(&LinuxSyscall::default(), uid_map, gid_map)?;
    let others = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    unshare(others).map_err(|e| (Step::UnshareOthers, e))?;
    // Propagation changed in the child's own new mount namespace only.
    mount(
        Some(c"none"),
        c"/",
        None::<&CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&CStr>,
    )
    .map_err(|e| (Step::PrivateMounts, e))
}

/// Deny setgroups(2), then map container root to the caller: `uid_map` and `gid_map` are
/// `0 <id> 1` lines. With [`LinuxSyscall`] async-signal-safe, so any freshly cloned child may
/// call it.
pub(crate) fn write_id_maps(
    sys: &impl Syscall,
    uid_map: &[u8],
    gid_map: &[u8],
) -> Result<(), (Step, Errno)> {
    sys.write_proc_self(ProcSelf::Setgroups, b"deny")
        .map_err(|e| (Step::DenySetgroups, e))?;
    sys.write_proc_self(ProcSelf::UidMap, uid_map)
        .map_err(|e| (Step::UidMap, e))?;
    sys.write_proc_self(ProcSelf::GidMap, gid_map)
        .map_err(|e| (Step::GidMap, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_number() {
        for value in 1..=7 {
            let step = Step::from_u32(value).unwrap();
            assert_eq!(step as u32, value);
        }
        assert_eq!(Step::from_u32(0), None);
    }

    #[test]
    fn a_refused_uid_map_write_is_explained_as_the_lambda_case() {
        let text = explain(
            Step::UidMap,
            Errno::EPERM,
            Uid::from_raw(993),
            Gid::from_raw(993),
        );
        assert!(text.contains("/proc/self/uid_map"), "{text}");
        assert!(text.contains("EPERM"), "{text}");
        assert!(text.contains("AWS Lambda"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn a_zero_namespace_limit_is_explained() {
        let text = explain(
            Step::UnshareUser,
            Errno::ENOSPC,
            Uid::from_raw(0),
            Gid::from_raw(0),
        );
        assert!(text.contains("max_user_namespaces"), "{text}");
    }

    #[test]
    fn the_probe_answers_the_same_twice() {
        let first = namespace_support();
        let second = namespace_support();
        assert!(std::ptr::eq(first, second));
    }
}

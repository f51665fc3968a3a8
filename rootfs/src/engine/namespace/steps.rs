//! The steps of the namespace dance, in order, each a small function over a [`Syscall`]:
//! new namespaces, the id maps, the hostname and the root filesystem, then (in the new PID
//! namespace) `/proc`, `pivot_root`, no_new_privs and the command. The start paths (the
//! helper's [`super::setup`], the direct start [`super::direct`] and the init they both start,
//! [`super::init`]) put these steps in their order; they share them from here and import
//! nothing of one another but the init's entry.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Gid, Pid, Uid};

use super::channel::{Report, Reporter, SetupError};
use super::config::InitConfig;
use super::mounts;
use super::probe::{self, Step};
use super::spawn::{self, Refusal};
use super::syscall::{Syscall, Target};

/// The namespaces a container gets: user, mount, PID, IPC and UTS.
pub const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWUSER
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS);

/// Signals the monitor and the init pass on to the command.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The signals the monitor and the init wait for synchronously (blocked before the init is
/// created, so that none is lost in between).
pub fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// The caller's ids and the maps that make container root the caller (`0 <id> 1`), written
/// out before the process that writes them is created.
#[derive(Clone, Debug)]
pub struct IdMaps {
    /// The caller's uid.
    pub uid: Uid,
    /// The caller's gid.
    pub gid: Gid,
    uid_map: String,
    gid_map: String,
}

impl IdMaps {
    /// Container root mapped to the calling process's ids.
    pub fn of_caller() -> Self {
        Self::of(Uid::current(), Gid::current())
    }

    /// Container root mapped to `uid` and `gid`.
    pub fn of(uid: Uid, gid: Gid) -> Self {
        Self {
            uid,
            gid,
            uid_map: format!("0 {uid} 1\n"),
            gid_map: format!("0 {gid} 1\n"),
        }
    }
}

/// Unshare every namespace of [`NAMESPACES`] (the helper: it is not cloned into them).
pub fn unshare_namespaces(sys: &impl Syscall) -> Result<(), SetupError> {
    sys.unshare(NAMESPACES).map_err(|e| {
        SetupError::new(
            "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS)",
            e,
        )
    })
}

/// setgroups `deny` (an unprivileged process may write its gid_map only after giving up
/// setgroups(2)), then the uid and gid maps; a failure names its step as the probe does.
pub(crate) fn map_ids(sys: &impl Syscall, maps: &IdMaps) -> Result<(), (Step, Errno)> {
    probe::write_id_maps(sys, maps.uid_map.as_bytes(), maps.gid_map.as_bytes())
}

/// [`map_ids`] with its failure as a set-up error (`writing `0 1000 1` to /proc/self/uid_map`).
pub fn map_ids_or_fail(sys: &impl Syscall, maps: &IdMaps) -> Result<(), SetupError> {
    map_ids(sys, maps)
        .map_err(|(step, errno)| SetupError::new(probe::describe(step, maps.uid, maps.gid), errno))
}

/// In the new namespaces, with the ids mapped: the hostname and the root filesystem. Returns
/// the spec with its sources pinned, and the targets that pin them (keep them until the init
/// has pivoted).
pub fn build_root(
    sys: &impl Syscall,
    config: &InitConfig,
    reporter: &Reporter,
) -> Result<(InitConfig, Vec<Target>), SetupError> {
    sys.sethostname(&config.hostname)
        .map_err(|e| SetupError::new(format!("sethostname({})", config.hostname), e))?;
    let (pinned, pins) = pin_sources(sys, config)?;
    let mut notes = Vec::new();
    let mounted = mounts::prepare_root(sys, &pinned, &mut notes);
    send_notes(reporter, notes);
    mounted?;
    Ok((pinned, pins))
}

/// Open the image root and the volume sources before a tmpfs covers the scratch directory
/// (which may hold them, e.g. `scar run` uses /tmp), and name them by their descriptors from
/// then on: the mounts reach them whatever gets mounted over their paths.
fn pin_sources(
    sys: &impl Syscall,
    config: &InitConfig,
) -> Result<(InitConfig, Vec<Target>), SetupError> {
    let mut pins = Vec::with_capacity(1 + config.mounts.len());
    let mut pin = |path: &Path| {
        let target = sys
            .pin(path)
            .map_err(|e| SetupError::new(format!("opening {}", path.display()), e))?;
        let pinned = target.path.clone();
        pins.push(target);
        Ok::<_, SetupError>(pinned)
    };
    let mut pinned = config.clone();
    pinned.root = pin(&config.root)?;
    for mount in &mut pinned.mounts {
        mount.host = pin(&mount.host)?;
    }
    Ok((pinned, pins))
}

/// In the new PID namespace: `/proc`, `pivot_root` into the new root, no_new_privs.
pub fn enter_root(
    sys: &impl Syscall,
    config: &InitConfig,
    reporter: &Reporter,
) -> Result<(), SetupError> {
    let root = mounts::new_root(config);
    let mut notes = Vec::new();
    let mounted = mounts::mount_proc(sys, &root, &mut notes);
    send_notes(reporter, notes);
    mounted?;
    pivot_into(sys, &root)?;
    sys.set_no_new_privs()
        .map_err(|e| SetupError::new("prctl(PR_SET_NO_NEW_PRIVS)", e))
}

/// `pivot_root(".", ".")` stacks the old root on the new one, so no `put_old` directory is
/// needed in the (possibly read-only) image; the old root is then detached.
fn pivot_into(sys: &impl Syscall, root: &Path) -> Result<(), SetupError> {
    let here = Path::new(".");
    sys.chdir(root)
        .map_err(|e| SetupError::new(format!("chdir({})", root.display()), e))?;
    sys.pivot_root(here, here)
        .map_err(|e| SetupError::new(format!("pivot_root into {}", root.display()), e))?;
    sys.umount(here, MntFlags::MNT_DETACH)
        .map_err(|e| SetupError::new("detaching the old root", e))?;
    sys.chdir(Path::new("/"))
        .map_err(|e| SetupError::new("chdir(/) in the new root", e))
}

/// Prepare the command in the container's root and start it.
pub fn start_command(
    sys: &impl Syscall,
    config: &InitConfig,
) -> Result<Pid, (Option<Pid>, Refusal)> {
    let prepared = spawn::prepare(&config.argv, &config.env, &config.workdir)
        .map_err(|r| (None, r))?
        .with_affinity(config.affinity);
    sys.start_command(&prepared)
}

fn send_notes(reporter: &Reporter, notes: Vec<String>) {
    for message in notes {
        reporter.send(&Report::Note { message });
    }
}

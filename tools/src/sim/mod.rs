//! `scar lambda-sim`: run a command as AWS Lambda runs a custom runtime's `bootstrap`, on this
//! machine. The one Lambda simulator of the project: the end-to-end tests, `scar local
//! --lambda-sim` and `./demo.sh --lambda-sim` all start it.
//!
//! What the command meets (DESIGN.md, "Local fidelity"):
//! - uid and gid 993 (`sbx_user1051`), no supplementary groups, no capabilities (bounding set
//!   empty), `no_new_privs`;
//! - a seccomp filter refusing `prctl`, `ptrace`, `seccomp` and `chroot` with EPERM and
//!   `openat2` with ENOSYS (the host's native ABI and its 32-bit compat ABI; see [`seccomp`]);
//! - user namespaces refused: it runs in a user namespace whose `user.max_user_namespaces` is 0,
//!   so creating another fails with ENOSPC (EPERM on Lambda: callers treat both as "no");
//! - its own mount, PID, IPC and UTS namespaces; the network is the host's (the tests' services
//!   listen on the host's loopback);
//! - a bare, read-only root: a fresh tmpfs holding no C library, no loader and nothing at the
//!   paths images use (`/bin`, `/lib`, `/lib64`, `/usr` are absent), so a path that leaks out
//!   of an image fails instead of finding this host's copy. In it: the layer read-only at
//!   `/opt`, the function's code read-only at `/var/task` (the working directory), a tmpfs
//!   `/tmp` of the given size (mode 1777), a fresh `/proc`, a minimal `/dev` (`null`, `zero`,
//!   `full`, `random`, `urandom`, `tty`, `shm/`, the `fd` links), `/etc` with `passwd` and
//!   `group` naming `sbx_user1051`, copies of this host's `resolv.conf` and `hosts` and of its
//!   CA certificates at Amazon Linux's `/etc/pki/tls/certs/ca-bundle.crt`, a
//!   static busybox at `/sim/bin/` for test commands (not an image path: nothing of an image
//!   finds it by accident), and the caller's explicit binds;
//! - exactly the environment given, nothing inherited. Init is a fork of the launcher, so the
//!   launcher's command line is readable inside as `/proc/1/cmdline` (its environment is not:
//!   init is root of the namespace, the command uid 993): secrets go by name (`--env NAME`),
//!   their values in the launcher's environment.
//!
//! Nothing of this host is visible unless bound explicitly, so a checkout anywhere works (also
//! under `/tmp`: the host's paths are bound before the sandbox's own `/tmp` hides them).
//!
//! # How it is built (needs root on the host)
//! Three roles, each a process:
//! 1. the **launcher** (this process) forks a **map writer**, enters new user, mount, PID, IPC
//!    and UTS namespaces with `unshare(2)`, and lets the map writer, still in the host's user
//!    namespace, write its `uid_map` and `gid_map` (identity over 0..65536: uid 993 inside is
//!    uid 993 outside). It then forks the sandbox's **init** and waits for it; its exit status
//!    is init's.
//! 2. **init** (PID 1 of the new PID namespace; `PR_SET_PDEATHSIG` = SIGKILL, so killing the
//!    launcher kills it and, with it, every process in the namespace) builds the root in
//!    [`root`], forks the command, reaps every orphan, and exits with the command's status as
//!    soon as the command ends (which ends every process it left behind, as Lambda's sandbox
//!    ends with its runtime).
//! 3. the **command** drops the capability bounding set, sets `no_new_privs`, installs the
//!    seccomp filter, drops to uid/gid 993 with no groups and no capabilities, changes to
//!    `/var/task` and executes the program (searched in the given `PATH` when it has no `/`).
//!
//! Exit statuses: the command's (128 + N when signal N ended it); 125 when the sandbox could
//! not be built, 126 when the program could not be executed, 127 when it was not found (as
//! `env` and `docker run` report them).

mod error;
mod plan;
mod process;
mod root;
pub mod seccomp;
mod spec;

pub use self::error::{SETUP_FAILED, SimError};
use self::plan::Plan;
pub use self::plan::is_static_elf;
pub use self::spec::{Bind, DEFAULT_TMP_MB, SANDBOX_UID, Spec, TASK_DIR};

/// Run `spec` in a new sandbox and return its exit status (see the module docs).
pub fn run(spec: &Spec) -> Result<i32, SimError> {
    let plan = Plan::prepare(spec)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(SimError::NotRoot);
    }
    process::launch(&plan)
}

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
//! - exactly the environment given, nothing inherited.
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

mod root;
pub mod seccomp;

use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The uid and gid the function runs as (`sbx_user1051`, as on Lambda).
pub const SANDBOX_UID: u32 = 993;
/// Where the layer is mounted (Lambda unpacks layer zips there).
pub const LAYER_DIR: &str = "/opt";
/// Where the function's code is mounted, and the command's working directory.
pub const TASK_DIR: &str = "/var/task";
/// Where the static busybox and its applets sit (test commands only).
pub const TOOLS_DIR: &str = "/sim/bin";
/// Lambda's default `/tmp` size (the `EphemeralStorage` default).
pub const DEFAULT_TMP_MB: u64 = 512;
/// Where a static busybox is looked for when none is given (Debian's `busybox-static`).
const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Exit status when the sandbox could not be built.
pub const SETUP_FAILED: i32 = 125;
/// Exit status when the program exists but cannot be executed.
pub const EXEC_FAILED: i32 = 126;
/// Exit status when the program is not found.
pub const NOT_FOUND: i32 = 127;

/// A host path shown at a path of the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The file or directory on the host.
    pub host: PathBuf,
    /// Where it appears in the sandbox (absolute).
    pub target: PathBuf,
    /// Writable (not Lambda: a test convenience); read-only otherwise.
    pub writable: bool,
}

impl Bind {
    /// `HOST:PATH` as given on the command line.
    pub fn parse(text: &OsStr, writable: bool) -> Result<Bind, SimError> {
        let bytes = text.as_bytes();
        let colon = bytes
            .iter()
            .rposition(|&b| b == b':')
            .ok_or_else(|| SimError::BindSyntax(text.to_owned()))?;
        let (host, target) = (&bytes[..colon], &bytes[colon + 1..]);
        if host.is_empty() || target.is_empty() {
            return Err(SimError::BindSyntax(text.to_owned()));
        }
        Ok(Bind {
            host: PathBuf::from(OsStr::from_bytes(host)),
            target: PathBuf::from(OsStr::from_bytes(target)),
            writable,
        })
    }
}

/// What to run and what the sandbox holds.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The layer directory, read-only at `/opt` (absent: `/opt` is empty).
    pub layer: Option<PathBuf>,
    /// The function's code, read-only at `/var/task` (absent: `/var/task` is empty).
    pub task: Option<PathBuf>,
    /// Size of `/tmp` in MiB.
    pub tmp_mb: u64,
    /// Further host paths to show, in any order (they are mounted parents first).
    pub binds: Vec<Bind>,
    /// The command's whole environment, `NAME=value` each.
    pub env: Vec<OsString>,
    /// The program and its arguments.
    pub argv: Vec<OsString>,
    /// The static busybox for `/sim/bin` (default: `/bin/busybox`, else `/usr/bin/busybox`).
    pub busybox: Option<PathBuf>,
}

/// Why the sandbox could not be prepared or entered.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Not root on the host.
    #[error(
        "the Lambda simulator needs root: it maps uids 0..65536 into a user namespace and mounts a new root (run it as root, e.g. with sudo)"
    )]
    NotRoot,
    /// Nothing to run.
    #[error("nothing to run: give the command after --")]
    NoCommand,
    /// A bind is not `HOST:PATH`.
    #[error("bind `{}`: use HOST:PATH with an absolute PATH", .0.to_string_lossy())]
    BindSyntax(OsString),
    /// A sandbox path is not absolute, holds `..`, or is reserved.
    #[error(
        "sandbox path {0}: give an absolute path without `..`, other than /, /proc, /dev and /tmp themselves"
    )]
    BadTarget(PathBuf),
    /// A host path to show does not exist.
    #[error("{what} {path}: {source}")]
    HostPath {
        /// Which argument.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        source: std::io::Error,
    },
    /// No usable busybox.
    #[error(
        "no static busybox at {0}: install the Debian package busybox-static (the sandbox's root holds no C library, so a dynamic busybox cannot run there), or pass --busybox PATH"
    )]
    NoBusybox(String),
    /// An environment entry is not `NAME=value`.
    #[error("environment entry `{}` is not NAME=value", .0.to_string_lossy())]
    Env(OsString),
    /// A system call of the launcher failed.
    #[error("{step}: {source}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Run `spec` in a new sandbox and return its exit status (see the module docs).
pub fn run(spec: &Spec) -> Result<i32, SimError> {
    let plan = Plan::prepare(spec)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SimError::NotRoot);
    }
    enter_namespaces()?;
    // SAFETY: the launcher is single-threaded (unshare(CLONE_NEWUSER) has just succeeded, which
    // the kernel refuses to a multi-threaded process), so the child may allocate and run Rust.
    match unsafe { libc::fork() } {
        -1 => Err(step("fork the sandbox's init")),
        0 => init(&plan),
        pid => wait_exit_status(pid).map_err(|source| SimError::Step {
            step: "wait for the sandbox's init",
            source,
        }),
    }
}

/// Everything the sandbox needs, resolved on the host before any namespace is entered.
struct Plan {
    /// The binds, parents first, sources as the host names them (canonical).
    binds: Vec<Bind>,
    /// Whether each bind's source is a directory (else a mount point file is made).
    dirs: Vec<bool>,
    /// `/tmp`'s size.
    tmp_mb: u64,
    /// Files of `/etc`: (path in the sandbox, contents).
    etc: Vec<(&'static str, Vec<u8>)>,
    /// Applet names for `/sim/bin`.
    applets: Vec<OsString>,
    /// The command.
    argv: Vec<CString>,
    /// Its environment.
    env: Vec<CString>,
}

impl Plan {
    fn prepare(spec: &Spec) -> Result<Plan, SimError> {
        if spec.argv.is_empty() {
            return Err(SimError::NoCommand);
        }
        let mut binds = Vec::new();
        let host = |what: &'static str, path: &Path| {
            path.canonicalize().map_err(|source| SimError::HostPath {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        if let Some(layer) = &spec.layer {
            binds.push(Bind {
                host: host("--layer", layer)?,
                target: LAYER_DIR.into(),
                writable: false,
            });
        }
        if let Some(task) = &spec.task {
            binds.push(Bind {
                host: host("--task", task)?,
                target: TASK_DIR.into(),
                writable: false,
            });
        }
        let busybox = find_busybox(spec.busybox.as_deref())?;
        binds.push(Bind {
            host: busybox.clone(),
            target: Path::new(TOOLS_DIR).join("busybox"),
            writable: false,
        });
        for bind in &spec.binds {
            check_target(&bind.target)?;
            binds.push(Bind {
                host: host("bind", &bind.host)?,
                target: bind.target.clone(),
                writable: bind.writable,
            });
        }
        // Parents before children, so a bind inside another lands on top of it.
        binds.sort_by_key(|bind| bind.target.components().count());
        let dirs = binds.iter().map(|bind| bind.host.is_dir()).collect();
        let applets = applets_of(&busybox)?;
        let etc = vec![
            ("/etc/passwd", PASSWD.as_bytes().to_vec()),
            ("/etc/group", GROUP.as_bytes().to_vec()),
            // Followed on the host: Debian's resolv.conf may be a link into /run.
            (
                "/etc/resolv.conf",
                std::fs::read("/etc/resolv.conf").unwrap_or_default(),
            ),
            (
                "/etc/hosts",
                std::fs::read("/etc/hosts").unwrap_or_default(),
            ),
            // Amazon Linux 2023's CA bundle path (data, not a library): TLS to registries and
            // S3 works as on Lambda, while a Debian image's own path finds nothing here.
            (CA_BUNDLE, host_ca_bundle()),
        ];
        for entry in &spec.env {
            if !entry.as_bytes().contains(&b'=') || entry.as_bytes().starts_with(b"=") {
                return Err(SimError::Env(entry.clone()));
            }
        }
        Ok(Plan {
            binds,
            dirs,
            tmp_mb: spec.tmp_mb.max(1),
            etc,
            applets,
            argv: cstrings(&spec.argv)?,
            env: cstrings(&spec.env)?,
        })
    }
}

/// `/etc/passwd` of the sandbox: Lambda's function user.
const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
sbx_user1051:x:993:993::/home/sbx_user1051:/sbin/nologin\n\
nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n";
/// Where Amazon Linux 2023 keeps its CA bundle (also linked from `/etc/ssl/certs/ca-bundle.crt`).
pub const CA_BUNDLE: &str = "/etc/pki/tls/certs/ca-bundle.crt";

/// This host's CA bundle (Debian's path, else Amazon Linux's and Fedora's), or nothing.
fn host_ca_bundle() -> Vec<u8> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .iter()
    .find_map(|path| std::fs::read(path).ok())
    .unwrap_or_default()
}

/// `/etc/group` of the sandbox.
const GROUP: &str = "root:x:0:\nsbx_user1051:x:993:\nnobody:x:65534:\n";

fn cstrings(items: &[OsString]) -> Result<Vec<CString>, SimError> {
    items
        .iter()
        .map(|item| CString::new(item.as_bytes()).map_err(|_| SimError::Env(item.clone())))
        .collect()
}

/// A sandbox path must be absolute, plain, and not one the simulator owns outright.
fn check_target(target: &Path) -> Result<(), SimError> {
    let plain = target.is_absolute()
        && target
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let reserved = ["/", "/proc", "/dev", "/tmp"]
        .iter()
        .any(|r| target == Path::new(r))
        || target.starts_with("/proc")
        || target.starts_with("/dev");
    if plain && !reserved {
        Ok(())
    } else {
        Err(SimError::BadTarget(target.to_path_buf()))
    }
}

/// The static busybox to put at `/sim/bin/busybox`.
fn find_busybox(explicit: Option<&Path>) -> Result<PathBuf, SimError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(path) => vec![path.to_path_buf()],
        None => BUSYBOX_CANDIDATES.iter().map(PathBuf::from).collect(),
    };
    let shown = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    candidates
        .iter()
        .filter_map(|path| path.canonicalize().ok())
        .find(|path| is_static_elf(path))
        .ok_or(SimError::NoBusybox(shown))
}

/// An ELF executable without a program interpreter (`PT_INTERP`): it runs on a bare root.
pub fn is_static_elf(path: &Path) -> bool {
    let mut header = Vec::new();
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // Program headers of the binaries concerned sit in the first few KiB.
    if file.take(64 * 1024).read_to_end(&mut header).is_err() {
        return false;
    }
    elf_has_no_interpreter(&header).unwrap_or(false)
}

/// `Some(true)` for a 64-bit little-endian ELF with no `PT_INTERP` among the program headers
/// in `bytes`; `None` when `bytes` is not such an ELF or is cut short.
fn elf_has_no_interpreter(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for index in 0..phnum {
        if u32_at(phoff + index * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// The applets `busybox --list` names (their links in `/sim/bin`).
fn applets_of(busybox: &Path) -> Result<Vec<OsString>, SimError> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| SimError::HostPath {
            what: "busybox",
            path: busybox.to_path_buf(),
            source,
        })?;
    Ok(out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|name| !name.is_empty() && !name.contains(&b'/') && *name != b"busybox")
        .map(|name| OsStr::from_bytes(name).to_owned())
        .collect())
}

fn step(step: &'static str) -> SimError {
    SimError::Step {
        step,
        source: std::io::Error::last_os_error(),
    }
}

/// The launcher's namespaces: new user, mount, PID, IPC and UTS namespaces, with the identity
/// map over 0..65536 written by a child that stays in the host's user namespace (a process can
/// map more than its own uid only from the parent namespace, with CAP_SETUID there).
fn enter_namespaces() -> Result<(), SimError> {
    let (ready_read, mut ready_write) = pipe()?;
    // SAFETY: getpid has no preconditions.
    let launcher = unsafe { libc::getpid() };
    // SAFETY: the launcher is single-threaded here (scar-full starts no thread before this),
    // so the child may run Rust code.
    let writer = match unsafe { libc::fork() } {
        -1 => return Err(step("fork the uid map writer")),
        0 => {
            drop(ready_write);
            write_maps(launcher, ready_read)
        }
        pid => pid,
    };
    drop(ready_read);
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        let err = step("create the user, mount, PID, IPC and UTS namespaces");
        drop(ready_write);
        let _ = wait_exit_status(writer);
        return Err(err);
    }
    let told = ready_write.write_all(b"1");
    drop(ready_write);
    let status = wait_exit_status(writer).map_err(|source| SimError::Step {
        step: "wait for the uid map writer",
        source,
    })?;
    told.map_err(|source| SimError::Step {
        step: "signal the uid map writer",
        source,
    })?;
    if status != 0 {
        return Err(SimError::Step {
            step: "write the sandbox's uid_map and gid_map",
            source: std::io::Error::other("the map writer failed (its message is above)"),
        });
    }
    Ok(())
}

/// The map writer: once the launcher has its user namespace, map 0..65536 onto the host's
/// same ids, then exit (0 on success).
fn write_maps(launcher: libc::pid_t, ready: std::fs::File) -> ! {
    let mut ready = ready;
    let mut byte = [0u8; 1];
    // EOF: the launcher failed and reports it itself.
    if !matches!(ready.read(&mut byte), Ok(1)) {
        exit_now(1);
    }
    for map in ["uid_map", "gid_map"] {
        let path = format!("/proc/{launcher}/{map}");
        if let Err(err) = std::fs::write(&path, b"0 0 65536\n") {
            eprintln!("scar lambda-sim: cannot write {path}: {err}");
            exit_now(1);
        }
    }
    exit_now(0)
}

/// PID 1 of the sandbox: build the root, start the command, reap, exit with its status.
fn init(plan: &Plan) -> ! {
    // SAFETY: prctl with integer arguments only; the launcher is host code, not Lambda code.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if let Err(err) = root::build(plan) {
        eprintln!("scar lambda-sim: cannot build the sandbox: {err}");
        exit_now(SETUP_FAILED);
    }
    // SAFETY: init is single-threaded (a fork of a single-threaded launcher).
    let command = match unsafe { libc::fork() } {
        -1 => {
            eprintln!(
                "scar lambda-sim: cannot fork the command: {}",
                std::io::Error::last_os_error()
            );
            exit_now(SETUP_FAILED);
        }
        0 => exec_command(plan),
        pid => pid,
    };
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a valid local.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == command {
            // Leaving PID 1 ends every process still in the namespace.
            exit_now(status_code(status));
        }
        if pid == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            exit_now(SETUP_FAILED);
        }
    }
}

/// The command's process: Lambda's restrictions, then the program.
fn exec_command(plan: &Plan) -> ! {
    if let Err(err) = restrict() {
        eprintln!("scar lambda-sim: cannot apply Lambda's restrictions: {err}");
        exit_now(SETUP_FAILED);
    }
    let (path_dirs, direct) = search_list(plan);
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut last = libc::ENOENT;
    for candidate in direct.into_iter().chain(path_dirs) {
        // SAFETY: NUL-terminated strings and null-terminated pointer arrays that outlive the call.
        unsafe { libc::execve(candidate.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if err != libc::ENOENT && err != libc::ENOTDIR {
            last = err;
        }
    }
    let program = plan.argv[0].to_string_lossy();
    if last == libc::ENOENT {
        eprintln!(
            "scar lambda-sim: {program}: not found in the sandbox (its root holds only /opt, /var/task, /tmp, /sim/bin and the binds given)"
        );
        exit_now(NOT_FOUND);
    }
    eprintln!(
        "scar lambda-sim: cannot execute {program}: {}",
        std::io::Error::from_raw_os_error(last)
    );
    exit_now(EXEC_FAILED)
}

/// Where to look for the program: itself when it names a path, else each directory of the
/// environment's `PATH` (none: not found).
fn search_list(plan: &Plan) -> (Vec<CString>, Vec<CString>) {
    let program = plan.argv[0].as_bytes();
    if program.contains(&b'/') {
        return (Vec::new(), vec![plan.argv[0].clone()]);
    }
    let path = plan
        .env
        .iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"");
    let dirs = path
        .split(|&b| b == b':')
        .filter(|dir| !dir.is_empty())
        .filter_map(|dir| {
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program);
            CString::new(full).ok()
        })
        .collect();
    (dirs, Vec::new())
}

/// Capabilities, no_new_privs, seccomp, uid and gid, working directory: in that order, since
/// the filter refuses the `prctl` the first two need, and the uid change ends the
/// capabilities the others need.
fn restrict() -> std::io::Result<()> {
    let context = |what: &str| {
        let err = std::io::Error::last_os_error();
        std::io::Error::new(err.kind(), format!("{what}: {err}"))
    };
    // Descriptors beyond stdio do not reach the command.
    // SAFETY: close_range with integer arguments; on a kernel without it, nothing happens.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; EINVAL past the last capability ends the loop.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(context("drop the capability bounding set"));
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(context("set no_new_privs"));
    }
    seccomp::install().map_err(|err| std::io::Error::new(err.kind(), format!("seccomp: {err}")))?;
    let id = SANDBOX_UID;
    // SAFETY: setgroups with an empty list; setresgid/setresuid with plain ids.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(context("clear the supplementary groups"));
        }
        if libc::setresgid(id, id, id) != 0 {
            return Err(context("set gid 993"));
        }
        if libc::setresuid(id, id, id) != 0 {
            return Err(context("set uid 993"));
        }
    }
    clear_inheritable_capabilities().map_err(|_| context("clear the capabilities"))?;
    let task = CString::new(TASK_DIR).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::chdir(task.as_ptr()) } != 0 {
        return Err(context("change to /var/task"));
    }
    Ok(())
}

/// The uid change cleared the permitted, effective and ambient sets; the inheritable set is
/// left as it was, so it is cleared here.
fn clear_inheritable_capabilities() -> std::io::Result<()> {
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit data words per set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a version 3 header and two data words, both valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> Result<(std::fs::File, std::fs::File), SimError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(step("create a pipe"));
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    debug_assert!(read.as_raw_fd() >= 0);
    Ok((read.into(), write.into()))
}

/// Wait for `pid` and turn its end into an exit status (128 + N for signal N).
fn wait_exit_status(pid: libc::pid_t) -> std::io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a valid local.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status_code(status));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

fn status_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        SETUP_FAILED
    }
}

/// Leave a forked process without running the parent's exit handlers or flushing its buffers.
fn exit_now(code: i32) -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_splits_at_its_last_colon_and_needs_both_sides() {
        let bind = Bind::parse(OsStr::new("/a:b/c:/x/y"), false).unwrap();
        assert_eq!(bind.host, Path::new("/a:b/c"));
        assert_eq!(bind.target, Path::new("/x/y"));
        assert!(Bind::parse(OsStr::new("/a"), false).is_err());
        assert!(Bind::parse(OsStr::new(":/a"), false).is_err());
        assert!(Bind::parse(OsStr::new("/a:"), true).is_err());
    }

    #[test]
    fn sandbox_paths_must_be_plain_absolute_and_not_the_simulators_own() {
        assert!(check_target(Path::new("/images/debian")).is_ok());
        assert!(check_target(Path::new("/tmp/cache")).is_ok());
        for bad in [
            "relative",
            "/a/../b",
            "/",
            "/proc",
            "/proc/x",
            "/dev/null",
            "/tmp",
        ] {
            assert!(check_target(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn busybox_static_is_told_apart_from_a_dynamic_program() {
        let this = std::env::current_exe().unwrap();
        // The test binary is linked like the host's programs: dynamic for the gnu target.
        assert_eq!(
            is_static_elf(&this),
            cfg!(target_env = "musl"),
            "{}",
            this.display()
        );
        assert!(!is_static_elf(Path::new("/nonexistent")));
        assert_eq!(elf_has_no_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn the_program_is_searched_in_the_given_path_only_when_it_names_no_directory() {
        let plan = |argv: &str, env: &[&str]| Plan {
            binds: Vec::new(),
            dirs: Vec::new(),
            tmp_mb: 1,
            etc: Vec::new(),
            applets: Vec::new(),
            argv: vec![CString::new(argv).unwrap()],
            env: env.iter().map(|e| CString::new(*e).unwrap()).collect(),
        };
        let (dirs, direct) = search_list(&plan("sh", &["A=1", "PATH=/sim/bin::/usr/bin"]));
        assert!(direct.is_empty());
        assert_eq!(dirs, [c"/sim/bin/sh".to_owned(), c"/usr/bin/sh".to_owned()]);
        let (dirs, direct) = search_list(&plan("/opt/bootstrap", &["PATH=/x"]));
        assert!(dirs.is_empty());
        assert_eq!(direct, [c"/opt/bootstrap".to_owned()]);
        let (dirs, direct) = search_list(&plan("sh", &[]));
        assert!(dirs.is_empty() && direct.is_empty());
    }
}

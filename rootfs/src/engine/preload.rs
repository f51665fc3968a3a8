//! The preload engine: the image's own dynamic loader plus the path-mapping `LD_PRELOAD`
//! library, for hosts that refuse user namespaces (AWS Lambda).
//!
//! A container here is an ordinary process tree of the calling user. Its first program is started
//! as `<image loader> --library-path <image dirs> --inhibit-cache <program> <args>` with
//! `libscar_preload` (built from `rootfs/preload/`) in `LD_PRELOAD`; the library maps every
//! absolute path the program names into the image and starts child programs the same way.
//!
//! Choices and limits (documented for users in the README):
//! - The cached image stays pristine: a write into the image fails with `EROFS`, as on a
//!   read-only root. `/tmp`, `/proc`, `/dev`, `/sys` and the request's directories are the host's.
//! - A statically linked program runs directly and sees host paths (warned).
//! - It is not a security boundary: raw system calls bypass the library; there is no PID
//!   namespace, so the engine makes the caller non-dumpable to keep its `/proc/<pid>/environ`
//!   (AWS credentials) unreadable to the container.

pub mod elf;
pub mod ldconf;
pub mod resolve;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use self::elf::Program;
use self::ldconf::Flavor;
use self::resolve::resolve;
use super::process::wait_or_stop;
use super::{Container, ContainerHandle, Engine, EngineError, EngineKind, Outcome, RunSpec, Stdio};

/// Override of the library directory, read only by tests and `scar` (the bootstrap passes the
/// directory it found next to itself).
pub const PRELOAD_DIR_ENV: &str = "SCAR_PRELOAD_DIR";
/// The glibc build (glibc 2.17 and newer).
pub const LIB_GNU: &str = "libscar_preload-gnu.so";
/// The musl build.
pub const LIB_MUSL: &str = "libscar_preload-musl.so";
/// `#!` nesting the engine follows, as Linux.
const MAX_SCRIPT_DEPTH: usize = 4;
/// `PATH` when the container environment has none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host directories the container sees as they are.
const PASSTHROUGH: [&str; 4] = ["/proc", "/dev", "/sys", "/tmp"];

/// The preload engine; knows where its libraries are.
#[derive(Clone, Debug)]
pub struct PreloadEngine {
    dir: PathBuf,
}

impl PreloadEngine {
    /// The engine with its libraries in `dir` (at least [`LIB_GNU`] must be there).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let dir = dir.into();
        let gnu = dir.join(LIB_GNU);
        if !gnu.is_file() {
            return Err(EngineError::PreloadUnavailable(format!(
                "{} is missing: build it with `rootfs/preload/build.sh <arch> {}` or ship it next to the binary in preload/",
                gnu.display(),
                dir.display()
            )));
        }
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Ok(Self { dir })
    }

    /// Find the libraries next to the running executable: `<exe dir>/preload/`, then
    /// `<exe dir>/../lib/scar/preload/` (an installed `scar`).
    pub fn locate() -> Result<Self, EngineError> {
        Self::locate_with(None)
    }

    /// [`locate`](Self::locate), but `dir` first when given (tests and `scar` pass
    /// [`PRELOAD_DIR_ENV`]; the bootstrap passes its configuration).
    pub fn locate_with(dir: Option<&Path>) -> Result<Self, EngineError> {
        if let Some(dir) = dir {
            return Self::new(dir);
        }
        let exe = std::env::current_exe().map_err(|e| {
            EngineError::PreloadUnavailable(format!("cannot find the running executable: {e}"))
        })?;
        let exe_dir = exe.parent().unwrap_or(Path::new("/"));
        let candidates = [exe_dir.join("preload"), exe_dir.join("../lib/scar/preload")];
        for c in &candidates {
            if c.join(LIB_GNU).is_file() {
                return Self::new(c);
            }
        }
        Err(EngineError::PreloadUnavailable(format!(
            "{LIB_GNU} was found in neither {} nor {}: the layer and `scar` ship it there; set {PRELOAD_DIR_ENV} when running from a build tree",
            candidates[0].display(),
            candidates[1].display()
        )))
    }

    /// The directory holding the libraries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Work out how to start `spec` (exposed for tests and `scar run --dry-run` style output).
    pub fn plan(&self, spec: &RunSpec) -> Result<Plan, EngineError> {
        plan(self, spec)
    }
}

/// How a container's first process is started.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Host file to execute (the image's loader, or a static program).
    pub program: PathBuf,
    /// Its full argument vector, `argv[0]` included.
    pub args: Vec<OsString>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Host working directory.
    pub cwd: PathBuf,
    /// The program is static: it runs without the library and sees host paths.
    pub is_static: bool,
}

fn exec_err(command: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Exec {
        command: command.to_string(),
        reason: reason.into(),
    }
}

fn env_get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An executable regular file at this host path.
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The container's view: the image root plus the host directories bound in.
struct View<'a> {
    root: &'a Path,
    mounts: &'a [super::Mount],
}

impl View<'_> {
    /// Host path of a container path: a bound directory (the request's, a volume, `/tmp`,
    /// `/proc`…) is the host's, anything else is resolved inside the image.
    fn host(&self, cpath: &str) -> std::io::Result<PathBuf> {
        let mut norm = PathBuf::from("/");
        for c in Path::new(cpath).components() {
            match c {
                std::path::Component::Normal(n) => norm.push(n),
                std::path::Component::ParentDir => {
                    norm.pop();
                }
                _ => {}
            }
        }
        let bound = self
            .mounts
            .iter()
            .filter(|m| norm.starts_with(&m.container))
            .max_by_key(|m| m.container.as_os_str().len());
        if let Some(m) = bound {
            let rest = norm.strip_prefix(&m.container).unwrap_or(Path::new(""));
            return Ok(if rest.as_os_str().is_empty() {
                m.host.clone()
            } else {
                m.host.join(rest)
            });
        }
        if PASSTHROUGH.iter().any(|p| norm.starts_with(p)) {
            return Ok(norm);
        }
        resolve(self.root, &norm)
    }
}

/// The container path of `argv0` (searched in the image's `PATH` when it has no `/`) and its
/// host file.
fn find_program(
    view: &View,
    argv0: &str,
    workdir: &str,
    path_var: &str,
) -> Result<(String, PathBuf), EngineError> {
    if argv0.contains('/') {
        let cpath = if argv0.starts_with('/') {
            argv0.to_string()
        } else {
            format!("{workdir}/{argv0}")
        };
        let host = view
            .host(&cpath)
            .map_err(|e| exec_err(argv0, e.to_string()))?;
        if !host.exists() {
            return Err(exec_err(
                argv0,
                format!("{cpath} does not exist in the image"),
            ));
        }
        if !is_executable(&host) {
            return Err(exec_err(
                argv0,
                format!("{cpath} in the image is not an executable file"),
            ));
        }
        return Ok((cpath, host));
    }
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let cpath = format!("{}/{argv0}", dir.trim_end_matches('/'));
        if let Ok(host) = view.host(&cpath)
            && is_executable(&host)
        {
            return Ok((cpath, host));
        }
    }
    Err(exec_err(
        argv0,
        format!("not found in the image's PATH ({path_var})"),
    ))
}

fn plan(engine: &PreloadEngine, spec: &RunSpec) -> Result<Plan, EngineError> {
    let setup = |step: String| move |source| EngineError::Setup { step, source };
    let root = std::fs::canonicalize(&spec.root).map_err(setup(format!(
        "open the image root {}",
        spec.root.display()
    )))?;
    if root == Path::new("/") {
        return Err(EngineError::PreloadUnavailable(
            "the image root is the host's /: nothing to map".into(),
        ));
    }
    let argv0 = spec
        .argv
        .first()
        .ok_or_else(|| exec_err("", "the command is empty"))?;
    let path_var = env_get(&spec.env, "PATH").unwrap_or(DEFAULT_PATH);
    let workdir = if spec.workdir.is_empty() {
        "/"
    } else {
        spec.workdir.as_str()
    };
    let view = View {
        root: &root,
        mounts: &spec.mounts,
    };
    let (mut cpath, mut host) = find_program(&view, argv0, workdir, path_var)?;

    // Follow `#!` lines: each level puts its interpreter (and argument) in front.
    let mut prefix: Vec<String> = Vec::new();
    let mut shown_argv0 = argv0.clone();
    let mut depth = 0;
    let kind = loop {
        let kind = elf::inspect(&host).map_err(|e| exec_err(argv0, e.to_string()))?;
        let Program::Script {
            interpreter,
            argument,
        } = kind
        else {
            break kind;
        };
        depth += 1;
        if depth > MAX_SCRIPT_DEPTH {
            return Err(exec_err(argv0, "more than 4 levels of #! interpreters"));
        }
        let mut level = Vec::new();
        level.extend(argument);
        level.push(cpath.clone());
        prefix.splice(0..0, level);
        shown_argv0 = interpreter.clone();
        let found = find_program(&view, &interpreter, workdir, path_var)
            .map_err(|e| exec_err(argv0, format!("its #! interpreter: {e}")))?;
        (cpath, host) = found;
    };
    let mut rest: Vec<OsString> = prefix.into_iter().map(OsString::from).collect();
    rest.extend(spec.argv.iter().skip(1).map(OsString::from));

    let host_workdir = match view.host(workdir) {
        Ok(p) if p.is_dir() => p,
        _ => {
            tracing::warn!(
                workdir,
                "the working directory does not exist in the image; using /"
            );
            root.clone()
        }
    };
    if let Some(user) = spec
        .user
        .as_deref()
        .filter(|u| !matches!(*u, "" | "root" | "0" | "0:0"))
    {
        tracing::warn!(
            user,
            "the preload engine runs as the calling user; the image's User is ignored"
        );
    }

    let interpreter = match kind {
        Program::Dynamic { interpreter } => interpreter,
        Program::Static => {
            tracing::warn!(
                program = %cpath,
                "statically linked: it runs without the preload library and sees the host's paths, not the image's"
            );
            let mut args = vec![OsString::from(&shown_argv0)];
            args.extend(rest);
            // No library will read a configuration: the environment is the container's alone.
            let env = spec.env.clone();
            return Ok(Plan {
                program: host,
                args,
                env,
                cwd: host_workdir,
                is_static: true,
            });
        }
        Program::Foreign { machine, bits } => {
            return Err(exec_err(
                argv0,
                format!(
                    "{cpath} is a {bits}-bit ELF for machine {machine}, not for this host; use an image of this architecture"
                ),
            ));
        }
        Program::Script { .. } => unreachable!("scripts were followed above"),
    };
    let flavor = Flavor::of_loader(&interpreter);
    let loader = ldconf::loader(&root, &interpreter).ok_or_else(|| {
        exec_err(
            argv0,
            format!("{cpath} needs the loader {interpreter}, which the image does not have"),
        )
    })?;
    let dirs = ldconf::search_dirs(&root, flavor, env_get(&spec.env, "LD_LIBRARY_PATH"));
    let library_path = ldconf::library_path(&root, &dirs);
    let env = container_env(
        engine,
        spec,
        &root,
        flavor,
        &library_path,
        &cpath,
        &shown_argv0,
    )?;

    let mut args: Vec<OsString> = vec![loader.clone().into()];
    if !library_path.is_empty() {
        args.push("--library-path".into());
        args.push(library_path.into());
    }
    if flavor == Flavor::Gnu {
        // The host's /etc/ld.so.cache names host libraries.
        args.push("--inhibit-cache".into());
    }
    args.push(host.into());
    args.extend(rest);
    Ok(Plan {
        program: loader,
        args,
        env,
        cwd: host_workdir,
        is_static: false,
    })
}

/// The container environment plus the library's configuration (see `rootfs/preload/src/config.rs`).
fn container_env(
    engine: &PreloadEngine,
    spec: &RunSpec,
    root: &Path,
    flavor: Flavor,
    library_path: &str,
    exe: &str,
    argv0: &str,
) -> Result<Vec<(String, String)>, EngineError> {
    let lib_name = match flavor {
        Flavor::Gnu => LIB_GNU,
        Flavor::Musl => LIB_MUSL,
    };
    let lib = engine.dir.join(lib_name);
    if !lib.is_file() {
        return Err(EngineError::PreloadUnavailable(format!(
            "the image uses {} but {} is missing (musl images need the x86_64 musl build from rootfs/preload/build.sh)",
            flavor.as_str(),
            lib.display()
        )));
    }
    let mut binds = String::new();
    for p in PASSTHROUGH {
        binds.push_str(&format!("rw\t{p}\t{p}\n"));
    }
    for m in &spec.mounts {
        let host = std::fs::canonicalize(&m.host).unwrap_or_else(|_| m.host.clone());
        let mode = if m.read_only { "ro" } else { "rw" };
        binds.push_str(&format!(
            "{mode}\t{}\t{}\n",
            m.container.display(),
            host.display()
        ));
    }
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter(|(k, _)| k != "LD_PRELOAD" && !k.starts_with("SCAR_PRELOAD_"))
        .cloned()
        .collect();
    let lib = lib.to_string_lossy().into_owned();
    env.extend([
        (
            "SCAR_PRELOAD_ROOT".to_string(),
            root.to_string_lossy().into_owned(),
        ),
        ("SCAR_PRELOAD_BINDS".to_string(), binds),
        (
            "SCAR_PRELOAD_LIBRARY_PATH".to_string(),
            library_path.to_string(),
        ),
        ("SCAR_PRELOAD_LIB".to_string(), lib.clone()),
        (
            "SCAR_PRELOAD_FLAVOR".to_string(),
            flavor.as_str().to_string(),
        ),
        ("SCAR_PRELOAD_EXE".to_string(), exe.to_string()),
        ("SCAR_PRELOAD_ARGV0".to_string(), argv0.to_string()),
        ("LD_PRELOAD".to_string(), lib),
    ]);
    Ok(env)
}

fn stdio(s: Stdio) -> std::process::Stdio {
    match s {
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Piped => std::process::Stdio::piped(),
    }
}

impl Engine for PreloadEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Preload
    }

    fn spawn(&self, spec: &RunSpec) -> Result<Container, EngineError> {
        let plan = plan(self, spec)?;
        // Without a PID namespace the container sees our /proc/<pid>; non-dumpable makes
        // /proc/<pid>/environ (AWS credentials) root-owned and unreadable to it.
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes a flag of this process.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            tracing::warn!(err = %std::io::Error::last_os_error(), "cannot make this process non-dumpable");
        }
        let mut cmd = Command::new(&plan.program);
        if let Some((first, rest)) = plan.args.split_first() {
            cmd.arg0(first).args(rest);
        }
        cmd.env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&plan.cwd)
            .process_group(0)
            .stdin(stdio(spec.stdin))
            .stdout(stdio(spec.stdout))
            .stderr(stdio(spec.stderr));
        // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // The container dies with its supervisor rather than outliving it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| EngineError::Exec {
            command: spec.argv.first().cloned().unwrap_or_default(),
            reason: format!("starting {}: {e}", plan.program.display()),
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        tracing::debug!(pid = pid.as_raw(), program = %plan.program.display(), "preload container started");
        Ok(Container {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            handle: Box::new(PreloadHandle { pid, reaped: false }),
        })
    }
}

/// The container's process group (its leader is the first program).
struct PreloadHandle {
    pid: Pid,
    reaped: bool,
}

impl PreloadHandle {
    /// Stop what is left of the group: background jobs must not outlive the container.
    fn sweep(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
    }
}

impl ContainerHandle for PreloadHandle {
    fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    fn wait(&mut self, deadline: Option<Instant>, grace: Duration) -> Result<Outcome, EngineError> {
        let pid = self.pid;
        let outcome = wait_or_stop(pid, deadline, grace, |sig| {
            let _ = killpg(pid, sig);
        })?;
        self.reaped = true;
        self.sweep();
        Ok(outcome)
    }
}

impl Drop for PreloadHandle {
    fn drop(&mut self) {
        if !self.reaped {
            self.sweep();
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}

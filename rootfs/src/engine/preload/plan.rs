//! How a container's first process is started: find the program in the image, follow `#!`
//! lines, read its loader from `PT_INTERP`, and build the loader's command line and the
//! environment that configures the library.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::elf::{self, Program};
use super::ldconf::{self, Flavor};
use super::policy::StaticPolicy;
use super::resolve::resolve;
use crate::engine::types::{EngineError, RunSpec};

/// The glibc build of the preload library (glibc 2.17 and newer).
pub const LIB_GNU: &str = "libscar_preload-gnu.so";
/// The musl build of the preload library.
pub const LIB_MUSL: &str = "libscar_preload-musl.so";
/// The glibc loader's audit module (`rootfs/preload/audit`), next to the preload libraries.
pub const LIB_AUDIT: &str = "libscar_audit.so";
/// `#!` nesting the engine follows, as Linux.
const MAX_SCRIPT_DEPTH: usize = 4;
/// `PATH` when the container environment has none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host directories the container sees as they are.
const PASSTHROUGH: [&str; 4] = ["/proc", "/dev", "/sys", "/tmp"];

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
    /// The static program's path in the image, reported as unconfined.
    pub unconfined: Option<String>,
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
    mounts: &'a [crate::engine::types::Mount],
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

/// `dir` holds the preload libraries; `static_policy` decides a static first program.
pub(super) fn plan(
    dir: &Path,
    static_policy: StaticPolicy,
    spec: &RunSpec,
) -> Result<Plan, EngineError> {
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
            if static_policy == StaticPolicy::Refuse {
                return Err(EngineError::StaticRefused { program: cpath });
            }
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
                unconfined: Some(cpath),
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
    let mut dirs = ldconf::search_dirs(&root, flavor, env_get(&spec.env, "LD_LIBRARY_PATH"));
    if flavor == Flavor::Musl {
        // musl would look for RUNPATH directories on the host (glibc's are mapped by the audit
        // module): the image's, appended to its --library-path.
        let runpaths = ldconf::runpath_dirs(&root, &host, &dirs);
        dirs.extend(runpaths);
    }
    let library_path = ldconf::library_path(&root, &dirs);
    let env = container_env(
        dir,
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
        unconfined: None,
    })
}

/// The container environment plus the library's configuration (see `rootfs/preload/src/config.rs`).
fn container_env(
    dir: &Path,
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
    let lib = dir.join(lib_name);
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
        // The caller's own SCAR_PRELOAD_* would fight ours; NO_OPENAT2 (tests) is a request.
        .filter(|(k, _)| {
            k != "LD_PRELOAD"
                && k != "LD_AUDIT"
                && (!k.starts_with("SCAR_PRELOAD_") || k == "SCAR_PRELOAD_NO_OPENAT2")
        })
        .cloned()
        .collect();
    let lib = lib.to_string_lossy().into_owned();
    // libc's own data files (gconv, locales, zoneinfo): set here, and re-added by the exec hook
    // for a child whose environment lost them (`env -i`).
    let libc_env = ldconf::libc_env(root, flavor, &env);
    let libc_lines: String = libc_env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    env.extend(libc_env);
    if !libc_lines.is_empty() {
        env.push(("SCAR_PRELOAD_LIBC_ENV".to_string(), libc_lines));
    }
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
        (
            "SCAR_PRELOAD_PROTECT".to_string(),
            spec.protected_dirs(root, &PASSTHROUGH),
        ),
        ("LD_PRELOAD".to_string(), lib),
    ]);
    if flavor == Flavor::Gnu {
        // The loader opens libraries itself (RUNPATH, `$ORIGIN`, dlopen from libc...), past
        // every LD_PRELOAD hook: its audit interface maps each candidate into the image.
        let audit = dir.join(LIB_AUDIT);
        if !audit.is_file() {
            return Err(EngineError::PreloadUnavailable(format!(
                "{} is missing: glibc images need the loader's audit module; build it with `rootfs/preload/build.sh <arch> {}`",
                audit.display(),
                dir.display()
            )));
        }
        let audit = audit.to_string_lossy().into_owned();
        env.extend([
            ("SCAR_PRELOAD_AUDIT".to_string(), audit.clone()),
            ("LD_AUDIT".to_string(), audit),
        ]);
    }
    Ok(env)
}

//! The simulated AWS Lambda of the tests, and the images they run.
//!
//! The simulation is `scar lambda-sim` (tools/src/sim: the same code `scar local --lambda-sim`
//! and `./demo.sh --lambda-sim` run): uid 993 without capabilities, seccomp refusing `prctl`,
//! `ptrace`, `seccomp`, `chroot` (EPERM) and `openat2` (ENOSYS), user namespaces refused, a
//! bare read-only root (no C library, no loader, no `/bin/sh`) holding the layer at `/opt`,
//! the function at `/var/task`, a tmpfs `/tmp`, a static busybox at `/sim/bin` and the binds a
//! test asks for. [`LambdaSim`] builds its command line; the simulator binary is the static
//! `scar-full` that `./build.sh` makes (see [`simulator`]), which `test.sh` builds before the
//! tests. Needs root: without it the simulator says so and the test fails.
//!
//! Images (cached under `/var/tmp/scar-test-images`, built in a temporary directory and renamed
//! into place): [`dynamic_image`] from the host's own loader, libc, coreutils and perl;
//! [`musl_image`] from `musl-gcc`; [`debian_image`] from `debootstrap`. A missing tool is a
//! test failure that names the package to install.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// Where test images are cached between runs.
pub const IMAGE_CACHE: &str = "/var/tmp/scar-test-images";
/// Bump when the dynamic or musl image recipe changes.
const RECIPE: u32 = 3;
/// Unprivileged uid and gid of the simulated function (Lambda's is 993 as well).
pub const SANDBOX_UID: u32 = 993;

/// The repository root (this crate is `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The preload libraries for this machine, as `./build.sh` made them (see
/// [`crate::dist::preload_dir`]).
pub fn preload_libs() -> PathBuf {
    crate::dist::preload_dir(host_arch())
}

/// Serializes image builds inside one test process.
static BUILD: Mutex<()> = Mutex::new(());

/// Build `name` under [`IMAGE_CACHE`] with `recipe` unless it is there already.
pub(crate) fn cached(name: &str, recipe: impl FnOnce(&Path)) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(IMAGE_CACHE).join(name);
    if dir.is_dir() {
        return dir;
    }
    std::fs::create_dir_all(IMAGE_CACHE).expect("create the image cache");
    let tmp = Path::new(IMAGE_CACHE).join(format!("{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("create a build directory");
    recipe(&tmp);
    // Readable by the sandbox's unprivileged user, which copies the image into its /tmp.
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp));
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another test process won the race: use its copy.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => panic!("rename {} to {}: {e}", tmp.display(), dir.display()),
    }
    dir
}

pub(crate) fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Host path of a command.
fn which(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && p.starts_with('/')).then(|| PathBuf::from(p))
}

/// The shared objects (and loader) a dynamic host binary needs, from `ldd`.
fn libraries_of(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

fn copy_file(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// The C program the images carry: reads data files by absolute path, lists a directory, reads
/// `/proc/self/exe`, tries to write into the image and, with `spawn`, starts itself again
/// through `posix_spawnp`; with `system`, runs a shell through libc's `system()`.
pub const PROBE_C: &str = r#"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    char buf[4096];
    printf("argv0=%s\n", argv[0]);
    FILE *f = fopen("/usr/share/scar-test/data.txt", "r");
    if (!f) { printf("fopen failed: %s\n", strerror(errno)); return 1; }
    if (fgets(buf, sizeof buf, f)) printf("data=%s", buf);
    fclose(f);
    struct stat st;
    if (stat("/etc/os-release", &st) == 0) printf("os-release-size=%lld\n", (long long)st.st_size);
    DIR *d = opendir("/usr/share/scar-test");
    int n = 0;
    if (d) { while (readdir(d)) n++; closedir(d); }
    printf("entries=%d\n", n);
    ssize_t k = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (k > 0) { buf[k] = 0; printf("exe=%s\n", buf); }
    char *rp = realpath("/usr/share/../share/scar-test/./data.txt", NULL);
    printf("realpath=%s\n", rp ? rp : strerror(errno));
    int fd = open("/etc/probe-write", O_WRONLY | O_CREAT, 0644);
    printf("write-image=%s\n", fd < 0 ? strerror(errno) : "allowed");
    if (argc > 1 && strcmp(argv[1], "spawn") == 0) {
        pid_t pid;
        char *args[] = {"probe", "child", NULL};
        fflush(stdout);
        int r = posix_spawnp(&pid, "probe", NULL, NULL, args, environ);
        if (r) { printf("spawn failed: %s\n", strerror(r)); return 1; }
        int status;
        waitpid(pid, &status, 0);
        printf("child-status=%d\n", WEXITSTATUS(status));
    }
    if (argc > 1 && strcmp(argv[1], "child") == 0) printf("i am the child\n");
    if (argc > 1 && strcmp(argv[1], "system") == 0) {
        /* libc runs /bin/sh with its internal execve, behind the library's back. */
        fflush(stdout);
        int r = system("echo \"shell-exe=$(readlink /proc/$$/exe)\"");
        printf("system=%d\n", r);
    }
    return 0;
}
"#;

/// Compile [`PROBE_C`] with `compiler` into `out`.
fn compile_probe(compiler: &str, out: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("probe.c");
    std::fs::write(&src, PROBE_C).expect("write probe.c");
    run_ok(
        Command::new(compiler)
            .args(["-O2", "-o"])
            .arg(out)
            .arg(&src),
    );
}

pub(crate) fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// Commands copied from the host into the dynamic image.
const DYNAMIC_TOOLS: &[&str] = &[
    "bash", "dash", "cat", "ls", "echo", "env", "wc", "find", "grep", "sed", "head", "tail",
    "sort", "tr", "mkdir", "touch", "rm", "readlink", "realpath", "stat", "pwd", "id", "sleep",
    "true", "false", "cp", "mv", "ln", "xargs", "basename", "dirname", "perl", "uname", "printf",
    "seq", "cut", "tee", "chmod", "mawk", "test",
];

/// A merged-/usr image made of the host's loader, libc and tools: `/lib` → `usr/lib`, and the
/// loader reached through an absolute symlink (`/lib64/ld-linux-x86-64.so.2` →
/// `/lib/<triplet>/…`), as in Debian, plus `/usr/bin/awk` → `/etc/alternatives/awk` →
/// `/usr/bin/mawk` (absolute links that must resolve inside the image).
pub fn dynamic_image() -> PathBuf {
    cached(&format!("dynamic-{RECIPE}"), |root| {
        for d in [
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "etc/alternatives",
            "tmp",
            "proc",
            "dev",
            "sys",
            "root",
            "lib64",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        symlink("usr/bin", root.join("bin")).expect("symlink");
        symlink("usr/sbin", root.join("sbin")).expect("symlink");
        symlink("usr/lib", root.join("lib")).expect("symlink");
        let mut libs = Vec::new();
        for tool in DYNAMIC_TOOLS {
            let Some(host) = which(tool) else { continue };
            let real = std::fs::canonicalize(&host).expect("canonicalize");
            copy_file(&real, &root.join("usr/bin").join(tool));
            libs.extend(libraries_of(&real));
        }
        let probe = root.join("usr/bin/probe");
        compile_probe("gcc", &probe);
        libs.extend(libraries_of(&probe));
        let companions = crate::images::glibc_companions(&libs);
        libs.extend(companions);
        libs.sort();
        libs.dedup();
        for lib in &libs {
            let real = std::fs::canonicalize(lib).expect("canonicalize");
            // Host /lib/x86_64-linux-gnu/x.so → image /usr/lib/x86_64-linux-gnu/x.so.
            let rel = real
                .strip_prefix("/usr")
                .or_else(|_| real.strip_prefix("/"))
                .expect("absolute");
            let dest = root
                .join("usr")
                .join(rel.parent().expect("dir"))
                .join(lib.file_name().expect("name"));
            if !dest.exists() {
                copy_file(&real, &dest);
            }
            // The loader is named by an absolute symlink, as in Debian.
            if lib.starts_with("/lib64") {
                let name = lib.file_name().expect("name");
                let target = Path::new("/").join(rel.parent().expect("dir")).join(name);
                let _ = symlink(target, root.join("lib64").join(name));
            }
        }
        let perl_base = Path::new("/usr/lib")
            .join(format!("{}-linux-gnu", std::env::consts::ARCH))
            .join("perl-base");
        if perl_base.is_dir() {
            run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(&perl_base)
                    .arg(root.join(perl_base.strip_prefix("/").expect("abs"))),
            );
        }
        symlink("dash", root.join("usr/bin/sh")).expect("symlink");
        symlink("/usr/bin/mawk", root.join("etc/alternatives/awk")).expect("symlink");
        symlink("/etc/alternatives/awk", root.join("usr/bin/awk")).expect("symlink");
        write(
            root,
            "/etc/os-release",
            "PRETTY_NAME=\"SCAR dynamic test image\"\nID=scar-test\n",
        );
        write(root, "/usr/share/scar-test/data.txt", "forty-two\n");
        write(root, "/usr/share/scar-test/more.txt", "more\n");
        write(
            root,
            "/etc/ld.so.conf",
            "include /etc/ld.so.conf.d/*.conf\n",
        );
        write(
            root,
            &format!(
                "/etc/ld.so.conf.d/{}-linux-gnu.conf",
                std::env::consts::ARCH
            ),
            &format!("/usr/lib/{}-linux-gnu\n", std::env::consts::ARCH),
        );
        write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    })
}

/// A musl image: the musl loader (which is also its libc) and [`PROBE_C`] built with `musl-gcc`.
/// Panics, naming the package, when musl-tools is absent.
pub fn musl_image() -> PathBuf {
    let loader = Path::new("/lib/ld-musl-x86_64.so.1");
    assert!(
        which("musl-gcc").is_some() && loader.exists(),
        "musl-gcc or {} is missing: apt-get install musl-tools",
        loader.display()
    );
    cached(&format!("musl-{RECIPE}"), |root| {
        for d in ["lib", "usr/bin", "tmp", "proc", "dev", "sys"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        copy_file(
            &std::fs::canonicalize(loader).expect("canonicalize"),
            &root.join("lib/ld-musl-x86_64.so.1"),
        );
        compile_probe("musl-gcc", &root.join("usr/bin/probe"));
        write(
            root,
            "/etc/os-release",
            "PRETTY_NAME=\"SCAR musl test image\"\nID=scar-musl\n",
        );
        write(root, "/usr/share/scar-test/data.txt", "forty-two\n");
    })
}

/// A Debian bookworm minbase root from `debootstrap` (minutes on first use, then cached).
/// Panics with the reason when debootstrap is absent or the mirror does not answer.
pub fn debian_image() -> PathBuf {
    let dir = Path::new(IMAGE_CACHE).join("debian-bookworm");
    let readable = Path::new(IMAGE_CACHE).join("debian-bookworm.readable");
    if dir.join("etc/os-release").exists() {
        // The sandbox's unprivileged user copies the image: root-only files must be readable.
        if !readable.exists() {
            let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
            run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&dir));
            // Device nodes cannot be copied unprivileged (and image extraction skips them).
            run_ok(
                Command::new("find")
                    .arg(dir.join("dev"))
                    .args(["-mindepth", "1", "-delete"]),
            );
            let _ = std::fs::write(&readable, "");
        }
        return dir;
    }
    assert!(
        which("debootstrap").is_some(),
        "debootstrap is not installed: apt-get install debootstrap"
    );
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = Path::new(IMAGE_CACHE).join(format!("debian-bookworm.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(IMAGE_CACHE).expect("create the image cache");
    let out = Command::new("timeout")
        .args(["1200", "debootstrap", "--variant=minbase", "bookworm"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap");
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!(
            "debootstrap of Debian bookworm failed (is deb.debian.org reachable?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&tmp)
        .status();
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    drop(_guard);
    assert!(
        dir.join("etc/os-release").exists(),
        "debootstrap left no {}/etc/os-release",
        dir.display()
    );
    // Once more through the branch above, which makes the new image readable and copyable.
    debian_image()
}

/// Where [`LambdaSim::with_scar`] shows the static `scar` (and `scar-full`) in the sandbox.
pub const SCAR_DIR: &str = "/sim/scar";
/// PATH of a shell line when the caller gives none: busybox's applets (nothing else is there).
pub const SHELL_PATH: &str = "/sim/bin";

/// This machine's architecture as `build.sh` names it.
fn host_arch() -> crate::dist::Arch {
    if cfg!(target_arch = "aarch64") {
        crate::dist::Arch::Aarch64
    } else {
        crate::dist::Arch::X86_64
    }
}

/// The simulator: `$SCAR_E2E_SIMULATOR` when set (e.g. `target/debug/scar-full` while working
/// on it), else the static `scar-full` of `./build.sh` for this machine (see
/// [`crate::dist::ensure_built`]).
pub fn simulator() -> PathBuf {
    match std::env::var_os("SCAR_E2E_SIMULATOR") {
        Some(path) => PathBuf::from(path),
        None => crate::dist::scar_full(host_arch()),
    }
}

/// The directory of the static `scar`, `scar-full` and `bootstrap` of `./build.sh` for this
/// machine: what can run on the simulator's bare root.
pub fn static_binaries() -> PathBuf {
    crate::dist::scar(host_arch())
        .parent()
        .expect("dist/scar-<arch>/scar has a parent")
        .to_path_buf()
}

/// A simulated Lambda (see the module docs): the layer directory at `/opt`, a tmpfs `/tmp` of
/// `tmp_mb` MiB, the function's code at `/var/task` when given, and explicit binds.
#[derive(Clone, Debug)]
pub struct LambdaSim {
    /// Host directory bound read-only at `/opt` (the layer: `bootstrap`, `preload/`).
    pub layer: PathBuf,
    /// Size of the sandbox's `/tmp` in MiB.
    pub tmp_mb: u32,
    /// Host directory bound read-only at `/var/task` (the working directory).
    pub task: Option<PathBuf>,
    /// (host path, sandbox path, writable), in the order given.
    pub binds: Vec<(PathBuf, PathBuf, bool)>,
}

/// What a command in the sandbox did.
#[derive(Debug)]
pub struct SimOutput {
    /// Exit status of the command (125: the sandbox could not be built; see `scar lambda-sim
    /// --help`).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (and the simulator's).
    pub stderr: String,
}

impl SimOutput {
    /// Panic with everything shown unless the command succeeded.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "sandboxed command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl LambdaSim {
    /// A sandbox with `layer` at `/opt` and Lambda's default 512 MiB `/tmp`.
    pub fn new(layer: impl Into<PathBuf>) -> Self {
        Self {
            layer: layer.into(),
            tmp_mb: 512,
            task: None,
            binds: Vec::new(),
        }
    }

    /// The function's code at `/var/task`.
    pub fn task(mut self, dir: impl Into<PathBuf>) -> Self {
        self.task = Some(dir.into());
        self
    }

    /// `/tmp` of `mb` MiB.
    pub fn tmp_mb(mut self, mb: u32) -> Self {
        self.tmp_mb = mb;
        self
    }

    /// Show the host's `host` (file or directory) read-only at `path` in the sandbox.
    pub fn ro_bind(mut self, host: impl Into<PathBuf>, path: impl Into<PathBuf>) -> Self {
        self.binds.push((host.into(), path.into(), false));
        self
    }

    /// Show the host's `host` writable at `path` (not something Lambda has: for collecting
    /// files a test reads afterwards).
    pub fn bind(mut self, host: impl Into<PathBuf>, path: impl Into<PathBuf>) -> Self {
        self.binds.push((host.into(), path.into(), true));
        self
    }

    /// The static `scar`, `scar-full` and `bootstrap` of `./build.sh` at [`SCAR_DIR`].
    pub fn with_scar(self) -> Self {
        self.ro_bind(static_binaries(), SCAR_DIR)
    }

    /// The simulator's command running `argv` with exactly `env` (nothing of this process's
    /// environment reaches the sandbox; variables set on the returned `Command` reach only the
    /// simulator). Killing it kills the whole sandbox.
    pub fn exec(&self, argv: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(simulator());
        cmd.arg("lambda-sim")
            .arg("--layer")
            .arg(&self.layer)
            .arg("--tmp-mb")
            .arg(self.tmp_mb.to_string());
        if let Some(task) = &self.task {
            cmd.arg("--task").arg(task);
        }
        for (host, path, writable) in &self.binds {
            let mut bind = host.clone().into_os_string();
            bind.push(":");
            bind.push(path);
            cmd.arg(if *writable { "--bind" } else { "--ro-bind" })
                .arg(bind);
        }
        for (name, value) in env {
            if *name == "PATH" {
                cmd.arg("--env").arg(format!("{name}={value}"));
            } else {
                // By name, the value in the simulator's own environment: its command line is
                // readable by every process of the sandbox (`/proc/<pid>/cmdline`), and secrets
                // given to the function must not be (Lambda's own processes hold none there).
                cmd.arg("--env").arg(name).env(name, value);
            }
        }
        cmd.arg("--").args(argv).stdin(Stdio::null());
        cmd
    }

    /// The simulator's command running the shell line `command` with busybox's `/sim/bin/sh`,
    /// with `env` and, unless `env` sets one, `PATH=/sim/bin`.
    pub fn command(&self, command: &str, env: &[(&str, &str)]) -> Command {
        let mut full: Vec<(&str, &str)> = Vec::with_capacity(env.len() + 1);
        if !env.iter().any(|(name, _)| *name == "PATH") {
            full.push(("PATH", SHELL_PATH));
        }
        full.extend_from_slice(env);
        self.exec(&["/sim/bin/sh", "-c", command], &full)
    }

    /// Run the shell line `command` in the sandbox (see [`command`](Self::command)) and wait.
    pub fn run(&self, command: &str, env: &[(&str, &str)]) -> SimOutput {
        output_of(self.command(command, env))
    }

    /// Run `argv` in the sandbox (see [`exec`](Self::exec)) and wait.
    pub fn run_argv(&self, argv: &[&str], env: &[(&str, &str)]) -> SimOutput {
        output_of(self.exec(argv, env))
    }
}

fn output_of(mut command: Command) -> SimOutput {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("start the simulator {}: {e}", simulator().display()));
    SimOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `arg` quoted for a POSIX shell line.
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A layer directory as the zip would unpack it: `preload/` with the libraries (and whatever
/// the caller adds, e.g. `bootstrap`).
pub fn layer_dir() -> tempfile::TempDir {
    let layer = tempfile::Builder::new()
        .prefix("scar-layer-")
        .tempdir()
        .expect("tempdir");
    let pre = layer.path().join("preload");
    std::fs::create_dir_all(&pre).expect("mkdir preload");
    for entry in std::fs::read_dir(preload_libs())
        .expect("read preload libs")
        .flatten()
    {
        std::fs::copy(entry.path(), pre.join(entry.file_name())).expect("copy library");
    }
    // Readable and traversable by the sandbox user.
    std::fs::set_permissions(layer.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    layer
}

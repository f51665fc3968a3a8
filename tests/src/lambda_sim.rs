//! A simulated AWS Lambda sandbox for the preload engine's tests, and the images they run.
//!
//! Lambda's restrictions, reproduced as root with util-linux and `uidmap`:
//! `unshare --user --map-users=0,0,65536 --map-groups=0,0,65536 --mount --pid --fork`, then
//! inside: the layer bound read-only at `/opt`, a small tmpfs on `/tmp`, a fresh `/proc`, the
//! root remounted read-only, `user.max_user_namespaces` set to 0 (so `unshare -U` fails with
//! ENOSPC, as the `uid_map` write fails with EPERM on Lambda), and the command run by
//! `setpriv --reuid=993 --regid=993 --clear-groups --no-new-privs`.
//!
//! Images (cached under `/var/tmp/scar-test-images`, built in a temporary directory and renamed
//! into place): [`dynamic_image`] from the host's own loader, libc, coreutils and perl;
//! [`musl_image`] from `musl-gcc`; [`debian_image`] from `debootstrap` when the mirror answers.

use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// Where test images are cached between runs.
pub const IMAGE_CACHE: &str = "/var/tmp/scar-test-images";
/// Bump when the dynamic or musl image recipe changes.
const RECIPE: u32 = 2;
/// Unprivileged uid and gid of the simulated function (Lambda's is 993 as well).
pub const SANDBOX_UID: u32 = 993;

/// The repository root (this crate is `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The preload libraries for this machine, built once per test process with
/// `rootfs/preload/build.sh` into `target/preload/lib`.
pub fn preload_libs() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let repo = repo_root();
        let out = repo.join("target/preload/lib");
        let status = Command::new(repo.join("rootfs/preload/build.sh"))
            .arg(std::env::consts::ARCH)
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("run rootfs/preload/build.sh");
        assert!(status.success(), "rootfs/preload/build.sh failed: {status}");
        out
    })
    .clone()
}

/// Serializes image builds inside one test process.
static BUILD: Mutex<()> = Mutex::new(());

/// Build `name` under [`IMAGE_CACHE`] with `recipe` unless it is there already.
fn cached(name: &str, recipe: impl FnOnce(&Path)) -> PathBuf {
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

fn run_ok(cmd: &mut Command) -> Output {
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

fn write(root: &Path, path: &str, text: &str) {
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
/// `None` (with the reason printed) when musl-tools is absent.
pub fn musl_image() -> Option<PathBuf> {
    let loader = Path::new("/lib/ld-musl-x86_64.so.1");
    if which("musl-gcc").is_none() || !loader.exists() {
        eprintln!(
            "SKIP musl image: musl-gcc or {} is missing (apt-get install musl-tools)",
            loader.display()
        );
        return None;
    }
    Some(cached(&format!("musl-{RECIPE}"), |root| {
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
    }))
}

/// A Debian bookworm minbase root from `debootstrap` (minutes on first use, then cached).
/// `None`, with the reason printed, when debootstrap is absent or the mirror does not answer.
pub fn debian_image() -> Option<PathBuf> {
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
        return Some(dir);
    }
    if which("debootstrap").is_none() {
        eprintln!("SKIP Debian image: debootstrap is not installed (apt-get install debootstrap)");
        return None;
    }
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = Path::new(IMAGE_CACHE).join(format!("debian-bookworm.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(IMAGE_CACHE).ok()?;
    let out = Command::new("timeout")
        .args(["1200", "debootstrap", "--variant=minbase", "bookworm"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "SKIP Debian image: debootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&tmp);
        return None;
    }
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&tmp)
        .status();
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir.join("etc/os-release").exists().then_some(dir)
}

/// Add `root:0:65536` to `/etc/subuid` and `/etc/subgid` when missing (needed by
/// `unshare --map-users=0,0,65536` as root).
pub fn ensure_subids() {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|l| l.trim() == "root:0:65536") {
            continue;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .unwrap_or_else(|e| panic!("open {file}: {e}"));
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        writeln!(f, "{sep}root:0:65536").unwrap_or_else(|e| panic!("append to {file}: {e}"));
    }
}

/// Why the simulation cannot run here (printed by tests that then skip), or `None`.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the Lambda simulation needs root (it maps uids with newuidmap)".into());
    }
    for tool in ["unshare", "setpriv", "newuidmap"] {
        if which(tool).is_none() {
            return Some(format!(
                "{tool} is missing (apt-get install util-linux uidmap)"
            ));
        }
    }
    None
}

/// A simulated Lambda: the layer directory bound at `/opt` and a tmpfs `/tmp` of `tmp_mb` MiB.
#[derive(Clone, Debug)]
pub struct LambdaSim {
    /// Host directory bound read-only at `/opt` (the layer: `bootstrap`, `preload/`).
    pub layer: PathBuf,
    /// Size of the sandbox's `/tmp`.
    pub tmp_mb: u32,
}

/// What a command in the sandbox did.
#[derive(Debug)]
pub struct SimOutput {
    /// Exit status of the command (of `unshare`, which reports it).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (and the sandbox set-up's).
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

/// The set-up run inside the new namespaces, as the namespace's root, before dropping to
/// [`SANDBOX_UID`]. `$1` is the layer, `$2` the tmpfs size, `$3` the command.
const INSIDE: &str = r#"set -e
mount --rbind "$1" /opt
mount -o remount,bind,ro /opt
mount -t tmpfs -o "size=$2m,mode=1777" tmpfs /tmp
mount -t proc proc /proc
mount -o remount,bind,ro /
echo 0 > /proc/sys/user/max_user_namespaces
cd /tmp
exec setpriv --reuid=993 --regid=993 --clear-groups --no-new-privs -- /bin/sh -c "$3"
"#;

impl LambdaSim {
    /// A sandbox with `layer` at `/opt` and Lambda's default 512 MiB `/tmp`.
    pub fn new(layer: impl Into<PathBuf>) -> Self {
        Self {
            layer: layer.into(),
            tmp_mb: 512,
        }
    }

    /// The `unshare` command that runs `command` with the host's `/bin/sh` inside the sandbox
    /// as uid 993, with `env` added to the environment. Killing it kills the whole sandbox
    /// (`--kill-child`: its PID namespace's init dies, and with it every process inside).
    pub fn command(&self, command: &str, env: &[(&str, &str)]) -> Command {
        ensure_subids();
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-users=0,0,65536", "--map-groups=0,0,65536"])
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
            ])
            .args(["--", "/bin/sh", "-c", INSIDE, "sim"])
            .arg(&self.layer)
            .arg(self.tmp_mb.to_string())
            .arg(command)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        cmd
    }

    /// Run `command` inside the sandbox (see [`command`](Self::command)) and wait for it.
    pub fn run(&self, command: &str, env: &[(&str, &str)]) -> SimOutput {
        let out = self
            .command(command, env)
            .output()
            .unwrap_or_else(|e| panic!("start unshare: {e}"));
        SimOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
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

//! What the tests do on the host as root around the images: register qemu-aarch64 with
//! binfmt_misc, and run an image's own programs in a chroot.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::command::is_root;
use super::layout::IMAGE_PATH;

/// Make sure aarch64 programs run here: as root, mount `binfmt_misc` if needed and register
/// `qemu-aarch64` from `/usr/lib/binfmt.d/qemu-aarch64.conf` (Debian's `qemu-user-static`).
/// Its `F` flag opens the interpreter at registration, so it also works inside a bare root
/// that has no qemu. `Err` says what is missing and how to fix it.
pub fn ensure_aarch64_binfmt() -> Result<(), String> {
    if std::env::consts::ARCH == "aarch64" {
        return Ok(());
    }
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let entry = dir.join("qemu-aarch64");
    if !entry.exists() {
        let conf = Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf");
        let line = std::fs::read_to_string(conf).map_err(|err| {
            format!(
                "{}: {err}: apt-get install qemu-user-static",
                conf.display()
            )
        })?;
        if !is_root() {
            return Err(format!(
                "qemu-aarch64 is not registered in {} and only root can register it: run the tests as root, or `systemctl restart systemd-binfmt`",
                dir.display()
            ));
        }
        if !dir.join("register").exists() {
            let out = Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc"])
                .arg(dir)
                .output()
                .map_err(|err| format!("cannot run mount: {err}"))?;
            if !out.status.success() && !dir.join("register").exists() {
                return Err(format!(
                    "mount -t binfmt_misc on {} failed: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        // Another test process may register it between the check and the write (EEXIST).
        if let Err(err) = std::fs::write(dir.join("register"), line.trim())
            && !entry.exists()
        {
            return Err(format!(
                "registering qemu-aarch64 in {}/register failed: {err}",
                dir.display()
            ));
        }
    }
    let status =
        std::fs::read_to_string(&entry).map_err(|err| format!("{}: {err}", entry.display()))?;
    if !status.lines().any(|l| l == "enabled") {
        return Err(format!(
            "{} is disabled: echo 1 > {}",
            entry.display(),
            entry.display()
        ));
    }
    let flags = status
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .unwrap_or("");
    if !flags.contains('F') {
        return Err(format!(
            "{} is registered without the F flag, so its interpreter is not found inside a bare root: echo -1 > {} and run the test again (it registers /usr/lib/binfmt.d/qemu-aarch64.conf)",
            entry.display(),
            entry.display()
        ));
    }
    Ok(())
}

/// Run `argv` inside `root` with `chroot` (as root), `stdin` fed in, and return its output.
/// The tests use it to make inputs and check outputs with the image's own tools (e.g. decode
/// video with the image's ffmpeg). The root is read-only there (Python's byte-code caches and
/// the JVM's `/tmp/hsperfdata_root` stay out of the cached image; `/tmp` is a tmpfs).
pub fn run_in_root(root: &Path, argv: &[&str], stdin: &[u8]) -> Output {
    chroot(root, argv, stdin, true)
}

/// As [`run_in_root`] with the root writable: for the image's own build steps (`ldconfig`).
pub(super) fn configure_in_root(root: &Path, argv: &[&str]) -> Output {
    chroot(root, argv, b"", false)
}

fn chroot(root: &Path, argv: &[&str], stdin: &[u8], read_only: bool) -> Output {
    assert!(is_root(), "chroot into {} needs root", root.display());
    // In a private mount namespace, so that no mount outlives the command: `/proc` (glibc finds
    // `$ORIGIN` of a program reached through a symlink, such as java, in /proc/self/exe) and
    // the host's `/dev` (`/dev/null`) on the image's empty directories, then chroot.
    let script = if read_only {
        r#"set -e
           mount --bind "$1" "$1"
           mount -o remount,bind,ro "$1"
           mount -t tmpfs tmpfs "$1/tmp"
           mount -t proc proc "$1/proc"
           mount --rbind /dev "$1/dev"
           exec chroot "$@""#
    } else {
        r#"set -e
           mount -t proc proc "$1/proc"
           mount --rbind /dev "$1/dev"
           exec chroot "$@""#
    };
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", script, "chroot_in"])
        .arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", IMAGE_PATH.trim_start_matches("PATH="))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run chroot {}: {err}", root.display()));
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // A program that stops reading early closes the pipe: not an error here.
        let _ = input.write_all(&data);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("wait for chroot: {err}"));
    let _ = feeder.join();
    out
}

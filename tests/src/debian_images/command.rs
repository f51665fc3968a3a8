//! Running the build's commands: progress lines, commands that must succeed, the root check.

use std::process::{Command, Output};
use std::time::Instant;

/// Print a progress line: image builds take minutes and a silent test looks hung.
pub(super) fn progress(what: &str, started: Instant) {
    eprintln!(
        "debian_images: {what} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

/// Run `cmd`, panicking with its output unless it succeeds.
pub(super) fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// True when the tests run as root (debootstrap, chroot and binfmt_misc need it).
pub(super) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

//! What every section of the bench shares: the binaries, the registry, the scratch directory
//! and the run counts ([`Bench`]), and the `proot` wrapper udocker runs through.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::images;
use super::registry::Registry;

/// How many times each kind of row runs.
#[derive(Clone, Copy, Debug)]
pub struct Runs {
    /// Cold pulls and the syscall-heavy job.
    pub pull: usize,
    /// Process starts (cheap, so more runs).
    pub start: usize,
    /// Warm invocations through bootstrap.
    pub invoke: usize,
}

/// What every section needs: the binaries, the registry, a scratch directory and the run counts.
pub struct Bench {
    /// This `scar`.
    pub scar: PathBuf,
    /// The `bootstrap` to measure.
    pub bootstrap: PathBuf,
    /// The preload engine's libraries, when found.
    pub preload_dir: Option<PathBuf>,
    /// The loopback registry holding `bench/<image>:latest`.
    pub registry: Registry,
    /// Scratch space, removed at the end.
    pub work: PathBuf,
    /// Run counts.
    pub runs: Runs,
    /// Limit for any one measured command.
    pub limit: Duration,
    /// Quick mode: small inputs too.
    pub quick: bool,
}

impl Bench {
    /// `scar <sub>` with the registry marked insecure (plain HTTP) and quiet logs.
    pub fn scar_command(&self, sub: &str) -> Command {
        let mut command = Command::new(&self.scar);
        command
            .arg(sub)
            .env("SCAR_INSECURE_REGISTRIES", self.registry.host())
            .env("SCAR_LOG", "warn");
        if let Some(dir) = &self.preload_dir {
            command.env("SCAR_PRELOAD_DIR", dir);
        }
        command
    }

    /// `udocker` on its own repository, offline: no tools tarball download (the system `proot`
    /// runs containers), plain HTTP to the loopback registry.
    pub fn udocker(&self, repo: &Path) -> Command {
        let mut command = Command::new("udocker");
        command
            .env("UDOCKER_DIR", repo)
            .env("UDOCKER_TARBALL", "")
            .env(
                "UDOCKER_USE_PROOT_EXECUTABLE",
                self.work.join(PROOT_WRAPPER),
            );
        if nix::unistd::geteuid().is_root() {
            command.arg("--allow-root");
        }
        command.args(["--quiet", "--insecure"]);
        command
    }
}

/// The `proot` udocker is pointed at: Debian's, minus udocker's `-k <release>`. Debian's proot
/// 5.1 with kernel emulation on makes glibc's loader fail inside the guest ("cannot stat shared
/// object: Invalid argument") on this kernel; udocker's own build of proot comes in its tools
/// tarball, which cannot be downloaded offline.
pub(super) const PROOT_WRAPPER: &str = "proot-without-k";

/// Write the [`PROOT_WRAPPER`] script into `work`.
pub(super) fn write_proot_wrapper(work: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let proot = images::which("proot").unwrap_or_else(|| PathBuf::from("/usr/bin/proot"));
    let script = format!(
        "#!/bin/sh\nn=$#\nwhile [ \"$n\" -gt 0 ]; do\n  a=$1; shift; n=$((n-1))\n  if [ \"$a\" = \"-k\" ]; then shift; n=$((n-1)); continue; fi\n  set -- \"$@\" \"$a\"\ndone\nexec '{}' \"$@\"\n",
        proot.display()
    );
    let path = work.join(PROOT_WRAPPER);
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
}

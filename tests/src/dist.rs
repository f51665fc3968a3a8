//! The outputs of `build.sh` (static binaries and layer zips), built once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The two architectures the layer ships for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 (Lambda's `x86_64`).
    X86_64,
    /// aarch64 (Lambda's `arm64`).
    Aarch64,
}

impl Arch {
    /// Both architectures, in build order.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The name build.sh uses for directories: `x86_64`, `aarch64`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Lambda's name for the architecture, used in the zip name: `x86_64`, `arm64`.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The ELF `e_machine` of binaries for this architecture (EM_X86_64, EM_AARCH64).
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }
}

/// The repository root (the workspace of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `dist/` with everything build.sh makes, running build.sh at most once per test process.
///
/// With `SCAR_E2E_DIST` set (test.sh sets it right after running build.sh) that directory is
/// used as it is; otherwise build.sh runs, which is a quick no-op when nothing changed.
pub fn ensure_built() -> &'static Path {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        let dist = match std::env::var_os("SCAR_E2E_DIST") {
            Some(dist) => PathBuf::from(dist),
            None => {
                let root = repo_root();
                let status = Command::new(root.join("build.sh"))
                    .current_dir(&root)
                    .status()
                    .unwrap_or_else(|err| panic!("cannot run {}/build.sh: {err}", root.display()));
                assert!(
                    status.success(),
                    "build.sh failed ({status}): see its output above"
                );
                root.join("dist")
            }
        };
        for arch in Arch::ALL {
            let zip = dist.join(layer_zip_name(arch));
            assert!(
                zip.is_file(),
                "{} is missing: run ./build.sh (or unset SCAR_E2E_DIST)",
                zip.display()
            );
        }
        dist
    })
}

/// `scar-layer-x86_64.zip`, `scar-layer-arm64.zip`.
pub fn layer_zip_name(arch: Arch) -> String {
    format!("scar-layer-{}.zip", arch.lambda_name())
}

/// The built layer zip of `arch`.
pub fn layer_zip(arch: Arch) -> PathBuf {
    ensure_built().join(layer_zip_name(arch))
}

/// The built static `bootstrap` of `arch` (the same bytes as in the zip).
pub fn bootstrap(arch: Arch) -> PathBuf {
    ensure_built()
        .join(format!("scar-{}", arch.name()))
        .join("bootstrap")
}

/// The built static `scar` of `arch` (the launcher).
pub fn scar(arch: Arch) -> PathBuf {
    ensure_built()
        .join(format!("scar-{}", arch.name()))
        .join("scar")
}

/// The built static `scar-full` of `arch` (every command; `scar` executes it).
pub fn scar_full(arch: Arch) -> PathBuf {
    ensure_built()
        .join(format!("scar-{}", arch.name()))
        .join("scar-full")
}

//! The outputs of `build.sh` (static binaries, preload libraries and layer zips), made by build.sh
//! before the tests (test.sh runs it), never by a test.

use std::path::{Path, PathBuf};
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

/// `dist/` with everything build.sh makes: `$SCAR_E2E_DIST` when set (test.sh sets it right
/// after running build.sh), else this repository's `dist/`. A test never runs build.sh itself
/// (it starts cargo builds): a missing layer zip fails the test with one line saying to run
/// `./build.sh`, and so does a binary or preload library older than a source file it was built
/// from (read from the dep-info files of build.sh's own target directories, when there).
pub fn ensure_built() -> &'static Path {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        let root = repo_root();
        let dist = match std::env::var_os("SCAR_E2E_DIST") {
            Some(dist) => PathBuf::from(dist),
            None => root.join("dist"),
        };
        for arch in Arch::ALL {
            let zip = dist.join(layer_zip_name(arch));
            assert!(
                zip.is_file(),
                "{} is missing: run ./build.sh (./test.sh does it before the tests)",
                zip.display()
            );
        }
        if dist == root.join("dist") && !crate::workspace::built_by_this_run() {
            for arch in Arch::ALL {
                if let Some((output, source)) = stale_output(&root, &dist, arch) {
                    panic!(
                        "{} is older than {}: run ./build.sh (./test.sh does it before the tests)",
                        output.display(),
                        source.display()
                    );
                }
            }
        }
        dist
    })
}

/// The first output of build.sh for `arch` in `dist` that is older than a source file it was
/// built from, with that file; the dep-info files are those of build.sh's default target
/// directories (`target/dist`, `target/preload`).
fn stale_output(root: &Path, dist: &Path, arch: Arch) -> Option<(PathBuf, PathBuf)> {
    let people = dist.join(format!("scar-{}", arch.name()));
    let release = root
        .join("target/dist")
        .join(format!("{}-unknown-linux-musl", arch.name()))
        .join("release");
    let preload = root
        .join("target/preload")
        .join(format!("{}-unknown-linux-gnu", arch.name()))
        .join("release");
    let pairs = [
        (people.join("bootstrap"), release.join("bootstrap.d")),
        (people.join("scar"), release.join("scar.d")),
        (people.join("scar-full"), release.join("scar-full.d")),
        (
            people.join("preload/libscar_preload-gnu.so"),
            preload.join("libscar_preload.d"),
        ),
    ];
    pairs.into_iter().find_map(|(output, depinfo)| {
        crate::workspace::newer_source(&output, &depinfo).map(|source| (output, source))
    })
}

/// The preload engine's libraries built by build.sh for `arch` (`libscar_preload-gnu.so`,
/// `libscar_audit.so`, and `libscar_preload-musl.so` on x86_64).
pub fn preload_dir(arch: Arch) -> PathBuf {
    let dir = ensure_built()
        .join(format!("scar-{}", arch.name()))
        .join("preload");
    assert!(
        dir.join("libscar_preload-gnu.so").is_file(),
        "{} holds no libscar_preload-gnu.so: run ./build.sh (./test.sh does it before the tests)",
        dir.display()
    );
    dir
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

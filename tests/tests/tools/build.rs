//! The outputs of build.sh: static ELF binaries for each machine, layer zips Lambda can use, the
//! aarch64 bootstrap running under qemu, and a SAM template that lints clean.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use scar_e2e::dist::{self, Arch};
use scar_e2e::service::require_program;
use scar_e2e::zip_listing;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// What the ELF headers of a file say about how it is linked.
#[derive(Debug)]
struct ElfFacts {
    machine: u16,
    has_interpreter: bool,
    needed_libraries: usize,
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(data[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the ELF64 little-endian header and program headers of `path` (no ELF crate: the test
/// should not share a parser's blind spots with the linker).
fn elf_facts(path: &Path) -> ElfFacts {
    let data = std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    assert_eq!(
        &data[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    assert_eq!(data[4], 2, "{} is not a 64-bit ELF", path.display());
    assert_eq!(data[5], 1, "{} is not little-endian", path.display());
    let machine = u16_at(&data, 18);
    let phoff = usize::try_from(u64_at(&data, 32)).expect("phoff");
    let phentsize = usize::from(u16_at(&data, 54));
    let phnum = usize::from(u16_at(&data, 56));
    let mut has_interpreter = false;
    let mut needed_libraries = 0;
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        match u32_at(&data, header) {
            PT_INTERP => has_interpreter = true,
            // A static-pie keeps PT_DYNAMIC for its own relocations; what makes a binary
            // dynamic is a DT_NEEDED entry in it.
            PT_DYNAMIC => {
                let offset = usize::try_from(u64_at(&data, header + 8)).expect("p_offset");
                let size = usize::try_from(u64_at(&data, header + 32)).expect("p_filesz");
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(&data, entry) {
                        DT_NULL => break,
                        DT_NEEDED => needed_libraries += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    ElfFacts {
        machine,
        has_interpreter,
        needed_libraries,
    }
}

#[test]
fn each_bootstrap_and_scar_is_a_static_elf_for_its_machine() {
    for arch in Arch::ALL {
        for binary in [
            dist::bootstrap(arch),
            dist::scar(arch),
            dist::scar_full(arch),
        ] {
            let facts = elf_facts(&binary);
            assert_eq!(
                facts.machine,
                arch.elf_machine(),
                "{} has e_machine {} instead of {} ({})",
                binary.display(),
                facts.machine,
                arch.elf_machine(),
                arch.name()
            );
            assert!(
                !facts.has_interpreter,
                "{} asks for a dynamic loader (PT_INTERP)",
                binary.display()
            );
            assert_eq!(
                facts.needed_libraries,
                0,
                "{} needs shared libraries (DT_NEEDED)",
                binary.display()
            );
        }
    }
}

#[test]
fn each_layer_zip_holds_bootstrap_at_its_root_with_mode_0755() {
    for arch in Arch::ALL {
        let zip = dist::layer_zip(arch);
        let entries = zip_listing::list(&zip);
        let bootstrap = entries
            .iter()
            .find(|entry| entry.name == "bootstrap")
            .unwrap_or_else(|| {
                panic!(
                    "{} has no bootstrap at its root: {entries:?}",
                    zip.display()
                )
            });
        let mode = bootstrap
            .unix_mode
            .unwrap_or_else(|| panic!("{}: bootstrap carries no unix mode", zip.display()));
        assert_eq!(
            mode & 0o170_000,
            0o100_000,
            "bootstrap is not a regular file"
        );
        assert_eq!(
            mode & 0o7777,
            0o755,
            "bootstrap mode is {:o}",
            mode & 0o7777
        );
        let built = std::fs::metadata(dist::bootstrap(arch)).expect("built bootstrap");
        assert_eq!(
            bootstrap.size,
            built.len(),
            "the zip's bootstrap is not the built one"
        );
        // glibc images need the loader's audit module next to the preload library.
        assert!(
            entries
                .iter()
                .any(|entry| entry.name == "preload/libscar_audit.so"),
            "{} has no preload/libscar_audit.so: {entries:?}",
            zip.display()
        );
        for entry in &entries {
            assert!(
                entry.name == "bootstrap" || entry.name.starts_with("preload/"),
                "{}: unexpected entry {}",
                zip.display(),
                entry.name
            );
            assert!(
                !entry.name.contains("..") && !entry.name.starts_with('/'),
                "{}: entry {} would land outside /opt",
                zip.display(),
                entry.name
            );
        }
    }
}

#[test]
fn x86_64_bootstrap_answers_version() {
    let output = Command::new(dist::bootstrap(Arch::X86_64))
        .arg("--version")
        .output()
        .expect("run bootstrap --version");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("bootstrap {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn aarch64_bootstrap_answers_version_under_qemu() {
    let qemu = require_program("qemu-aarch64-static", "the Debian package qemu-user-static");
    let output = Command::new(qemu)
        .arg(dist::bootstrap(Arch::Aarch64))
        .arg("--version")
        .output()
        .expect("run qemu-aarch64-static bootstrap --version");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("bootstrap {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_failed_build_leaves_the_previous_zips_untouched() {
    let dist_dir = dist::ensure_built();
    let root = dist::repo_root();
    // build.sh writes only to the repository's dist/: a run against other binaries cannot
    // check what a failed build leaves there.
    assert_eq!(
        dist_dir,
        root.join("dist"),
        "SCAR_E2E_DIST points at {} but build.sh writes only to this repository's dist/: unset it or point it there",
        dist_dir.display()
    );
    let before: Vec<Vec<u8>> = Arch::ALL
        .iter()
        .map(|&arch| std::fs::read(dist::layer_zip(arch)).expect("zip"))
        .collect();
    // A fake `cargo` first on PATH (what is under test is build.sh's handling of a failure, not
    // cargo): the release build "succeeds" as a no-op, leaving the binaries of the last real
    // build in place, and the preload library's build fails, in the middle of packaging (after
    // build.sh made its work directory in dist/, before any zip is written).
    let fake = tempfile::tempdir().expect("tempdir");
    let cargo = fake.path().join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\ncase \"$*\" in\n*preload*) echo 'fake cargo: the preload build fails' >&2; exit 101 ;;\nesac\n",
    )
    .expect("write the fake cargo");
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![fake.path().to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    let output = Command::new(root.join("build.sh"))
        .current_dir(&root)
        .env(
            "PATH",
            std::env::join_paths(paths).expect("PATH of directories without ':'"),
        )
        .output()
        .expect("run build.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "build.sh succeeded with a failing preload build: {stderr}"
    );
    assert!(
        stderr.contains("fake cargo: the preload build fails"),
        "build.sh failed before reaching the preload build: {stderr}"
    );
    for (arch, before) in Arch::ALL.iter().zip(before) {
        let after = std::fs::read(dist::layer_zip(*arch)).expect("zip still there");
        assert!(
            after == before,
            "{} changed after a failed build",
            arch.name()
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(dist_dir)
        .expect("read dist")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".scar-layer") || name.starts_with(".build."))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left in dist/: {leftovers:?}"
    );
}

#[test]
fn layer_template_publishes_both_zips_and_passes_cfn_lint() {
    let template_path = dist::repo_root().join("layer/template.yaml");
    let template = std::fs::read_to_string(&template_path).expect("layer/template.yaml");
    for arch in Arch::ALL {
        assert!(
            template.contains(&format!(
                "ContentUri: ../dist/{}",
                dist::layer_zip_name(arch)
            )),
            "the template does not publish {}",
            dist::layer_zip_name(arch)
        );
    }
    assert_eq!(
        template
            .matches("Type: AWS::Serverless::LayerVersion")
            .count(),
        2
    );
    assert_eq!(template.matches("- provided.al2023").count(), 2);
    assert_eq!(template.matches("- provided.al2\n").count(), 2);
    let cfn_lint = require_program(
        "cfn-lint",
        "the PyPI package cfn-lint (pip install cfn-lint)",
    );
    let output = Command::new(cfn_lint)
        .arg(&template_path)
        .output()
        .expect("run cfn-lint");
    assert!(
        output.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_elf_check_sees_a_dynamically_linked_program_as_dynamic() {
    // The check above must be able to fail: Debian's /bin/true is dynamically linked.
    let facts = elf_facts(Path::new("/bin/true"));
    assert!(
        facts.has_interpreter,
        "/bin/true has no PT_INTERP: {facts:?}"
    );
    assert!(
        facts.needed_libraries > 0,
        "/bin/true needs no library: {facts:?}"
    );
}

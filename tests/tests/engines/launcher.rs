//! `scar` and `scar-full`: the launcher starts cached images by itself and executes
//! `scar-full`, from its own directory, for everything else.
//!
//! Run: `cargo test -p scar-e2e --test engines launcher::` (the runs need user namespaces, as root
//! here).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scar_e2e::images;
use scar_tools::oci::{LayoutOptions, write_from_dir};

/// `scar` and `scar-full` of this workspace.
fn binaries() -> (PathBuf, PathBuf) {
    let [scar, full] =
        scar_e2e::workspace::binaries([("scar-tools", "scar"), ("scar-tools", "scar-full")]);
    (scar, full)
}

fn run(program: &Path, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    // As typed: clap names the program after argv[0] in its usage lines.
    Command::new(program)
        .arg0("scar")
        .args(args)
        .env("SCAR_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_other_command_line_is_answered_by_scar_full() {
    let (scar, full) = binaries();
    for args in [&["--version"][..], &["cache", "--help"], &["run", "--help"]] {
        let (launched, direct) = (run(&scar, args), run(&full, args));
        assert!(launched.status.success(), "{args:?}: {}", text(&launched));
        assert_eq!(launched.stdout, direct.stdout, "{args:?}");
    }
    let bad = run(&scar, &["run", "--bogus", "img"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "clap's usage error: {}",
        text(&bad)
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--bogus"),
        "{}",
        text(&bad)
    );
}

/// A copy of `scar` alone (no `scar-full` beside it) starts a cached image and a `--rootfs`, and
/// names `scar-full` when a command line needs it; beside `scar-full` it pulls.
#[test]
fn a_cached_image_starts_without_scar_full_and_a_pull_is_handed_to_it() {
    let (scar, _) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("alone").join("scar");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::copy(&scar, &lone).unwrap();
    let root = dir.path().join("root");
    images::busybox_root(&root).unwrap();
    let layout = dir.path().join("layout");
    let options = LayoutOptions {
        tag: "v1".into(),
        env: vec!["PATH=/bin".into()],
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "echo from the image; exit 7".into(),
        ],
        ..LayoutOptions::default()
    };
    write_from_dir(&root, &layout, &options).unwrap();
    let cache = dir.path().join("cache");
    let cache_arg = cache.display().to_string();
    let image = format!("oci:{}:v1", layout.display());
    let line = [
        "run",
        "--engine",
        "namespace",
        "--cache-dir",
        &cache_arg,
        &image,
    ];

    let refused = run(&lone, &line);
    assert_eq!(refused.status.code(), Some(127), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("scar-full")
            && stderr.contains(&*lone.with_file_name("scar-full").to_string_lossy()),
        "names the missing binary and where it was looked for: {}",
        text(&refused)
    );
    let unpacked = std::fs::read_dir(cache.join("rootfs")).map_or(0, Iterator::count);
    assert_eq!(unpacked, 0, "nothing was pulled by the lone launcher");

    let pulled = run(&scar, &line);
    assert_eq!(pulled.status.code(), Some(7), "{}", text(&pulled));
    assert_eq!(String::from_utf8_lossy(&pulled.stdout), "from the image\n");

    let cached = run(&lone, &line);
    assert_eq!(cached.status.code(), Some(7), "{}", text(&cached));
    assert_eq!(String::from_utf8_lossy(&cached.stdout), "from the image\n");

    let root_arg = root.display().to_string();
    let plain = run(
        &lone,
        &[
            "run",
            "--engine",
            "namespace",
            "--rootfs",
            &root_arg,
            "--",
            "sh",
            "-c",
            "id -u",
        ],
    );
    assert_eq!(
        (
            plain.status.code(),
            String::from_utf8_lossy(&plain.stdout).as_ref()
        ),
        (Some(0), "0\n"),
        "{}",
        text(&plain)
    );
}

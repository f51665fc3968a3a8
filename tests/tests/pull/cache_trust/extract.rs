//! Extraction never writes outside the cache (#17 items 1 and 4, and the quota).
//!
//! - A directory swapped for a symlink to a real host directory, after entries below it were
//!   recorded (same layer, next layer, and after a whiteout): the deferred directory metadata
//!   (mode 0777, owner 0, times) must not reach the host directory through the symlink.
//! - PAX `SCHILY.xattr.*` records: only `user.*` is applied, `security.capability` and
//!   `trusted.*` are dropped with one log line.
//! - The cache cap counts file-system blocks: 100,000 one-byte files are about 400 MiB of
//!   blocks, not 100 kB.
//!
//! Each hostile image is served by the real CNCF registry and pulled as root (in process) and
//! as uid 993 by the static `scar pull` in the Lambda simulator (`SCAR_E2E_DIST`), with the
//! host directories bound in read-write so that anything followed would show.
//!
//! Run: `cargo test -p scar-e2e --test pull cache_trust::extract::`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use scar_e2e::Registry;
use scar_e2e::cache::assert_no_image_left;
use scar_e2e::lambda_sim::{LambdaSim, SCAR_DIR, shell_quote};
use scar_e2e::oci::{Compression, Image, ImageBuilder, LayerBuilder, Pusher};
use scar_rootfs::options::PullOptions;

/// The Lambda sandbox user.
const SBX_UID: u32 = 993;
/// The mode the hostile image gives `evil/sub`, which must never reach the host.
const HOSTILE_MODE: u32 = 0o777;
/// The mode and mtime the host directories have, distinct from the image's.
const HOST_MODE: u32 = 0o750;
const HOST_MTIME: u64 = 1_000_000_000;

fn options(cache: &Path, host: &str) -> PullOptions {
    let mut o = PullOptions::new(cache);
    o.insecure_registries = vec![host.to_owned()];
    o
}

/// A directory owned by `uid`, for the sandbox user's cache or as a symlink's target.
fn owned_dir(prefix: &str, uid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).expect("chown (tests run as root)");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// Mode, owner, mtime and ctime of every entry of a tree, and its names.
type Snapshot = Vec<(PathBuf, u32, u32, u32, i64, i64)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).expect("lstat");
        // ctime moves with any change of mode, owner or times (atime would move as we read).
        out.push((
            p.clone(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        ));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    out.sort();
    out
}

/// A real host directory that a hostile symlink points at: `dir/` and `dir/sub/`, mode 0750,
/// owned by `uid` (so that the sandbox user could change them, were the symlink followed), old
/// times.
struct Target {
    dir: tempfile::TempDir,
    before: Snapshot,
}

impl Target {
    fn new(uid: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("scar-swap-target-")
            .tempdir()
            .expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir sub");
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(HOST_MTIME);
        for p in [sub.as_path(), dir.path()] {
            std::os::unix::fs::chown(p, Some(uid), Some(uid)).expect("chown (tests run as root)");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(HOST_MODE)).expect("chmod");
            std::fs::File::open(p)
                .and_then(|f| {
                    f.set_times(
                        std::fs::FileTimes::new()
                            .set_modified(old)
                            .set_accessed(old),
                    )
                })
                .expect("set times");
        }
        let before = snapshot(dir.path());
        Self { dir, before }
    }

    fn assert_unchanged(&self, who: &str) {
        let now = snapshot(self.dir.path());
        assert_eq!(
            now, self.before,
            "{who}: the host directory the image's symlink points at changed (mode {HOSTILE_MODE:o} \
             would be the image's): {now:?}"
        );
    }
}

/// Where the image swaps `evil/` for a symlink.
#[derive(Clone, Copy, Debug)]
enum Swap {
    /// `evil/`, `evil/sub/`, then `evil -> target` in the same layer.
    SameLayer,
    /// `evil -> target` in the next layer.
    NextLayer,
    /// The next layer whites out `evil` and then makes it a symlink.
    AfterWhiteout,
}

fn swap_image(swap: Swap, target: &str) -> Image {
    let dirs = LayerBuilder::new(Compression::Gzip)
        .file("etc/ok", b"ok")
        .dir("evil/")
        .raw(
            "evil/sub/",
            tar::EntryType::Directory,
            HOSTILE_MODE,
            "",
            b"",
        );
    let builder = ImageBuilder::new();
    match swap {
        Swap::SameLayer => builder.layer(dirs.symlink("evil", target).finish()),
        Swap::NextLayer => builder.layer(dirs.finish()).layer(
            LayerBuilder::new(Compression::Gzip)
                .symlink("evil", target)
                .finish(),
        ),
        Swap::AfterWhiteout => builder.layer(dirs.finish()).layer(
            LayerBuilder::new(Compression::Gzip)
                .whiteout("", "evil")
                .symlink("evil", target)
                .finish(),
        ),
    }
    .build()
}

/// `scar pull` (the static one of `./build.sh`) as uid 993 in the Lambda simulator, with
/// `binds` (host dir, sandbox path) read-write; returns its output.
fn sim_pull(
    image: &str,
    registry: &Registry,
    cache: &str,
    binds: &[(&Path, &str)],
    env: &[(&str, &str)],
) -> scar_e2e::lambda_sim::SimOutput {
    let layer = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(layer.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod layer");
    let mut sim = LambdaSim::new(layer.path()).with_scar();
    for (host, path) in binds {
        sim = sim.bind(host, path);
    }
    let mut full = vec![
        ("SCAR_INSECURE_REGISTRIES", registry.host()),
        ("HOME", "/tmp".to_owned()),
    ];
    full.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let full: Vec<(&str, &str)> = full.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let line = format!(
        "{SCAR_DIR}/scar pull {} --cache {cache}",
        shell_quote(image)
    );
    sim.run(&line, &full)
}

fn swap_case(swap: Swap) {
    let registry = Registry::start();
    let tag = format!("{swap:?}").to_lowercase();

    // As root, in process: the symlink points at the host directory by its real path.
    let target = Target::new(4321);
    let name = format!("hostile/swap-{tag}");
    let target_path = target.dir.path().to_str().expect("utf-8 temp dir");
    Pusher::new(&registry.url(), None).image(&name, "root", &swap_image(swap, target_path));
    let cache = tempfile::tempdir().expect("tmp");
    let image = format!("{}/{name}:root", registry.host());
    let p = crate::pull_support::pull_blocking(&image, &options(cache.path(), &registry.host()))
        .unwrap_or_else(|e| panic!("{swap:?} as root: the image is valid, only hostile: {e}"));
    target.assert_unchanged(&format!("{swap:?} as root"));
    let evil = std::fs::read_link(p.root.join("evil")).expect("evil is a symlink in the image");
    assert_eq!(
        evil,
        target.dir.path(),
        "{swap:?}: the symlink is kept verbatim"
    );
    assert_eq!(std::fs::read(p.root.join("etc/ok")).expect("etc/ok"), b"ok");

    // As uid 993 in the simulator: the host directory (owned by 993, so a followed chmod would
    // succeed) is bound read-write at /target, where the image's symlink points.
    let target = Target::new(SBX_UID);
    let cache = owned_dir("scar-swap-cache-", SBX_UID);
    Pusher::new(&registry.url(), None).image(&name, "sandbox", &swap_image(swap, "/target"));
    let out = sim_pull(
        &format!("{}/{name}:sandbox", registry.host()),
        &registry,
        "/cache",
        &[(target.dir.path(), "/target"), (cache.path(), "/cache")],
        &[],
    );
    out.assert_success();
    target.assert_unchanged(&format!("{swap:?} as uid 993 in the Lambda simulator"));
    let root = host_path(&out.stdout, cache.path());
    assert_eq!(
        std::fs::read_link(root.join("evil")).expect("evil is a symlink in the image"),
        Path::new("/target"),
        "{swap:?} as uid 993: {}",
        out.stdout
    );
    scar_rootfs::cache::remove_tree(cache.path()).expect("remove the sandbox's cache");
}

#[test]
fn a_directory_swapped_for_a_symlink_in_the_same_layer_changes_nothing_outside() {
    swap_case(Swap::SameLayer);
}

#[test]
fn a_directory_swapped_for_a_symlink_in_the_next_layer_changes_nothing_outside() {
    swap_case(Swap::NextLayer);
}

#[test]
fn a_directory_whited_out_then_made_a_symlink_changes_nothing_outside() {
    swap_case(Swap::AfterWhiteout);
}

/// The host path of the root that `scar pull` printed (first line) under the sandbox's
/// `/cache`, bound from `cache`.
fn host_path(stdout: &str, cache: &Path) -> PathBuf {
    let printed = stdout.lines().next().unwrap_or_default().trim();
    let rel = Path::new(printed)
        .strip_prefix("/cache")
        .unwrap_or_else(|_| panic!("scar pull printed `{printed}`, not a root under /cache"));
    cache.join(rel)
}

/// `lgetxattr(path, name)`, `None` when absent.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let n = std::ffi::CString::new(name).expect("name");
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and live across the call; buf has buf.len()
    // writable bytes.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (rc >= 0).then(|| buf[..rc as usize].to_vec())
}

/// `cap_setuid+ep` as `setcap` writes it (VFS_CAP_REVISION_2, permitted and effective).
const CAP_SETUID_EP: &[u8] = &[
    1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn xattr_image() -> Image {
    ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .pax(&[
                    ("SCHILY.xattr.security.capability", CAP_SETUID_EP),
                    ("SCHILY.xattr.trusted.x", b"t"),
                    ("SCHILY.xattr.user.ok", b"fine"),
                ])
                .file_mode("usr/bin/ping", 0o755, b"#!/bin/sh\n")
                .finish(),
        )
        .build()
}

/// Only `user.ok` is left on `usr/bin/ping` under `root`.
fn assert_only_user_xattr(root: &Path, who: &str) {
    let ping = root.join("usr/bin/ping");
    assert!(ping.is_file(), "{who}: no {}", ping.display());
    assert_eq!(
        xattr(&ping, "security.capability"),
        None,
        "{who}: file capability kept"
    );
    assert_eq!(xattr(&ping, "trusted.x"), None, "{who}: trusted.x kept");
    assert_eq!(
        xattr(&ping, "user.ok").as_deref(),
        Some(&b"fine"[..]),
        "{who}: user.ok was not applied (the test's cache lives in {}, whose file system must \
         support user extended attributes)",
        root.display()
    );
}

#[test]
fn only_user_extended_attributes_survive_extraction() {
    let registry = Registry::start();
    Pusher::new(&registry.url(), None).image("hostile/xattr", "v1", &xattr_image());
    let image = format!("{}/hostile/xattr:v1", registry.host());

    // As root, in process: root could set security.capability and trusted.*; it must not.
    let cache = tempfile::tempdir().expect("tmp");
    let p = crate::pull_support::pull_blocking(&image, &options(cache.path(), &registry.host()))
        .expect("pull the xattr image as root");
    assert_only_user_xattr(&p.root, "as root");

    // As root through the CLI: the one log line naming what was dropped.
    let cache = tempfile::tempdir().expect("tmp");
    let out = Command::new(scar_e2e::workspace::binary("scar-tools", "scar"))
        .args(["pull", &image, "--cache"])
        .arg(cache.path())
        .env("SCAR_INSECURE_REGISTRIES", registry.host())
        .env_remove("SCAR_LOG")
        .output()
        .expect("run scar pull");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scar pull as root: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("extended attribute"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line about dropped attributes:\n{stderr}"
    );
    assert!(
        lines[0].contains("dropped 2 extended attributes")
            && lines[0].contains("security.capability on usr/bin/ping")
            && lines[0].contains("trusted.x on usr/bin/ping"),
        "{}",
        lines[0]
    );
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_only_user_xattr(&root, "scar pull as root");

    // As uid 993 in the simulator, the cache on a host directory bound read-write: the
    // privileged attributes are dropped (not attempted and refused), user.ok is applied.
    let cache = owned_dir("scar-xattr-cache-", SBX_UID);
    let out = sim_pull(
        &image,
        &registry,
        "/cache",
        &[(cache.path(), "/cache")],
        &[],
    );
    out.assert_success();
    assert!(
        out.stderr.contains("dropped 2 extended attributes"),
        "{}",
        out.stderr
    );
    let root = host_path(&out.stdout, cache.path());
    assert_only_user_xattr(&root, "as uid 993 in the Lambda simulator");
    scar_rootfs::cache::remove_tree(cache.path()).expect("remove the sandbox's cache");
}

/// One layer of `files` one-byte files, 1000 a directory.
fn many_small_files(files: usize) -> Image {
    let mut builder = LayerBuilder::new(Compression::Gzip).without_tar_copy();
    for i in 0..files {
        if i % 1000 == 0 {
            builder = builder.dir(&format!("d{:03}", i / 1000));
        }
        builder = builder.file(&format!("d{:03}/f{:04}", i / 1000, i % 1000), b"x");
    }
    ImageBuilder::new().layer(builder.finish()).build()
}

/// The cap of the quota tests.
const CAP_MIB: u64 = 64;

#[test]
fn a_layer_of_100_000_one_byte_files_cannot_pass_the_cache_cap() {
    let registry = Registry::start();
    Pusher::new(&registry.url(), None).image("hostile/many", "v1", &many_small_files(100_000));
    let image = format!("{}/hostile/many:v1", registry.host());

    let cache = tempfile::tempdir().expect("tmp");
    let mut o = options(cache.path(), &registry.host());
    o.max_cache_bytes = Some(CAP_MIB << 20);
    let err = crate::pull_support::pull_blocking(&image, &o)
        .expect_err("100,000 files take about 400 MiB of blocks: over a 64 MiB cap");
    let text = err.to_string();
    assert!(text.contains("expands past 64 MiB"), "as root: {text}");
    assert_no_image_left(cache.path());

    let cache = owned_dir("scar-quota-cache-", SBX_UID);
    let out = sim_pull(
        &image,
        &registry,
        "/cache",
        &[(cache.path(), "/cache")],
        &[("SCAR_CACHE_MAX_MB", &CAP_MIB.to_string())],
    );
    assert_ne!(
        out.code,
        Some(0),
        "as uid 993: the pull must fail: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("expands past 64 MiB"),
        "as uid 993: {}",
        out.stderr
    );
    assert_no_image_left(cache.path());
    scar_rootfs::cache::remove_tree(cache.path()).expect("remove the sandbox's cache");
}

/// `du -sk` of `dir`, in bytes.
fn du(dir: &Path) -> u64 {
    let out = Command::new("du")
        .arg("-sk")
        .arg(dir)
        .output()
        .expect("run du (coreutils)");
    assert!(
        out.status.success(),
        "du: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("du printed {text}"));
    kib * 1024
}

#[test]
fn an_image_under_the_cap_occupies_no_more_than_the_cap() {
    let registry = Registry::start();
    // 12,000 one-byte files: about 47 MiB of 4 KiB blocks, 12 kB of content.
    Pusher::new(&registry.url(), None).image("quota/under", "v1", &many_small_files(12_000));
    let image = format!("{}/quota/under:v1", registry.host());
    let cache = tempfile::tempdir().expect("tmp");
    let mut o = options(cache.path(), &registry.host());
    o.max_cache_bytes = Some(CAP_MIB << 20);
    let p = crate::pull_support::pull_blocking(&image, &o).expect("12,000 files fit in 64 MiB");
    let used = du(&p.root);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.root.parent().expect("image dir").join("image.json")).expect("record"),
    )
    .expect("image.json");
    let charged = record["size"].as_u64().expect("size in image.json");
    println!(
        "12,000 one-byte files: du {:.1} MiB, charged {:.1} MiB, cap {CAP_MIB} MiB",
        used as f64 / (1 << 20) as f64,
        charged as f64 / (1 << 20) as f64
    );
    assert!(
        used as f64 <= (CAP_MIB << 20) as f64 * 1.03,
        "du {used} passes the cap of {CAP_MIB} MiB by more than 3 %"
    );
    assert!(
        charged >= used,
        "the record charges {charged} bytes, less than the {used} the file system spends"
    );
}

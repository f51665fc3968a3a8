//! Pulling images end to end: images built by the test, pushed to the real CNCF registry (or
//! written as layouts and archives), pulled through `scar_rootfs::pull`, and the resulting root
//! filesystem checked entry by entry. Hostile images must fail with a clear error, write nothing
//! outside the cache, and leave no usable half image behind.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use scar_e2e::Registry;
use scar_e2e::oci::{self, Compression, ImageBuilder, LayerBuilder, Pusher};
use scar_rootfs::image::PreparedImage;
use scar_rootfs::options::{Credentials, PullOptions, PullPolicy};
use scar_rootfs::pull::{self, PullError};

fn options(cache: &Path, registry: &Registry) -> PullOptions {
    let mut o = PullOptions::new(cache);
    o.insecure_registries = vec![registry.host()];
    o
}

fn pull(image: &str, options: &PullOptions) -> Result<PreparedImage, PullError> {
    crate::pull_support::pull_blocking(image, options)
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The cache holds no published image and no half-built one.
fn assert_cache_empty(cache: &Path) {
    for sub in ["rootfs", "tmp"] {
        let dir = cache.join(sub);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} still holds {left:?}", dir.display());
    }
}

fn base_layer() -> LayerBuilder {
    LayerBuilder::new(Compression::Gzip)
        .dir("etc")
        .file("etc/os-release", b"ID=scar-test\n")
        .file("etc/hostname", b"base\n")
        .dir("opt")
        .dir("opt/app")
        .file("opt/app/old.conf", b"old\n")
        .file("opt/app/keep.conf", b"lower\n")
        .dir("bin")
        .file_mode("bin/tool", 0o755, b"#!/bin/sh\necho tool\n")
        .file_mode("bin/suid", 0o4755, b"suid\n")
        .char_device("dev/null")
}

fn layered_image() -> oci::Image {
    let upper = LayerBuilder::new(Compression::Zstd)
        .whiteout("etc", "hostname")
        .opaque("opt/app")
        .file("opt/app/new.conf", b"new\n")
        .hardlink("bin/tool-link", "bin/tool")
        .symlink("bin/sh", "/bin/tool")
        .dir("var")
        .symlink("var/run", "/run")
        .file("var/run/pid", b"42\n")
        .finish();
    let top = LayerBuilder::new(Compression::None)
        .file("etc/motd", b"hello\n")
        .hardlink("etc/motd-link", "etc/motd")
        .raw("ro", tar::EntryType::Directory, 0o555, "", b"")
        .file("ro/inside", b"x\n")
        .finish();
    ImageBuilder::new()
        .layer(base_layer().finish())
        .layer(upper)
        .layer(top)
        .config("Env", serde_json::json!(["PATH=/bin", "A=1"]))
        .config("Cmd", serde_json::json!(["/bin/sh"]))
        .config("WorkingDir", serde_json::json!("/opt/app"))
        .build()
}

fn check_layered_root(root: &Path) {
    assert_eq!(read(root, "etc/os-release"), "ID=scar-test\n");
    assert!(!root.join("etc/hostname").exists(), "whiteout applied");
    assert!(
        !root.join("opt/app/old.conf").exists(),
        "opaque dir hides lower files"
    );
    assert!(
        !root.join("opt/app/keep.conf").exists(),
        "opaque dir hides lower files"
    );
    assert_eq!(read(root, "opt/app/new.conf"), "new\n");
    let tool = std::fs::metadata(root.join("bin/tool")).expect("tool");
    let link = std::fs::metadata(root.join("bin/tool-link")).expect("tool-link");
    assert_eq!(tool.ino(), link.ino(), "hardlink across layers");
    assert_eq!(tool.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::symlink_metadata(root.join("bin/suid"))
            .expect("suid")
            .permissions()
            .mode()
            & 0o7777,
        0o755,
        "setuid dropped"
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).expect("symlink"),
        PathBuf::from("/bin/tool")
    );
    assert_eq!(
        read(root, "run/pid"),
        "42\n",
        "entry under an absolute symlink lands in the root"
    );
    assert!(!root.join("dev/null").exists(), "device nodes are skipped");
    let motd = std::fs::metadata(root.join("etc/motd")).expect("motd");
    assert_eq!(
        motd.ino(),
        std::fs::metadata(root.join("etc/motd-link"))
            .expect("l")
            .ino()
    );
    assert_eq!(motd.mtime(), 1_700_000_000);
    let ro = std::fs::metadata(root.join("ro")).expect("ro");
    assert_eq!(ro.permissions().mode() & 0o777, 0o555);
    assert_eq!(read(root, "ro/inside"), "x\n");
}

#[test]
fn several_layers_with_whiteouts_opaque_dirs_hardlinks_and_symlinks_apply_in_order() {
    let registry = Registry::start();
    let image = layered_image();
    Pusher::new(&registry.url(), None).image("team/layered", "v1", &image);
    let cache = tempfile::tempdir().expect("tmp");
    let reference = format!("{}/team/layered:v1", registry.host());
    let prepared = pull(&reference, &options(cache.path(), &registry)).expect("pull");
    check_layered_root(&prepared.root);
    assert!(prepared.root.starts_with(cache.path()));
    assert_eq!(prepared.config.env, vec!["PATH=/bin", "A=1"]);
    assert_eq!(prepared.config.cmd, vec!["/bin/sh"]);
    assert_eq!(prepared.config.working_dir.as_deref(), Some("/opt/app"));
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    let mut chain = diff_ids[0].clone();
    for d in &diff_ids[1..] {
        chain = oci::digest(format!("{chain} {d}").as_bytes());
    }
    assert_eq!(prepared.chain_id, chain);
}

#[test]
fn a_warm_pull_resolves_from_the_cache_with_the_registry_gone() {
    let registry = Registry::start();
    let image = layered_image();
    Pusher::new(&registry.url(), None).image("team/warm", "v1", &image);
    let cache = tempfile::tempdir().expect("tmp");
    let reference = format!("{}/team/warm:v1", registry.host());
    let opts = options(cache.path(), &registry);
    assert!(
        pull::prepare_cached(&reference, &opts)
            .expect("lookup")
            .is_none(),
        "nothing is cached yet"
    );
    let cold = pull(&reference, &opts).expect("cold pull");
    drop(registry);
    // The synchronous lookup `scar run` makes first finds the same image.
    let cached = pull::prepare_cached(&reference, &opts)
        .expect("lookup")
        .expect("cached");
    assert_eq!((&cached.root, &cached.config), (&cold.root, &cold.config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let warm = runtime
            .block_on(pull::prepare(&reference, &opts))
            .expect("warm pull");
        times.push(t.elapsed());
        assert_eq!(warm.root, cold.root);
        assert_eq!(warm.config, cold.config);
    }
    times.sort();
    println!(
        "warm resolution: median {:?}, max {:?} (bound: 5 ms)",
        times[10], times[19]
    );
    let mut always = opts.clone();
    always.policy = PullPolicy::Always;
    let err = runtime
        .block_on(pull::prepare(&reference, &always))
        .expect_err("always needs the registry");
    assert!(err.to_string().contains("cannot reach registry"), "{err}");
}

#[test]
fn a_multi_arch_index_gives_the_running_platform_or_the_one_asked_for() {
    let registry = Registry::start();
    let amd = ImageBuilder::new()
        .platform("linux", "amd64", None)
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("arch", b"amd64")
                .finish(),
        )
        .build();
    let arm = ImageBuilder::new()
        .platform("linux", "arm64", Some("v8"))
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("arch", b"arm64")
                .finish(),
        )
        .build();
    Pusher::new(&registry.url(), None).index("team/multi", "v1", &[&amd, &arm]);
    let reference = format!("{}/team/multi:v1", registry.host());
    let cache = tempfile::tempdir().expect("tmp");
    let native = pull(&reference, &options(cache.path(), &registry)).expect("pull native");
    let expected = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    assert_eq!(read(&native.root, "arch"), expected);
    for (platform, want) in [
        ("linux/arm64", "arm64"),
        ("linux/arm64/v8", "arm64"),
        ("linux/amd64", "amd64"),
    ] {
        let other = tempfile::tempdir().expect("tmp");
        let mut o = options(other.path(), &registry);
        o.platform = Some(platform.into());
        let p = pull(&reference, &o).expect("pull platform");
        assert_eq!(read(&p.root, "arch"), want, "{platform}");
    }
    let mut o = options(cache.path(), &registry);
    o.platform = Some("linux/s390x".into());
    o.policy = PullPolicy::Always;
    let err = pull(&reference, &o).expect_err("no s390x");
    let text = err.to_string();
    assert!(
        text.contains("no image for linux/s390x") && text.contains("linux/amd64"),
        "{text}"
    );
}

#[test]
fn gzip_zstd_and_plain_layers_with_docker_media_types_extract_alike() {
    let registry = Registry::start();
    let layers = [Compression::Gzip, Compression::Zstd, Compression::None].map(|c| {
        LayerBuilder::new(c)
            .file(&format!("{c:?}.txt"), format!("{c:?}").as_bytes())
            .finish()
    });
    let mut builder = ImageBuilder::new().docker_media_types();
    for l in layers {
        builder = builder.layer(l);
    }
    let image = builder.build();
    Pusher::new(&registry.url(), None).image("team/docker", "v1", &image);
    let cache = tempfile::tempdir().expect("tmp");
    let p = pull(
        &format!("{}/team/docker:v1", registry.host()),
        &options(cache.path(), &registry),
    )
    .expect("pull");
    assert_eq!(read(&p.root, "Gzip.txt"), "Gzip");
    assert_eq!(read(&p.root, "Zstd.txt"), "Zstd");
    assert_eq!(read(&p.root, "None.txt"), "None");
}

#[test]
fn a_basic_auth_registry_needs_credentials_and_says_which_variables_to_set() {
    let registry = Registry::start_with_basic_auth("scar", "s3cret");
    let image = layered_image();
    Pusher::with_basic(&registry.url(), "scar", "s3cret").image("team/private", "v1", &image);
    let reference = format!("{}/team/private:v1", registry.host());
    let cache = tempfile::tempdir().expect("tmp");
    let mut o = options(cache.path(), &registry);
    let err = pull(&reference, &o).expect_err("anonymous pull must fail");
    let text = err.to_string();
    assert!(
        text.contains("answered 401") && text.contains("SCAR_REGISTRY_USERNAME"),
        "{text}"
    );
    o.credentials = Some(Credentials {
        username: "scar".into(),
        password: "wrong".into(),
    });
    let err = pull(&reference, &o).expect_err("wrong password must fail");
    assert!(
        err.to_string().contains("check SCAR_REGISTRY_USERNAME"),
        "{err}"
    );
    o.credentials = Some(Credentials {
        username: "scar".into(),
        password: "s3cret".into(),
    });
    let p = pull(&reference, &o).expect("pull with credentials");
    check_layered_root(&p.root);
}

#[test]
fn oci_layouts_oci_archives_and_docker_archives_are_sources_too() {
    let image = layered_image();
    let work = tempfile::tempdir().expect("tmp");
    let layout = work.path().join("layout");
    let other = ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("other", b"o")
                .finish(),
        )
        .build();
    oci::write_layout(&layout, &[("v1", &image), ("v2", &other)]);
    let archive = work.path().join("image.tar");
    oci::tar_dir(&layout, &archive);
    let docker = work.path().join("docker.tar");
    oci::write_docker_archive(&docker, "team/app:v1", &image);
    let cache = tempfile::tempdir().expect("tmp");
    let opts = PullOptions::new(cache.path());
    let v1 = format!("oci:{}:v1", layout.display());
    assert!(pull::prepare_cached(&v1, &opts).expect("lookup").is_none());
    let from_dir = pull(&v1, &opts).expect("oci dir");
    check_layered_root(&from_dir.root);
    let cached = pull::prepare_cached(&v1, &opts)
        .expect("lookup")
        .expect("a layout already extracted is found without an async runtime");
    assert_eq!(cached.root, from_dir.root);
    let second = pull(&format!("oci:{}:v2", layout.display()), &opts).expect("oci dir v2");
    assert_eq!(read(&second.root, "other"), "o");
    let err = pull(&format!("oci:{}", layout.display()), &opts).expect_err("two images, no tag");
    assert!(err.to_string().contains("add :<tag>"), "{err}");
    let err = pull(&format!("oci:{}:v9", layout.display()), &opts).expect_err("no such tag");
    assert!(err.to_string().contains("v1, v2"), "{err}");
    // Same layers, same ChainID: the archive resolves to the already extracted root.
    let from_archive =
        pull(&format!("oci-archive:{}:v1", archive.display()), &opts).expect("oci archive");
    assert_eq!(from_archive.root, from_dir.root);
    let fresh = tempfile::tempdir().expect("tmp");
    let from_archive = pull(
        &format!("oci-archive:{}:v1", archive.display()),
        &PullOptions::new(fresh.path()),
    )
    .expect("oci archive, cold");
    check_layered_root(&from_archive.root);
    let fresh = tempfile::tempdir().expect("tmp");
    let from_docker = pull(
        &format!("docker-archive:{}", docker.display()),
        &PullOptions::new(fresh.path()),
    )
    .expect("docker archive");
    check_layered_root(&from_docker.root);
    assert_eq!(from_docker.chain_id, from_dir.chain_id);
}

/// `scar` of this workspace, built once per test process.
fn scar() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| scar_e2e::workspace::binary("scar-tools", "scar"))
}

#[test]
fn scar_pull_extracts_as_an_unprivileged_user_and_scar_cache_lists_and_removes() {
    let registry = Registry::start();
    let image = layered_image();
    Pusher::new(&registry.url(), None).image("team/nonroot", "v1", &image);
    let reference = format!("{}/team/nonroot:v1", registry.host());
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir cache");
    let scar = scar();
    let is_root = nix::unistd::geteuid().is_root();
    // The cache is the unprivileged user's own (scar refuses one that another uid owns or
    // others may write), so every command below runs as that user.
    if is_root {
        std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).expect("chown cache");
    }
    let as_user = || {
        if is_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(scar);
            c
        } else {
            Command::new(scar)
        }
    };
    let out = as_user()
        .args(["pull", &reference, "--cache"])
        .arg(&cache)
        .env("SCAR_INSECURE_REGISTRIES", registry.host())
        .output()
        .expect("run scar pull");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scar pull failed: {stderr}");
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    check_layered_root(&root);
    if is_root {
        assert_eq!(
            std::fs::metadata(root.join("etc/motd"))
                .expect("motd")
                .uid(),
            65534
        );
    }
    assert!(
        stderr.contains("3 layers") && stderr.contains("MiB downloaded"),
        "{stderr}"
    );
    let ls = as_user()
        .args(["cache", "ls", "--cache"])
        .arg(&cache)
        .output()
        .expect("ls");
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(listing.contains("team/nonroot:v1"), "{listing}");
    let rm = as_user()
        .args(["cache", "rm", &reference, "--cache"])
        .arg(&cache)
        .output()
        .expect("rm");
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(!root.exists());
    let gc = as_user()
        .args(["cache", "gc", "--cache"])
        .arg(&cache)
        .output()
        .expect("gc");
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert_cache_empty(&cache);
}

#[test]
fn kept_blobs_rebuild_an_evicted_image_without_downloading_its_layers_again() {
    use scar_e2e::fault::{Fault, FaultProxy};
    let registry = Registry::start();
    let image = layered_image();
    Pusher::new(&registry.url(), None).image("team/kept", "v1", &image);
    // A proxy that injects nothing: it only records which requests reach the registry.
    let proxy = FaultProxy::start(&registry.host(), Fault::DropAfter { bytes: 0 }, "never", 0);
    let reference = format!("{}/team/kept:v1", proxy.host());
    let cache = tempfile::tempdir().expect("tmp");
    let mut o = PullOptions::new(cache.path());
    o.insecure_registries = vec![proxy.host()];
    o.keep_blobs = true;
    let first = pull(&reference, &o).expect("first pull");
    for layer in &image.layers {
        let kept = cache
            .path()
            .join("blobs/sha256")
            .join(&layer.blob.digest()[7..]);
        assert_eq!(std::fs::read(&kept).expect("kept blob"), layer.blob.bytes);
    }
    let store = scar_rootfs::cache::Cache::open(cache.path()).expect("cache");
    let chain: scar_rootfs::digest::Digest = first.chain_id.parse().expect("digest");
    store.remove_image(&chain).expect("remove image");
    assert!(!first.root.exists());
    let before = proxy.requests().len();
    let second = pull(&reference, &o).expect("second pull");
    check_layered_root(&second.root);
    let layer_requests: Vec<String> = proxy.requests()[before..]
        .iter()
        .filter(|r| image.layers.iter().any(|l| r.contains(&l.blob.digest())))
        .cloned()
        .collect();
    assert!(
        layer_requests.is_empty(),
        "layers came from the cache: {layer_requests:?}"
    );
}

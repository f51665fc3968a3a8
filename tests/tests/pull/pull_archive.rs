//! End to end: `oci-archive:s3://bucket/key[:tag]` and `docker-archive:s3://bucket/key` image
//! sources. Archives made by `skopeo copy` (and by the harness's writers) from images built in
//! test code are put in the real S3-compatible server (s3s-fs, SigV4 checked), then pulled
//! through `scar_rootfs::pull::prepare` and through the `bootstrap` serving one S3 invocation.
//! A missing key and a truncated archive must fail with a clear error that names the object,
//! leaving no image, no half-built tree and no downloaded archive in the cache.
//!
//! Run: `cargo test -p scar-e2e --test pull pull_archive::` (as root for the bootstrap tests; needs
//! skopeo, busybox-static and the PyPI package cargo-lambda).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bootstrap_support::{BUCKET, Function};
use scar_e2e::S3Server;
use scar_e2e::oci;
use scar_rootfs::image::PreparedImage;
use scar_rootfs::options::PullOptions;
use scar_rootfs::pull::PullError;

/// The bucket the archives live in.
const IMAGES: &str = "scar-images";
/// A file only the test image has.
const MARKER: &[u8] = b"from an archive in S3\n";
/// Copies the image's marker and the upper-cased input to outputs named after the input.
const SCRIPT: &str = r#"name=$(basename "$SCAR_INPUT_FILE")
cat /etc/scar-marker > "$SCAR_OUTPUT_DIR/$name.marker"
tr a-z A-Z < "$SCAR_INPUT_FILE" > "$SCAR_OUTPUT_DIR/$name"
"#;

fn test_image() -> oci::Image {
    oci::busybox_image(&[("etc/scar-marker", MARKER)])
}

fn prepare(image: &str, options: &PullOptions) -> Result<PreparedImage, PullError> {
    crate::pull_support::pull_blocking(image, options)
}

fn options(cache: &Path, s3: &S3Server) -> PullOptions {
    let mut options = PullOptions::new(cache);
    options.s3 = Some(s3.client().into());
    options
}

/// `skopeo copy` of the OCI layout `layout:tag` to `dest` (`oci-archive:...`,
/// `docker-archive:...`): archives as a third-party tool writes them.
fn skopeo_copy(layout: &Path, tag: &str, dest: &str) {
    let output = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(dest)
        .output()
        .unwrap_or_else(|err| panic!("cannot run skopeo (apt-get install skopeo): {err}"));
    assert!(
        output.status.success(),
        "skopeo copy to {dest}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An OCI archive and a docker-archive of [`test_image`], written by skopeo into `dir`.
fn skopeo_archives(dir: &Path) -> (PathBuf, PathBuf) {
    let layout = dir.join("layout");
    oci::write_layout(&layout, &[("v1", &test_image())]);
    let oci_archive = dir.join("oci.tar");
    let docker_archive = dir.join("docker.tar");
    skopeo_copy(
        &layout,
        "v1",
        &format!("oci-archive:{}:v1", oci_archive.display()),
    );
    skopeo_copy(
        &layout,
        "v1",
        &format!("docker-archive:{}:team/app:v1", docker_archive.display()),
    );
    (oci_archive, docker_archive)
}

/// The root holds the image's files: busybox, its applet links, the marker of the top layer.
fn check_root(root: &Path) {
    assert_eq!(
        std::fs::read(root.join("etc/scar-marker")).expect("marker"),
        MARKER
    );
    let busybox = std::fs::metadata(root.join("bin/busybox")).expect("busybox");
    assert!(busybox.len() > 100_000, "{busybox:?}");
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).expect("sh link"),
        Path::new("busybox")
    );
}

/// Entries of `dir`, empty when it does not exist.
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// No published image, no half-built tree, no downloaded archive left in the cache.
fn assert_nothing_cached(cache: &Path) {
    for sub in ["rootfs", "tmp", "ingest", "refs"] {
        let left = entries(&cache.join(sub));
        assert!(left.is_empty(), "{sub}/ still holds {left:?}");
    }
}

#[test]
fn skopeo_made_oci_and_docker_archives_in_s3_are_pulled_into_the_cache() {
    let work = tempfile::tempdir().expect("tempdir");
    let (oci_archive, docker_archive) = skopeo_archives(work.path());
    let s3 = S3Server::start();
    s3.create_bucket(IMAGES);
    s3.put_file(IMAGES, "archives/app oci.tar", &oci_archive);
    s3.put_file(IMAGES, "archives/app-docker.tar", &docker_archive);

    let cache = work.path().join("cache-oci");
    let opts = options(&cache, &s3);
    let reference = format!("oci-archive:s3://{IMAGES}/archives/app oci.tar:v1");
    let image = prepare(&reference, &opts).expect("pull the OCI archive from S3");
    check_root(&image.root);
    assert!(image.root.starts_with(&cache), "{}", image.root.display());
    assert_eq!(image.config.env, ["PATH=/bin"]);
    // The downloaded archive is gone once the layers are extracted.
    assert_eq!(entries(&cache.join("ingest")), Vec::<PathBuf>::new());
    // The resolution of an S3 archive is remembered: a warm pull needs no S3 at all.
    drop(s3);
    let warm = prepare(&reference, &opts).expect("warm pull with S3 gone");
    assert_eq!(warm.root, image.root);

    let s3 = S3Server::start();
    s3.create_bucket(IMAGES);
    s3.put_file(IMAGES, "archives/app-docker.tar", &docker_archive);
    let cache = work.path().join("cache-docker");
    let reference = format!("docker-archive:s3://{IMAGES}/archives/app-docker.tar");
    let from_docker =
        prepare(&reference, &options(&cache, &s3)).expect("pull the docker-archive from S3");
    check_root(&from_docker.root);
    assert_eq!(entries(&cache.join("ingest")), Vec::<PathBuf>::new());
    // Same layers, same ChainID, whichever archive carried them.
    assert_eq!(from_docker.chain_id, image.chain_id);
}

#[test]
fn a_missing_archive_key_fails_naming_the_bucket_and_key_and_caches_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start();
    s3.create_bucket(IMAGES);
    for reference in [
        format!("oci-archive:s3://{IMAGES}/nowhere/app.tar:v1"),
        format!("docker-archive:s3://{IMAGES}/nowhere/app.tar"),
    ] {
        let cache = work.path().join("cache");
        let err = prepare(&reference, &options(&cache, &s3))
            .expect_err("a missing key must fail")
            .to_string();
        println!("{reference}: {err}");
        assert!(
            err.contains(&format!("s3://{IMAGES}/nowhere/app.tar")),
            "{err}"
        );
        assert!(
            err.contains("NoSuchKey") && err.contains("does not exist"),
            "the error does not say the object is missing: {err}"
        );
        // One line for a person, not the SDK's debug dump.
        assert!(!err.contains("ServiceError"), "{err}");
        assert_nothing_cached(&cache);
    }
}

/// An OCI archive of `layout` with its small files first and the biggest blob last, the way
/// a streaming writer might order it: every entry but the last is intact when it is cut.
fn small_files_first_archive(layout: &Path, out: &Path) {
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    let mut dirs = vec![layout.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in entries(&dir) {
            if entry.is_dir() {
                dirs.push(entry);
            } else {
                files.push((std::fs::metadata(&entry).expect("stat").len(), entry));
            }
        }
    }
    files.sort();
    let mut tar = tar::Builder::new(std::fs::File::create(out).expect("create archive"));
    for (_, file) in &files {
        let name = file.strip_prefix(layout).expect("inside the layout");
        tar.append_path_with_name(file, name).expect("append");
    }
    tar.finish().expect("finish archive");
}

/// Offset and length of the data of the biggest entry of a tar.
fn biggest_entry(archive: &Path) -> (u64, u64) {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).expect("open archive"));
    tar.entries_with_seek()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            (e.raw_file_position(), e.size())
        })
        .max_by_key(|&(_, size)| size)
        .expect("a non-empty archive")
}

#[test]
fn truncated_archives_in_s3_fail_clearly_and_leave_no_half_image() {
    let work = tempfile::tempdir().expect("tempdir");
    let (oci_archive, docker_archive) = skopeo_archives(work.path());
    let ordered = work.path().join("ordered.tar");
    small_files_first_archive(&work.path().join("layout"), &ordered);
    let s3 = S3Server::start();
    s3.create_bucket(IMAGES);
    for (kind, archive, tag) in [
        ("oci-archive", &oci_archive, ":v1"),
        ("docker-archive", &docker_archive, ""),
        ("oci-archive", &ordered, ":v1"),
    ] {
        let bytes = std::fs::read(archive).expect("read archive");
        // Cut in the middle of the biggest entry (the busybox layer).
        let (offset, size) = biggest_entry(archive);
        let cut = (offset + size / 2) as usize;
        let key = format!(
            "cut/{}-{cut}.tar",
            archive.file_stem().unwrap().to_string_lossy()
        );
        s3.put_object(IMAGES, &key, &bytes[..cut]);
        let reference = format!("{kind}:s3://{IMAGES}/{key}{tag}");
        let cache = work.path().join(format!("cache-{cut}"));
        let err = prepare(&reference, &options(&cache, &s3))
            .expect_err("a truncated archive must fail")
            .to_string();
        println!("{reference} ({cut} of {} bytes): {err}", bytes.len());
        assert!(
            err.contains(&format!("s3://{IMAGES}/{key}")),
            "the error does not name the archive: {err}"
        );
        assert!(err.contains("truncated"), "{err}");
        assert!(!err.contains("/ingest/"), "a temporary path in: {err}");
        assert_nothing_cached(&cache);
    }
}

/// Start a function whose image is `image` (an archive in the [`IMAGES`] bucket, which the
/// caller fills after the start), without prefetch: the archive is put after the start.
fn archive_function(image: &str) -> Function {
    let function = Function::spec()
        .env("SCAR_IMAGE", image)
        .env("SCAR_PREFETCH", "false")
        .env("SCAR_SCRIPT", SCRIPT)
        .start();
    function.s3.create_bucket(IMAGES);
    function
}

/// One S3 invocation of `function`: the outputs are the marker and the upper-cased input.
fn check_invocation(function: &Function, image: &str) {
    function
        .s3
        .put_object(BUCKET, "in/note.txt", b"hello archive\n");
    let result = function.invoke_s3(&["in/note.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(result.body["image"], image, "{}", result.body);
    assert_eq!(
        result.body["outputs"],
        serde_json::json!([
            "s3://scar-in/output/note.txt",
            "s3://scar-in/output/note.txt.marker"
        ]),
        "{}",
        result.body
    );
    assert_eq!(
        function.s3.get_object(BUCKET, "output/note.txt").as_deref(),
        Some(&b"HELLO ARCHIVE\n"[..])
    );
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/note.txt.marker")
            .as_deref(),
        Some(MARKER)
    );
}

#[test]
fn the_bootstrap_runs_an_s3_event_in_an_oci_archive_image_read_from_s3() {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    oci::write_layout(&layout, &[("v1", &test_image())]);
    let archive = work.path().join("image.tar");
    oci::tar_dir(&layout, &archive);
    let image = format!("oci-archive:s3://{IMAGES}/lambda/image.tar:v1");
    let function = archive_function(&image);
    function.s3.put_file(IMAGES, "lambda/image.tar", &archive);
    check_invocation(&function, &image);
}

#[test]
fn the_bootstrap_runs_an_s3_event_in_a_docker_archive_image_read_from_s3() {
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("image.tar");
    oci::write_docker_archive(&archive, "team/app:v1", &test_image());
    let image = format!("docker-archive:s3://{IMAGES}/lambda/docker image.tar");
    let function = archive_function(&image);
    function
        .s3
        .put_file(IMAGES, "lambda/docker image.tar", &archive);
    check_invocation(&function, &image);
}

#[test]
fn an_object_that_is_not_an_archive_fails_naming_it_and_caches_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start();
    s3.create_bucket(IMAGES);
    // A zip (what a user may upload by mistake): not a tar at all.
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend((0..4096u32).map(|i| (i * 7 % 251) as u8));
    s3.put_object(IMAGES, "wrong/image.zip", &zip);
    for reference in [
        format!("oci-archive:s3://{IMAGES}/wrong/image.zip"),
        format!("docker-archive:s3://{IMAGES}/wrong/image.zip"),
    ] {
        let cache = work.path().join("cache");
        let err = prepare(&reference, &options(&cache, &s3))
            .expect_err("a zip is not an image archive")
            .to_string();
        println!("{reference}: {err}");
        assert!(
            err.contains(&format!("s3://{IMAGES}/wrong/image.zip")),
            "the error does not name the object: {err}"
        );
        assert!(err.contains("not a plain tar file"), "{err}");
        assert!(!err.contains("/ingest/"), "a temporary path in: {err}");
        assert_nothing_cached(&cache);
    }
}

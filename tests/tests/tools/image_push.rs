//! `scar image push` end to end (#21): an OCI layout image (`scar_tools::oci`) pushed by the
//! real `scar` to the real S3-compatible test server (s3s-fs, SigV4 checked) and to a file.
//! The object's tail parses, its index carries the image's config, the printed name is pinned
//! to the digest of the index bytes, the file and the S3 object are the same bytes, the pinned
//! name pulls the image back; a missing bucket fails naming it and leaves no temporary file; an
//! image of more than 64 MiB goes up as a multipart upload (time and ratio printed), and one
//! whose upload fails midway is aborted, leaving nothing in S3.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use scar_e2e::S3Server;
use scar_rootfs::digest::Digest;
use scar_rootfs::framed::format::{Index, Trailer};
use scar_tools::oci::{LayoutOptions, write_from_dir};

const BUCKET: &str = "images";

/// `scar` of this workspace.
fn scar() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| scar_e2e::workspace::binary("scar-tools", "scar"))
}

/// Bytes that compress somewhat (a third of each byte is noise), seeded by `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                x as u8
            } else {
                b'a' + (i % 7) as u8
            }
        })
        .collect()
}

/// An image: a tree with `big` bytes in one file, packed as an OCI layout with a config.
struct Image {
    dir: tempfile::TempDir,
    reference: String,
}

impl Image {
    fn new(big: usize) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let tree = dir.path().join("tree");
        for (name, body) in [
            ("etc/hello", b"hello from a pushed image\n".as_slice()),
            ("usr/share/doc/readme", b"read me\n"),
        ] {
            let path = tree.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, body).expect("write");
        }
        std::fs::write(tree.join("big.bin"), bytes(7, big)).expect("write big");
        std::os::unix::fs::symlink("hello", tree.join("etc/link")).expect("symlink");
        let options = LayoutOptions {
            tag: "v1".into(),
            env: vec!["PUSHED=yes".into()],
            cmd: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            working_dir: Some("/etc".into()),
            ..LayoutOptions::default()
        };
        let written = write_from_dir(&tree, &dir.path().join("layout"), &options).expect("layout");
        Self {
            reference: written.reference,
            dir,
        }
    }

    fn tree(&self) -> PathBuf {
        self.dir.path().join("tree")
    }
}

/// `scar ARGS` with the server's environment.
fn run(s3: &S3Server, args: &[&str]) -> Output {
    Command::new(scar())
        .args(args)
        .envs(s3.env())
        .output()
        .expect("run scar")
}

/// The `SCAR_IMAGE=` line of a successful push.
fn pushed(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scar image push failed: {stderr}");
    for line in ["frames: ", "tar bytes: ", "compressed bytes: ", "seconds: "] {
        assert!(stderr.contains(line), "no `{line}` in {stderr}");
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("SCAR_IMAGE="))
        .unwrap_or_else(|| panic!("no SCAR_IMAGE= line in {stdout}"))
        .to_owned()
}

/// Trailer, then index, as a reader finds them; returns the index and its bytes' digest.
fn read_index(object: &[u8]) -> (Index, Digest) {
    let trailer = Trailer::decode(object, object.len() as u64).expect("a trailer");
    let at = trailer.index_offset as usize;
    let bytes = &object[at..at + trailer.index_len as usize];
    let index = Index::parse(bytes, &trailer, None).expect("an index");
    (index, Digest::of(bytes))
}

fn ingest_files(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache.join("ingest")) {
        Ok(entries) => entries.map(|e| e.expect("entry").path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn push_to_s3_and_to_a_file_gives_one_object_pinned_by_its_index_digest() {
    let image = Image::new(3 << 20);
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let cache = tempfile::tempdir().expect("tmp");
    let cache_dir = cache.path().to_str().expect("utf-8");
    let dest = format!("s3://{BUCKET}/apps/app.scarf");
    let out = run(
        &s3,
        &[
            "image",
            "push",
            &image.reference,
            &dest,
            "--cache",
            cache_dir,
            "--frame-mib",
            "1",
        ],
    );
    let name = pushed(&out);
    let object = s3
        .get_object(BUCKET, "apps/app.scarf")
        .expect("the object is in S3");
    let (index, digest) = read_index(&object);
    assert_eq!(name, format!("{dest}@{digest}"));
    assert_eq!(index.config.env, vec!["PUSHED=yes".to_string()]);
    assert_eq!(index.config.cmd, vec!["/bin/sh", "-c", "echo hi"]);
    assert_eq!(index.config.working_dir.as_deref(), Some("/etc"));
    assert_eq!(index.source, image.reference);
    assert!(index.frames.len() >= 3, "{} frames", index.frames.len());
    assert!(ingest_files(cache.path()).is_empty(), "temp file left");

    // To a file: the same bytes, under a name pinned to the same digest.
    let file = image.dir.path().join("app.scarf");
    let out = run(
        &s3,
        &[
            "image",
            "push",
            &image.reference,
            "--output",
            file.to_str().expect("utf-8"),
            "--cache",
            cache_dir,
            "--frame-mib",
            "1",
        ],
    );
    assert_eq!(pushed(&out), format!("framed:{}@{digest}", file.display()));
    assert!(
        std::fs::read(&file).expect("the file") == object,
        "file and S3 object differ"
    );
    let leftovers: Vec<_> = std::fs::read_dir(image.dir.path())
        .expect("readdir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The pinned name pulls the image back into another cache.
    let other = tempfile::tempdir().expect("tmp");
    let out = run(
        &s3,
        &[
            "pull",
            &name,
            "--cache",
            other.path().to_str().expect("utf-8"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull of {name}: {stderr}");
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(
        std::fs::read(root.join("big.bin")).expect("big.bin"),
        std::fs::read(image.tree().join("big.bin")).expect("big.bin")
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/link")).expect("link"),
        Path::new("hello")
    );
}

#[test]
fn a_missing_bucket_fails_naming_it_and_leaves_no_temporary_file() {
    let image = Image::new(1 << 20);
    let s3 = S3Server::start();
    let cache = tempfile::tempdir().expect("tmp");
    let out = run(
        &s3,
        &[
            "image",
            "push",
            &image.reference,
            "s3://no-such-bucket/app.scarf",
            "--cache",
            cache.path().to_str().expect("utf-8"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the push succeeded: {stderr}");
    eprintln!("refused: {}", stderr.lines().last().unwrap_or_default());
    assert!(
        stderr.contains("s3://no-such-bucket/app.scarf") && stderr.contains("NoSuchBucket"),
        "{stderr}"
    );
    assert!(ingest_files(cache.path()).is_empty(), "temp file left");

    // Refused at the upload (a wrong secret; the bucket check lets it try): the image was
    // written to a temporary file in the cache, which is gone.
    s3.create_bucket(BUCKET);
    let out = Command::new(scar())
        .args([
            "image",
            "push",
            &image.reference,
            &format!("s3://{BUCKET}/app.scarf"),
        ])
        .args(["--cache", cache.path().to_str().expect("utf-8")])
        .envs(s3.env())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .expect("run scar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the push succeeded: {stderr}");
    eprintln!("refused: {}", stderr.lines().last().unwrap_or_default());
    assert!(
        stderr.contains(&format!("cannot upload to s3://{BUCKET}/app.scarf")),
        "{stderr}"
    );
    assert!(ingest_files(cache.path()).is_empty(), "temp file left");
    assert!(s3.list_keys(BUCKET, "").is_empty());

    let out = run(
        &s3,
        &["image", "push", &image.reference, "not-s3/app.scarf"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s3://BUCKET/KEY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_image_of_more_than_64_mib_goes_up_in_parts() {
    let image = Image::new(100 << 20);
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let cache = tempfile::tempdir().expect("tmp");
    let cache_dir = cache.path().to_str().expect("utf-8");
    // Pull first, so the push's time is the write and the upload alone.
    let out = run(&s3, &["pull", &image.reference, "--cache", cache_dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dest = format!("s3://{BUCKET}/big.scarf");
    let started = Instant::now();
    let out = run(
        &s3,
        &[
            "image",
            "push",
            &image.reference,
            &dest,
            "--cache",
            cache_dir,
            "--level",
            "1",
        ],
    );
    let took = started.elapsed().as_secs_f64();
    let name = pushed(&out);
    let object = s3.get_object(BUCKET, "big.scarf").expect("the object");
    let (index, digest) = read_index(&object);
    assert_eq!(name, format!("{dest}@{digest}"));
    assert!(index.tar_size() > 100 << 20);
    assert!(
        object.len() as u64 > 64 << 20,
        "not multipart: {}",
        object.len()
    );
    let ok = index.frames.iter().all(|f| {
        let range = &object[f.offset as usize..(f.offset + f.length) as usize];
        f.digest.of_like(range) == f.digest
            && zstd::stream::decode_all(range).is_ok_and(|tar| tar.len() as u64 == f.size)
    });
    assert!(
        ok,
        "a frame is not its digest or does not decode to its size"
    );
    eprintln!(
        "scar image push of {:.0} MiB of tar: {} frames, {:.1} MiB in S3 (ratio {:.2}), {:.2} s ({:.0} MB/s of tar)",
        index.tar_size() as f64 / (1 << 20) as f64,
        index.frames.len(),
        object.len() as f64 / (1 << 20) as f64,
        object.len() as f64 / index.tar_size() as f64,
        took,
        index.tar_size() as f64 / took / 1e6
    );
}

#[test]
fn an_unprivileged_push_reads_the_files_and_directories_an_image_makes_unreadable() {
    const NOBODY: u32 = 65534;
    let image = Image::new(1 << 10);
    // Amazon Linux's /etc/shadow: mode 000. The layout is made as root (which reads it), then
    // pulled and pushed by an unprivileged user, whose pull writes it as its own with mode 000.
    let shadow = image.tree().join("etc/shadow");
    std::fs::write(&shadow, b"root:*:19000::::::\n").expect("write");
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    // Directories of mode 000, one inside the other, and one the owner may search but not list.
    let vault = image.tree().join("vault");
    std::fs::create_dir_all(vault.join("inner")).expect("mkdir");
    std::fs::write(vault.join("inner/key"), b"inner key\n").expect("write");
    std::fs::write(vault.join("note"), b"note\n").expect("write");
    let blind = image.tree().join("blind");
    std::fs::create_dir(&blind).expect("mkdir");
    std::fs::write(blind.join("seen"), b"seen\n").expect("write");
    for file in ["vault/inner/key", "vault/note", "blind/seen"] {
        let path = image.tree().join(file);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let modes = [
        (vault.join("inner"), 0o000),
        (vault.clone(), 0o000),
        (blind.clone(), 0o100),
    ];
    for (dir, mode) in &modes {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    let written = write_from_dir(
        &image.tree(),
        &image.dir.path().join("layout"),
        &LayoutOptions {
            tag: "v1".into(),
            ..LayoutOptions::default()
        },
    )
    .expect("layout");
    scar_e2e::images::make_readable(&image.dir.path().join("layout")).expect("chmod");
    let work = tempfile::tempdir().expect("tmp");
    let root = nix::unistd::geteuid().is_root();
    for dir in [image.dir.path(), work.path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    if root {
        scar_e2e::images::chown_tree(work.path(), NOBODY, NOBODY).expect("chown");
    }
    let file = work.path().join("app.scarf");
    let mut cmd = Command::new(scar());
    cmd.args(["image", "push", &written.reference, "--output"])
        .arg(&file)
        .arg("--cache")
        .arg(work.path().join("cache"))
        .env("HOME", work.path());
    if root {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().expect("run scar");
    pushed(&out);
    let object = std::fs::read(&file).expect("the file");
    let (index, _) = read_index(&object);
    let tar: Vec<u8> = index
        .frames
        .iter()
        .flat_map(|f| {
            let range = &object[f.offset as usize..(f.offset + f.length) as usize];
            zstd::stream::decode_all(range).expect("a frame")
        })
        .collect();
    let mut found = false;
    let mut seen = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(&tar[..]).entries().expect("tar") {
        let mut entry = entry.expect("entry");
        // Owners of an unprivileged pull mean nothing: 0:0.
        assert_eq!(
            (entry.header().uid().ok(), entry.header().gid().ok()),
            (Some(0), Some(0))
        );
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mode = entry.header().mode().expect("mode");
        let mut body = String::new();
        if entry.header().entry_type().is_file()
            && (name.starts_with("vault/") || name.starts_with("blind/"))
        {
            std::io::Read::read_to_string(&mut entry, &mut body).expect("read");
        }
        seen.insert(name, (mode, body));
        if entry.path_bytes().as_ref() == b"etc/shadow" {
            assert_eq!(entry.header().mode().expect("mode"), 0o000);
            let mut body = String::new();
            std::io::Read::read_to_string(&mut entry, &mut body).expect("read");
            assert_eq!(body, "root:*:19000::::::\n");
            found = true;
        }
    }
    assert!(found, "etc/shadow is in the image");
    let entry = |name: &str| seen.get(name).cloned();
    assert_eq!(entry("vault/"), Some((0o000, String::new())), "{seen:#?}");
    assert_eq!(entry("vault/inner/"), Some((0o000, String::new())));
    assert_eq!(
        entry("vault/inner/key"),
        Some((0o644, "inner key\n".into()))
    );
    assert_eq!(entry("vault/note"), Some((0o644, "note\n".into())));
    assert_eq!(entry("blind/"), Some((0o100, String::new())));
    assert_eq!(entry("blind/seen"), Some((0o644, "seen\n".into())));
    // The cached file keeps its mode.
    let cached: Vec<u32> = std::fs::read_dir(work.path().join("cache/rootfs"))
        .expect("the cache")
        .filter_map(|e| std::fs::symlink_metadata(e.ok()?.path().join("root/etc/shadow")).ok())
        .map(|m| m.permissions().mode() & 0o7777)
        .collect();
    assert_eq!(cached, [0o000]);
    // So do the cached directories, inner ones included: their modes were put back.
    let cached_root = std::fs::read_dir(work.path().join("cache/rootfs"))
        .expect("the cache")
        .find_map(|e| Some(e.ok()?.path().join("root")))
        .expect("a cached root");
    for (dir, mode) in &modes {
        let rel = dir.strip_prefix(image.tree()).expect("in the tree");
        let meta = std::fs::symlink_metadata(cached_root.join(rel)).expect("cached");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            *mode,
            "{}",
            rel.display()
        );
    }
}

/// A multipart upload that fails midway is aborted: the push fails naming the destination, and
/// S3 keeps nothing of it (no upload record, no part; an unaborted upload's parts are billed
/// until a lifecycle rule removes them). Part 2 is refused every time it is sent (a `307` from
/// the fault proxy, which the SDK does not retry, or a connection cut while the body is sent,
/// which it retries until its attempts run out); part 1 goes up first.
#[test]
fn a_multipart_upload_that_fails_is_aborted_and_leaves_nothing() {
    use scar_e2e::fault::{Fault, FaultProxy};
    let image = Image::new(100 << 20);
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let upstream = s3.endpoint().trim_start_matches("http://").to_owned();
    let refused = Fault::Redirect {
        base: "http://127.0.0.1:9",
    };
    let proxy = FaultProxy::start(&upstream, refused, "partNumber=2", 100);
    let cache = tempfile::tempdir().expect("tmp");
    let out = Command::new(scar())
        .args(["image", "push", &image.reference])
        .arg(format!("s3://{BUCKET}/big.scarf"))
        .args(["--level", "1", "--cache"])
        .arg(cache.path())
        .envs(s3.env())
        .env("AWS_ENDPOINT_URL_S3", format!("http://{}", proxy.host()))
        .output()
        .expect("run scar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the push failed: {stderr}");
    assert!(
        stderr.contains(&format!("s3://{BUCKET}/big.scarf")) || stderr.contains("big.scarf"),
        "the error names the destination: {stderr}"
    );
    let seen = proxy.seen();
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert!(
        seen.iter()
            .any(|s| s.line.contains("partNumber=1") && !s.faulted),
        "part 1 went up first: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("DELETE") && l.contains("uploadId=")),
        "the upload was aborted: {lines:#?}"
    );
    let mut left = Vec::new();
    let mut dirs = vec![s3.root().to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the S3 root").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                dirs.push(entry.path());
            } else if name.starts_with(".upload") || name.contains("big.scarf") {
                left.push(entry.path());
            }
        }
    }
    assert!(left.is_empty(), "S3 kept {left:?}");
    assert!(s3.get_object(BUCKET, "big.scarf").is_none(), "no object");
}

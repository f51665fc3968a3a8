//! Framed images (#21) end to end: a tree made into the S3 image format (`write_tree`, what
//! `scar image push` runs), put in the real S3-compatible server (s3s-fs, SigV4 checked) and
//! pulled with `scar pull s3://bucket/key`: the tree comes back whole, a warm pull needs no S3, a pin, a flipped byte and a truncated
//! object are refused naming the object with nothing cached, and through a proxy that holds
//! each connection to 40 MB/s the frames come over several connections (times printed). Also an
//! `oci-archive:s3://` of more than 32 MiB, which now downloads as ranges.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use scar_e2e::S3Server;
use scar_e2e::throttle::ThrottleProxy;
use scar_rootfs::digest::Digest;
use scar_rootfs::framed::format::{Index, Trailer};
use scar_rootfs::framed::write::{WriteOptions, write_tree};
use scar_rootfs::image::ImageConfig;

pub(crate) const BUCKET: &str = "images";

/// `scar` of this workspace.
fn scar() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| scar_e2e::workspace::binary("scar-tools", "scar"))
}

/// Bytes that do not repeat (and do not compress), seeded by `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tree of small files, a symlink and `big` bytes of noise (several frames).
fn make_tree(dir: &Path, big: usize) {
    for (name, body) in [
        ("etc/hello", b"hello from a framed image\n".as_slice()),
        ("etc/motd", b"motd\n"),
        ("usr/share/doc/readme", b"read me\n"),
    ] {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    std::fs::write(dir.join("data/big.bin"), noise(1, big)).expect("write big");
    // Text compresses: a file of it makes the frames' sizes differ.
    let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.join("data/text.txt"), text).expect("write text");
    std::os::unix::fs::symlink("hello", dir.join("etc/link")).expect("symlink");
}

/// The framed object of `tree`, as `scar image push` writes it, written to `out`; returns the
/// index digest.
fn write_framed(tree: &Path, out: &Path) -> Digest {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).expect("create the object"));
    let written = write_tree(
        tree,
        &ImageConfig::default(),
        &tree.display().to_string(),
        &mut file,
        &WriteOptions::default(),
    )
    .expect("write the framed image");
    std::io::Write::flush(&mut file).expect("flush the object");
    assert!(
        written.index.frames.len() > 2,
        "{:?}",
        written.index.frames.len()
    );
    written.index_digest
}

/// `scar pull IMAGE --cache CACHE` with the server's environment and `env`.
pub(crate) fn scar_pull(
    image: &str,
    cache: &Path,
    s3_env: &[(String, String)],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(scar());
    cmd.args(["pull", image, "--cache"]).arg(cache);
    cmd.envs(s3_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.envs(env.iter().copied());
    cmd.output().expect("run scar pull")
}

pub(crate) fn pulled_root(out: &Output) -> PathBuf {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scar pull failed: {stderr}");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "scar pull should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every path under `dir` (relative), sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readdir") {
            let path = entry.expect("entry").path();
            out.push(path.strip_prefix(base).expect("prefix").to_owned());
            if path.is_dir() && !path.is_symlink() {
                go(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

/// The pulled root holds the same names, contents and links as the tree.
pub(crate) fn assert_same_tree(tree: &Path, root: &Path) {
    let names = walk(tree);
    assert_eq!(names, walk(root), "the same names");
    for name in names {
        let (a, b) = (tree.join(&name), root.join(&name));
        if a.is_symlink() {
            assert_eq!(std::fs::read_link(&a).ok(), std::fs::read_link(&b).ok());
        } else if a.is_file() {
            assert!(
                std::fs::read(&a).ok() == std::fs::read(&b).ok(),
                "{} differs",
                name.display()
            );
        }
    }
}

fn cached_roots(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("rootfs")).map_or(0, |d| d.count())
}

pub(crate) struct Fixture {
    pub(crate) s3: S3Server,
    pub(crate) tree: tempfile::TempDir,
    pub(crate) object: PathBuf,
    pub(crate) digest: Digest,
    _dir: tempfile::TempDir,
}

/// A tree with `big` bytes of noise, framed, put at `BUCKET/key`.
pub(crate) fn fixture(key: &str, big: usize) -> Fixture {
    let tree = tempfile::tempdir().expect("tmp");
    make_tree(tree.path(), big);
    let dir = tempfile::tempdir().expect("tmp");
    let object = dir.path().join("image.scar");
    let digest = write_framed(tree.path(), &object);
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put_file(BUCKET, key, &object);
    Fixture {
        s3,
        tree,
        object,
        digest,
        _dir: dir,
    }
}

#[test]
fn a_framed_image_in_s3_pulls_whole_and_a_warm_pull_needs_no_s3() {
    let f = fixture("apps/app.scar", 20 << 20);
    let cache = tempfile::tempdir().expect("tmp");
    let image = format!("s3://{BUCKET}/apps/app.scar");
    let started = Instant::now();
    let out = scar_pull(&image, cache.path(), &f.s3.env(), &[]);
    let took = started.elapsed();
    let root = pulled_root(&out);
    assert_same_tree(f.tree.path(), &root);
    assert!(
        root.parent().is_some_and(|p| p.ends_with(f.digest.hex())),
        "the cache key is the index digest: {}",
        root.display()
    );
    // Pinned to the digest it has, the same image (already cached).
    let pinned = format!("{image}@{}", f.digest);
    assert_eq!(
        pulled_root(&scar_pull(&pinned, cache.path(), &f.s3.env(), &[])),
        root
    );
    // Warm: the object is gone and the pull still answers, from the cache alone.
    let env = f.s3.env();
    drop(f.s3);
    let warm = scar_pull(&image, cache.path(), &env, &[]);
    assert_eq!(pulled_root(&warm), root);
    eprintln!(
        "scar pull of a framed image of {:.1} MiB from S3: {:.2} s",
        std::fs::metadata(&f.object).expect("object").len() as f64 / (1 << 20) as f64,
        took.as_secs_f64()
    );
}

#[test]
fn another_pin_a_flipped_byte_and_a_truncated_object_are_refused_and_nothing_is_cached() {
    let f = fixture("apps/app.scar", 10 << 20);
    let cache = tempfile::tempdir().expect("tmp");
    let image = format!("s3://{BUCKET}/apps/app.scar");
    let other = Digest::of(b"another image");
    let err = refused(&scar_pull(
        &format!("{image}@{other}"),
        cache.path(),
        &f.s3.env(),
        &[],
    ));
    assert!(
        err.contains(&image) && err.contains("the object was replaced"),
        "{err}"
    );

    // One byte flipped in the middle of frame 2, in the stored file itself.
    let stored = f.s3.root().join(BUCKET).join("apps/app.scar");
    let mut bytes = std::fs::read(&stored).expect("the stored object");
    let bytes_len = bytes.len() as u64;
    let trailer = Trailer::decode(&bytes, bytes_len).expect("trailer");
    let at = trailer.index_offset as usize;
    let index: Index =
        serde_json::from_slice(&bytes[at..at + trailer.index_len as usize]).expect("index");
    let frame = &index.frames[1];
    bytes[(frame.offset + frame.length / 2) as usize] ^= 0x40;
    std::fs::write(&stored, &bytes).expect("rewrite the stored object");
    let err = refused(&scar_pull(&image, cache.path(), &f.s3.env(), &[]));
    assert!(
        err.contains(&image) && err.contains("frame 2/") && err.contains("corrupt or replaced"),
        "{err}"
    );
    assert_eq!(cached_roots(cache.path()), 0, "nothing published");

    // Cut short: the trailer is gone.
    let whole = std::fs::read(&f.object).expect("object");
    f.s3.put_object(BUCKET, "apps/cut.scar", &whole[..whole.len() / 2]);
    let cut = format!("s3://{BUCKET}/apps/cut.scar");
    let err = refused(&scar_pull(&cut, cache.path(), &f.s3.env(), &[]));
    assert!(err.contains(&cut) && err.contains("trailer"), "{err}");
    // Missing.
    let gone = format!("s3://{BUCKET}/apps/none.scar");
    let err = refused(&scar_pull(&gone, cache.path(), &f.s3.env(), &[]));
    assert!(err.contains(&gone) && err.contains("NoSuchKey"), "{err}");
    assert_eq!(cached_roots(cache.path()), 0, "nothing published");
}

#[test]
fn through_a_40_mb_s_link_per_connection_frames_come_over_several_connections() {
    const RATE: u64 = 40_000_000;
    let f = fixture("apps/big.scar", 40 << 20);
    let size = std::fs::metadata(&f.object).expect("object").len();
    let upstream =
        f.s3.endpoint()
            .trim_start_matches("http://")
            .parse()
            .expect("the server's address");
    let mut times = Vec::new();
    for ranges in ["4", "1"] {
        let throttle = ThrottleProxy::start(upstream, RATE);
        let mut env = f.s3.env();
        for (k, v) in &mut env {
            if k == "AWS_ENDPOINT_URL_S3" {
                *v = format!("http://{}", throttle.addr());
            }
        }
        let cache = tempfile::tempdir().expect("tmp");
        let started = Instant::now();
        let out = scar_pull(
            &format!("s3://{BUCKET}/apps/big.scar"),
            cache.path(),
            &env,
            &[("SCAR_PULL_RANGES", ranges)],
        );
        let took = started.elapsed();
        assert_same_tree(f.tree.path(), &pulled_root(&out));
        let stats = throttle.stats();
        if ranges == "4" {
            assert!(
                stats.peak_open > 1,
                "several connections at once: {stats:?}"
            );
        }
        times.push(took);
    }
    eprintln!(
        "scar pull of a {:.1} MiB framed image through 40 MB/s per connection: 4 ranges {:.2} s, 1 range {:.2} s ({:.2}x)",
        size as f64 / (1 << 20) as f64,
        times[0].as_secs_f64(),
        times[1].as_secs_f64(),
        times[0].as_secs_f64() / times[1].as_secs_f64()
    );
}

#[test]
fn an_oci_archive_of_more_than_32_mib_in_s3_still_pulls() {
    use scar_e2e::oci::{Compression, ImageBuilder, LayerBuilder};
    let big = LayerBuilder::new(Compression::None)
        .without_tar_copy()
        .big_file("data/big.bin", 36 << 20, |offset, buf| {
            buf.copy_from_slice(&noise(offset, buf.len()));
        })
        .finish();
    let image = ImageBuilder::new().layer(big).build();
    let dir = tempfile::tempdir().expect("tmp");
    let layout = dir.path().join("layout");
    scar_e2e::oci::write_layout(&layout, &[("v1", &image)]);
    let archive = dir.path().join("app.tar");
    scar_e2e::oci::tar_dir(&layout, &archive);
    assert!(std::fs::metadata(&archive).expect("archive").len() >= 32 << 20);
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put_file(BUCKET, "archives/app.tar", &archive);
    let cache = tempfile::tempdir().expect("tmp");
    let out = scar_pull(
        &format!("oci-archive:s3://{BUCKET}/archives/app.tar:v1"),
        cache.path(),
        &s3.env(),
        &[("SCAR_PULL_RANGES", "4")],
    );
    let root = pulled_root(&out);
    let file = std::fs::read(root.join("data/big.bin")).expect("big.bin");
    assert_eq!(file.len(), 36 << 20);
    assert!(file[..1 << 20] == noise(0, 1 << 20)[..], "the first MiB");
    assert!(
        file[35 << 20..] == noise(35 << 20, 1 << 20)[..],
        "the last MiB"
    );
}

/// Peak resident memory (`VmHWM`, as GNU time reports it) and wall time of `scar pull IMAGE`
/// into a new cache, with 4 ranges in flight.
fn peak_rss_kib(image: &str, env: &[(String, String)], file: &str, len: u64) -> (u64, f64) {
    let cache = tempfile::tempdir().expect("tmp");
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M"])
        .arg(scar())
        .args(["pull", image, "--cache"])
        .arg(cache.path())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SCAR_PULL_RANGES", "4")
        .output()
        .expect("run scar pull under /usr/bin/time");
    let took = started.elapsed().as_secs_f64();
    let root = pulled_root(&out);
    assert_eq!(std::fs::metadata(root.join(file)).expect("file").len(), len);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"));
    (kib, took)
}

/// The memory of a pull is bounded by its windows (ranges in flight, a decoded frame per core),
/// not by the image: a 300 MiB framed image takes no more than a 24 MiB one (both fill the
/// windows), and with a release build at most 64 MiB in all (a debug binary alone takes some
/// 20 MiB more; the static release binary pulls it at 43 MiB).
#[test]
fn the_pull_of_a_300_mib_framed_image_takes_no_more_memory_than_a_small_one() {
    let small = fixture("apps/small.scar", 24 << 20);
    let (small_kib, _) = peak_rss_kib(
        &format!("s3://{BUCKET}/apps/small.scar"),
        &small.s3.env(),
        "data/big.bin",
        24 << 20,
    );
    drop(small);
    let f = fixture("apps/huge.scar", 300 << 20);
    let size = std::fs::metadata(&f.object).expect("object").len();
    let (kib, took) = peak_rss_kib(
        &format!("s3://{BUCKET}/apps/huge.scar"),
        &f.s3.env(),
        "data/big.bin",
        300 << 20,
    );
    eprintln!(
        "scar pull of a {:.0} MiB framed image from S3: {took:.2} s, peak RSS {:.1} MiB (a 24 MiB one: {:.1} MiB)",
        size as f64 / (1 << 20) as f64,
        kib as f64 / 1024.0,
        small_kib as f64 / 1024.0
    );
    assert!(
        kib <= small_kib + 8 * 1024,
        "peak RSS {kib} KiB for 300 MiB against {small_kib} KiB for 24 MiB"
    );
    if !cfg!(debug_assertions) {
        assert!(kib <= 64 * 1024, "peak RSS {kib} KiB");
    }
}

/// The same files as a registry image (one gzip layer, as `docker push` makes it) and as a
/// framed image in S3, each pulled cold by `scar pull`: the times are printed (the bounds are
/// `scar bench --only cold`'s); both roots must hold the same bytes.
#[test]
fn the_same_files_pulled_from_a_registry_and_as_a_framed_image_are_timed() {
    use scar_e2e::Registry;
    use scar_e2e::oci::{Compression, ImageBuilder, LayerBuilder, Pusher};
    const BIG: u64 = 24 << 20;
    let text: Vec<u8> = (0..700_000)
        .flat_map(|i| format!("{i:08} the quick brown fox jumps over the lazy dog\n").into_bytes())
        .collect();
    let fill = |offset: u64, buf: &mut [u8]| buf.copy_from_slice(&noise(offset, buf.len()));
    let layer = LayerBuilder::new(Compression::Gzip)
        .dir("data")
        .big_file("data/big.bin", BIG, fill)
        .file("data/text.txt", &text)
        .finish();
    let registry = Registry::start();
    Pusher::new(&registry.url(), None).image(
        "team/same",
        "v1",
        &ImageBuilder::new().layer(layer).build(),
    );

    let tree = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(tree.path().join("data")).expect("mkdir");
    let mut big = vec![0u8; BIG as usize];
    for (i, chunk) in big.chunks_mut(1 << 20).enumerate() {
        fill(i as u64 * (1 << 20), chunk);
    }
    std::fs::write(tree.path().join("data/big.bin"), &big).expect("write");
    std::fs::write(tree.path().join("data/text.txt"), &text).expect("write");
    let dir = tempfile::tempdir().expect("tmp");
    let object = dir.path().join("same.scar");
    write_framed(tree.path(), &object);
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put_file(BUCKET, "apps/same.scar", &object);

    let timed = |image: &str, env: &[(&str, &str)]| {
        let cache = tempfile::tempdir().expect("tmp");
        let started = Instant::now();
        let out = scar_pull(image, cache.path(), &s3.env(), env);
        let took = started.elapsed();
        let root = pulled_root(&out);
        let got = std::fs::read(root.join("data/big.bin")).expect("big.bin");
        assert!(got == big, "big.bin of {image}");
        assert!(std::fs::read(root.join("data/text.txt")).expect("text") == text);
        took
    };
    let host = registry.host();
    let from_registry = timed(
        &format!("{host}/team/same:v1"),
        &[("SCAR_INSECURE_REGISTRIES", &host)],
    );
    let framed = timed(&format!("s3://{BUCKET}/apps/same.scar"), &[]);
    // The same object from a file: what the S3 test server's own time is.
    let local = timed(&format!("framed:{}", object.display()), &[]);
    eprintln!(
        "cold scar pull of the same {:.0} MiB of files: registry gzip layer {:.2} s, framed image from S3 {:.2} s ({:.2}x), from a file {:.2} s",
        (BIG as usize + text.len()) as f64 / (1 << 20) as f64,
        from_registry.as_secs_f64(),
        framed.as_secs_f64(),
        framed.as_secs_f64() / from_registry.as_secs_f64(),
        local.as_secs_f64()
    );
}

//! A cache shared by sandboxes (#21): several `scar pull` processes at once on ONE cache
//! directory, as sandboxes mounting the same EFS directory would be, the image served through a
//! proxy that holds each connection to a few MB/s so that a pull lasts a second or two. One
//! process downloads, the others wait for it and use its tree; a warm start of another image
//! is not held up meanwhile; a puller killed or frozen (SIGSTOP, as Lambda freezes a sandbox)
//! mid-pull does not hold up the rest; nothing is left in `tmp/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scar_e2e::Registry;
use scar_e2e::oci::{Compression, ImageBuilder, LayerBuilder, Pusher};
use scar_e2e::throttle::ThrottleProxy;
use sha2::{Digest, Sha256};

/// The big file of the shared image.
const BIG: u64 = 6 << 20;
/// Each connection through the proxy: the image takes about 1.5 s.
const RATE: u64 = 4_000_000;

fn noise(offset: u64, buf: &mut [u8]) {
    let mut x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// The registry with `team/shared:v1` (a plain layer holding `data/big.bin`, `BIG` bytes of
/// noise) and a small `team/other:v1`; the big file's sha256 and the image's blob bytes.
fn registry() -> (Registry, String, u64) {
    let registry = Registry::start();
    let big = LayerBuilder::new(Compression::None)
        .without_tar_copy()
        .big_file("data/big.bin", BIG, noise)
        .finish();
    let blob_bytes = big.blob.bytes.len() as u64;
    let mut expected = vec![0u8; BIG as usize];
    for (i, chunk) in expected.chunks_mut(1 << 20).enumerate() {
        noise(i as u64 * (1 << 20), chunk);
    }
    let sha = hex::encode(Sha256::digest(&expected));
    let shared = ImageBuilder::new().layer(big).build();
    Pusher::new(&registry.url(), None).image("team/shared", "v1", &shared);
    let small = LayerBuilder::new(Compression::Gzip)
        .dir("etc")
        .file("etc/other", b"other\n")
        .finish();
    let other = ImageBuilder::new().layer(small).build();
    Pusher::new(&registry.url(), None).image("team/other", "v1", &other);
    (registry, sha, blob_bytes)
}

/// `scar pull HOST/team/NAME:v1` into `cache`, started now.
fn pull(cache: &Path, host: &str, name: &str, stale: Option<&str>) -> Child {
    let scar = scar_e2e::workspace::binary("scar-tools", "scar");
    let mut cmd = Command::new(scar);
    cmd.arg("pull")
        .arg(format!("{host}/team/{name}:v1"))
        .arg("--cache")
        .arg(cache)
        .arg("--insecure")
        .arg(host)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env_remove("SCAR_LOG")
        .env_remove("SCAR_CACHE_STALE_SECONDS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(stale) = stale {
        cmd.env("SCAR_CACHE_STALE_SECONDS", stale);
    }
    cmd.spawn().expect("start scar pull")
}

/// The root a successful pull printed.
fn root_of(out: &Output, who: &str) -> PathBuf {
    assert!(
        out.status.success(),
        "{who} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until a pull is under way in `cache` (a build in `tmp/`, bytes arriving), then a bit.
fn wait_for_build(cache: &Path) {
    let until = Instant::now() + Duration::from_secs(20);
    while entries(&cache.join("tmp")).is_empty() {
        assert!(
            Instant::now() < until,
            "no pull started building in {cache:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(400));
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).expect("signal the puller");
}

#[test]
fn four_pullers_on_one_cache_download_once_and_a_warm_start_is_not_held_up() {
    let (registry, sha, blob_bytes) = registry();
    let work = tempfile::tempdir().expect("tmp");

    // One pull alone, for the time it takes.
    let alone = ThrottleProxy::start(registry.host().parse().unwrap(), RATE);
    let started = Instant::now();
    let out = pull(
        &work.path().join("alone"),
        &alone.addr().to_string(),
        "shared",
        None,
    )
    .wait_with_output()
    .unwrap();
    let one = started.elapsed();
    root_of(&out, "the single pull");
    let one_bytes = alone.stats().bytes_to_client;

    let cache = work.path().join("cache");
    // Another image, cached before (straight from the registry).
    let warm = pull(&cache, &registry.host(), "other", None)
        .wait_with_output()
        .unwrap();
    root_of(&warm, "the first pull of the other image");

    let proxy = ThrottleProxy::start(registry.host().parse().unwrap(), RATE);
    let host = proxy.addr().to_string();
    let started = Instant::now();
    let mut pullers: Vec<Child> = (0..4)
        .map(|_| pull(&cache, &host, "shared", None))
        .collect();
    wait_for_build(&cache);
    // A warm start of the other image while the pull runs: served at once.
    let warm_started = Instant::now();
    let warm = pull(&cache, &registry.host(), "other", None)
        .wait_with_output()
        .unwrap();
    let warm_took = warm_started.elapsed();
    root_of(&warm, "the warm pull of the other image");
    let still_running = pullers
        .iter_mut()
        .map(|c| c.try_wait().unwrap())
        .filter(Option::is_none)
        .count();
    assert!(
        still_running > 0,
        "the warm start ({warm_took:?}) finished after every puller: it was held up"
    );
    let roots: Vec<PathBuf> = pullers
        .into_iter()
        .enumerate()
        .map(|(i, c)| root_of(&c.wait_with_output().unwrap(), &format!("puller {i}")))
        .collect();
    let four = started.elapsed();
    assert!(roots.iter().all(|r| *r == roots[0]), "{roots:?}");
    assert_eq!(sha256_of(&roots[0].join("data/big.bin")), sha);
    let stats = proxy.stats();
    assert!(
        stats.bytes_to_client >= blob_bytes && stats.bytes_to_client < blob_bytes * 3 / 2,
        "the blob crossed the proxy once: {} bytes through it for a {blob_bytes}-byte blob",
        stats.bytes_to_client
    );
    assert!(
        entries(&cache.join("tmp")).is_empty(),
        "{:?}",
        entries(&cache.join("tmp"))
    );
    println!(
        "4 pullers on one cache: {:.2} s, {:.1} MiB through the proxy ({} connections); one pull alone: {:.2} s, {:.1} MiB; warm start of another image meanwhile: {:.0} ms",
        four.as_secs_f64(),
        stats.bytes_to_client as f64 / 1048576.0,
        stats.connections,
        one.as_secs_f64(),
        one_bytes as f64 / 1048576.0,
        warm_took.as_secs_f64() * 1e3,
    );
}

#[test]
fn a_puller_killed_mid_pull_is_taken_over() {
    let (registry, sha, _) = registry();
    let work = tempfile::tempdir().expect("tmp");
    let cache = work.path().join("cache");
    let proxy = ThrottleProxy::start(registry.host().parse().unwrap(), RATE);
    let host = proxy.addr().to_string();
    let mut first = pull(&cache, &host, "shared", None);
    wait_for_build(&cache);
    let others: Vec<Child> = (0..2)
        .map(|_| pull(&cache, &host, "shared", None))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    first.kill().unwrap();
    first.wait().unwrap();
    for (i, c) in others.into_iter().enumerate() {
        let root = root_of(&c.wait_with_output().unwrap(), &format!("waiter {i}"));
        assert_eq!(sha256_of(&root.join("data/big.bin")), sha);
    }
    let took = started.elapsed();
    // The killed puller's build is all that is left, and no live process holds it.
    let left = entries(&cache.join("tmp"));
    assert!(left.len() <= 1, "{left:?}");
    let scar = scar_e2e::workspace::binary("scar-tools", "scar");
    let gc = Command::new(scar)
        .args(["cache", "gc", "--cache"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(
        entries(&cache.join("tmp")).is_empty(),
        "{:?}",
        entries(&cache.join("tmp"))
    );
    println!(
        "after the puller was killed the others finished in {:.2} s",
        took.as_secs_f64()
    );
}

#[test]
fn a_frozen_puller_is_passed_after_the_stale_limit_and_ends_cleanly_when_thawed() {
    use nix::sys::signal::Signal;
    let (registry, sha, _) = registry();
    let work = tempfile::tempdir().expect("tmp");
    let cache = work.path().join("cache");
    let proxy = ThrottleProxy::start(registry.host().parse().unwrap(), RATE);
    let host = proxy.addr().to_string();
    let frozen = pull(&cache, &host, "shared", Some("2"));
    wait_for_build(&cache);
    signal(&frozen, Signal::SIGSTOP);
    let started = Instant::now();
    let others: Vec<Child> = (0..2)
        .map(|_| pull(&cache, &host, "shared", Some("2")))
        .collect();
    let mut roots = Vec::new();
    for (i, c) in others.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        roots.push(root_of(&out, &format!("waiter {i}")));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("silent"),
            "waiter {i} said why it went on:\n{log}"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "{took:?}: the waiters waited for the stale limit"
    );
    assert_eq!(sha256_of(&roots[0].join("data/big.bin")), sha);
    signal(&frozen, Signal::SIGCONT);
    let out = frozen.wait_with_output().unwrap();
    // Thawed, it either finds the image published and keeps that one, or says what failed.
    if out.status.success() {
        assert_eq!(root_of(&out, "the thawed puller"), roots[0]);
    } else {
        assert!(!out.stderr.is_empty(), "a failure says why");
    }
    assert_eq!(
        sha256_of(&roots[0].join("data/big.bin")),
        sha,
        "the tree is whole"
    );
    assert!(
        entries(&cache.join("tmp")).is_empty(),
        "{:?}",
        entries(&cache.join("tmp"))
    );
    println!(
        "with a puller frozen, the others finished in {:.2} s (stale limit 2 s); thawed, it ended with {}",
        took.as_secs_f64(),
        out.status
    );
}

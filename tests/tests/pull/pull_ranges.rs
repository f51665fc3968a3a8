//! Parallel ranged downloads (#21) end to end: an image with a 40 MiB layer pushed to the real
//! CNCF registry and pulled through a tap (the registry's own access log is off in the test
//! configuration; the tap records each request line with its `Range` header) with
//! `SCAR_PULL_RANGES=4`, then with `SCAR_PULL_RANGES=1` for comparison; and both through a
//! proxy that holds each connection to 40 MB/s (what one connection to S3 or a CDN carries on
//! Lambda), times printed. The big layer is a plain tar: gzip in a debug build would make the
//! test about compression, not the network.

use std::path::Path;
use std::time::{Duration, Instant};

use scar_e2e::Registry;
use scar_e2e::fault::{Fault, FaultProxy};
use scar_e2e::oci::{Compression, ImageBuilder, LayerBuilder, Pusher};
use scar_e2e::throttle::ThrottleProxy;
use scar_rootfs::image::PreparedImage;
use scar_rootfs::options::PullOptions;
use scar_rootfs::registry::settings::{RegistrySettings, SCAR_PULL_RANGES};
use sha2::{Digest, Sha256};

/// The file in the big layer: the layer is this plus its tar header and padding.
const BIG: u64 = 40 << 20;
/// Bytes per range request (`scar_rootfs::registry::plan::PART`).
const PART: u64 = 8 << 20;
/// Bytes of a blob's first range request (`scar_rootfs::registry::plan::FIRST_PART`).
const FIRST: u64 = 1 << 20;

/// Bytes that do not repeat, so a part out of place changes the file.
fn noise(offset: u64, buf: &mut [u8]) {
    let mut x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn sha256_of_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).expect("read the pulled file");
    hex::encode(hasher.finalize())
}

/// Options for a pull through `host` (plain HTTP) with `SCAR_PULL_RANGES=ranges`, read as the
/// bootstrap and `scar run` read it.
fn options(cache: &Path, host: String, ranges: &str) -> PullOptions {
    let mut o = PullOptions::new(cache);
    RegistrySettings::from_env(|name| match name {
        SCAR_PULL_RANGES => Some(ranges.to_owned()),
        "SCAR_INSECURE_REGISTRIES" => Some(host.clone()),
        _ => None,
    })
    .expect("the settings parse")
    .apply(&mut o);
    o
}

/// The blob requests the tap saw for `digest`.
fn blob_requests(proxy: &FaultProxy, digest: &str) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|line| line.contains(&format!("/blobs/{digest}")))
        .collect()
}

/// The pushed image `team/big:v1`: a small gzip layer and a plain one holding `data/big.bin`
/// (`BIG` bytes); returns the big layer's digest and size and the file's sha256.
fn push_big_image(registry: &Registry) -> (String, u64, String) {
    let big = LayerBuilder::new(Compression::None)
        .without_tar_copy()
        .big_file("data/big.bin", BIG, noise)
        .finish();
    let digest = big.blob.digest();
    let size = big.blob.bytes.len() as u64;
    let mut expected = vec![0u8; BIG as usize];
    // `big_file` fills 1 MiB chunks, each seeded by its offset.
    for (i, chunk) in expected.chunks_mut(1 << 20).enumerate() {
        noise(i as u64 * (1 << 20), chunk);
    }
    let expected_sha = hex::encode(Sha256::digest(&expected));
    let small = LayerBuilder::new(Compression::Gzip)
        .dir("etc")
        .file("etc/small", b"small\n")
        .finish();
    let image = ImageBuilder::new().layer(small).layer(big).build();
    Pusher::new(&registry.url(), None).image("team/big", "v1", &image);
    (digest, size, expected_sha)
}

/// Pull `team/big:v1` through `host` into a new cache with `SCAR_PULL_RANGES=ranges`.
fn pull_timed(host: String, ranges: &str) -> (PreparedImage, Duration, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("tmp");
    let reference = format!("{host}/team/big:v1");
    let started = Instant::now();
    let prepared =
        crate::pull_support::pull_blocking(&reference, &options(cache.path(), host, ranges))
            .unwrap_or_else(|err| panic!("pull with SCAR_PULL_RANGES={ranges}: {err}"));
    (prepared, started.elapsed(), cache)
}

#[test]
fn a_layer_over_32_mib_is_pulled_as_concurrent_ranges_and_extracted_whole() {
    let registry = Registry::start();
    let (digest, size, expected_sha) = push_big_image(&registry);

    // Four ranges in flight.
    let proxy = FaultProxy::start(&registry.host(), Fault::Stall { secs: 0 }, "", 0);
    let (prepared, ranged, _cache) = pull_timed(proxy.host(), "4");
    assert_eq!(
        std::fs::read_to_string(prepared.root.join("etc/small")).expect("etc/small"),
        "small\n"
    );
    let file = prepared.root.join("data/big.bin");
    assert_eq!(std::fs::metadata(&file).expect("big.bin").len(), BIG);
    assert_eq!(
        sha256_of_file(&file),
        expected_sha,
        "the file, byte for byte"
    );
    let requests = blob_requests(&proxy, &digest);
    let parts = 1 + (size - FIRST).div_ceil(PART);
    assert_eq!(
        requests.len() as u64,
        parts,
        "one request for the first {FIRST} bytes, then one per {PART}-byte part of {size} bytes: {requests:#?}"
    );
    for i in 0..parts {
        let (start, len) = match i {
            0 => (0, FIRST),
            _ => (FIRST + (i - 1) * PART, PART),
        };
        let end = (start + len).min(size) - 1;
        let range = format!("[range: bytes={start}-{end}]");
        assert!(
            requests
                .iter()
                .any(|line| line.to_ascii_lowercase().ends_with(&range)),
            "no request for {range}: {requests:#?}"
        );
    }

    // One stream, for comparison.
    let proxy = FaultProxy::start(&registry.host(), Fault::Stall { secs: 0 }, "", 0);
    let (prepared, single, _cache) = pull_timed(proxy.host(), "1");
    assert_eq!(
        sha256_of_file(&prepared.root.join("data/big.bin")),
        expected_sha
    );
    let requests = blob_requests(&proxy, &digest);
    assert!(
        requests.len() == 1 && !requests[0].to_ascii_lowercase().contains("range:"),
        "SCAR_PULL_RANGES=1 is one plain request: {requests:#?}"
    );
    eprintln!(
        "pull of a {:.1} MiB layer on loopback: {parts} ranges (1 MiB, then 8 MiB), 4 in flight, {:.2} s; one stream {:.2} s",
        size as f64 / (1 << 20) as f64,
        ranged.as_secs_f64(),
        single.as_secs_f64()
    );
}

/// The same ranged pull as the Lambda sandbox makes it: the static `scar pull` as uid 993 under
/// the simulation (no user namespaces; `prctl`, `ptrace`, `seccomp` and `chroot` refused; a
/// bare read-only root), with `SCAR_PULL_RANGES=4`.
#[test]
fn under_simulated_lambda_a_layer_over_32_mib_is_pulled_as_ranges_and_extracted_whole() {
    use scar_e2e::lambda_sim::{self, LambdaSim, SANDBOX_UID};
    const SIM_CACHE: &str = "/tmp/cache";
    let registry = Registry::start();
    let (digest, size, expected_sha) = push_big_image(&registry);
    let proxy = FaultProxy::start(&registry.host(), Fault::Stall { secs: 0 }, "", 0);
    let cache = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::chown(cache.path(), Some(SANDBOX_UID), Some(SANDBOX_UID))
        .expect("chown the cache to the sandbox's user");
    let layer = lambda_sim::layer_dir();
    let sim = LambdaSim::new(layer.path())
        .with_scar()
        .bind(cache.path(), SIM_CACHE);
    let scar = format!("{}/scar", lambda_sim::SCAR_DIR);
    let host = proxy.host();
    let image = format!("{host}/team/big:v1");
    let out = sim.run_argv(
        &[&scar, "pull", &image, "--cache", SIM_CACHE],
        &[
            ("SCAR_INSECURE_REGISTRIES", host.as_str()),
            ("SCAR_PULL_RANGES", "4"),
        ],
    );
    out.assert_success();
    let printed = out.stdout.lines().next().unwrap_or_default();
    let inside = printed
        .strip_prefix(SIM_CACHE)
        .unwrap_or_else(|| panic!("scar pull printed no root under {SIM_CACHE}: {out:?}"));
    let root = cache.path().join(inside.trim_start_matches('/'));
    assert_eq!(
        sha256_of_file(&root.join("data/big.bin")),
        expected_sha,
        "the file, byte for byte"
    );
    let requests = blob_requests(&proxy, &digest);
    assert_eq!(
        requests.len() as u64,
        1 + (size - FIRST).div_ceil(PART),
        "the layer came as ranges: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|line| line.to_ascii_lowercase().contains("[range: bytes=")),
        "{requests:#?}"
    );
}

#[test]
fn through_a_40_mb_s_link_per_connection_ranges_and_one_stream_are_timed() {
    const RATE: u64 = 40_000_000;
    let registry = Registry::start();
    let (_digest, size, expected_sha) = push_big_image(&registry);
    let upstream = registry.host().parse().expect("the registry's address");
    let mut times = Vec::new();
    for ranges in ["4", "1"] {
        let throttle = ThrottleProxy::start(upstream, RATE);
        let (prepared, took, _cache) = pull_timed(throttle.addr().to_string(), ranges);
        assert_eq!(
            sha256_of_file(&prepared.root.join("data/big.bin")),
            expected_sha
        );
        // Whatever the ranges, no connection carries more than 40 MB/s: the layer alone needs
        // this long over one (a floor only a proxy that does not throttle can miss).
        if ranges == "1" {
            let floor = Duration::from_secs_f64(size as f64 / RATE as f64 * 0.9);
            assert!(
                took >= floor,
                "one stream in {took:?}, under the link's {floor:?}"
            );
        }
        times.push(took);
    }
    eprintln!(
        "pull of a {:.1} MiB layer through 40 MB/s per connection: 4 ranges in flight {:.2} s, one stream {:.2} s ({:.2}x)",
        size as f64 / (1 << 20) as f64,
        times[0].as_secs_f64(),
        times[1].as_secs_f64(),
        times[0].as_secs_f64() / times[1].as_secs_f64()
    );
}

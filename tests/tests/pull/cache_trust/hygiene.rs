//! Time and leftovers, and whose cache it is (#17): a pull past its deadline stops (its thread
//! included), publishes nothing and says how far it got, and the next pull works; the bootstrap
//! reports it as `Scar.ImageError` and its next invocation succeeds; request directories and
//! the cache's work areas that earlier invocations left are swept, read-only ones included; a
//! cache directory of another uid or writable by others is refused with the fix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scar_e2e::Registry;
use scar_e2e::fault::{Fault, FaultProxy};
use scar_e2e::lambda_sim::{LambdaSim, SCAR_DIR, layer_dir};
use scar_e2e::oci::{Compression, Image, ImageBuilder, LayerBuilder, Pusher};
use scar_rootfs::options::PullOptions;
use scar_rootfs::pull::PullError;

/// Compressed size of the big layer: 8 MiB at [`SLOW`] takes 16 s.
const BIG: u64 = 8 << 20;
/// The throttled link: 512 KiB/s.
const SLOW: u64 = 512 << 10;

/// Bytes gzip cannot shrink (so the compressed layer is as big as the file).
fn noise(offset: u64, buf: &mut [u8]) {
    let mut x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// A small first layer (with a static busybox as `/bin/sh` when `shell`) and a big second one;
/// returns the image and the second layer's digest.
fn two_layers(shell: bool) -> (Image, String) {
    let big = LayerBuilder::new(Compression::Gzip)
        .without_tar_copy()
        .big_file("data/big.bin", BIG, noise)
        .finish();
    let digest = big.blob.digest();
    let mut first = LayerBuilder::new(Compression::Gzip).file("etc/first", b"first");
    if shell {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .expect("busybox is missing: apt-get install busybox-static");
        first = first
            .dir("bin")
            .file_mode("bin/busybox", 0o755, &busybox)
            .symlink("bin/sh", "busybox");
    }
    let image = ImageBuilder::new().layer(first.finish()).layer(big).build();
    (image, digest)
}

/// The entries of `cache/<sub>`.
fn entries(cache: &Path, sub: &str) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join(sub))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Everything under `dir`, with sizes: a writer still at work changes it.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = match e.path().symlink_metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_pull_past_its_deadline_stops_writing_publishes_nothing_and_the_next_pull_succeeds() {
    let registry = Registry::start();
    let (image, big) = two_layers(false);
    Pusher::new(&registry.url(), None).image("slow/app", "v1", &image);
    // The big layer's first download crawls; the next pull gets it at full speed.
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::Throttle {
            bytes_per_sec: SLOW,
        },
        &big,
        1,
    );
    let reference = format!("{}/slow/app:v1", proxy.host());
    let cache = tempfile::tempdir().expect("tmp");
    let mut options = PullOptions::new(cache.path());
    options.insecure_registries = vec![proxy.host()];
    options.deadline = Some(Instant::now() + Duration::from_secs(4));

    let started = Instant::now();
    let err = crate::pull_support::pull_blocking(&reference, &options)
        .expect_err("a pull that cannot finish before its deadline must fail");
    let took = started.elapsed();
    assert!(matches!(err, PullError::Deadline(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("pulled 1 of 2 layers"), "{text}");
    assert!(text.contains("MiB, before the deadline"), "{text}");
    assert!(text.contains("nothing was published"), "{text}");
    assert!(
        took < Duration::from_secs(9),
        "the pull stopped {took:?} after it started, its deadline was at 4 s"
    );
    assert_eq!(
        proxy.injected(),
        1,
        "the big layer went through the throttle"
    );

    // Nothing published, no half-built tree, and nobody still writing one.
    let work = [cache.path().join("tmp"), cache.path().join("ingest")];
    let before: Vec<_> = work.iter().map(|d| snapshot(d)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<_> = work.iter().map(|d| snapshot(d)).collect();
    assert_eq!(
        before, after,
        "the work areas still change after the pull returned"
    );
    for sub in ["rootfs", "refs", "tmp"] {
        assert!(
            entries(cache.path(), sub).is_empty(),
            "{sub}/ holds {:?}",
            entries(cache.path(), sub)
        );
    }

    options.deadline = Some(Instant::now() + Duration::from_secs(120));
    let prepared =
        crate::pull_support::pull_blocking(&reference, &options).expect("the next pull succeeds");
    let big_file = std::fs::metadata(prepared.root.join("data/big.bin")).expect("big.bin");
    assert_eq!(big_file.len(), BIG);
    assert_eq!(
        std::fs::read(prepared.root.join("etc/first")).expect("first"),
        b"first"
    );
}

#[test]
fn as_the_lambda_user_scar_pull_stops_at_its_timeout_and_the_next_pull_succeeds() {
    let registry = Registry::start();
    let (image, big) = two_layers(false);
    Pusher::new(&registry.url(), None).image("slow/cli", "v1", &image);
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::Throttle {
            bytes_per_sec: SLOW,
        },
        &big,
        1,
    );
    let pull = format!(
        "{SCAR_DIR}/scar pull {}/slow/cli:v1 --cache /tmp/cache --insecure {}",
        proxy.host(),
        proxy.host()
    );
    let command = format!(
        "{pull} --timeout 3; echo first=$?; ls /tmp/cache/rootfs /tmp/cache/tmp; echo listed; \
         {pull} --timeout 120 && cat $({pull})/etc/first && echo second=ok"
    );
    let layer = layer_dir();
    let out = LambdaSim::new(layer.path()).with_scar().run(&command, &[]);
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(all.contains("pulled 1 of 2 layers"), "{all}");
    assert!(all.contains("before the deadline"), "{all}");
    assert!(!all.contains("first=0"), "the first pull must fail: {all}");
    // Nothing published and no build left between the two pulls.
    let listing = out
        .stdout
        .split("listed")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty() && !l.ends_with(':') && !l.starts_with("first="))
        .filter(|l| !l.starts_with('/'))
        .collect::<Vec<_>>();
    assert!(
        listing.is_empty(),
        "left after the timeout: {listing:?}\n{all}"
    );
    assert!(all.contains("second=ok"), "the next pull succeeds: {all}");
    assert_eq!(
        proxy.injected(),
        1,
        "the big layer went through the throttle"
    );
}

#[test]
fn the_bootstrap_reports_a_pull_past_the_deadline_as_an_image_error_and_the_next_invocation_succeeds()
 {
    let registry = Registry::start();
    let (image, big) = two_layers(true);
    Pusher::new(&registry.url(), None).image("slow/boot", "v1", &image);
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::Throttle {
            bytes_per_sec: SLOW,
        },
        &big,
        1,
    );
    // The emulator's deadline is 600 s away: a margin of 595 s leaves the pull 5 s.
    let function = crate::bootstrap_support::Function::spec()
        .env("SCAR_IMAGE", &format!("{}/slow/boot:v1", proxy.host()))
        .env("SCAR_INSECURE_REGISTRIES", &proxy.host())
        .env("SCAR_PREFETCH", "false")
        .env("SCAR_TIMEOUT_MARGIN", "595")
        .env("SCAR_SCRIPT", "test -s /data/big.bin && echo pulled")
        .start();
    let started = Instant::now();
    let first = function.invoke(&serde_json::json!({"direct": true}));
    let took = started.elapsed();
    let message = function.expect_error(&first, "Scar.ImageError");
    assert!(message.contains("pulled 1 of 2 layers"), "{message}");
    assert!(
        message.contains("before the invocation's deadline"),
        "{message}"
    );
    assert!(
        message.contains("next invocation starts it again"),
        "{message}"
    );
    assert!(
        took < Duration::from_secs(15),
        "the invocation answered after {took:?}; its pull had 5 s"
    );

    let second = function.invoke(&serde_json::json!({"direct": true}));
    assert_eq!(
        second.status,
        200,
        "the next invocation must pull and run: {}\n{}",
        second.body,
        function.log()
    );
    assert!(
        crate::bootstrap_support::response_text(&second.body, "stdout").contains("pulled"),
        "{}",
        second.body
    );
}

/// The error `scar_rootfs` gives for the cache at `dir`.
fn refusal(dir: &Path) -> String {
    let options = PullOptions::new(dir);
    crate::pull_support::pull_blocking("127.0.0.1:9/never/pulled:v1", &options)
        .expect_err("an untrusted cache must be refused")
        .to_string()
}

// As root: chown to another uid only root can do; the unprivileged case is the next test.
#[test]
fn a_cache_of_another_uid_or_writable_by_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test chowns a directory to another uid: run it as root (the tests run as root here)"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    scar_rootfs::cache::Cache::open(&cache).expect("a fresh cache of ours is accepted");

    std::os::unix::fs::chown(&cache, Some(4242), Some(4242)).expect("chown");
    let text = refusal(&cache);
    assert!(text.contains(&cache.display().to_string()), "{text}");
    assert!(text.contains("belongs to uid 4242"), "{text}");
    assert!(
        text.contains("SCAR_CACHE_DIR") && text.contains("chown"),
        "{text}"
    );
    std::os::unix::fs::chown(&cache, Some(0), Some(0)).expect("chown back");

    let rootfs = cache.join("rootfs");
    std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let text = refusal(&cache);
    assert!(text.contains(&rootfs.display().to_string()), "{text}");
    assert!(text.contains("mode 0777"), "{text}");
    assert!(text.contains("chmod go-w"), "{text}");
    std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    scar_rootfs::cache::Cache::open(&cache).expect("fixed, the cache is accepted again");
}

#[test]
fn as_the_lambda_user_a_cache_made_by_root_is_refused_and_its_own_is_accepted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    scar_rootfs::cache::Cache::open(&cache).expect("root's cache");
    let command = format!(
        "{SCAR_DIR}/scar pull 127.0.0.1:9/never/pulled:v1 --cache /mnt/rootcache; echo exit=$?; \
         {SCAR_DIR}/scar cache ls --cache /tmp/own && echo own=ok"
    );
    let layer = layer_dir();
    let out = LambdaSim::new(layer.path())
        .with_scar()
        .ro_bind(&cache, "/mnt/rootcache")
        .run(&command, &[]);
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(all.contains("/mnt/rootcache"), "{all}");
    assert!(all.contains("belongs to uid 0"), "{all}");
    assert!(all.contains("not to uid 993"), "{all}");
    assert!(!all.contains("exit=0"), "{all}");
    assert!(all.contains("own=ok"), "a cache of its own works: {all}");
}

#[test]
fn leftovers_of_an_earlier_invocation_are_swept_after_it_as_the_lambda_user() {
    // The first invocation leaves what a crashed invocation would (a request directory of
    // another id with read-only directories, a build in the cache's tmp/, a stale download in
    // ingest/) and makes its own outputs read-only; the second looks.
    let plant = r#"set -e
old=/tmp/0ld-request-id
mkdir -p $old/.scar $old/.scratch $old/output/deep/er
echo x > $old/output/deep/er/result
chmod -R a-w $old
mkdir -p "$SCAR_OUTPUT_DIR/made/by/script"
echo y > "$SCAR_OUTPUT_DIR/made/by/script/file"
chmod -R a-w "$SCAR_OUTPUT_DIR/made"
mkdir -p /tmp/scar/tmp/4242-stale-build/root/etc/deep
chmod -R a-w /tmp/scar/tmp/4242-stale-build/root
echo old > /tmp/scar/ingest/4242-0-old-download
touch -t 202001010000 /tmp/scar/ingest/4242-0-old-download
echo new > /tmp/scar/ingest/4242-1-fresh-download
echo "me=$(id -u) planted"
"#;
    let look = r#"ls -a /tmp /tmp/scar/tmp /tmp/scar/ingest; echo listed"#;
    let script = |text: &str| {
        use base64::Engine;
        serde_json::json!({"script": base64::engine::general_purpose::STANDARD.encode(text)})
    };
    let function = crate::bootstrap_support::Function::spec()
        .env("SCAR_ALLOW_INVOKE_SCRIPT", "true")
        .env("SCAR_SCRIPT", "echo default")
        .env(
            "SCAR_OUTPUT",
            &format!("s3://{}/out/", crate::bootstrap_support::BUCKET),
        )
        .start_simulated();
    let first = function.invoke(&script(plant));
    assert_eq!(first.status, 200, "{}\n{}", first.body, function.log());
    assert!(
        crate::bootstrap_support::response_text(&first.body, "stdout").contains("me=993 planted"),
        "{}",
        first.body
    );
    let second = function.invoke(&script(look));
    assert_eq!(second.status, 200, "{}\n{}", second.body, function.log());
    let body = crate::bootstrap_support::response_text(&second.body, "stdout");
    assert!(body.contains("listed"), "{body}");
    assert!(
        !body.contains("0ld-request-id"),
        "the planted request dir survived: {body}"
    );
    let first_id = crate::bootstrap_support::response_text(&first.body, "requestId").to_owned();
    assert!(
        !body.contains(&first_id),
        "the first request's read-only directory survived: {body}"
    );
    assert!(
        !body.contains("4242-stale-build"),
        "a build left in the cache's tmp/ survived: {body}"
    );
    assert!(
        !body.contains("old-download"),
        "a stale download in ingest/ survived: {body}"
    );
    assert!(
        body.contains("4242-1-fresh-download"),
        "a download that may still be in progress must stay: {body}"
    );
    // One request directory: the planted one; the first request's own (read-only inside) went
    // with its `RequestDir` before the sweep.
    let log = function.log();
    assert!(
        log.contains("removed what earlier invocations left requests=1 cache_tmp=1 cache_ingest=1"),
        "{log}"
    );
}

#[test]
fn a_request_directory_left_by_an_earlier_process_is_swept_at_init() {
    use std::os::unix::fs::PermissionsExt;
    // The host's /tmp is the request root of a bootstrap outside the simulator; the id is
    // unique to this test process.
    let old = PathBuf::from(format!("/tmp/0ld-init-{}", std::process::id()));
    std::fs::create_dir_all(old.join(".scar")).expect("mkdir");
    std::fs::create_dir_all(old.join(".scratch")).expect("mkdir");
    std::fs::create_dir_all(old.join("output/deep")).expect("mkdir");
    std::fs::write(old.join("output/deep/result"), b"x").expect("write");
    for d in ["output/deep", "output"] {
        std::fs::set_permissions(old.join(d), std::fs::Permissions::from_mode(0o555))
            .expect("chmod");
    }
    // Not a request directory (no .scar/.scratch): never touched.
    let other = PathBuf::from(format!("/tmp/0ther-{}", std::process::id()));
    std::fs::create_dir_all(&other).expect("mkdir");
    let function = crate::bootstrap_support::Function::spec()
        .env("SCAR_SCRIPT", "echo ok")
        .start();
    // Before any invocation (the sweep after one would remove it too).
    let until = Instant::now() + Duration::from_secs(60);
    while old.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = !old.exists();
    let kept = other.exists();
    let _ = std::fs::remove_dir(&other);
    assert!(gone, "{} survived init\n{}", old.display(), function.log());
    assert!(kept, "a directory that is no request's was removed");
    let first = function.invoke(&serde_json::json!({"direct": true}));
    assert_eq!(first.status, 200, "{}\n{}", first.body, function.log());
}

/// The bootstrap sweeps its cache at init while its prefetch pulls (and, on a cache shared by
/// sandboxes, whenever another sandbox ends an invocation): a sweep must never take a live
/// build for a leftover, not even in the instant between the build directory's creation and
/// its lock's. Here one thread sweeps without pause while the other pulls an image and
/// removes it again, 150 times over.
#[test]
fn a_sweep_running_without_pause_never_removes_a_live_build() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let work = tempfile::tempdir().expect("tempdir");
    let image = ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("etc/hello", b"hi\n")
                .finish(),
        )
        .build();
    let layout = work.path().join("layout");
    scar_e2e::oci::write_layout(&layout, &[("latest", &image)]);
    let reference = format!("oci:{}:latest", layout.display());
    let cache_dir = work.path().join("cache");
    let cache = scar_rootfs::cache::Cache::open(&cache_dir).expect("cache");

    let stop = Arc::new(AtomicBool::new(false));
    let sweeps = Arc::new(AtomicUsize::new(0));
    let sweeper = {
        let (stop, sweeps, cache_dir) = (stop.clone(), sweeps.clone(), cache_dir.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let cache = scar_rootfs::cache::Cache::open(&cache_dir).map_err(|e| e.to_string())?;
            while !stop.load(Ordering::Relaxed) {
                if cache.sweep().map_err(|e| e.to_string())?.is_some() {
                    sweeps.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = PullOptions::new(&cache_dir);
    let mut failed = None;
    for round in 0..150 {
        match runtime.block_on(scar_rootfs::pull::prepare(&reference, &options)) {
            Ok(prepared) => {
                assert_eq!(
                    std::fs::read(prepared.root.join("etc/hello")).expect("read"),
                    b"hi\n"
                );
                // As `scar cache rm` does it: under the cache's lock.
                let chain_id = prepared.chain_id.parse().expect("chain id");
                let _lock = cache.lock(true).expect("the cache's lock");
                cache.remove_image(&chain_id).expect("remove the image");
            }
            Err(err) => {
                failed = Some(format!("round {round}: {err}"));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swept = sweeper.join().expect("the sweeper panicked");
    assert_eq!(failed, None, "a pull failed beside the sweep");
    assert_eq!(swept, Ok(()), "the sweep failed");
    let sweeps = sweeps.load(Ordering::Relaxed);
    println!("150 pulls beside {sweeps} sweeps");
    assert!(
        sweeps > 150,
        "the sweep hardly ran ({sweeps} times): the test proved nothing"
    );
}

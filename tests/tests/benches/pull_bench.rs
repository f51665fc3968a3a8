//! Pull benchmark: prints figures, asserts no timing. A generated image (~600 MiB of files,
//! ~300 MiB of gzip; a tenth of that with `SCAR_BENCH_QUICK=1`) in the real registry on
//! loopback, pulled cold by `scar pull` (the binary of this build profile: run with `--release`
//! for meaningful numbers), compared in the same run with `skopeo copy` + `umoci raw unpack
//! --rootless` of the same image and with `gzip -dc` of its layer blobs one after another; peak
//! RSS from `/usr/bin/time -v`; warm resolution timed in process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scar_e2e::Registry;
use scar_e2e::oci::{Blob, Pusher, media};

const MIB: u64 = 1024 * 1024;

/// Fills with bytes drawn from 16 letters: about 4 bits of entropy per byte, so gzip halves it
/// like it halves typical binaries and libraries.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let x = self.0;
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = b'a' + ((x >> (i * 4)) & 0x0f) as u8;
            }
        }
    }
}

fn run(command: &mut Command, what: &str) -> String {
    let out = command
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn sha256_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path), "sha256sum");
    format!("sha256:{}", out.split_whitespace().next().expect("sum"))
}

/// Write layer `index` as a tar file, gzip it with `gzip -1`; returns (gz path, diff_id).
fn make_layer(dir: &Path, index: usize, bytes: u64, noise: &mut Noise) -> (PathBuf, String) {
    let tar_path = dir.join(format!("layer{index}.tar"));
    let file = std::fs::File::create(&tar_path).expect("create tar");
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(4 << 20, file));
    let mut block = vec![0u8; 8 * MIB as usize];
    let mut written = 0u64;
    let mut n = 0;
    while written < bytes {
        // Mostly 8 MiB files, with a run of small files every so often (headers, configs).
        let len = if n % 4 == 1 { 0 } else { block.len() as u64 };
        if len == 0 {
            for s in 0..200 {
                let small = 2048 + (s * 37) % 6000;
                noise.fill(&mut block[..small]);
                let mut h = tar::Header::new_gnu();
                h.set_size(small as u64);
                h.set_mode(0o644);
                h.set_mtime(1_700_000_000);
                tar.append_data(&mut h, format!("l{index}/small{n}/f{s}"), &block[..small])
                    .expect("append");
                written += small as u64;
            }
        } else {
            noise.fill(&mut block);
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            tar.append_data(&mut h, format!("l{index}/big{n}.bin"), &block[..])
                .expect("append");
            written += len;
        }
        n += 1;
    }
    tar.into_inner()
        .expect("finish tar")
        .flush()
        .expect("flush");
    let diff_id = sha256_file(&tar_path);
    run(
        Command::new("gzip").args(["-1", "-f"]).arg(&tar_path),
        "gzip -1",
    );
    (dir.join(format!("layer{index}.tar.gz")), diff_id)
}

/// Run under `/usr/bin/time -v`: (wall time, peak RSS in MiB, output).
fn timed(command: Command, what: &str) -> (Duration, f64, String) {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = command
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let mut t = Command::new("/usr/bin/time");
    t.arg("-v").arg(program).args(args);
    for (k, v) in envs {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let start = Instant::now();
    let out = run(&mut t, what);
    let elapsed = start.elapsed();
    let rss_kb: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    (elapsed, rss_kb / 1024.0, out)
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("readdir").flatten() {
        let t = e.file_type().expect("type");
        if t.is_dir() {
            n += count_files(&e.path());
        } else if t.is_file() {
            n += 1;
        }
    }
    n
}

#[test]
fn cold_pull_warm_resolution_and_peak_rss_against_skopeo_umoci_and_gzip() {
    let _alone = crate::alone();
    for tool in ["skopeo", "umoci", "gzip", "sha256sum"] {
        scar_e2e::service::require_program(tool, tool);
    }
    let quick = std::env::var("SCAR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let total = if quick { 60 * MIB } else { 600 * MIB };
    let layers = 5;
    let work = tempfile::tempdir().expect("tmp");
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let t = Instant::now();
    let made: Vec<(PathBuf, String)> = (0..layers)
        .map(|i| make_layer(work.path(), i, total / layers as u64, &mut noise))
        .collect();
    let registry = Registry::start();
    let pusher = Pusher::new(&registry.url(), None);
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut compressed = 0;
    for (gz, diff_id) in &made {
        let digest = sha256_file(gz);
        let size = std::fs::metadata(gz).expect("gz").len();
        compressed += size;
        pusher.blob_file("bench/image", gz, &digest);
        descriptors.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}));
        diff_ids.push(diff_id.clone());
    }
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let config = Blob {
        media_type: media::CONFIG.into(),
        bytes: serde_json::to_vec(&serde_json::json!({"architecture": arch, "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}})).expect("json"),
    };
    pusher.blob("bench/image", &config.bytes);
    let manifest = Blob {
        media_type: media::MANIFEST.into(),
        bytes: serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": config.digest(), "size": config.bytes.len()},
            "layers": descriptors,
        })).expect("json"),
    };
    pusher.manifest("bench/image", "v1", &manifest);
    println!(
        "image: {layers} layers, ~{} MiB of files, {} MiB gzip (made in {:.1} s)",
        total / MIB,
        compressed / MIB,
        t.elapsed().as_secs_f64()
    );
    let reference = format!("{}/bench/image:v1", registry.host());

    // scar pull, cold.
    let scar = scar_e2e::workspace::binary("scar-tools", "scar");
    let cache = work.path().join("cache");
    let mut c = Command::new(&scar);
    c.args(["pull", &reference, "--cache"])
        .arg(&cache)
        .env("SCAR_INSECURE_REGISTRIES", registry.host());
    let (scar_time, scar_rss, out) = timed(c, "scar pull");
    let root = PathBuf::from(out.lines().next().expect("root path").trim());
    let files = count_files(&root);
    let summary = out.lines().find(|l| l.contains(" layers, ")).unwrap_or("");
    println!("scar pull said: {summary}");

    // skopeo copy + umoci raw unpack --rootless.
    let layout = work.path().join("layout");
    let mut c = Command::new("skopeo");
    c.args([
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
    ])
    .arg(format!("oci:{}:v1", layout.display()));
    let (skopeo_time, skopeo_rss, _) = timed(c, "skopeo copy");
    let unpacked = work.path().join("umoci-rootfs");
    let mut c = Command::new("umoci");
    c.args(["raw", "unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&unpacked);
    let (umoci_time, umoci_rss, _) = timed(c, "umoci raw unpack");
    assert_eq!(
        count_files(&unpacked),
        files,
        "scar and umoci extract the same files"
    );

    // gzip -dc of the blobs, one after another.
    let blobs: Vec<String> = descriptors
        .iter()
        .map(|d| {
            layout
                .join("blobs/sha256")
                .join(&d["digest"].as_str().expect("digest")[7..])
                .display()
                .to_string()
        })
        .collect();
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "for f in {}; do gzip -dc \"$f\"; done > /dev/null",
        blobs.join(" ")
    ));
    let (gzip_time, gzip_rss, _) = timed(c, "gzip -dc");

    // Warm resolution, in process: no network (the registry is stopped first).
    drop(registry);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut options = scar_rootfs::options::PullOptions::new(&cache);
    options.insecure_registries = vec![reference.split('/').next().expect("host").to_owned()];
    let mut warm = Vec::new();
    for _ in 0..51 {
        let t = Instant::now();
        let p = runtime
            .block_on(scar_rootfs::pull::prepare(&reference, &options))
            .expect("warm");
        warm.push(t.elapsed());
        assert_eq!(p.root, root);
    }
    warm.sort();

    let s = |d: Duration| d.as_secs_f64();
    let peers = s(skopeo_time) + s(umoci_time);
    println!();
    println!(
        "| {:<42} | {:>9} | {:>13} |",
        "cold pull + extract", "seconds", "peak RSS MiB"
    );
    println!("|{:-<44}|{:->11}|{:->15}|", "", "", "");
    println!(
        "| {:<42} | {:>9.2} | {:>13.1} |",
        "scar pull",
        s(scar_time),
        scar_rss
    );
    println!(
        "| {:<42} | {:>9.2} | {:>13.1} |",
        "skopeo copy",
        s(skopeo_time),
        skopeo_rss
    );
    println!(
        "| {:<42} | {:>9.2} | {:>13.1} |",
        "umoci raw unpack --rootless",
        s(umoci_time),
        umoci_rss
    );
    println!("| {:<42} | {:>9.2} | {:>13} |", "skopeo + umoci", peers, "");
    println!(
        "| {:<42} | {:>9.2} | {:>13.1} |",
        "gzip -dc of the blobs, one after another",
        s(gzip_time),
        gzip_rss
    );
    println!();
    println!(
        "scar / (skopeo + umoci) = {:.2}  (bound: <= 0.5)",
        s(scar_time) / peers
    );
    println!(
        "scar / gzip -dc         = {:.2}  (bound: <= 1.0)",
        s(scar_time) / s(gzip_time)
    );
    println!("scar peak RSS           = {scar_rss:.1} MiB  (bound: <= 64 MiB)");
    println!(
        "warm resolution         = median {:.3} ms, max {:.3} ms over {} runs  (bound: <= 5 ms)",
        warm[warm.len() / 2].as_secs_f64() * 1e3,
        warm[warm.len() - 1].as_secs_f64() * 1e3,
        warm.len()
    );
    println!(
        "files extracted: {files}; profile: {}",
        if cfg!(debug_assertions) {
            "debug (use --release for real figures)"
        } else {
            "release"
        }
    );
}

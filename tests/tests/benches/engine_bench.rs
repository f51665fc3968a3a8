//! Warm start of `/bin/true` in a cached busybox image (and the same root given with
//! `--rootfs`): the namespace engine side by side with bubblewrap, `unshare` + `chroot` and a
//! plain exec, measured in one interleaved run (each
//! round runs every contender once, so load on a shared machine hits them alike). Prints a
//! table; asserts only that every contender ran.
//!
//! Run: `cargo test -p scar-e2e --test benches engine_bench:: -- --nocapture` (`SCAR_BENCH_QUICK=1`
//! for 10 rounds instead of 40). The `scar` measured is `$SCAR_BENCH_SCAR` when set, else the
//! static release build in `dist/` when `./build.sh` made one, else the debug build (its
//! 400 MB binary makes each exec slower).
//!
//! Bounds of issue 4: the namespace engine ≤ 0.6 × bwrap and ≤ 1.5 × unshare + chroot.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scar_e2e::images;
use scar_rootfs::engine::namespace::NamespaceEngine;
use scar_rootfs::engine::{Engine, RunSpec, Stdio as EngineStdio};

/// The `scar` to measure: the release build when there is one.
fn scar() -> (PathBuf, &'static str) {
    if let Some(path) = std::env::var_os("SCAR_BENCH_SCAR") {
        return (PathBuf::from(path), "SCAR_BENCH_SCAR");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root");
    let release = repo.join(format!("dist/scar-{}/scar", std::env::consts::ARCH));
    if release.is_file() {
        return (release, "release (dist/)");
    }
    (
        scar_e2e::workspace::binary("scar-tools", "scar"),
        "debug (no dist/: run ./build.sh for the release figures)",
    )
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

/// One contender: a command line, or the engine API called from this process.
enum Contender {
    Command(Vec<String>),
    Engine(NamespaceEngine, RunSpec),
}

impl Contender {
    /// Run once; the wall time.
    fn run(&self) -> Duration {
        let started = Instant::now();
        match self {
            Contender::Command(argv) => {
                let status = Command::new(&argv[0])
                    .args(&argv[1..])
                    .env("SCAR_LOG", "warn")
                    .stdin(Stdio::null())
                    .status()
                    .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                assert!(status.success(), "{argv:?}: {status}");
            }
            Contender::Engine(engine, spec) => {
                let mut container = engine.spawn(spec).expect("spawn through the engine API");
                let outcome = container.wait(None, Duration::from_secs(1)).expect("wait");
                assert_eq!(outcome.exit_code(), 0, "{outcome:?}");
            }
        }
        started.elapsed()
    }
}

fn children_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Wait for every orphan re-parented to this process (see `PR_SET_CHILD_SUBREAPER` below).
fn reap_orphans() {
    while nix::sys::wait::waitpid(None, None).is_ok() {}
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn warm_start_of_bin_true_is_printed_side_by_side_with_bwrap_and_unshare_chroot() {
    let _alone = crate::alone();
    let rounds = if std::env::var_os("SCAR_BENCH_QUICK").is_some() {
        10
    } else {
        40
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("busybox");
    images::busybox_root(&root).unwrap();
    let root_text = root.display().to_string();
    let (scar, build) = scar();
    let scar_text = scar.display().to_string();

    // The same root as an OCI image in a warm cache: what `scar run IMAGE` meets after a pull.
    let layout = dir.path().join("layout");
    let options = scar_tools::oci::LayoutOptions {
        tag: "bench".into(),
        ..scar_tools::oci::LayoutOptions::default()
    };
    scar_tools::oci::write_from_dir(&root, &layout, &options).unwrap();
    let cache = dir.path().join("cache").display().to_string();
    let image = format!("oci:{}:bench", layout.display());

    let mut contenders: Vec<(String, Contender)> = Vec::new();
    let argv = |items: &[&str]| Contender::Command(items.iter().map(|s| s.to_string()).collect());
    contenders.push((
        "scar run IMAGE, cached (namespace)".into(),
        argv(&[
            &scar_text,
            "run",
            "--cache-dir",
            &cache,
            &image,
            "--",
            "/bin/true",
        ]),
    ));
    contenders.push((
        "scar run --rootfs (namespace)".into(),
        argv(&[&scar_text, "run", "--rootfs", &root_text, "--", "/bin/true"]),
    ));
    let spec = RunSpec {
        root: root.clone(),
        argv: vec!["/bin/true".into()],
        env: vec![("PATH".into(), "/bin:/usr/bin".into())],
        workdir: "/".into(),
        user: None,
        mounts: Vec::new(),
        scratch: dir.path().join("scratch"),
        stdin: EngineStdio::Null,
        stdout: EngineStdio::Inherit,
        stderr: EngineStdio::Inherit,
    };
    contenders.push((
        "engine API spawn+wait".into(),
        Contender::Engine(NamespaceEngine::with_helper(&scar), spec),
    ));
    match which("bwrap") {
        Some(bwrap) => contenders.push((
            "bwrap".into(),
            argv(&[
                &bwrap.display().to_string(),
                "--unshare-all",
                "--share-net",
                "--ro-bind",
                &root_text,
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "/bin/true",
            ]),
        )),
        None => {
            println!("bwrap is not installed (apt-get install bubblewrap): its row is left out")
        }
    }
    contenders.push((
        "unshare -U -r --mount --pid --fork chroot".into(),
        argv(&[
            "unshare",
            "-U",
            "-r",
            "--mount",
            "--pid",
            "--fork",
            "chroot",
            &root_text,
            "/bin/true",
        ]),
    ));
    contenders.push((
        "plain exec".into(),
        argv(&[&format!("{root_text}/bin/true")]),
    ));

    // The containers' inits that outlive `scar run` (see `reap_orphans`) come back to this
    // process rather than to the system's init.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    // Warm-up: page cache, first-run costs.
    for (_, contender) in &contenders {
        contender.run();
        reap_orphans();
    }
    let mut wall: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for _ in 0..rounds {
        for (index, (_, contender)) in contenders.iter().enumerate() {
            let cpu_before = children_cpu();
            let w = contender.run();
            // `scar run` returns before its init has finished tearing the namespaces down;
            // that teardown is waited for here, untimed, so it neither counts as scar's wall
            // time nor slows the next contender, and its CPU time is counted as scar's.
            reap_orphans();
            // And a pause: a tool's exit can leave the kernel deferred work (freeing its
            // namespaces and mounts) that would otherwise land on the next contender.
            std::thread::sleep(Duration::from_millis(5));
            wall[index].push(w);
            cpu[index].push(children_cpu() - cpu_before);
        }
    }

    let medians: Vec<(Duration, Duration)> = (0..contenders.len())
        .map(|i| (median(&mut wall[i]), median(&mut cpu[i])))
        .collect();
    let find = |name: &str| contenders.iter().position(|(n, _)| n.starts_with(name));
    let (bwrap, unshare) = (find("bwrap"), find("unshare"));
    println!();
    println!(
        "warm start of /bin/true in a busybox root, {rounds} interleaved rounds; scar: {build}"
    );
    println!(
        "{:<44} {:>9} {:>17} {:>9} {:>9} {:>11} {:>11}",
        "contender", "median", "min–max", "cpu med", "/ bwrap", "/ unshare", "cpu / bwrap"
    );
    for (index, (name, _)) in contenders.iter().enumerate() {
        let (w, c) = medians[index];
        let ratio =
            |other: Option<usize>, pick: fn(&(Duration, Duration)) -> Duration, mine: Duration| {
                other.map_or("-".to_string(), |o| {
                    format!(
                        "{:.2}×",
                        mine.as_secs_f64() / pick(&medians[o]).as_secs_f64()
                    )
                })
            };
        let range = format!(
            "{:.2}–{:.2}",
            ms(wall[index][0]),
            ms(wall[index][wall[index].len() - 1])
        );
        println!(
            "{:<44} {:>7.2}ms {:>15}ms {:>7.2}ms {:>9} {:>11} {:>11}",
            name,
            ms(w),
            range,
            ms(c),
            ratio(bwrap, |m| m.0, w),
            ratio(unshare, |m| m.0, w),
            ratio(bwrap, |m| m.1, c),
        );
    }
    // The bound is about a cached image: the first row.
    let engine = medians[0].0.as_secs_f64();
    if let (Some(b), Some(u)) = (bwrap, unshare) {
        let vs_bwrap = engine / medians[b].0.as_secs_f64();
        let vs_unshare = engine / medians[u].0.as_secs_f64();
        println!(
            "bounds (issue 4): scar run / bwrap = {vs_bwrap:.2} (target ≤ 0.60: {}), / unshare+chroot = {vs_unshare:.2} (target ≤ 1.50: {})",
            if vs_bwrap <= 0.6 { "met" } else { "NOT met" },
            if vs_unshare <= 1.5 { "met" } else { "NOT met" },
        );
    }
}

//! Section 2: starting a process in a cached image, each engine next to the peers: bwrap,
//! udocker (PRoot), `unshare` + `chroot`, and a plain exec on the host as the floor.

use std::fs;
use std::process::Command;

use super::context::Bench;
use super::images::BenchImage;
use super::measure::{measure, measure_time_only};
use super::pull::remove_tree;
use super::table::{Row, Section, Series};

/// A way of starting a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Starter {
    Namespace,
    Preload,
    Bwrap,
    Udocker,
    UnshareChroot,
    Plain,
}

impl Starter {
    const ALL: [Starter; 6] = [
        Starter::Namespace,
        Starter::Preload,
        Starter::Bwrap,
        Starter::Udocker,
        Starter::UnshareChroot,
        Starter::Plain,
    ];

    fn label(self) -> &'static str {
        match self {
            Starter::Namespace => "scar run --engine namespace",
            Starter::Preload => "scar run --engine preload",
            Starter::Bwrap => "bwrap --unshare-all --share-net --ro-bind ROOT /",
            Starter::Udocker => "udocker run (PRoot, P1)",
            Starter::UnshareChroot => "unshare -U -r --mount --pid --fork chroot ROOT",
            Starter::Plain => "floor: plain exec on the host",
        }
    }
}

/// The jobs timed: the cheapest possible process, and the syscall-heavy job of the preload
/// issue's bound.
const JOBS: [(&str, &[&str]); 2] = [
    ("/bin/true", &["/bin/true"]),
    (
        "find / -xdev -type f | wc -l",
        &["/bin/sh", "-c", "find / -xdev -type f | wc -l"],
    ),
];

/// Everything prepared once so each measured run only starts a process.
struct Warm {
    cache: std::path::PathBuf,
    udocker_repo: std::path::PathBuf,
    udocker_ready: Result<(), String>,
    scar_ready: Result<(), String>,
}

/// Measure every starter on `image` (the medium image: a dynamic Debian userland).
pub fn warm_starts(bench: &Bench, image: &BenchImage) -> Vec<Row> {
    let warm = prepare(bench, image);
    // As an ordinary init would, this process adopts and reaps what a tool leaves behind
    // (`scar run` returns before its container's init has finished tearing the namespaces
    // down): where PID 1 reaps late, as in some sandboxes, dozens of such zombies otherwise
    // pile up, each holding its user and PID namespaces, and slow the tools that follow.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    start_from_disk();
    let mut rows = Vec::new();
    for (job_index, (job, argv)) in JOBS.iter().enumerate() {
        eprintln!("scar bench: warm starts of {job} in {}", image.name);
        let runs = if job_index == 0 {
            bench.runs.start
        } else {
            bench.runs.pull
        };
        let starters: Vec<Starter> = Starter::ALL
            .into_iter()
            .filter(|s| job_index == 0 || *s != Starter::Plain)
            .collect();
        let mut series: Vec<Series> = starters.iter().map(|_| Series::default()).collect();
        for (starter, s) in starters.iter().zip(series.iter_mut()) {
            let ready = match starter {
                Starter::Namespace | Starter::Preload => warm.scar_ready.clone(),
                Starter::Udocker => warm.udocker_ready.clone(),
                _ => Ok(()),
            };
            if let Err(reason) = ready {
                s.failure = Some(reason);
            }
        }
        // Round 0 is a warm-up under GNU time for the memory figure (and the page cache);
        // the timed rounds run each tool bare.
        for round in 0..=runs {
            // Rotated each round: no tool always follows the same one (udocker, which churns
            // the caches, would otherwise always precede the same few).
            let mut order: Vec<(&Starter, &mut Series)> =
                starters.iter().zip(series.iter_mut()).collect();
            order.rotate_left(round % starters.len());
            for (starter, s) in order {
                if s.alive() {
                    let mut command = start_command(bench, image, &warm, *starter, argv);
                    let stderr = bench.work.join("stderr");
                    if round == 0 {
                        s.warm_up(measure(&mut command, &stderr, bench.limit));
                    } else {
                        s.record(measure_time_only(&mut command, &stderr, bench.limit));
                    }
                    // Untimed: `scar run` returns before its init has finished tearing the
                    // namespaces down; let that (and any tool's leftovers) end before the next
                    // start, so no tool pays for another's.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    reap_orphans(bench.registry.pid() as libc::pid_t);
                }
            }
        }
        let case = format!("{job} ({})", image.name);
        let mut job_rows: Vec<Row> = starters
            .iter()
            .zip(series)
            .map(|(st, s)| s.into_row(Section::WarmStart, &case, st.label()))
            .collect();
        annotate(&mut job_rows, job_index == 0);
        rows.extend(job_rows);
    }
    let _ = nix::sys::prctl::set_child_subreaper(false);
    remove_tree(&warm.cache);
    remove_tree(&warm.udocker_repo);
    rows
}

/// Start every tool from pages read back from disk, as after a reboot (round 0 then reads
/// them). The page cache's state of a binary moves its start time: one written moments ago
/// (an install, the layer's unzip) sits in large folios and starts faster than one read back
/// (0.4 ms per `scar run` on this project's machine), and a linker's output, written through
/// mmap(2), sits in single pages. Dropping the cache gives every tool the same state,
/// whatever ran before (the pull section drops it too). Needs root; otherwise says so.
fn start_from_disk() {
    if let Err(err) = super::pull::drop_page_cache() {
        eprintln!(
            "scar bench: cannot drop the page cache ({err}); the warm starts then depend on how each binary came into it"
        );
    }
}

/// Reap every child of this process that has ended, `keep` (the registry) aside.
fn reap_orphans(keep: libc::pid_t) {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid(2) to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: waitid(2) writes only into the local `info`; WNOWAIT leaves the child
        // unreaped, so it can be told apart from `keep` first.
        if unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) } != 0 {
            return;
        }
        // SAFETY: waitid(2) filled `info` for a child's state change (si_pid is 0 if none).
        let pid = unsafe { info.si_pid() };
        if pid == 0 || pid == keep {
            return;
        }
        // SAFETY: reaping that ended child; no memory is passed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

/// Ratios the engine issues bound: `/bin/true` against bwrap (≤ 0.6×) and unshare + chroot
/// (≤ 1.5×); the find job's preload against namespace (≤ 1.3×).
fn annotate(rows: &mut [Row], true_job: bool) {
    let median_of = |starter: Starter, rows: &[Row]| {
        rows.iter()
            .find(|r| r.tool == starter.label())
            .and_then(Row::median)
    };
    let bwrap = median_of(Starter::Bwrap, rows);
    let chroot = median_of(Starter::UnshareChroot, rows);
    let namespace = median_of(Starter::Namespace, rows);
    for row in rows.iter_mut() {
        let Some(median) = row.median() else { continue };
        let mut notes = Vec::new();
        if true_job {
            if let Some(base) = bwrap.filter(|_| row.tool != Starter::Bwrap.label()) {
                notes.push(format!("{:.2}× bwrap", median / base));
            }
            if let Some(base) = chroot.filter(|_| row.tool != Starter::UnshareChroot.label()) {
                notes.push(format!("{:.2}× unshare+chroot", median / base));
            }
        } else if let Some(base) = namespace.filter(|_| row.tool != Starter::Namespace.label()) {
            notes.push(format!("{:.2}× namespace engine", median / base));
        }
        row.note = notes.join(", ");
    }
}

fn prepare(bench: &Bench, image: &BenchImage) -> Warm {
    let cache = bench.work.join("warm-cache");
    let udocker_repo = bench.work.join("warm-udocker");
    let stderr = bench.work.join("stderr");
    let reference = bench.registry.reference(image.name);
    let scar_ready = measure(
        bench
            .scar_command("pull")
            .arg(&reference)
            .arg("--cache")
            .arg(&cache),
        &stderr,
        bench.limit,
    )
    .map(|_| ())
    .map_err(|e| format!("warming the cache: {}", e.short()));
    let repo = format!("bench/{}:latest", image.name);
    let _ = fs::create_dir_all(&udocker_repo);
    let udocker_ready = measure(
        bench
            .udocker(&udocker_repo)
            .arg("pull")
            .arg(format!("--registry=http://{}", bench.registry.host()))
            .arg(&repo),
        &stderr,
        bench.limit,
    )
    .and_then(|_| {
        measure(
            bench
                .udocker(&udocker_repo)
                .args(["create", "--name=bench"])
                .arg(&repo),
            &stderr,
            bench.limit,
        )
    })
    .map(|_| ())
    .map_err(|e| format!("preparing the container: {}", e.short()));
    Warm {
        cache,
        udocker_repo,
        udocker_ready,
        scar_ready,
    }
}

fn start_command(
    bench: &Bench,
    image: &BenchImage,
    warm: &Warm,
    starter: Starter,
    argv: &[&str],
) -> Command {
    let reference = bench.registry.reference(image.name);
    let root = &image.root;
    match starter {
        Starter::Namespace | Starter::Preload => {
            let engine = if starter == Starter::Namespace {
                "namespace"
            } else {
                "preload"
            };
            let mut c = bench.scar_command("run");
            c.env("SCAR_CACHE_DIR", &warm.cache)
                .args(["--engine", engine])
                .arg(&reference)
                .arg("--")
                .args(argv);
            c
        }
        Starter::Bwrap => {
            let mut c = Command::new("bwrap");
            c.args(["--unshare-all", "--share-net", "--ro-bind"])
                .arg(root)
                .args(["/", "--proc", "/proc", "--dev", "/dev"])
                .args(argv);
            c
        }
        Starter::Udocker => {
            let mut c = bench.udocker(&warm.udocker_repo);
            c.args(["run", "--nobanner", "bench"]).args(argv);
            c
        }
        Starter::UnshareChroot => {
            let mut c = Command::new("unshare");
            c.args(["-U", "-r", "--mount", "--pid", "--fork", "chroot"])
                .arg(root)
                .args(argv);
            c
        }
        Starter::Plain => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    }
}

//! Every process a preload container started is gone when the engine's wait returns: also
//! those that left its process group (`timeout`, `setsid`, `set -m`), double-forked daemons and
//! processes that ignore SIGTERM; a process of the same uid started outside the container
//! survives. Then the same through the bootstrap under the simulated Lambda: nothing of one
//! invocation is left when it returns, and the next invocation's log holds no line of it.
//!
//! Run: `cargo test -p scar-e2e --test preload preload_reap::` (the bootstrap case runs `scar
//! lambda-sim` as root with the static bootstrap of `./build.sh`).

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bootstrap_support::Function;
use scar_e2e::container;
use scar_e2e::lambda_sim;
use scar_rootfs::engine::preload::PreloadEngine;
use scar_rootfs::engine::{Engine, Outcome, RunSpec};

/// The simulator's dynamic image plus coreutils `timeout` and util-linux `setsid` (they need
/// only libc, which the image has).
fn image() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("scar-reap-image-")
        .tempdir()
        .expect("tempdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", lambda_sim::dynamic_image().display()))
        .arg(dir.path())
        .status()
        .expect("run cp");
    assert!(status.success(), "copying the dynamic image failed");
    for tool in ["/usr/bin/timeout", "/usr/bin/setsid"] {
        let to = dir.path().join(tool.trim_start_matches('/'));
        std::fs::copy(tool, &to).unwrap_or_else(|e| {
            panic!("{tool} is needed in the test image (apt-get install coreutils util-linux): {e}")
        });
    }
    dir
}

fn spec(root: &Path, script: &str) -> RunSpec {
    container::spec(root, &["/bin/bash", "-c", script])
}

/// Run `script`, wait (with `deadline`), and return the outcome, the output and how long the
/// wait took after the script's own end was signalled by its `ready` line.
fn run(root: &Path, script: &str, deadline: Option<Duration>) -> (Outcome, String, Duration) {
    let engine = PreloadEngine::new(lambda_sim::preload_libs()).expect("preload libraries");
    let mut c = engine.spawn(&spec(root, script)).expect("spawn");
    let mut out = c.stdout.take().expect("stdout");
    let mut err = c.stderr.take().expect("stderr");
    // The readers end once every process holding the pipes is dead: a reader still blocked
    // after the wait would show a survivor.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let mut e = String::new();
        let _ = err.read_to_string(&mut e);
        s + &e
    });
    let started = Instant::now();
    let outcome = c
        .wait(
            deadline.map(|d| Instant::now() + d),
            Duration::from_millis(500),
        )
        .expect("wait");
    let waited = started.elapsed();
    let until = Instant::now() + Duration::from_secs(5);
    while !reader.is_finished() {
        assert!(
            Instant::now() < until,
            "a process still holds the container's output open after the wait"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (outcome, reader.join().expect("reader"), waited)
}

/// Live (not zombie) processes whose environment or command line holds `marker`.
fn survivors(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().chars().next());
        if matches!(state, None | Some(Some('Z' | 'X'))) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&[environ, cmdline].concat()).replace('\0', " ");
        if text.contains(marker) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

/// Every way of leaving the process group, each process carrying `REAP_MARK=<marker>`.
fn escapes(marker: &str) -> String {
    format!(
        r#"export REAP_MARK={marker}
        timeout 600 sleep 600 &
        setsid sleep 600 &
        ( sleep 600 & ) &
        ( setsid sleep 600 & ) &
        ( setsid sh -c 'sleep 600 &' & ) &
        setsid bash -c 'trap "" TERM HUP; sleep 600 & wait' &
        bash -c 'set -m; sleep 600 & sleep 600 & disown -a; exit 0'
        env -i REAP_MARK={marker} /usr/bin/setsid /usr/bin/sleep 600 &
        sleep 0.3
        echo ready"#
    )
}

fn marker(name: &str) -> String {
    format!("reap-{name}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    u64::from_le_bytes(b)
}

/// A same-uid process outside the container, with its own marker.
fn bystander(marker: &str) -> std::process::Child {
    Command::new("sleep")
        .arg("600")
        .env("REAP_MARK", marker)
        .spawn()
        .expect("spawn sleep")
}

#[test]
fn detached_daemons_and_timeout_children_are_gone_when_the_script_returns() {
    let root = image();
    let mark = marker("exit");
    let outside = marker("outside");
    let mut other = bystander(&outside);
    // Make sure each kind started before the script returns.
    let script = format!("{}\nexit 0", escapes(&mark));
    let (outcome, output, waited) = run(root.path(), &script, Some(Duration::from_secs(60)));
    assert_eq!(outcome.code, Some(0), "{output}");
    assert!(output.contains("ready"), "{output}");
    let left = survivors(&mark);
    assert!(left.is_empty(), "left after the wait: {left:?}");
    assert_eq!(
        survivors(&outside).len(),
        1,
        "the process outside the container was touched"
    );
    let _ = other.kill();
    let _ = other.wait();
    eprintln!(
        "wait with the sweep of ~11 escaped processes: {:.1} ms",
        waited.as_secs_f64() * 1e3
    );
}

#[test]
fn at_the_deadline_every_escaped_process_is_killed_including_those_ignoring_sigterm() {
    let root = image();
    let mark = marker("deadline");
    let outside = marker("outside");
    let mut other = bystander(&outside);
    let script = format!("{}\nsleep 600", escapes(&mark));
    let (outcome, output, _) = run(root.path(), &script, Some(Duration::from_secs(2)));
    assert!(outcome.timed_out, "{outcome:?} {output}");
    let left = survivors(&mark);
    assert!(left.is_empty(), "left after the deadline: {left:?}");
    assert_eq!(survivors(&outside).len(), 1, "the bystander was killed");
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn the_sweep_after_a_plain_script_costs_little() {
    let root = image();
    let mut plain = Vec::new();
    for _ in 0..5 {
        plain.push(run(root.path(), "exit 0", None).2);
    }
    plain.sort();
    let mut sweeps: Vec<Duration> = (0..5)
        .map(|_| {
            let tag = scar_rootfs::engine::preload::reap::Tag::random().expect("urandom");
            scar_rootfs::engine::preload::reap::Reaper::new(tag, None)
                .kill_all()
                .elapsed
        })
        .collect();
    sweeps.sort();
    let processes = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    eprintln!(
        "engine wait of `exit 0` including the /proc sweep ({processes} processes on this host): median {:.2} ms",
        plain[2].as_secs_f64() * 1e3
    );
    eprintln!(
        "one sweep that finds nothing: median {:.2} ms",
        sweeps[2].as_secs_f64() * 1e3
    );
}

fn static_bootstrap_function(script: &str) -> Function {
    Function::spec()
        .env("SCAR_ENGINE", "preload")
        .env("SCAR_SCRIPT", script)
        .start_simulated()
}

/// Processes of the sandbox whose environment names `marker` (the simulator's processes run
/// as uid 993 on this host; /proc shows them).
fn wait_no_survivor(marker: &str, what: &str) {
    let left = survivors(marker);
    assert!(left.is_empty(), "{what}: {left:?}");
}

#[test]
fn through_the_bootstrap_no_process_of_an_invocation_outlives_it_and_its_output_stops() {
    let (half, other_half) = (marker("bootstrap"), rand_suffix());
    let mark = format!("{half}-{other_half}");
    // The busybox image: a static /bin/sh (its children get the tag by inheritance). The
    // marker is joined by the shell: the simulator's and the bootstrap's own command line and
    // environment hold the script text, never the joined marker.
    let script = format!(
        r#"export REAP_MARK="{half}"-"{other_half}"
        /bin/busybox timeout 600 sleep 600 &
        /bin/busybox setsid sleep 600 &
        ( sleep 600 & ) &
        ( /bin/busybox setsid sh -c 'while :; do echo LATE-$REAP_MARK; sleep 0.05; done' & ) &
        sleep 0.5
        echo "first-$REAP_MARK"
        exit 0"#
    );
    let f = static_bootstrap_function(&script);
    let first = f.invoke(&serde_json::json!({"n": 1}));
    assert_eq!(first.status, 200, "{}\n{}", first.body, f.log());
    wait_no_survivor(&mark, "left after the first invocation returned");
    let log_after_first = f.log();
    let second = f.invoke(&serde_json::json!({"n": 2}));
    assert_eq!(second.status, 200, "{}\n{}", second.body, f.log());
    wait_no_survivor(&mark, "left after the second invocation returned");
    let log = f.log();
    let later = &log[log_after_first.len().min(log.len())..];
    let first_id = crate::bootstrap_support::response_text(&first.body, "requestId");
    let second_id = crate::bootstrap_support::response_text(&second.body, "requestId");
    for line in later.lines().filter(|l| l.contains("LATE-")) {
        assert!(
            !line.contains(first_id),
            "a line of the first invocation was logged during the second: {line}"
        );
    }
    assert!(
        log_after_first.contains(&format!("first-{mark}")),
        "{log_after_first}"
    );
    assert!(!second_id.is_empty());
}

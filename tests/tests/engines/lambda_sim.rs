//! The Lambda simulator itself (`scar lambda-sim`, tools/src/sim): every property the other
//! tests rely on, checked from inside with busybox and a static C probe, and the probe's
//! answers compared with the same probe on this host (so each check can fail).
//!
//! Run: `cargo test -p scar-e2e --test engines lambda_sim::` as root (the simulator maps uids and
//! mounts a new root). The simulator is the static `scar-full` of `./build.sh`, or
//! `$SCAR_E2E_SIMULATOR`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use scar_e2e::lambda_sim::{self, LambdaSim};

/// Tries each system call Lambda refuses and prints `name=<result> errno=<n>` for each.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>
static void report(const char *name, long r) {
    printf("%s=%ld errno=%d\n", name, r, r == -1 ? errno : 0);
    errno = 0;
}
int main(void) {
    report("prctl-get-dumpable", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    report("prctl-set-name", prctl(PR_SET_NAME, (unsigned long)"probe", 0, 0, 0));
    report("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
    /* SECCOMP_GET_ACTION_AVAIL: a harmless query. */
    uint32_t action = 0x7fff0000u;
    report("seccomp", syscall(SYS_seccomp, 2, 0, &action));
    report("chroot", chroot("/"));
    struct { uint64_t flags, mode, resolve; } how = { O_RDONLY, 0, 0 };
    long fd = syscall(437 /* openat2 */, AT_FDCWD, "/", &how, sizeof how);
    report("openat2", fd < 0 ? fd : 0);
    report("unshare-user", unshare(CLONE_NEWUSER));
    return 0;
}
"#;

/// The probe, built once with `musl-gcc -static` (it runs on the simulator's bare root).
fn probe() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let dir = Path::new(lambda_sim::IMAGE_CACHE).join("sim-probe");
            std::fs::create_dir_all(&dir).expect("create the probe directory");
            let src = dir.join(format!("probe-{}.c", std::process::id()));
            let bin = dir.join(format!("probe-{}", std::process::id()));
            std::fs::write(&src, PROBE_C).expect("write probe.c");
            let out = Command::new("musl-gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&bin)
                .arg(&src)
                .output()
                .expect("musl-gcc is missing: apt-get install musl-tools");
            assert!(
                out.status.success(),
                "musl-gcc failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_file(&src);
            bin
        })
        .clone()
}

/// `name=... errno=N` from the probe's output: N.
fn errno_of(output: &str, name: &str) -> i32 {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in:\n{output}"));
    line.rsplit_once("errno=")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line}"))
}

/// A layer directory under `/tmp` (a checkout there must work) holding one marker file.
fn tmp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn prctl_ptrace_seccomp_and_chroot_fail_with_eperm_and_openat2_with_enosys() {
    let probe = probe();
    // On this host as root, every call works: the sandbox's answers are its own.
    let host = Command::new(&probe).output().expect("run the probe");
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    for name in ["prctl-get-dumpable", "prctl-set-name", "seccomp", "openat2"] {
        assert_eq!(errno_of(&host, name), 0, "{name} on the host:\n{host}");
    }
    let layer = tmp_dir("scar-sim-layer-");
    let out = LambdaSim::new(layer.path())
        .ro_bind(&probe, "/sim/probe")
        .run_argv(&["/sim/probe"], &[]);
    out.assert_success();
    let o = &out.stdout;
    for name in [
        "prctl-get-dumpable",
        "prctl-set-name",
        "ptrace",
        "seccomp",
        "chroot",
    ] {
        assert_eq!(errno_of(o, name), libc::EPERM, "{name}:\n{o}");
    }
    assert_eq!(errno_of(o, "openat2"), libc::ENOSYS, "{o}");
    // ENOSPC here (user.max_user_namespaces is 0), EPERM on Lambda.
    assert_eq!(errno_of(o, "unshare-user"), libc::ENOSPC, "{o}");
}

#[test]
fn the_command_runs_as_uid_993_without_capabilities_or_groups_under_no_new_privs() {
    let layer = tmp_dir("scar-sim-layer-");
    let out = LambdaSim::new(layer.path()).run(
        "id; grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/self/status; \
         unshare -U true 2>&1; echo unshare=$?; echo pid=$$; cat /proc/1/cmdline | tr '\\0' ' '; echo",
        &[],
    );
    out.assert_success();
    let o = &out.stdout;
    assert!(
        o.contains("uid=993(sbx_user1051) gid=993(sbx_user1051)"),
        "{o}"
    );
    for line in ["Uid:\t993\t993\t993\t993", "Gid:\t993\t993\t993\t993"] {
        assert!(o.contains(line), "{line}:\n{o}");
    }
    assert!(o.lines().any(|l| l.trim() == "Groups:"), "{o}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            o.contains(&format!("{cap}:\t0000000000000000")),
            "{cap}:\n{o}"
        );
    }
    assert!(
        o.contains("NoNewPrivs:\t1") && o.contains("Seccomp:\t2"),
        "{o}"
    );
    assert!(
        o.contains("No space left on device") && o.contains("unshare=1"),
        "{o}"
    );
    // Its own PID namespace: the command is PID 2, under the simulator's init.
    assert!(o.contains("pid=2\n") && o.contains("lambda-sim"), "{o}");
}

#[test]
fn the_root_is_bare_and_read_only_with_no_loader_c_library_or_shell_of_this_host() {
    let layer = tmp_dir("scar-sim-layer-");
    let out = LambdaSim::new(layer.path()).run(
        "ls -a / | tr '\\n' ' '; echo; \
         for p in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1 /bin/sh /usr /lib /lib64 /bin /sbin /etc/ld.so.cache /etc/os-release /etc/ssl/certs/ca-certificates.crt; do \
           test -e $p && echo present=$p; done; \
         touch /x 2>&1; mkdir /etc/x 2>&1; touch /var/task/x 2>&1; touch /opt/x 2>&1; \
         ls /dev | tr '\\n' ' '; echo; cat /etc/passwd; echo ok > /dev/null && echo devnull-ok",
        &[],
    );
    out.assert_success();
    let o = &out.stdout;
    assert!(
        o.starts_with(". .. dev etc opt proc sim tmp var \n"),
        "the root holds exactly the simulator's directories:\n{o}"
    );
    assert!(!o.contains("present="), "{o}");
    assert_eq!(o.matches("Read-only file system").count(), 4, "{o}");
    assert!(
        o.contains("\nfd full null random shm stderr stdin stdout tty urandom zero \n"),
        "/dev holds the minimal set:\n{o}"
    );
    assert!(o.contains("sbx_user1051:x:993:993:"), "{o}");
    assert!(o.contains("devnull-ok"), "{o}");
    // And the host has what the sandbox lacks (the check can fail).
    assert!(Path::new("/bin/sh").exists());
}

#[test]
fn tmp_has_the_requested_size_and_mode_1777_and_is_writable() {
    let layer = tmp_dir("scar-sim-layer-");
    let out = LambdaSim::new(layer.path()).tmp_mb(64).run(
        "df -k /tmp | tail -1; stat -c '%a' /tmp; echo data > /tmp/f && cat /tmp/f; \
         dd if=/dev/zero of=/tmp/big bs=1M count=80 2>&1 | grep -o 'No space left on device'",
        &[],
    );
    let o = &out.stdout;
    let size_k: u64 = o
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no df line:\n{o}\n{}", out.stderr));
    assert_eq!(size_k, 64 * 1024, "{o}");
    assert!(o.contains("\n1777\n") && o.contains("data\n"), "{o}");
    assert!(o.contains("No space left on device"), "{o}");
}

#[test]
fn a_layer_a_task_and_binds_from_under_tmp_appear_where_asked_and_nothing_else_of_the_host() {
    let layer = tmp_dir("scar-sim-layer-");
    let task = tmp_dir("scar-sim-task-");
    let extra = tmp_dir("scar-sim-extra-");
    let out_dir = tmp_dir("scar-sim-out-");
    std::fs::write(layer.path().join("layer.txt"), "layer\n").unwrap();
    std::fs::write(task.path().join("task.txt"), "task\n").unwrap();
    std::fs::write(extra.path().join("extra.txt"), "extra\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(out_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = LambdaSim::new(layer.path())
        .task(task.path())
        .ro_bind(extra.path(), "/images/extra")
        .ro_bind(extra.path().join("extra.txt"), "/etc/extra.txt")
        .bind(out_dir.path(), "/tmp/out")
        .run(
            "pwd; cat /opt/layer.txt task.txt /images/extra/extra.txt /etc/extra.txt; \
             touch /images/extra/x 2>&1; echo written > /tmp/out/result.txt; \
             ls /tmp | tr '\\n' ' '; echo; test -e /work && echo host-visible; true",
            &[],
        );
    out.assert_success();
    let o = &out.stdout;
    assert!(
        o.starts_with("/var/task\nlayer\ntask\nextra\nextra\n"),
        "{o}"
    );
    assert!(o.contains("Read-only file system"), "{o}");
    // The sandbox's /tmp is its own: none of the host's /tmp (where these directories are).
    assert!(o.contains("\nout \n"), "{o}");
    assert!(!o.contains("host-visible"), "{o}");
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("result.txt")).unwrap(),
        "written\n"
    );
}

#[test]
fn the_environment_is_exactly_the_one_given_and_the_exit_status_the_commands() {
    let layer = tmp_dir("scar-sim-layer-");
    let sim = LambdaSim::new(layer.path());
    let out = sim.run_argv(&["/sim/bin/env"], &[("A", "1"), ("SECRET", "s p a c e s")]);
    out.assert_success();
    assert_eq!(out.stdout, "A=1\nSECRET=s p a c e s\n");
    assert_eq!(sim.run("exit 7", &[]).code, Some(7));
    let missing = sim.run_argv(&["no-such-program"], &[("PATH", "/sim/bin")]);
    assert_eq!(missing.code, Some(127), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("no-such-program"),
        "{}",
        missing.stderr
    );
    let killed = sim.run("kill -9 $$", &[]);
    assert_eq!(killed.code, Some(128 + 9), "{}", killed.stderr);
}

/// Live host processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            (text.contains(marker) && state != "Z").then_some(text)
        })
        .collect()
}

#[test]
fn killing_the_simulator_ends_every_process_inside_and_the_commands_end_ends_the_rest() {
    let layer = tmp_dir("scar-sim-layer-");
    let sim = LambdaSim::new(layer.path());
    // A daemon left behind dies with the command.
    // (The numbers are computed so that only sleep's own command line holds the marker.)
    let out = sim.run(
        "(setsid sleep $((7000+341)) &) ; sleep 0.2; echo started",
        &[],
    );
    out.assert_success();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        processes_with("sleep 7341").is_empty(),
        "{:?}",
        processes_with("sleep 7341")
    );
    // Killing the launcher kills the sandbox.
    let mut child = sim
        .command("(setsid sleep $((7000+342)) &); sleep $((7000+343))", &[])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while processes_with("sleep 7343").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the sandbox did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!processes_with("sleep 7342").is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    loop {
        let left = [processes_with("sleep 7342"), processes_with("sleep 7343")].concat();
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "survivors after the launcher was killed: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

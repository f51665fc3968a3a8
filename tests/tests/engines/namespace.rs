//! The namespace engine end to end through `scar run`: as root, and as an unprivileged uid
//! (65534, dropped with `setpriv`), in a static busybox root and in a root made from the host's
//! own loader and libc.
//!
//! Run: `cargo test -p scar-e2e --test engines namespace::` (as root: the unprivileged cases use
//! setpriv and the refusal case writes `user.max_user_namespaces` in a child user namespace).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use scar_e2e::images;

/// The unprivileged uid and gid the second half of every test runs as.
const NOBODY: u32 = 65534;

/// `scar` of this workspace, built once per test process.
fn scar() -> &'static Path {
    static SCAR: OnceLock<PathBuf> = OnceLock::new();
    SCAR.get_or_init(|| reachable_by_nobody(&scar_e2e::workspace::binary("scar-tools", "scar")))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The unprivileged user must be able to execute scar: when a parent directory is private
/// (a checkout under /root), use a hard link (or copy) in a world-readable directory.
fn reachable_by_nobody(scar: &Path) -> PathBuf {
    if !is_root() {
        return scar.to_path_buf();
    }
    let probe = Command::new("setpriv")
        .args(nobody_args())
        .arg(scar)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if probe.is_ok_and(|s| s.success()) {
        return scar.to_path_buf();
    }
    let dir = std::env::temp_dir().join(format!("scar-namespace-test-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // `scar` executes `scar-full` from its own directory for everything but a cached run.
    for name in ["scar", "scar-full"] {
        let (original, copy) = (scar.with_file_name(name), dir.join(name));
        if std::fs::hard_link(&original, &copy).is_err() {
            std::fs::copy(&original, &copy).unwrap();
        }
    }
    dir.join("scar")
}

fn nobody_args() -> Vec<String> {
    vec![
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
    ]
}

/// Who runs `scar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Root,
    Nobody,
}

/// Both. Needs root: the unprivileged half drops to uid 65534 with setpriv, which only root can;
/// without it the test fails saying so rather than check half of what it promises.
fn everyone() -> Vec<Who> {
    assert!(
        is_root(),
        "this test runs as root and as uid 65534 (dropped with setpriv, which needs root): run it as root"
    );
    vec![Who::Root, Who::Nobody]
}

/// The test roots of one test, owned by the user who runs them (an unprivileged user's image
/// cache is its own, and only files it owns are writable by its container root).
struct Roots {
    _dir: tempfile::TempDir,
    busybox: PathBuf,
    dynamic: PathBuf,
    /// A host directory the user may write to.
    host: PathBuf,
}

fn roots(who: Who) -> Roots {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let busybox = dir.path().join("busybox");
    let dynamic = dir.path().join("dynamic");
    let host = dir.path().join("host");
    images::busybox_root(&busybox).unwrap();
    images::dynamic_root(&dynamic).unwrap();
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("marker"), "from the host\n").unwrap();
    if who == Who::Nobody {
        for tree in [&busybox, &dynamic, &host] {
            images::chown_tree(tree, NOBODY, NOBODY).unwrap();
        }
    }
    Roots {
        _dir: dir,
        busybox,
        dynamic,
        host,
    }
}

/// What one `scar run` did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `scar run ARGS` as `who`, with `stdin` piped in; killed if it takes over 90 s.
fn scar_run(who: Who, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut command = match who {
        Who::Root => Command::new(scar()),
        Who::Nobody => {
            let mut command = Command::new("setpriv");
            command.args(nobody_args()).arg("--").arg(scar());
            command
        }
    };
    command
        .arg("run")
        .args(args)
        .env("SCAR_LOG", "warn")
        .env("SCAR_TEST_SECRET", SECRET)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn scar run");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let deadline = started + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("scar run {args:?} as {who:?} did not end within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

#[test]
fn a_sigterm_to_scar_reaches_the_command() {
    let roots = roots(Who::Root);
    // Sent as soon as the command says it is ready, which can be before `scar` has its
    // handler in place: several rounds, so a lost signal in that window shows.
    for _ in 0..5 {
        sigterm_at_ready_reaches_the_command(&roots.busybox);
    }
}

fn sigterm_at_ready_reaches_the_command(busybox: &Path) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(scar())
        .args(["run", "--rootfs"])
        .arg(busybox)
        .args([
            "--",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; sleep 100 & wait",
        ])
        .env("SCAR_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn scar run");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got TERM");
    assert_eq!(status.code(), Some(5));
}

/// In the environment of every `scar run`: the container must never see it.
const SECRET: &str = "hunter2-from-the-host";

#[test]
fn the_callers_environment_and_arguments_stay_out_of_the_container() {
    for who in everyone() {
        let roots = roots(who);
        let script = "cat /proc/1/environ /proc/1/cmdline 2>&1; for p in /proc/[0-9]*; do \
                      cat $p/environ 2>/dev/null; done; env";
        let ran = sh_in(who, &roots.busybox, script);
        assert_eq!(ran.code, 0, "{who:?}: {ran:?}");
        assert!(!ran.stdout.contains(SECRET), "{who:?}: {ran:?}");
        assert!(
            !ran.stdout.contains(&rootfs(&roots.busybox)),
            "{who:?}: the host path of the root is not shown: {ran:?}"
        );
        assert!(
            ran.stdout.contains("scar-container-init"),
            "{who:?}: {ran:?}"
        );
    }
}

/// `sh -c script` in `root` as `who`.
fn sh_in(who: Who, root: &Path, script: &str) -> Ran {
    scar_run(
        who,
        &["--rootfs", &rootfs(root), "--", "sh", "-c", script],
        None,
    )
}

fn rootfs(root: &Path) -> String {
    root.display().to_string()
}

#[test]
fn id_u_prints_0_inside_both_roots() {
    for who in everyone() {
        let roots = roots(who);
        for root in [&roots.busybox, &roots.dynamic] {
            let ran = scar_run(who, &["--rootfs", &rootfs(root), "--", "id", "-u"], None);
            assert_eq!(
                (ran.code, ran.stdout.trim()),
                (0, "0"),
                "{who:?} in {}: {ran:?}",
                root.display()
            );
        }
    }
}

#[test]
fn the_hosts_files_are_not_visible_and_the_image_is_what_is_seen() {
    for who in everyone() {
        let roots = roots(who);
        let marker = roots.host.join("marker").display().to_string();
        for (root, id) in [
            (&roots.busybox, images::BUSYBOX_ID),
            (&roots.dynamic, images::DYNAMIC_ID),
        ] {
            let script = format!(
                "cat /etc/os-release; if [ -e {marker} ]; then echo HOST-VISIBLE; fi; ls /"
            );
            let ran = scar_run(
                who,
                &["--rootfs", &rootfs(root), "--", "sh", "-c", &script],
                None,
            );
            assert_eq!(ran.code, 0, "{who:?}: {ran:?}");
            assert!(ran.stdout.contains(&format!("ID={id}")), "{who:?}: {ran:?}");
            assert!(!ran.stdout.contains("HOST-VISIBLE"), "{who:?}: {ran:?}");
            assert!(!ran.stdout.contains("ID=debian"), "{who:?}: {ran:?}");
        }
    }
}

#[test]
fn a_write_to_etc_does_not_survive_to_the_next_run() {
    for who in everyone() {
        let roots = roots(who);
        let root = rootfs(&roots.busybox);
        let ran = scar_run(
            who,
            &[
                "--rootfs",
                &root,
                "--",
                "sh",
                "-c",
                "echo written > /etc/scar-written && cat /etc/scar-written",
            ],
            None,
        );
        assert_eq!(
            (ran.code, ran.stdout.trim()),
            (0, "written"),
            "{who:?}: {ran:?}"
        );
        let ran = scar_run(
            who,
            &["--rootfs", &root, "--", "sh", "-c", "cat /etc/scar-written"],
            None,
        );
        assert_ne!(ran.code, 0, "{who:?}: the write survived: {ran:?}");
        assert!(
            !roots.busybox.join("etc/scar-written").exists(),
            "{who:?}: the image was modified"
        );
    }
}

/// Host processes whose command line is exactly `sleep <seconds>`.
fn host_sleeps(seconds: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if args.len() == 2 && args[0].ends_with(b"sleep") && args[1] == seconds.as_bytes() {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` has ended (gone, or a zombie nobody has reaped yet).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[test]
fn the_init_ends_once_scar_has_returned() {
    // `scar run` returns on the init's record without waiting for its exit; the init puts
    // that exit off until `scar` has ended (its parent-death signal), so that the namespace
    // teardown does not compete with `scar`'s last steps. It must then end, not linger.
    let roots = roots(Who::Root);
    let mut child = Command::new(scar())
        .args([
            "run",
            "--rootfs",
            &rootfs(&roots.busybox),
            "--",
            "sleep",
            "1",
        ])
        .env("SCAR_LOG", "warn")
        .spawn()
        .unwrap();
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let started = Instant::now();
    let init = loop {
        let listed = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = listed.split_whitespace().next() {
            break pid.parse::<u32>().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no init started"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(child.wait().unwrap().success());
    let returned = Instant::now();
    while !ended(init) {
        assert!(
            returned.elapsed() < Duration::from_secs(10),
            "the init {init} is still there {:?} after scar returned",
            returned.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn background_processes_are_gone_when_scar_returns() {
    // The command's end ends the container: a process it left in the background is killed
    // with the PID namespace before `scar run` returns (which returns without waiting for the
    // init's own exit only when the init had no other process left).
    for (index, who) in everyone().into_iter().enumerate() {
        let roots = roots(who);
        let seconds = format!("{}", 200_000 + std::process::id() * 2 + index as u32);
        let script = format!("sleep {seconds} & exit 3");
        let ran = scar_run(
            who,
            &[
                "--rootfs",
                &rootfs(&roots.busybox),
                "--",
                "sh",
                "-c",
                &script,
            ],
            None,
        );
        assert_eq!(ran.code, 3, "{who:?}: the command's status: {ran:?}");
        let left = host_sleeps(&seconds);
        assert!(
            left.is_empty(),
            "{who:?}: processes left on the host: {left:?}"
        );
    }
}

#[test]
fn a_timeout_stops_the_whole_tree_and_no_process_is_left() {
    for (index, who) in everyone().into_iter().enumerate() {
        let roots = roots(who);
        // A duration no other test uses, so the host scan finds only this tree.
        let seconds = format!("{}", 100_000 + std::process::id() * 2 + index as u32);
        let script = format!("sleep {seconds} & sleep {seconds}");
        let ran = scar_run(
            who,
            &[
                "--rootfs",
                &rootfs(&roots.busybox),
                "--timeout",
                "2",
                "--",
                "sh",
                "-c",
                &script,
            ],
            None,
        );
        assert!(
            ran.code == 143 || ran.code == 137,
            "{who:?}: stopped by a signal: {ran:?}"
        );
        assert!(
            ran.took >= Duration::from_secs(2),
            "{who:?}: ended before the timeout: {ran:?}"
        );
        assert!(
            ran.stderr.contains("--timeout"),
            "{who:?}: says why: {ran:?}"
        );
        let left = host_sleeps(&seconds);
        assert!(
            left.is_empty(),
            "{who:?}: processes left on the host: {left:?}"
        );
    }
}

#[test]
fn exit_codes_and_signals_come_back() {
    for who in everyone() {
        let roots = roots(who);
        for root in [&roots.busybox, &roots.dynamic] {
            let root = rootfs(root);
            let ran = scar_run(who, &["--rootfs", &root, "--", "sh", "-c", "exit 7"], None);
            assert_eq!(ran.code, 7, "{who:?}: {ran:?}");
            let ran = scar_run(
                who,
                &["--rootfs", &root, "--", "sh", "-c", "kill -9 $$"],
                None,
            );
            assert_eq!(ran.code, 137, "{who:?}: {ran:?}");
            let ran = scar_run(
                who,
                &["--rootfs", &root, "--", "sh", "-c", "kill -TERM $$"],
                None,
            );
            assert_eq!(ran.code, 143, "{who:?}: {ran:?}");
        }
    }
}

#[test]
fn orphaned_zombies_are_reaped_by_the_init() {
    for who in everyone() {
        let roots = roots(who);
        // Each `(sleep 0.2 &)` leaves an orphan that PID 1 inherits; after they exit, no
        // process of the namespace may be a zombie.
        let script = "for i in 1 2 3 4 5; do (sleep 0.2 &); done; \
                      echo orphans; cat /proc/[0-9]*/stat; sleep 1.5; echo after; cat /proc/[0-9]*/stat";
        let ran = sh_in(who, &roots.busybox, script);
        assert_eq!(ran.code, 0, "{who:?}: {ran:?}");
        let (before, after) = ran.stdout.split_once("after").unwrap();
        // Orphans: processes other than the shell (PID 2) whose parent is PID 1.
        let orphans = before
            .lines()
            .filter(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.len() > 3 && fields[0] != "2" && fields[0] != "1" && fields[3] == "1"
            })
            .count();
        assert!(
            orphans >= 3,
            "{who:?}: the sleeps were re-parented to PID 1: {ran:?}"
        );
        let zombies: Vec<&str> = after
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("Z"))
            .collect();
        assert!(zombies.is_empty(), "{who:?}: zombies left: {zombies:?}");
    }
}

#[test]
fn stdin_reaches_the_command() {
    for who in everyone() {
        let roots = roots(who);
        for root in [&roots.busybox, &roots.dynamic] {
            let ran = scar_run(
                who,
                &["--rootfs", &rootfs(root), "--", "cat"],
                Some("line one\nline two\n"),
            );
            assert_eq!(
                (ran.code, ran.stdout.as_str()),
                (0, "line one\nline two\n"),
                "{who:?}: {ran:?}"
            );
        }
    }
}

#[test]
fn the_container_has_its_own_hostname_pids_proc_dev_and_tmp() {
    for who in everyone() {
        let roots = roots(who);
        let script = "hostname; echo pid=$$; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
                      echo data > /dev/null && head -c 4 /dev/zero | wc -c; ls /dev/shm >/dev/null && echo shm; \
                      echo t > /tmp/t && cat /tmp/t; ls -l /dev/stdin";
        let ran = sh_in(who, &roots.busybox, script);
        assert_eq!(ran.code, 0, "{who:?}: {ran:?}");
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(lines[0], "scar", "{who:?}: {ran:?}");
        assert_eq!(
            lines[1], "pid=2",
            "{who:?}: the command is the init's first child: {ran:?}"
        );
        assert!(lines[2].contains("scar-container-init"), "{who:?}: {ran:?}");
        assert_eq!(&lines[3..6], ["4", "shm", "t"], "{who:?}: {ran:?}");
        assert!(lines[6].contains("/proc/self/fd/0"), "{who:?}: {ran:?}");
    }
}

/// `Cpus_allowed_list` of a `/proc/PID/status` text.
fn cpus_allowed(status: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

#[test]
fn the_command_may_use_every_cpu_the_caller_may_while_the_init_stays_on_one() {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    // With one CPU the command's set and the init's are the same single number: nothing shows.
    assert!(
        ours.contains(',') || ours.contains('-'),
        "this test runs on one CPU ({ours}): the init's pinning shows only with at least two"
    );
    for who in everyone() {
        let roots = roots(who);
        let ran = sh_in(
            who,
            &roots.busybox,
            "grep Cpus_allowed_list /proc/self/status; grep Cpus_allowed_list /proc/1/status",
        );
        assert_eq!(ran.code, 0, "{who:?}: {ran:?}");
        let mut lines = ran.stdout.lines();
        let command = lines.next().and_then(cpus_allowed);
        let init = lines.next().and_then(cpus_allowed);
        assert_eq!(command.as_deref(), Some(ours.as_str()), "{who:?}: {ran:?}");
        let init = init.unwrap_or_else(|| panic!("{who:?}: {ran:?}"));
        // The init is pinned to the CPU the caller ran on (a single number).
        assert!(
            init.parse::<u32>().is_ok(),
            "{who:?}: init on {init}: {ran:?}"
        );
    }
}

#[test]
fn dns_files_are_the_hosts_and_a_write_to_them_stays_inside() {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for who in everyone() {
        let roots = roots(who);
        // A hostile image: its resolv.conf is a FIFO, which must not block the start.
        let hostile = roots.busybox.join("etc/resolv.conf");
        let _ = std::fs::remove_file(&hostile);
        nix::unistd::mkfifo(&hostile, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let script = "cat /etc/hosts /etc/resolv.conf; echo nameserver 192.0.2.1 > /etc/resolv.conf; echo status=$?";
        let ran = sh_in(who, &roots.dynamic, script);
        assert_eq!(ran.code, 0, "{who:?}: {ran:?}");
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
        assert!(
            ran.stdout.starts_with(&format!("{hosts}{host_resolv}")),
            "{who:?}: the host's files inside: {ran:?}"
        );
        assert!(ran.stdout.contains("status=0"), "{who:?}: {ran:?}");
        assert_eq!(
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            host_resolv,
            "{who:?}: the host's file changed"
        );
        // The image's own /etc stays visible beside the host's files (the upper layer's
        // /etc merges with it), and its FIFO is covered.
        let ran = sh_in(
            who,
            &roots.busybox,
            "stat -c %a /tmp /dev/shm; grep -c . /etc/os-release >/dev/null && echo os; test -f /etc/resolv.conf && echo file",
        );
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, "1777\n1777\nos\nfile\n"),
            "{who:?}: a FIFO resolv.conf: {ran:?}"
        );
    }
}

#[test]
fn env_workdir_and_volumes_are_applied() {
    for who in everyone() {
        let roots = roots(who);
        let host = roots.host.display().to_string();
        let rw = format!("{host}:/data");
        let ro = format!("{host}:/tmp/in:ro");
        let script = "echo $GREETING; pwd; cat /data/marker; echo out > /data/written; \
                      if echo x > /tmp/in/nope 2>/dev/null; then echo RO-WRITABLE; fi";
        let args = [
            "--rootfs",
            &rootfs(&roots.busybox),
            "-e",
            "GREETING=hello",
            "-w",
            "/tmp",
            "-v",
            &rw,
            "-v",
            &ro,
            "--",
            "sh",
            "-c",
            script,
        ];
        let ran = scar_run(who, &args, None);
        assert_eq!(ran.code, 0, "{who:?}: {ran:?}");
        assert_eq!(
            ran.stdout, "hello\n/tmp\nfrom the host\n",
            "{who:?}: {ran:?}"
        );
        assert_eq!(
            std::fs::read_to_string(roots.host.join("written")).unwrap(),
            "out\n"
        );
        assert!(!roots.host.join("nope").exists());
        assert!(
            !roots.busybox.join("data").exists(),
            "{who:?}: the mount point went to the overlay, not the image"
        );
    }
}

#[test]
fn a_command_missing_from_the_image_is_a_clear_error() {
    for who in everyone() {
        let roots = roots(who);
        let ran = scar_run(
            who,
            &[
                "--rootfs",
                &rootfs(&roots.busybox),
                "--",
                "no-such-tool",
                "x",
            ],
            None,
        );
        assert_eq!(ran.code, 127, "{who:?}: {ran:?}");
        assert!(
            ran.stderr
                .contains("cannot run `no-such-tool` in the image: not found in the image's PATH"),
            "{who:?}: {ran:?}"
        );
    }
}

/// `scar ARGS` as `who` in a parent user namespace whose limit for nested ones is 0:
/// creating a user namespace then fails with ENOSPC, as DESIGN.md's "Local fidelity"
/// prescribes for a host like Lambda.
fn scar_without_user_namespaces(
    who: Who,
    args: &[&OsStr],
    env: &[(&str, &OsStr)],
) -> std::process::Output {
    let mut command = Command::new(if who == Who::Nobody {
        "setpriv"
    } else {
        "unshare"
    });
    if who == Who::Nobody {
        command.args(nobody_args()).arg("--").arg("unshare");
    }
    command
        .args(["--user", "--map-root-user", "--fork", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"")
        .arg("sh")
        .arg(scar())
        .args(args)
        .env("SCAR_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run unshare")
}

#[test]
fn the_namespace_engine_refuses_in_one_line_when_user_namespaces_are_refused() {
    for who in everyone() {
        let roots = roots(who);
        let output = scar_without_user_namespaces(
            who,
            &[
                OsStr::new("run"),
                OsStr::new("--engine"),
                OsStr::new("namespace"),
                OsStr::new("--rootfs"),
                roots.busybox.as_os_str(),
                OsStr::new("--"),
                OsStr::new("true"),
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{who:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{who:?}: one line: {stderr}");
        assert!(
            lines[0].contains("the namespace engine is unavailable"),
            "{who:?}: {stderr}"
        );
        assert!(
            lines[0].contains("CLONE_NEWUSER") && lines[0].contains("ENOSPC"),
            "{who:?}: {stderr}"
        );
        assert!(
            lines[0].contains("max_user_namespaces") && lines[0].contains("--engine preload"),
            "{who:?}: {stderr}"
        );
    }
}

#[test]
fn auto_falls_back_to_the_preload_engine_when_user_namespaces_are_refused() {
    let preload = scar_e2e::lambda_sim::preload_libs();
    // Root only: the preload libraries live in the build tree, which need not be readable
    // by the unprivileged user (the lambda-sim tests cover a non-root uid with preload).
    let roots = roots(Who::Root);
    let output = scar_without_user_namespaces(
        Who::Root,
        &[
            OsStr::new("run"),
            OsStr::new("--rootfs"),
            roots.dynamic.as_os_str(),
            OsStr::new("--"),
            OsStr::new("sh"),
            OsStr::new("-c"),
            OsStr::new("echo $((6 * 7)); exit 3"),
        ],
        &[
            ("SCAR_PRELOAD_DIR", preload.as_os_str()),
            ("SCAR_LOG", OsStr::new("info")),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout} {stderr}");
    assert_eq!(stdout.trim(), "42", "{stderr}");
    assert!(
        stderr.contains("user namespaces are unavailable") && stderr.contains("preload"),
        "the fallback and its reason are logged: {stderr}"
    );
    assert!(stderr.contains("ENOSPC"), "{stderr}");
}

#[test]
fn an_oci_image_runs_with_its_entrypoint_cmd_and_env() {
    use scar_tools::oci::{LayoutOptions, write_from_dir};
    for who in everyone() {
        let roots = roots(who);
        let layout = roots.host.join("layout");
        let options = LayoutOptions {
            tag: "v1".into(),
            env: vec![
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "FROM_IMAGE=yes".into(),
            ],
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo cmd $FROM_IMAGE $(id -u)".into()],
            working_dir: Some("/etc".into()),
            ..LayoutOptions::default()
        };
        write_from_dir(&roots.busybox, &layout, &options).unwrap();
        images::make_readable(&roots.host).unwrap();
        if who == Who::Nobody {
            images::chown_tree(&roots.host, NOBODY, NOBODY).unwrap();
        }
        let cache = roots.host.join("cache").display().to_string();
        let image = format!("oci:{}:v1", layout.display());
        let ran = scar_run(who, &["--cache-dir", &cache, &image], None);
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, "cmd yes 0\n"),
            "{who:?}: {ran:?}"
        );
        // Arguments replace Cmd, the Entrypoint stays; -e overrides the image's Env.
        let ran = scar_run(
            who,
            &[
                "--cache-dir",
                &cache,
                "-e",
                "FROM_IMAGE=flag",
                &image,
                "--",
                "echo $FROM_IMAGE; pwd",
            ],
            None,
        );
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, "flag\n/etc\n"),
            "{who:?}: {ran:?}"
        );
    }
}

#[test]
fn the_engine_api_pipes_output_and_stops_the_tree_at_a_deadline() {
    use scar_rootfs::engine::namespace::NamespaceEngine;
    use scar_rootfs::engine::{Engine, RunSpec, Stdio as EngineStdio};
    use std::io::Read;
    let roots = roots(Who::Root);
    let engine = NamespaceEngine::with_helper(scar());
    let spec = |script: &str| RunSpec {
        root: roots.busybox.clone(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin:/usr/bin:/sbin:/usr/sbin".into())],
        workdir: "/".into(),
        user: Some("nobody".into()),
        mounts: Vec::new(),
        scratch: roots.host.join("scratch"),
        stdin: EngineStdio::Null,
        stdout: EngineStdio::Piped,
        stderr: EngineStdio::Piped,
    };
    let mut container = engine
        .spawn(&spec("echo out; echo err >&2; id -u"))
        .unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    container
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    container
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let outcome = container.wait(None, Duration::from_secs(1)).unwrap();
    // `nobody` is not mapped: the command runs as container root (and the engine logs why).
    assert_eq!(
        (out.as_str(), err.as_str(), outcome.exit_code()),
        ("out\n0\n", "err\n", 0)
    );

    let seconds = format!("{}", 200_000 + std::process::id());
    let mut container = engine
        .spawn(&spec(&format!(
            "trap '' TERM; sleep {seconds} & sleep {seconds}"
        )))
        .unwrap();
    let started = Instant::now();
    let outcome = container
        .wait(
            Some(Instant::now() + Duration::from_millis(500)),
            Duration::from_millis(500),
        )
        .unwrap();
    assert!(outcome.timed_out, "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "{outcome:?}");
    assert!(
        host_sleeps(&seconds).is_empty(),
        "processes left on the host"
    );

    // A container dropped without `wait` is stopped and reaped, not leaked.
    drop(engine.spawn(&spec(&format!("sleep {seconds}"))).unwrap());
    assert!(
        host_sleeps(&seconds).is_empty(),
        "a dropped container left processes"
    );
    let mut missing = spec("x");
    missing.argv = vec!["/no/such/program".into()];
    let err = engine
        .spawn(&missing)
        .err()
        .expect("a missing program is an error");
    assert!(
        err.to_string()
            .contains("/no/such/program does not exist in the image"),
        "{err}"
    );
}

//! The preload engine end to end: images run through their own loader with the path-mapping
//! library, first directly on this host, then inside a simulated Lambda sandbox (non-root uid,
//! user namespaces refused, read-only root, small `/tmp`).
//!
//! Run: `cargo test -p scar-e2e --test preload preload::` (as root: the sandbox cases run `scar
//! lambda-sim` and the static binaries of `./build.sh`; the Debian case builds its image with
//! debootstrap once and caches it under /var/tmp/scar-test-images).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use scar_e2e::container::{self, Ran, spec};
use scar_e2e::lambda_sim::{self, LambdaSim};
use scar_rootfs::engine::preload::PreloadEngine;
use scar_rootfs::engine::{Engine, Mount, RunSpec, Stdio};

fn engine() -> PreloadEngine {
    PreloadEngine::new(lambda_sim::preload_libs()).expect("preload libraries built")
}

fn run_spec(spec: &RunSpec, deadline: Option<Duration>) -> Ran {
    container::run(&engine(), spec, deadline, Duration::from_secs(2)).expect("spawn")
}

fn sh(root: &Path, script: &str) -> Ran {
    let ran = run_spec(
        &spec(root, &["/bin/sh", "-c", script]),
        Some(Duration::from_secs(120)),
    );
    assert_eq!(
        ran.outcome.code,
        Some(0),
        "script failed\nstdout:\n{}\nstderr:\n{}",
        ran.stdout,
        ran.stderr
    );
    ran
}

#[test]
fn os_release_comes_from_the_image_not_the_host() {
    let root = lambda_sim::dynamic_image();
    let ran = run_spec(&spec(&root, &["cat", "/etc/os-release"]), None);
    assert_eq!(ran.outcome.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("SCAR dynamic test image"),
        "{}",
        ran.stdout
    );
    let host = std::fs::read_to_string("/etc/os-release").unwrap();
    assert_ne!(ran.stdout, host);
}

#[test]
fn shell_scripts_with_coreutils_pipelines_and_subshells_run_in_the_image() {
    let root = lambda_sim::dynamic_image();
    let ran = sh(
        &root,
        r#"set -e
        n=$(ls /usr/share/scar-test | wc -l)
        echo "files=$n"
        (cd /usr/share/scar-test && echo "sub=$(pwd)" && cat data.txt) | tr a-z A-Z
        seq 1 100 | grep -c 7 | sed 's/^/sevens=/'
        cat /usr/share/scar-test/*.txt | sort | head -1
        echo "bash says $(bash -c 'echo $((6*7))')"
        test -x /usr/bin/cat && echo executable
        readlink /proc/self/exe
        echo "cwd=$(pwd)"
        "#,
    );
    let out = ran.stdout;
    assert!(out.contains("files=2"), "{out}");
    assert!(
        out.contains("SUB=/USR/SHARE/SCAR-TEST") && out.contains("FORTY-TWO"),
        "{out}"
    );
    assert!(out.contains("sevens=19"), "{out}");
    assert!(out.contains("bash says 42"), "{out}");
    assert!(out.contains("executable"), "{out}");
    assert!(
        out.contains("/usr/bin/readlink"),
        "/proc/self/exe must answer the image path: {out}"
    );
    assert!(out.contains("cwd=/\n"), "{out}");
}

#[test]
fn a_program_reads_data_files_by_absolute_path_and_spawns_children() {
    let root = lambda_sim::dynamic_image();
    let ran = run_spec(
        &spec(&root, &["probe", "spawn"]),
        Some(Duration::from_secs(60)),
    );
    let out = &ran.stdout;
    assert_eq!(ran.outcome.code, Some(0), "{out}\n{}", ran.stderr);
    assert!(out.contains("argv0=probe\n"), "{out}");
    assert!(out.contains("data=forty-two"), "{out}");
    assert!(out.contains("entries=4"), "{out}");
    assert!(out.contains("exe=/usr/bin/probe"), "{out}");
    assert!(
        out.contains("realpath=/usr/share/scar-test/data.txt"),
        "{out}"
    );
    assert!(out.contains("write-image=Read-only file system"), "{out}");
    assert!(
        out.contains("i am the child") && out.contains("child-status=0"),
        "{out}"
    );
    assert!(!root.join("etc/probe-write").exists());
}

#[test]
fn a_shell_started_by_libc_system_is_the_image_shell() {
    let root = lambda_sim::dynamic_image();
    let ran = run_spec(
        &spec(&root, &["probe", "system"]),
        Some(Duration::from_secs(60)),
    );
    let out = &ran.stdout;
    assert_eq!(ran.outcome.code, Some(0), "{out}\n{}", ran.stderr);
    // glibc's system() execs the host's /bin/sh internally; the library's constructor sees a
    // program outside the image and starts the image's /bin/sh through the image's loader.
    assert!(
        out.contains("shell-exe=/usr/lib/") && out.contains("ld-linux"),
        "{out}"
    );
    assert!(out.contains("system=0"), "{out}");
}

#[test]
fn without_openat2_the_userspace_resolver_gives_the_same_answers() {
    // Kernels before 5.6 (or a seccomp filter refusing openat2) take the library's userspace
    // walk; SCAR_PRELOAD_NO_OPENAT2 forces it here.
    let root = lambda_sim::dynamic_image();
    let mut s = spec(
        &root,
        &[
            "/bin/sh",
            "-c",
            "awk 'BEGIN { print \"awk ok\" }'; readlink -f /usr/bin/awk; cat /etc/os-release; \
             probe spawn | grep -E 'data=|realpath=|child-status'; cd /usr/share/scar-test && cat data.txt",
        ],
    );
    s.env.push(("SCAR_PRELOAD_NO_OPENAT2".into(), "1".into()));
    let ran = run_spec(&s, Some(Duration::from_secs(60)));
    let out = &ran.stdout;
    assert_eq!(ran.outcome.code, Some(0), "{out}\n{}", ran.stderr);
    assert!(
        out.contains("awk ok") && out.contains("/usr/bin/mawk"),
        "{out}"
    );
    assert!(out.contains("SCAR dynamic test image"), "{out}");
    assert!(
        out.contains("realpath=/usr/share/scar-test/data.txt"),
        "{out}"
    );
    assert!(
        out.contains("child-status=0") && out.matches("forty-two").count() >= 2,
        "{out}"
    );
}

#[test]
fn absolute_symlinks_in_the_image_resolve_inside_it() {
    let root = lambda_sim::dynamic_image();
    let ran = sh(
        &root,
        "awk 'BEGIN { print \"awk ok\" }'; readlink -f /usr/bin/awk; realpath /lib64/ld-linux-x86-64.so.2; \
         cat /etc/alternatives/awk > /dev/null && echo through-link",
    );
    let out = ran.stdout;
    assert!(out.contains("awk ok"), "{out}");
    assert!(out.contains("/usr/bin/mawk"), "{out}");
    assert!(
        out.contains("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            || cfg!(not(target_arch = "x86_64")),
        "{out}"
    );
    assert!(out.contains("through-link"), "{out}");
}

#[test]
fn writes_into_the_image_fail_with_erofs_and_it_stays_pristine() {
    let root = lambda_sim::dynamic_image();
    let ran = sh(
        &root,
        "touch /etc/new 2>&1; mkdir /opt-new 2>&1; rm /etc/os-release 2>&1; echo x >> /etc/passwd 2>&1; \
         ln -s /x /etc/link 2>&1; mv /etc/passwd /etc/p2 2>&1; chmod 777 /etc/os-release 2>&1; \
         echo scratch > /tmp/scar-preload-test-$$ && cat /tmp/scar-preload-test-$$ && rm /tmp/scar-preload-test-$$; true",
    );
    let out = ran.stdout;
    assert!(out.matches("Read-only file system").count() >= 6, "{out}");
    assert!(out.contains("scratch"), "/tmp must stay writable: {out}");
    assert!(!root.join("etc/new").exists() && !root.join("opt-new").exists());
    assert!(root.join("etc/os-release").exists() && !root.join("etc/link").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
}

#[test]
fn a_script_runs_another_shebang_script_from_a_bound_directory() {
    let root = lambda_sim::dynamic_image();
    let dir = tempfile::tempdir().unwrap();
    let write_script = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_script(
        "outer.sh",
        "#!/bin/sh\necho \"outer $0\"\n/scripts/inner.pl hello\n/scripts/inner.sh > /scripts/out.txt\n",
    );
    write_script(
        "inner.sh",
        "#!/usr/bin/env bash\necho \"inner $BASH_VERSION\" | cut -c1-7\ncat /etc/os-release | head -1\n",
    );
    write_script(
        "inner.pl",
        "#!/usr/bin/perl -w\nuse strict;\nopen(my $f, '<', '/usr/share/scar-test/data.txt') or die;\nprint \"perl read \", scalar(<$f>);\nprint \"perl arg $ARGV[0]\\n\";\n",
    );
    let mut s = spec(&root, &["/scripts/outer.sh"]);
    s.mounts.push(Mount {
        host: dir.path().to_path_buf(),
        container: PathBuf::from("/scripts"),
        read_only: false,
    });
    let ran = run_spec(&s, Some(Duration::from_secs(60)));
    assert_eq!(ran.outcome.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("outer /scripts/outer.sh"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("perl read forty-two") && ran.stdout.contains("perl arg hello"),
        "{}",
        ran.stdout
    );
    let inner = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert!(
        inner.contains("inner 5") && inner.contains("SCAR dynamic test image"),
        "{inner}"
    );
}

#[test]
fn a_static_program_runs_directly() {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    let root = lambda_sim::dynamic_image();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
    let mut s = spec(&root, &["/static/busybox", "echo", "static ok"]);
    s.mounts.push(Mount {
        host: dir.path().to_path_buf(),
        container: PathBuf::from("/static"),
        read_only: true,
    });
    let ran = run_spec(&s, Some(Duration::from_secs(30)));
    assert_eq!(ran.outcome.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout, "static ok\n");
}

#[test]
fn a_missing_command_is_a_clear_error() {
    let root = lambda_sim::dynamic_image();
    let err = engine()
        .spawn(&spec(&root, &["no-such-tool"]))
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("no-such-tool") && err.contains("PATH"),
        "{err}"
    );
}

#[test]
fn the_deadline_stops_the_whole_process_group() {
    let root = lambda_sim::dynamic_image();
    let started = Instant::now();
    let mut s = spec(
        &root,
        &["/bin/sh", "-c", "sleep 300 & sleep 300; echo not reached"],
    );
    s.stdout = Stdio::Null;
    s.stderr = Stdio::Null;
    let mut c = engine().spawn(&s).expect("spawn");
    let pgid = nix::unistd::Pid::from_raw(c.pid() as i32);
    let outcome = c
        .wait(
            Some(Instant::now() + Duration::from_secs(2)),
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(outcome.timed_out, "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let survivors = live_members_of_group(pgid.as_raw());
    assert!(
        survivors.is_empty(),
        "background job survived: {survivors:?}"
    );
}

/// PIDs in process group `pgid` that are not zombies (an orphan killed by the sweep may stay a
/// zombie until this machine's init reaps it).
fn live_members_of_group(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses: state ppid pgrp …
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) && fields[0] != "Z" {
            pids.push(pid);
        }
    }
    pids
}

/// `.gnu.version_r` as `readelf -V` prints it: every `GLIBC_x.y` a library needs.
fn glibc_versions_needed(lib: &Path) -> Vec<(u32, u32)> {
    let out = Command::new("readelf")
        .arg("-V")
        .arg(lib)
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let section = text
        .split("Version needs section")
        .nth(1)
        .expect(".gnu.version_r present");
    section
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.');
            Some((
                it.next()?.parse().ok()?,
                it.next().unwrap_or("0").parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn the_glibc_build_needs_no_symbol_version_newer_than_2_17() {
    let lib = lambda_sim::preload_libs().join("libscar_preload-gnu.so");
    let versions = glibc_versions_needed(&lib);
    assert!(
        !versions.is_empty(),
        "no GLIBC versions parsed from {}",
        lib.display()
    );
    let newest = versions.iter().max().unwrap();
    assert!(
        *newest <= (2, 17),
        "{} needs GLIBC_{}.{}: {versions:?}",
        lib.display(),
        newest.0,
        newest.1
    );
    // The aarch64 build as well (cross-built with zig).
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(lambda_sim::repo_root().join("rootfs/preload/build.sh"))
        .arg("aarch64")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let arm = glibc_versions_needed(&out.path().join("libscar_preload-gnu.so"));
    assert!(arm.iter().all(|v| *v <= (2, 17)), "aarch64: {arm:?}");
}

#[test]
fn the_musl_image_runs_through_the_musl_loader() {
    let root = lambda_sim::musl_image();
    let ran = run_spec(
        &spec(&root, &["/usr/bin/probe", "spawn"]),
        Some(Duration::from_secs(60)),
    );
    let out = &ran.stdout;
    assert_eq!(ran.outcome.code, Some(0), "{out}\n{}", ran.stderr);
    assert!(
        out.contains("data=forty-two") && out.contains("exe=/usr/bin/probe"),
        "{out}"
    );
    assert!(out.contains("argv0=/usr/bin/probe\n"), "{out}");
    assert!(out.contains("write-image=Read-only file system"), "{out}");
    assert!(out.contains("i am the child"), "{out}");
}

#[test]
fn the_debian_image_runs_its_own_tools() {
    let root = lambda_sim::debian_image();
    let ran = sh(
        &root,
        "cat /etc/debian_version; . /etc/os-release; echo \"id=$ID\"; dpkg-query -W -f '${Package}\\n' bash; \
         perl -MFile::Spec -e 'print \"perl \", File::Spec->catfile(\"a\",\"b\"), \"\\n\"'; \
         find /usr/share/doc -maxdepth 1 -type d | wc -l; getconf GNU_LIBC_VERSION",
    );
    let out = ran.stdout;
    assert!(
        out.contains("id=debian") && out.contains("\nbash\n") && out.contains("perl a/b"),
        "{out}"
    );
}

// ---- Under the simulated Lambda ------------------------------------------------------------

/// The simulated Lambda (`scar lambda-sim`) with the preload libraries at `/opt/preload` and
/// the static `scar` at `/sim/scar`, and the layer directory it uses.
fn sim() -> (LambdaSim, tempfile::TempDir) {
    let layer = lambda_sim::layer_dir();
    (LambdaSim::new(layer.path()).with_scar(), layer)
}

/// A shell line that copies `image` (bound read-only at `/images/<name>`) into the sandbox's
/// `/tmp/scar/rootfs/<name>` (Lambda keeps the cache in `/tmp`, writable by the function's
/// uid) and runs `argv` there with `scar run --engine preload` (the static scar: nothing
/// dynamic of this host runs on the simulator's bare root).
fn sandboxed(sim: LambdaSim, image: &Path, name: &str, argv: &[&str]) -> (LambdaSim, String) {
    let root = format!("/tmp/scar/rootfs/{name}");
    let argv: Vec<String> = argv.iter().map(|a| lambda_sim::shell_quote(a)).collect();
    let line = format!(
        "mkdir -p /tmp/scar/rootfs && cp -R /images/{name} {root} && \
         {scar}/scar run --engine preload --rootfs {root} -- {argv}",
        scar = lambda_sim::SCAR_DIR,
        argv = argv.join(" "),
    );
    (sim.ro_bind(image, format!("/images/{name}")), line)
}

/// The environment of a sandboxed `scar run`: the preload libraries of the layer.
const PRELOAD_ENV: (&str, &str) = ("SCAR_PRELOAD_DIR", "/opt/preload");

#[test]
fn the_simulated_lambda_refuses_user_namespaces_and_runs_as_uid_993() {
    let (sim, _layer) = sim();
    let out = sim.run(
        "id -u; unshare -U true 2>&1; echo rc=$?; touch /probe 2>&1; ls /opt/preload",
        &[],
    );
    out.assert_success();
    assert!(out.stdout.starts_with("993\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("No space left on device") && out.stdout.contains("rc=1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Read-only file system"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("libscar_preload-gnu.so"),
        "{}",
        out.stdout
    );
}

#[test]
fn under_simulated_lambda_the_dynamic_image_runs_scripts_perl_and_stays_pristine() {
    let (sim, _layer) = sim();
    let image = lambda_sim::dynamic_image();
    let script = "cat /etc/os-release; ls / | wc -l | sed 's/^/top=/'; (echo sub; echo shell) | sort -r | tr '\\n' ' '; echo; \
        perl -e 'print \"perl \", 6*7, \"\\n\"'; probe spawn | grep -E 'data=|child-status'; \
        touch /etc/new 2>&1; echo written > /tmp/out.txt && cat /tmp/out.txt";
    let (sim, line) = sandboxed(sim, &image, "dyn", &["/bin/sh", "-c", script]);
    let line = format!("{line} && test ! -e /tmp/scar/rootfs/dyn/etc/new && echo image-pristine");
    // `scar run` is a tool for people, run with their own environment; the function's secrets
    // are the bootstrap's, and bootstrap_isolation.rs checks those stay unreadable here.
    let out = sim.run(&line, &[PRELOAD_ENV]);
    out.assert_success();
    let o = &out.stdout;
    assert!(o.contains("SCAR dynamic test image"), "{o}");
    assert!(o.contains("sub shell"), "{o}");
    assert!(o.contains("perl 42"), "{o}");
    assert!(
        o.contains("data=forty-two") && o.contains("child-status=0"),
        "{o}"
    );
    assert!(
        o.contains("touch: cannot touch '/etc/new': Read-only file system"),
        "{o}"
    );
    assert!(o.contains("written"), "{o}");
    assert!(o.contains("image-pristine"), "{o}");
}

#[test]
fn under_simulated_lambda_the_musl_image_runs() {
    let (sim, _layer) = sim();
    let image = lambda_sim::musl_image();
    let (sim, line) = sandboxed(sim, &image, "musl", &["/usr/bin/probe", "spawn"]);
    let out = sim.run(&line, &[PRELOAD_ENV]);
    out.assert_success();
    assert!(
        out.stdout.contains("data=forty-two") && out.stdout.contains("i am the child"),
        "{}",
        out.stdout
    );
}

#[test]
fn under_simulated_lambda_the_debian_image_runs() {
    let (sim, _layer) = sim();
    let image = lambda_sim::debian_image();
    let script = "cat /etc/os-release | grep ^ID=; bash -c 'echo bash $((1+1))'; \
        perl -e 'print \"perl ok\\n\"'; find /etc -xdev -type f | wc -l | sed 's/^/etc-files=/'";
    let (sim, line) = sandboxed(sim, &image, "debian", &["/bin/sh", "-c", script]);
    let out = sim.run(&line, &[PRELOAD_ENV]);
    out.assert_success();
    assert!(
        out.stdout.contains("ID=debian")
            && out.stdout.contains("bash 2")
            && out.stdout.contains("perl ok"),
        "{}",
        out.stdout
    );
}

// ---- The bootstrap under the simulated Lambda: engine auto → preload -----------------------

/// Reads every process environment it can reach through `/proc`, and converts its input.
const SNOOP_SCRIPT: &str = r#"
for f in /proc/[0-9]*/environ; do cat "$f" 2>/dev/null; done | tr '\0' '\n' > /tmp/seen.txt
grep -c -e registry-secret-marker -e aws-secret-probe-7f3a /tmp/seen.txt > "$SCAR_OUTPUT_DIR/hits.txt"
tr a-z A-Z < "$SCAR_INPUT_FILE" > "$SCAR_OUTPUT_DIR/$(basename "$SCAR_INPUT_FILE")"
exit 0
"#;

#[test]
fn under_simulated_lambda_the_bootstrap_picks_preload_and_completes_the_s3_flow() {
    use scar_e2e::{RuntimeApi, S3Server};
    let (sim, layer) = sim();
    // The static bootstrap of ./build.sh: the simulator's root holds no C library.
    let bootstrap = layer.path().join("bootstrap");
    std::fs::copy(lambda_sim::static_binaries().join("bootstrap"), &bootstrap).unwrap();
    // The busybox image is an OCI layout under the image cache: shown at the same path.
    let sim = sim.ro_bind(lambda_sim::IMAGE_CACHE, lambda_sim::IMAGE_CACHE);
    let s3 = S3Server::start();
    s3.create_bucket(crate::bootstrap_support::BUCKET);
    let api = RuntimeApi::start();
    let mut env: Vec<(String, String)> = api.function_env(scar_e2e::runtime_api::DEFAULT_FUNCTION);
    env.extend(s3.env());
    env.extend(
        [
            ("SCAR_IMAGE", crate::bootstrap_support::busybox_image()),
            ("SCAR_CACHE_DIR", "/tmp/scar".into()),
            ("SCAR_SCRIPT", SNOOP_SCRIPT.into()),
            ("SCAR_REGISTRY_USERNAME", "someone".into()),
            ("SCAR_REGISTRY_PASSWORD", "registry-secret-marker".into()),
            ("AWS_SESSION_TOKEN", "aws-secret-probe-7f3a".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log_path = layer.path().join("bootstrap.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = sim
        .exec(&["/opt/bootstrap"], &env_ref)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    s3.put_object(crate::bootstrap_support::BUCKET, "in/cat.txt", b"meow\n");
    let event = crate::bootstrap_support::s3_event(vec![crate::bootstrap_support::s3_record(
        crate::bootstrap_support::BUCKET,
        "in/cat.txt",
        5,
    )]);
    let result = api.try_invoke(
        scar_e2e::runtime_api::DEFAULT_FUNCTION,
        &event,
        crate::bootstrap_support::INVOKE_TIMEOUT,
    );
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let result = result.unwrap_or_else(|e| panic!("{e}\n--- bootstrap log ---\n{log}"));
    assert_eq!(result.status, 200, "{}\n{log}", result.body);
    assert_eq!(result.body["engine"], "preload", "{}\n{log}", result.body);
    let out = s3.get_object(crate::bootstrap_support::BUCKET, "output/cat.txt");
    assert_eq!(out.as_deref(), Some(&b"MEOW\n"[..]), "{log}");
    let hits = s3
        .get_object(crate::bootstrap_support::BUCKET, "output/hits.txt")
        .expect("hits.txt");
    assert_eq!(
        String::from_utf8_lossy(&hits).trim(),
        "0",
        "the container read the bootstrap's secrets"
    );
    assert!(
        log.contains("preload"),
        "the engine choice is logged:\n{log}"
    );
}

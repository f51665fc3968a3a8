//! Binaries of this workspace, built by the tests that run them.
//!
//! Every build goes through [`binaries`]: one `cargo build` for all the binaries a test process
//! asks for at once, in the profile the test itself was built with, and none built twice in one
//! process. A nested `cargo build` waits on the cargo lock every engineer and test shares, so
//! fewer calls mean less waiting.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Build `bin` of `package` with the profile of the running test and return its path.
///
/// Panics with one line when the build fails (tests only).
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let [path] = binaries([(package, bin)]);
    path
}

/// Build each `(package, bin)` in one `cargo build` with the profile of the running test and
/// return their paths in the order asked.
///
/// The test binary is `target/<profile>/deps/<name>`, so the workspace's binaries sit in
/// `target/<profile>/`; a test built with `--release` gets release binaries. Binaries this
/// process has already built are not built again; concurrent callers wait for each other
/// rather than start a second cargo. Panics with one line when the build fails (tests only).
pub fn binaries<const N: usize>(wanted: [(&str, &str); N]) -> [PathBuf; N] {
    // (package, bin) already built by this process.
    static BUILT: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let missing: Vec<(&str, &str)> = wanted
        .into_iter()
        .filter(|(package, bin)| !built.iter().any(|(p, b)| p == package && b == bin))
        .collect();
    let dir = profile_dir();
    if !missing.is_empty() {
        cargo_build(&dir, &missing);
        built.extend(missing.iter().map(|(p, b)| (p.to_string(), b.to_string())));
    }
    wanted.map(|(_, bin)| {
        let path = dir.join(bin);
        assert!(path.is_file(), "no {bin} at {}", path.display());
        path
    })
}

/// `target/<profile>/` of this workspace: where the running test binary's `deps/` is.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

fn cargo_build(dir: &Path, bins: &[(&str, &str)]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.arg("build");
    for (package, bin) in bins {
        command.args(["-p", package, "--bin", bin]);
        // `scar` executes `scar-full` beside it for everything but a cached `scar run`.
        if (*package, *bin) == ("scar-tools", "scar") {
            command.args(["--bin", "scar-full"]);
        }
    }
    // `dev` and `test` build into target/debug, `release` and `bench` into target/release, a
    // custom profile into a directory of its own name.
    match dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    let what = format!("{command:?}");
    let status = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|err| panic!("cannot run {what}: {err}"));
    assert!(status.success(), "{what} failed: {status}");
}

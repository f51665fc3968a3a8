//! Binaries of this workspace, built by the tests that run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Build `bin` of `package` with the profile of the running test and return its path.
///
/// The test binary is `target/<profile>/deps/<name>`, so the workspace's binaries sit in
/// `target/<profile>/`. Panics with one line when the build fails (tests only).
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo build -p {package}: {err}"));
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed: {status}"
    );
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(bin)
}

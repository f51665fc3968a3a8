//! Binaries of this workspace, built before the tests run, never by a test.
//!
//! `test.sh` runs `cargo build --workspace --bins --locked` before `cargo test`, in the same
//! profile; a test finds the binaries in `target/<profile>/`, beside the `deps/` directory of its
//! own executable. A binary that is missing, or older than a source file it was built from (from
//! cargo's own dep-info file, `target/<profile>/<bin>.d`), fails the test with one line naming
//! the cargo command to run (a stale one is accepted with `SCAR_E2E_BUILT=1`: test.sh built it in
//! this run). A test never starts a cargo build, which would wait on the cargo lock and rebuild
//! under the test's feet.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The built `bin` of `package`, with the profile of the running test.
///
/// Panics with one line saying what to build when it is missing or stale (tests only).
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let [path] = binaries([(package, bin)]);
    path
}

/// The built binaries `(package, bin)`, in the order asked, with the profile of the running
/// test.
///
/// The test binary is `target/<profile>/deps/<name>`, so the workspace's binaries sit in
/// `target/<profile>/`; a test built with `--release` gets release binaries. `scar` comes with
/// `scar-full` (it executes it from its own directory), so asking for `scar` checks both.
/// Panics with one line saying what to build when one is missing or stale (tests only).
pub fn binaries<const N: usize>(wanted: [(&str, &str); N]) -> [PathBuf; N] {
    let dir = profile_dir();
    wanted.map(|(package, bin)| {
        if (package, bin) == ("scar-tools", "scar") {
            check_built(&dir, "scar-full");
        }
        check_built(&dir, bin)
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

/// `dir/bin`, or a panic naming the command that builds it.
fn check_built(dir: &Path, bin: &str) -> PathBuf {
    let path = dir.join(bin);
    let build = build_command(dir);
    if !path.is_file() {
        panic!(
            "{} is missing: run `{build}` (./test.sh does it before the tests)",
            path.display()
        );
    }
    if let Some(source) = newer_source(&path, &dir.join(format!("{bin}.d")))
        && !built_by_this_run()
    {
        panic!(
            "{} is older than {}: run `{build}` (./test.sh does it before the tests)",
            path.display(),
            source.display()
        );
    }
    path
}

/// `SCAR_E2E_BUILT=1`: test.sh built every binary at the start of this run, so a source edited
/// since (in a working tree someone is editing) is not part of what this run tests, and the
/// binaries are used as they are.
pub fn built_by_this_run() -> bool {
    std::env::var_os("SCAR_E2E_BUILT").is_some_and(|value| value == "1")
}

/// The cargo command that builds every binary of the workspace into `dir`.
fn build_command(dir: &Path) -> String {
    // `dev` and `test` build into target/debug, `release` and `bench` into target/release, a
    // custom profile into a directory of its own name.
    let profile = match dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => String::new(),
        Some("release") => " --release".to_owned(),
        Some(profile) => format!(" --profile {profile}"),
    };
    format!("cargo build --workspace --bins --locked{profile}")
}

/// A source file listed in cargo's dep-info file `depinfo` (`output: source source ...`) that
/// was modified after `output` was written: cargo would rebuild `output`. `None` when all are
/// older, or when there is no dep-info file to read (a binary built some other way).
pub fn newer_source(output: &Path, depinfo: &Path) -> Option<PathBuf> {
    let built = modified(output)?;
    let text = std::fs::read_to_string(depinfo).ok()?;
    // The first line is `target: deps...`; later lines name env vars (`# env-dep:`) or repeat
    // each dependency as an empty rule. Spaces in paths are escaped as `\ `.
    let first = text.lines().next()?;
    let (_, deps) = first.split_once(": ")?;
    let deps = deps.replace("\\ ", "\u{0}");
    deps.split(' ')
        .filter(|dep| !dep.is_empty())
        .map(|dep| PathBuf::from(dep.replace('\u{0}', " ")))
        .find(|dep| modified(dep).is_some_and(|changed| changed > built))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets the modification time of `path` to `secs` after the epoch.
    fn set_mtime(path: &Path, secs: u64) {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        file.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .expect("set mtime");
    }

    #[test]
    fn a_source_newer_than_the_binary_is_named_and_older_ones_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("scar");
        let old = dir.path().join("old source.rs");
        let new = dir.path().join("new.rs");
        for path in [&bin, &old, &new] {
            std::fs::write(path, b"x").expect("write");
        }
        set_mtime(&old, 1_000);
        set_mtime(&bin, 2_000);
        set_mtime(&new, 3_000);
        let depinfo = dir.path().join("scar.d");
        let escaped = old.display().to_string().replace(' ', "\\ ");
        std::fs::write(
            &depinfo,
            format!(
                "{}: {escaped} {}\n\n{escaped}:\n\n# env-dep:X=1\n",
                bin.display(),
                new.display()
            ),
        )
        .expect("write depinfo");
        assert_eq!(newer_source(&bin, &depinfo), Some(new.clone()));
        set_mtime(&new, 1_500);
        assert_eq!(newer_source(&bin, &depinfo), None);
        // The escaped path is read whole: made newer, it is the one named.
        set_mtime(&old, 2_500);
        assert_eq!(newer_source(&bin, &depinfo), Some(old));
    }

    #[test]
    fn the_build_command_follows_the_profile_directory() {
        assert_eq!(
            build_command(Path::new("/r/target/debug")),
            "cargo build --workspace --bins --locked"
        );
        assert_eq!(
            build_command(Path::new("/r/target/release")),
            "cargo build --workspace --bins --locked --release"
        );
        assert_eq!(
            build_command(Path::new("/r/target/fast")),
            "cargo build --workspace --bins --locked --profile fast"
        );
    }
}

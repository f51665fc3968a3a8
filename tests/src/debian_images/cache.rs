//! The image cache under [`IMAGE_CACHE`]: each image is built once, in a temporary directory
//! renamed into place, under a lock shared by every test process.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::command::run_ok;
use crate::lambda_sim::IMAGE_CACHE;

/// Bump when a recipe below changes: the cached roots and layouts carry it in their names.
pub(super) const RECIPE: u32 = 1;
/// An exclusive `flock` on `IMAGE_CACHE/.<name>.lock`: the tests of one process, the test
/// binaries of `cargo test` and other users' test runs share the cache, and an image must be
/// built once (each holder opens the file itself, so threads exclude each other too).
struct CacheLock {
    _file: File,
}

impl CacheLock {
    fn acquire(name: &str) -> CacheLock {
        std::fs::create_dir_all(IMAGE_CACHE)
            .unwrap_or_else(|err| panic!("cannot create {IMAGE_CACHE}: {err}"));
        let path = Path::new(IMAGE_CACHE).join(format!(".{name}.lock"));
        let file = File::create(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        // SAFETY: flock on a descriptor this File owns; it is released when the File closes.
        let rc = unsafe {
            use std::os::fd::AsRawFd;
            libc::flock(file.as_raw_fd(), libc::LOCK_EX)
        };
        assert_eq!(
            rc,
            0,
            "flock {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        CacheLock { _file: file }
    }
}

/// Build `name` in the cache with `recipe` (given a fresh temporary directory) unless it is
/// there; the directory is renamed into place only once complete.
pub(super) fn cached(name: &str, recipe: impl FnOnce(&Path)) -> PathBuf {
    let dir = Path::new(IMAGE_CACHE).join(name);
    if dir.is_dir() {
        return dir;
    }
    let _lock = CacheLock::acquire(name);
    if dir.is_dir() {
        return dir;
    }
    // Under the lock, any build directory of this name is a dead build's: remove them all.
    let prefix = format!("{name}.tmp-");
    for entry in std::fs::read_dir(IMAGE_CACHE)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            run_ok(Command::new("rm").arg("-rf").arg(entry.path()));
        }
    }
    let tmp = Path::new(IMAGE_CACHE).join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir_all(&tmp)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", tmp.display()));
    recipe(&tmp);
    // The simulated Lambda's uid 993 reads the layouts (and tests read roots as that uid).
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp));
    std::fs::rename(&tmp, &dir).unwrap_or_else(|err| {
        panic!(
            "cannot rename {} to {}: {err}",
            tmp.display(),
            dir.display()
        )
    });
    dir
}

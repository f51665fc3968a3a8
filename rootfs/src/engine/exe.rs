//! The path of the running binary, which engines re-execute as their helper or look beside for
//! the preload libraries.

use std::path::PathBuf;

/// Where the running binary was started from, when `/proc/self/exe` no longer names it.
pub(super) static RUNNING_EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Record the path the running binary was started from. The bootstrap re-executes an
/// execute-only copy of itself to become non-dumpable without `prctl`; `/proc/self/exe` then
/// names that copy, which has no `preload/` beside it and, unreadable, makes a namespace helper
/// started from it non-dumpable too (unable to write its own `uid_map`).
pub fn set_running_exe(path: PathBuf) {
    let _ = RUNNING_EXE.set(path);
}

/// The running binary: the path given to [`set_running_exe`], else `current_exe()`.
pub fn running_exe() -> std::io::Result<PathBuf> {
    match RUNNING_EXE.get() {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe(),
    }
}

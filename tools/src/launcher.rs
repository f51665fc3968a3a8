//! `scar`: starts cached images itself and hands every other command line to `scar-full`.
//!
//! Why two binaries: a warm `scar run` spends a good part of its time in page faults on its own
//! code, one per 64 KiB of `.text` it touches. In the whole command tree (AWS SDK, S3 server,
//! registry client, plots: some 9 MiB of code) the start's few hundred functions lie scattered
//! over about thirty such windows; in this binary, which holds only the start of a cached image,
//! they lie close together. Measured side by side on the project's machine: 79 page faults per
//! start instead of 125, and a warm start 0.54× bwrap instead of 0.65×.
//!
//! What this binary does itself: `scar run` with a command line of the common shapes (see
//! [`cmd::run::RunArgs::parse_common`]), `SCAR_LOG` unset or a bare level, and an image that is
//! already in the cache (or `--rootfs`). Everything else (help, a pull, directives in
//! `SCAR_LOG`, every other subcommand) is executed as `scar-full` from this binary's directory
//! with the same arguments, before anything is printed or changed.
//!
//! No Rust runtime start-up (`#![no_main]`): the C library calls [`main`] with `argc` and
//! `argv`. The runtime's start-up would install a guard for stack overflows (a mapping, a
//! guard page, an alternate signal stack) and check the standard descriptors: ten system
//! calls on every start, for a process that lives a few milliseconds in a few known frames.
//! What it does that matters here is done in `main`: `SIGPIPE` ignored, as in every Rust
//! program, and the arguments read from `argv` (on musl, `std::env::args` is filled by that
//! start-up only).

// The unit tests of the modules below run under the test harness's own `main`.
#![cfg_attr(not(test), no_main)]

use std::ffi::{CStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;

use scar_rootfs::arena::StartArena;

/// The same modules `scar-full` uses for `scar run`: its arguments, its start and its logging.
/// Their other items serve `scar-full` only.
#[allow(dead_code)]
mod cmd {
    mod log;
    mod paths;
    pub mod run;

    pub use log::{fail, init_lazy_logging, run_log_level};
    pub use paths::default_cache_dir;
}

/// The start's allocations come from a static arena (see `StartArena`): a warm `scar run`
/// then makes no allocator syscall.
#[global_allocator]
static ALLOCATOR: StartArena<{ 512 * 1024 }> = StartArena::new();

/// The binary with every command, beside this one.
#[cfg_attr(test, allow(dead_code))]
const FULL: &str = "scar-full";

/// The C library's entry point.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: ignoring a signal installs no handler code; as the Rust runtime does.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: the C library passes the `argc` argument pointers execve(2) placed, each a
    // NUL-terminated string that lives as long as the process.
    let args = unsafe { arguments(argc, argv) };
    scar_rootfs::engine::enter_container_if_requested();
    libc::c_int::from(run_cached(&args).unwrap_or_else(|| exec_full(args)))
}

/// The arguments as `OsString`s, with the area their strings fill told to the engine (see
/// `set_argument_area`).
///
/// # Safety
/// `argv` holds `argc` valid pointers to NUL-terminated strings.
unsafe fn arguments(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    let count = usize::try_from(argc).unwrap_or(0);
    let mut args = Vec::with_capacity(count);
    let mut area: Option<[usize; 2]> = None;
    for index in 0..count {
        // SAFETY: within the `argc` pointers the caller vouches for.
        let pointer = unsafe { *argv.add(index) };
        if pointer.is_null() {
            break;
        }
        // SAFETY: each is a NUL-terminated string (the caller's contract).
        let bytes = unsafe { CStr::from_ptr(pointer) }.to_bytes();
        let start = pointer as usize;
        let end = start + bytes.len() + 1;
        area = Some(match area {
            None => [start, end],
            Some([first, _]) => [first, end],
        });
        args.push(OsString::from_vec(bytes.to_vec()));
    }
    if let Some([start, end]) = area {
        scar_rootfs::engine::namespace::direct::set_argument_area(start, end);
    }
    args
}

/// `scar run` of a cached image: its exit status, or `None` (nothing done) when `scar-full`
/// must take over.
#[cfg_attr(test, allow(dead_code))]
fn run_cached(args: &[OsString]) -> Option<u8> {
    if args.get(1)? != "run" {
        return None;
    }
    let run = cmd::run::RunArgs::parse_common(&args[2..])?;
    cmd::init_lazy_logging(cmd::run_log_level()?);
    cmd::run::run_cached(&run)
}

/// Replace this process with `scar-full` and the same arguments; the exit status if that fails.
#[cfg_attr(test, allow(dead_code))]
fn exec_full(args: Vec<OsString>) -> u8 {
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL),
        Err(err) => {
            eprintln!("scar: cannot find this executable's path to start {FULL} beside it: {err}");
            return 127;
        }
    };
    let mut argv = args.into_iter();
    let arg0 = argv.next().unwrap_or_else(|| "scar".into());
    let err = std::process::Command::new(&full)
        .arg0(arg0)
        .args(argv)
        .exec();
    eprintln!(
        "scar: cannot run {} ({err}): every command but a cached `scar run` lives in {FULL}, \
         which must sit beside scar; install both from the same release (dist/scar-<arch>/)",
        full.display()
    );
    127
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_and_the_area_of_their_strings_come_from_argv() {
        // As execve(2) lays them out: the strings one after the other.
        let strings = b"scar\0run\0--\0\0a b\0";
        let starts = [0usize, 5, 9, 12, 13];
        let argv: Vec<*const libc::c_char> = starts
            .iter()
            .map(|&s| strings[s..].as_ptr().cast())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // SAFETY: five pointers to NUL-terminated strings in `strings`, which outlives the call.
        let args = unsafe { arguments(5, argv.as_ptr()) };
        assert_eq!(args, ["scar", "run", "--", "", "a b"]);
        let stat = scar_rootfs::engine::namespace::direct::SelfStat::read();
        let base = strings.as_ptr() as usize;
        assert_eq!(stat.argument_area(), Some([base, base + strings.len()]));
    }
}

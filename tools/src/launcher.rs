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

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

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
const FULL: &str = "scar-full";

fn main() -> ExitCode {
    scar_rootfs::engine::enter_container_if_requested();
    if let Some(code) = run_cached() {
        return code;
    }
    exec_full()
}

/// `scar run` of a cached image, or `None` (nothing done) when `scar-full` must take over.
fn run_cached() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "run" {
        return None;
    }
    let line: Vec<OsString> = args.collect();
    let run = cmd::run::RunArgs::parse_common(&line)?;
    cmd::init_lazy_logging(cmd::run_log_level()?);
    cmd::run::run_cached(&run)
}

/// Replace this process with `scar-full` and the same arguments.
fn exec_full() -> ExitCode {
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL),
        Err(err) => {
            eprintln!("scar: cannot find this executable's path to start {FULL} beside it: {err}");
            return ExitCode::from(127);
        }
    };
    let mut argv = std::env::args_os();
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
    ExitCode::from(127)
}

//! `scar-full`: every command of `scar` (run any OCI image's tools the way the Lambda
//! supervisor does, on your own machine). People type `scar`, a small launcher that starts
//! cached images itself and executes this binary for everything else (see `launcher.rs`).
//!
//! The binary only parses arguments and prints; the work happens in `scar-rootfs` and in the
//! `bootstrap` it drives.

mod cmd;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scar_rootfs::arena::StartArena;

/// The start's allocations come from a static arena (see `StartArena`): a warm `scar run`
/// then makes no allocator syscall.
#[global_allocator]
static ALLOCATOR: StartArena<{ 512 * 1024 }> = StartArena::new();

/// Run any Docker/OCI image's tools on files, locally or as an AWS Lambda layer.
#[derive(Parser)]
#[command(name = "scar", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command inside an image (pulls it when needed).
    Run(cmd::run::RunArgs),
    /// Pull an image into the cache and print its root filesystem's path.
    Pull(cmd::pull::PullArgs),
    /// Inspect and clean the image cache.
    #[command(subcommand)]
    Cache(cmd::cache::CacheCommand),
    /// The Lambda + S3 flow on this machine: the real bootstrap, no AWS account.
    Local(Box<cmd::local::LocalArgs>),
    /// Make images without a registry (pack a directory as an OCI layout).
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Build and publish the Lambda layer.
    #[command(subcommand)]
    Layer(cmd::layer::LayerCommand),
    /// Measure pulls, engines and invocations side by side with the peers; write docs/benchmarks.md.
    Bench(cmd::bench::BenchArgs),
    /// Run a command as AWS Lambda runs a bootstrap: uid 993, seccomp, a bare read-only root.
    LambdaSim(cmd::lambda_sim::LambdaSimArgs),
}

/// `scar run` alone: what `scar run ...` parses with, so that a container start does not build
/// the whole command tree (every subcommand's arguments and help) first; that is about a
/// tenth of a warm start.
#[derive(Parser)]
#[command(name = "scar", bin_name = "scar run", version)]
#[command(about = "Run a command inside an image (pulls it when needed).")]
struct RunCli {
    #[command(flatten)]
    args: cmd::run::RunArgs,
}

fn main() -> ExitCode {
    scar_rootfs::engine::enter_container_if_requested();
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "run") {
        let line: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        let args = cmd::run::RunArgs::parse_common(&line)
            .unwrap_or_else(|| RunCli::parse_from(std::iter::once("run".into()).chain(line)).args);
        cmd::init_run_logging();
        return cmd::run::run(args);
    }
    full()
}

/// Every other subcommand. Kept out of `main`, whose stack frame would otherwise be as large as
/// the largest subcommand's inlined state (tens of KiB, each page faulted in on every start,
/// `scar run` included).
#[inline(never)]
fn full() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging();
    match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Pull(args) => cmd::pull::run(args),
        Command::Cache(command) => cmd::cache::run(command),
        Command::Local(args) => cmd::local::run(*args),
        Command::Image(command) => cmd::image::run(command),
        Command::Layer(command) => cmd::layer::run(command),
        Command::Bench(args) => cmd::bench::run(args),
        Command::LambdaSim(args) => cmd::lambda_sim::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_run_fast_path_parses_as_the_full_command_line_does() {
        let line = [
            "run",
            "-e",
            "A=1",
            "-v",
            "/in:/data:ro",
            "--timeout",
            "3",
            "--engine",
            "namespace",
            "alpine:3.20",
            "--",
            "sh",
            "-c",
            "echo hi",
        ];
        let fast = RunCli::try_parse_from(line).unwrap().args;
        let full = match Cli::try_parse_from(std::iter::once("scar").chain(line)).unwrap() {
            Cli {
                command: Command::Run(args),
            } => args,
            _ => panic!("not parsed as run"),
        };
        assert_eq!(format!("{fast:?}"), format!("{full:?}"));
        assert!(RunCli::try_parse_from(["run", "--bogus"]).is_err());
    }

    /// `scar run`'s own parser agrees with clap on every line it accepts, and leaves every line
    /// clap refuses (and the help and version) to clap.
    #[test]
    fn the_common_run_lines_parse_without_clap_exactly_as_clap_parses_them() {
        let accepted: &[&[&str]] = &[
            &["alpine"],
            &["alpine", "--", "sh", "-c", "echo --engine x"],
            &[
                "--engine",
                "namespace",
                "--cache-dir",
                "/c",
                "img:1",
                "--",
                "/bin/true",
            ],
            &[
                "--engine=preload",
                "-e",
                "A=1",
                "--env",
                "B",
                "--env=C=3",
                "img",
            ],
            &[
                "-v",
                "/in:/data:ro",
                "--volume=/o:/out",
                "-w",
                "/data",
                "img",
                "--",
                "ls",
            ],
            &[
                "img",
                "--timeout",
                "2.5",
                "--pull-always",
                "--",
                "sleep",
                "9",
            ],
            &[
                "--workdir=/w",
                "--timeout=3",
                "--rootfs",
                "/r",
                "--",
                "true",
            ],
            &["--rootfs=/r", "--"],
            &["--cache-dir=/c", "oci:./layout:tag", "--", "--engine", "x"],
        ];
        for line in accepted {
            let os: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            let fast = cmd::run::RunArgs::parse_common(&os)
                .unwrap_or_else(|| panic!("not taken by the common parser: {line:?}"));
            let clap = RunCli::try_parse_from(std::iter::once("run").chain(line.iter().copied()))
                .unwrap_or_else(|e| panic!("{line:?}: {e}"))
                .args;
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{line:?}");
        }
        let left_to_clap: &[&[&str]] = &[
            &[],
            &["--help"],
            &["-h"],
            &["--version"],
            &["img", "extra"],
            &["--bogus", "img"],
            &["-eA=1", "img"],
            &["-e=A", "img"],
            &["--engine", "docker", "img"],
            &["--engine", "auto", "--engine", "preload", "img"],
            &["--engine"],
            &["--env=", "img"],
            &["--timeout", "soon", "img"],
            &["--timeout", "-1", "img"],
            &["--rootfs", "/r", "img"],
            &["--pull-always", "--pull-always", "img"],
            &["-", "img"],
        ];
        for line in left_to_clap {
            let os: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            assert!(
                cmd::run::RunArgs::parse_common(&os).is_none(),
                "{line:?} must be left to clap"
            );
        }
        // Non-UTF-8 is clap's too.
        use std::os::unix::ffi::OsStringExt;
        let odd = vec![std::ffi::OsString::from_vec(vec![0xff, b'x'])];
        assert!(cmd::run::RunArgs::parse_common(&odd).is_none());
    }

    #[test]
    fn pull_takes_the_cache_directory_under_runs_option_name_too() {
        for option in ["--cache", "--cache-dir"] {
            let cli = Cli::try_parse_from(["scar", "pull", option, "/c", "img"]).unwrap();
            let Command::Pull(args) = cli.command else {
                panic!("not parsed as pull");
            };
            assert_eq!(args.cache.dir(), std::path::Path::new("/c"), "{option}");
        }
    }

    #[test]
    fn the_run_fast_path_names_itself_scar_run_in_its_usage() {
        let usage = RunCli::command().render_usage().to_string();
        assert!(usage.contains("scar run"), "{usage}");
    }
}

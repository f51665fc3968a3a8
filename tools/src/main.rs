//! `scar`: run any OCI image's tools the way the Lambda supervisor does, on your own machine.
//!
//! The binary only parses arguments and prints; the work happens in `scar-rootfs` and in the
//! `bootstrap` it drives.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    scar_rootfs::engine::enter_container_if_requested();
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
    }
}

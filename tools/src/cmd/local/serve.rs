//! `scar local --watch DIR`: an S3 event for each file that appears under `DIR/input/`, one
//! invocation at a time, until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::args::FunctionArgs;
use super::error::{LocalError, io};
use super::event::event_for;
use super::output::report;
use super::s3::INPUT_PREFIX;
use super::start::{Outputs, start};
use super::watch;

/// How often `--watch` looks for new files.
const POLL: Duration = Duration::from_millis(250);

/// Run `scar local --watch`.
pub(super) async fn run_watch(
    args: FunctionArgs,
    data_dir: PathBuf,
    existing: bool,
) -> Result<ExitCode, LocalError> {
    let input_dir = data_dir.join(INPUT_PREFIX);
    std::fs::create_dir_all(&input_dir).map_err(io(&input_dir))?;
    let (mut session, context) = start(&args, &data_dir, Vec::new(), Outputs::LocalBucket).await?;
    let input_dir = context.data_dir.join(INPUT_PREFIX);
    let mut watcher = watch::Watcher::new(&input_dir, existing);
    let left_alone = if existing {
        String::new()
    } else {
        format!(" ({} files already there are left alone)", watcher.known())
    };
    eprintln!(
        "scar local: watching {}{left_alone}; Ctrl-C to stop",
        input_dir.display()
    );
    let (mut done, mut failed) = (0u64, 0u64);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    'watch: loop {
        tokio::select! {
            _ = &mut ctrl_c => break 'watch,
            () = tokio::time::sleep(POLL) => {}
        }
        for path in watcher.scan() {
            let (key, payload) =
                match event_for(&context.data_dir, &args.bucket, &args.region, &path) {
                    Ok(found) => found,
                    // The file went away between the scan and now: nothing to process.
                    Err(err) => {
                        eprintln!("scar local: skipping {}: {err}", path.display());
                        continue;
                    }
                };
            let started = std::time::Instant::now();
            // Ctrl-C during an invocation stops the sandbox at once, as closing Lambda would.
            let outcome = tokio::select! {
                _ = &mut ctrl_c => {
                    println!("{key}: interrupted");
                    break 'watch;
                }
                outcome = session.invoke(payload, |request_id| {
                    println!("{key}: started (request {request_id})")
                }) => outcome?,
            };
            if report(&context, &key, &outcome, started.elapsed()) {
                done += 1;
            } else {
                failed += 1;
            }
        }
    }
    session.stop().await;
    eprintln!("scar local: stopped after {done} successful and {failed} failed invocations");
    Ok(ExitCode::SUCCESS)
}

//! `scar local invoke`: one event (a document, or an S3 event for one file), its outcome
//! printed.

use std::process::ExitCode;

use bytes::Bytes;

use super::args::InvokeArgs;
use super::error::{LocalError, io};
use super::event;
use super::output::{document, report};
use super::s3::INPUT_PREFIX;
use super::start::{Outputs, start};

/// Run `scar local invoke`.
pub(super) async fn run_invoke(args: InvokeArgs) -> Result<ExitCode, LocalError> {
    let data_dir = args.dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(io(&data_dir))?;
    let (payload, event_buckets, input) = match (&args.event, &args.input) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).map_err(io(path))?;
            let document: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|source| LocalError::Event {
                    path: path.clone(),
                    source,
                })?;
            (Some(Bytes::from(bytes)), event::buckets_of(&document), None)
        }
        (None, Some(file)) => (None, Vec::new(), Some(file.clone())),
        (None, None) => return Err(LocalError::NoEvent),
    };
    let (mut session, context) = start(
        &args.function,
        &data_dir,
        event_buckets,
        Outputs::LocalBucket,
    )
    .await?;
    let (label, payload) = match (payload, input) {
        (Some(payload), _) => (
            args.event
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            payload,
        ),
        (None, Some(file)) => {
            let name = file
                .file_name()
                .ok_or_else(|| io(&file)(std::io::ErrorKind::InvalidInput.into()))?;
            let target = context.data_dir.join(INPUT_PREFIX).join(name);
            let source = file.canonicalize().map_err(io(&file))?;
            if source != target {
                std::fs::create_dir_all(context.data_dir.join(INPUT_PREFIX))
                    .map_err(io(&context.data_dir))?;
                std::fs::copy(&source, &target).map_err(io(&target))?;
            }
            let (key, payload) = event::event_for(
                &context.data_dir,
                &args.function.bucket,
                &args.function.region,
                &target,
            )?;
            (key, payload)
        }
        (None, None) => return Err(LocalError::NoEvent),
    };
    let started = std::time::Instant::now();
    let outcome = session
        .invoke(payload, |request_id| {
            eprintln!("{label}: started (request {request_id})")
        })
        .await?;
    session.stop().await;
    let ok = report(&context, &label, &outcome, started.elapsed());
    let document = document(&outcome);
    println!(
        "{}",
        serde_json::to_string_pretty(&document).unwrap_or_default()
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! What the runs of one invocation produced, and how it becomes the invocation's result: each
//! record's outcome, the records in the event's order, the outputs an HTTP answer is made of.

use std::path::Path;
use std::time::Instant;

use crate::config::S3Location;
use crate::event::Unreadable;
use crate::reply::OutputFile;
use crate::report::{
    Failure, FailureKind, RecordResult, Response, batch_item_failures, summary_failure,
};
use crate::upload;

/// What one record's run produced.
pub(super) struct Processed {
    /// Its exit code (0) or why it failed.
    pub(super) verdict: Result<i32, Failure>,
    /// The script's exit code, when it ran to its end (or was stopped).
    pub(super) exit_code: Option<i32>,
    /// `s3://` URLs of the outputs uploaded.
    pub(super) outputs: Vec<String>,
    /// When the container's run ended (none when it never ran).
    pub(super) ended: Option<Instant>,
}

impl Processed {
    /// A record that failed before its container ran: nothing was uploaded.
    pub(super) fn failed(failure: Failure) -> Self {
        Self {
            verdict: Err(failure),
            exit_code: None,
            outputs: Vec::new(),
            ended: None,
        }
    }
}

/// The files of `output_dir`, each with its `s3://` URL under `output` when it is one of
/// `uploaded`.
pub(super) fn output_files(
    output_dir: &Path,
    output: Option<&S3Location>,
    uploaded: &[String],
) -> Vec<OutputFile> {
    let (planned, _) = upload::plan(output_dir, "");
    let prefix = output.map(|o| format!("s3://{}/{}", o.bucket, o.prefix_dir()));
    planned
        .into_iter()
        .map(|plan| {
            let url = prefix.as_ref().and_then(|prefix| {
                let url = format!("{prefix}{}", plan.key);
                uploaded.contains(&url).then_some(url)
            });
            OutputFile {
                name: plan.key,
                path: plan.path,
                size: plan.size,
                url,
            }
        })
        .collect()
}

/// The failed record of an event part that could not be read.
pub(super) fn unreadable_record(unreadable: &Unreadable) -> RecordResult {
    tracing::warn!(record = %unreadable.what, reason = %unreadable.reason, "a record cannot be read");
    RecordResult::failed(
        None,
        unreadable.message_id.clone(),
        None,
        Vec::new(),
        Failure::new(
            FailureKind::Input,
            format!("{} cannot be read: {}", unreadable.what, unreadable.reason),
        ),
    )
}

/// The records of the runs (`ran`, one per work item, in order) with the unreadable ones put
/// back where the event had them: each after the `position` work items that came before it.
pub(super) fn in_event_order(
    ran: Vec<RecordResult>,
    unreadable: impl IntoIterator<Item = (RecordResult, usize)>,
) -> Vec<RecordResult> {
    let mut unreadable = unreadable.into_iter().peekable();
    let mut records = Vec::with_capacity(ran.len());
    for (index, record) in ran.into_iter().enumerate() {
        while let Some((before, _)) = unreadable.next_if(|(_, position)| *position <= index) {
            records.push(before);
        }
        records.push(record);
    }
    records.extend(unreadable.map(|(record, _)| record));
    records
}

/// The answer of an invocation whose records all ran (or were skipped or unreadable): an SQS
/// batch always succeeds and lists its failed messages in `batchItemFailures` (Lambda deletes
/// the others from the queue); any other event fails when a record failed, so that Lambda
/// retries it.
pub(super) fn conclude(
    mut response: Response,
    unreadable: &[Unreadable],
    sqs_messages: Option<&[String]>,
) -> Result<Response, Failure> {
    if let Some(all) = sqs_messages {
        let unreadable_ids = unreadable.iter().filter_map(|u| u.message_id.as_deref());
        response.batch_item_failures =
            Some(batch_item_failures(&response.records, unreadable_ids, all));
        return Ok(response);
    }
    match summary_failure(&response.records) {
        Some(failure) => Err(failure.with_unconfined(&response.unconfined)),
        None => Ok(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(input: &str, failed: bool) -> RecordResult {
        let input = Some(input.to_owned());
        if failed {
            let failure = Failure::new(FailureKind::Input, "unreadable");
            RecordResult::failed(input, None, None, Vec::new(), failure)
        } else {
            RecordResult::succeeded(input, None, Some(0), Vec::new())
        }
    }

    fn inputs(records: &[RecordResult]) -> Vec<&str> {
        records.iter().filter_map(|r| r.input.as_deref()).collect()
    }

    #[test]
    fn unreadable_records_go_back_where_the_event_had_them() {
        let ran = vec![record("a", false), record("c", false), record("e", false)];
        let unreadable = [
            (record("x0", true), 0),
            (record("b", true), 1),
            (record("d", true), 2),
            (record("z", true), 3),
        ];
        let records = in_event_order(ran, unreadable);
        assert_eq!(inputs(&records), ["x0", "a", "b", "c", "d", "e", "z"]);
    }

    #[test]
    fn without_runs_the_unreadable_records_keep_their_order() {
        let unreadable = [(record("a", true), 0), (record("b", true), 0)];
        assert_eq!(inputs(&in_event_order(Vec::new(), unreadable)), ["a", "b"]);
        let ran = vec![record("a", false), record("b", false)];
        assert_eq!(inputs(&in_event_order(ran, [])), ["a", "b"]);
    }
}

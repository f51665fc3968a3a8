//! One record's result in the response, the message of an invocation whose records failed, and
//! the SQS batch response's `batchItemFailures`.

use std::collections::HashSet;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::failure::{Failure, FailureKind};

/// Whether a record ran to success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// The script exited 0 and every output was uploaded.
    Succeeded,
    /// Anything else: its `error` says what.
    Failed,
}

/// The result of one record (one container run, or a record that could not be read).
///
/// Serialised as `{"input", "messageId" (SQS only), "status", "exitCode", "outputs",
/// "errorType", "errorMessage" (failed only)}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordResult {
    /// `s3://bucket/key`; `None` for a direct invocation or a record that could not be read.
    pub input: Option<String>,
    /// The SQS message the record came from.
    pub message_id: Option<String>,
    /// Succeeded or failed.
    pub status: RecordStatus,
    /// The script's exit code; `None` when no script ran to its end.
    pub exit_code: Option<i32>,
    /// `s3://` URLs of the outputs uploaded for this record.
    pub outputs: Vec<String>,
    /// Why it failed (`None` when it succeeded).
    pub error: Option<Failure>,
}

impl RecordResult {
    /// A record that ran to success.
    pub fn succeeded(
        input: Option<String>,
        message_id: Option<String>,
        exit_code: Option<i32>,
        outputs: Vec<String>,
    ) -> Self {
        Self {
            input,
            message_id,
            status: RecordStatus::Succeeded,
            exit_code,
            outputs,
            error: None,
        }
    }

    /// A record that failed with `error` (after uploading `outputs`, if any).
    pub fn failed(
        input: Option<String>,
        message_id: Option<String>,
        exit_code: Option<i32>,
        outputs: Vec<String>,
        error: Failure,
    ) -> Self {
        Self {
            input,
            message_id,
            status: RecordStatus::Failed,
            exit_code,
            outputs,
            error: Some(error),
        }
    }

    /// Whether the record failed.
    pub fn is_failed(&self) -> bool {
        self.status == RecordStatus::Failed
    }

    /// How a message names the record: its input, else its SQS message, else its position
    /// (`index` counts from 0).
    pub fn label(&self, index: usize) -> String {
        match (&self.input, &self.message_id) {
            (Some(input), _) => input.clone(),
            (None, Some(id)) => format!("SQS message {id}"),
            (None, None) => format!("record {}", index + 1),
        }
    }
}

impl Serialize for RecordResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("RecordResult", 7)?;
        record.serialize_field("input", &self.input)?;
        match &self.message_id {
            Some(id) => record.serialize_field("messageId", id)?,
            None => record.skip_field("messageId")?,
        }
        record.serialize_field("status", &self.status)?;
        record.serialize_field("exitCode", &self.exit_code)?;
        record.serialize_field("outputs", &self.outputs)?;
        match &self.error {
            Some(error) => {
                record.serialize_field("errorType", error.kind.error_type())?;
                record.serialize_field("errorMessage", &error.message)?;
            }
            None => {
                record.skip_field("errorType")?;
                record.skip_field("errorMessage")?;
            }
        }
        record.end()
    }
}

/// One entry of the SQS batch response: a message Lambda must not delete from the queue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The SQS `messageId`.
    pub item_identifier: String,
}

/// The failure of an invocation whose records did not all succeed: `None` when every record
/// succeeded. Its kind is the first failed record's; its message names each failed record's
/// input with its message (a record without input by its message alone), then the records that
/// succeeded with their outputs ("2 of 5 records failed:
/// s3://b/k1: …; s3://b/k2: …; succeeded: s3://b/k3 (outputs: …), …"). With a single record,
/// that record's own failure, as before records were counted.
pub fn summary_failure(records: &[RecordResult]) -> Option<Failure> {
    let (first_index, first) = records.iter().enumerate().find(|(_, r)| r.is_failed())?;
    let error_of = |index: usize, record: &RecordResult| {
        record.error.clone().unwrap_or_else(|| {
            Failure::new(
                FailureKind::Internal,
                format!("{} failed without a reason", record.label(index)),
            )
        })
    };
    if records.len() == 1 {
        return Some(error_of(first_index, first));
    }
    let failed: Vec<String> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_failed())
        .map(|(i, r)| match &r.input {
            Some(input) => format!("{input}: {}", error_of(i, r).message),
            // A record with no input could not be read: its message names it ("record 2 of
            // SQS message …"), a label would only repeat it, or number it differently.
            None => error_of(i, r).message,
        })
        .collect();
    let mut message = format!(
        "{} of {} records failed: {}",
        failed.len(),
        records.len(),
        failed.join("; ")
    );
    let succeeded: Vec<String> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_failed())
        .map(|(i, r)| match r.outputs.as_slice() {
            [] => format!("{} (no outputs)", r.label(i)),
            outputs => format!("{} (outputs: {})", r.label(i), outputs.join(", ")),
        })
        .collect();
    if !succeeded.is_empty() {
        message.push_str("; succeeded: ");
        message.push_str(&succeeded.join(", "));
    }
    Some(Failure::new(error_of(first_index, first).kind, message))
}

/// The SQS batch response's failures: every message with a failed record (or a record that
/// could not be read), each once, in the order of `all_message_ids` (the batch's order). An id
/// missing from `all_message_ids` is still reported, after the others: a failure is never
/// dropped, since Lambda deletes every message not listed.
pub fn batch_item_failures<'a>(
    records: &'a [RecordResult],
    unreadable_message_ids: impl IntoIterator<Item = &'a str>,
    all_message_ids: &[String],
) -> Vec<BatchItemFailure> {
    let mut failing: Vec<&str> = records
        .iter()
        .filter(|r| r.is_failed())
        .filter_map(|r| r.message_id.as_deref())
        .collect();
    failing.extend(unreadable_message_ids);
    let wanted: HashSet<&str> = failing.iter().copied().collect();
    let mut listed: HashSet<&str> = HashSet::with_capacity(wanted.len());
    let in_batch_order = all_message_ids
        .iter()
        .map(String::as_str)
        .filter(|id| wanted.contains(id));
    let mut failures = Vec::with_capacity(wanted.len());
    for id in in_batch_order.chain(failing.iter().copied()) {
        if listed.insert(id) {
            failures.push(BatchItemFailure {
                item_identifier: id.to_owned(),
            });
        }
    }
    failures
}

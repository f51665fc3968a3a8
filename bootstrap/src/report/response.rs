//! The JSON body of a successful invocation.

use super::record::{BatchItemFailure, RecordResult};

/// Milliseconds spent in each phase of one invocation (summed over its records).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phases {
    /// Getting the image (a cache hit on warm invocations).
    pub pull: f64,
    /// Downloading the inputs.
    pub stage_in: f64,
    /// Running the container.
    pub run: f64,
    /// Uploading the outputs.
    pub stage_out: f64,
    /// From receiving the event to the answer, all phases included.
    pub total: f64,
}

/// A record (or message) deliberately not run: nothing to retry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SkippedEntry {
    /// `s3://bucket/key` when known, else a short description ("s3:TestEvent").
    pub input: String,
    /// Why, in words a user understands.
    pub reason: String,
}

/// How many entries of each list were cut to keep the response under Lambda's payload limit
/// (see [`super::encode_response`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Omitted {
    /// Entries cut from `inputs`.
    pub inputs: usize,
    /// Output URLs cut from `outputs` and from the records' `outputs`, together.
    pub outputs: usize,
    /// Entries cut from `skipped`.
    pub skipped: usize,
    /// Records cut from `records` (their outputs are not counted again).
    pub records: usize,
}

/// The response of a successful invocation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The Lambda request id.
    pub request_id: String,
    /// `SCAR_IMAGE`.
    pub image: String,
    /// The engine that ran the container (empty when nothing ran).
    pub engine: String,
    /// Exit code of the last record that ran; `null` when none ran.
    pub exit_code: Option<i32>,
    /// Time from receiving the event to this answer.
    pub duration_ms: u64,
    /// `s3://` URLs of the processed inputs.
    pub inputs: Vec<String>,
    /// `s3://` URLs of the uploaded outputs, of every record.
    pub outputs: Vec<String>,
    /// Records deliberately not run, with the reason.
    pub skipped: Vec<SkippedEntry>,
    /// Each record's result, in event order.
    pub records: Vec<RecordResult>,
    /// For an SQS batch only: the messages Lambda must keep in the queue (never cut).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_item_failures: Option<Vec<BatchItemFailure>>,
    /// Last 64 KiB of the container's stdout.
    pub stdout: String,
    /// Last 64 KiB of the container's stderr.
    pub stderr: String,
    /// Statically linked programs (paths in the image) that ran with the host's view: the
    /// preload engine cannot confine them.
    pub unconfined: Vec<String>,
    /// Time per phase.
    pub phases_ms: Phases,
    /// What was cut to stay under the payload limit; absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted: Option<Omitted>,
}

impl Response {
    /// An empty response for `request_id`.
    pub fn new(request_id: &str, image: &str) -> Self {
        Self {
            request_id: request_id.to_owned(),
            image: image.to_owned(),
            engine: String::new(),
            exit_code: None,
            duration_ms: 0,
            inputs: Vec::new(),
            outputs: Vec::new(),
            skipped: Vec::new(),
            records: Vec::new(),
            batch_item_failures: None,
            stdout: String::new(),
            stderr: String::new(),
            unconfined: Vec::new(),
            phases_ms: Phases::default(),
            omitted: None,
        }
    }

    /// The records that failed, in event order.
    pub fn failed_records(&self) -> impl Iterator<Item = &RecordResult> {
        self.records.iter().filter(|r| r.is_failed())
    }
}

//! What an invocation answers: the response JSON on success, an error type and message on
//! failure.

use crate::runtime::ErrorReport;
use crate::upload::UploadFailure;

/// The kinds of failure, each a Lambda `errorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The image could not be pulled or entered (`Scar.ImageError`).
    Image,
    /// The event or its input object could not be staged (`Scar.InputError`).
    Input,
    /// The script exited non-zero (`Scar.ScriptFailed`).
    ScriptFailed,
    /// The container was stopped at the deadline (`Scar.Timeout`).
    Timeout,
    /// Outputs could not be uploaded (`Scar.OutputError`).
    Output,
    /// A bug in the supervisor (`Scar.InternalError`).
    Internal,
}

impl FailureKind {
    /// The `errorType` reported to Lambda.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::Image => "Scar.ImageError",
            Self::Input => "Scar.InputError",
            Self::ScriptFailed => "Scar.ScriptFailed",
            Self::Timeout => "Scar.Timeout",
            Self::Output => "Scar.OutputError",
            Self::Internal => "Scar.InternalError",
        }
    }
}

/// A failed invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which kind.
    pub kind: FailureKind,
    /// What went wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: FailureKind, message: impl std::fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
        }
    }

    /// The same failure, naming the programs that ran unconfined (with the host's view).
    pub fn with_unconfined(mut self, programs: &[String]) -> Self {
        if !programs.is_empty() {
            self.message.push_str(&format!(
                "\n(ran unconfined, statically linked, with the host's files: {})",
                programs.join(", ")
            ));
        }
        self
    }

    /// The same failure, naming the outputs (see [`describe_outputs`]).
    pub fn with_outputs(mut self, outputs: &str) -> Self {
        self.message.push_str(outputs);
        self
    }

    /// The report for `/invocation/{id}/error`.
    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            error_type: self.kind.error_type().to_owned(),
            error_message: self.message.clone(),
        }
    }
}

/// `; outputs uploaded: …; outputs not uploaded: … (why)`, or nothing when there are none.
pub fn describe_outputs(uploaded: &[String], failed: &[UploadFailure]) -> String {
    let mut text = String::new();
    if !uploaded.is_empty() {
        text.push_str("; outputs uploaded: ");
        text.push_str(&uploaded.join(", "));
    }
    if !failed.is_empty() {
        text.push_str("; outputs not uploaded: ");
        let list: Vec<String> = failed
            .iter()
            .map(|f| format!("{} ({})", f.what, f.reason))
            .collect();
        text.push_str(&list.join(", "));
    }
    text
}

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
    /// Exit code of the (last) run; `null` when every record was skipped.
    pub exit_code: Option<i32>,
    /// Time from receiving the event to this answer.
    pub duration_ms: u64,
    /// `s3://` URLs of the processed inputs.
    pub inputs: Vec<String>,
    /// `s3://` URLs of the uploaded outputs.
    pub outputs: Vec<String>,
    /// `s3://` URLs of records skipped by the output-prefix guard.
    pub skipped: Vec<String>,
    /// Last 64 KiB of the container's stdout.
    pub stdout: String,
    /// Last 64 KiB of the container's stderr.
    pub stderr: String,
    /// Statically linked programs (paths in the image) that ran with the host's view: the
    /// preload engine cannot confine them.
    pub unconfined: Vec<String>,
    /// Time per phase.
    pub phases_ms: Phases,
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
            stdout: String::new(),
            stderr: String::new(),
            unconfined: Vec::new(),
            phases_ms: Phases::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_the_documented_names() {
        let kinds = [
            (FailureKind::Image, "Scar.ImageError"),
            (FailureKind::Input, "Scar.InputError"),
            (FailureKind::ScriptFailed, "Scar.ScriptFailed"),
            (FailureKind::Timeout, "Scar.Timeout"),
            (FailureKind::Output, "Scar.OutputError"),
        ];
        for (kind, name) in kinds {
            assert_eq!(Failure::new(kind, "x").report().error_type, name);
        }
    }

    #[test]
    fn outputs_are_named_in_failure_messages() {
        let failed = [UploadFailure {
            what: "link".into(),
            reason: "not a regular file".into(),
        }];
        let text = describe_outputs(&["s3://b/output/a.txt".into()], &failed);
        assert_eq!(
            text,
            "; outputs uploaded: s3://b/output/a.txt; outputs not uploaded: link (not a regular file)"
        );
        assert_eq!(describe_outputs(&[], &[]), "");
    }

    #[test]
    fn the_response_uses_the_documented_field_names() {
        let value = serde_json::to_value(Response::new("r1", "alpine:3.20")).unwrap();
        for field in [
            "requestId",
            "image",
            "engine",
            "exitCode",
            "durationMs",
            "outputs",
            "stdout",
            "stderr",
            "unconfined",
        ] {
            assert!(value.get(field).is_some(), "{field} missing from {value}");
        }
    }
}

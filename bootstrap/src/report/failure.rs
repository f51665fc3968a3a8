//! Why an invocation (or one record of it) failed: the error type Lambda sees and the message.

use crate::runtime::ErrorReport;
use crate::upload::UploadFailure;

/// The kinds of failure, each a Lambda `errorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The function's configuration cannot work, e.g. an output location that swallows its own
    /// input bucket (`Scar.ConfigError`): retrying does not help, the configuration must change.
    Config,
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
            Self::Config => "Scar.ConfigError",
            Self::Image => "Scar.ImageError",
            Self::Input => "Scar.InputError",
            Self::ScriptFailed => "Scar.ScriptFailed",
            Self::Timeout => "Scar.Timeout",
            Self::Output => "Scar.OutputError",
            Self::Internal => "Scar.InternalError",
        }
    }
}

/// A failed invocation, or a failed record of one.
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

    /// The report for `/invocation/{id}/error` (cap it with [`super::cap_error`] before posting).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_the_documented_names() {
        let kinds = [
            (FailureKind::Config, "Scar.ConfigError"),
            (FailureKind::Image, "Scar.ImageError"),
            (FailureKind::Input, "Scar.InputError"),
            (FailureKind::ScriptFailed, "Scar.ScriptFailed"),
            (FailureKind::Timeout, "Scar.Timeout"),
            (FailureKind::Output, "Scar.OutputError"),
            (FailureKind::Internal, "Scar.InternalError"),
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
}

//! What an event maps to: the runs it asks for, the records deliberately left alone, the records
//! that cannot be read; and the one gate every S3 object of every shape passes
//! ([`MappedEvent::object`]): the output-loop guard, folder markers, deleted objects.

use super::http::{HttpFormat, HttpInput};
use crate::config::{S3Location, SCAR_OUTPUT};

/// One S3 object to process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Input {
    /// Bucket name.
    pub bucket: String,
    /// Object key, URL-decoded.
    pub key: String,
    /// Size from the event, when given.
    pub size: Option<u64>,
    /// eTag from the event, when given.
    pub etag: Option<String>,
    /// `eventTime` as the event wrote it.
    pub event_time: Option<String>,
}

impl S3Input {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What one container run processes: decided once, by [`map_event`](super::map_event), and
/// carried as is to staging (download or payload file), the run (the `STORAGE_OBJECT_KEY`,
/// `SCAR_INPUT_KEY`, `SCAR_INPUT_BUCKET` and `EVENT_TIME` variables), the outputs (the input
/// bucket's default prefix) and the response (`inputs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An S3 object, downloaded into the input directory.
    S3(S3Input),
    /// A direct invocation: the payload is the input file
    /// [`DIRECT_INPUT_NAME`](super::DIRECT_INPUT_NAME).
    Direct,
    /// An HTTP request: its body is the input file, named [`HttpInput::file_name`].
    Http(Box<HttpInput>),
}

impl Input {
    /// The S3 object, for an S3 input.
    pub fn s3(&self) -> Option<&S3Input> {
        match self {
            Self::S3(input) => Some(input),
            Self::Direct | Self::Http(_) => None,
        }
    }

    /// `s3://bucket/key` of an S3 input (the response lists these).
    pub fn url(&self) -> Option<String> {
        self.s3().map(S3Input::url)
    }

    /// The HTTP request, for an HTTP input.
    pub fn http(&self) -> Option<&HttpInput> {
        match self {
            Self::Http(request) => Some(request),
            Self::S3(_) | Self::Direct => None,
        }
    }
}

/// One container run: what it processes and, for an SQS batch, the message it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    /// What the run processes.
    pub input: Input,
    /// The SQS message the input came from (reported in `batchItemFailures` when it fails).
    pub message_id: Option<String>,
}

/// A record (or message) deliberately not run: nothing to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// `s3://bucket/key` when known, else a short description ("s3:TestEvent").
    pub input: String,
    /// Why, in words a user understands.
    pub reason: String,
}

/// A record (or SQS message) that cannot be mapped: it counts as a failed record
/// (`Scar.InputError`); the others still run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// "record 2" / "SQS message <id>" / "record 1 of SQS message <id>".
    pub what: String,
    /// serde's or the mapper's words.
    pub reason: String,
    /// The SQS message it belongs to (reported in `batchItemFailures`).
    pub message_id: Option<String>,
    /// How many [`Work`] items come before it in the event: the response lists records in
    /// event order.
    pub position: usize,
}

/// A mapped event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappedEvent {
    /// One container run each, in event order: a single [`Input::Direct`] for a direct
    /// invocation, the objects of the event's records otherwise (none when every record was
    /// skipped or unreadable).
    pub work: Vec<Work>,
    /// Records deliberately not run (folder markers, deleted objects, the output-loop guard,
    /// `s3:TestEvent`, EventBridge events other than "Object Created").
    pub skipped: Vec<Skipped>,
    /// Records that cannot be mapped.
    pub unreadable: Vec<Unreadable>,
    /// A script carried by a direct invocation (only with `SCAR_ALLOW_INVOKE_SCRIPT`).
    pub script: Option<String>,
    /// `Some(ids of every message, in order)` when the event is an SQS batch: the response then
    /// carries `batchItemFailures`.
    pub sqs_messages: Option<Vec<String>>,
    /// `Some(format)` when the event is an HTTP request: every answer, failures included, is
    /// then an HTTP response in that format (API Gateway turns a Lambda error into a bare 502).
    pub http: Option<HttpFormat>,
}

/// Why an event cannot be processed at all (a single record's problem is an [`Unreadable`]).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A direct invocation carries a script but the function does not allow it.
    #[error(
        "the invocation carries a script but SCAR_ALLOW_INVOKE_SCRIPT is false: set it to true to allow scripts in direct invocations"
    )]
    ScriptNotAllowed,
    /// The carried script is not base64 of UTF-8 text.
    #[error("the invocation's \"script\" is not base64-encoded UTF-8 text: {0}")]
    BadScript(String),
    /// `SCAR_OUTPUT` is the root of a bucket that triggers the function: every object of that
    /// bucket lies under the output location, so the loop guard would skip every record.
    #[error(
        "{SCAR_OUTPUT}={output} is the whole bucket {bucket}, which sends this event: every object of {bucket} lies under the output location, so none could be processed; set {SCAR_OUTPUT} to a prefix (e.g. s3://{bucket}/output/) or to another bucket"
    )]
    OutputSwallowsBucket {
        /// `SCAR_OUTPUT` as configured.
        output: String,
        /// The input bucket it swallows.
        bucket: String,
    },
}

impl EventError {
    /// Whether the function's configuration is at fault (`Scar.ConfigError`), not the event.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::OutputSwallowsBucket { .. })
    }
}

/// The rules mapping applies, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct EventRules<'a> {
    /// `SCAR_OUTPUT` (`None`: `output/` in the input bucket).
    pub output: Option<&'a S3Location>,
    /// `SCAR_ALLOW_INVOKE_SCRIPT`.
    pub allow_invoke_script: bool,
}

/// Where a document sits in the event: it names unreadable records and carries the SQS message
/// their work belongs to.
#[derive(Clone, Debug, Default)]
pub(super) struct Origin {
    /// The SQS message the document came in.
    pub message_id: Option<String>,
    /// "SQS message <id>" / "SNS message <id>": what holds the document (none at the top).
    pub within: Option<String>,
    /// How deep the document sits: 1 for the payload, 2 for an SQS body or an SNS message,
    /// 3 for an SNS notification inside an SQS body.
    pub depth: usize,
}

impl Origin {
    /// The origin of the invocation's payload itself.
    pub fn top() -> Self {
        Self {
            depth: 1,
            ..Self::default()
        }
    }

    /// `part` named in its container: "record 1 of SQS message <id>".
    pub fn name(&self, part: &str) -> String {
        match &self.within {
            Some(within) => format!("{part} of {within}"),
            None => part.to_owned(),
        }
    }
}

impl MappedEvent {
    /// Admit an S3 object named by a record of `origin`: a run, unless it is skipped
    /// (`not_created` is why when the record is not about a new object, e.g. a deletion).
    /// `SCAR_OUTPUT` at the root of the object's bucket fails the whole event.
    pub(super) fn object(
        &mut self,
        input: S3Input,
        origin: &Origin,
        rules: EventRules<'_>,
        not_created: Option<String>,
    ) -> Result<(), EventError> {
        let default;
        let output = match rules.output {
            Some(output) => output,
            None => {
                default = S3Location {
                    bucket: input.bucket.clone(),
                    key: crate::config::DEFAULT_OUTPUT_PREFIX.to_owned(),
                };
                &default
            }
        };
        let prefix = output.prefix_dir();
        if output.bucket == input.bucket && prefix.is_empty() {
            return Err(EventError::OutputSwallowsBucket {
                output: output.to_string(),
                bucket: input.bucket,
            });
        }
        let reason = if let Some(reason) = not_created {
            reason
        } else if output.bucket == input.bucket && input.key.starts_with(&prefix) {
            tracing::warn!(
                input = %input.url(),
                "skipping a record whose key lies under the output prefix of its own bucket: \
                 processing it would trigger this function again with its own output"
            );
            format!(
                "its key lies under the output location s3://{}/{prefix}: processing it would run this function again on its own output",
                output.bucket
            )
        } else if input.key.ends_with('/') {
            "a folder marker (the key ends in /), not an object".to_owned()
        } else {
            self.work.push(Work {
                input: Input::S3(input),
                message_id: origin.message_id.clone(),
            });
            return Ok(());
        };
        self.skipped.push(Skipped {
            input: input.url(),
            reason,
        });
        Ok(())
    }

    /// Record `what` of `origin` as unreadable for `reason`.
    pub(super) fn unreadable(&mut self, origin: &Origin, what: &str, reason: impl ToString) {
        self.unreadable.push(Unreadable {
            what: origin.name(what),
            reason: reason.to_string(),
            message_id: origin.message_id.clone(),
            position: self.work.len(),
        });
    }

    /// Record `what` of `origin` as skipped for `reason`.
    pub(super) fn skip(&mut self, origin: &Origin, what: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            input: origin.name(what),
            reason: reason.into(),
        });
    }
}

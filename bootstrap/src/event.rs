//! Event mapping: what one invocation asks for.
//!
//! Each S3 record is an input object (bucket, URL-decoded key, size, eTag); anything else is a
//! direct invocation whose payload becomes the input file `event.json`. Records whose key lies
//! under the output prefix of the same bucket are skipped: a function writing its outputs into
//! the bucket that triggers it would otherwise call itself forever.

use aws_lambda_events::event::s3::S3EventRecord;
use base64::Engine as _;
use percent_encoding::percent_decode_str;

use crate::config::S3Location;

/// File name of a direct invocation's payload in the input directory.
pub const DIRECT_INPUT_NAME: &str = "event.json";

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

/// What one container run processes: decided once, by [`map_event`], and carried as is to
/// staging (download or payload file), the run (the `STORAGE_OBJECT_KEY`, `SCAR_INPUT_BUCKET`
/// and `EVENT_TIME` variables), the outputs (the input bucket's default prefix) and the
/// response (`inputs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An S3 object, downloaded into the input directory.
    S3(S3Input),
    /// A direct invocation: the payload is the input file [`DIRECT_INPUT_NAME`].
    Direct,
}

impl Input {
    /// The S3 object, for an S3 input.
    pub fn s3(&self) -> Option<&S3Input> {
        match self {
            Self::S3(input) => Some(input),
            Self::Direct => None,
        }
    }

    /// `s3://bucket/key` of an S3 input (the response lists these).
    pub fn url(&self) -> Option<String> {
        self.s3().map(S3Input::url)
    }
}

/// A mapped event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedEvent {
    /// One container run each, in order: a single [`Input::Direct`] for a direct invocation,
    /// the objects of an S3 event (none when every record was skipped).
    pub inputs: Vec<Input>,
    /// `s3://` URLs of records skipped by the output-prefix guard.
    pub skipped: Vec<String>,
    /// A script carried by a direct invocation (only with `SCAR_ALLOW_INVOKE_SCRIPT`).
    pub script: Option<String>,
}

/// Why an event cannot be processed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// An S3 record does not have the shape S3 sends.
    #[error("record {index} of the S3 event is malformed: {source}")]
    MalformedRecord {
        /// Position in `Records`.
        index: usize,
        /// What serde found.
        source: serde_json::Error,
    },
    /// An S3 record has no bucket name or key.
    #[error("record {index} of the S3 event has no {field}")]
    MissingField {
        /// Position in `Records`.
        index: usize,
        /// `s3.bucket.name` or `s3.object.key`.
        field: &'static str,
    },
    /// A key does not decode to UTF-8 text.
    #[error("record {index} of the S3 event has a key that is not URL-encoded UTF-8: {key}")]
    BadKey {
        /// Position in `Records`.
        index: usize,
        /// The key as sent.
        key: String,
    },
    /// A direct invocation carries a script but the function does not allow it.
    #[error(
        "the invocation carries a script but SCAR_ALLOW_INVOKE_SCRIPT is false: set it to true to allow scripts in direct invocations"
    )]
    ScriptNotAllowed,
    /// The carried script is not base64 of UTF-8 text.
    #[error("the invocation's \"script\" is not base64-encoded UTF-8 text: {0}")]
    BadScript(String),
}

/// The rules mapping applies, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct EventRules<'a> {
    /// `SCAR_OUTPUT` (`None`: `output/` in the input bucket).
    pub output: Option<&'a S3Location>,
    /// `SCAR_ALLOW_INVOKE_SCRIPT`.
    pub allow_invoke_script: bool,
}

/// Map an invocation payload to the work it asks for.
pub fn map_event(payload: &[u8], rules: EventRules<'_>) -> Result<MappedEvent, EventError> {
    let value: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
    match value.as_ref().and_then(s3_records) {
        Some(records) => map_s3(records, rules),
        None => Ok(MappedEvent {
            inputs: vec![Input::Direct],
            skipped: Vec::new(),
            script: direct_script(value.as_ref(), rules)?,
        }),
    }
}

/// The `Records` array when the payload is an S3 notification.
fn s3_records(value: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    let records = value.get("Records")?.as_array()?;
    let is_s3 = |r: &serde_json::Value| {
        r.get("eventSource").and_then(|s| s.as_str()) == Some("aws:s3")
            || r.get("s3").is_some_and(|s| s.is_object())
    };
    (!records.is_empty() && records.iter().all(is_s3)).then_some(records)
}

fn map_s3(records: &[serde_json::Value], rules: EventRules<'_>) -> Result<MappedEvent, EventError> {
    let mut inputs = Vec::new();
    let mut skipped = Vec::new();
    for (index, raw) in records.iter().enumerate() {
        // `S3EventRecord` requires `eventTime` (as a date), `userIdentity` and
        // `requestParameters`; that is what this parser has always required. Issue #19 relaxes
        // it, and will need a record type of its own for that: these fields must then be
        // optional, which the crate's type does not allow (`scar local` builds its events with
        // it, since it sets them all).
        let record: S3EventRecord = serde_json::from_value(raw.clone())
            .map_err(|source| EventError::MalformedRecord { index, source })?;
        let bucket = record.s3.bucket.name.filter(|b| !b.is_empty());
        let bucket = bucket.ok_or(EventError::MissingField {
            index,
            field: "s3.bucket.name",
        })?;
        let raw_key = record.s3.object.key.filter(|k| !k.is_empty());
        let raw_key = raw_key.ok_or(EventError::MissingField {
            index,
            field: "s3.object.key",
        })?;
        let key = decode_key(&raw_key).ok_or(EventError::BadKey {
            index,
            key: raw_key.clone(),
        })?;
        let input = S3Input {
            bucket,
            key,
            size: record.s3.object.size.and_then(|s| u64::try_from(s).ok()),
            etag: record.s3.object.e_tag.filter(|e| !e.is_empty()),
            event_time: raw
                .get("eventTime")
                .and_then(|t| t.as_str())
                .map(str::to_owned),
        };
        if is_own_output(&input, rules.output) {
            tracing::warn!(
                input = %input.url(),
                "skipping a record whose key lies under the output prefix of its own bucket: \
                 processing it would trigger this function again with its own output"
            );
            skipped.push(input.url());
        } else {
            inputs.push(Input::S3(input));
        }
    }
    Ok(MappedEvent {
        inputs,
        skipped,
        script: None,
    })
}

/// S3 notifications URL-encode keys the HTML-form way: `+` is a space, `%2B` a plus.
pub fn decode_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

fn is_own_output(input: &S3Input, output: Option<&S3Location>) -> bool {
    let default;
    let output = match output {
        Some(output) => output,
        None => {
            default = S3Location {
                bucket: input.bucket.clone(),
                key: crate::config::DEFAULT_OUTPUT_PREFIX.to_owned(),
            };
            &default
        }
    };
    output.bucket == input.bucket && input.key.starts_with(&output.prefix_dir())
}

fn direct_script(
    value: Option<&serde_json::Value>,
    rules: EventRules<'_>,
) -> Result<Option<String>, EventError> {
    let Some(script) = value.and_then(|v| v.get("script")) else {
        return Ok(None);
    };
    if !rules.allow_invoke_script {
        return Err(EventError::ScriptNotAllowed);
    }
    let text = script
        .as_str()
        .ok_or_else(|| EventError::BadScript("it is not a string".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| EventError::BadScript(e.to_string()))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| EventError::BadScript(e.to_string()))
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;

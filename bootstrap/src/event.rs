//! Event mapping: what one invocation asks for.
//!
//! Every shape users put in front of a function maps to the same script contract: each S3
//! object named by an S3 notification (directly, in the messages of an SQS batch, in an SNS
//! event, or in an SNS notification inside an SQS message) or by an EventBridge "Object
//! Created" event is one run; anything else is a direct invocation whose payload becomes the
//! input file `event.json`. An HTTP request (API Gateway, a Function URL) is one run whose
//! input file is the request body (`http`). A record is skipped (nothing to retry) when it is not a new object
//! (a deletion, a folder marker, `s3:TestEvent`) or lies under the output prefix of its own
//! bucket (a function writing its outputs into the bucket that triggers it would otherwise call
//! itself forever); a record that cannot be read is unreadable, and the others still run.
//!
//! `shape` tells the shapes apart, `s3` reads S3's own shapes, `envelope` unwraps SQS and SNS;
//! `mapped` holds what they produce and the gate every object passes.

use base64::Engine as _;

mod envelope;
mod http;
mod mapped;
mod names;
mod s3;
mod shape;

pub use http::{HttpFormat, HttpInput, HttpSource, media_type};
pub use mapped::{EventError, EventRules, Input, MappedEvent, S3Input, Skipped, Unreadable, Work};
pub use names::fit_file_name;
pub use s3::decode_key;

use mapped::Origin;
use shape::{Shape, shape_of};

/// File name of a direct invocation's payload in the input directory.
pub const DIRECT_INPUT_NAME: &str = "event.json";

/// Map an invocation payload to the work it asks for. Only a configuration that cannot work
/// (`SCAR_OUTPUT` at the root of an input bucket) or a refused script fails the whole event;
/// a record's own problem is one of [`MappedEvent::unreadable`].
pub fn map_event(payload: &[u8], rules: EventRules<'_>) -> Result<MappedEvent, EventError> {
    let value: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
    let mut mapped = MappedEvent::default();
    let top = Origin::top();
    if let Some(value) = &value
        && let Some(format) = http::http_format(value)
    {
        // An HTTP request never carries a script: its body is the input, whatever it holds.
        mapped.http = Some(format);
        match http::read_request(value, format) {
            Ok(request) => mapped.work.push(Work {
                input: Input::Http(Box::new(request)),
                message_id: None,
            }),
            Err(reason) => mapped.unreadable.push(Unreadable {
                what: "the HTTP request".to_owned(),
                reason,
                message_id: None,
                position: 0,
            }),
        }
        return Ok(mapped);
    }
    match value.as_ref().and_then(shape_of) {
        Some(Shape::S3(records)) => s3::map_records(records, &top, rules, &mut mapped)?,
        Some(Shape::S3Test) => s3::test_event(&top, &mut mapped),
        Some(Shape::EventBridge(event)) => s3::map_eventbridge(event, &top, rules, &mut mapped)?,
        Some(Shape::Sqs(records)) => envelope::map_sqs(records, rules, &mut mapped)?,
        Some(Shape::Sns(records)) => envelope::map_sns(records, rules, &mut mapped)?,
        // An SNS notification reaches a function only inside an SQS message; sent directly it
        // is a payload like any other.
        Some(Shape::SnsNotification(_)) | None => {
            mapped.script = direct_script(value.as_ref(), rules)?;
            mapped.work.push(Work {
                input: Input::Direct,
                message_id: None,
            });
        }
    }
    Ok(mapped)
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
mod fixtures;

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;

//! S3's own shapes: the notification's records, `s3:TestEvent`, and EventBridge events.
//!
//! Only what the bootstrap needs is required (the bucket name and the key); everything else is
//! optional and taken only when usable, because EventBridge-shaped and S3-compatible-server
//! notifications leave out fields such as `userIdentity`, and some servers send `size` as a
//! string.

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::mapped::{EventError, EventRules, MappedEvent, Origin, S3Input};

/// The EventBridge `detail-type` of a new object.
const OBJECT_CREATED: &str = "Object Created";

/// One record of an S3 notification, as leniently as it can be read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    #[serde(default, deserialize_with = "text")]
    event_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    event_time: Option<String>,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: S3Object,
}

#[derive(Debug, Default, Deserialize)]
struct Bucket {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    #[serde(default)]
    key: Option<String>,
    #[serde(default, deserialize_with = "size")]
    size: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    e_tag: Option<String>,
}

/// An EventBridge event from S3 (`detail-type`, `time`, `detail.bucket`, `detail.object`).
#[derive(Debug, Deserialize)]
struct BridgeEvent {
    #[serde(rename = "detail-type", default, deserialize_with = "text")]
    detail_type: Option<String>,
    #[serde(default, deserialize_with = "text")]
    time: Option<String>,
    #[serde(default)]
    detail: BridgeDetail,
}

#[derive(Debug, Default, Deserialize)]
struct BridgeDetail {
    #[serde(default)]
    bucket: Bucket,
    #[serde(default)]
    object: BridgeObject,
}

#[derive(Debug, Default, Deserialize)]
struct BridgeObject {
    #[serde(default)]
    key: Option<String>,
    #[serde(default, deserialize_with = "size")]
    size: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    etag: Option<String>,
}

/// Why one record cannot be mapped.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// Not the shape S3 sends.
    #[error("it does not have the shape S3 sends: {0}")]
    Malformed(serde_json::Error),
    /// No bucket name or key.
    #[error("it has no {0}")]
    Missing(&'static str),
    /// A key that does not decode to UTF-8 text.
    #[error("its key is not URL-encoded UTF-8: {0}")]
    BadKey(String),
}

/// Map the records of an S3 notification (a `Shape::S3`).
pub(super) fn map_records(
    records: &[Value],
    origin: &Origin,
    rules: EventRules<'_>,
    out: &mut MappedEvent,
) -> Result<(), EventError> {
    for (index, raw) in records.iter().enumerate() {
        match read_record(raw) {
            Ok((input, event_name)) => {
                let removed = event_name
                    .as_deref()
                    .is_some_and(|name| name.starts_with("ObjectRemoved:"));
                let not_created = removed.then(|| "the object was deleted".to_owned());
                out.object(input, origin, rules, not_created)?;
            }
            Err(err) => out.unreadable(origin, &format!("record {}", index + 1), err),
        }
    }
    Ok(())
}

fn read_record(raw: &Value) -> Result<(S3Input, Option<String>), RecordError> {
    let record = S3Record::deserialize(raw).map_err(RecordError::Malformed)?;
    let bucket = present(record.s3.bucket.name).ok_or(RecordError::Missing("s3.bucket.name"))?;
    let raw_key = present(record.s3.object.key).ok_or(RecordError::Missing("s3.object.key"))?;
    let key = decode_key(&raw_key).ok_or(RecordError::BadKey(raw_key))?;
    let input = S3Input {
        bucket,
        key,
        size: record.s3.object.size,
        etag: record.s3.object.e_tag,
        event_time: record.event_time,
    };
    Ok((input, record.event_name))
}

/// `s3:TestEvent`: S3 checking that the notification reaches its destination.
pub(super) fn test_event(origin: &Origin, out: &mut MappedEvent) {
    out.skip(
        origin,
        "s3:TestEvent",
        "the test message S3 sends when a notification is set up: there is no object to process",
    );
}

/// Map an EventBridge event from S3 (a `Shape::EventBridge`): an "Object Created" event is an
/// object to process, any other S3 event (deletion, restore, tags...) is skipped.
pub(super) fn map_eventbridge(
    event: &Value,
    origin: &Origin,
    rules: EventRules<'_>,
    out: &mut MappedEvent,
) -> Result<(), EventError> {
    const WHAT: &str = "the EventBridge event";
    let event = match BridgeEvent::deserialize(event) {
        Ok(event) => event,
        Err(err) => {
            out.unreadable(origin, WHAT, RecordError::Malformed(err));
            return Ok(());
        }
    };
    let detail_type = event.detail_type.unwrap_or_default();
    let created = detail_type == OBJECT_CREATED;
    let bucket = present(event.detail.bucket.name);
    let raw_key = present(event.detail.object.key);
    let missing = match (&bucket, &raw_key) {
        (None, _) => Some("detail.bucket.name"),
        (_, None) => Some("detail.object.key"),
        _ => None,
    };
    let (Some(bucket), Some(raw_key)) = (bucket, raw_key) else {
        match missing {
            Some(field) if created => out.unreadable(origin, WHAT, RecordError::Missing(field)),
            _ => out.skip(
                origin,
                &format!("EventBridge \"{detail_type}\" event"),
                not_created(&detail_type),
            ),
        }
        return Ok(());
    };
    // S3's EventBridge documentation (userguide/ev-events.html) does not say whether the key is
    // URL-encoded: its example key has nothing to encode. AWS's own consumers decode it as in S3
    // notifications (`+` a space, `%XX` a byte): in Powertools for AWS Lambda (Python),
    // `S3EventBridgeNotificationObject.key` returns `unquote_plus(self["key"])`
    // (aws-powertools/powertools-lambda-python, aws_lambda_powertools/utilities/data_classes/
    // s3_event.py), and OpenSearch Data Prepper reads it through `getUrlDecodedKey`, i.e.
    // `SdkHttpUtils.urlDecode` (opensearch-project/data-prepper, data-prepper-plugins/s3-source/
    // .../s3/S3EventBridgeNotification.java). We decode the same way.
    let Some(key) = decode_key(&raw_key) else {
        out.unreadable(origin, WHAT, RecordError::BadKey(raw_key));
        return Ok(());
    };
    let input = S3Input {
        bucket,
        key,
        size: event.detail.object.size,
        etag: event.detail.object.etag,
        event_time: event.time,
    };
    let reason = (!created).then(|| not_created(&detail_type));
    out.object(input, origin, rules, reason)
}

fn not_created(detail_type: &str) -> String {
    format!(
        "an EventBridge \"{detail_type}\" event, not \"{OBJECT_CREATED}\": no new object to process"
    )
}

/// S3 notifications URL-encode keys the HTML-form way: `+` is a space, `%2B` a plus.
pub fn decode_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

fn present(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

/// An optional text field: a non-empty string, else nothing (a field the bootstrap does not
/// need never makes a record unreadable).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    })
}

/// `size` as a number, or as a decimal string as some S3-compatible servers send it.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
#[path = "s3_tests.rs"]
mod tests;

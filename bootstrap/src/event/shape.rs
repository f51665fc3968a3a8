//! Which of the shapes users put in front of a function a JSON document is, told from the fields
//! each service always sets.

use serde_json::Value;

/// A recognised event shape.
#[derive(Debug)]
pub(super) enum Shape<'v> {
    /// An S3 notification: `{"Records": [{"eventSource": "aws:s3", "s3": {...}}]}`.
    S3(&'v [Value]),
    /// `{"Service": "Amazon S3", "Event": "s3:TestEvent"}`, sent when a notification is set up.
    S3Test,
    /// An EventBridge event from S3: `{"source": "aws.s3", "detail-type": ..., "detail": {...}}`.
    EventBridge(&'v Value),
    /// An SQS batch: `{"Records": [{"eventSource": "aws:sqs", "messageId": ..., "body": ...}]}`.
    Sqs(&'v [Value]),
    /// An SNS event: `{"Records": [{"EventSource": "aws:sns", "Sns": {"Message": ...}}]}`.
    Sns(&'v [Value]),
    /// An SNS notification as SNS delivers it to an SQS queue (raw message delivery off):
    /// `{"Type": "Notification", "Message": ...}`.
    SnsNotification(&'v Value),
}

/// The shape of `value`, if it has one of them.
pub(super) fn shape_of(value: &Value) -> Option<Shape<'_>> {
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        if records.is_empty() {
            return None;
        }
        // S3-compatible servers name themselves ("minio:s3", "ceph:s3") but keep the `s3` part.
        let is_s3 = |r: &Value| field(r, "eventSource") == Some("aws:s3") || r["s3"].is_object();
        let is_sqs = |r: &Value| field(r, "eventSource") == Some("aws:sqs");
        let is_sns = |r: &Value| field(r, "EventSource") == Some("aws:sns");
        return if records.iter().all(is_s3) {
            Some(Shape::S3(records))
        } else if records.iter().all(is_sqs) {
            Some(Shape::Sqs(records))
        } else if records.iter().all(is_sns) {
            Some(Shape::Sns(records))
        } else {
            None
        };
    }
    if field(value, "Event") == Some("s3:TestEvent") {
        return Some(Shape::S3Test);
    }
    if field(value, "source") == Some("aws.s3") && value.get("detail-type").is_some() {
        return Some(Shape::EventBridge(value));
    }
    if field(value, "Type") == Some("Notification") && value.get("Message").is_some() {
        return Some(Shape::SnsNotification(value));
    }
    None
}

/// The text of `value[name]`, when it is a string.
pub(super) fn field<'v>(value: &'v Value, name: &str) -> Option<&'v str> {
    value.get(name).and_then(Value::as_str)
}

//! Events shaped as AWS documents them, for the tests of the event modules.

use serde_json::{Value, json};

use super::mapped::{EventRules, Input, MappedEvent, S3Input};

/// The rules of a function without `SCAR_OUTPUT` or invoked scripts.
pub const RULES: EventRules<'static> = EventRules {
    output: None,
    allow_invoke_script: false,
};

/// One record of an S3 notification with every field S3 sets.
pub fn record(bucket: &str, key: &str) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T15:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "EXAMPLE123456789", "x-amz-id-2": "EXAMPLE123/5678abcdefghijklambdaisawesome/mnopqrstuvwxyzABCDEFGH"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "scar",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": key, "size": 1024, "eTag": "0123456789abcdef", "sequencer": "0A1B2C3D4E5F678901"}
        }
    })
}

/// An S3 notification of `records`.
pub fn notification(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// `value` as payload bytes.
pub fn payload(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values serialize")
}

/// The test message S3 sends when a notification is set up.
pub fn s3_test_event() -> Value {
    json!({
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-27T15:00:00.000Z",
        "Bucket": "in",
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
    })
}

/// An EventBridge event from S3 of `detail_type` for `bucket`/`key`.
pub fn eventbridge(detail_type: &str, bucket: &str, key: &str) -> Value {
    json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-11-12T00:00:00Z",
        "region": "ca-central-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184", "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject"
        }
    })
}

/// One SQS message of a Lambda SQS event whose body is `body` as JSON text.
pub fn sqs_message(id: &str, body: &Value) -> Value {
    sqs_message_text(id, &body.to_string())
}

/// One SQS message whose body is `body` as is.
pub fn sqs_message_text(id: &str, body: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185"
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:scar-queue",
        "awsRegion": "us-east-1"
    })
}

/// An SNS notification as SNS delivers it to an SQS queue, holding `message` as JSON text.
pub fn sns_notification(message: &Value) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": "d1e0c4a2-9d4f-5b8b-8a35-8f7c2e5e8d11",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:scar-topic",
        "Subject": "Amazon S3 Notification",
        "Message": message.to_string(),
        "Timestamp": "2026-11-27T15:00:01.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-EXAMPLE.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
}

/// One record of a Lambda SNS event whose message is `message` as is.
pub fn sns_record(message_id: &str, message: &str) -> Value {
    json!({
        "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:111122223333:scar-topic:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "EventSource": "aws:sns",
        "Sns": {
            "SignatureVersion": "1",
            "Timestamp": "2026-11-27T15:00:01.000Z",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "EXAMPLE",
            "MessageId": message_id,
            "Message": message,
            "MessageAttributes": {},
            "Type": "Notification",
            "UnsubscribeUrl": "EXAMPLE",
            "TopicArn": "arn:aws:sns:us-east-1:111122223333:scar-topic",
            "Subject": "Amazon S3 Notification"
        }
    })
}

/// The S3 objects of the mapped work; panics on a direct input.
pub fn objects(mapped: &MappedEvent) -> Vec<S3Input> {
    mapped
        .work
        .iter()
        .map(|work| match &work.input {
            Input::S3(object) => object.clone(),
            Input::Direct | Input::Http(_) => panic!("a direct or HTTP input among S3 records"),
        })
        .collect()
}

/// `s3://` URLs of the mapped work, in order.
pub fn urls(mapped: &MappedEvent) -> Vec<String> {
    objects(mapped).iter().map(S3Input::url).collect()
}

/// The `input` of each skipped record.
pub fn skipped_inputs(mapped: &MappedEvent) -> Vec<&str> {
    mapped.skipped.iter().map(|s| s.input.as_str()).collect()
}

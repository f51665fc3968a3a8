//! Envelopes around S3's shapes: an SQS batch (each message's `body`), an SNS event (each
//! record's `Sns.Message`), and an SNS notification inside an SQS body (the fan-out S3 → SNS →
//! SQS). Each envelope holds JSON text; a message whose text is none of S3's shapes is
//! unreadable, the other messages still map.

use serde_json::Value;

use super::mapped::{EventError, EventRules, MappedEvent, Origin, Unreadable};
use super::s3;
use super::shape::{Shape, field, shape_of};

/// The deepest a document may sit: SQS → SNS → S3 notification is 3. Nothing AWS sends goes
/// deeper; a deeper document is refused rather than unwrapped without end.
pub(super) const MAX_DEPTH: usize = 3;

/// What a message that is none of the shapes is told.
const NOT_A_SHAPE: &str = "it is none of the shapes the bootstrap reads: an S3 notification, s3:TestEvent, an EventBridge event from S3, or an SNS notification holding one";

/// Map an SQS batch (a `Shape::Sqs`): each message's body, its work tagged with the message id.
pub(super) fn map_sqs(
    records: &[Value],
    rules: EventRules<'_>,
    out: &mut MappedEvent,
) -> Result<(), EventError> {
    let mut ids = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let id = field(record, "messageId").filter(|id| !id.is_empty());
        let origin = Origin {
            message_id: id.map(str::to_owned),
            within: Some(match id {
                Some(id) => format!("SQS message {id}"),
                None => format!("record {} (an SQS message without a messageId)", index + 1),
            }),
            depth: 2,
        };
        ids.extend(id.map(str::to_owned));
        match field(record, "body") {
            Some(body) => map_text(body, "its body", &origin, rules, out)?,
            None => refuse(out, &origin, "it has no body text".to_owned()),
        }
    }
    out.sqs_messages = Some(ids);
    Ok(())
}

/// Map an SNS event (a `Shape::Sns`): each record's message.
pub(super) fn map_sns(
    records: &[Value],
    rules: EventRules<'_>,
    out: &mut MappedEvent,
) -> Result<(), EventError> {
    for (index, record) in records.iter().enumerate() {
        let sns = &record["Sns"];
        let within = match field(sns, "MessageId").filter(|id| !id.is_empty()) {
            Some(id) => format!("SNS message {id}"),
            None => format!("record {}", index + 1),
        };
        let origin = Origin {
            message_id: None,
            within: Some(within),
            depth: 2,
        };
        match field(sns, "Message") {
            Some(message) => map_text(message, "its message", &origin, rules, out)?,
            None => refuse(out, &origin, "it has no Sns.Message text".to_owned()),
        }
    }
    Ok(())
}

/// Map the JSON `text` an envelope holds (`label` names it in errors: "its body").
fn map_text(
    text: &str,
    label: &str,
    origin: &Origin,
    rules: EventRules<'_>,
    out: &mut MappedEvent,
) -> Result<(), EventError> {
    if origin.depth > MAX_DEPTH {
        let reason = format!(
            "it wraps envelopes more than {MAX_DEPTH} levels deep (SQS → SNS → S3 notification is {MAX_DEPTH})"
        );
        refuse(out, origin, reason);
        return Ok(());
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            refuse(out, origin, format!("{label} is not JSON: {err}"));
            return Ok(());
        }
    };
    match shape_of(&value) {
        Some(Shape::S3(records)) => s3::map_records(records, origin, rules, out),
        Some(Shape::S3Test) => {
            s3::test_event(origin, out);
            Ok(())
        }
        Some(Shape::EventBridge(event)) => s3::map_eventbridge(event, origin, rules, out),
        Some(Shape::SnsNotification(notification)) => {
            let inner = Origin {
                depth: origin.depth + 1,
                ..origin.clone()
            };
            match field(notification, "Message") {
                Some(message) => map_text(message, "its SNS message", &inner, rules, out),
                None => {
                    refuse(
                        out,
                        origin,
                        "its SNS notification has no Message text".to_owned(),
                    );
                    Ok(())
                }
            }
        }
        Some(Shape::Sqs(_) | Shape::Sns(_)) | None => {
            refuse(out, origin, NOT_A_SHAPE.to_owned());
            Ok(())
        }
    }
}

/// The whole message of `origin` is unreadable.
fn refuse(out: &mut MappedEvent, origin: &Origin, reason: String) {
    out.unreadable.push(Unreadable {
        what: origin
            .within
            .clone()
            .unwrap_or_else(|| "the event".to_owned()),
        reason,
        message_id: origin.message_id.clone(),
        position: out.work.len(),
    });
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;

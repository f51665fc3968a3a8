use serde_json::json;

use super::MAX_DEPTH;
use crate::config::S3Location;
use crate::event::fixtures::*;
use crate::event::{EventRules, Input, MappedEvent, Work, map_event};

fn map(value: &serde_json::Value) -> MappedEvent {
    map_event(&payload(value), RULES).unwrap()
}

/// `(url, message id)` of each run.
fn runs(mapped: &MappedEvent) -> Vec<(String, Option<&str>)> {
    mapped
        .work
        .iter()
        .map(|Work { input, message_id }| (input.url().unwrap_or_default(), message_id.as_deref()))
        .collect()
}

#[test]
fn an_sqs_batch_runs_every_object_of_every_message_tagged_with_its_message() {
    let two = notification(vec![record("in", "a.txt"), record("in", "b+c.txt")]);
    let through_sns = sns_notification(&notification(vec![record("in", "d.txt")]));
    let bridge = eventbridge("Object Created", "in", "e.txt");
    let batch = notification(vec![
        sqs_message("m1", &two),
        sqs_message("m2", &through_sns),
        sqs_message("m3", &bridge),
    ]);
    let mapped = map(&batch);
    assert_eq!(
        runs(&mapped),
        [
            ("s3://in/a.txt".to_owned(), Some("m1")),
            ("s3://in/b c.txt".to_owned(), Some("m1")),
            ("s3://in/d.txt".to_owned(), Some("m2")),
            ("s3://in/e.txt".to_owned(), Some("m3")),
        ]
    );
    assert_eq!(
        mapped.sqs_messages,
        Some(vec!["m1".into(), "m2".into(), "m3".into()])
    );
    assert!(mapped.skipped.is_empty() && mapped.unreadable.is_empty());
    assert_eq!(mapped.script, None);
}

#[test]
fn an_sqs_body_that_is_not_json_or_not_an_s3_shape_is_unreadable_with_its_message_id() {
    let batch = notification(vec![
        sqs_message_text("bad-json", "{\"Records\": ["),
        sqs_message("other", &json!({"hello": "world"})),
        sqs_message("ok", &notification(vec![record("in", "a.txt")])),
    ]);
    let mapped = map(&batch);
    assert_eq!(runs(&mapped), [("s3://in/a.txt".to_owned(), Some("ok"))]);
    let unreadable: Vec<_> = (mapped.unreadable.iter())
        .map(|u| (u.what.as_str(), u.message_id.as_deref()))
        .collect();
    assert_eq!(
        unreadable,
        [
            ("SQS message bad-json", Some("bad-json")),
            ("SQS message other", Some("other")),
        ]
    );
    assert!(
        mapped.unreadable[0]
            .reason
            .starts_with("its body is not JSON: "),
        "{}",
        mapped.unreadable[0].reason
    );
    assert!(
        mapped.unreadable[1]
            .reason
            .starts_with("it is none of the shapes"),
        "{}",
        mapped.unreadable[1].reason
    );
    assert_eq!(
        mapped.sqs_messages,
        Some(vec!["bad-json".into(), "other".into(), "ok".into()])
    );
}

#[test]
fn an_unreadable_record_inside_an_sqs_message_names_both() {
    let mut bad = record("in", "x");
    bad["s3"]["object"].as_object_mut().unwrap().remove("key");
    let body = notification(vec![record("in", "ok.txt"), bad]);
    let mapped = map(&notification(vec![sqs_message("m1", &body)]));
    assert_eq!(runs(&mapped), [("s3://in/ok.txt".to_owned(), Some("m1"))]);
    assert_eq!(mapped.unreadable.len(), 1);
    assert_eq!(mapped.unreadable[0].what, "record 2 of SQS message m1");
    assert_eq!(mapped.unreadable[0].reason, "it has no s3.object.key");
    assert_eq!(mapped.unreadable[0].message_id.as_deref(), Some("m1"));
}

#[test]
fn an_sqs_message_without_a_body_or_an_id_is_unreadable() {
    let mut no_body = sqs_message("m1", &json!({}));
    no_body.as_object_mut().unwrap().remove("body");
    let mut no_id = sqs_message("x", &notification(vec![record("in", "a.txt")]));
    no_id.as_object_mut().unwrap().remove("messageId");
    let mapped = map(&notification(vec![no_body, no_id]));
    assert_eq!(mapped.unreadable.len(), 1, "{:?}", mapped.unreadable);
    assert_eq!(mapped.unreadable[0].what, "SQS message m1");
    assert_eq!(mapped.unreadable[0].reason, "it has no body text");
    // A message without an id still runs; it cannot be named in batchItemFailures.
    assert_eq!(runs(&mapped), [("s3://in/a.txt".to_owned(), None)]);
    assert_eq!(mapped.sqs_messages, Some(vec!["m1".into()]));
}

#[test]
fn skipped_records_of_an_sqs_batch_are_named_in_their_message() {
    let batch = notification(vec![
        sqs_message("t", &s3_test_event()),
        sqs_message("f", &notification(vec![record("in", "dir/")])),
    ]);
    let mapped = map(&batch);
    assert!(mapped.work.is_empty() && mapped.unreadable.is_empty());
    assert_eq!(
        skipped_inputs(&mapped),
        ["s3:TestEvent of SQS message t", "s3://in/dir/"]
    );
}

#[test]
fn an_sns_event_runs_the_objects_of_its_message() {
    let message = notification(vec![record("in", "a.txt")]).to_string();
    let mapped = map(&notification(vec![sns_record("n1", &message)]));
    assert_eq!(runs(&mapped), [("s3://in/a.txt".to_owned(), None)]);
    assert_eq!(mapped.sqs_messages, None);
    let mapped = map(&notification(vec![sns_record("n2", "hello")]));
    assert!(mapped.work.is_empty());
    assert_eq!(mapped.unreadable.len(), 1);
    assert_eq!(mapped.unreadable[0].what, "SNS message n2");
    assert!(
        mapped.unreadable[0]
            .reason
            .starts_with("its message is not JSON")
    );
    assert_eq!(mapped.unreadable[0].message_id, None);
}

#[test]
fn sqs_then_sns_then_s3_is_read_and_one_level_deeper_is_refused() {
    let s3 = notification(vec![record("in", "a.txt")]);
    assert_eq!(MAX_DEPTH, 3);
    let three = sns_notification(&s3);
    let four = sns_notification(&three);
    let mapped = map(&notification(vec![
        sqs_message("deep", &four),
        sqs_message("fine", &three),
    ]));
    assert_eq!(runs(&mapped), [("s3://in/a.txt".to_owned(), Some("fine"))]);
    assert_eq!(mapped.unreadable.len(), 1);
    assert_eq!(mapped.unreadable[0].what, "SQS message deep");
    assert_eq!(mapped.unreadable[0].message_id.as_deref(), Some("deep"));
    assert!(
        mapped.unreadable[0]
            .reason
            .contains("more than 3 levels deep"),
        "{}",
        mapped.unreadable[0].reason
    );
}

#[test]
fn an_sqs_batch_is_not_unwrapped_inside_another_envelope() {
    let inner = notification(vec![sqs_message(
        "i",
        &notification(vec![record("in", "a.txt")]),
    )]);
    let mapped = map(&notification(vec![sqs_message("outer", &inner)]));
    assert!(mapped.work.is_empty());
    assert_eq!(mapped.unreadable[0].what, "SQS message outer");
}

#[test]
fn the_output_guard_applies_inside_sqs_messages() {
    let body = notification(vec![record("in", "output/x.txt"), record("in", "x.txt")]);
    let mapped = map(&notification(vec![sqs_message("m", &body)]));
    assert_eq!(runs(&mapped), [("s3://in/x.txt".to_owned(), Some("m"))]);
    assert_eq!(skipped_inputs(&mapped), ["s3://in/output/x.txt"]);
    let output = S3Location {
        bucket: "in".into(),
        key: String::new(),
    };
    let rules = EventRules {
        output: Some(&output),
        allow_invoke_script: false,
    };
    let err = map_event(
        &payload(&notification(vec![sqs_message("m", &body)])),
        rules,
    )
    .unwrap_err();
    assert!(err.is_config(), "{err}");
}

#[test]
fn a_script_in_an_sqs_body_is_not_a_direct_invocation_script() {
    let allowed = EventRules {
        output: None,
        allow_invoke_script: true,
    };
    let batch = notification(vec![sqs_message("m", &json!({"script": "ZWNobyBoaQ=="}))]);
    let mapped = map_event(&payload(&batch), allowed).unwrap();
    assert_eq!(mapped.script, None);
    assert!(!mapped.work.iter().any(|w| w.input == Input::Direct));
    assert_eq!(mapped.unreadable.len(), 1);
}

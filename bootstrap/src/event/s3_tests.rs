use serde_json::json;

use crate::config::S3Location;
use crate::event::fixtures::*;
use crate::event::{EventRules, MappedEvent, S3Input, map_event};

fn map(value: &serde_json::Value) -> MappedEvent {
    map_event(&payload(value), RULES).unwrap()
}

#[test]
fn a_record_with_only_the_bucket_name_and_the_key_is_enough() {
    let bare = json!({"s3": {"bucket": {"name": "in"}, "object": {"key": "a.txt"}}});
    let mapped = map(&notification(vec![bare]));
    assert_eq!(
        objects(&mapped),
        [S3Input {
            bucket: "in".into(),
            key: "a.txt".into(),
            size: None,
            etag: None,
            event_time: None,
        }]
    );
    assert!(mapped.unreadable.is_empty());
}

#[test]
fn fields_the_bootstrap_does_not_need_never_make_a_record_unreadable() {
    let mut odd = record("in", "a.txt");
    odd["eventTime"] = json!(1_764_255_600);
    odd["userIdentity"] = json!(null);
    odd["requestParameters"] = json!("n/a");
    odd["s3"]["object"]["eTag"] = json!(42);
    odd["s3"]["object"]["size"] = json!(-1);
    odd["eventSource"] = json!("minio:s3");
    let mapped = map(&notification(vec![odd]));
    let [object] = objects(&mapped).try_into().expect("one object");
    assert_eq!(
        (object.size, object.etag, object.event_time),
        (None, None, None)
    );
}

#[test]
fn a_size_may_come_as_a_number_or_a_string() {
    let mut as_string = record("in", "a.txt");
    as_string["s3"]["object"]["size"] = json!("2048");
    let mut garbled = record("in", "b.txt");
    garbled["s3"]["object"]["size"] = json!("big");
    let mapped = map(&notification(vec![
        record("in", "n.txt"),
        as_string,
        garbled,
    ]));
    let sizes: Vec<_> = objects(&mapped).iter().map(|o| o.size).collect();
    assert_eq!(sizes, [Some(1024), Some(2048), None]);
}

#[test]
fn a_deleted_object_is_skipped() {
    let mut removed = record("in", "gone.txt");
    removed["eventName"] = json!("ObjectRemoved:Delete");
    removed["s3"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("size");
    let mapped = map(&notification(vec![removed, record("in", "new.txt")]));
    assert_eq!(urls(&mapped), ["s3://in/new.txt"]);
    assert_eq!(skipped_inputs(&mapped), ["s3://in/gone.txt"]);
    assert_eq!(mapped.skipped[0].reason, "the object was deleted");
}

#[test]
fn a_folder_marker_is_skipped_not_run() {
    let mapped = map(&notification(vec![
        record("in", "input/new/"),
        record("in", "input/new%2F"),
    ]));
    assert!(mapped.work.is_empty() && mapped.unreadable.is_empty());
    assert_eq!(
        skipped_inputs(&mapped),
        ["s3://in/input/new/", "s3://in/input/new/"]
    );
    assert_eq!(
        mapped.skipped[0].reason,
        "a folder marker (the key ends in /), not an object"
    );
}

#[test]
fn a_key_with_bad_percent_encoding_is_unreadable() {
    let mapped = map(&notification(vec![
        record("in", "a%FFb"),
        record("in", "ok"),
    ]));
    assert_eq!(urls(&mapped), ["s3://in/ok"]);
    assert_eq!(mapped.unreadable.len(), 1);
    assert_eq!(mapped.unreadable[0].what, "record 1");
    assert_eq!(
        mapped.unreadable[0].reason,
        "its key is not URL-encoded UTF-8: a%FFb"
    );
}

#[test]
fn the_test_event_s3_sends_is_skipped() {
    let mapped = map(&s3_test_event());
    assert!(mapped.work.is_empty() && mapped.unreadable.is_empty());
    assert_eq!(skipped_inputs(&mapped), ["s3:TestEvent"]);
    assert!(mapped.skipped[0].reason.contains("no object to process"));
}

#[test]
fn an_eventbridge_object_created_event_is_an_object_with_a_decoded_key() {
    let mapped = map(&eventbridge("Object Created", "in", "dir/My+Film%2B1.mp4"));
    assert_eq!(
        objects(&mapped),
        [S3Input {
            bucket: "in".into(),
            key: "dir/My Film+1.mp4".into(),
            size: Some(5),
            etag: Some("b1946ac92492d2347c6235b4d2611184".into()),
            event_time: Some("2026-11-12T00:00:00Z".into()),
        }]
    );
    assert_eq!(mapped.sqs_messages, None);
}

#[test]
fn other_eventbridge_s3_events_are_skipped_with_their_type() {
    let mut deleted = eventbridge("Object Deleted", "in", "a.txt");
    deleted["detail"]["object"] = json!({"key": "a.txt", "sequencer": "617f08299329d189"});
    let mapped = map(&deleted);
    assert!(mapped.work.is_empty());
    assert_eq!(skipped_inputs(&mapped), ["s3://in/a.txt"]);
    assert!(
        mapped.skipped[0].reason.contains("\"Object Deleted\""),
        "{}",
        mapped.skipped[0].reason
    );
    let mut bucket_only = eventbridge("Object ACL Updated", "in", "a.txt");
    bucket_only["detail"]
        .as_object_mut()
        .unwrap()
        .remove("object");
    let mapped = map(&bucket_only);
    assert_eq!(
        skipped_inputs(&mapped),
        ["EventBridge \"Object ACL Updated\" event"]
    );
}

#[test]
fn an_eventbridge_object_created_event_without_a_key_is_unreadable() {
    let mut event = eventbridge("Object Created", "in", "a.txt");
    event["detail"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("key");
    let mapped = map(&event);
    assert!(mapped.work.is_empty());
    assert_eq!(mapped.unreadable.len(), 1);
    assert_eq!(mapped.unreadable[0].what, "the EventBridge event");
    assert_eq!(mapped.unreadable[0].reason, "it has no detail.object.key");
    event["detail"] = json!("nope");
    let mapped = map(&event);
    assert!(
        mapped.unreadable[0]
            .reason
            .starts_with("it does not have the shape S3 sends"),
        "{:?}",
        mapped.unreadable
    );
}

#[test]
fn the_output_guard_applies_to_eventbridge_events() {
    let mapped = map(&eventbridge("Object Created", "in", "output/x.txt"));
    assert_eq!(skipped_inputs(&mapped), ["s3://in/output/x.txt"]);
    let output = S3Location {
        bucket: "in".into(),
        key: String::new(),
    };
    let rules = EventRules {
        output: Some(&output),
        allow_invoke_script: false,
    };
    let event = eventbridge("Object Created", "in", "a.txt");
    let err = map_event(&payload(&event), rules).unwrap_err();
    assert!(err.is_config(), "{err}");
}

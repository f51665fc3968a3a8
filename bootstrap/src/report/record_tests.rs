//! The shape of records, the response and the SQS batch response; the summary of failures.

use super::*;

fn failed(input: &str, kind: FailureKind, message: &str) -> RecordResult {
    RecordResult::failed(
        Some(input.into()),
        None,
        Some(3),
        Vec::new(),
        Failure::new(kind, message),
    )
}

fn succeeded(input: &str, outputs: &[&str]) -> RecordResult {
    RecordResult::succeeded(
        Some(input.into()),
        None,
        Some(0),
        outputs.iter().map(|o| (*o).to_owned()).collect(),
    )
}

fn with_message(mut record: RecordResult, id: &str) -> RecordResult {
    record.message_id = Some(id.into());
    record
}

#[test]
fn a_succeeded_record_has_no_error_fields_and_no_message_id_outside_sqs() {
    let json = serde_json::to_string(&succeeded("s3://b/k", &["s3://b/output/k"])).unwrap();
    assert_eq!(
        json,
        r#"{"input":"s3://b/k","status":"succeeded","exitCode":0,"outputs":["s3://b/output/k"]}"#
    );
}

#[test]
fn a_failed_record_carries_its_message_id_and_flattened_error() {
    let record = with_message(
        failed("s3://b/k", FailureKind::ScriptFailed, "exit 3"),
        "m-1",
    );
    assert_eq!(
        serde_json::to_string(&record).unwrap(),
        r#"{"input":"s3://b/k","messageId":"m-1","status":"failed","exitCode":3,"outputs":[],"errorType":"Scar.ScriptFailed","errorMessage":"exit 3"}"#
    );
    let unread = RecordResult::failed(
        None,
        None,
        None,
        Vec::new(),
        Failure::new(FailureKind::Input, "record 2: missing field `s3`"),
    );
    let value = serde_json::to_value(&unread).unwrap();
    assert!(value["input"].is_null() && value["exitCode"].is_null());
}

#[test]
fn the_response_fields_come_in_the_documented_order() {
    let mut response = Response::new("r1", "alpine:3.20");
    let json = serde_json::to_string(&response).unwrap();
    let order = [
        "requestId",
        "image",
        "engine",
        "exitCode",
        "durationMs",
        "inputs",
        "outputs",
        "skipped",
        "records",
        "stdout",
        "stderr",
        "unconfined",
        "phasesMs",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|f| {
            json.find(&format!("\"{f}\":"))
                .unwrap_or_else(|| panic!("{f} in {json}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{json}");
    assert!(!json.contains("batchItemFailures") && !json.contains("omitted"));

    response.batch_item_failures = Some(vec![BatchItemFailure {
        item_identifier: "m-1".into(),
    }]);
    response.skipped.push(SkippedEntry {
        input: "s3://b/dir/".into(),
        reason: "a folder marker".into(),
    });
    response.omitted = Some(Omitted::default());
    let json = serde_json::to_string(&response).unwrap();
    assert!(json.contains(
        r#""skipped":[{"input":"s3://b/dir/","reason":"a folder marker"}],"records":[],"batchItemFailures":[{"itemIdentifier":"m-1"}],"stdout""#
    ), "{json}");
    assert!(
        json.ends_with(r#","omitted":{"inputs":0,"outputs":0,"skipped":0,"records":0}}"#),
        "{json}"
    );
}

#[test]
fn failed_records_lists_only_the_failures_in_order() {
    let mut response = Response::new("r1", "i");
    response.records = vec![
        failed("s3://b/1", FailureKind::ScriptFailed, "x"),
        succeeded("s3://b/2", &[]),
        failed("s3://b/3", FailureKind::Timeout, "y"),
    ];
    let inputs: Vec<_> = response
        .failed_records()
        .map(|r| r.input.as_deref().unwrap())
        .collect();
    assert_eq!(inputs, ["s3://b/1", "s3://b/3"]);
}

#[test]
fn no_summary_failure_when_every_record_succeeded() {
    assert_eq!(summary_failure(&[]), None);
    assert_eq!(summary_failure(&[succeeded("s3://b/k", &[])]), None);
}

#[test]
fn a_single_failed_record_is_the_invocation_failure_unchanged() {
    let record = failed("s3://b/k", FailureKind::Output, "upload refused");
    assert_eq!(
        summary_failure(&[record]),
        Some(Failure::new(FailureKind::Output, "upload refused"))
    );
}

#[test]
fn the_summary_names_failures_first_then_what_succeeded() {
    let records = [
        succeeded("s3://b/k0", &["s3://b/output/k0.a", "s3://b/output/k0.b"]),
        failed("s3://b/k1", FailureKind::Timeout, "stopped at the deadline"),
        succeeded("s3://b/k2", &[]),
        failed("s3://b/k3", FailureKind::ScriptFailed, "exit 3"),
        with_message(
            RecordResult::failed(
                None,
                None,
                None,
                Vec::new(),
                Failure::new(
                    FailureKind::Input,
                    "SQS message m-9 cannot be read: not an S3 notification",
                ),
            ),
            "m-9",
        ),
    ];
    let failure = summary_failure(&records).unwrap();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert_eq!(
        failure.message,
        "3 of 5 records failed: s3://b/k1: stopped at the deadline; s3://b/k3: exit 3; \
         SQS message m-9 cannot be read: not an S3 notification; succeeded: s3://b/k0 (outputs: \
         s3://b/output/k0.a, s3://b/output/k0.b), s3://b/k2 (no outputs)"
    );
}

#[test]
fn a_record_without_input_is_named_by_its_message_alone() {
    let records = [
        succeeded("s3://b/k", &[]),
        RecordResult::failed(
            None,
            None,
            None,
            Vec::new(),
            Failure::new(
                FailureKind::Input,
                "record 1 cannot be read: no s3.object.key",
            ),
        ),
    ];
    let failure = summary_failure(&records).unwrap();
    assert_eq!(
        failure.message,
        "1 of 2 records failed: record 1 cannot be read: no s3.object.key; succeeded: s3://b/k \
         (no outputs)"
    );
    let unnamed = RecordResult::succeeded(None, Some("m-2".into()), Some(0), Vec::new());
    assert_eq!(unnamed.label(0), "SQS message m-2");
    let unnamed = RecordResult {
        message_id: None,
        ..unnamed
    };
    assert_eq!(unnamed.label(4), "record 5");
}

#[test]
fn batch_item_failures_list_each_failing_message_once_in_batch_order() {
    let all: Vec<String> = ["m1", "m2", "m3", "m4", "m5"].map(String::from).to_vec();
    let records = [
        with_message(failed("s3://b/a", FailureKind::ScriptFailed, "x"), "m4"),
        with_message(succeeded("s3://b/b", &[]), "m1"),
        with_message(failed("s3://b/c", FailureKind::ScriptFailed, "x"), "m2"),
        with_message(failed("s3://b/d", FailureKind::Timeout, "x"), "m4"),
        with_message(succeeded("s3://b/e", &[]), "m5"),
    ];
    let failures = batch_item_failures(&records, ["m3", "m2"], &all);
    let ids: Vec<&str> = failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(ids, ["m2", "m3", "m4"]);
}

#[test]
fn a_failing_message_missing_from_the_batch_list_is_still_reported() {
    let all = vec!["m1".to_owned()];
    let records = [with_message(
        failed("s3://b/a", FailureKind::ScriptFailed, "x"),
        "m7",
    )];
    let failures = batch_item_failures(&records, ["m1"], &all);
    let ids: Vec<&str> = failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(ids, ["m1", "m7"]);
    assert!(batch_item_failures(&[], [], &all).is_empty());
}

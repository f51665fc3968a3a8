//! Keeping responses and error reports under the payload limit.

use std::time::Instant;

use super::*;
use crate::runtime::ErrorReport;

fn key(i: usize) -> String {
    // 100-byte keys: a 10-digit counter padded with a fixed tail.
    format!("s3://scar-out/{:0>10}{}", i, "k".repeat(90))
}

fn outputs(count: usize) -> Vec<String> {
    (0..count).map(key).collect()
}

fn parse(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("the body is valid JSON")
}

fn count(value: &serde_json::Value, field: &str) -> usize {
    value[field].as_array().map_or(0, Vec::len)
}

fn omitted(value: &serde_json::Value, field: &str) -> usize {
    value["omitted"][field].as_u64().unwrap() as usize
}

fn sqs_record(i: usize, outputs: Vec<String>) -> RecordResult {
    RecordResult::failed(
        Some(format!("s3://scar-in/{}", "d".repeat(900) + &i.to_string())),
        Some(format!("059f36b4-87a3-44ab-83d2-{i:012}")),
        Some(1),
        outputs,
        Failure::new(FailureKind::ScriptFailed, "the script exited with status 1"),
    )
}

#[test]
fn a_response_under_the_limit_is_serde_json_byte_for_byte() {
    let mut response = Response::new("r1", "alpine:3.20");
    response.inputs = vec!["s3://b/in/a \"quoted\"\n.txt".into()];
    response.outputs = outputs(1000);
    response.records = vec![sqs_record(1, outputs(10))];
    response.skipped = vec![SkippedEntry {
        input: "s3://b/in/dir/".into(),
        reason: "a folder marker (the key ends in /), not an object".into(),
    }];
    response.batch_item_failures = Some(vec![BatchItemFailure {
        item_identifier: "m1".into(),
    }]);
    response.stdout = "é😀\u{1}\t".repeat(100);
    let expected = serde_json::to_vec(&response).unwrap();
    assert_eq!(encode_response(&response, MAX_PAYLOAD), expected);
    assert_eq!(encode_response(&response, expected.len()), expected);
    assert_ne!(encode_response(&response, expected.len() - 1), expected);
}

#[test]
fn two_hundred_thousand_outputs_are_cut_under_the_limit_and_counted() {
    let mut response = Response::new("r1", "alpine:3.20");
    response.inputs = vec!["s3://scar-in/big.tar".into()];
    response.outputs = outputs(200_000);
    let started = Instant::now();
    let body = encode_response(&response, MAX_PAYLOAD);
    let elapsed = started.elapsed();
    println!(
        "encode_response: 200,000 outputs ({} bytes) cut to {} bytes in {:.1} ms",
        serde_json::to_vec(&response).unwrap().len(),
        body.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    assert!(body.len() <= MAX_PAYLOAD, "{} bytes", body.len());
    let value = parse(&body);
    let kept = count(&value, "outputs");
    assert!(kept > 40_000, "only {kept} outputs kept");
    assert_eq!(omitted(&value, "outputs") + kept, 200_000);
    assert_eq!(omitted(&value, "inputs"), 0);
    assert_eq!(count(&value, "inputs"), 1, "a short list is kept whole");
    let kept_urls: Vec<&str> = value["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        kept_urls,
        response.outputs[..kept],
        "the start of the list is kept"
    );
    // Nearly all the room is used: the cut is not needlessly deep.
    assert!(body.len() > MAX_PAYLOAD - 1024, "{} bytes", body.len());
}

#[test]
fn the_outputs_of_records_are_cut_with_the_response_outputs() {
    let mut response = Response::new("r1", "alpine:3.20");
    response.outputs = outputs(100_000);
    response.records = vec![RecordResult::succeeded(
        Some("s3://scar-in/big.tar".into()),
        None,
        Some(0),
        outputs(100_000),
    )];
    let body = encode_response(&response, MAX_PAYLOAD);
    assert!(body.len() <= MAX_PAYLOAD);
    let value = parse(&body);
    let kept_top = count(&value, "outputs");
    let kept_record = count(&value["records"][0], "outputs");
    assert_eq!(omitted(&value, "outputs") + kept_top + kept_record, 200_000);
    assert!(
        kept_top.abs_diff(kept_record) <= 1,
        "{kept_top} vs {kept_record}"
    );
    assert_eq!(value["records"][0]["status"], "succeeded");
}

#[test]
fn records_are_cut_when_their_own_fields_pass_the_limit() {
    let mut response = Response::new("r1", "alpine:3.20");
    let records: Vec<RecordResult> = (0..10_000).map(|i| sqs_record(i, outputs(3))).collect();
    let failures: Vec<BatchItemFailure> = records
        .iter()
        .map(|r| BatchItemFailure {
            item_identifier: r.message_id.clone().unwrap(),
        })
        .collect();
    response.records = records;
    response.batch_item_failures = Some(failures.clone());
    response.outputs = outputs(30_000);
    let body = encode_response(&response, MAX_PAYLOAD);
    assert!(body.len() <= MAX_PAYLOAD, "{} bytes", body.len());
    let value = parse(&body);
    let kept = count(&value, "records");
    assert!(kept > 1000, "only {kept} records kept");
    assert_eq!(omitted(&value, "records") + kept, 10_000);
    assert!(
        body.len() > MAX_PAYLOAD - 2048,
        "cut deeper than one record"
    );
    assert_eq!(count(&value, "outputs"), 0);
    assert_eq!(omitted(&value, "outputs"), 30_000 + kept * 3);
    let listed: Vec<BatchItemFailure> = value["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| BatchItemFailure {
            item_identifier: f["itemIdentifier"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(listed, failures, "batchItemFailures is never cut");
    assert_eq!(
        value["records"][0]["messageId"],
        failures[0].item_identifier
    );
}

#[test]
fn batch_item_failures_stay_whole_while_outputs_are_cut() {
    let mut response = Response::new("r1", "alpine:3.20");
    let ids: Vec<BatchItemFailure> = (0..10_000)
        .map(|i| BatchItemFailure {
            item_identifier: format!("059f36b4-87a3-44ab-83d2-{i:012}"),
        })
        .collect();
    response.batch_item_failures = Some(ids.clone());
    response.outputs = outputs(200_000);
    let body = encode_response(&response, MAX_PAYLOAD);
    assert!(body.len() <= MAX_PAYLOAD);
    let value = parse(&body);
    assert_eq!(count(&value, "batchItemFailures"), 10_000);
    assert_eq!(
        value["batchItemFailures"][9_999]["itemIdentifier"],
        ids[9_999].item_identifier
    );
    assert_eq!(
        omitted(&value, "outputs") + count(&value, "outputs"),
        200_000
    );
}

#[test]
fn long_record_messages_are_cut_and_every_record_kept() {
    let mut response = Response::new("r1", "alpine:3.20");
    response.records = (0..20)
        .map(|i| {
            RecordResult::failed(
                Some(format!("s3://scar-in/{i}")),
                None,
                Some(1),
                Vec::new(),
                Failure::new(FailureKind::Output, "x".repeat(1_000_000)),
            )
        })
        .collect();
    let body = encode_response(&response, MAX_PAYLOAD);
    assert!(body.len() <= MAX_PAYLOAD);
    let value = parse(&body);
    assert_eq!(count(&value, "records"), 20);
    assert_eq!(omitted(&value, "records"), 0);
    for record in value["records"].as_array().unwrap() {
        let message = record["errorMessage"].as_str().unwrap();
        assert!(
            message.starts_with("xxx") && message.ends_with(" more bytes)"),
            "{message:.40}"
        );
        assert_eq!(record["errorType"], "Scar.OutputError");
    }
}

#[test]
fn a_body_too_big_without_its_lists_loses_its_output_tails_rather_than_the_limit() {
    let mut response = Response::new("r1", "alpine:3.20");
    response.stdout = "o".repeat(64 * 1024);
    response.stderr = "e".repeat(64 * 1024);
    response.outputs = outputs(10);
    response.records = vec![sqs_record(0, outputs(1))];
    let limit = 16 * 1024;
    let body = encode_response(&response, limit);
    assert!(body.len() <= limit, "{} bytes", body.len());
    let value = parse(&body);
    assert_eq!(
        omitted(&value, "outputs"),
        10,
        "a cut record's outputs go with it"
    );
    assert_eq!(omitted(&value, "records"), 1);
    assert_eq!(value["stdout"], "… (65536 more bytes)");
    assert_eq!(value["requestId"], "r1");
}

#[test]
fn counts_already_omitted_are_added_to() {
    let mut response = Response::new("r1", "i");
    response.outputs = outputs(100_000);
    response.omitted = Some(Omitted {
        outputs: 7,
        ..Omitted::default()
    });
    let value = parse(&encode_response(&response, MAX_PAYLOAD));
    assert_eq!(
        omitted(&value, "outputs") + count(&value, "outputs"),
        100_007
    );
}

#[test]
fn a_ten_megabyte_error_message_is_cut_with_the_bytes_dropped() {
    let message = "y".repeat(10 * 1024 * 1024);
    let report = ErrorReport {
        error_type: "Scar.ScriptFailed".into(),
        error_message: message.clone(),
    };
    let capped = cap_error(report, MAX_PAYLOAD);
    let size = serde_json::to_vec(&capped).unwrap().len();
    assert!(
        size <= MAX_PAYLOAD && size > MAX_PAYLOAD - 64,
        "{size} bytes"
    );
    assert_eq!(capped.error_type, "Scar.ScriptFailed");
    let (kept, suffix) = capped.error_message.split_once('…').unwrap();
    assert!(message.starts_with(kept));
    assert_eq!(
        suffix,
        format!(" ({} more bytes)", message.len() - kept.len())
    );

    let small = ErrorReport {
        error_type: "Scar.Timeout".into(),
        error_message: "late".into(),
    };
    assert_eq!(cap_error(small.clone(), MAX_PAYLOAD), small);
}

#[test]
fn cutting_keeps_utf8_whole_and_escapes_counted() {
    let mut samples: Vec<String> = (0u32..0x80)
        .filter_map(char::from_u32)
        .map(|c| c.to_string().repeat(40))
        .collect();
    samples.push("é€😀".repeat(40));
    samples.push("a\u{7f}\u{2028}\u{fffd}\u{0}\"\\".repeat(40));
    for text in &samples {
        let full = serde_json::to_vec(text).unwrap().len();
        for budget in [
            0,
            10,
            25,
            26,
            27,
            28,
            29,
            30,
            31,
            47,
            64,
            100,
            full - 1,
            full,
        ] {
            let cut = cut_message(text, budget);
            let size = serde_json::to_vec(&cut).unwrap().len();
            if budget >= full {
                assert_eq!(&cut, text);
                continue;
            }
            let (kept, suffix) = cut.rsplit_once('…').unwrap();
            assert!(
                text.starts_with(kept),
                "{kept:?} is not a start of {text:?}"
            );
            assert_eq!(suffix, format!(" ({} more bytes)", text.len() - kept.len()));
            let least = serde_json::to_vec(&format!("… ({} more bytes)", text.len()))
                .unwrap()
                .len();
            assert!(
                size <= budget.max(least),
                "{text:?} at {budget}: {size} bytes"
            );
        }
    }
}

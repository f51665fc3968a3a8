//! End to end, the runtime contract of issue #19: every record of an event runs and is
//! reported, every event shape users put in front of a function (S3 with only the fields the
//! bootstrap needs, SQS, SNS, SNS through SQS, EventBridge) reaches the script the same way,
//! folder markers, deletions and test events are skipped with a reason, over-long basenames are
//! staged under a short name, an output location that swallows its own bucket is a config
//! error, and answers stay under Lambda's 6 MB payload limit.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap contract::` (as `bootstrap.rs`).

use sha2::{Digest, Sha256};

use crate::bootstrap_support::{
    BUCKET, COPY_SCRIPT, Function, eventbridge_s3_event, minimal_s3_record, outputs, records,
    s3_event, s3_record, s3_test_event, skipped, sns_event, sns_notification_body, sqs_event,
    sqs_message,
};

/// Lambda's limit on a response or error payload.
const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// Fails on any key holding "bad" (exit 3), else copies the input to the output directory.
const FAIL_ON_BAD_SCRIPT: &str = "case \"$STORAGE_OBJECT_KEY\" in *bad*) echo \"refusing $STORAGE_OBJECT_KEY\" >&2; exit 3;; esac
cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"";

/// Writes a marker output, so a test can tell that the script ran.
const MARK_SCRIPT: &str = "echo ran > \"$SCAR_OUTPUT_DIR/ran.txt\"";

/// The record of `body` whose `field` is `value`.
fn record_where<'a>(
    body: &'a serde_json::Value,
    field: &str,
    value: &str,
) -> &'a serde_json::Value {
    records(body)
        .iter()
        .find(|r| r[field] == value)
        .unwrap_or_else(|| panic!("no record with {field} {value} in {body}"))
}

#[test]
fn a_folder_marker_is_skipped_with_its_reason_and_the_object_beside_it_runs() {
    let function = Function::spec().env("SCAR_SCRIPT", COPY_SCRIPT).start();
    // What the S3 console's "Create folder" stores: an empty object whose key ends in `/`.
    function.s3.put_object(BUCKET, "input/new/", b"");
    function.s3.put_object(BUCKET, "input/photo.txt", b"photo");
    let result = function.invoke_s3(&["input/new/", "input/photo.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let body = &result.body;
    assert_eq!(outputs(body), ["s3://scar-in/output/photo.txt"]);
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/photo.txt")
            .as_deref(),
        Some(&b"photo"[..])
    );
    let skipped = skipped(body);
    assert_eq!(skipped.len(), 1, "{body}");
    assert_eq!(skipped[0]["input"], "s3://scar-in/input/new/", "{body}");
    let reason = skipped[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("folder"), "{body}");
    let records = records(body);
    assert_eq!(records.len(), 1, "{body}");
    assert_eq!(
        records[0]["input"], "s3://scar-in/input/photo.txt",
        "{body}"
    );
    assert_eq!(records[0]["status"], "succeeded", "{body}");
}

/// Writes what the container saw of its input to four outputs.
const STAGING_SCRIPT: &str = "basename \"$SCAR_INPUT_FILE\" > \"$SCAR_OUTPUT_DIR/staged.txt\"
printf %s \"$SCAR_INPUT_KEY\" > \"$SCAR_OUTPUT_DIR/input-key.txt\"
printf %s \"$STORAGE_OBJECT_KEY\" > \"$SCAR_OUTPUT_DIR/object-key.txt\"
cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/content.bin\"";

/// Put `key`, invoke with its event, check the container got the full key and the content,
/// and return the name the input was staged under.
fn staged_name(function: &Function, key: &str, content: &[u8]) -> String {
    function.s3.put_object(BUCKET, key, content);
    let result = function.invoke_s3(&[key]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let output = |name: &str| {
        function
            .s3
            .get_object(BUCKET, &format!("output/{name}"))
            .unwrap_or_else(|| panic!("no output/{name}: {}", result.body))
    };
    assert_eq!(output("input-key.txt"), key.as_bytes(), "SCAR_INPUT_KEY");
    assert_eq!(
        output("object-key.txt"),
        key.as_bytes(),
        "STORAGE_OBJECT_KEY"
    );
    assert_eq!(output("content.bin"), content);
    let staged = String::from_utf8(output("staged.txt")).expect("the staged name is UTF-8");
    staged.trim_end_matches('\n').to_owned()
}

/// Check `staged` is the short form of `key`'s basename: `<start of the stem>~<16 hex of
/// sha256(key)>.txt`, at most 255 bytes.
fn assert_shortened(key: &str, staged: &str) {
    let basename = key.rsplit('/').next().unwrap_or(key);
    assert!(basename.len() > 255, "the test key is not long enough");
    assert!(staged.len() <= 255, "{} bytes: {staged}", staged.len());
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let tail = format!("~{}.txt", &hash[..16]);
    let stem = staged
        .strip_suffix(&tail)
        .unwrap_or_else(|| panic!("{staged} does not end with {tail}"));
    assert!(!stem.is_empty(), "{staged}");
    assert!(
        basename.starts_with(stem),
        "{stem} does not start {basename}"
    );
}

#[test]
fn an_over_long_basename_is_staged_under_a_short_unique_name_that_keeps_its_extension() {
    let function = Function::spec().env("SCAR_SCRIPT", STAGING_SCRIPT).start();
    // S3 allows keys of 1,024 bytes; a file name has at most 255.
    let ascii = format!("long/{}.txt", "a".repeat(296));
    let staged_ascii = staged_name(&function, &ascii, b"first");
    assert_shortened(&ascii, &staged_ascii);
    // Differs from the first only past the cut: the staged names must still differ.
    let sibling = format!("long/{}b.txt", "a".repeat(295));
    let staged_sibling = staged_name(&function, &sibling, b"second");
    assert_shortened(&sibling, &staged_sibling);
    assert_ne!(staged_ascii, staged_sibling);
    // Two-byte characters: the cut falls on a character boundary (the name is read as UTF-8).
    let multibyte = format!("long/été-{}.txt", "é".repeat(145));
    let staged_multibyte = staged_name(&function, &multibyte, b"third");
    assert_shortened(&multibyte, &staged_multibyte);
    // A basename that fits is staged as it is.
    assert_eq!(staged_name(&function, "long/short.txt", b"x"), "short.txt");
}

#[test]
fn an_output_location_that_swallows_its_own_bucket_is_a_config_error_naming_scar_output() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", MARK_SCRIPT)
        .env("SCAR_OUTPUT", "s3://scar-in")
        .start();
    function.s3.put_object(BUCKET, "a.txt", b"a");
    let result = function.invoke_s3(&["a.txt"]);
    let message = function.expect_error(&result, "Scar.ConfigError");
    assert!(message.contains("SCAR_OUTPUT"), "{message}");
    assert_eq!(
        function.s3.list_keys(BUCKET, ""),
        ["a.txt"],
        "something ran"
    );
}

#[test]
fn every_record_runs_when_one_fails_and_a_retry_rewrites_the_same_output_keys() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", FAIL_ON_BAD_SCRIPT)
        .start();
    for (key, body) in [
        ("batch/one.txt", &b"1"[..]),
        ("batch/bad.txt", b"2"),
        ("batch/three.txt", b"3"),
    ] {
        function.s3.put_object(BUCKET, key, body);
    }
    let keys = ["batch/one.txt", "batch/bad.txt", "batch/three.txt"];
    let first = function.invoke_s3(&keys);
    let message = function.expect_error(&first, "Scar.ScriptFailed");
    assert!(message.contains("1 of 3 records failed"), "{message}");
    assert!(message.contains("s3://scar-in/batch/bad.txt"), "{message}");
    assert!(
        message.contains("s3://scar-in/batch/three.txt"),
        "{message}"
    );
    assert_eq!(
        function.s3.list_keys(BUCKET, "output/"),
        ["output/one.txt", "output/three.txt"]
    );
    // Lambda retries the whole event: stale outputs are overwritten under the same keys.
    function.s3.put_object(BUCKET, "output/one.txt", b"stale");
    let retry = function.invoke_s3(&keys);
    let again = function.expect_error(&retry, "Scar.ScriptFailed");
    assert!(again.contains("1 of 3 records failed"), "{again}");
    assert_eq!(
        function.s3.get_object(BUCKET, "output/one.txt").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/three.txt")
            .as_deref(),
        Some(&b"3"[..])
    );
    assert_eq!(
        function.s3.list_keys(BUCKET, "output/"),
        ["output/one.txt", "output/three.txt"]
    );
}

/// Outputs of the many-outputs test: uploads to the local server take ~2.5 ms each (debug
/// builds), so few enough to stay under a minute, with long keys instead (two 240-byte folders
/// and a 239-byte name: ~740-byte URLs). One list of them is ~6.7 MB, over Lambda's limit by
/// itself; the uncut response (every URL in `outputs` and in the record's `outputs`) ~13 MB.
const MANY_OUTPUTS: usize = 9_000;

/// Writes [`MANY_OUTPUTS`] empty files under long names; fails (exit 1) on a key holding
/// "fail", after writing them.
fn many_outputs_script() -> String {
    let folder = "x".repeat(240);
    format!(
        "dir=\"$SCAR_OUTPUT_DIR/{folder}/{folder}\"
mkdir -p \"$dir\" && cd \"$dir\" && seq -w 1 {MANY_OUTPUTS} | sed 's/^/{}-/; s/$/.txt/' | xargs touch
case \"$STORAGE_OBJECT_KEY\" in *fail*) exit 1;; esac",
        "y".repeat(230)
    )
}

/// The response's top-level fields, in the order the interface gives them.
const RESPONSE_FIELDS: &[&str] = &[
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
    "omitted",
];

/// Check the fields of the response `text` come in [`RESPONSE_FIELDS`]' order. The first
/// occurrence of each name is the top-level one: those a record also has (`exitCode`,
/// `outputs`) come before `records`.
fn assert_top_level_order(text: &str) {
    let at: Vec<usize> = RESPONSE_FIELDS
        .iter()
        .map(|field| {
            text.find(&format!("\"{field}\":"))
                .unwrap_or_else(|| panic!("no {field} in the response"))
        })
        .collect();
    assert!(
        at.windows(2).all(|pair| pair[0] < pair[1]),
        "fields out of order: {:?}",
        RESPONSE_FIELDS.iter().zip(&at).collect::<Vec<_>>()
    );
}

#[test]
fn a_response_and_an_error_listing_thousands_of_outputs_stay_under_6_mb() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", &many_outputs_script())
        .start();
    function.s3.put_object(BUCKET, "many.txt", b"m");
    let started = std::time::Instant::now();
    let (status, text) = function.invoke_raw(&s3_event(vec![s3_record(BUCKET, "many.txt", 1)]));
    println!(
        "{MANY_OUTPUTS} outputs: {:.1} s, response {} bytes",
        started.elapsed().as_secs_f64(),
        text.len()
    );
    assert_eq!(
        status,
        200,
        "{}\n{}",
        &text[..text.len().min(4096)],
        function.log()
    );
    assert!(text.len() <= LAMBDA_PAYLOAD_LIMIT, "{} bytes", text.len());
    let body: serde_json::Value = serde_json::from_str(&text).expect("the response is JSON");
    assert_top_level_order(&text);
    let omitted = &body["omitted"];
    let omitted_outputs = omitted["outputs"].as_u64().unwrap_or(0) as usize;
    assert!(omitted_outputs > 0, "{omitted}");
    assert_eq!(omitted["records"], 0, "{omitted}");
    // `omitted.outputs` counts the URLs cut from `outputs` and from the records' `outputs`.
    let kept = outputs(&body).len()
        + records(&body)
            .iter()
            .map(|r| r["outputs"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
    assert_eq!(kept + omitted_outputs, 2 * MANY_OUTPUTS, "{omitted}");
    let stored = function.s3.list_keys(BUCKET, "output/");
    assert_eq!(stored.len(), MANY_OUTPUTS);

    function.s3.put_object(BUCKET, "fail.txt", b"f");
    let (status, text) = function.invoke_raw(&s3_event(vec![s3_record(BUCKET, "fail.txt", 1)]));
    assert_ne!(status, 200, "{}", &text[..text.len().min(4096)]);
    assert!(text.len() <= LAMBDA_PAYLOAD_LIMIT, "{} bytes", text.len());
    let error: serde_json::Value = serde_json::from_str(&text).expect("the error is JSON");
    assert_eq!(
        error["errorType"],
        "Scar.ScriptFailed",
        "{}",
        &text[..text.len().min(4096)]
    );
}

#[test]
fn a_record_with_only_the_bucket_and_the_key_is_processed() {
    let function = Function::spec().env("SCAR_SCRIPT", COPY_SCRIPT).start();
    function
        .s3
        .put_object(BUCKET, "bare/plain copy.txt", b"bare");
    let event = s3_event(vec![minimal_s3_record(BUCKET, "bare/plain copy.txt")]);
    let result = function.invoke(&event);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        outputs(&result.body),
        ["s3://scar-in/output/plain copy.txt"]
    );
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/plain copy.txt")
            .as_deref(),
        Some(&b"bare"[..])
    );
}

#[test]
fn an_sqs_batch_reports_exactly_the_failed_messages_in_batch_item_failures() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", FAIL_ON_BAD_SCRIPT)
        .start();
    function.s3.put_object(BUCKET, "sqs/good.txt", b"good");
    function.s3.put_object(BUCKET, "sqs/bad.txt", b"bad");
    let ids = [
        "059f36b4-87a3-44ab-83d2-661975830a7d",
        "2e1424d4-f796-459a-8184-9c92662be6da",
        "3c4e2a1f-0b6d-4c59-9a61-6f1e0d2b7c88",
    ];
    let good = s3_event(vec![s3_record(BUCKET, "sqs/good.txt", 4)]).to_string();
    let bad = s3_event(vec![s3_record(BUCKET, "sqs/bad.txt", 3)]).to_string();
    let event = sqs_event(vec![
        sqs_message(ids[0], &good),
        sqs_message(ids[1], &bad),
        sqs_message(ids[2], "resize photo 42 please"),
    ]);
    let result = function.invoke(&event);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let body = &result.body;
    assert_eq!(
        body["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": ids[1]}, {"itemIdentifier": ids[2]}]),
        "{body}"
    );
    assert_eq!(
        function.s3.get_object(BUCKET, "output/good.txt").as_deref(),
        Some(&b"good"[..])
    );
    assert_eq!(function.s3.get_object(BUCKET, "output/bad.txt"), None);

    // One record per message, in the batch's order (the unreadable one included).
    let order: Vec<&serde_json::Value> = records(body).iter().map(|r| &r["messageId"]).collect();
    assert_eq!(order, ids, "{body}");
    let succeeded = record_where(body, "messageId", ids[0]);
    assert_eq!(succeeded["status"], "succeeded", "{body}");
    assert_eq!(succeeded["input"], "s3://scar-in/sqs/good.txt", "{body}");
    assert_eq!(
        succeeded["outputs"],
        serde_json::json!(["s3://scar-in/output/good.txt"])
    );
    let failed = record_where(body, "messageId", ids[1]);
    assert_eq!(failed["status"], "failed", "{body}");
    assert_eq!(failed["input"], "s3://scar-in/sqs/bad.txt", "{body}");
    assert_eq!(failed["errorType"], "Scar.ScriptFailed", "{body}");
    assert_eq!(failed["exitCode"], 3, "{body}");
    let unreadable = record_where(body, "messageId", ids[2]);
    assert_eq!(unreadable["status"], "failed", "{body}");
    assert_eq!(unreadable["errorType"], "Scar.InputError", "{body}");
    assert!(unreadable["input"].is_null(), "{body}");
    let why = unreadable["errorMessage"].as_str().unwrap_or_default();
    assert!(why.contains(ids[2]) && why.contains("JSON"), "{body}");
}

/// Writes what the container saw of its input to `output/env.txt`.
const ENV_SCRIPT: &str = "{ printf 'key=%s\\nbucket=%s\\ninput_key=%s\\nfile=' \"$STORAGE_OBJECT_KEY\" \"$SCAR_INPUT_BUCKET\" \"$SCAR_INPUT_KEY\"
basename \"$SCAR_INPUT_FILE\"
cat \"$SCAR_INPUT_FILE\"; } > \"$SCAR_OUTPUT_DIR/env.txt\"";

#[test]
fn sns_sns_through_sqs_and_eventbridge_events_reach_the_script_as_the_s3_event_does() {
    let function = Function::spec().env("SCAR_SCRIPT", ENV_SCRIPT).start();
    let key = "shapes/photo-1.txt";
    function.s3.put_object(BUCKET, key, b"photo-bytes\n");
    let expected =
        format!("key={key}\nbucket=scar-in\ninput_key={key}\nfile=photo-1.txt\nphoto-bytes\n");
    let notification = s3_event(vec![s3_record(BUCKET, key, 12)]);
    let shapes = [
        ("S3", notification.clone()),
        ("SNS", sns_event(&notification)),
        (
            "SNS through SQS",
            sqs_event(vec![sqs_message(
                "7b3c9d2e-1f4a-4e8b-9c6d-5a2f0e1b3c4d",
                &sns_notification_body(&notification),
            )]),
        ),
        (
            "EventBridge",
            eventbridge_s3_event("Object Created", BUCKET, key, 12),
        ),
    ];
    let env_file = function.s3.root().join(BUCKET).join("output/env.txt");
    for (shape, event) in shapes {
        // s3s-fs keeps each object as a plain file: remove the last run's output.
        let _ = std::fs::remove_file(&env_file);
        let result = function.invoke(&event);
        assert_eq!(
            result.status,
            200,
            "{shape}: {}\n{}",
            result.body,
            function.log()
        );
        let body = &result.body;
        assert_eq!(outputs(body), ["s3://scar-in/output/env.txt"], "{shape}");
        assert_eq!(
            body["inputs"],
            serde_json::json!([format!("s3://scar-in/{key}")]),
            "{shape}"
        );
        let seen = function
            .s3
            .get_object(BUCKET, "output/env.txt")
            .unwrap_or_else(|| panic!("{shape}: no output/env.txt"));
        assert_eq!(String::from_utf8_lossy(&seen), expected, "{shape}");
        if shape == "SNS through SQS" {
            assert_eq!(body["batchItemFailures"], serde_json::json!([]), "{body}");
        }
    }
}

#[test]
fn the_s3_test_event_and_deletions_are_skipped_with_their_reason_and_nothing_runs() {
    let function = Function::spec().env("SCAR_SCRIPT", MARK_SCRIPT).start();
    let result = function.invoke(&s3_test_event(BUCKET));
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let body = &result.body;
    assert!(body["exitCode"].is_null(), "{body}");
    assert_eq!(records(body).len(), 0, "{body}");
    let entries = skipped(body);
    assert_eq!(entries.len(), 1, "{body}");
    assert!(
        entries[0]["input"]
            .as_str()
            .is_some_and(|i| i.contains("s3:TestEvent")),
        "{body}"
    );
    assert!(
        !entries[0]["reason"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );

    let mut deleted = s3_record(BUCKET, "gone.txt", 0);
    deleted["eventName"] = "ObjectRemoved:Delete".into();
    // A deletion's object has no size and no eTag.
    let object = deleted["s3"]["object"].as_object_mut().expect("object");
    object.remove("size");
    object.remove("eTag");
    let result = function.invoke(&s3_event(vec![deleted]));
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let body = &result.body;
    assert!(body["exitCode"].is_null(), "{body}");
    assert_eq!(records(body).len(), 0, "{body}");
    let entries = skipped(body);
    assert_eq!(entries.len(), 1, "{body}");
    assert_eq!(entries[0]["input"], "s3://scar-in/gone.txt", "{body}");
    assert!(
        entries[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("deleted")),
        "{body}"
    );

    // The same deletion through EventBridge: another detail-type than "Object Created".
    let mut deleted = eventbridge_s3_event("Object Deleted", BUCKET, "gone.txt", 0);
    deleted["detail"]["object"] =
        serde_json::json!({"key": "gone.txt", "sequencer": "00617F08299329D189"});
    let result = function.invoke(&deleted);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let body = &result.body;
    assert_eq!(records(body).len(), 0, "{body}");
    let entries = skipped(body);
    assert_eq!(entries.len(), 1, "{body}");
    assert_eq!(entries[0]["input"], "s3://scar-in/gone.txt", "{body}");
    assert!(
        entries[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Object Deleted")),
        "{body}"
    );
    assert_eq!(function.s3.list_keys(BUCKET, ""), Vec::<String>::new());
}

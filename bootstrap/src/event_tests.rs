use super::fixtures::*;
use super::*;
use crate::config::S3Location;

fn map(value: &serde_json::Value) -> MappedEvent {
    map_event(&payload(value), RULES).unwrap()
}

#[test]
fn an_s3_record_becomes_an_input_with_a_decoded_key() {
    let mapped = map(&notification(vec![record(
        "in",
        "videos/My+Film+%C3%A9t%C3%A9%2B1.mp4",
    )]));
    assert_eq!(
        objects(&mapped),
        [S3Input {
            bucket: "in".into(),
            key: "videos/My Film été+1.mp4".into(),
            size: Some(1024),
            etag: Some("0123456789abcdef".into()),
            event_time: Some("2026-11-27T15:00:00.000Z".into()),
        }]
    );
    assert_eq!(mapped.work[0].message_id, None);
    assert!(mapped.skipped.is_empty() && mapped.unreadable.is_empty());
    assert_eq!(mapped.sqs_messages, None);
}

#[test]
fn several_records_become_several_inputs_in_order() {
    let mapped = map(&notification(vec![
        record("in", "a.txt"),
        record("other", "b.txt"),
    ]));
    assert_eq!(urls(&mapped), ["s3://in/a.txt", "s3://other/b.txt"]);
}

#[test]
fn keys_under_the_default_output_prefix_of_the_same_bucket_are_skipped() {
    let mapped = map(&notification(vec![
        record("in", "output/x.txt"),
        record("in", "outputs.txt"),
    ]));
    assert_eq!(skipped_inputs(&mapped), ["s3://in/output/x.txt"]);
    assert!(
        mapped.skipped[0]
            .reason
            .contains("under the output location s3://in/output/"),
        "{}",
        mapped.skipped[0].reason
    );
    assert_eq!(urls(&mapped), ["s3://in/outputs.txt"]);
}

#[test]
fn the_loop_guard_follows_scar_output_and_ignores_other_buckets() {
    let output = S3Location {
        bucket: "in".into(),
        key: "results".into(),
    };
    let rules = EventRules {
        output: Some(&output),
        allow_invoke_script: false,
    };
    let event = notification(vec![
        record("in", "results/a.txt"),
        record("in", "output/b.txt"),
        record("other", "results/c.txt"),
    ]);
    let mapped = map_event(&payload(&event), rules).unwrap();
    assert_eq!(skipped_inputs(&mapped), ["s3://in/results/a.txt"]);
    assert_eq!(
        urls(&mapped),
        ["s3://in/output/b.txt", "s3://other/results/c.txt"]
    );
}

#[test]
fn an_output_at_the_root_of_the_input_bucket_is_a_configuration_error_naming_scar_output() {
    let output = S3Location {
        bucket: "in".into(),
        key: String::new(),
    };
    let rules = EventRules {
        output: Some(&output),
        allow_invoke_script: false,
    };
    let event = notification(vec![record("other", "a.txt"), record("in", "a.txt")]);
    let err = map_event(&payload(&event), rules).unwrap_err();
    assert!(err.is_config(), "{err:?}");
    let text = err.to_string();
    for needed in [
        "SCAR_OUTPUT=s3://in/",
        "every object of in",
        "s3://in/output/",
        "another bucket",
    ] {
        assert!(text.contains(needed), "{needed} missing from: {text}");
    }
    // The same output is fine for a function triggered by other buckets only.
    let other = notification(vec![record("other", "a.txt")]);
    assert_eq!(
        urls(&map_event(&payload(&other), rules).unwrap()),
        ["s3://other/a.txt"]
    );
}

#[test]
fn anything_else_is_a_direct_invocation() {
    for payload in [
        &br#"{"hello": "world"}"#[..],
        b"[1,2,3]",
        b"not json",
        b"",
        br#"{"Records": []}"#,
        br#"{"Records": [{"eventSource": "aws:kinesis"}]}"#,
        br#"{"Records": [{"eventSource": "aws:sqs", "body": "{}"}, {"eventSource": "aws:s3"}]}"#,
        br#"{"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"}"#,
        br#"{"Type": "Notification", "Message": "{}"}"#,
    ] {
        let mapped = map_event(payload, RULES).unwrap();
        let text = String::from_utf8_lossy(payload);
        assert_eq!(
            mapped.work,
            [Work {
                input: Input::Direct,
                message_id: None
            }],
            "{text}"
        );
        assert!(
            mapped.skipped.is_empty() && mapped.unreadable.is_empty(),
            "{text}"
        );
        assert_eq!((mapped.script, mapped.sqs_messages), (None, None), "{text}");
    }
}

#[test]
fn a_malformed_s3_record_is_unreadable_and_the_others_still_run() {
    let mut bad = record("in", "a.txt");
    bad["s3"]["object"] = serde_json::json!("nope");
    let mapped = map(&notification(vec![
        record("in", "ok"),
        bad,
        record("in", "z"),
    ]));
    assert_eq!(urls(&mapped), ["s3://in/ok", "s3://in/z"]);
    let [unreadable] = mapped.unreadable.as_slice() else {
        panic!("one unreadable record: {:?}", mapped.unreadable)
    };
    assert_eq!(unreadable.what, "record 2");
    assert!(
        unreadable
            .reason
            .starts_with("it does not have the shape S3 sends: invalid type"),
        "{}",
        unreadable.reason
    );
    assert_eq!(unreadable.message_id, None);
}

#[test]
fn a_record_without_a_key_or_bucket_is_unreadable() {
    let mut no_key = record("in", "a.txt");
    no_key["s3"]["object"]["key"] = serde_json::json!("");
    let mut no_bucket = record("in", "a.txt");
    no_bucket["s3"]["bucket"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let mapped = map(&notification(vec![no_key, no_bucket]));
    assert!(mapped.work.is_empty());
    let reasons: Vec<_> = (mapped.unreadable.iter())
        .map(|u| format!("{}: {}", u.what, u.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            "record 1: it has no s3.object.key",
            "record 2: it has no s3.bucket.name"
        ]
    );
}

#[test]
fn an_invoked_script_needs_the_permission() {
    let payload = br#"{"script": "ZWNobyBoaQ=="}"#;
    let err = map_event(payload, RULES).unwrap_err();
    assert!(matches!(err, EventError::ScriptNotAllowed));
    assert!(!err.is_config());
    assert!(err.to_string().contains("SCAR_ALLOW_INVOKE_SCRIPT"));
    let allowed = EventRules {
        output: None,
        allow_invoke_script: true,
    };
    let mapped = map_event(payload, allowed).unwrap();
    assert_eq!(mapped.work.len(), 1);
    assert_eq!(mapped.work[0].input, Input::Direct);
    assert_eq!(mapped.script.as_deref(), Some("echo hi"));
}

#[test]
fn an_invoked_script_that_is_not_base64_is_refused() {
    let allowed = EventRules {
        output: None,
        allow_invoke_script: true,
    };
    let err = map_event(br#"{"script": "echo hi"}"#, allowed).unwrap_err();
    assert!(matches!(err, EventError::BadScript(_)), "{err}");
    assert!(!err.is_config());
}

#[test]
fn keys_with_invalid_utf8_escapes_are_refused() {
    assert_eq!(decode_key("a%FFb"), None);
    assert_eq!(decode_key("a%2Fb+c"), Some("a/b c".into()));
}

#[test]
fn when_every_record_is_skipped_there_is_nothing_to_run() {
    let mapped = map(&notification(vec![record("in", "output/x.txt")]));
    assert!(mapped.work.is_empty() && mapped.unreadable.is_empty());
    assert_eq!(skipped_inputs(&mapped), ["s3://in/output/x.txt"]);
}

#[test]
fn an_input_knows_its_object_and_url_and_a_direct_one_has_neither() {
    let mapped = map(&notification(vec![record("in", "a+b.txt")]));
    let [work] = mapped.work.as_slice() else {
        panic!("one record, one input")
    };
    assert_eq!(work.input.url().as_deref(), Some("s3://in/a b.txt"));
    assert_eq!(work.input.s3().map(|o| o.bucket.as_str()), Some("in"));
    assert_eq!(Input::Direct.url(), None);
    assert_eq!(Input::Direct.s3(), None);
}

#[test]
fn an_http_request_is_one_run_and_never_carries_a_script() {
    let event = serde_json::json!({
        "version": "2.0", "rawPath": "/in.txt", "rawQueryString": "",
        "requestContext": {"http": {"method": "POST"}, "domainName": "x.lambda-url.eu-west-1.on.aws"},
        "body": "{\"script\": \"ZWNobyBwd25lZA==\"}", "isBase64Encoded": false,
        "script": "ZWNobyBwd25lZA=="
    });
    let rules = EventRules {
        output: None,
        allow_invoke_script: true,
    };
    let mapped = map_event(event.to_string().as_bytes(), rules).unwrap();
    assert_eq!(mapped.script, None);
    assert_eq!(mapped.http, Some(HttpFormat::V2));
    assert_eq!(mapped.work.len(), 1);
    let request = mapped.work[0].input.http().unwrap();
    assert_eq!(request.file_name, "in.txt");
    assert_eq!(&request.body[..], b"{\"script\": \"ZWNobyBwd25lZA==\"}");
}

#[test]
fn an_unreadable_http_request_is_still_an_http_event() {
    let event = serde_json::json!({
        "httpMethod": "POST", "path": "/x", "requestContext": {},
        "body": "%%%", "isBase64Encoded": true
    });
    let rules = EventRules {
        output: None,
        allow_invoke_script: false,
    };
    let mapped = map_event(event.to_string().as_bytes(), rules).unwrap();
    assert_eq!(mapped.http, Some(HttpFormat::V1));
    assert!(mapped.work.is_empty());
    assert!(mapped.unreadable[0].reason.contains("base64"));
}

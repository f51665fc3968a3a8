use super::*;

fn record(bucket: &str, key: &str) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T15:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "scar",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": key, "size": 1024, "eTag": "0123456789abcdef", "sequencer": "0A1B2C3D4E5F678901"}
        }
    })
}

fn event(records: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap()
}

/// The S3 objects of `inputs`; panics on a direct input.
fn objects(inputs: Vec<Input>) -> Vec<S3Input> {
    inputs
        .into_iter()
        .map(|input| match input {
            Input::S3(object) => object,
            Input::Direct => panic!("a direct input among S3 records"),
        })
        .collect()
}

const RULES: EventRules<'static> = EventRules {
    output: None,
    allow_invoke_script: false,
};

#[test]
fn an_s3_record_becomes_an_input_with_a_decoded_key() {
    let mapped = map_event(
        &event(vec![record("in", "videos/My+Film+%C3%A9t%C3%A9%2B1.mp4")]),
        RULES,
    )
    .unwrap();
    let inputs = objects(mapped.inputs);
    assert_eq!(
        inputs,
        [S3Input {
            bucket: "in".into(),
            key: "videos/My Film été+1.mp4".into(),
            size: Some(1024),
            etag: Some("0123456789abcdef".into()),
            event_time: Some("2026-11-27T15:00:00.000Z".into()),
        }]
    );
    assert!(mapped.skipped.is_empty());
}

#[test]
fn several_records_become_several_inputs_in_order() {
    let mapped = map_event(
        &event(vec![record("in", "a.txt"), record("other", "b.txt")]),
        RULES,
    )
    .unwrap();
    let inputs = objects(mapped.inputs);
    let urls: Vec<_> = inputs.iter().map(S3Input::url).collect();
    assert_eq!(urls, ["s3://in/a.txt", "s3://other/b.txt"]);
}

#[test]
fn keys_under_the_default_output_prefix_of_the_same_bucket_are_skipped() {
    let mapped = map_event(
        &event(vec![
            record("in", "output/x.txt"),
            record("in", "outputs.txt"),
        ]),
        RULES,
    )
    .unwrap();
    assert_eq!(mapped.skipped, ["s3://in/output/x.txt"]);
    let inputs = objects(mapped.inputs);
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].key, "outputs.txt");
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
    let mapped = map_event(
        &event(vec![
            record("in", "results/a.txt"),
            record("in", "output/b.txt"),
            record("other", "results/c.txt"),
        ]),
        rules,
    )
    .unwrap();
    assert_eq!(mapped.skipped, ["s3://in/results/a.txt"]);
    let inputs = objects(mapped.inputs);
    assert_eq!(inputs.len(), 2);
}

#[test]
fn an_output_at_the_root_of_the_input_bucket_skips_everything_from_that_bucket() {
    let output = S3Location {
        bucket: "in".into(),
        key: String::new(),
    };
    let rules = EventRules {
        output: Some(&output),
        allow_invoke_script: false,
    };
    let mapped = map_event(&event(vec![record("in", "a.txt")]), rules).unwrap();
    assert_eq!(mapped.skipped, ["s3://in/a.txt"]);
}

#[test]
fn anything_else_is_a_direct_invocation() {
    for payload in [
        &br#"{"hello": "world"}"#[..],
        b"[1,2,3]",
        b"not json",
        br#"{"Records": [{"eventSource": "aws:sqs"}]}"#,
    ] {
        let mapped = map_event(payload, RULES).unwrap();
        assert_eq!(
            mapped.inputs,
            [Input::Direct],
            "{}",
            String::from_utf8_lossy(payload)
        );
        assert_eq!(mapped.script, None);
    }
}

#[test]
fn a_malformed_s3_record_is_an_error_naming_the_record() {
    let mut bad = record("in", "a.txt");
    bad["s3"]["object"] = serde_json::json!("nope");
    let err = map_event(&event(vec![record("in", "ok"), bad]), RULES).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("record 1 of the S3 event is malformed"),
        "{err}"
    );
}

#[test]
fn a_record_without_a_key_is_an_error() {
    let mut bad = record("in", "a.txt");
    bad["s3"]["object"]["key"] = serde_json::json!("");
    let err = map_event(&event(vec![bad]), RULES).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 0 of the S3 event has no s3.object.key"
    );
}

#[test]
fn an_invoked_script_needs_the_permission() {
    let payload = br#"{"script": "ZWNobyBoaQ=="}"#;
    let err = map_event(payload, RULES).unwrap_err();
    assert!(matches!(err, EventError::ScriptNotAllowed));
    assert!(err.to_string().contains("SCAR_ALLOW_INVOKE_SCRIPT"));
    let allowed = EventRules {
        output: None,
        allow_invoke_script: true,
    };
    let mapped = map_event(payload, allowed).unwrap();
    assert_eq!(mapped.inputs, [Input::Direct]);
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
}

#[test]
fn keys_with_invalid_utf8_escapes_are_refused() {
    assert_eq!(decode_key("a%FFb"), None);
    assert_eq!(decode_key("a%2Fb+c"), Some("a/b c".into()));
}

#[test]
fn when_every_record_is_skipped_there_is_nothing_to_run() {
    let mapped = map_event(&event(vec![record("in", "output/x.txt")]), RULES).unwrap();
    assert!(mapped.inputs.is_empty());
    assert_eq!(mapped.skipped, ["s3://in/output/x.txt"]);
}

#[test]
fn an_input_knows_its_object_and_url_and_a_direct_one_has_neither() {
    let mapped = map_event(&event(vec![record("in", "a+b.txt")]), RULES).unwrap();
    let [input] = mapped.inputs.as_slice() else {
        panic!("one record, one input")
    };
    assert_eq!(input.url().as_deref(), Some("s3://in/a b.txt"));
    assert_eq!(input.s3().map(|o| o.bucket.as_str()), Some("in"));
    assert_eq!(Input::Direct.url(), None);
    assert_eq!(Input::Direct.s3(), None);
}

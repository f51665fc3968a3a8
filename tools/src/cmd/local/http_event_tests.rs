//! The Function URL event checked against AWS's documented request payload and against
//! `aws_lambda_events`' type for it.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use bytes::Bytes;

use super::*;

/// The request payload of "Invoking Lambda function URLs" (Lambda developer guide), fields
/// and nesting as documented, values of our own. `authentication`, `authorizer` (`NONE` auth
/// type), `pathParameters` and `stageVariables` are the documented nulls, left out.
const DOCUMENTED: &str = r#"{
  "version": "2.0",
  "routeKey": "$default",
  "rawPath": "/my/path",
  "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
  "cookies": ["cookie1", "cookie2"],
  "headers": {"header1": "value1", "header2": "value1,value2"},
  "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
  "requestContext": {
    "accountId": "123456789012",
    "apiId": "<urlid>",
    "domainName": "<url-id>.lambda-url.us-west-2.on.aws",
    "domainPrefix": "<url-id>",
    "http": {
      "method": "POST",
      "path": "/my/path",
      "protocol": "HTTP/1.1",
      "sourceIp": "123.123.123.123",
      "userAgent": "agent"
    },
    "requestId": "id",
    "routeKey": "$default",
    "stage": "$default",
    "time": "12/Mar/2020:19:03:58 +0000",
    "timeEpoch": 1583348638390
  },
  "body": "Hello from client!",
  "isBase64Encoded": false
}"#;

/// Every field path of a document (`requestContext.http.method`); the members of `headers`,
/// `queryStringParameters` are data, not fields.
fn field_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (name, child) in map {
            let path = format!("{prefix}{name}");
            out.insert(path.clone());
            if name != "headers" && name != "queryStringParameters" {
                field_paths(child, &format!("{path}."), out);
            }
        }
    }
}

fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> ReceivedRequest {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    ReceivedRequest {
        parts,
        body: Bytes::from_static(body),
        peer: "127.0.0.1:51000".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        // 2020-03-12T19:03:58.390Z
        received: UNIX_EPOCH + Duration::from_millis(1_584_039_838_390),
    }
}

fn url() -> FunctionUrl {
    FunctionUrl::of("grayify", "us-west-2")
}

fn documented_request() -> ReceivedRequest {
    request(
        "POST",
        "/my/path?parameter1=value1&parameter1=value2&parameter2=value",
        &[
            ("header1", "value1"),
            ("header2", "value1"),
            ("header2", "value2"),
            ("cookie", "cookie1; cookie2"),
            ("user-agent", "agent"),
            ("content-type", "text/plain"),
        ],
        b"Hello from client!",
    )
}

#[test]
fn the_event_has_exactly_the_documented_fields_of_a_function_url_request() {
    let documented: Value = serde_json::from_str(DOCUMENTED).unwrap();
    let event = function_url_event(&documented_request(), &url(), "req-1");
    let (mut expected, mut made) = (BTreeSet::new(), BTreeSet::new());
    field_paths(&documented, "", &mut expected);
    field_paths(&event, "", &mut made);
    assert_eq!(made, expected);
}

#[test]
fn the_event_carries_the_request_as_a_function_url_writes_it() {
    let event = function_url_event(&documented_request(), &url(), "req-1");
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/my/path");
    assert_eq!(
        event["rawQueryString"],
        "parameter1=value1&parameter1=value2&parameter2=value"
    );
    assert_eq!(event["cookies"], json!(["cookie1", "cookie2"]));
    assert_eq!(event["headers"]["header1"], "value1");
    assert_eq!(event["headers"]["header2"], "value1,value2");
    assert!(
        event["headers"].get("cookie").is_none(),
        "cookies stay out of headers"
    );
    assert_eq!(event["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(event["headers"]["x-forwarded-port"], "8080");
    assert_eq!(
        event["queryStringParameters"],
        json!({"parameter1": "value1,value2", "parameter2": "value"})
    );
    let context = &event["requestContext"];
    assert_eq!(context["accountId"], "anonymous");
    assert_eq!(context["apiId"].as_str().unwrap().len(), 32);
    assert_eq!(context["domainPrefix"], context["apiId"]);
    assert_eq!(
        context["domainName"],
        format!("{}.lambda-url.us-west-2.on.aws", url().url_id)
    );
    assert_eq!(context["http"]["method"], "POST");
    assert_eq!(context["http"]["path"], "/my/path");
    assert_eq!(context["http"]["protocol"], "HTTP/1.1");
    assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(context["http"]["userAgent"], "agent");
    assert_eq!(context["requestId"], "req-1");
    assert_eq!(context["stage"], "$default");
    assert_eq!(context["time"], "12/Mar/2020:19:03:58 +0000");
    assert_eq!(context["timeEpoch"], 1_584_039_838_390_u64);
    assert_eq!(event["body"], "Hello from client!");
    assert_eq!(event["isBase64Encoded"], false);
}

#[test]
fn the_event_parses_as_aws_lambda_events_function_url_request() {
    let event = function_url_event(&documented_request(), &url(), "req-1");
    let parsed: LambdaFunctionUrlRequest = serde_json::from_value(event).unwrap();
    assert_eq!(parsed.version.as_deref(), Some("2.0"));
    assert_eq!(parsed.raw_path.as_deref(), Some("/my/path"));
    assert_eq!(parsed.request_context.http.method.as_deref(), Some("POST"));
    assert_eq!(parsed.request_context.request_id.as_deref(), Some("req-1"));
    assert_eq!(parsed.request_context.time_epoch, 1_584_039_838_390);
    assert_eq!(
        parsed.query_string_parameters["parameter1"],
        "value1,value2"
    );
    assert_eq!(parsed.headers["header2"], "value1,value2");
    assert_eq!(parsed.body.as_deref(), Some("Hello from client!"));
}

#[test]
fn a_binary_body_is_base64_and_round_trips_byte_for_byte() {
    static PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xfe";
    let request = request("POST", "/sample.png", &[("content-type", "image/png")], PNG);
    let event = function_url_event(&request, &url(), "r");
    assert_eq!(event["isBase64Encoded"], true);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(event["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, PNG);
}

#[test]
fn text_types_pass_as_text_and_bytes_that_are_not_utf8_are_base64_whatever_the_type() {
    assert_eq!(
        body_field(b"{\"a\":1}", Some("application/json; charset=utf-8")),
        (Some("{\"a\":1}".to_owned()), false)
    );
    assert!(!body_field(b"a=1", Some("application/x-www-form-urlencoded")).1);
    assert!(!body_field(b"<a/>", Some("application/atom+xml")).1);
    assert!(!body_field(b"hi", Some("text/csv")).1);
    // `curl --data-binary @picture.png` says form data; the bytes say otherwise.
    assert!(body_field(b"\x89PNG\xff", Some("application/x-www-form-urlencoded")).1);
    assert!(body_field(b"hello", Some("application/octet-stream")).1);
    assert!(body_field(b"hello", None).1);
    assert_eq!(body_field(b"", Some("text/plain")), (None, false));
}

#[test]
fn a_request_without_query_cookies_or_body_leaves_those_fields_out() {
    let request = request("GET", "/", &[], b"");
    let event = function_url_event(&request, &url(), "r");
    for absent in ["cookies", "queryStringParameters", "body"] {
        assert!(event.get(absent).is_none(), "{absent} is present");
    }
    assert_eq!(event["rawQueryString"], "");
    assert_eq!(event["isBase64Encoded"], false);
    assert_eq!(event["requestContext"]["http"]["userAgent"], "");
}

#[test]
fn query_parameters_are_percent_decoded() {
    let request = request("GET", "/x?name=J%C3%A9r%C3%B4me&empty=&flag", &[], b"");
    let event = function_url_event(&request, &url(), "r");
    assert_eq!(
        event["queryStringParameters"],
        json!({"name": "Jérôme", "empty": "", "flag": ""})
    );
}

#[test]
fn the_url_id_is_stable_per_function_and_differs_between_functions() {
    assert_eq!(
        FunctionUrl::of("a", "us-east-1"),
        FunctionUrl::of("a", "us-east-1")
    );
    assert_ne!(
        FunctionUrl::of("a", "us-east-1").url_id,
        FunctionUrl::of("b", "us-east-1").url_id
    );
    let id = FunctionUrl::of("a", "us-east-1").url_id;
    assert!(
        id.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
}

#[test]
fn clf_time_is_written_as_api_gateway_writes_it() {
    assert_eq!(clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
    let at = UNIX_EPOCH + Duration::from_secs(1_795_791_845);
    assert_eq!(clf_time(at), "27/Nov/2026:15:04:05 +0000");
}

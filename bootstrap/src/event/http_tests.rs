use super::*;
use serde_json::json;

/// A Function URL request as "Invoking Lambda function URLs" documents its payload.
fn function_url(body: &str, base64: bool) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/my/path/sample.png",
        "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=a%20b",
        "cookies": ["cookie1", "cookie2"],
        "headers": {"content-type": "image/png", "header2": "value1,value2"},
        "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "a b"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "<urlid>",
            "domainName": "<url-id>.lambda-url.us-west-2.on.aws",
            "domainPrefix": "<url-id>",
            "http": {"method": "POST", "path": "/my/path/sample.png", "protocol": "HTTP/1.1",
                     "sourceIp": "123.123.123.123", "userAgent": "agent"},
            "requestId": "id", "routeKey": "$default", "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390u64
        },
        "body": body,
        "pathParameters": null,
        "isBase64Encoded": base64,
        "stageVariables": null
    })
}

/// A REST API proxy request (payload 1.0) as "Set up Lambda proxy integrations" documents it.
fn rest_api(path: &str) -> Value {
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "PUT",
        "headers": {"Content-Type": "text/csv", "Accept": "application/x-tar"},
        "multiValueHeaders": {"Content-Type": ["text/csv"], "Accept": ["application/x-tar"],
                              "X-Scar-Mode": ["fast", "small"]},
        "queryStringParameters": {"q": "2"},
        "multiValueQueryStringParameters": {"q": ["1", "2"]},
        "pathParameters": {"proxy": "data"},
        "stageVariables": null,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "PUT", "stage": "prod",
                           "requestId": "c6af9ac6", "apiId": "1234567890"},
        "body": "a,b\n1,2\n",
        "isBase64Encoded": false
    })
}

fn read(value: &Value) -> HttpInput {
    let format = http_format(value).expect("an HTTP event");
    read_request(value, format).expect("a readable request")
}

#[test]
fn a_function_url_request_is_format_2_from_a_function_url() {
    let request = read(&function_url("aGVsbG8=", true));
    assert_eq!(request.format, HttpFormat::V2);
    assert_eq!(request.source, HttpSource::FunctionUrl);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/my/path/sample.png");
    assert_eq!(&request.body[..], b"hello");
    assert_eq!(request.file_name, "sample.png");
    assert_eq!(
        request.query,
        [
            ("parameter1".to_owned(), "value1".to_owned()),
            ("parameter1".to_owned(), "value2".to_owned()),
            ("parameter2".to_owned(), "a b".to_owned()),
        ]
    );
    assert_eq!(request.header("cookie"), Some("cookie1; cookie2"));
    assert!(!request.archive);
}

#[test]
fn an_http_api_request_is_told_from_a_function_url_by_its_domain() {
    let mut event = function_url("x", false);
    event["requestContext"]["domainName"] = json!("r3pmxmplak.execute-api.us-east-2.amazonaws.com");
    let request = read(&event);
    assert_eq!(request.source, HttpSource::HttpApi);
    assert_eq!(&request.body[..], b"x");
}

#[test]
fn a_rest_api_request_is_format_1_with_every_repeated_value() {
    let request = read(&rest_api("/data/table.csv"));
    assert_eq!(request.format, HttpFormat::V1);
    assert_eq!(request.source, HttpSource::RestApi);
    assert_eq!(request.method, "PUT");
    assert_eq!(request.file_name, "table.csv");
    assert_eq!(request.raw_query, "q=1&q=2");
    assert_eq!(request.header("x-scar-mode"), Some("fast,small"));
    assert_eq!(request.header("content-type"), Some("text/csv"));
    assert!(
        request.archive,
        "Accept: application/x-tar asks for an archive"
    );
    assert_eq!(&request.body[..], b"a,b\n1,2\n");
}

#[test]
fn an_http_api_request_in_format_1_says_its_version() {
    let mut event = rest_api("/x.csv");
    event["version"] = json!("1.0");
    assert_eq!(read(&event).source, HttpSource::HttpApi);
}

#[test]
fn without_a_path_segment_the_name_comes_from_the_filename_parameter_then_the_content_type() {
    let mut event = function_url("", false);
    event["rawPath"] = json!("/");
    event["rawQueryString"] = json!("filename=../../etc/clip.mp4");
    assert_eq!(read(&event).file_name, "clip.mp4");
    event["rawQueryString"] = json!("");
    assert_eq!(read(&event).file_name, "body.png");
    event["headers"] = json!({"content-type": "application/vnd.unknown"});
    assert_eq!(read(&event).file_name, "body");
    event["headers"] = json!({"content-type": "text/plain; charset=utf-8"});
    assert_eq!(read(&event).file_name, "body.txt");
}

#[test]
fn path_segments_that_are_not_file_names_are_never_used() {
    for path in ["/a/..", "/a/.", "/a/%2e%2e", "/", "/a/"] {
        let mut event = function_url("", false);
        event["rawPath"] = json!(path);
        let name = read(&event).file_name;
        assert_eq!(name, "body.png", "{path}");
    }
    let mut event = function_url("", false);
    event["rawPath"] = json!("/a/%2e%2e%2fetc%2fpasswd");
    assert_eq!(read(&event).file_name, "passwd");
    event["rawPath"] = json!("/a/new%0aline.png");
    assert_eq!(read(&event).file_name, "new_line.png");
}

#[test]
fn an_over_long_segment_is_shortened_and_keeps_its_extension() {
    let mut event = function_url("", false);
    event["rawPath"] = json!(format!("/{}.png", "x".repeat(400)));
    let name = read(&event).file_name;
    assert!(name.len() <= 255 && name.ends_with(".png"), "{name}");
}

#[test]
fn a_body_that_lies_about_base64_is_an_error_naming_it() {
    let event = function_url("not base64!", true);
    let err = read_request(&event, HttpFormat::V2).unwrap_err();
    assert!(err.contains("isBase64Encoded"), "{err}");
}

#[test]
fn no_body_is_an_empty_input() {
    let mut event = rest_api("/x");
    event["body"] = Value::Null;
    event["headers"] = Value::Null;
    event["multiValueHeaders"] = Value::Null;
    let request = read(&event);
    assert!(request.body.is_empty());
    assert!(request.headers.is_empty());
}

#[test]
fn other_events_are_not_http() {
    assert_eq!(http_format(&json!({"Records": []})), None);
    assert_eq!(http_format(&json!({"httpMethod": "GET"})), None);
    assert_eq!(
        http_format(&json!({"version": "2.0", "requestContext": {}})),
        None
    );
}

//! Answers decoded by the Function URL's rules, with the documented examples.

use http_body_util::BodyExt;

use super::*;

fn header<'a>(response: &'a Response<ChannelBody>, name: &str) -> Vec<&'a str> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn a_response_document_gives_its_status_headers_and_body() {
    // The guide's "custom response" example.
    let answer = br#"{"statusCode": 201,
        "headers": {"Content-Type": "application/json", "My-Custom-Header": "Custom Value"},
        "body": "{ \"message\": \"Hello, world!\" }", "isBase64Encoded": false}"#;
    let (head, body) = buffered(answer).unwrap();
    assert_eq!(head.status, StatusCode::CREATED);
    assert_eq!(
        head.headers,
        [
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("My-Custom-Header".to_owned(), "Custom Value".to_owned())
        ]
    );
    assert_eq!(body, r#"{ "message": "Hello, world!" }"#);
}

#[test]
fn json_without_a_status_code_is_a_200_of_application_json_with_the_answer_as_body() {
    // The guide's string and JSON examples: the answer goes out as it is.
    for answer in [
        &br#""Hello, world!""#[..],
        br#"{"message": "Hello, world!"}"#,
    ] {
        let (head, body) = buffered(answer).unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(
            head.headers,
            [("content-type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(body.as_ref(), answer);
    }
}

#[test]
fn a_base64_body_is_decoded_byte_for_byte() {
    let bytes: Vec<u8> = (0..=255).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let answer = serde_json::json!({
        "statusCode": 200, "headers": {"content-type": "image/png"},
        "body": encoded, "isBase64Encoded": true
    });
    let (_, body) = buffered(answer.to_string().as_bytes()).unwrap();
    assert_eq!(body.as_ref(), bytes.as_slice());
    let broken = br#"{"statusCode": 200, "body": "not base64!", "isBase64Encoded": true}"#;
    assert!(matches!(buffered(broken), Err(AnswerError::Base64(_))));
}

#[tokio::test]
async fn cookies_become_set_cookie_headers_and_framing_headers_are_hypers() {
    let answer = br#"{"statusCode": 200, "headers": {"content-length": "999", "x-n": 3},
        "cookies": ["Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT", "Cookie_2=Value2; Max-Age=78000"],
        "body": "hi"}"#;
    let (head, body) = buffered(answer).unwrap();
    let response = head.response(ChannelBody::whole(body));
    assert_eq!(
        header(&response, "set-cookie"),
        [
            "Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT",
            "Cookie_2=Value2; Max-Age=78000"
        ]
    );
    assert!(header(&response, "content-length").is_empty());
    assert_eq!(header(&response, "x-n"), ["3"]);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "hi"
    );
}

#[test]
fn answers_that_are_not_http_responses_are_refused() {
    assert!(matches!(
        buffered(b"plain words"),
        Err(AnswerError::NotJson(_))
    ));
    assert!(matches!(
        buffered(br#"{"statusCode": "teapot"}"#),
        Err(AnswerError::Status(_))
    ));
    assert!(matches!(
        buffered(br#"{"statusCode": 1000}"#),
        Err(AnswerError::Status(_))
    ));
}

#[test]
fn an_error_report_is_a_502_carrying_the_error_document() {
    let document =
        Bytes::from_static(br#"{"errorType":"Scar.ScriptFailed","errorMessage":"exit 3"}"#);
    let (head, body) = error_report(&document);
    assert_eq!(head.status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, document);
}

#[test]
fn the_prelude_ends_at_eight_nul_bytes_and_the_payload_follows() {
    let mut stream =
        br#"{"statusCode":404,"headers":{"content-type":"text/plain"},"cookies":["a=b"]}"#.to_vec();
    assert_eq!(
        prelude(&Bytes::from(stream.clone())).unwrap(),
        Prelude::Incomplete
    );
    stream.extend_from_slice(&[0; 8]);
    stream.extend_from_slice(b"not found\0\0");
    match prelude(&Bytes::from(stream)).unwrap() {
        Prelude::Complete(head, rest) => {
            assert_eq!(head.status, StatusCode::NOT_FOUND);
            assert_eq!(
                head.headers,
                [("content-type".to_owned(), "text/plain".to_owned())]
            );
            assert_eq!(head.cookies, ["a=b"]);
            assert_eq!(rest, "not found\0\0");
        }
        other => panic!("expected a complete prelude, got {other:?}"),
    }
}

#[test]
fn a_prelude_without_its_delimiter_in_the_first_16_kib_is_refused() {
    let long = Bytes::from(vec![b' '; PRELUDE_LIMIT]);
    assert_eq!(prelude(&long), Err(AnswerError::NoDelimiter));
    let mut late = vec![b' '; PRELUDE_LIMIT];
    late.extend_from_slice(&[0; 8]);
    assert_eq!(prelude(&Bytes::from(late)), Err(AnswerError::NoDelimiter));
    let not_json = Bytes::from_static(b"status 200\0\0\0\0\0\0\0\0body");
    assert!(matches!(prelude(&not_json), Err(AnswerError::Prelude(_))));
}

#[test]
fn only_the_http_integration_type_has_a_prelude() {
    assert!(has_prelude(Some(HTTP_INTEGRATION)));
    assert!(has_prelude(Some(
        "Application/vnd.awslambda.http-integration-response; x=1"
    )));
    assert!(!has_prelude(Some("image/png")));
    assert!(!has_prelude(None));
    assert_eq!(
        plain_stream(Some("image/png")).headers,
        [("content-type".to_owned(), "image/png".to_owned())]
    );
}

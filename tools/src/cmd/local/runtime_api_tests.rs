//! The Runtime API served to a real HTTP client over TCP: events out, answers in, streamed
//! answers forwarded as they arrive.

use super::super::channel_body::{BodySender, ChannelBody};
use super::*;
use hyper_util::rt::TokioIo;

/// One HTTP/1.1 request with a real client over TCP.
async fn call(
    address: SocketAddr,
    method: Method,
    path: &str,
    body: &'static str,
) -> Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .header("host", address.to_string())
        .body(if body.is_empty() {
            Full::new(Bytes::new())
        } else {
            Full::new(Bytes::from_static(body.as_bytes()))
        })
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

async fn api() -> (RuntimeApi, mpsc::UnboundedReceiver<Notice>) {
    let (notices, receiver) = mpsc::unbounded_channel();
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:demo".to_owned();
    (
        RuntimeApi::start(arn, Duration::from_secs(60), notices)
            .await
            .unwrap(),
        receiver,
    )
}

#[tokio::test]
async fn next_hands_out_the_event_with_lambda_headers_and_response_reaches_the_caller() {
    let (api, mut notices) = api().await;
    let invocation = api.invoke(Bytes::from_static(br#"{"hello":1}"#));
    let event = call(
        api.address(),
        Method::GET,
        "/2018-06-01/runtime/invocation/next",
        "",
    )
    .await;
    assert_eq!(event.status(), StatusCode::OK);
    assert_eq!(event.body().as_ref(), br#"{"hello":1}"#);
    let header = |name: &str| {
        event
            .headers()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        header("lambda-runtime-aws-request-id"),
        invocation.request_id
    );
    assert!(header("lambda-runtime-invoked-function-arn").ends_with(":function:demo"));
    assert!(header("lambda-runtime-trace-id").starts_with("Root=1-"));
    let deadline: u128 = header("lambda-runtime-deadline-ms").parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        deadline > now + 50_000 && deadline <= now + 60_000,
        "deadline {deadline} vs now {now}"
    );
    assert_eq!(
        notices.recv().await,
        Some(Notice::Started {
            request_id: invocation.request_id.clone()
        })
    );

    let path = format!(
        "/2018-06-01/runtime/invocation/{}/response",
        invocation.request_id
    );
    let answer = call(api.address(), Method::POST, &path, r#"{"exitCode":0}"#).await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    match invocation.reply.await.unwrap() {
        Reply::Response(body) => assert_eq!(body.as_ref(), br#"{"exitCode":0}"#),
        other => panic!("expected a buffered response, got {other:?}"),
    }

    // A second answer for the same request is refused, as Lambda does.
    let again = call(api.address(), Method::POST, &path, "{}").await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_error_report_carries_its_type_to_the_caller() {
    let (api, _notices) = api().await;
    let invocation = api.invoke(Bytes::from_static(b"{}"));
    call(
        api.address(),
        Method::GET,
        "/2018-06-01/runtime/invocation/next",
        "",
    )
    .await;
    let path = format!(
        "/2018-06-01/runtime/invocation/{}/error",
        invocation.request_id
    );
    let body = r#"{"errorType":"Scar.ScriptFailed","errorMessage":"exit 3"}"#;
    assert_eq!(
        call(api.address(), Method::POST, &path, body)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    match invocation.reply.await.unwrap() {
        Reply::Error { error_type, body } => {
            assert_eq!(error_type, "Scar.ScriptFailed");
            assert!(String::from_utf8_lossy(&body).contains("exit 3"));
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn next_waits_until_an_event_is_queued() {
    let (api, _notices) = api().await;
    let address = api.address();
    let waiting = tokio::spawn(async move {
        call(
            address,
            Method::GET,
            "/2018-06-01/runtime/invocation/next",
            "",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "next answered with nothing queued");
    let invocation = api.invoke(Bytes::from_static(b"{\"n\":2}"));
    let event = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event
            .headers()
            .get("lambda-runtime-aws-request-id")
            .unwrap()
            .to_str()
            .unwrap(),
        invocation.request_id
    );
}

#[tokio::test]
async fn init_error_is_reported_as_a_notice() {
    let (api, mut notices) = api().await;
    let body = r#"{"errorType":"Scar.ConfigError","errorMessage":"SCAR_IMAGE is empty"}"#;
    let response = call(
        api.address(),
        Method::POST,
        "/2018-06-01/runtime/init/error",
        body,
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    match notices.recv().await {
        Some(Notice::InitError { error_type, body }) => {
            assert_eq!(error_type, "Scar.ConfigError");
            assert!(String::from_utf8_lossy(&body).contains("SCAR_IMAGE is empty"));
        }
        other => panic!("expected an init error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_paths_and_request_ids_are_refused() {
    let (api, _notices) = api().await;
    assert_eq!(
        call(api.address(), Method::GET, "/nope", "").await.status(),
        StatusCode::NOT_FOUND
    );
    let path = "/2018-06-01/runtime/invocation/not-a-request/response";
    assert_eq!(
        call(api.address(), Method::POST, path, "{}").await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn request_ids_are_uuid_shaped_and_distinct() {
    let a = new_request_id(1);
    let b = new_request_id(2);
    assert_ne!(a, b);
    let groups: Vec<usize> = a.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12]);
}

/// Start a streamed `/response` for `request_id`: the returned sender feeds its body frame by
/// frame (data, then maybe the error trailers); the task resolves to Lambda's answer.
fn post_streaming(
    address: SocketAddr,
    request_id: &str,
    content_type: &str,
) -> (BodySender, tokio::task::JoinHandle<Response<Bytes>>) {
    let (frames, body) = ChannelBody::channel(1);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "http://{address}/2018-06-01/runtime/invocation/{request_id}/response"
        ))
        .header("host", address.to_string())
        .header("lambda-runtime-function-response-mode", "streaming")
        .header("transfer-encoding", "chunked")
        .header(
            "trailer",
            "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
        )
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let task = tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    });
    (frames, task)
}

/// Queue an event, let a client take it, and return the invocation.
async fn handed_out(api: &RuntimeApi) -> Invocation {
    let invocation = api.invoke(Bytes::from_static(b"{}"));
    call(
        api.address(),
        Method::GET,
        "/2018-06-01/runtime/invocation/next",
        "",
    )
    .await;
    invocation
}

fn data(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

#[tokio::test]
async fn a_streamed_response_reaches_the_caller_piece_by_piece_before_it_ends() {
    let (api, _notices) = api().await;
    let invocation = handed_out(&api).await;
    let (frames, answer) = post_streaming(
        api.address(),
        &invocation.request_id,
        "application/vnd.awslambda.http-integration-response",
    );
    frames.data(data(b"{\"statusCode\":200}")).await.unwrap();
    let mut stream = match invocation.reply.await.unwrap() {
        Reply::Stream(stream) => stream,
        other => panic!("expected a stream, got {other:?}"),
    };
    assert_eq!(
        stream.content_type.as_deref(),
        Some("application/vnd.awslambda.http-integration-response")
    );
    // The first piece is handed on while the runtime has not finished its request.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.pieces.recv())
        .await
        .expect("the first piece was held back")
        .unwrap()
        .unwrap();
    assert_eq!(first.as_ref(), b"{\"statusCode\":200}");
    assert!(
        !answer.is_finished(),
        "the runtime was answered before its body ended"
    );
    frames.data(data(&[0; 8])).await.unwrap();
    frames.data(data(b"payload")).await.unwrap();
    frames.finish().await;
    let mut rest = Vec::new();
    while let Some(piece) = stream.pieces.recv().await {
        rest.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(rest, b"\0\0\0\0\0\0\0\0payload");
    assert_eq!(answer.await.unwrap().status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn error_trailers_after_the_body_reach_the_caller_as_a_broken_stream() {
    let (api, _notices) = api().await;
    let invocation = handed_out(&api).await;
    let (frames, answer) = post_streaming(
        api.address(),
        &invocation.request_id,
        "application/octet-stream",
    );
    frames.data(data(b"half of it")).await.unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "lambda-runtime-function-error-type",
        http::HeaderValue::from_static("Scar.StreamError"),
    );
    // base64 of {"errorType":"Scar.StreamError","errorMessage":"short read"}
    trailers.insert(
        "lambda-runtime-function-error-body",
        http::HeaderValue::from_static(
            "eyJlcnJvclR5cGUiOiJTY2FyLlN0cmVhbUVycm9yIiwiZXJyb3JNZXNzYWdlIjoic2hvcnQgcmVhZCJ9",
        ),
    );
    frames
        .frame(hyper::body::Frame::trailers(trailers))
        .await
        .unwrap();
    frames.finish().await;
    let Reply::Stream(mut stream) = invocation.reply.await.unwrap() else {
        panic!("expected a stream");
    };
    assert_eq!(stream.pieces.recv().await.unwrap().unwrap(), "half of it");
    let broke = stream.pieces.recv().await.unwrap().unwrap_err();
    assert_eq!(broke.error_type, "Scar.StreamError");
    assert!(String::from_utf8_lossy(&broke.body).contains("short read"));
    assert!(stream.pieces.recv().await.is_none());
    assert_eq!(answer.await.unwrap().status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_streamed_response_for_an_unknown_request_is_refused() {
    let (api, _notices) = api().await;
    let (frames, answer) = post_streaming(api.address(), "not-a-request", "text/plain");
    frames.finish().await;
    assert_eq!(answer.await.unwrap().status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_runtime_connection_that_breaks_mid_stream_reaches_the_caller_as_a_broken_stream() {
    let (api, _notices) = api().await;
    let invocation = handed_out(&api).await;
    let (frames, answer) = post_streaming(
        api.address(),
        &invocation.request_id,
        "application/octet-stream",
    );
    frames.data(data(b"some")).await.unwrap();
    let Reply::Stream(mut stream) = invocation.reply.await.unwrap() else {
        panic!("expected a stream");
    };
    assert_eq!(stream.pieces.recv().await.unwrap().unwrap(), "some");
    // The runtime's request body fails: hyper drops the connection mid-chunk.
    frames.fail(std::io::Error::other("bootstrap killed")).await;
    let broke = tokio::time::timeout(Duration::from_secs(10), stream.pieces.recv())
        .await
        .expect("the break was not reported")
        .unwrap()
        .unwrap_err();
    assert_eq!(broke.error_type, "Runtime.StreamInterrupted");
    assert!(answer.await.is_err(), "the runtime's client saw no failure");
}

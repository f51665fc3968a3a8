//! Streamed answers forwarded to a client, with a test playing the runtime over real HTTP
//! against the Runtime API: what it sends in the streaming mode is what the client reads.

use std::time::Duration;

use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;

use super::super::runtime_api::{Reply, RuntimeApi};
use super::*;

const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";

/// The runtime's side of one invocation in the streaming mode.
struct Runtime {
    /// Feeds the streamed `/response` body.
    body: BodySender,
    /// What the Runtime API handed on.
    stream: ResponseStream,
    /// Keeps the endpoint up.
    _api: RuntimeApi,
}

/// Queue an event, take it as the runtime would, and start its streamed `/response` of
/// `content_type`.
async fn runtime_streaming(content_type: &str) -> Runtime {
    let (notices, _) = mpsc::unbounded_channel();
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:f".to_owned();
    let api = RuntimeApi::start(arn, Duration::from_secs(60), notices)
        .await
        .unwrap();
    let invocation = api.invoke(Bytes::from_static(b"{}"));
    let address = api.address();
    let next = Request::get(format!(
        "http://{address}/2018-06-01/runtime/invocation/next"
    ))
    .header("host", address.to_string())
    .body(Full::new(Bytes::new()))
    .unwrap();
    send(address, next).await;
    let (body, request_body) = ChannelBody::channel(1);
    let response = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "http://{address}/2018-06-01/runtime/invocation/{}/response",
            invocation.request_id
        ))
        .header("host", address.to_string())
        .header("lambda-runtime-function-response-mode", "streaming")
        .header("transfer-encoding", "chunked")
        .header(
            "trailer",
            "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
        )
        .header("content-type", content_type)
        .body(request_body)
        .unwrap();
    // The answer to the runtime is not this test's business: the request runs on its own.
    tokio::spawn(async move {
        let _ = tokio::spawn(send(address, response)).await;
    });
    let Reply::Stream(stream) = invocation.reply.await.unwrap() else {
        panic!("the Runtime API did not hand on a stream");
    };
    Runtime {
        body,
        stream,
        _api: api,
    }
}

async fn send<B>(address: std::net::SocketAddr, request: Request<B>) -> http::StatusCode
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

fn prelude(json: &str) -> Bytes {
    let mut bytes = json.as_bytes().to_vec();
    bytes.extend_from_slice(&[0; 8]);
    Bytes::from(bytes)
}

/// Forward the runtime's stream in the background; the client's response, and the task.
async fn client_of(
    stream: ResponseStream,
    limit: Duration,
) -> (Response<ChannelBody>, tokio::task::JoinHandle<Forwarded>) {
    let (response, waiting) = oneshot::channel();
    let task =
        tokio::spawn(
            async move { forward(stream, response, "POST /x", Instant::now(), limit).await },
        );
    let response = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("no head within 10 s")
        .unwrap();
    (response, task)
}

async fn next_data(body: &mut ChannelBody) -> Bytes {
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("no body frame within 10 s")
        .unwrap()
        .unwrap();
    frame.into_data().unwrap()
}

#[tokio::test]
async fn the_prelude_becomes_the_head_and_the_payload_reaches_the_client_as_it_arrives() {
    let runtime = runtime_streaming(HTTP_INTEGRATION).await;
    let head = r#"{"statusCode":201,"headers":{"content-type":"image/png"},"cookies":["a=b"]}"#;
    // The prelude and the first payload bytes in one chunk, the rest later.
    let mut first = prelude(head).to_vec();
    first.extend_from_slice(b"\x89PNG");
    runtime.body.data(Bytes::from(first)).await.unwrap();
    let (response, task) = client_of(runtime.stream, Duration::from_secs(60)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["set-cookie"], "a=b");
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await.as_ref(), b"\x89PNG");
    // The rest is not sent yet: the client got the first bytes before the stream's end.
    runtime
        .body
        .data(Bytes::from_static(b"\r\n\x1a\n"))
        .await
        .unwrap();
    runtime.body.finish().await;
    assert_eq!(body.collect().await.unwrap().to_bytes(), "\r\n\x1a\n");
    assert_eq!(task.await.unwrap(), Forwarded::Ended);
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_head_cuts_the_clients_response() {
    let runtime = runtime_streaming(HTTP_INTEGRATION).await;
    runtime
        .body
        .data(prelude(r#"{"statusCode":200}"#))
        .await
        .unwrap();
    runtime
        .body
        .data(Bytes::from_static(b"half"))
        .await
        .unwrap();
    let (response, task) = client_of(runtime.stream, Duration::from_secs(60)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await, "half");
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "lambda-runtime-function-error-type",
        http::HeaderValue::from_static("Scar.StreamError"),
    );
    runtime.body.frame(Frame::trailers(trailers)).await.unwrap();
    runtime.body.finish().await;
    assert!(
        body.collect().await.is_err(),
        "a broken stream reached the client as a whole body"
    );
    assert_eq!(task.await.unwrap(), Forwarded::Ended);
}

#[tokio::test]
async fn a_stream_that_breaks_inside_its_prelude_is_a_502_with_the_error_document() {
    let runtime = runtime_streaming(HTTP_INTEGRATION).await;
    runtime
        .body
        .data(Bytes::from_static(b"{\"statusCo"))
        .await
        .unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "lambda-runtime-function-error-type",
        http::HeaderValue::from_static("Scar.StreamError"),
    );
    // base64 of {"errorMessage":"disk full"}
    trailers.insert(
        "lambda-runtime-function-error-body",
        http::HeaderValue::from_static("eyJlcnJvck1lc3NhZ2UiOiJkaXNrIGZ1bGwifQ=="),
    );
    runtime.body.frame(Frame::trailers(trailers)).await.unwrap();
    runtime.body.finish().await;
    let (response, _task) = client_of(runtime.stream, Duration::from_secs(60)).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"errorMessage":"disk full"}"#);
}

#[tokio::test]
async fn a_stream_without_a_prelude_is_a_200_of_its_own_type() {
    let runtime = runtime_streaming("text/csv").await;
    runtime
        .body
        .data(Bytes::from_static(b"a,b\n"))
        .await
        .unwrap();
    runtime.body.finish().await;
    let (response, task) = client_of(runtime.stream, Duration::from_secs(60)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/csv");
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "a,b\n"
    );
    assert_eq!(task.await.unwrap(), Forwarded::Ended);
}

#[tokio::test]
async fn a_stream_that_outlives_its_limit_is_cut_and_says_so() {
    let runtime = runtime_streaming(HTTP_INTEGRATION).await;
    runtime
        .body
        .data(prelude(r#"{"statusCode":200}"#))
        .await
        .unwrap();
    let (response, task) = client_of(runtime.stream, Duration::from_millis(300)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.into_body().collect().await.is_err());
    assert_eq!(task.await.unwrap(), Forwarded::TimedOut);
    drop(runtime.body);
}

//! `scar local --function DIR --http ADDR`: the function served as a Lambda Function URL.
//!
//! Each HTTP request becomes a Function URL event ([`http_event`]); the requests wait their
//! turn and go to the one sandbox one at a time, as one Lambda execution environment serves
//! them. The function's answer becomes the HTTP response by the Function URL's rules
//! ([`http_answer`]); a streamed answer is forwarded piece by piece as the runtime sends it,
//! and one that breaks ends the client's response abruptly (the connection is closed before
//! the last chunk), as Lambda does after the first byte. Every request prints one line:
//! `POST /sample.png -> 200, 48213 bytes, 812 ms`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::args::FunctionArgs;
use super::channel_body::ChannelBody;
use super::error::{LocalError, io};
use super::http_answer::{self, Head, Served};
use super::http_event::{FunctionUrl, MAX_EVENT, ReceivedRequest, function_url_event};
use super::http_stream::{Forwarded, forward};
use super::output::document;
use super::runtime_api::Reply;
use super::session::{Exchange, Session};
use super::start::{Outputs, start};

/// Requests accepted and waiting for the sandbox; more wait in their connections.
const WAITING: usize = 64;
/// The request id of the event whose size is checked before it is queued (its real id has
/// the same length).
const SIZE_PROBE_ID: &str = "00000000-0000-4000-8000-000000000000";

/// One request waiting for the sandbox, and where its response goes.
struct Job {
    request: ReceivedRequest,
    started: Instant,
    response: oneshot::Sender<Response<ChannelBody>>,
}

/// Run `scar local --http`.
pub(super) async fn run_http(
    args: FunctionArgs,
    address: String,
    dir: Option<PathBuf>,
) -> Result<ExitCode, LocalError> {
    let (data_dir, temporary) = match dir {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!("scar-local-http-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&data_dir).map_err(io(&data_dir))?;
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|error| LocalError::Bind {
            address: address.clone(),
            error,
        })?;
    let local = listener.local_addr().map_err(|error| LocalError::Bind {
        address: address.clone(),
        error,
    })?;
    let (mut session, context) = start(&args, &data_dir, Vec::new(), Outputs::AsTemplate).await?;
    let url = FunctionUrl::of(&context.function.name, &args.region);
    eprintln!(
        "scar local: serving {} as a Function URL ({}) on http://{local}/, one request at a time; Ctrl-C to stop",
        context.function.logical_id,
        url.domain()
    );
    eprintln!(
        "scar local: try: curl --data-binary @examples/demo/sample.png http://{local}/sample.png -o grey.png"
    );
    let (jobs, mut queue) = mpsc::channel(WAITING);
    let server = tokio::spawn(accept(listener, jobs));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut result = Ok(());
    let mut served_count = 0u64;
    loop {
        let job = tokio::select! {
            _ = &mut ctrl_c => break,
            job = queue.recv() => job,
        };
        let Some(job) = job else { break };
        // Ctrl-C during a request stops the sandbox at once; the client's response is cut.
        let served = tokio::select! {
            _ = &mut ctrl_c => {
                eprintln!("scar local: interrupted");
                break;
            }
            served = serve(&mut session, &url, job) => served,
        };
        match served {
            Ok(Reached::Function) => served_count += 1,
            Ok(Reached::Refused) => {}
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    server.abort();
    session.stop().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    eprintln!("scar local: stopped; {served_count} requests reached the function");
    result.map(|()| ExitCode::SUCCESS)
}

/// Accept connections and queue their requests for the sandbox.
async fn accept(listener: TcpListener, jobs: mpsc::Sender<Job>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        // Answers go out at once: Nagle's delay would hold a streamed answer's small pieces.
        let _ = stream.set_nodelay(true);
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                receive(request, jobs.clone(), Arc::new((peer, local)))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%err, "HTTP connection ended");
            }
        });
    }
}

/// Read one request (refusing one too large for Lambda), queue it, and wait for its response.
async fn receive(
    request: Request<Incoming>,
    jobs: mpsc::Sender<Job>,
    addresses: Arc<(SocketAddr, SocketAddr)>,
) -> Result<Response<ChannelBody>, Infallible> {
    let started = Instant::now();
    let received = SystemTime::now();
    let (parts, body) = request.into_parts();
    let label = format!("{} {}", parts.method, parts.uri.path());
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body past the limit is refused unread: curl waits for `100 Continue` and stops there.
    let body = match declared {
        Some(length) if length > MAX_EVENT as u64 => Err(Limited::TooLarge),
        _ => read_limited(body, MAX_EVENT).await,
    };
    let body = match body {
        Ok(body) => body,
        Err(Limited::TooLarge) => return Ok(too_large(&label, started)),
        Err(Limited::Broken(err)) => {
            let (head, body) = (
                Head::typed(StatusCode::BAD_REQUEST, "text/plain"),
                format!("the request body could not be read: {err}\n"),
            );
            return Ok(answered(&label, started, head, Bytes::from(body), None));
        }
    };
    let (local, peer) = (addresses.1, addresses.0);
    let request = ReceivedRequest {
        parts,
        body,
        peer,
        local,
        received,
    };
    let (response, waiting) = oneshot::channel();
    let job = Job {
        request,
        started,
        response,
    };
    if jobs.send(job).await.is_ok()
        && let Ok(response) = waiting.await
    {
        return Ok(response);
    }
    let head = Head::typed(StatusCode::SERVICE_UNAVAILABLE, "text/plain");
    let body = Bytes::from_static(b"scar local is stopping\n");
    Ok(answered(&label, started, head, body, None))
}

/// Why a request body was not read whole.
enum Limited {
    TooLarge,
    Broken(hyper::Error),
}

/// The body, unless it passes `limit` bytes.
async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, Limited> {
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Limited::Broken)?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > limit {
                return Err(Limited::TooLarge);
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(read.freeze())
}

/// The `413` a Function URL sends for a request Lambda cannot take.
fn too_large(label: &str, started: Instant) -> Response<ChannelBody> {
    let body = serde_json::json!({
        "Message": format!("Request must be smaller than {MAX_EVENT} bytes for the InvokeFunction operation")
    });
    let head = Head::typed(StatusCode::PAYLOAD_TOO_LARGE, "application/json");
    let note = Some("the event passes Lambda's 6 MB request limit".to_owned());
    answered(label, started, head, Bytes::from(body.to_string()), note)
}

/// A whole response, its line printed.
fn answered(
    label: &str,
    started: Instant,
    head: Head,
    body: Bytes,
    note: Option<String>,
) -> Response<ChannelBody> {
    Served {
        label,
        status: head.status,
        bytes: body.len() as u64,
        started,
        note,
    }
    .print();
    head.response(ChannelBody::whole(body))
}

/// Whether a request went to the function.
enum Reached {
    Function,
    /// Refused before (its event is too large for Lambda).
    Refused,
}

/// Send one request to the sandbox and its answer to the client. Only a failure to run the
/// sandbox at all is an error; the function's own failures are responses.
async fn serve(session: &mut Session, url: &FunctionUrl, job: Job) -> Result<Reached, LocalError> {
    let Job {
        request,
        started,
        response,
    } = job;
    let label = format!("{} {}", request.parts.method, request.parts.uri.path());
    let event = |request_id: &str| {
        // A document of strings, numbers and maps always serialises.
        Bytes::from(
            serde_json::to_vec(&function_url_event(&request, url, request_id)).unwrap_or_default(),
        )
    };
    if event(SIZE_PROBE_ID).len() >= MAX_EVENT {
        let _ = response.send(too_large(&label, started));
        return Ok(Reached::Refused);
    }
    let exchange = session.exchange(event, |request_id| {
        eprintln!("{label}: started (request {request_id})")
    });
    let exchange = match exchange.await {
        Ok(exchange) => exchange,
        Err(err) => {
            let head = Head::typed(StatusCode::BAD_GATEWAY, "text/plain");
            let body = Bytes::from(format!("scar local: {err}\n"));
            let _ = response.send(answered(&label, started, head, body, None));
            return Err(err.into());
        }
    };
    let (head, body, note) = match exchange {
        Exchange::Replied(Reply::Stream(stream)) => {
            let forwarded = forward(stream, response, &label, started, session.limit()).await;
            if forwarded == Forwarded::TimedOut {
                session.stop().await;
            }
            return Ok(Reached::Function);
        }
        Exchange::Replied(Reply::Response(answer)) => match http_answer::buffered(&answer) {
            Ok((head, body)) => (head, body, None),
            Err(err) => {
                let head = Head::typed(StatusCode::BAD_GATEWAY, "text/plain");
                (head, Bytes::from(format!("{err}\n")), Some(err.to_string()))
            }
        },
        Exchange::Replied(Reply::Error { error_type, body }) => {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|d| d["errorMessage"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let (head, body) = http_answer::error_report(&body);
            (
                head,
                body,
                Some(format!("function error {error_type}: {message}")),
            )
        }
        Exchange::Ended(outcome) => {
            let document = document(&outcome);
            let note = format!(
                "{}: {}",
                document["errorType"].as_str().unwrap_or("Error"),
                document["errorMessage"].as_str().unwrap_or_default()
            );
            let head = Head::typed(StatusCode::BAD_GATEWAY, "application/json");
            (head, Bytes::from(document.to_string()), Some(note))
        }
    };
    let _ = response.send(answered(&label, started, head, body, note));
    Ok(Reached::Function)
}

//! A real S3-compatible server: `s3s-fs` in-process, objects on disk, SigV4 checked by `s3s`.
//!
//! Why s3s-fs: it is a maintained crate from crates.io (no JVM, no Docker, no Python service), it
//! implements the S3 REST protocol with real signature verification (`SimpleAuth`), and it stores
//! each object as a plain file, so tests can also look at what landed on disk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

use crate::service;

pub mod long_keys;

/// The region every test client and every child process is told to use.
pub const REGION: &str = "us-east-1";

/// An `s3s-fs` server on a free loopback port, with its own root directory; stopped on drop.
pub struct S3Server {
    // Field order matters: the runtime (and the server on it) stops before the root is removed.
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    addr: SocketAddr,
    /// Added before every request is served, in microseconds (see [`S3Server::set_latency`]).
    latency: Arc<AtomicU64>,
    access_key: String,
    secret_key: String,
    client: aws_sdk_s3::Client,
    root: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("addr", &self.addr)
            .field("root", &self.root.path())
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts the server on `127.0.0.1:0` with a fresh access key and secret key.
    pub fn start() -> S3Server {
        let root = service::temp_dir("s3");
        let access_key = format!("SCARE2E{}", random_hex(6).to_ascii_uppercase());
        let secret_key = random_hex(20);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3s-fs")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot build a tokio runtime for s3s-fs: {err}"));
        let fs = s3s_fs::FileSystem::new(root.path())
            .unwrap_or_else(|err| panic!("s3s-fs cannot use {}: {err:?}", root.path().display()));
        let s3_service = {
            let mut builder = S3ServiceBuilder::new(long_keys::LongKeys::new(fs));
            builder.set_auth(SimpleAuth::from_single(
                access_key.clone(),
                secret_key.clone(),
            ));
            builder.build()
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|err| panic!("s3s-fs cannot bind 127.0.0.1:0: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("s3s-fs listener has no address: {err}"));
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let latency = Arc::new(AtomicU64::new(0));
        let delay = latency.clone();
        runtime.spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => continue,
                    },
                    _ = &mut stop => break,
                };
                // Without it a small answer waits for the client's delayed ACK (Nagle): ~40 ms
                // per GET, far more than the bootstrap's own work on a 1 KiB object.
                let _ = socket.set_nodelay(true);
                let service = s3_service.clone();
                let delay = delay.clone();
                let delayed = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let service = service.clone();
                        let wait = Duration::from_micros(delay.load(Ordering::Relaxed));
                        async move {
                            if !wait.is_zero() {
                                tokio::time::sleep(wait).await;
                            }
                            service.call(request.map(s3s::Body::from)).await
                        }
                    },
                );
                let conn = http
                    .serve_connection(TokioIo::new(socket), delayed)
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        let client = make_client(&format!("http://{addr}"), &access_key, &secret_key);
        S3Server {
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            addr,
            latency,
            access_key,
            secret_key,
            client,
            root,
        }
    }

    /// Hold every request this long before serving it: the first-byte latency of a real S3
    /// endpoint (tens of milliseconds), which a loopback server lacks. Benchmarks of how
    /// invocations overlap need it: without it every part of an invocation is CPU work on the
    /// same few cores, and nothing waits that concurrency could overlap.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.store(micros, Ordering::Relaxed);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The one access key the server accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key that goes with [`S3Server::access_key`].
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The region clients sign for.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The directory that holds one subdirectory per bucket.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The environment a child process (the bootstrap, `scar`) needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_S3", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            // No instance metadata service here: without this the SDK waits for IMDS timeouts.
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A path-style client with the right credentials.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client.clone()
    }

    /// A client that signs with `secret_key` instead of the right one.
    pub fn client_with_secret(&self, secret_key: &str) -> aws_sdk_s3::Client {
        make_client(&self.endpoint(), &self.access_key, secret_key)
    }

    /// Runs `future` (typically SDK calls) to completion on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.block_on(future),
            None => unreachable!("the runtime lives until drop"),
        }
    }

    /// Creates `bucket`; panics with the S3 error if that fails.
    pub fn create_bucket(&self, bucket: &str) {
        self.block_on(self.client.create_bucket().bucket(bucket).send())
            .unwrap_or_else(|err| panic!("CreateBucket {bucket}: {}", describe(&err)));
    }

    /// Stores `body` at `bucket/key`.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        self.block_on(
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body.to_vec()))
                .send(),
        )
        .unwrap_or_else(|err| panic!("PutObject {bucket}/{key}: {}", describe(&err)));
    }

    /// Stores the file at `path` as `bucket/key`, streamed from disk.
    pub fn put_file(&self, bucket: &str, key: &str, path: &Path) {
        self.block_on(async {
            let body = ByteStream::from_path(path)
                .await
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body)
                .send()
                .await
        })
        .unwrap_or_else(|err| panic!("PutObject {bucket}/{key}: {}", describe(&err)));
    }

    /// The bytes of `bucket/key`, or `None` when there is no such key.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.block_on(async {
            let output = match self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
            {
                Ok(output) => output,
                Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                    return None;
                }
                Err(err) => panic!("GetObject {bucket}/{key}: {}", describe(&err)),
            };
            let bytes = output
                .body
                .collect()
                .await
                .unwrap_or_else(|err| panic!("GetObject {bucket}/{key} body: {err}"));
            Some(bytes.into_bytes().to_vec())
        })
    }

    /// Every key of `bucket` that starts with `prefix`, in the server's (lexicographic) order.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.block_on(async {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.unwrap_or_else(|err| {
                    panic!("ListObjectsV2 {bucket}/{prefix}: {}", describe(&err))
                });
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
            }
            keys
        })
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A client for `endpoint` with path-style addressing, the way S3-compatible servers want it.
pub fn make_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    scar_rootfs::aws::s3_client_with_keys(endpoint, access_key, secret_key)
}

/// The S3 error code and message of an SDK error, or its whole error chain when S3 did not
/// answer (the describer of the bootstrap and `scar`).
pub fn describe<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    scar_rootfs::aws::describe(err, "S3", &[])
}

/// The S3 error code of an SDK error (`SignatureDoesNotMatch`, `NoSuchKey`, ...), if any.
pub fn error_code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|service| service.code())
        .map(str::to_owned)
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .unwrap_or_else(|err| panic!("cannot read /dev/urandom: {err}"));
    hex::encode(buf)
}

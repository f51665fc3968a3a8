//! The S3 client, built on first use so that init never waits on credential or region lookups.
//!
//! TLS is rustls with *ring* (no aws-lc C build in the musl cross builds). With
//! `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` (an S3-compatible server) addressing is path-style,
//! since such servers rarely resolve `<bucket>.<host>` names.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::config::Region;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use tokio::sync::OnceCell;

/// Attempts per S3 request (the SDK's standard retry mode with jittered backoff); streamed
/// bodies from files are rewound for each attempt.
pub const MAX_ATTEMPTS: u32 = 5;

/// Region used when neither the environment nor a profile names one (only off Lambda, where
/// S3-compatible servers ignore it).
const FALLBACK_REGION: &str = "us-east-1";

/// A lazily built S3 client shared by all invocations.
#[derive(Debug)]
pub struct S3 {
    endpoint: Option<String>,
    client: OnceCell<aws_sdk_s3::Client>,
}

impl S3 {
    /// A client for AWS, or for the S3-compatible server at `endpoint`.
    pub fn new(endpoint: Option<String>) -> Self {
        Self {
            endpoint,
            client: OnceCell::new(),
        }
    }

    /// The client, built on first call.
    pub async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| build(self.endpoint.clone()))
            .await
    }
}

async fn build(endpoint: Option<String>) -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    // The loader's own region chain (environment, profile, IMDS) shares its HTTP client; a
    // chain built outside it would have none and panic on its first lookup.
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .load()
        .await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        config = config.region(Region::new(FALLBACK_REGION));
    }
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

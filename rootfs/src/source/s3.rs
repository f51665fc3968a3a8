//! Downloading image archives from S3 (streamed to disk, never held in memory).

use std::path::Path;

use tokio::io::AsyncWriteExt;

use super::error::SourceError;
use crate::options::PullOptions;

/// Download `s3://bucket/key` to `dest`.
pub(super) async fn download(
    bucket: &str,
    key: &str,
    dest: &Path,
    options: &PullOptions,
) -> Result<(), SourceError> {
    let location = format!("s3://{bucket}/{key}");
    let err = |detail: String| SourceError::S3 {
        location: location.clone(),
        detail,
    };
    let client = match &options.s3 {
        Some(c) => c.clone(),
        None => default_client().await,
    };
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| err(describe(&e)))?;
    let mut body = object.body.into_async_read();
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|source| SourceError::Io {
            op: "create",
            path: dest.to_owned(),
            source,
        })?;
    tokio::io::copy(&mut body, &mut file)
        .await
        .map_err(|e| err(e.to_string()))?;
    file.flush().await.map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// What went wrong with a GetObject, in one line with the way out: the service's code and
/// message when S3 answered, the whole error chain when it did not (network, credentials).
fn describe(
    e: &aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> String {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let Some(service) = e.as_service_error() else {
        return aws_sdk_s3::error::DisplayErrorContext(e).to_string();
    };
    let code = service.code().unwrap_or("an unnamed S3 error");
    let message = service
        .message()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    let hint = match code {
        "NoSuchKey" => {
            "the object does not exist: check the bucket and key in the image name and that the archive was uploaded"
        }
        "NoSuchBucket" => "the bucket does not exist: check the bucket in the image name",
        "AccessDenied" => "the function's role (or the AWS credentials) needs s3:GetObject on it",
        _ => "see the S3 error code",
    };
    format!("{code}{message}: {hint}")
}

/// An S3 client from the standard AWS configuration chain, TLS through ring; path-style
/// addressing when an endpoint override points at an S3-compatible server.
async fn default_client() -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    // S3-compatible servers (MinIO, s3s) rarely serve virtual-hosted bucket names.
    let custom_endpoint = config.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
    let s3_config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

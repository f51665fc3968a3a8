//! AWS clients for every crate: one SDK configuration loader (TLS, credentials, region, endpoint
//! override, retries), the S3 and ECR clients built from it, and one describer of SDK errors.
//!
//! TLS is rustls with *ring* (no aws-lc C build in the musl cross builds). With an endpoint
//! override (an S3-compatible server) S3 addressing is path-style, since such servers rarely
//! resolve `<bucket>.<host>` names. Other crates build their clients from [`load`]'s
//! configuration (`scar layer` its Lambda client) so that none builds its own HTTP client.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use tokio::sync::OnceCell;

/// Attempts per S3 request of the bootstrap and of `s3://` image sources (the SDK's standard
/// retry mode with jittered backoff); streamed bodies from files are rewound for each attempt.
pub const S3_MAX_ATTEMPTS: u32 = 5;

/// Region used for S3 when neither the environment nor a profile names one (only off Lambda,
/// where S3-compatible servers ignore it).
pub const FALLBACK_REGION: &str = "us-east-1";

/// `AWS_ENDPOINT_URL_S3`: an S3-compatible server for S3 alone.
pub const AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";

/// `AWS_ENDPOINT_URL`: an endpoint for every service.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// What a caller may change in the standard configuration chain.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// The region; `None` takes it from the environment, the profile or IMDS.
    pub region: Option<String>,
    /// Attempts per request in the standard retry mode; `None` keeps the SDK's default.
    pub max_attempts: Option<u32>,
}

/// The HTTP client of every AWS SDK client: hyper with rustls on *ring*, trusting
/// [`trust_store`].
pub fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    let context = TlsContext::builder()
        .with_trust_store(trust_store(|name| std::env::var_os(name)))
        .build();
    let builder =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring));
    match context {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(_) => builder.build_https(),
    }
}

/// The roots an AWS connection trusts: Mozilla's, compiled in (as the registry client's are),
/// and the system's store as well only when `SSL_CERT_FILE` or `SSL_CERT_DIR` names one (a
/// private CA in front of an S3-compatible server, say).
///
/// Reading the system's store is a cold start's first wait: on this Debian host, 22 ms of disk
/// reads through `/etc/ssl/certs`' hundred symlinks before the first request, on Lambda a
/// bundle of 200 KB from a cold disk, and every AWS endpoint chains to a root Mozilla lists.
pub fn trust_store(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> TrustStore {
    let mut store = TrustStore::empty().with_native_roots(system_store_named(var));
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        store.add_pem_certificate(pem(cert));
    }
    store
}

/// Whether `SSL_CERT_FILE` or `SSL_CERT_DIR` names a store of the system's.
fn system_store_named(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

/// A DER certificate as PEM.
fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in body.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}

/// The SDK configuration from the standard chain (environment, profile, on Lambda the
/// function's role) with [`http_client`] and `settings`.
pub async fn load(settings: &AwsSettings) -> aws_config::SdkConfig {
    // The loader's own region and credential chains share its HTTP client; a chain built
    // outside it would have none and panic on its first lookup.
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(attempts) = settings.max_attempts {
        loader = loader.retry_config(RetryConfig::standard().with_max_attempts(attempts));
    }
    loader.load().await
}

/// An S3 client from `shared`: [`FALLBACK_REGION`] when it names no region, path-style
/// addressing at `endpoint` when one is given.
pub fn s3_client(shared: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(shared);
    if shared.region().is_none() {
        config = config.region(aws_sdk_s3::config::Region::new(FALLBACK_REGION));
    }
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// An S3 client for the S3-compatible server at `endpoint` with static keys, in
/// [`FALLBACK_REGION`], path-style (`scar local`'s own server, the tests' server).
pub fn s3_client_with_keys(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
) -> aws_sdk_s3::Client {
    let credentials =
        aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "scar-static");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(FALLBACK_REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .http_client(http_client())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An ECR client for `region` from the standard chain.
pub async fn ecr_client(region: &str) -> aws_sdk_ecr::Client {
    let shared = load(&AwsSettings {
        region: Some(region.to_owned()),
        ..AwsSettings::default()
    })
    .await;
    aws_sdk_ecr::Client::new(&shared)
}

/// The S3 endpoint override of an environment: `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`
/// (an empty value counts as unset).
pub fn s3_endpoint_from(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    [AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL]
        .into_iter()
        .find_map(|name| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
}

/// An S3 client built on first use and shared by its clones, so that building one (credential
/// and region lookups) never delays a start that does not use S3. Retries are
/// [`S3_MAX_ATTEMPTS`].
#[derive(Clone, Debug, Default)]
pub struct S3 {
    endpoint: Option<String>,
    client: Arc<OnceCell<aws_sdk_s3::Client>>,
}

impl S3 {
    /// A client for AWS, or for the S3-compatible server at `endpoint`.
    pub fn new(endpoint: Option<String>) -> Self {
        Self {
            endpoint,
            client: Arc::new(OnceCell::new()),
        }
    }

    /// A client whose endpoint override is the process environment's ([`s3_endpoint_from`]).
    pub fn from_env() -> Self {
        Self::new(s3_endpoint_from(|name| std::env::var(name).ok()))
    }

    /// The client, built on first call.
    pub async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| async {
                let shared = load(&AwsSettings {
                    region: None,
                    max_attempts: Some(S3_MAX_ATTEMPTS),
                })
                .await;
                s3_client(&shared, self.endpoint.as_deref())
            })
            .await
    }
}

impl From<aws_sdk_s3::Client> for S3 {
    /// A handle on a client built already (with static keys, say).
    fn from(client: aws_sdk_s3::Client) -> Self {
        Self {
            endpoint: None,
            client: Arc::new(OnceCell::new_with(Some(client))),
        }
    }
}

/// A failed SDK call in one line with the way out: the service's code and message when the
/// service answered, with the hint `hints` gives for that code (else "see the `service` error
/// code"); the whole error chain when it did not answer (network, no credentials).
pub fn describe<E, R>(err: &SdkError<E, R>, service: &str, hints: &[(&str, &str)]) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let Some(answer) = err.as_service_error() else {
        return DisplayErrorContext(err).to_string();
    };
    let message = answer
        .message()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    let Some(code) = answer.code() else {
        return format!(
            "an unnamed {service} error{message}: {}",
            DisplayErrorContext(err)
        );
    };
    let hint = hints.iter().find(|(known, _)| *known == code).map_or_else(
        || format!("see the {service} error code"),
        |(_, hint)| (*hint).to_owned(),
    );
    format!("{code}{message}: {hint}")
}

/// An error that is no service's answer (a body stream that broke off) with its whole chain of
/// causes, the way [`describe`] shows one.
pub fn error_chain<E: std::error::Error>(err: &E) -> String {
    DisplayErrorContext(err).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;

    // The raw response is a type parameter; `()` stands in for the HTTP response here.
    fn service_error(code: Option<&str>, message: &str) -> SdkError<GetObjectError, ()> {
        let mut meta = ErrorMetadata::builder().message(message);
        if let Some(code) = code {
            meta = meta.code(code);
        }
        SdkError::service_error(GetObjectError::generic(meta.build()), ())
    }

    const HINTS: &[(&str, &str)] = &[("AccessDenied", "grant s3:GetObject")];

    #[test]
    fn a_known_code_gets_its_hint_and_the_message() {
        let err = service_error(Some("AccessDenied"), "no");
        assert_eq!(
            describe(&err, "S3", HINTS),
            "AccessDenied (no): grant s3:GetObject"
        );
    }

    #[test]
    fn an_unknown_code_points_at_the_service_error_code() {
        let err = service_error(Some("SlowDown"), "later");
        assert_eq!(
            describe(&err, "S3", HINTS),
            "SlowDown (later): see the S3 error code"
        );
    }

    #[test]
    fn an_error_without_a_code_shows_the_error_chain() {
        let err = service_error(None, "odd");
        let text = describe(&err, "S3", HINTS);
        assert!(text.starts_with("an unnamed S3 error (odd): "), "{text}");
    }

    #[test]
    fn an_error_without_an_answer_shows_the_error_chain() {
        let err: SdkError<GetObjectError, ()> =
            SdkError::construction_failure(std::io::Error::other("no credentials in the chain"));
        let text = describe(&err, "S3", HINTS);
        assert!(text.contains("no credentials in the chain"), "{text}");
    }

    #[test]
    fn the_s3_endpoint_override_prefers_the_s3_variable_and_skips_empty_values() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            s3_endpoint_from(env(&[
                (AWS_ENDPOINT_URL, "http://all:1"),
                (AWS_ENDPOINT_URL_S3, "http://s3:2"),
            ])),
            Some("http://s3:2".to_owned())
        );
        assert_eq!(
            s3_endpoint_from(env(&[
                (AWS_ENDPOINT_URL, " http://all:1 "),
                (AWS_ENDPOINT_URL_S3, " "),
            ])),
            Some("http://all:1".to_owned())
        );
        assert_eq!(s3_endpoint_from(env(&[])), None);
    }

    #[test]
    fn the_system_store_is_read_only_when_a_variable_names_one() {
        use std::ffi::OsString;
        let none = |_: &str| None::<OsString>;
        assert!(!system_store_named(none));
        let file = |n: &str| (n == "SSL_CERT_FILE").then(|| OsString::from("/etc/ca.pem"));
        assert!(system_store_named(file));
        let dir = |n: &str| (n == "SSL_CERT_DIR").then(|| OsString::from("/etc/ssl/certs"));
        assert!(system_store_named(dir));
        let empty = |n: &str| (n == "SSL_CERT_FILE").then(OsString::new);
        assert!(!system_store_named(empty));
    }

    #[test]
    fn the_compiled_in_roots_are_given_as_pem_that_decodes_to_them() {
        use base64::Engine;
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        assert!(roots.len() > 100, "{} roots", roots.len());
        for der in roots {
            let pem = String::from_utf8(pem(der)).unwrap();
            let mut lines: Vec<&str> = pem.lines().collect();
            assert_eq!(lines.remove(0), "-----BEGIN CERTIFICATE-----");
            assert_eq!(lines.pop(), Some("-----END CERTIFICATE-----"));
            assert!(lines.iter().all(|l| l.len() <= 64));
            let body = base64::engine::general_purpose::STANDARD
                .decode(lines.concat())
                .unwrap();
            assert_eq!(body, der.as_ref());
        }
        // What the client does with them on its first connection (and panics if it fails):
        // every one becomes a root of a rustls store.
        let mut store = rustls::RootCertStore::empty();
        for der in roots {
            let pem = pem(der);
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                store.add(cert.unwrap()).unwrap();
            }
        }
        assert_eq!(store.len(), roots.len());
    }
}

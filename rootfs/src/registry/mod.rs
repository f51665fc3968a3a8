//! A small client for the OCI distribution API: manifests and blobs of one repository, with
//! authentication, retries, and redirects to blob storage followed without credentials.

pub mod auth;
pub mod download;
mod error;
pub mod guard;
pub mod manifest;
pub mod plan;
pub mod ranged;
pub mod retry;
pub mod settings;
pub mod window;

pub use error::RegistryError;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use tokio::sync::Mutex;

use crate::digest::Digest;
use crate::options::Credentials;
use crate::reference::Reference;
use auth::Challenge;
use guard::Internal;
use plan::{Plan, Span};

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Manifests and configs are small; a registry sending more is misbehaving.
const MAX_DOCUMENT: usize = 8 * 1024 * 1024;

/// A client for one repository of one registry.
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    host: String,
    repository: String,
    credentials: Option<Credentials>,
    authorization: Mutex<Option<String>>,
    /// `SCAR_INSECURE_REGISTRIES`: also the plain-HTTP token realms allowed.
    insecure: Vec<String>,
    /// The internal kinds of the registry's own addresses, resolved at the first redirect.
    own_kinds: tokio::sync::OnceCell<Vec<Internal>>,
    /// How large blobs are cut into concurrent range requests.
    plan: Plan,
    /// The parts in flight, shared by every ranged blob of the pull this client serves.
    window: Arc<window::Window>,
}

impl RegistryClient {
    /// A client for `reference`'s repository; `insecure` lists `host:port`s reached over HTTP.
    pub fn new(
        reference: &Reference,
        credentials: Option<Credentials>,
        insecure: &[String],
    ) -> Result<Self, RegistryError> {
        let host = reference.api_host().to_owned();
        let scheme = if insecure
            .iter()
            .any(|h| h == &reference.registry || h == &host)
        {
            "http"
        } else {
            "https"
        };
        let http = reqwest::Client::builder()
            // Redirects are followed by hand so Authorization never reaches blob storage.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("scar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Unreachable {
                host: host.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: format!("{scheme}://{host}"),
            host,
            repository: reference.repository.clone(),
            credentials,
            authorization: Mutex::new(None),
            insecure: insecure.to_vec(),
            own_kinds: tokio::sync::OnceCell::new(),
            plan: Plan::new(None),
            window: window::Window::new(Plan::new(None).in_flight),
        })
    }

    /// Fetch large blobs with `in_flight` concurrent range requests (`SCAR_PULL_RANGES`;
    /// `None`: the default, 1: one stream per blob).
    pub fn with_ranges(mut self, in_flight: Option<usize>) -> Self {
        self.plan = Plan::new(in_flight);
        self.window = window::Window::new(self.plan.in_flight);
        self
    }

    /// The slots of parts in flight that this client's ranged blobs share.
    pub fn window(&self) -> &Arc<window::Window> {
        &self.window
    }

    /// How large blobs are cut into concurrent range requests.
    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// Whether `url` is on the registry's own scheme, host and port.
    fn is_own(&self, url: &str) -> bool {
        url.strip_prefix(self.base.as_str())
            .is_some_and(|path| path.starts_with('/'))
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Fetch a manifest or index by tag or digest: its bytes, content type and digest.
    pub async fn manifest(
        &self,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let what = format!("manifest {reference}");
        let response = self
            .get(&url, &what, Some(manifest::ACCEPT), Span::WHOLE)
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.small_body(response, &what).await?;
        let digest = Digest::of(&body);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(RegistryError::ManifestDigest {
                host: self.host.clone(),
                expected,
                actual: digest,
            });
        }
        Ok((body, content_type, digest))
    }

    /// Fetch a small blob (an image config) whole, verified.
    pub async fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        let response = self.blob(digest, 0).await?;
        let body = self.small_body(response, &what).await?;
        let actual = Digest::of(&body);
        if actual != *digest {
            return Err(RegistryError::ManifestDigest {
                host: self.host.clone(),
                expected: *digest,
                actual,
            });
        }
        Ok(body)
    }

    /// Start a blob download at byte `offset` (a `Range` request when > 0). A registry that
    /// ignores the range answers 200 with the whole blob: the caller must check the status.
    pub async fn blob(&self, digest: &Digest, offset: u64) -> Result<Response, RegistryError> {
        self.blob_span(digest, Span::from(offset)).await
    }

    /// Request bytes `span` of a blob from the registry, its redirects followed (the final URL
    /// is the response's `url()`). A registry that ignores the range answers 200 with the
    /// whole blob: the caller must check for 206.
    pub async fn blob_span(&self, digest: &Digest, span: Span) -> Result<Response, RegistryError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        self.get(&url, &format!("blob {digest}"), None, span).await
    }

    /// Request bytes `span` of a blob at `url`, the storage URL a registry redirected an
    /// earlier range to: one GET without credentials (unless `url` is the registry's own),
    /// retried on connection errors, 429 and 5xx, redirects not followed. Any status is
    /// returned: the caller falls back to the registry when it is not 206.
    pub async fn storage_span(
        &self,
        url: &str,
        digest: &Digest,
        span: Span,
    ) -> Result<Response, RegistryError> {
        let authorization = self.authorization.lock().await.clone();
        let what = format!("blob {digest}");
        self.send_retrying(url, &what, None, span, authorization.as_deref())
            .await
    }

    /// Whether `url` is elsewhere than the registry (blob storage it redirected to).
    pub fn is_elsewhere(&self, url: &reqwest::Url) -> bool {
        !self.is_own(url.as_str())
    }

    async fn small_body(&self, response: Response, what: &str) -> Result<Vec<u8>, RegistryError> {
        use futures::StreamExt;
        let mut stream = response.bytes_stream();
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Body {
                host: self.host.clone(),
                what: what.to_owned(),
                detail: guard::describe_reqwest(e),
            })?;
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(RegistryError::TooLarge {
                    host: self.host.clone(),
                    what: what.to_owned(),
                    limit: MAX_DOCUMENT,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// GET with authentication, retries and credential-free redirects; returns a 2xx response.
    async fn get(
        &self,
        url: &str,
        what: &str,
        accept: Option<&str>,
        span: Span,
    ) -> Result<Response, RegistryError> {
        let mut authenticated = false;
        loop {
            let authorization = self.authorization.lock().await.clone();
            let response = self
                .send_retrying(url, what, accept, span, authorization.as_deref())
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated {
                authenticated = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                self.authenticate(challenge, status).await?;
                continue;
            }
            if status.is_redirection() {
                return self.follow_redirect(response, what, span).await;
            }
            return self.check(response, what, authorization.is_some());
        }
    }

    fn check(
        &self,
        response: Response,
        what: &str,
        had_auth: bool,
    ) -> Result<Response, RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                host: self.host.clone(),
                repository: self.repository.clone(),
                status: status.as_u16(),
                had_credentials: had_auth || self.credentials.is_some(),
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                host: self.host.clone(),
                repository: self.repository.clone(),
                what: what.to_owned(),
                hint: if what.starts_with("manifest") {
                    "check the repository name and tag"
                } else {
                    "the image names a layer the registry does not have; push the image again"
                },
            },
            other => RegistryError::Status {
                host: self.host.clone(),
                what: what.to_owned(),
                status: other.as_u16(),
                retried: retry::retryable(other),
            },
        })
    }

    /// Blob storage (S3, a CDN) gets the request without our Authorization: it has its own
    /// signature in the URL, and a second credential makes S3 refuse the request.
    async fn follow_redirect(
        &self,
        mut response: Response,
        what: &str,
        span: Span,
    ) -> Result<Response, RegistryError> {
        for _ in 0..MAX_REDIRECTS {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| RegistryError::Status {
                    host: self.host.clone(),
                    what: what.to_owned(),
                    status: response.status().as_u16(),
                    retried: false,
                })?;
            let next = response
                .url()
                .join(location)
                .map_err(|e| RegistryError::Body {
                    host: self.host.clone(),
                    what: what.to_owned(),
                    detail: format!("bad redirect `{}`: {e}", guard::redact_url(location)),
                })?;
            self.check_destination(&next, what).await?;
            response = self
                .send_retrying(next.as_str(), what, None, span, None)
                .await?;
            if !response.status().is_redirection() {
                return self.check(response, what, false);
            }
        }
        Err(RegistryError::Status {
            host: self.host.clone(),
            what: format!("{what} (too many redirects)"),
            status: response.status().as_u16(),
            retried: false,
        })
    }

    async fn authenticate(
        &self,
        challenge: Option<Challenge>,
        status: StatusCode,
    ) -> Result<(), RegistryError> {
        let credentials = match &self.credentials {
            Some(c) => Some(c.clone()),
            None => match auth::ecr_region(&self.host) {
                Some(region) => Some(auth::ecr_credentials(&self.host, region).await?),
                None => None,
            },
        };
        let header = match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                self.check_realm(&realm).await?;
                auth::bearer_token(
                    &self.http,
                    &self.host,
                    &self.repository,
                    &realm,
                    service.as_deref(),
                    scope.as_deref(),
                    credentials.as_ref(),
                )
                .await?
            }
            Some(Challenge::Basic) | None => match &credentials {
                Some(c) => auth::basic(c),
                None => {
                    return Err(RegistryError::Unauthorized {
                        host: self.host.clone(),
                        repository: self.repository.clone(),
                        status: status.as_u16(),
                        had_credentials: false,
                    });
                }
            },
        };
        *self.authorization.lock().await = Some(header);
        Ok(())
    }

    /// A token realm may get our credentials (and hands out the token we send the registry)
    /// only over HTTPS, or over plain HTTP when SCAR_INSECURE_REGISTRIES lists its host, and
    /// never on an internal address the registry is not on itself.
    async fn check_realm(&self, realm: &str) -> Result<(), RegistryError> {
        let url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Token {
            host: self.host.clone(),
            realm: guard::redact_url(realm),
            detail: format!("the realm of the registry's challenge is not a URL ({e})"),
        })?;
        let host = url.host_str().unwrap_or_default();
        let realm_host = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let listed = self
            .insecure
            .iter()
            .any(|h| h == &realm_host || (url.port().is_none() && h == host));
        match url.scheme() {
            "https" => {}
            "http" if listed => {}
            "http" => {
                return Err(RegistryError::InsecureRealm {
                    host: self.host.clone(),
                    realm: guard::redact_url(realm),
                    realm_host,
                });
            }
            other => {
                return Err(RegistryError::Token {
                    host: self.host.clone(),
                    realm: guard::redact_url(realm),
                    detail: format!("the realm's scheme `{other}` is neither https nor http"),
                });
            }
        }
        self.check_destination(&url, "a token").await
    }

    /// Refuse `url` when it is on a loopback, link-local or unspecified address (its name
    /// resolved first) of a kind the registry's own address is not.
    async fn check_destination(&self, url: &reqwest::Url, what: &str) -> Result<(), RegistryError> {
        let Some(host) = url.host_str() else {
            return Ok(()); // reqwest refuses a URL without a host by itself
        };
        let kinds = guard::internal_kinds(host, url.port_or_known_default().unwrap_or(443)).await;
        if kinds.is_empty() {
            return Ok(());
        }
        let own = self
            .own_kinds
            .get_or_init(|| async {
                match reqwest::Url::parse(&self.base) {
                    Ok(base) => {
                        let port = base.port_or_known_default().unwrap_or(443);
                        guard::internal_kinds(base.host_str().unwrap_or_default(), port).await
                    }
                    Err(_) => Vec::new(),
                }
            })
            .await;
        match kinds.into_iter().find(|k| !own.contains(k)) {
            Some(kind) => Err(RegistryError::InternalDestination {
                host: self.host.clone(),
                what: what.to_owned(),
                target: guard::redact_url(url.as_str()),
                kind,
            }),
            None => Ok(()),
        }
    }

    async fn send_retrying(
        &self,
        url: &str,
        what: &str,
        accept: Option<&str>,
        span: Span,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        // Credentials go to the registry's own scheme, host and port, nowhere else.
        let own = self.is_own(url);
        let authorization = authorization.filter(|_| own).and_then(auth::header);
        let mut attempt = 0;
        loop {
            let mut request = self.http.get(url);
            if let Some(a) = accept {
                request = request.header(ACCEPT, a);
            }
            if let Some(a) = &authorization {
                request = request.header(AUTHORIZATION, a.clone());
            }
            if let Some(range) = span.header() {
                request = request.header(RANGE, range);
            }
            let last = attempt + 1 >= retry::ATTEMPTS;
            match request.send().await {
                Ok(response) if retry::retryable(response.status()) && !last => {
                    let wait = retry::retry_after(response.headers())
                        .unwrap_or_else(|| retry::backoff(attempt));
                    tracing::info!(
                        host = %self.host, %what, status = response.status().as_u16(),
                        wait_ms = wait.as_millis() as u64, "registry asked to retry"
                    );
                    tokio::time::sleep(wait).await;
                }
                Ok(response) => return Ok(response),
                Err(err) if !last && !err.is_builder() => {
                    let wait = retry::backoff(attempt);
                    let err = guard::describe_reqwest(err);
                    tracing::info!(host = %self.host, %what, %err, "request failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(err) => {
                    return Err(RegistryError::Unreachable {
                        host: self.host.clone(),
                        detail: guard::describe_reqwest(err),
                    });
                }
            }
            attempt += 1;
        }
    }
}

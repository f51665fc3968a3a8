//! Why the registry could not give what was asked, in words that say what to check.

use super::guard::Internal;
use super::manifest::ManifestError;
use crate::digest::Digest;

/// Why the registry could not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No answer at all.
    #[error(
        "cannot reach registry {host} ({detail}): check the network, the host name, and SCAR_INSECURE_REGISTRIES for plain-HTTP registries"
    )]
    Unreachable {
        /// Host.
        host: String,
        /// What failed.
        detail: String,
    },
    /// 401/403.
    #[error("registry {host} answered {status} for {repository}: {}", if *had_credentials { "check SCAR_REGISTRY_USERNAME and SCAR_REGISTRY_PASSWORD, and that they may pull this repository" } else { "set SCAR_REGISTRY_USERNAME and SCAR_REGISTRY_PASSWORD" })]
    Unauthorized {
        /// Host.
        host: String,
        /// Repository.
        repository: String,
        /// Status code.
        status: u16,
        /// Whether credentials were sent.
        had_credentials: bool,
    },
    /// Token service failure.
    #[error("the token service {realm} of registry {host} failed: {detail}")]
    Token {
        /// Host.
        host: String,
        /// Token endpoint.
        realm: String,
        /// What failed.
        detail: String,
    },
    /// A token realm over plain HTTP that SCAR_INSECURE_REGISTRIES does not list.
    #[error(
        "registry {host} sends token requests to {realm} over plain HTTP: refusing it, a token (and any SCAR_REGISTRY_PASSWORD) would cross the network in clear. Use a registry whose token service speaks HTTPS, or, if that service is trusted, add {realm_host} to SCAR_INSECURE_REGISTRIES"
    )]
    InsecureRealm {
        /// Registry host.
        host: String,
        /// Token endpoint, without its query.
        realm: String,
        /// The realm's `host:port`, as SCAR_INSECURE_REGISTRIES would list it.
        realm_host: String,
    },
    /// A redirect or token realm aimed at this machine's own addresses.
    #[error(
        "registry {host} sent the request for {what} to {target}, {kind} address: refusing it, a registry may not aim requests at this machine's own services (the Lambda Runtime API, the instance metadata service). If that service is really the registry's storage, reach the registry itself through an address of the same kind (such as 127.0.0.1:PORT)"
    )]
    InternalDestination {
        /// Registry host.
        host: String,
        /// What was being fetched, or `a token`.
        what: String,
        /// The destination, without its query.
        target: String,
        /// What kind of address it is.
        kind: Internal,
    },
    /// ECR credentials could not be obtained.
    #[error(
        "cannot get ECR credentials for {host}: {detail}. The function's role needs ecr:GetAuthorizationToken and ecr:BatchGetImage/GetDownloadUrlForLayer"
    )]
    Ecr {
        /// Host.
        host: String,
        /// What failed.
        detail: String,
    },
    /// 404.
    #[error("{what} not found in {host}/{repository}: {hint}")]
    NotFound {
        /// Host.
        host: String,
        /// Repository.
        repository: String,
        /// The manifest or blob.
        what: String,
        /// What to check.
        hint: &'static str,
    },
    /// Any other status, after retries.
    #[error("registry {host} answered {status} for {what}{}", if *retried { " after retries" } else { "" })]
    Status {
        /// Host.
        host: String,
        /// The manifest or blob.
        what: String,
        /// Status code.
        status: u16,
        /// Whether it was retried.
        retried: bool,
    },
    /// Manifest content did not match the digest asked for.
    #[error(
        "manifest {expected} from {host} has digest {actual}: the registry sent different content, refusing it"
    )]
    ManifestDigest {
        /// Host.
        host: String,
        /// Asked for.
        expected: Digest,
        /// Got.
        actual: Digest,
    },
    /// Body read failure.
    #[error("reading {what} from {host} failed: {detail}")]
    Body {
        /// Host.
        host: String,
        /// The manifest or blob.
        what: String,
        /// What failed.
        detail: String,
    },
    /// A manifest or config too large to be one.
    #[error("{what} from {host} is larger than {limit} bytes: refusing it")]
    TooLarge {
        /// Host.
        host: String,
        /// The document.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// Bad document.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

//! Registry authentication: the bearer-token flow of the distribution spec (Docker Hub's
//! anonymous tokens included), HTTP basic, and Amazon ECR through `GetAuthorizationToken`.

use base64::Engine as _;
use tracing::instrument::WithSubscriber as _;

use super::error::RegistryError;
use super::guard;
use crate::options::Credentials;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=...,service=...,scope=...`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
        /// `scope` parameter, if the registry named one.
        scope: Option<String>,
    },
    /// `Basic realm=...`.
    Basic,
}

impl Challenge {
    /// Parse a `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Option<Self> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Self::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Some(Self::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `k="v", k2=v2` pairs; quoted values may contain commas (scopes do).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_owned(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// `Authorization: Basic ...` for credentials (see [`header`] to send it).
pub fn basic(credentials: &Credentials) -> String {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// An `Authorization` value marked sensitive, so that no client or library log prints it.
pub fn header(value: &str) -> Option<reqwest::header::HeaderValue> {
    let mut header = reqwest::header::HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Ask a token service for a pull token for `repository`. The caller has checked that `realm`
/// may receive `credentials` (see `RegistryClient::check_realm`); no redirect is followed.
pub async fn bearer_token(
    http: &reqwest::Client,
    host: &str,
    repository: &str,
    realm: &str,
    service: Option<&str>,
    scope: Option<&str>,
    credentials: Option<&Credentials>,
) -> Result<String, RegistryError> {
    let wanted_scope = format!("repository:{repository}:pull");
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = service {
        query.push(("service", s));
    }
    query.push(("scope", scope.unwrap_or(&wanted_scope)));
    let mut request = http.get(realm).query(&query);
    if let Some(value) = credentials.and_then(|c| header(&basic(c))) {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    let token_err = |detail: String| RegistryError::Token {
        host: host.to_owned(),
        realm: guard::redact_url(realm),
        detail,
    };
    let response = request
        .send()
        .await
        .map_err(|e| token_err(guard::describe_reqwest(e)))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            host: host.to_owned(),
            repository: repository.to_owned(),
            status: status.as_u16(),
            had_credentials: credentials.is_some(),
        });
    }
    if !status.is_success() {
        return Err(token_err(format!("answered {status}")));
    }
    let body: TokenResponse = response.json().await.map_err(|e| {
        token_err(format!(
            "unreadable token response: {}",
            guard::describe_reqwest(e)
        ))
    })?;
    body.token
        .or(body.access_token)
        .filter(|t| !t.is_empty())
        .map(|t| format!("Bearer {t}"))
        .ok_or_else(|| token_err("the response holds no token".into()))
}

/// The region of an Amazon ECR registry host, matched exactly:
/// `<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, with an optional `:port`
/// (a proxy or a test may name a port; ECR itself listens on 443). Anything else, such as
/// `<account>.dkr.ecr.<region>.amazonaws.com.evil.net`, is not ECR: the function's role would
/// otherwise hand an ECR token to whoever owns that name.
pub fn ecr_region(host: &str) -> Option<&str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let labels: Vec<&str> = name.split('.').collect();
    let (account, endpoint, region, china) = match labels.as_slice() {
        [account, "dkr", endpoint, region, "amazonaws", "com"] => {
            (*account, *endpoint, *region, false)
        }
        [account, "dkr", endpoint, region, "amazonaws", "com", "cn"] => {
            (*account, *endpoint, *region, true)
        }
        _ => return None,
    };
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let endpoint_ok = endpoint == "ecr" || endpoint == "ecr-fips";
    // China regions (cn-north-1, cn-northwest-1) live under amazonaws.com.cn, and only they.
    let partition_ok = region.starts_with("cn-") == china;
    (account_ok && endpoint_ok && partition_ok && is_region(region)).then_some(region)
}

/// An AWS region name: lowercase words and a final number (`us-east-1`, `us-gov-west-1`).
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.len() <= 2
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// A failed GetAuthorizationToken in one line with the way out.
fn describe_ecr(
    e: &aws_sdk_ecr::error::SdkError<
        aws_sdk_ecr::operation::get_authorization_token::GetAuthorizationTokenError,
    >,
) -> String {
    crate::aws::describe(
        e,
        "ECR",
        &[
            (
                "AccessDeniedException",
                "the function's role (or the AWS credentials) needs ecr:GetAuthorizationToken",
            ),
            (
                "InvalidSignatureException",
                "the AWS credentials are wrong or expired",
            ),
            (
                "UnrecognizedClientException",
                "the AWS credentials are wrong or expired",
            ),
        ],
    )
}

/// Basic credentials for ECR from `GetAuthorizationToken`, with the standard AWS credential
/// chain (on Lambda: the function's role).
pub async fn ecr_credentials(host: &str, region: &str) -> Result<Credentials, RegistryError> {
    let ecr_err = |detail: String| RegistryError::Ecr {
        host: host.to_owned(),
        detail,
    };
    // At trace level the SDK logs the response body and the decoded output of
    // GetAuthorizationToken, which is the registry password: its own events go nowhere, and
    // ours say what happened.
    let silent = || tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    tracing::debug!(%host, region, "asking ECR for registry credentials");
    let client = crate::aws::ecr_client(region)
        .with_subscriber(silent())
        .await;
    let out = client
        .get_authorization_token()
        .send()
        .with_subscriber(silent())
        .await
        .map_err(|e| ecr_err(describe_ecr(&e)))?;
    tracing::debug!(%host, "ECR gave registry credentials");
    let token = out
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or_else(|| ecr_err("GetAuthorizationToken returned no token".into()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|e| ecr_err(format!("token is not base64: {e}")))?;
    let text = String::from_utf8(decoded).map_err(|_| ecr_err("token is not UTF-8".into()))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| ecr_err("token is not user:password".into()))?;
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenges_are_parsed() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn only_exact_ecr_hosts_give_a_region() {
        let good: &[(&str, &str)] = &[
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1"),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
                "us-east-1",
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-2.amazonaws.com",
                "us-east-2",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
            ),
            (
                "000000000000.dkr.ecr.ap-southeast-5.amazonaws.com:5000",
                "ap-southeast-5",
            ),
        ];
        for (host, region) in good {
            assert_eq!(ecr_region(host), Some(*region), "{host}");
        }
        let hostile = [
            "ghcr.io",
            "registry-1.docker.io",
            "evil-amazonaws.com",
            "amazonaws.com",
            "dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.net",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn.evil.net",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443x",
            "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.evil-amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.co",
            "123456789012.dkr.ecr.us-east-1.amazonaws.net",
            "x.dkr.ecr.eu-west-1.amazonaws.com",
            "12345678901.dkr.ecr.eu-west-1.amazonaws.com",
            "1234567890123.dkr.ecr.eu-west-1.amazonaws.com",
            "12345678901a.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecrx.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr-fipsx.eu-west-1.amazonaws.com",
            "123456789012.api.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.EU-WEST-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-123.amazonaws.com",
            "123456789012.dkr.ecr.eu--1.amazonaws.com",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.evil.net.amazonaws.com",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com@evil.net",
        ];
        for host in hostile {
            assert_eq!(ecr_region(host), None, "{host} must not count as ECR");
        }
    }
}

//! Where a registry may send us, and what of a URL may be shown.
//!
//! A registry chooses two destinations besides itself: the token realm of its `WWW-Authenticate`
//! challenge and the `Location` of a blob redirect. A hostile or compromised registry could aim
//! them at this machine's own services: on Lambda, the Runtime API on 127.0.0.1:9001 (a `GET
//! /2018-06-01/runtime/invocation/next` would take the next event) and, on EC2 or a laptop, the
//! instance metadata service on 169.254.169.254 or fd00:ec2::254 (role credentials). So such
//! addresses are refused unless the registry itself is on one of the same kind, which is how a
//! registry on a developer's machine or in a test legitimately redirects to storage beside it.
//!
//! Presigned storage URLs carry their signature and credential scope in the query, so every URL
//! shown in an error or a log line is cut at its query.

use std::net::IpAddr;

/// An address that belongs to this machine or its host, not to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Internal {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16, fe80::/10, and fd00:ec2::254 (the instance metadata service).
    LinkLocal,
    /// 0.0.0.0/8, :: (which Linux connects to as the local host).
    Unspecified,
}

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Loopback => "a loopback",
            Self::LinkLocal => "a link-local (instance metadata)",
            Self::Unspecified => "an unspecified (local host)",
        })
    }
}

/// EC2's IPv6 instance metadata endpoint, a unique local address rather than a link-local one.
const METADATA_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// The kind of internal address `ip` is, if it is one (IPv4-mapped IPv6 counts as IPv4).
pub fn classify(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if a == 127 {
                Some(Internal::Loopback)
            } else if a == 169 && b == 254 {
                Some(Internal::LinkLocal)
            } else if a == 0 {
                Some(Internal::Unspecified)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify(IpAddr::V4(v4));
            }
            if v6.is_loopback() {
                Some(Internal::Loopback)
            } else if v6.is_unspecified() {
                Some(Internal::Unspecified)
            } else if (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == METADATA_V6 {
                Some(Internal::LinkLocal)
            } else {
                None
            }
        }
    }
}

/// The internal kinds among the addresses `host` (a name or an IP literal, IPv6 bracketed or
/// not) resolves to. A name that does not resolve here gives none: the request then fails to
/// connect, or goes through an `HTTP(S)_PROXY` that resolves it on its side.
pub async fn internal_kinds(host: &str, port: u16) -> Vec<Internal> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return classify(ip).into_iter().collect();
    }
    let mut kinds = Vec::new();
    match tokio::net::lookup_host((bare, port)).await {
        Ok(addrs) => {
            for kind in addrs.filter_map(|a| classify(a.ip())) {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        Err(err) => {
            tracing::debug!(host = bare, %err, "cannot resolve a redirect or realm host here")
        }
    }
    kinds
}

/// `url` without its query, fragment and user information: what may be shown of it.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// `text` with the query of every `http://`/`https://` URL in it cut out (error messages of
/// HTTP clients name the URL they failed on, presigned signature included).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '`' | '>'))
            .unwrap_or(url.len());
        out.push_str(&redact_url(&url[..end]));
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    match (lower.find("http://"), lower.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An error and its causes on one line, with URL queries cut out (for a `reqwest::Error`, see
/// [`describe_reqwest`], which also cuts the URL it holds).
pub fn describe(err: &dyn std::error::Error) -> String {
    redact_text(&error_chain(err))
}

/// A `reqwest::Error` on one line, its URL without query, fragment or user information.
pub fn describe_reqwest(mut err: reqwest::Error) -> String {
    if let Some(url) = err.url_mut() {
        url.set_query(None);
        url.set_fragment(None);
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    describe(&err)
}

/// An error and its causes on one line (reqwest hides the useful part in its sources).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_classified_and_public_ones_are_not() {
        let table: &[(&str, Option<Internal>)] = &[
            ("127.0.0.1", Some(Internal::Loopback)),
            ("127.8.9.10", Some(Internal::Loopback)),
            ("::1", Some(Internal::Loopback)),
            ("::ffff:127.0.0.1", Some(Internal::Loopback)),
            ("169.254.169.254", Some(Internal::LinkLocal)),
            ("::ffff:169.254.169.254", Some(Internal::LinkLocal)),
            ("fe80::1", Some(Internal::LinkLocal)),
            ("febf::1", Some(Internal::LinkLocal)),
            ("fd00:ec2::254", Some(Internal::LinkLocal)),
            ("0.0.0.0", Some(Internal::Unspecified)),
            ("::", Some(Internal::Unspecified)),
            ("192.0.2.2", None),
            ("10.0.0.1", None),
            ("52.94.1.1", None),
            ("fec0::1", None),
            ("2600:1f18::1", None),
            // The deprecated IPv4-compatible form is not routed to IPv4 by Linux.
            ("::7f00:1", None),
        ];
        for (ip, want) in table {
            let parsed: IpAddr = ip.parse().expect("a test address");
            assert_eq!(classify(parsed), *want, "{ip}");
        }
    }

    #[tokio::test]
    async fn names_are_resolved_before_deciding() {
        assert_eq!(
            internal_kinds("localhost", 80).await.first(),
            Some(&Internal::Loopback)
        );
        assert_eq!(internal_kinds("[::1]", 80).await, vec![Internal::Loopback]);
        assert_eq!(
            internal_kinds("169.254.169.254", 80).await,
            vec![Internal::LinkLocal]
        );
        assert!(internal_kinds("192.0.2.7", 80).await.is_empty());
    }

    #[test]
    fn queries_and_user_information_are_cut_from_urls_and_text() {
        let presigned = "https://bucket.s3.amazonaws.com/blobs/sha256:ab?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F&X-Amz-Signature=deadbeef";
        assert_eq!(
            redact_url(presigned),
            "https://bucket.s3.amazonaws.com/blobs/sha256:ab"
        );
        assert_eq!(
            redact_url("http://user:pw@h:5000/p?Signature=x#frag"),
            "http://h:5000/p"
        );
        assert_eq!(redact_url("not a url?secret=1"), "not a url");
        let text = format!(
            "error sending request for url ({presigned}): connection refused; then HTTPS://cdn.example/x?Signature=s3cr3t and http://plain/y"
        );
        let cut = redact_text(&text);
        assert!(
            !cut.contains("deadbeef") && !cut.contains("s3cr3t"),
            "{cut}"
        );
        assert!(!cut.contains("X-Amz-Credential"), "{cut}");
        assert!(
            cut.contains("(https://bucket.s3.amazonaws.com/blobs/sha256:ab)")
                && cut.contains("connection refused")
                && cut.ends_with("http://plain/y"),
            "{cut}"
        );
    }
}

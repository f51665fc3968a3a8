//! The HTTP answer itself, before it is put in an integration's format: status, headers,
//! cookies and a body that may be a file not yet read.

use bytes::Bytes;

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lowercase) and values; `Set-Cookie` goes in `cookies`, not here.
    pub headers: Vec<(String, String)>,
    /// `Set-Cookie` values, one per cookie.
    pub cookies: Vec<String>,
    /// The body.
    pub body: ReplyBody,
}

/// The body of a [`Reply`].
#[derive(Debug)]
pub enum ReplyBody {
    /// No body.
    Empty,
    /// A body held in memory.
    Bytes(Bytes),
    /// A file, opened but not read: it is read (or streamed) only once the answer's size is
    /// known to fit.
    File {
        /// The open file, at its start.
        file: std::fs::File,
        /// Its length in bytes, as measured on the open file.
        len: u64,
    },
}

impl ReplyBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::File { len, .. } => *len,
        }
    }

    /// Whether the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Reply {
    /// A 200 answer of `body` typed `content_type`.
    pub fn ok(content_type: &str, body: ReplyBody) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            cookies: Vec::new(),
            body,
        }
    }

    /// The value of header `name` (lowercase), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), i.e. can be a header name.
pub(super) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `value` with every control character (CR and LF above all, which would end the header and
/// start another) replaced by a space; a horizontal tab is kept, as HTTP allows it.
pub(super) fn header_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

/// The headers of `reply` fit to send: names lowercased, names that are not tokens dropped,
/// values cleaned by [`header_value`], a repeated name's values joined by `,` at its first
/// place (API Gateway's and Function URLs' `headers` are single-valued maps).
pub(super) fn clean_headers(
    headers: &[(String, String)],
) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        if !is_header_name(name) {
            continue;
        }
        let name = name.to_ascii_lowercase();
        let value = header_value(value);
        match map.get_mut(&name) {
            Some(serde_json::Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                map.insert(name, serde_json::Value::String(value));
            }
        }
    }
    map
}

/// The cookies of `reply`, cleaned as header values.
pub(super) fn clean_cookies(cookies: &[String]) -> Vec<String> {
    cookies.iter().map(|c| header_value(c)).collect()
}

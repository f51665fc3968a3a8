//! `Content-Disposition` for a file answered by name (RFC 6266, with RFC 8187's `filename*`
//! for names beyond ASCII).
//!
//! The name comes from the script, so it may hold anything a file name can: quotes,
//! backslashes, `%`, control characters, any script. The plain `filename` gets an ASCII
//! stand-in (each such character becomes `_`, RFC 6266 §4.3 advises against `%` and `\`
//! there), and `filename*` carries the exact name, percent-encoded as UTF-8: the header is
//! always plain ASCII and a CR, LF or quote can never end it early.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters RFC 8187 §3.2.1 lets through unencoded (`attr-char`); all others are encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `inline; filename="<ascii stand-in>"; filename*=UTF-8''<percent-encoded>` for the file
/// `name` (a path's last `/`-separated segment is used).
pub fn content_disposition(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = if base.is_empty() { "output" } else { base };
    let plain: String = base
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%') => c,
            _ => '_',
        })
        .collect();
    format!(
        "inline; filename=\"{plain}\"; filename*=UTF-8''{}",
        utf8_percent_encode(base, ATTR_CHAR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_name_is_quoted_and_encoded_alike() {
        assert_eq!(
            content_disposition("grey.png"),
            "inline; filename=\"grey.png\"; filename*=UTF-8''grey.png"
        );
    }

    #[test]
    fn only_the_last_segment_of_a_nested_output_is_named() {
        assert!(content_disposition("frames/0001.png").contains("filename=\"0001.png\""));
    }

    #[test]
    fn quotes_backslashes_and_line_breaks_cannot_break_the_header() {
        let header = content_disposition("a\"b\\c\r\nSet-Cookie: x=1%.txt");
        assert!(header.is_ascii());
        assert!(!header.contains(['\r', '\n']));
        assert_eq!(header.matches('"').count(), 2, "{header}");
        assert!(header.contains("filename=\"a_b_c__Set-Cookie: x=1_.txt\""));
        assert!(header.ends_with("filename*=UTF-8''a%22b%5Cc%0D%0ASet-Cookie%3A%20x%3D1%25.txt"));
    }

    #[test]
    fn a_name_beyond_ascii_has_a_stand_in_and_its_exact_utf8_encoding() {
        let header = content_disposition("résumé.pdf");
        assert!(header.is_ascii());
        assert!(header.contains("filename=\"r_sum_.pdf\""));
        assert!(header.ends_with("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
    }
}

//! The variables an HTTP request gives the script.
//!
//! Values are passed to the container as they are: they reach the script through `execve`'s
//! environment, which no shell interprets, so a `$(…)` in a query stays text. What is bounded
//! is the amount: a request may carry thousands of parameters and long values, and the
//! environment shares `ARG_MAX` with the arguments.

use crate::event::HttpInput;

/// The most `SCAR_QUERY_*` variables made; further parameters are in `SCAR_EVENT_FILE` only.
pub const MAX_QUERY_VARIABLES: usize = 64;

/// The most `SCAR_HEADER_X_SCAR_*` variables made (the fixed headers come on top).
pub const MAX_SCAR_HEADER_VARIABLES: usize = 64;

/// The most bytes of a value passed; a longer one is cut at a character boundary at or below
/// it (the whole request is in `SCAR_EVENT_FILE`).
pub const MAX_VALUE_BYTES: usize = 4096;

/// Headers passed whatever the request, besides every `x-scar-*` one.
const CHOSEN_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "accept",
    "accept-language",
    "user-agent",
    "x-forwarded-for",
];

/// Headers that carry credentials: never passed, even if a rule above would pass them.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-amz-security-token",
];

/// The script's variables for `input`: `SCAR_HTTP_METHOD`, `SCAR_HTTP_PATH`, `SCAR_HTTP_QUERY`
/// (the raw query string), `SCAR_HTTP_SOURCE` (`rest-api`, `http-api` or `function-url`),
/// `SCAR_QUERY_<NAME>` per query parameter and `SCAR_HEADER_<NAME>` per chosen header
/// (`content-type`, `content-length`, `accept`, `accept-language`, `user-agent`,
/// `x-forwarded-for` and every `x-scar-*`; never a credential such as `authorization` or
/// `cookie`).
///
/// `<NAME>` is the name uppercased with every byte other than `A-Z` and `0-9` made `_`; when
/// two names give one variable (`a-b` and `a_b`, or a repeated parameter), the first wins.
/// At most [`MAX_QUERY_VARIABLES`] query variables and [`MAX_SCAR_HEADER_VARIABLES`]
/// `x-scar-*` ones are made; values are cut at [`MAX_VALUE_BYTES`]; a value holding a NUL
/// byte (which `execve` cannot pass) is dropped, and so is a parameter with an empty name.
pub fn http_env(input: &HttpInput) -> Vec<(String, String)> {
    let mut env = Vec::new();
    push(&mut env, "SCAR_HTTP_METHOD".to_owned(), &input.method);
    push(&mut env, "SCAR_HTTP_PATH".to_owned(), &input.path);
    push(&mut env, "SCAR_HTTP_QUERY".to_owned(), &input.raw_query);
    push(
        &mut env,
        "SCAR_HTTP_SOURCE".to_owned(),
        input.source.as_str(),
    );
    let mut made = 0;
    for (name, value) in &input.query {
        if made == MAX_QUERY_VARIABLES {
            break;
        }
        if name.is_empty() {
            continue;
        }
        if push(
            &mut env,
            format!("SCAR_QUERY_{}", variable_name(name)),
            value,
        ) {
            made += 1;
        }
    }
    let mut scar_made = 0;
    for (name, value) in &input.headers {
        let name = name.to_ascii_lowercase();
        if SECRET_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let scar = name.starts_with("x-scar-");
        if !scar && !CHOSEN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if scar && scar_made == MAX_SCAR_HEADER_VARIABLES {
            continue;
        }
        if push(
            &mut env,
            format!("SCAR_HEADER_{}", variable_name(&name)),
            value,
        ) && scar
        {
            scar_made += 1;
        }
    }
    env
}

/// Add `name=value` to `env` unless `name` is already there or `value` holds a NUL; whether
/// it was added.
fn push(env: &mut Vec<(String, String)>, name: String, value: &str) -> bool {
    if value.contains('\0') || env.iter().any(|(n, _)| *n == name) {
        return false;
    }
    env.push((name, cut(value).to_owned()));
    true
}

/// `name` uppercased, every byte other than `A-Z` and `0-9` made `_` (a character beyond
/// ASCII gives one `_` per byte).
pub fn variable_name(name: &str) -> String {
    (name.bytes())
        .map(|b| match b.to_ascii_uppercase() {
            c @ (b'A'..=b'Z' | b'0'..=b'9') => c as char,
            _ => '_',
        })
        .collect()
}

/// `value`'s first [`MAX_VALUE_BYTES`] bytes, cut back to a character boundary.
fn cut(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;

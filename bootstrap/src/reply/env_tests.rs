use bytes::Bytes;

use super::*;
use crate::event::{HttpFormat, HttpSource};

fn input(query: &[(&str, &str)], headers: &[(&str, &str)]) -> HttpInput {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        (list.iter())
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    HttpInput {
        source: HttpSource::RestApi,
        format: HttpFormat::V1,
        method: "POST".into(),
        path: "/convert/sample.png".into(),
        raw_query: "size=small&mode=grey".into(),
        query: pairs(query),
        headers: pairs(headers),
        body: Bytes::new(),
        file_name: "sample.png".into(),
        archive: false,
    }
}

fn value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    (env.iter())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_method_path_raw_query_and_source_are_passed() {
    let env = http_env(&input(&[], &[]));
    assert_eq!(
        env,
        [
            ("SCAR_HTTP_METHOD".to_owned(), "POST".to_owned()),
            (
                "SCAR_HTTP_PATH".to_owned(),
                "/convert/sample.png".to_owned()
            ),
            (
                "SCAR_HTTP_QUERY".to_owned(),
                "size=small&mode=grey".to_owned()
            ),
            ("SCAR_HTTP_SOURCE".to_owned(), "rest-api".to_owned()),
        ]
    );
}

#[test]
fn query_names_are_uppercased_and_every_other_byte_becomes_an_underscore() {
    let env = http_env(&input(
        &[("size", "small"), ("max-width.px", "640"), ("é", "x")],
        &[],
    ));
    assert_eq!(value(&env, "SCAR_QUERY_SIZE"), Some("small"));
    assert_eq!(value(&env, "SCAR_QUERY_MAX_WIDTH_PX"), Some("640"));
    assert_eq!(value(&env, "SCAR_QUERY___"), Some("x"));
    assert!(env.iter().all(|(n, _)| {
        n.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    }));
}

#[test]
fn the_first_of_colliding_names_wins() {
    let env = http_env(&input(
        &[
            ("a-b", "first"),
            ("a_b", "second"),
            ("A.B", "third"),
            ("a-b", "again"),
        ],
        &[],
    ));
    let made: Vec<_> = env.iter().filter(|(n, _)| n == "SCAR_QUERY_A_B").collect();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].1, "first");
}

#[test]
fn values_are_passed_as_they_are_shell_syntax_included() {
    let hostile = "$(rm -rf /); `id` 'q' \"d\" \\ * ~ \n next";
    let env = http_env(&input(&[("cmd", hostile)], &[("x-scar-note", hostile)]));
    assert_eq!(value(&env, "SCAR_QUERY_CMD"), Some(hostile));
    assert_eq!(value(&env, "SCAR_HEADER_X_SCAR_NOTE"), Some(hostile));
}

#[test]
fn at_most_sixty_four_query_variables_are_made() {
    let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    let query: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let env = http_env(&input(&query, &[]));
    let made: Vec<_> = env
        .iter()
        .filter(|(n, _)| n.starts_with("SCAR_QUERY_"))
        .collect();
    assert_eq!(made.len(), MAX_QUERY_VARIABLES);
    assert_eq!(made[63].0, "SCAR_QUERY_P63");
}

#[test]
fn long_values_are_cut_at_a_character_boundary_within_4096_bytes() {
    let long = format!("a{}", "é".repeat(3000));
    let env = http_env(&input(&[("long", &long)], &[]));
    let cut = value(&env, "SCAR_QUERY_LONG").unwrap();
    assert_eq!(cut.len(), 4095);
    assert!(long.starts_with(cut));
}

#[test]
fn a_value_with_a_nul_byte_is_dropped() {
    let env = http_env(&input(
        &[("bad", "a\0b"), ("good", "ok")],
        &[("user-agent", "curl\0")],
    ));
    assert_eq!(value(&env, "SCAR_QUERY_BAD"), None);
    assert_eq!(value(&env, "SCAR_QUERY_GOOD"), Some("ok"));
    assert_eq!(value(&env, "SCAR_HEADER_USER_AGENT"), None);
}

#[test]
fn an_empty_parameter_name_makes_no_variable() {
    let env = http_env(&input(&[("", "x")], &[]));
    assert!(env.iter().all(|(n, _)| n != "SCAR_QUERY_"));
}

#[test]
fn chosen_headers_are_passed_and_others_are_not() {
    let env = http_env(&input(
        &[],
        &[
            ("content-type", "image/png"),
            ("content-length", "42"),
            ("accept", "image/*"),
            ("accept-language", "es"),
            ("user-agent", "curl/8"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-scar-quality", "90"),
            ("host", "abc.lambda-url.us-east-1.on.aws"),
            ("x-amzn-trace-id", "Root=1"),
        ],
    ));
    let headers: Vec<(&str, &str)> = (env.iter())
        .filter(|(n, _)| n.starts_with("SCAR_HEADER_"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("SCAR_HEADER_CONTENT_TYPE", "image/png"),
            ("SCAR_HEADER_CONTENT_LENGTH", "42"),
            ("SCAR_HEADER_ACCEPT", "image/*"),
            ("SCAR_HEADER_ACCEPT_LANGUAGE", "es"),
            ("SCAR_HEADER_USER_AGENT", "curl/8"),
            ("SCAR_HEADER_X_FORWARDED_FOR", "203.0.113.9"),
            ("SCAR_HEADER_X_SCAR_QUALITY", "90"),
        ]
    );
}

#[test]
fn credentials_are_never_passed_whatever_their_case() {
    let env = http_env(&input(
        &[],
        &[
            ("authorization", "Bearer secret-1"),
            ("Proxy-Authorization", "Basic secret-2"),
            ("cookie", "session=secret-3"),
            ("x-api-key", "secret-4"),
            ("X-Amz-Security-Token", "secret-5"),
        ],
    ));
    assert!(env.iter().all(|(_, v)| !v.contains("secret")), "{env:?}");
    assert!(
        env.iter().all(|(n, _)| !n.starts_with("SCAR_HEADER_")),
        "{env:?}"
    );
}

#[test]
fn at_most_sixty_four_x_scar_headers_are_passed_beside_the_chosen_ones() {
    let names: Vec<String> = (0..80).map(|i| format!("x-scar-h{i}")).collect();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    headers.push(("user-agent", "curl/8"));
    let env = http_env(&input(&[], &headers));
    let scar = env
        .iter()
        .filter(|(n, _)| n.starts_with("SCAR_HEADER_X_SCAR_"))
        .count();
    assert_eq!(scar, MAX_SCAR_HEADER_VARIABLES);
    assert_eq!(value(&env, "SCAR_HEADER_USER_AGENT"), Some("curl/8"));
}

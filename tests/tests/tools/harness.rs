//! The harness itself, checked with real clients: each service starts, answers the protocol it
//! claims, enforces its authentication, and is gone after drop.

use std::net::TcpStream;
use std::time::Duration;

use scar_e2e::runtime_api::EMULATOR_DEADLINE_MS;
use scar_e2e::{Registry, RuntimeApi, S3Server};

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

#[test]
fn anonymous_registry_answers_the_v2_base_endpoint() {
    let registry = Registry::start();
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    let response = http()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .expect("GET /v2/");
    assert_eq!(response.status().as_u16(), 200, "log: {}", registry.log());
    assert_eq!(
        response
            .headers()
            .get("docker-distribution-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("registry/2.0")
    );
}

#[test]
fn basic_auth_registry_refuses_anonymous_and_wrong_password_and_admits_the_user() {
    let registry = Registry::start_with_basic_auth("scar", "s3cret pass");
    let url = format!("{}/v2/", registry.url());
    let anonymous = http().get(&url).send().expect("anonymous GET /v2/");
    assert_eq!(anonymous.status().as_u16(), 401);
    let challenge = anonymous
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.starts_with("Basic"), "challenge: {challenge}");
    let wrong = http()
        .get(&url)
        .basic_auth("scar", Some("not it"))
        .send()
        .expect("wrong-password GET /v2/");
    assert_eq!(wrong.status().as_u16(), 401);
    let user = http()
        .get(&url)
        .basic_auth("scar", Some("s3cret pass"))
        .send()
        .expect("authenticated GET /v2/");
    assert_eq!(user.status().as_u16(), 200, "log: {}", registry.log());
    assert_eq!(registry.credentials(), Some(("scar", "s3cret pass")));
}

#[test]
fn registry_stops_listening_once_dropped() {
    let registry = Registry::start();
    let host = registry.host();
    drop(registry);
    let addr = host.parse().expect("socket address");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}

#[test]
fn s3_server_round_trips_objects_and_stores_them_on_disk() {
    let s3 = S3Server::start();
    s3.create_bucket("inputs");
    s3.put_object("inputs", "dir/a b+c.txt", b"hello");
    s3.put_object("inputs", "dir/second", b"");
    s3.put_object("inputs", "other", b"x");
    assert_eq!(
        s3.get_object("inputs", "dir/a b+c.txt").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(s3.get_object("inputs", "dir/missing"), None);
    assert_eq!(
        s3.list_keys("inputs", "dir/"),
        vec!["dir/a b+c.txt".to_owned(), "dir/second".to_owned()]
    );
    let on_disk = std::fs::read(s3.root().join("inputs/dir/a b+c.txt")).expect("object file");
    assert_eq!(on_disk, b"hello");
}

#[test]
fn s3_server_streams_a_big_file_in_and_out_intact() {
    let s3 = S3Server::start();
    s3.create_bucket("big");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.bin");
    // 24 MiB of a non-repeating-per-block pattern: a truncated or reordered copy would differ.
    let data: Vec<u8> = (0..24u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &data).expect("write big file");
    s3.put_file("big", "in/big.bin", &path);
    let back = s3.get_object("big", "in/big.bin").expect("object exists");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "content differs after the round trip");
}

#[test]
fn s3_server_rejects_a_request_signed_with_the_wrong_secret_key() {
    let s3 = S3Server::start();
    s3.create_bucket("guarded");
    let intruder = s3.client_with_secret("definitely-not-the-secret");
    let err = s3
        .block_on(intruder.list_objects_v2().bucket("guarded").send())
        .expect_err("a wrongly signed request must be refused");
    let code = scar_e2e::s3::error_code(&err);
    assert!(
        matches!(
            code.as_deref(),
            Some("SignatureDoesNotMatch") | Some("AccessDenied")
        ),
        "expected a signature error, got {code:?}: {}",
        scar_e2e::s3::describe(&err)
    );
    let put = s3.block_on(
        intruder
            .put_object()
            .bucket("guarded")
            .key("planted")
            .body(b"x".to_vec().into())
            .send(),
    );
    assert!(put.is_err(), "a wrongly signed PutObject must be refused");
    assert_eq!(s3.get_object("guarded", "planted"), None);
}

#[test]
fn s3_server_env_names_endpoint_credentials_and_region_for_a_child() {
    let s3 = S3Server::start();
    let env: std::collections::HashMap<_, _> = s3.env().into_iter().collect();
    assert_eq!(env["AWS_ENDPOINT_URL_S3"], s3.endpoint());
    assert_eq!(env["AWS_ACCESS_KEY_ID"], s3.access_key());
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"], s3.secret_key());
    assert_eq!(env["AWS_REGION"], s3.region());
    assert_eq!(env["AWS_EC2_METADATA_DISABLED"], "true");
}

/// A few lines of HTTP standing in for a bootstrap: take the next invocation, answer it.
fn serve_one(
    runtime_api: &str,
    respond: impl FnOnce(&str, &serde_json::Value) -> (String, serde_json::Value),
) -> reqwest::header::HeaderMap {
    let client = http();
    let next = client
        .get(format!("{runtime_api}/2018-06-01/runtime/invocation/next"))
        .send()
        .expect("GET next");
    assert_eq!(next.status().as_u16(), 200);
    let headers = next.headers().clone();
    let request_id = headers
        .get("lambda-runtime-aws-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id header")
        .to_owned();
    let event: serde_json::Value = next.json().expect("event is JSON");
    let (path, body) = respond(&request_id, &event);
    let posted = client
        .post(format!(
            "{runtime_api}/2018-06-01/runtime/invocation/{request_id}/{path}"
        ))
        .body(body.to_string())
        .send()
        .expect("POST response");
    assert!(posted.status().is_success());
    headers
}

#[test]
fn runtime_api_hands_an_invoke_to_the_function_and_returns_its_response() {
    let api = RuntimeApi::start();
    let env: std::collections::HashMap<_, _> = api.function_env("scar").into_iter().collect();
    let runtime_api = env["AWS_LAMBDA_RUNTIME_API"].clone();
    assert!(runtime_api.starts_with("http://127.0.0.1:") && runtime_api.ends_with("/.rt/scar"));
    let function = std::thread::spawn(move || {
        serve_one(&runtime_api, |_, event| {
            ("response".into(), serde_json::json!({"echo": event}))
        })
    });
    let invocation = api.invoke(
        "scar",
        &serde_json::json!({"Records": []}),
        Duration::from_secs(60),
    );
    let headers = function.join().expect("stand-in function");
    assert_eq!(invocation.status, 200, "log: {}", api.log());
    assert_eq!(invocation.error_type, None);
    assert_eq!(
        invocation.body,
        serde_json::json!({"echo": {"Records": []}})
    );
    assert_eq!(
        headers
            .get("lambda-runtime-deadline-ms")
            .and_then(|v| v.to_str().ok()),
        Some(EMULATOR_DEADLINE_MS.to_string().as_str())
    );
}

#[test]
fn runtime_api_reports_a_function_error_with_its_type() {
    let api = RuntimeApi::start_with_functions(&["failing"]);
    let runtime_api = api.runtime_api_for("failing");
    let function = std::thread::spawn(move || {
        serve_one(&runtime_api, |_, _| {
            (
                "error".into(),
                serde_json::json!({"errorType": "Scar.TestError", "errorMessage": "broken on purpose"}),
            )
        })
    });
    let invocation = api.invoke("failing", &serde_json::json!({}), Duration::from_secs(60));
    function.join().expect("stand-in function");
    assert_ne!(invocation.status, 200);
    assert_eq!(invocation.error_type.as_deref(), Some("Scar.TestError"));
    assert_eq!(invocation.error_message(), Some("broken on purpose"));
}

#[test]
fn runtime_api_serves_the_unnamed_function_at_the_bare_rt_path() {
    let api = RuntimeApi::start();
    let runtime_api = api.runtime_api();
    assert!(runtime_api.ends_with("/.rt"));
    let function = std::thread::spawn(move || {
        serve_one(&runtime_api, |id, _| {
            ("response".into(), serde_json::json!({"id": id}))
        })
    });
    let invocation = api.invoke("_", &serde_json::json!({"k": 1}), Duration::from_secs(60));
    function.join().expect("stand-in function");
    assert_eq!(invocation.status, 200);
    assert!(
        invocation.body["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[test]
fn invoke_without_a_function_serving_fails_with_a_clear_line_instead_of_hanging() {
    let api = RuntimeApi::start();
    let err = api
        .try_invoke("scar", &serde_json::json!({}), Duration::from_secs(2))
        .expect_err("nobody serves the function");
    assert!(err.contains("no response within 2s"), "{err}");
}

#[test]
fn a_missing_program_fails_at_once_with_one_line_naming_the_package() {
    let panic = std::panic::catch_unwind(|| {
        scar_e2e::service::require_program(
            "scar-e2e-no-such-program",
            "the Debian package nothing-here",
        )
    })
    .expect_err("a missing program must panic");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("the Debian package nothing-here"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn a_service_that_exits_early_is_reported_with_its_last_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        "echo starting; echo 'listen tcp: address already in use' >&2; exit 3",
    ]);
    let mut child =
        scar_e2e::service::ServiceChild::spawn("fake", command, &dir.path().join("fake.log"));
    let port = scar_e2e::service::free_port();
    let err = child
        .wait_for_port(([127, 0, 0, 1], port).into())
        .expect_err("the child exits without listening");
    assert!(err.contains("address already in use"), "{err}");
    assert!(scar_e2e::service::is_port_race(&err));
}

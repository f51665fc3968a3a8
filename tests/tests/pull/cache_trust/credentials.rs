//! Credentials only where they belong, and nothing secret logged (#17).
//!
//! Hostile registries, each a real CNCF `docker-registry` (basic auth or token auth) behind the
//! small `Front` below where the hostility needs it: a front bound on this machine's
//! non-loopback address (a registry "on the network") that forwards to the registry and answers
//! blob requests with redirects to where a hostile registry would aim them (the loopback Runtime
//! API, the instance metadata service), or challenges with a token realm there. A `Trap` on
//! 127.0.0.1 records anything that reaches it. Presigned-style storage URLs carry a secret query.
//!
//! Each case runs the in-process pull as root, then `scar pull` as root (the workspace binary)
//! and as uid 993 in the Lambda simulator (the static binaries of `./build.sh`,
//! `SCAR_E2E_DIST`), both with `SCAR_LOG=trace`, asserting that no secret (password, basic
//! header, token, ECR authorization data, presigned signature) appears in stdout, stderr or the
//! error.
//!
//! Run: `cargo test -p scar-e2e --test pull cache_trust::credentials::`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use scar_e2e::Registry;
use scar_e2e::cache::assert_no_image_left;
use scar_e2e::ecr::EcrStandIn;
use scar_e2e::fault::FaultProxy;
use scar_e2e::lambda_sim::{LambdaSim, SCAR_DIR};
use scar_e2e::oci::{Compression, Image, ImageBuilder, LayerBuilder, Pusher};
use scar_e2e::token::TokenRegistry;
use scar_rootfs::options::{Credentials, PullOptions};

const USER: &str = "scar";
const PASSWORD: &str = "pw-Secret-7f3a9c";
/// The secret parts of a presigned storage URL.
const SIGNATURE: &str = "5ecre75194a7ure0dd";
const CREDENTIAL: &str = "ASIASECRETCREDENTIAL";

fn presigned_query() -> String {
    format!(
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}%2F20261204%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={SIGNATURE}&Signature={SIGNATURE}"
    )
}

fn basic_header(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A one-layer image with a marker file.
fn image() -> Image {
    ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("etc/marker", b"credentials case\n")
                .finish(),
        )
        .build()
}

fn credentials(password: &str) -> Option<Credentials> {
    Some(Credentials {
        username: USER.into(),
        password: password.into(),
    })
}

fn options(cache: &Path, insecure: &[&str], password: Option<&str>) -> PullOptions {
    let mut o = PullOptions::new(cache);
    o.insecure_registries = insecure.iter().map(|h| h.to_string()).collect();
    o.credentials = password.and_then(credentials);
    o
}

/// The in-process pull as root: `Ok(())` when the marker landed, else the error text.
fn pull_in_process(image: &str, options: &PullOptions) -> Result<(), String> {
    match crate::pull_support::pull_blocking(image, options) {
        Ok(p) => {
            let marker = std::fs::read(p.root.join("etc/marker")).map_err(|e| e.to_string())?;
            assert_eq!(marker, b"credentials case\n");
            Ok(())
        }
        Err(err) => Err(err.to_string()),
    }
}

/// Who runs `scar pull`.
#[derive(Clone, Copy, Debug)]
enum As {
    /// The workspace's `scar` as root, on this machine.
    Root,
    /// The static `scar` as uid 993 in the Lambda simulator.
    Lambda,
}

const RUNNERS: [As; 2] = [As::Root, As::Lambda];

/// What `scar pull` did.
struct Pulled {
    ok: bool,
    output: String,
}

/// `scar pull <image>` with `SCAR_LOG=trace` and exactly `env` (plus PATH and HOME).
fn scar_pull(who: As, image: &str, env: &[(&str, &str)]) -> Pulled {
    let mut full: Vec<(&str, &str)> = vec![("SCAR_LOG", "trace")];
    full.extend_from_slice(env);
    match who {
        As::Root => {
            let work = tempfile::tempdir().expect("tmp");
            let scar = scar_e2e::workspace::binary("scar-tools", "scar");
            let out = Command::new(scar)
                .arg("pull")
                .arg(image)
                .arg("--cache")
                .arg(work.path().join("cache"))
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("HOME", work.path())
                .envs(full.iter().copied())
                .output()
                .expect("run scar pull");
            if out.status.success() {
                let root = String::from_utf8_lossy(&out.stdout);
                let marker =
                    Path::new(root.lines().next().unwrap_or_default().trim()).join("etc/marker");
                assert!(marker.is_file(), "no marker at {}", marker.display());
            } else {
                assert_no_image_left(&work.path().join("cache"));
            }
            Pulled {
                ok: out.status.success(),
                output: format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        As::Lambda => {
            let layer = tempfile::tempdir().expect("tmp");
            std::fs::set_permissions(
                layer.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("chmod layer");
            full.push(("HOME", "/tmp"));
            let scar = format!("{SCAR_DIR}/scar");
            // The marker is checked in the sandbox, by the pull's own printed path.
            let command = format!(
                "root=$({scar} pull {} --cache /tmp/cache) && cat \"$root/etc/marker\"",
                scar_e2e::lambda_sim::shell_quote(image)
            );
            let out = LambdaSim::new(layer.path())
                .with_scar()
                .run(&command, &full);
            let ok = out.code == Some(0);
            if ok {
                assert!(
                    out.stdout.contains("credentials case"),
                    "no marker: {}",
                    out.stdout
                );
            }
            Pulled {
                ok,
                output: format!("{}\n{}", out.stdout, out.stderr),
            }
        }
    }
}

/// None of `secrets` appears in `text`.
fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} shows the secret `{secret}`:\n{text}"
        );
    }
}

/// This machine's first non-loopback IPv4 address: a registry there is "on the network".
fn outside_address() -> IpAddr {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("run `ip` (package iproute2) to find a non-loopback address");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "this machine has no non-loopback IPv4 address (`ip -4 addr` said {text:?}): the hostile-redirect cases need a registry reached outside loopback; give the machine a network interface"
            )
        })
}

/// What the hostile front does besides forwarding to the registry.
#[derive(Clone)]
enum Hostility {
    /// Answer blob requests with `307` to `<base><path><query>`; `{front}` in `base` stands
    /// for the front's own `host:port`.
    RedirectBlobs { base: String, query: String },
    /// Answer every `/v2/` request `401` with this `WWW-Authenticate`.
    Challenge(String),
}

/// A request the front or the trap saw: its request line and `Authorization` header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A hostile registry front on this machine's non-loopback address. Paths under `/store/ok/`
/// are its "object storage": forwarded to the registry with the storage's own credentials
/// (the registry's, which only it knows), query dropped; `/store/broken/` drops the
/// connection unanswered.
struct Front {
    addr: SocketAddr,
    seen: Seen,
}

impl Front {
    fn start(upstream: &str, hostility: Hostility, storage_auth: Option<String>) -> Front {
        let listener = TcpListener::bind((outside_address(), 0))
            .expect("bind the front on the outside address");
        let addr = listener.local_addr().expect("front address");
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let hostility = match hostility {
            Hostility::RedirectBlobs { base, query } => Hostility::RedirectBlobs {
                base: base.replace("{front}", &addr.to_string()),
                query,
            },
            other => other,
        };
        let seen: Seen = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (record, hostility, auth) =
                    (record.clone(), hostility.clone(), storage_auth.clone());
                std::thread::spawn(move || serve_front(conn, upstream, &hostility, auth, &record));
            }
        });
        Front { addr, seen }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The request head: request line, headers (name, value) and the Authorization.
fn read_head(conn: &mut TcpStream) -> Option<(String, Vec<(String, String)>)> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some((line, headers))
}

fn authorization(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
}

fn serve_front(
    mut conn: TcpStream,
    upstream: SocketAddr,
    hostility: &Hostility,
    storage_auth: Option<String>,
    seen: &Seen,
) {
    let Some((line, headers)) = read_head(&mut conn) else {
        return;
    };
    if let Ok(mut s) = seen.lock() {
        s.push((line.clone(), authorization(&headers)));
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
    let reply = |conn: &mut TcpStream, head: String| {
        let _ = conn.write_all(head.as_bytes());
    };
    if target.starts_with("/store/broken/") {
        return; // dropped unanswered
    }
    if let Some(path) = target.strip_prefix("/store/ok") {
        let path = path.split('?').next().unwrap_or(path);
        return forward(
            &mut conn,
            upstream,
            &format!("{method} {path} HTTP/1.1"),
            &headers,
            storage_auth,
        );
    }
    match hostility {
        Hostility::Challenge(challenge) => reply(
            &mut conn,
            format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        ),
        Hostility::RedirectBlobs { base, query } if target.contains("/blobs/") => reply(
            &mut conn,
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{target}{query}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        ),
        Hostility::RedirectBlobs { .. } => {
            let auth = authorization(&headers);
            forward(&mut conn, upstream, &line, &headers, auth)
        }
    }
}

/// Send the request on to `upstream` with `auth` as its Authorization, one request per
/// connection, and copy the answer back.
fn forward(
    conn: &mut TcpStream,
    upstream: SocketAddr,
    line: &str,
    headers: &[(String, String)],
    auth: Option<String>,
) {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let mut head = format!("{line}\r\n");
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("authorization") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    if up.write_all(head.as_bytes()).is_ok() {
        let _ = std::io::copy(&mut up, conn);
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// A listener on 127.0.0.1 standing for this machine's own services (the Runtime API): it
/// records every request that reaches it and answers 200.
struct Trap {
    addr: SocketAddr,
    seen: Seen,
}

impl Trap {
    fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the trap");
        let addr = listener.local_addr().expect("trap address");
        let seen: Seen = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                if let Some((line, headers)) = read_head(&mut conn)
                    && let Ok(mut s) = record.lock()
                {
                    s.push((line, authorization(&headers)));
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
            }
        });
        Trap { addr, seen }
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A basic-auth registry holding [`image`] as `team/app:v1`.
fn basic_registry() -> Registry {
    let registry = Registry::start_with_basic_auth(USER, PASSWORD);
    Pusher::with_basic(&registry.url(), USER, PASSWORD).image("team/app", "v1", &image());
    registry
}

#[test]
fn a_token_realm_over_plain_http_elsewhere_gets_nothing_unless_listed() {
    let registry = TokenRegistry::start(USER, PASSWORD);
    Pusher::new(
        &registry.url(),
        Some(registry.push_authorization("private/app")),
    )
    .image("private/app", "v1", &image());
    let image = format!("{}/private/app:v1", registry.host());
    let (reg, realm) = (registry.host(), registry.realm_host());
    let secrets = [PASSWORD, &basic_header(USER, PASSWORD)];

    // Only the registry is listed: the realm on another port is plain HTTP elsewhere.
    let cache = tempfile::tempdir().expect("tmp");
    let err = pull_in_process(&image, &options(cache.path(), &[&reg], Some(PASSWORD)))
        .expect_err("a plain-HTTP realm that is not listed must be refused");
    assert!(
        err.contains("over plain HTTP")
            && err.contains(&realm)
            && err.contains("SCAR_INSECURE_REGISTRIES"),
        "the error says what, why and how to fix: {err}"
    );
    assert_no_secret("the error", &err, &secrets);
    assert_no_image_left(cache.path());
    assert!(
        registry.authorizations().is_empty(),
        "the unlisted realm was asked: {:?}",
        registry.authorizations()
    );
    for who in RUNNERS {
        let out = scar_pull(
            who,
            &image,
            &[
                ("SCAR_INSECURE_REGISTRIES", &reg),
                ("SCAR_REGISTRY_USERNAME", USER),
                ("SCAR_REGISTRY_PASSWORD", PASSWORD),
            ],
        );
        assert!(
            !out.ok && out.output.contains("over plain HTTP"),
            "{who:?}: {}",
            out.output
        );
        assert_no_secret(&format!("{who:?}'s output"), &out.output, &secrets);
    }
    assert!(
        registry.authorizations().is_empty(),
        "{:?}",
        registry.authorizations()
    );

    // Listed, it gets the credentials; neither they nor the tokens are printed, by a pull that
    // succeeds or one with a wrong password.
    let both = format!("{reg},{realm}");
    let cache = tempfile::tempdir().expect("tmp");
    pull_in_process(
        &image,
        &options(cache.path(), &[&reg, &realm], Some(PASSWORD)),
    )
    .expect("a listed realm is used");
    let expected = format!("Basic {}", basic_header(USER, PASSWORD));
    assert!(
        registry
            .authorizations()
            .iter()
            .any(|a| a.as_deref() == Some(expected.as_str())),
        "{:?}",
        registry.authorizations()
    );
    for who in RUNNERS {
        for (password, succeeds) in [(PASSWORD, true), ("wrong-Secret-0b1c", false)] {
            let env = [
                ("SCAR_INSECURE_REGISTRIES", both.as_str()),
                ("SCAR_REGISTRY_USERNAME", USER),
                ("SCAR_REGISTRY_PASSWORD", password),
            ];
            let out = scar_pull(who, &image, &env);
            assert_eq!(out.ok, succeeds, "{who:?} with {password}: {}", out.output);
            let tokens = registry.tokens();
            let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let wrong = basic_header(USER, password);
            secrets.extend([PASSWORD, password, &wrong, &expected]);
            assert_no_secret(&format!("{who:?}'s output"), &out.output, &secrets);
        }
    }
}

#[test]
fn blob_redirects_to_this_machines_own_addresses_are_refused_from_a_registry_elsewhere() {
    let registry = basic_registry();
    let trap = Trap::start();
    let query = presigned_query();
    let secrets = [
        PASSWORD,
        &basic_header(USER, PASSWORD),
        SIGNATURE,
        CREDENTIAL,
    ];

    // The control: the same front redirecting to storage on its own (non-loopback) address
    // works, and the storage gets none of our credentials.
    let front = Front::start(
        &registry.host(),
        Hostility::RedirectBlobs {
            base: "http://{front}/store/ok".into(),
            query: query.clone(),
        },
        Some(format!("Basic {}", basic_header(USER, PASSWORD))),
    );
    let image = format!("{}/team/app:v1", front.host());
    let cache = tempfile::tempdir().expect("tmp");
    pull_in_process(
        &image,
        &options(cache.path(), &[&front.host()], Some(PASSWORD)),
    )
    .expect("a redirect to storage on the network is followed");
    let stored: Vec<_> = front
        .seen()
        .into_iter()
        .filter(|(line, _)| line.contains("/store/"))
        .collect();
    assert!(
        !stored.is_empty(),
        "the blobs came from storage: {:?}",
        front.seen()
    );
    assert!(
        stored.iter().all(|(_, auth)| auth.is_none()),
        "credentials went to storage: {stored:?}"
    );

    let port = trap.addr.port();
    let targets = [
        (format!("http://127.0.0.1:{port}"), "a loopback"),
        (format!("http://localhost:{port}"), "a loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}"), "a loopback"),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "a link-local",
        ),
        (format!("http://0.0.0.0:{port}"), "an unspecified"),
    ];
    for (base, kind) in &targets {
        let front = Front::start(
            &registry.host(),
            Hostility::RedirectBlobs {
                base: base.clone(),
                query: query.clone(),
            },
            None,
        );
        let image = format!("{}/team/app:v1", front.host());
        let cache = tempfile::tempdir().expect("tmp");
        let err = pull_in_process(
            &image,
            &options(cache.path(), &[&front.host()], Some(PASSWORD)),
        )
        .expect_err("a redirect to this machine's own address must be refused");
        assert!(
            err.contains(kind) && err.contains("address: refusing it"),
            "{base}: {err}"
        );
        assert_no_secret("the error", &err, &secrets);
        assert_no_image_left(cache.path());
        for who in RUNNERS {
            let out = scar_pull(
                who,
                &image,
                &[
                    ("SCAR_INSECURE_REGISTRIES", &front.host()),
                    ("SCAR_REGISTRY_USERNAME", USER),
                    ("SCAR_REGISTRY_PASSWORD", PASSWORD),
                ],
            );
            assert!(
                !out.ok && out.output.contains(kind) && out.output.contains("address: refusing it"),
                "{who:?}, {base}: {}",
                out.output
            );
            assert_no_secret(&format!("{who:?}'s output"), &out.output, &secrets);
        }
    }
    assert!(
        trap.seen().is_empty(),
        "the trap was reached: {:?}",
        trap.seen()
    );

    // A registry that is itself on loopback may redirect there (tests, a developer's machine).
    let local = FaultProxy::start(
        &registry.host(),
        scar_e2e::fault::Fault::Redirect {
            base: Box::leak(format!("http://127.0.0.1:{port}").into_boxed_str()),
        },
        "/blobs/",
        1,
    );
    let cache = tempfile::tempdir().expect("tmp");
    let err = pull_in_process(
        &format!("{}/team/app:v1", local.host()),
        &options(cache.path(), &[&local.host()], Some(PASSWORD)),
    )
    .expect_err("the trap serves no blob");
    // Followed: the trap's `{}` is not the config the manifest names.
    assert!(
        !err.contains("address: refusing it") && err.contains("has digest"),
        "{err}"
    );
    assert_eq!(
        trap.seen().len(),
        1,
        "followed to the trap: {:?}",
        trap.seen()
    );
    assert_eq!(trap.seen()[0].1, None, "without credentials");
}

#[test]
fn a_token_realm_on_this_machines_own_addresses_is_refused_from_a_registry_elsewhere() {
    let trap = Trap::start();
    let trap_host = trap.addr.to_string();
    let challenges = [
        (
            format!(r#"Bearer realm="http://{trap_host}/token",service="x""#),
            "a loopback",
        ),
        (
            r#"Bearer realm="https://169.254.169.254/latest/api/token",service="x""#.to_owned(),
            "a link-local",
        ),
    ];
    for (challenge, kind) in &challenges {
        // The registry behind is irrelevant: every request is challenged.
        let front = Front::start("127.0.0.1:9", Hostility::Challenge(challenge.clone()), None);
        let image = format!("{}/team/app:v1", front.host());
        let insecure = format!("{},{trap_host}", front.host());
        let cache = tempfile::tempdir().expect("tmp");
        let err = pull_in_process(
            &image,
            &options(cache.path(), &[&front.host(), &trap_host], Some(PASSWORD)),
        )
        .expect_err("a realm on this machine's own address must be refused");
        assert!(
            err.contains(kind) && err.contains("address: refusing it") && err.contains("a token"),
            "{challenge}: {err}"
        );
        assert_no_secret("the error", &err, &[PASSWORD]);
        for who in RUNNERS {
            let out = scar_pull(
                who,
                &image,
                &[
                    ("SCAR_INSECURE_REGISTRIES", &insecure),
                    ("SCAR_REGISTRY_USERNAME", USER),
                    ("SCAR_REGISTRY_PASSWORD", PASSWORD),
                ],
            );
            assert!(
                !out.ok && out.output.contains(kind) && out.output.contains("address: refusing it"),
                "{who:?}: {}",
                out.output
            );
            assert_no_secret(&format!("{who:?}'s output"), &out.output, &[PASSWORD]);
        }
    }
    assert!(
        trap.seen().is_empty(),
        "the trap was reached: {:?}",
        trap.seen()
    );
}

#[test]
fn presigned_storage_queries_and_credentials_appear_in_no_log_or_error() {
    let registry = basic_registry();
    let query = presigned_query();
    let storage_auth = Some(format!("Basic {}", basic_header(USER, PASSWORD)));
    let secrets = [
        PASSWORD,
        &basic_header(USER, PASSWORD),
        SIGNATURE,
        CREDENTIAL,
    ];
    for (store, succeeds) in [("ok", true), ("broken", false)] {
        let front = Front::start(
            &registry.host(),
            Hostility::RedirectBlobs {
                base: format!("http://{{front}}/store/{store}"),
                query: query.clone(),
            },
            storage_auth.clone(),
        );
        let image = format!("{}/team/app:v1", front.host());
        let cache = tempfile::tempdir().expect("tmp");
        let result = pull_in_process(
            &image,
            &options(cache.path(), &[&front.host()], Some(PASSWORD)),
        );
        assert_eq!(result.is_ok(), succeeds, "{store}: {result:?}");
        if let Err(err) = &result {
            assert!(
                err.contains("/store/broken/v2/team/app/blobs/"),
                "names the URL: {err}"
            );
            assert_no_secret("the error", err, &secrets);
            assert_no_image_left(cache.path());
        }
        for who in RUNNERS {
            let out = scar_pull(
                who,
                &image,
                &[
                    ("SCAR_INSECURE_REGISTRIES", &front.host()),
                    ("SCAR_REGISTRY_USERNAME", USER),
                    ("SCAR_REGISTRY_PASSWORD", PASSWORD),
                ],
            );
            assert_eq!(out.ok, succeeds, "{who:?}, {store}: {}", out.output);
            assert_no_secret(&format!("{who:?}'s output"), &out.output, &secrets);
        }
        // Storage was asked with the secret query, and never with our credentials.
        let stored: Vec<_> = front
            .seen()
            .into_iter()
            .filter(|(line, _)| line.contains("/store/"))
            .collect();
        assert!(
            !stored.is_empty()
                && stored
                    .iter()
                    .all(|(l, a)| l.contains(SIGNATURE) && a.is_none()),
            "{stored:?}"
        );
    }
}

/// ECR: account, region and keys of the stand-in.
const ACCESS_KEY: &str = "AKIASCARE2ECREDS0001";
const SECRET_KEY: &str = "scar-e2e-creds-secret-key-fedcba9876543210";
const SESSION_TOKEN: &str = "scar-e2e-creds-session/token+role==";

#[test]
fn only_exact_ecr_hosts_get_an_ecr_token_and_it_is_never_logged() {
    let ecr_password = format!("ecr-Authorization-{}", std::process::id());
    let registry = Registry::start_with_basic_auth("AWS", &ecr_password);
    Pusher::with_basic(&registry.url(), "AWS", &ecr_password).image("scar/app", "v1", &image());
    let ecr = EcrStandIn::start(ACCESS_KEY, SECRET_KEY, "AWS", &ecr_password);
    // The names reach the loopback registry through a recording HTTP proxy, as in pull_ecr.rs.
    let proxy = FaultProxy::tap_deferred();
    proxy.set_upstream(&registry.host());
    let port = registry.port();
    let token = basic_header("AWS", &ecr_password);
    let secrets = [ecr_password.as_str(), &token, SECRET_KEY, SESSION_TOKEN];
    let run = |who: As, host: &str| {
        let image = format!("{host}:{port}/scar/app:v1");
        let host_port = format!("{host}:{port}");
        let proxy_url = format!("http://{}", proxy.host());
        let endpoint = ecr.endpoint();
        let env = [
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
            ("AWS_ENDPOINT_URL_ECR", &endpoint),
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("SCAR_INSECURE_REGISTRIES", &host_port),
        ];
        scar_pull(who, &image, &env)
    };
    let lookalikes = [
        "123456789012.dkr.ecr.eu-west-3.amazonaws.com.evil.net",
        "12345678901x.dkr.ecr.eu-west-3.amazonaws.com",
        "123456789012.dkr.ecr.eu-west-3.evil-amazonaws.com",
    ];
    for who in RUNNERS {
        for host in lookalikes {
            let before = ecr.calls().len();
            let out = run(who, host);
            assert!(
                !out.ok && out.output.contains("set SCAR_REGISTRY_USERNAME"),
                "{who:?}, {host}: {}",
                out.output
            );
            assert_eq!(
                ecr.calls().len(),
                before,
                "{who:?}: {host} got an ECR token"
            );
            assert_no_secret(&format!("{who:?}'s output"), &out.output, &secrets);
        }
        let before = ecr.calls().len();
        let out = run(who, "123456789012.dkr.ecr.eu-west-3.amazonaws.com");
        assert!(out.ok, "{who:?}: {}", out.output);
        assert!(ecr.calls().len() > before, "{who:?}: ECR was asked");
        assert_no_secret(&format!("{who:?}'s output"), &out.output, &secrets);
    }
    assert!(
        proxy.requests().iter().any(|r| r.contains(".evil.net:")),
        "the lookalike was really asked: {:?}",
        proxy.requests()
    );
}

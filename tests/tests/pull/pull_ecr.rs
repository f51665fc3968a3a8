//! End to end: a pull from an Amazon ECR registry host gets its credentials from ECR's
//! `GetAuthorizationToken` through the standard AWS credential chain, with no
//! `SCAR_REGISTRY_USERNAME`/`SCAR_REGISTRY_PASSWORD`.
//!
//! The pieces, all real but the ECR API: `scar pull` (the same `scar_rootfs::pull` the bootstrap
//! uses) with the AWS keys in the environment; `scar_e2e::ecr::EcrStandIn`, which checks the
//! SigV4 signature of every request and answers with `base64("AWS:<password>")`, reached through
//! the SDK's standard `AWS_ENDPOINT_URL_ECR`; the CNCF registry with basic auth for user `AWS`
//! and that password, holding the image. The image is named
//! `123456789012.dkr.ecr.eu-west-3.amazonaws.com:PORT/...` (an ECR host is how the pull
//! decides to ask ECR, and where it takes the region from); the name reaches the loopback
//! registry through a standard `HTTP_PROXY`, `scar_e2e::fault`'s proxy in tap mode, which
//! records each request line. No DNS or `/etc/hosts` change, no test-only switch.
//!
//! Run: `cargo test -p scar-e2e --test pull pull_ecr::` (needs docker-registry and busybox-static).

use std::path::Path;
use std::process::{Command, Output};

use scar_e2e::Registry;
use scar_e2e::ecr::{EcrStandIn, GET_AUTHORIZATION_TOKEN};
use scar_e2e::fault::FaultProxy;
use scar_e2e::oci::{self, Pusher};

/// Account and region of the ECR host name.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-3";
const ACCESS_KEY: &str = "AKIASCARE2EECRTEST01";
const SECRET_KEY: &str = "scar-e2e-ecr-secret-key-0123456789abcdef";
/// Lambda hands its role's temporary credentials over with a session token.
const SESSION_TOKEN: &str = "scar-e2e-session-token/role+lambda==";
const MARKER: &[u8] = b"pulled from ECR\n";

/// A registry that only `AWS:<password>` may read, holding the test image as `scar/app:v1`.
fn ecr_registry(password: &str) -> Registry {
    let registry = Registry::start_with_basic_auth("AWS", password);
    let image = oci::busybox_image(&[("etc/scar-marker", MARKER)]);
    Pusher::with_basic(&registry.url(), "AWS", password).image("scar/app", "v1", &image);
    registry
}

/// The ECR-style name of `registry` (same port, so the proxy only has to pass requests on).
fn ecr_host(registry: &Registry) -> String {
    let port = registry.port();
    format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com:{port}")
}

/// `scar pull <image>` with only the AWS credential chain's variables, the ECR endpoint and
/// the proxy set: nothing of this machine's AWS configuration leaks in.
fn scar_pull(
    image: &str,
    secret_key: &str,
    ecr: &EcrStandIn,
    proxy: &FaultProxy,
    dir: &Path,
) -> Output {
    let scar = scar_e2e::workspace::binary("scar-tools", "scar");
    // Empty AWS files: the chain finds nothing in them and has nothing to warn about.
    let (config, credentials) = (dir.join("aws-config"), dir.join("aws-credentials"));
    std::fs::write(&config, "").expect("write the AWS config");
    std::fs::write(&credentials, "").expect("write the AWS credentials");
    let host = image.split('/').next().unwrap_or_default();
    Command::new(scar)
        .arg("pull")
        .arg(image)
        .arg("--cache")
        .arg(dir.join("cache"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", dir)
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("AWS_ENDPOINT_URL_ECR", ecr.endpoint())
        .env("HTTP_PROXY", format!("http://{}", proxy.host()))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("SCAR_INSECURE_REGISTRIES", host)
        .output()
        .expect("run scar pull")
}

/// Everything one test needs: the registry behind an ECR host name, the ECR stand-in, the
/// recording proxy, the image name and a work directory.
struct EcrCase {
    registry: Registry,
    ecr: EcrStandIn,
    proxy: FaultProxy,
    host: String,
    image: String,
    work: tempfile::TempDir,
}

impl EcrCase {
    fn start() -> EcrCase {
        let password = format!("ecr-token-{}", std::process::id());
        let registry = ecr_registry(&password);
        let ecr = EcrStandIn::start(ACCESS_KEY, SECRET_KEY, "AWS", &password);
        let proxy = proxy_to(&registry);
        let host = ecr_host(&registry);
        let image = format!("{host}/scar/app:v1");
        EcrCase {
            registry,
            ecr,
            proxy,
            host,
            image,
            work: tempfile::tempdir().expect("tempdir"),
        }
    }
}

/// A proxy that passes every request on to `registry` and records it.
fn proxy_to(registry: &Registry) -> FaultProxy {
    let proxy = FaultProxy::tap_deferred();
    proxy.set_upstream(&registry.host());
    proxy
}

#[test]
fn an_ecr_host_is_pulled_with_the_token_of_a_sigv4_signed_get_authorization_token() {
    let EcrCase {
        registry,
        ecr,
        proxy,
        host,
        image,
        work,
    } = EcrCase::start();

    let out = scar_pull(&image, SECRET_KEY, &ecr, &proxy, work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scar pull failed:\n{stdout}\n{stderr}\n{}",
        registry.log()
    );
    let root = Path::new(stdout.lines().next().expect("the root's path").trim());
    assert_eq!(
        std::fs::read(root.join("etc/scar-marker")).expect("marker"),
        MARKER
    );

    // ECR was asked, with a valid signature for the host's region, for exactly this operation.
    let calls = ecr.calls();
    println!("ECR calls: {calls:?}");
    assert!(!calls.is_empty(), "GetAuthorizationToken was never called");
    for call in &calls {
        assert_eq!(call.target, GET_AUTHORIZATION_TOKEN, "{call:?}");
        assert_eq!(call.signature, Ok(()), "{call:?}");
        assert_eq!(
            call.signed_session_token.as_deref(),
            Some(SESSION_TOKEN),
            "{call:?}"
        );
        assert!(
            call.scope.starts_with(&format!("{ACCESS_KEY}/"))
                && call.scope.ends_with(&format!("/{REGION}/ecr/aws4_request")),
            "{call:?}"
        );
    }
    // Every registry request went to the ECR host name, and the image came through them.
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.contains(&format!("http://{host}/v2/"))),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("/manifests/v1")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("/blobs/sha256:")),
        "{requests:?}"
    );
}

#[test]
fn a_badly_signed_token_request_fails_the_pull_naming_the_ecr_host_and_caches_nothing() {
    let EcrCase {
        registry: _registry,
        ecr,
        proxy,
        host,
        image,
        work,
    } = EcrCase::start();

    let out = scar_pull(&image, "not-the-secret-key", &ecr, &proxy, work.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("scar pull said: {stderr}");
    assert!(
        !out.status.success(),
        "a pull with a bad signature succeeded"
    );
    assert!(
        stderr.contains(&format!("cannot get ECR credentials for {host}")),
        "{stderr}"
    );
    assert!(stderr.contains("InvalidSignatureException"), "{stderr}");
    assert!(
        stderr.contains("credentials are wrong or expired") && stderr.lines().count() == 1,
        "one line with the way out: {stderr}"
    );
    let calls = ecr.calls();
    assert!(
        calls.iter().all(|c| c.signature.is_err()) && !calls.is_empty(),
        "{calls:?}"
    );
    // No layer was asked for without credentials.
    assert!(
        !proxy.requests().iter().any(|r| r.contains("/blobs/")),
        "{:?}",
        proxy.requests()
    );
    let published: Vec<_> = std::fs::read_dir(work.path().join("cache/rootfs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(published.is_empty(), "{published:?}");
}

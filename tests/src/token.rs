//! A registry behind a token service, as Docker Hub, GHCR and ECR-like registries are: the real
//! CNCF registry configured with `auth: token`, and a small token server in this process that
//! signs ES256 JWTs with a self-signed certificate the registry trusts.
//!
//! Policy of the token server: repositories under `public/` may be pulled anonymously; anything
//! else needs the user and password the registry was started with; pushes need them too.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use crate::service::{self, ServiceChild, ThreadedServer};

const SERVICE: &str = "scar-registry";
const ISSUER: &str = "scar-token-issuer";

struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    user: String,
    password: String,
    issued: AtomicUsize,
    /// Every token handed out, and the `Authorization` of every request (None: anonymous).
    seen: std::sync::Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    tokens: Vec<String>,
    authorizations: Vec<Option<String>>,
}

/// A `docker-registry` that only accepts tokens from the in-process token server.
pub struct TokenRegistry {
    child: ServiceChild,
    addr: SocketAddr,
    realm: String,
    signer: Arc<Signer>,
    _server: ThreadedServer,
    _dir: tempfile::TempDir,
}

impl TokenRegistry {
    /// Start the token server and the registry trusting it.
    pub fn start(user: &str, password: &str) -> TokenRegistry {
        let program =
            service::require_program("docker-registry", "the Debian package docker-registry");
        let dir = service::temp_dir("token-registry");
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["scar-token".to_owned()])
            .expect("cert params")
            .self_signed(&key_pair)
            .expect("self-signed cert");
        let bundle = dir.path().join("token.crt");
        std::fs::write(&bundle, cert.pem()).expect("write cert");
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("ring key");
        let signer = Arc::new(Signer {
            key,
            cert_der: cert.der().to_vec(),
            user: user.to_owned(),
            password: password.to_owned(),
            issued: AtomicUsize::new(0),
            seen: std::sync::Mutex::new(Seen::default()),
        });
        let server = ThreadedServer::start("token server", signer.clone(), serve_token);
        let realm = format!("http://{}/token", server.addr());
        let mut last = String::new();
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], service::free_port()));
            let config = dir.path().join("config.yml");
            let yaml = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: scar-e2e-not-a-secret\n\
                 health:\n  storagedriver:\n    enabled: false\n\
                 auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n",
                storage = dir.path().join("storage").display(),
                bundle = bundle.display(),
            );
            std::fs::write(&config, yaml).expect("write config");
            let mut command = Command::new(&program);
            command.arg("serve").arg(&config);
            let mut child =
                ServiceChild::spawn("docker-registry", command, &dir.path().join("registry.log"));
            match child.wait_for_port(addr) {
                Ok(()) => {
                    return TokenRegistry {
                        child,
                        addr,
                        realm,
                        signer,
                        _server: server,
                        _dir: dir,
                    };
                }
                Err(line) if service::is_port_race(&line) => last = line,
                Err(line) => panic!("docker-registry (token auth) exited: {line}"),
            }
        }
        panic!("docker-registry (token auth) could not bind a port: {last}");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `127.0.0.1:PORT` of the token service: plain HTTP, so a pull must list it in
    /// `SCAR_INSECURE_REGISTRIES` for its credentials and tokens to go there.
    pub fn realm_host(&self) -> String {
        self.realm
            .trim_start_matches("http://")
            .trim_end_matches("/token")
            .to_owned()
    }

    /// Every token the service handed out (to the pull under test: secrets it must not print).
    pub fn tokens(&self) -> Vec<String> {
        self.signer
            .seen
            .lock()
            .map(|s| s.tokens.clone())
            .unwrap_or_default()
    }

    /// The `Authorization` header of each request the token service answered, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.signer
            .seen
            .lock()
            .map(|s| s.authorizations.clone())
            .unwrap_or_default()
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.signer.issued.load(Ordering::Relaxed)
    }

    /// An `Authorization` value allowing push and pull on `repo` (for the test's own pushes).
    pub fn push_authorization(&self, repo: &str) -> String {
        let user = self.signer.user.clone();
        format!("Bearer {}", self.signer.jwt(&user, repo, &["pull", "push"]))
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        self.child.log()
    }
}

impl Signer {
    fn jwt(&self, subject: &str, repo: &str, actions: &[&str]) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let access = if actions.is_empty() {
            serde_json::json!([])
        } else {
            serde_json::json!([{"type": "repository", "name": repo, "actions": actions}])
        };
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": format!("{now}-{}", self.issued.fetch_add(1, Ordering::Relaxed)),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).expect("json")),
            b64(&serde_json::to_vec(&claims).expect("json"))
        );
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .expect("sign");
        let token = format!("{input}.{}", b64(sig.as_ref()));
        if let Ok(mut seen) = self.seen.lock() {
            seen.tokens.push(token.clone());
        }
        token
    }
}

fn serve_token(s: &Signer, mut conn: TcpStream) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_owned());
        }
    }
    if let Ok(mut seen) = s.seen.lock() {
        seen.authorizations.push(authorization.clone());
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let scope = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("scope="))
        .map(|v| {
            v.replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
        .unwrap_or_default();
    let repo = scope.split(':').nth(1).unwrap_or("").to_owned();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.user, s.password))
    );
    let (status, body) = match authorization {
        Some(a) if a == expected => (200, token_body(&s.jwt(&s.user, &repo, &["pull"]))),
        Some(_) => (401, r#"{"details":"wrong user or password"}"#.to_owned()),
        None if repo.starts_with("public/") => (200, token_body(&s.jwt("", &repo, &["pull"]))),
        // Anonymous callers get a token with no access, as Docker Hub does for private repos.
        None => (200, token_body(&s.jwt("", &repo, &[]))),
    };
    let reason = if status == 200 { "OK" } else { "Unauthorized" };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
}

fn token_body(token: &str) -> String {
    serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string()
}

//! Shared by the `bootstrap*.rs` tests and benchmarks: the real `bootstrap` binary started as a
//! Lambda function against the harness's Runtime API emulator and S3 server, and a busybox
//! image as an OCI layout.

#![allow(dead_code)] // each test file uses a different part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use scar_e2e::runtime_api::{DEFAULT_FUNCTION, Invocation};
use scar_e2e::runtime_proxy::RuntimeProxy;
use scar_e2e::{RuntimeApi, S3Server};
use sha2::{Digest, Sha256};

/// The input bucket every test uses.
pub const BUCKET: &str = "scar-in";
/// Generous: two shared cores, and the first invocation may pull.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(180);
/// The script most tests run: copy the input into the output directory.
pub const COPY_SCRIPT: &str = "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"";
/// The script of [`Function::stream_big_file`]: copy the input to `output/copy.bin`.
pub const COPY_BIG_SCRIPT: &str = "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/copy.bin\"";
/// Where built test images are cached between runs.
const IMAGE_CACHE: &str = "/var/tmp/scar-test-images";
/// Bump when the busybox layout recipe changes.
const RECIPE: u32 = 2;

/// Busybox applets linked in the image's `/bin`.
const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "cat",
    "cp",
    "mv",
    "rm",
    "ls",
    "echo",
    "sleep",
    "env",
    "grep",
    "head",
    "tail",
    "dd",
    "wc",
    "mkdir",
    "find",
    "tr",
    "true",
    "false",
    "printf",
    "test",
    "[",
    "cut",
    "md5sum",
    "sha256sum",
    "ps",
    "kill",
    "date",
    "stat",
    "base64",
    "basename",
    "dirname",
    "tee",
    "sort",
    "uniq",
    "id",
    "touch",
    "seq",
    "xargs",
    "awk",
    "sed",
    "ln",
    "readlink",
    "pwd",
    "chmod",
    "uname",
    "cmp",
    "du",
    "truncate",
];

/// The `bootstrap` binary of this workspace, built once per test process; `SCAR_E2E_BOOTSTRAP`
/// names another one (e.g. the release build of `build.sh`, for benchmark figures).
pub fn bootstrap_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SCAR_E2E_BOOTSTRAP") {
            return PathBuf::from(bin);
        }
        scar_e2e::workspace::binary("scar-bootstrap", "bootstrap")
    })
    .clone()
}

/// An OCI image layout holding a static busybox with its applets in `/bin`, tagged `latest`.
pub fn busybox_layout() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(build_busybox_layout).clone()
}

/// `oci:<layout>:latest` for [`busybox_layout`].
pub fn busybox_image() -> String {
    format!("oci:{}:latest", busybox_layout().display())
}

fn build_busybox_layout() -> PathBuf {
    let dest = Path::new(IMAGE_CACHE).join(format!("bootstrap-busybox-oci-{RECIPE}"));
    if dest.join("index.json").is_file() {
        return dest;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("busybox is missing: apt-get install busybox-static");
    std::fs::create_dir_all(IMAGE_CACHE).expect("create the image cache");
    let work = tempfile::Builder::new()
        .prefix("bootstrap-busybox-")
        .tempdir_in(IMAGE_CACHE)
        .expect("tempdir");
    let blobs = work.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");

    let mut tar = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("proc", 0o755),
        ("dev", 0o755),
        ("sys", 0o755),
        ("root", 0o700),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        header.set_mtime(1_700_000_000);
        tar.append_data(&mut header, format!("{dir}/"), std::io::empty())
            .expect("tar dir");
    }
    let body = std::fs::read(busybox).expect("read busybox");
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o755);
    header.set_size(body.len() as u64);
    header.set_mtime(1_700_000_000);
    tar.append_data(&mut header, "bin/busybox", body.as_slice())
        .expect("tar busybox");
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(passwd.len() as u64);
    header.set_mtime(1_700_000_000);
    tar.append_data(&mut header, "etc/passwd", &passwd[..])
        .expect("tar passwd");
    for applet in APPLETS {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        header.set_mtime(1_700_000_000);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")
            .expect("tar link");
    }
    let layer_tar = tar.into_inner().expect("finish tar");
    let diff_id = sha256(&layer_tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer_tar).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let layer_digest = write_blob(&blobs, &layer);

    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin:/usr/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    });
    let config = serde_json::to_vec(&config).expect("config json");
    let config_digest = write_blob(&blobs, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{layer_digest}"), "size": layer.len()}],
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifest json");
    let manifest_digest = write_blob(&blobs, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        work.path().join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("write index");
    std::fs::write(
        work.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    // Readable by the simulated Lambda's unprivileged uid (tempdirs are created 0700).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod layout");
    }
    let work = work.keep();
    // Another test process may have won the race; either copy is complete.
    if std::fs::rename(&work, &dest).is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    dest
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    std::fs::write(dir.join(&digest), bytes).expect("write blob");
    digest
}

/// Encode a key the way S3 notifications do: form-style, space as `+`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// One S3 `ObjectCreated:Put` record as S3 sends it.
pub fn s3_record(bucket: &str, key: &str, size: usize) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T15:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "EXAMPLE", "x-amz-id-2": "EXAMPLE"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "scar-trigger",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": encode_key(key), "size": size, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"}
        }
    })
}

/// An S3 notification holding `records`.
pub fn s3_event(records: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "Records": records })
}

/// An S3 record holding only what the bootstrap needs (no `eventTime`, `eventName`,
/// `userIdentity`, `requestParameters`, size or eTag), as some S3-compatible servers send it.
pub fn minimal_s3_record(bucket: &str, key: &str) -> serde_json::Value {
    serde_json::json!({
        "eventSource": "aws:s3",
        "s3": {"bucket": {"name": bucket}, "object": {"key": encode_key(key)}}
    })
}

/// The `s3:TestEvent` S3 sends once when a notification is configured on `bucket`.
pub fn s3_test_event(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-27T15:00:00.000Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
    })
}

/// One SQS message of a Lambda event-source-mapping batch, `body` as its text.
pub fn sqs_message(message_id: &str, body: &str) -> serde_json::Value {
    serde_json::json!({
        "messageId": message_id,
        "receiptHandle": format!("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a{message_id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764255600000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1764255600005"
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:scar-queue",
        "awsRegion": "us-east-1"
    })
}

/// An SQS batch holding `messages` (see [`sqs_message`]).
pub fn sqs_event(messages: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "Records": messages })
}

/// The JSON an SNS topic delivers to an SQS queue without raw message delivery: `message` is
/// the published text (e.g. an S3 notification).
pub fn sns_notification_body(message: &serde_json::Value) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:scar-topic",
        "Subject": "Amazon S3 Notification",
        "Message": message.to_string(),
        "Timestamp": "2026-11-27T15:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j==",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:scar-topic:0"
    })
    .to_string()
}

/// An SNS event as Lambda receives it from a topic, `message` published on it.
pub fn sns_event(message: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "Records": [{
            "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:scar-topic:21be56ed-a058-49f5-8c98-aedd2564c486",
            "EventSource": "aws:sns",
            "Sns": {
                "SignatureVersion": "1",
                "Timestamp": "2026-11-27T15:00:00.000Z",
                "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j==",
                "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
                "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                "Message": message.to_string(),
                "MessageAttributes": {},
                "Type": "Notification",
                "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:scar-topic:0",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:scar-topic",
                "Subject": "Amazon S3 Notification"
            }
        }]
    })
}

/// An EventBridge event from S3 of `detail_type` (e.g. "Object Created") for `bucket/key`.
pub fn eventbridge_s3_event(
    detail_type: &str,
    bucket: &str,
    key: &str,
    size: usize,
) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-27T15:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": "b1946ac92492d2347c6235b4d2611184",
                "sequencer": "00617F08299329D189"
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject"
        }
    })
}

/// The `records` of a response document.
pub fn records(body: &serde_json::Value) -> &Vec<serde_json::Value> {
    body["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {body}"))
}

/// The `skipped` entries of a response document.
pub fn skipped(body: &serde_json::Value) -> &Vec<serde_json::Value> {
    body["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("no skipped in {body}"))
}

/// A string field of a response document; panics naming the field when it is missing.
pub fn response_text<'a>(body: &'a serde_json::Value, field: &str) -> &'a str {
    body.get(field)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no {field} in {body}"))
}

/// The `outputs` URLs of a response document.
pub fn outputs(body: &serde_json::Value) -> Vec<String> {
    body["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {body}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A bootstrap process serving the emulator's function, with its S3 server.
pub struct Function {
    /// The S3-compatible server (bucket [`BUCKET`] exists).
    pub s3: S3Server,
    /// The Runtime API emulator.
    pub api: RuntimeApi,
    /// The proxy between the bootstrap and the emulator, when started
    /// [`through_proxy`](FunctionSpec::through_proxy).
    pub proxy: Option<RuntimeProxy>,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _layer: Option<tempfile::TempDir>,
}

/// How to start a [`Function`].
#[derive(Default)]
pub struct FunctionSpec {
    env: Vec<(String, String)>,
    removed: Vec<String>,
    tmp_mb: Option<u32>,
    bootstrap: Option<PathBuf>,
    proxied: bool,
}

impl FunctionSpec {
    /// Set a variable of the function.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Leave a default variable out.
    pub fn without(mut self, name: &str) -> Self {
        self.removed.push(name.to_owned());
        self
    }

    /// Put a [`RuntimeProxy`] between the bootstrap and the emulator (`Function::proxy`): the
    /// Runtime API headers the emulator does not send, `410 Gone` on demand.
    pub fn through_proxy(mut self) -> Self {
        self.proxied = true;
        self
    }

    /// Start the services and the bootstrap.
    pub fn start(self) -> Function {
        self.launch(None)
    }

    /// Start the services on the host and the bootstrap inside the simulated Lambda
    /// (`scar lambda-sim`: uid 993, seccomp, user namespaces refused, a bare read-only root,
    /// tmpfs `/tmp`, the layer at `/opt`). The bootstrap is the static one of `./build.sh` (the
    /// simulator's root holds no C library); the test image's OCI layout is shown read-only at
    /// its host path. The simulator's own error (not root, ...) fails the test.
    pub fn start_simulated(self) -> Function {
        let layer = scar_e2e::lambda_sim::layer_dir();
        std::fs::copy(
            scar_e2e::lambda_sim::static_binaries().join("bootstrap"),
            layer.path().join("bootstrap"),
        )
        .expect("copy the static bootstrap into the layer");
        self.launch(Some(layer))
    }

    /// Start `bootstrap` (e.g. the static one of `./build.sh`) on the host instead of
    /// [`bootstrap_bin`].
    pub fn start_bootstrap(mut self, bootstrap: &Path) -> Function {
        self.bootstrap = Some(bootstrap.to_path_buf());
        self.launch(None)
    }

    /// As [`start_simulated`](Self::start_simulated) with `layer` at `/opt` (e.g. an unpacked
    /// layer zip: `bootstrap`, `preload/`) and a `/tmp` of `tmp_mb` MiB.
    pub fn start_simulated_with_layer(mut self, layer: tempfile::TempDir, tmp_mb: u32) -> Function {
        self.tmp_mb = Some(tmp_mb);
        self.launch(Some(layer))
    }

    fn launch(self, layer: Option<tempfile::TempDir>) -> Function {
        let s3 = S3Server::start();
        s3.create_bucket(BUCKET);
        let api = RuntimeApi::start();
        let dir = tempfile::Builder::new()
            .prefix("scar-e2e-bootstrap-")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("bootstrap.log");
        let mut env: Vec<(String, String)> = api.function_env(DEFAULT_FUNCTION);
        let proxy = self
            .proxied
            .then(|| RuntimeProxy::start(&api.runtime_api_for(DEFAULT_FUNCTION)));
        if let Some(proxy) = &proxy {
            env.retain(|(name, _)| name != "AWS_LAMBDA_RUNTIME_API");
            env.push(("AWS_LAMBDA_RUNTIME_API".into(), proxy.runtime_api()));
        }
        env.extend(s3.env());
        env.push(("SCAR_IMAGE".into(), busybox_image()));
        if layer.is_none() {
            // In the simulation the default `/tmp/scar` is the sandbox's own tmpfs.
            env.push((
                "SCAR_CACHE_DIR".into(),
                dir.path().join("cache").display().to_string(),
            ));
        }
        env.extend(self.env);
        env.retain(|(name, _)| !self.removed.contains(name));
        let log_file = std::fs::File::create(&log).expect("create the bootstrap log");
        let mut command = match &layer {
            None => {
                let mut command = Command::new(self.bootstrap.unwrap_or_else(bootstrap_bin));
                command.env_clear().envs(env);
                command
            }
            Some(layer) => {
                // The bootstrap sees exactly the function's variables.
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                scar_e2e::lambda_sim::LambdaSim::new(layer.path())
                    .tmp_mb(self.tmp_mb.unwrap_or(512))
                    .ro_bind(IMAGE_CACHE, IMAGE_CACHE)
                    .exec(&["/opt/bootstrap"], &env)
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn bootstrap");
        Function {
            s3,
            api,
            proxy,
            child,
            log,
            _dir: dir,
            _layer: layer,
        }
    }
}

impl Function {
    /// A function with the default environment plus what `spec` adds.
    pub fn spec() -> FunctionSpec {
        FunctionSpec::default()
    }

    /// Invoke the function with `payload`.
    pub fn invoke(&self, payload: &serde_json::Value) -> Invocation {
        self.api
            .try_invoke(DEFAULT_FUNCTION, payload, INVOKE_TIMEOUT)
            .unwrap_or_else(|err| panic!("{err}\n--- bootstrap log ---\n{}", self.log()))
    }

    /// Invoke with `payload` and return the invoke's status and its body as sent, for checks
    /// on the bytes themselves (the payload limit).
    pub fn invoke_raw(&self, payload: &serde_json::Value) -> (u16, String) {
        let url = format!(
            "{}/2015-03-31/functions/{DEFAULT_FUNCTION}/invocations",
            self.api.url()
        );
        let response = reqwest::blocking::Client::builder()
            .timeout(INVOKE_TIMEOUT)
            .build()
            .expect("HTTP client")
            .post(&url)
            .header("content-type", "application/json")
            .body(payload.to_string())
            .send()
            .unwrap_or_else(|err| panic!("invoke: {err}\n--- bootstrap log ---\n{}", self.log()));
        let status = response.status().as_u16();
        let text = response
            .text()
            .unwrap_or_else(|err| panic!("invoke: cannot read the response: {err}"));
        (status, text)
    }

    /// Invoke with an S3 event for `keys` of [`BUCKET`].
    pub fn invoke_s3(&self, keys: &[&str]) -> Invocation {
        let records = keys.iter().map(|key| s3_record(BUCKET, key, 0)).collect();
        self.invoke(&s3_event(records))
    }

    /// Assert `result` failed with `error_type` (the panic shows the response and the log) and
    /// return its error message.
    pub fn expect_error(&self, result: &Invocation, error_type: &str) -> String {
        assert_eq!(
            result.error_type.as_deref(),
            Some(error_type),
            "{}\n{}",
            result.body,
            self.log()
        );
        result.error_message().unwrap_or_default().to_owned()
    }

    /// Stream `mib` MiB through a function running [`COPY_BIG_SCRIPT`]: put a file of
    /// non-repeating bytes as `big.bin`, invoke with its S3 event, and check the invocation
    /// succeeded and `output/copy.bin` has the input's size. Returns the invocation, the input
    /// file and the stored output's path.
    pub fn stream_big_file(&self, mib: usize) -> (Invocation, tempfile::NamedTempFile, PathBuf) {
        let source = tempfile::NamedTempFile::new().expect("tempfile");
        write_big_file(source.path(), mib);
        self.s3.put_file(BUCKET, "big.bin", source.path());
        let result = self.invoke(&s3_event(vec![s3_record(BUCKET, "big.bin", mib << 20)]));
        assert_eq!(result.status, 200, "{}\n{}", result.body, self.log());
        let stored = self.s3.root().join(BUCKET).join("output/copy.bin");
        assert_eq!(
            std::fs::metadata(&stored).expect("output/copy.bin").len(),
            (mib as u64) << 20
        );
        (result, source, stored)
    }

    /// The bootstrap's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the bootstrap has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it holds `count` lines matching `pattern`, or after `timeout` whatever it
    /// holds: a line the bootstrap writes after it has answered (an answer streamed) may come
    /// a moment after the caller has the whole answer.
    pub fn log_with(&self, pattern: &str, count: usize, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.matches(pattern).count() >= count || Instant::now() >= until {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait up to `timeout` for the bootstrap to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// A `/proc/<pid>/status` field of the bootstrap in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.pid(), field)
    }

    /// Open file descriptors of the bootstrap.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` field in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Write `mib` MiB of non-repeating bytes to `path` without holding them in memory.
pub fn write_big_file(path: &Path, mib: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create big file"));
    let mut block = vec![0u8; 1024 * 1024];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            // xorshift: cheap bytes that compress poorly, like real media.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        file.write_all(&block).expect("write big file");
    }
    file.flush().expect("flush big file");
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> String {
    let mut file = std::fs::File::open(path).expect("open for hashing");
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).expect("hash");
    hex::encode(hasher.finalize())
}

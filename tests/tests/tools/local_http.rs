//! `scar local --http` end to end: examples/http-grayify served as a Function URL by the real
//! `scar` and `bootstrap`, a PNG POSTed as `curl --data-binary` sends it, the answer decoded
//! pixel by pixel (each must be the BT.601 luma of the input's), streamed and buffered.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::demo_support::{assert_grayscale_of, demo_binaries, demo_image, repo, sample};

/// examples/http-grayify's script and template, with the demo's image copied in as `image/`
/// (the example's own `image` is a link to examples/demo/image, which a test does not build).
fn http_function_dir(root: &Path) -> PathBuf {
    let dir = root.join("http-grayify");
    std::fs::create_dir_all(&dir).unwrap();
    let example = repo().join("examples/http-grayify");
    for file in ["script.sh", "template.yaml"] {
        std::fs::copy(example.join(file), dir.join(file)).unwrap();
    }
    let status = Command::new("cp")
        .arg("-R")
        .arg(demo_image())
        .arg(dir.join("image"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// A running `scar local --http`, its stderr collected.
struct Server {
    child: Child,
    address: String,
    stderr: Arc<Mutex<Vec<String>>>,
    echo: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serve `function` on a free port with `args` added; wait until it says where.
    fn start(function: &Path, cache: &Path, args: &[&str]) -> Self {
        let [scar, bootstrap, _] = demo_binaries();
        let mut child = Command::new(scar)
            .args(["local", "--http", "127.0.0.1:0", "--function"])
            .arg(function)
            .arg("--bootstrap")
            .arg(bootstrap)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scar local --http");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        let (address_tx, address) = std::sync::mpsc::channel();
        let echo = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("scar local --http | {line}");
                // "... on http://127.0.0.1:PORT/, one request at a time; ..."
                if let Some(rest) = line.split(" on http://").nth(1)
                    && let Some((address, _)) = rest.split_once('/')
                {
                    let _ = address_tx.send(address.to_owned());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(120))
            .expect("scar local --http did not say where it serves within 120 s (stderr above)");
        Self {
            child,
            address,
            stderr: lines,
            echo: Some(echo),
        }
    }

    /// POST `body` to `path` as `curl --data-binary` does (form content type, no other).
    fn post(&self, path: &str, body: Vec<u8>) -> reqwest::blocking::Response {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()
            .unwrap()
            .post(format!("http://{}{path}", self.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .expect("POST to scar local --http")
    }

    /// Ctrl-C; the lines it printed.
    fn stop(mut self) -> String {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        if let Some(echo) = self.echo.take() {
            echo.join().unwrap();
        }
        assert!(status.success(), "scar local --http ended with {status}");
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// POST the demo's picture to `scar local --http` (with `args`) and check the answer.
fn the_picture_comes_back_grayscale(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let function = http_function_dir(tmp.path());
    let server = Server::start(&function, &tmp.path().join("cache"), args);
    let response = server.post("/sample.png", std::fs::read(sample()).unwrap());
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.bytes().expect("the whole answer").to_vec();
    let log = server.stop();
    assert_eq!(
        status,
        200,
        "the answer: {}",
        String::from_utf8_lossy(&body[..body.len().min(2000)])
    );
    assert_eq!(content_type.as_deref(), Some("image/png"));
    assert!(
        body.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the answer is not a PNG"
    );
    let answer = tmp.path().join("grey.png");
    std::fs::write(&answer, &body).unwrap();
    assert_grayscale_of(&sample(), &answer);
    assert!(
        log.contains(&format!("POST /sample.png -> 200, {} bytes", body.len())),
        "no request line with the answer's size:\n{log}"
    );
    log
}

/// The template sets SCAR_HTTP_STREAMING=true: the answer travels in the Runtime API's
/// streaming mode, its prelude the status and headers.
#[test]
fn a_png_posted_to_scar_local_http_comes_back_grayscale_streamed() {
    the_picture_comes_back_grayscale(&[]);
}

/// Buffered, as behind an HTTP API: the picture travels base64 in the response document.
#[test]
fn a_png_posted_to_scar_local_http_comes_back_grayscale_buffered() {
    the_picture_comes_back_grayscale(&["--env", "SCAR_HTTP_STREAMING=false"]);
}

/// A request whose event passes Lambda's 6 MB is refused before it reaches the function.
#[test]
fn scar_local_http_refuses_a_request_past_lambdas_6_mb_with_413() {
    let tmp = tempfile::tempdir().unwrap();
    let function = http_function_dir(tmp.path());
    let server = Server::start(&function, &tmp.path().join("cache"), &[]);
    // 5 MB of binary is 6.7 MB once base64 in the event.
    let response = server.post("/big.bin", vec![0xff; 5 * 1024 * 1024]);
    assert_eq!(response.status(), 413);
    let log = server.stop();
    assert!(log.contains("POST /big.bin -> 413"), "{log}");
    assert!(log.contains("0 requests reached the function"), "{log}");
}

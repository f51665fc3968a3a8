//! A loopback CNCF distribution registry (Debian `docker-registry`) with filesystem storage on a
//! free port, and pushing layouts into it with `skopeo copy`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::oci::Layout;

/// Why the registry could not be started or filled.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry binary is missing.
    #[error("docker-registry not found: install the Debian package docker-registry")]
    Missing,
    /// A filesystem or process operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The registry did not answer `/v2/` in time.
    #[error("docker-registry on 127.0.0.1:{port} did not answer within 20 s; its log is {log}")]
    NotReady {
        /// The port.
        port: u16,
        /// The registry's log.
        log: PathBuf,
    },
    /// `skopeo copy` failed.
    #[error("skopeo copy of {image} failed: {detail}")]
    Push {
        /// The image.
        image: String,
        /// Its stderr.
        detail: String,
    },
}

/// A running registry, stopped when dropped.
pub struct Registry {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it keeps blobs and manifests (what a pull from it reads from disk).
    pub storage: PathBuf,
}

impl Registry {
    /// Its process id (a child of this process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start a registry storing under `dir`.
    pub fn start(dir: &Path) -> Result<Registry, RegistryError> {
        let binary = super::images::which("docker-registry").ok_or(RegistryError::Missing)?;
        let io_err = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Io { what, path, source }
        };
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).map_err(io_err("create", &storage))?;
        let port = free_port().map_err(io_err("bind a free port on", Path::new("127.0.0.1")))?;
        let config = dir.join("config.yml");
        // YAML by hand is safe here: the only interpolated values are a number and a path we
        // created (no quotes or newlines in it).
        let text = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        fs::write(&config, text).map_err(io_err("write", &config))?;
        let log = dir.join("registry.log");
        let log_file = fs::File::create(&log).map_err(io_err("create", &log))?;
        let log_err = log_file.try_clone().map_err(io_err("open", &log))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(io_err("start", Path::new("docker-registry")))?;
        let registry = Registry {
            child,
            port,
            storage,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if answers_v2(port) {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(RegistryError::NotReady { port, log })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The reference of `bench/<name>:latest` in this registry.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/bench/{name}:latest", self.host())
    }

    /// Push a layout as `bench/<name>:latest`.
    pub fn push(&self, layout: &Layout, name: &str) -> Result<(), RegistryError> {
        let source = format!("oci:{}:{}", layout.dir.display(), layout.tag);
        let output = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(&source)
            .arg(format!("docker://{}", self.reference(name)))
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RegistryError::Io {
                what: "run",
                path: PathBuf::from("skopeo (Debian package skopeo)"),
                source,
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(RegistryError::Push {
                image: source,
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the registry binds it next).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn answers_v2(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

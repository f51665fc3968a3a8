//! The CNCF distribution registry (Debian package `docker-registry`) on a free loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::service::{self, ServiceChild};

/// A running `docker-registry serve` with its own storage directory; stopped on drop.
#[derive(Debug)]
pub struct Registry {
    // Field order matters: the child dies before its storage directory is removed.
    child: ServiceChild,
    addr: SocketAddr,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry over plain HTTP.
    pub fn start() -> Registry {
        Self::launch(None)
    }

    /// A registry that requires HTTP basic auth for `user`/`password` on every request.
    ///
    /// The htpasswd line is hashed with the `bcrypt` crate: the registry accepts bcrypt only, and
    /// the crate avoids depending on `htpasswd` from apache2-utils.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    /// `127.0.0.1:PORT`, the form image references use (`127.0.0.1:PORT/repo:tag`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Its port (an ECR-style name for it keeps the port, so a proxy only passes requests on).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The user and password of a registry started with basic auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// Where the registry keeps its blobs and manifests.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// What the registry has logged so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// The process id of the registry, for tests that stop it on purpose.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn launch(credentials: Option<(String, String)>) -> Registry {
        let program =
            service::require_program("docker-registry", "the Debian package docker-registry");
        let dir = service::temp_dir("registry");
        let auth = credentials
            .as_ref()
            .map(|(user, password)| write_htpasswd(dir.path(), user, password));
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], service::free_port()));
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(dir.path(), addr, auth.as_deref()))
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", config.display()));
            let mut command = Command::new(&program);
            command.arg("serve").arg(&config);
            let mut child =
                ServiceChild::spawn("docker-registry", command, &dir.path().join("registry.log"));
            match child.wait_for_port(addr) {
                Ok(()) => {
                    return Registry {
                        child,
                        addr,
                        credentials,
                        dir,
                    };
                }
                Err(line) if service::is_port_race(&line) => last_error = line,
                Err(line) => panic!("docker-registry exited before listening on {addr}: {line}"),
            }
        }
        panic!("docker-registry could not bind a free port in 3 attempts: {last_error}");
    }
}

fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    // Cost 4, the minimum: the hash only guards a throwaway test registry, and the registry
    // verifies it on every request.
    let hash = bcrypt::hash(password, 4).unwrap_or_else(|err| panic!("bcrypt failed: {err}"));
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("{user}:{hash}\n"))
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    path
}

fn config_yaml(dir: &Path, addr: SocketAddr, htpasswd: Option<&Path>) -> String {
    let storage = dir.join("storage");
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: scar-e2e-not-a-secret\n\
         health:\n  storagedriver:\n    enabled: false\n",
        storage = storage.display(),
    );
    if let Some(htpasswd) = htpasswd {
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: scar-e2e\n    path: {}\n",
            htpasswd.display()
        ));
    }
    yaml
}

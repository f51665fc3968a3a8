//! Plumbing shared by the services the tests start: free loopback ports, child processes that die
//! with their owner, readiness waits that end in one clear line instead of a hang.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a service may take to accept connections. Generous: two shared cores, cold caches.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1, as the kernel hands it out for port 0.
///
/// The port is released before returning, so another process may take it first; the services
/// retry with a new port when their child reports that the address is in use.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("cannot bind 127.0.0.1:0 to find a free port: {err}"));
    listener
        .local_addr()
        .unwrap_or_else(|err| panic!("cannot read the address of a bound socket: {err}"))
        .port()
}

/// The full path of `program` found on `PATH`, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Panics with one line naming the package to install when `program` is not on `PATH`.
pub fn require_program(program: &str, package: &str) -> PathBuf {
    which(program).unwrap_or_else(|| {
        panic!("`{program}` is not on PATH: install {package} (./test.sh installs everything the tests need)")
    })
}

/// A child process in its own process group, killed (the whole group) and reaped on drop.
#[derive(Debug)]
pub struct ServiceChild {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl ServiceChild {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> ServiceChild {
        let out = File::create(log)
            .unwrap_or_else(|err| panic!("cannot create log {}: {err}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot duplicate log {}: {err}", log.display()));
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: a shim that forks (pyenv) still dies with us.
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        ServiceChild {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_owned(),
        }
    }

    /// The process id of the child.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The exit status if the child has already ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything the child has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last non-empty line of the log, for one-line failure messages.
    pub fn last_log_line(&self) -> String {
        let Ok(file) = File::open(&self.log) else {
            return String::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| !line.trim().is_empty())
            .last()
            .unwrap_or_default()
    }

    /// Waits until `addr` accepts TCP connections.
    ///
    /// Returns `Err(last log line)` when the child exits first, so the caller can retry on another
    /// port if it lost a port race; panics with one line after [`READY_TIMEOUT`].
    pub fn wait_for_port(&mut self, addr: SocketAddr) -> Result<(), String> {
        self.wait_for_listener(addr, false)
    }

    /// [`wait_for_port`](Self::wait_for_port), but the listening socket must belong to a process
    /// of this child's process group: another test's service may have taken the port between
    /// [`free_port`] and the child's own bind, and would answer in its place.
    pub fn wait_for_own_port(&mut self, addr: SocketAddr) -> Result<(), String> {
        self.wait_for_listener(addr, true)
    }

    fn wait_for_listener(&mut self, addr: SocketAddr, own: bool) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("{status}: {}", self.last_log_line()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && (!own || group_listens_on(self.id(), addr.port()))
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                panic!(
                    "{} did not listen on {addr} within {}s: {}",
                    self.name,
                    READY_TIMEOUT.as_secs(),
                    self.last_log_line()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for ServiceChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SIGKILL to the group we created at spawn (pgid == pid): a service has nothing to
                // flush that a test needs, and a graceful stop would only slow every test down.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a process of process group `group` holds the socket listening on loopback `port`
/// (`/proc/net/tcp`'s LISTEN entry, then the processes' descriptors).
fn group_listens_on(group: u32, port: u16) -> bool {
    let Some(inode) = listening_inode(port) else {
        return false;
    };
    let socket = format!("socket:[{inode}]");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|entry| {
        let path = entry.path();
        let in_group = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|stat| {
                // After the command name: state, ppid, pgrp.
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().nth(2)?.parse::<u32>().ok()
            })
            == Some(group);
        in_group
            && std::fs::read_dir(path.join("fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|link| link.as_os_str() == socket.as_str())
                })
            })
    })
}

/// The inode of the TCP socket listening on `port` (IPv4 or IPv6), if any.
fn listening_inode(port: u16) -> Option<u64> {
    const LISTEN: &str = "0A";
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields.get(1)?.rsplit_once(':')?.1;
                (fields.get(3) == Some(&LISTEN)
                    && u16::from_str_radix(local_port, 16).ok() == Some(port))
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
            })
        })
}

/// Whether a failure line says the port was taken between [`free_port`] and the child's bind.
pub fn is_port_race(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    line.contains("address already in use") || line.contains("addrinuse")
}

/// A tempdir under the system temp root, named after what it holds.
pub fn temp_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("scar-e2e-{what}-"))
        .tempdir()
        .unwrap_or_else(|err| panic!("cannot create a temporary directory for {what}: {err}"))
}

/// An in-process loopback TCP server: each connection is handled on its own thread by
/// `handle(&state, connection)`. It stops accepting when dropped.
pub struct ThreadedServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl ThreadedServer {
    /// Listen on a free port of 127.0.0.1; `what` names the server in a bind failure.
    pub fn start<T: Send + Sync + 'static>(
        what: &str,
        state: Arc<T>,
        handle: fn(&T, TcpStream),
    ) -> ThreadedServer {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("bind {what}: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("address of {what}: {err}"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = state.clone();
                std::thread::spawn(move || handle(&state, conn));
            }
        });
        ThreadedServer { addr, stop }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ThreadedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

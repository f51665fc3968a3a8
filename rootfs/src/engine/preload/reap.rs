//! Finding and killing every process a preload container started, without the kernel's help.
//!
//! On Lambda there is no PID namespace, no cgroup, no `PR_SET_CHILD_SUBREAPER` and no `ptrace`:
//! a process that calls `setsid`/`setpgid` (coreutils `timeout`, `setsid`, `set -m`) or
//! double-forks leaves the container's process group, and once its parent is gone it is an
//! orphan of init like any other process of the sandbox, Lambda extensions included (same uid).
//!
//! What still marks the container's processes:
//! - a **tag**: a random `SCAR_PRELOAD_TAG=<hex>` the engine puts in the first program's
//!   environment. `/proc/<pid>/environ` shows the environment a process was executed with (a
//!   forked child shares its parent's), and the exec hooks hand every `SCAR_PRELOAD_*` entry on
//!   to each child, even after `env -i`;
//! - **parent links**: a process whose parent is a container process is one too (this covers a
//!   process that cleared its environment without going through the hooks, e.g. from a static
//!   program, as long as its parent was still alive at a scan).
//!
//! A sweep scans `/proc`, stops (`SIGSTOP`) each container process it finds so that none can
//! fork any more, and scans again until a scan finds nothing new and every process found is
//! stopped; then it sends `SIGKILL` to all of them and polls `/proc` until they are gone (they
//! are reparented to init, not to us, so `waitpid` cannot see them). Processes are named by PID
//! and start time, so a PID reused by an unrelated process is never signalled.
//!
//! Limits (README): a process that executes a file it cannot read or a set-uid file becomes
//! non-dumpable and its environment unreadable; a process may overwrite its environment block
//! (`setproctitle`); a static program may clear the environment of its children. Each is still
//! found through its parent while the parent lives; an orphan of such a process that was never
//! seen by a scan escapes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The variable that marks a container's processes.
pub const TAG_ENV: &str = "SCAR_PRELOAD_TAG";
/// Longest time a sweep spends stopping processes before it kills what it has found.
const FREEZE_LIMIT: Duration = Duration::from_secs(2);
/// Longest time a sweep waits for killed processes to disappear.
const GONE_LIMIT: Duration = Duration::from_secs(5);

/// A process, named so that a reused PID is not mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId {
    /// The PID.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start: u64,
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// PID and start time.
    pub id: ProcId,
    /// Parent PID.
    pub ppid: i32,
    /// Scheduler state (`R`, `S`, `D`, `T`, `t`, `Z`, `X`…).
    pub state: u8,
}

impl Stat {
    /// Parse the text of `/proc/<pid>/stat` (the command name may hold spaces and parentheses:
    /// the fields start after the last `)`).
    pub fn parse(text: &str) -> Option<Self> {
        let (head, rest) = text.rsplit_once(')')?;
        let pid = head.split_once(' ')?.0.trim().parse().ok()?;
        let mut fields = rest.split_ascii_whitespace();
        let state = *fields.next()?.as_bytes().first()?;
        let ppid = fields.next()?.parse().ok()?;
        // After state and ppid, start time is the 20th field (field 22 of the file).
        let start = fields.nth(17)?.parse().ok()?;
        Some(Self {
            id: ProcId { pid, start },
            ppid,
            state,
        })
    }

    /// Ended (a zombie waiting for its parent, or being removed): nothing left to stop.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }

    /// Stopped by a signal (or by a tracer): cannot fork any more.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, b'T' | b't')
    }
}

/// A container's random tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag(String);

impl Tag {
    /// A fresh tag: 128 random bits from the kernel (the container cannot guess another
    /// container's tag to hide in it, nor collide with an extension by chance).
    pub fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The tag's value.
    pub fn value(&self) -> &str {
        &self.0
    }

    /// Whether an environment block (`NAME=value` entries separated by NULs, as in
    /// `/proc/<pid>/environ`) carries this tag.
    pub fn marks(&self, environ: &[u8]) -> bool {
        let entry_len = TAG_ENV.len() + 1 + self.0.len();
        environ.split(|&b| b == 0).any(|entry| {
            entry.len() == entry_len
                && entry.starts_with(TAG_ENV.as_bytes())
                && entry[TAG_ENV.len()] == b'='
                && &entry[TAG_ENV.len() + 1..] == self.0.as_bytes()
        })
    }
}

/// What one sweep did (logged; the tests print it as the sweep's cost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Container processes found and killed.
    pub killed: usize,
    /// `/proc` scans made.
    pub scans: usize,
    /// Wall time of the sweep.
    pub elapsed: Duration,
    /// Processes still present when the sweep gave up waiting (0 unless the kernel is stuck).
    pub left: usize,
}

/// Finds a container's processes by its tag and by parent links.
#[derive(Clone, Debug)]
pub struct Reaper {
    tag: Tag,
    /// The first program, found by identity even where its environment cannot be read.
    first: Option<ProcId>,
    proc: PathBuf,
    uid: u32,
    me: i32,
}

impl Reaper {
    /// The reaper of the container marked by `tag` whose first program is `first`.
    pub fn new(tag: Tag, first: Option<Pid>) -> Self {
        let proc = PathBuf::from("/proc");
        let first = first
            .and_then(|pid| read_stat(&proc, pid.as_raw()))
            .map(|s| s.id);
        Self {
            tag,
            first,
            proc,
            uid: nix::unistd::geteuid().as_raw(),
            me: std::process::id() as i32,
        }
    }

    /// The container's tag.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    /// The container's live processes now: tagged ones, `known` ones and the first program,
    /// plus every descendant of those by parent links.
    fn scan(&self, known: &HashMap<i32, u64>) -> Vec<Stat> {
        let mut all = Vec::new();
        for pid in pids(&self.proc) {
            if pid == self.me {
                continue;
            }
            if let Some(stat) = read_stat(&self.proc, pid)
                && !stat.is_dead()
            {
                all.push(stat);
            }
        }
        let mut member: HashMap<i32, bool> = HashMap::with_capacity(all.len());
        for stat in &all {
            let id = stat.id;
            let is = known.get(&id.pid) == Some(&id.start)
                || self.first == Some(id)
                || (self.owned(id.pid) && self.tagged(id.pid));
            member.insert(id.pid, is);
        }
        // Close over parent links (a chain is at most as long as the process list).
        loop {
            let mut grew = false;
            for stat in &all {
                if member.get(&stat.id.pid) == Some(&false) && member.get(&stat.ppid) == Some(&true)
                {
                    member.insert(stat.id.pid, true);
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        all.retain(|s| member.get(&s.id.pid) == Some(&true));
        all
    }

    /// Whether `/proc/<pid>` belongs to our uid (only those environments are readable).
    fn owned(&self, pid: i32) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.proc.join(pid.to_string())).is_ok_and(|m| m.uid() == self.uid)
    }

    fn tagged(&self, pid: i32) -> bool {
        std::fs::read(self.proc.join(pid.to_string()).join("environ"))
            .is_ok_and(|environ| self.tag.marks(&environ))
    }

    /// Send `signal` to every container process alive now (the deadline's SIGTERM: they may
    /// still fork; [`kill_all`](Self::kill_all) comes after the grace period).
    pub fn signal_all(&self, signal: Signal) -> usize {
        let found = self.scan(&HashMap::new());
        for stat in &found {
            let _ = kill(Pid::from_raw(stat.id.pid), signal);
        }
        found.len()
    }

    /// Stop every container process, then kill them all and wait until they are gone.
    pub fn kill_all(&self) -> Swept {
        let started = Instant::now();
        let mut known: HashMap<i32, u64> = HashMap::new();
        let mut scans = 0;
        loop {
            let found = self.scan(&known);
            scans += 1;
            let mut new = 0;
            for stat in &found {
                if known.insert(stat.id.pid, stat.id.start) != Some(stat.id.start) {
                    new += 1;
                    let _ = kill(Pid::from_raw(stat.id.pid), Signal::SIGSTOP);
                }
            }
            let all_stopped = found.iter().all(Stat::is_stopped);
            if (new == 0 && all_stopped) || started.elapsed() > FREEZE_LIMIT {
                break;
            }
            if new == 0 {
                // SIGSTOP is delivered asynchronously: give the stragglers a moment.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let mut victims = Vec::with_capacity(known.len());
        for (&pid, &start) in &known {
            // Re-check the identity: a process that died since the scan may have a successor.
            if read_stat(&self.proc, pid).is_some_and(|s| s.id.start == start && !s.is_dead()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                victims.push(ProcId { pid, start });
            }
        }
        let left = self.wait_gone(&victims, started + FREEZE_LIMIT + GONE_LIMIT);
        Swept {
            killed: victims.len(),
            scans,
            elapsed: started.elapsed(),
            left,
        }
    }

    /// Poll `/proc` until none of `victims` is alive (a zombie counts as gone: its parent,
    /// init or the bootstrap, reaps it); returns how many were still there at `until`.
    fn wait_gone(&self, victims: &[ProcId], until: Instant) -> usize {
        let mut pause = Duration::from_micros(100);
        loop {
            let alive = victims
                .iter()
                .filter(|v| {
                    read_stat(&self.proc, v.pid)
                        .is_some_and(|s| s.id.start == v.start && !s.is_dead())
                })
                .count();
            if alive == 0 || Instant::now() >= until {
                return alive;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

/// The process ids listed in `proc` (a `/proc` mount); none when it cannot be read.
fn pids(proc: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

fn read_stat(proc: &Path, pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?;
    Stat::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_stat_line_with_spaces_and_parentheses_in_the_name_parses() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let stat = Stat::parse(line).expect("parsed");
        assert_eq!(
            stat.id,
            ProcId {
                pid: 4242,
                start: 987654
            }
        );
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.state, b'S');
        assert!(!stat.is_dead() && !stat.is_stopped());
        assert!(Stat::parse("garbage").is_none());
    }

    #[test]
    fn this_process_stat_matches_its_pid_and_parent() {
        let me = read_stat(Path::new("/proc"), std::process::id() as i32).expect("own stat");
        assert_eq!(me.id.pid, std::process::id() as i32);
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(me.id.start > 0);
    }

    #[test]
    fn a_tag_matches_only_its_own_whole_entry() {
        let tag = Tag("abc123".into());
        assert!(tag.marks(b"A=1\0SCAR_PRELOAD_TAG=abc123\0B=2\0"));
        assert!(tag.marks(b"SCAR_PRELOAD_TAG=abc123"));
        assert!(!tag.marks(b"SCAR_PRELOAD_TAG=abc1234\0"));
        assert!(!tag.marks(b"SCAR_PRELOAD_TAG=abc12\0"));
        assert!(!tag.marks(b"X_SCAR_PRELOAD_TAG=abc123\0"));
        assert!(!tag.marks(b"A=SCAR_PRELOAD_TAG=abc123\0"));
        let random = Tag::random().expect("urandom");
        assert_eq!(random.value().len(), 32);
        assert_ne!(random, Tag::random().expect("urandom"));
    }

    /// PIDs of live processes whose command line holds `marker`.
    fn with_marker(marker: &str) -> Vec<i32> {
        let proc = Path::new("/proc");
        let mut found = Vec::new();
        for pid in pids(proc) {
            let Ok(cmdline) = std::fs::read(proc.join(pid.to_string()).join("cmdline")) else {
                continue;
            };
            let alive = read_stat(proc, pid).is_some_and(|s| !s.is_dead());
            if alive && String::from_utf8_lossy(&cmdline).contains(marker) {
                found.push(pid);
            }
        }
        found
    }

    fn wait_for(marker: &str, count: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while with_marker(marker).len() < count {
            assert!(
                Instant::now() < until,
                "{count} processes with {marker} never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_sweep_kills_setsid_and_double_forked_descendants_and_spares_an_untagged_process() {
        let tag = Tag::random().unwrap();
        let marker = format!("reap-unit-{}", tag.value());
        let bystander = format!("bystander-{}", tag.value());
        // An unrelated process of the same uid: it must survive.
        let mut other = Command::new("/bin/bash")
            .arg("-c")
            .arg(format!("exec -a {bystander} sleep 600"))
            .spawn()
            .unwrap();
        let script = format!(
            "setsid bash -c 'exec -a {marker} sleep 600' & \
             ( bash -c 'exec -a {marker} sleep 600' & ) & \
             ( setsid bash -c '(exec -a {marker} sleep 600) &' & ) & \
             env -u {TAG_ENV} bash -c 'exec -a {marker} sleep 600' & \
             wait"
        );
        let mut child = Command::new("/bin/bash")
            .arg("-c")
            .arg(&script)
            .env(TAG_ENV, tag.value())
            .spawn()
            .unwrap();
        wait_for(&marker, 4);
        wait_for(&bystander, 1);
        let reaper = Reaper::new(tag, Some(Pid::from_raw(child.id() as i32)));
        let swept = reaper.kill_all();
        let _ = child.wait();
        eprintln!("sweep: {swept:?}");
        assert_eq!(with_marker(&marker), Vec::<i32>::new(), "{swept:?}");
        assert_eq!(swept.left, 0);
        assert!(swept.killed >= 5, "{swept:?}");
        assert_eq!(with_marker(&bystander).len(), 1, "the bystander was killed");
        let _ = other.kill();
        let _ = other.wait();
    }
}

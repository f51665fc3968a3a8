//! The printed table, the bounds the issues set checked against it, the machine it ran on, and
//! `benchmarks.md` with its plots.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::oci::Layout;
pub use super::report_error::ReportError;
use super::table::{Row, Section, human_bytes, human_secs, markdown};

/// Everything one run measured.
pub struct Report {
    /// The table.
    pub rows: Vec<Row>,
    /// The images, by name.
    pub images: Vec<(&'static str, Layout)>,
    /// When the run started.
    pub started: SystemTime,
    /// Quick mode (figures not meant to be quoted).
    pub quick: bool,
    /// Whether `scar` was built in release mode (debug figures are not representative).
    pub release_build: bool,
}

/// One bound from an issue, with the figure that decides it.
struct Bound {
    issue: &'static str,
    text: &'static str,
    measured: Option<(f64, String)>,
    limit: f64,
}

impl Report {
    /// The table and the bounds, as printed on the terminal.
    pub fn table_text(&self) -> String {
        let mut out = markdown(&self.rows);
        out.push('\n');
        out.push_str(&self.bounds_text());
        out
    }

    fn bounds_text(&self) -> String {
        let mut out = String::from("Bounds from the issues, against this run's figures:\n\n");
        for bound in self.bounds() {
            let verdict = match &bound.measured {
                Some((value, shown)) if *value <= bound.limit => format!("met ({shown})"),
                Some((_, shown)) => format!("NOT met ({shown})"),
                None => "no figure in this run".to_string(),
            };
            out.push_str(&format!("- {} — {}: {verdict}\n", bound.issue, bound.text));
        }
        out
    }

    fn find(&self, section: Section, case_prefix: &str, tool: &str) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.section == section && r.case.starts_with(case_prefix) && r.tool.starts_with(tool)
        })
    }

    fn ratio(&self, section: Section, case: &str, tool: &str, base: &str) -> Option<(f64, String)> {
        let a = self.find(section, case, tool)?.median()?;
        let b = self.find(section, case, base)?.median()?;
        let r = a / b;
        Some((r, format!("{r:.2}×")))
    }

    fn bounds(&self) -> Vec<Bound> {
        let pull_image = if self.images.iter().any(|(n, _)| *n == "large") {
            "large"
        } else {
            "small"
        };
        let start_image = if self.quick { "dyn" } else { "medium" };
        let true_case = "/bin/true";
        let find_case = "find /";
        let rss = |row: Option<&Row>| {
            row.and_then(|r| r.result.as_ref().ok()).map(|s| {
                let mib = s.max_rss_kib as f64 / 1024.0;
                (mib, format!("{mib:.1} MiB"))
            })
        };
        let secs = |row: Option<&Row>| row.and_then(Row::median).map(|m| (m * 1e3, human_secs(m)));
        let _ = start_image;
        vec![
            Bound {
                issue: "pull (3)",
                text: "cold pull of the largest image ≤ 0.5 × skopeo copy + umoci unpack",
                measured: self.ratio(Section::ColdPull, pull_image, "scar pull", "skopeo"),
                limit: 0.5,
            },
            Bound {
                issue: "pull (3)",
                text: "cold pull of the largest image ≤ 1 × gzip -dc of its blobs",
                measured: self.ratio(Section::ColdPull, pull_image, "scar pull", "floor: gzip"),
                limit: 1.0,
            },
            Bound {
                issue: "pull (3)",
                text: "peak RSS of that pull ≤ 64 MiB",
                measured: rss(self.find(Section::ColdPull, pull_image, "scar pull")),
                limit: 64.0,
            },
            Bound {
                issue: "pull (3)",
                text: "warm resolution of a cached image ≤ 5 ms (measured with process start)",
                measured: secs(self.find(Section::ColdPull, pull_image, "scar pull, warm")),
                limit: 5.0,
            },
            Bound {
                issue: "namespace engine (4)",
                text: "warm start of /bin/true ≤ 0.6 × bwrap",
                measured: self.ratio(
                    Section::WarmStart,
                    true_case,
                    "scar run --engine namespace",
                    "bwrap",
                ),
                limit: 0.6,
            },
            Bound {
                issue: "namespace engine (4)",
                text: "warm start of /bin/true ≤ 1.5 × unshare + chroot",
                measured: self.ratio(
                    Section::WarmStart,
                    true_case,
                    "scar run --engine namespace",
                    "unshare",
                ),
                limit: 1.5,
            },
            Bound {
                issue: "preload engine (6)",
                text: "find / -xdev -type f | wc -l ≤ 1.3 × the namespace engine",
                measured: self.ratio(
                    Section::WarmStart,
                    find_case,
                    "scar run --engine preload",
                    "scar run --engine namespace",
                ),
                limit: 1.3,
            },
            Bound {
                issue: "Lambda path (16)",
                text: "the paper's grayify, warm, in scar lambda-sim (preload) ≤ 1.2 × on the host (namespace engine)",
                measured: self.ratio(
                    Section::Invocation,
                    super::grayify::CASE,
                    super::grayify::SIM,
                    super::grayify::HOST,
                ),
                limit: 1.2,
            },
            Bound {
                issue: "bootstrap (5)",
                text: "supervisor overhead per warm 1 KiB invocation, S3 excluded, ≤ 15 ms",
                measured: secs(self.find(Section::Invocation, "1 KiB", "supervisor overhead")),
                limit: 15.0,
            },
            Bound {
                issue: "bootstrap (5)",
                text: "peak RSS of bootstrap streaming a 200 MiB input and output ≤ 40 MiB",
                measured: rss(self.find(
                    Section::Invocation,
                    "200.0 MiB",
                    "bootstrap (end to end)",
                )),
                limit: 40.0,
            },
            Bound {
                issue: "cold starts (21)",
                text: "through the per-connection bandwidth proxy, the pull with parallel ranges ≤ 0.5 × one connection per blob (d/c)",
                measured: self.ratio(Section::ColdStart, pull_image, "(d)", "(c)"),
                limit: 0.5,
            },
            Bound {
                issue: "cold starts (21)",
                text: "the S3 format ≤ 0.5 × the registry gzip pull, no throttle (e/a)",
                measured: self.ratio(Section::ColdStart, pull_image, "(e)", "(a)"),
                limit: 0.5,
            },
            Bound {
                issue: "cold starts (21)",
                text: "the S3 format through the proxy ≤ 0.35 × the registry pull through it (f/c)",
                measured: self.ratio(Section::ColdStart, pull_image, "(f)", "(c)"),
                limit: 0.35,
            },
            Bound {
                issue: "cold starts (21)",
                text: "peak RSS of every cold-start pull ≤ 64 MiB",
                measured: self
                    .rows
                    .iter()
                    .filter(|r| r.section == Section::ColdStart)
                    .filter_map(|r| r.result.as_ref().ok())
                    .map(|s| s.max_rss_kib)
                    .max()
                    .filter(|kib| *kib > 0)
                    .map(|kib| {
                        let mib = kib as f64 / 1024.0;
                        (mib, format!("largest {mib:.1} MiB"))
                    }),
                limit: 64.0,
            },
            Bound {
                issue: "workspace (2)",
                text: "bootstrap from exec to its first GET /next ≤ 20 ms (prefetch off)",
                measured: secs(self.find(
                    Section::Invocation,
                    "init",
                    "bootstrap exec → first GET",
                )),
                limit: 20.0,
            },
        ]
    }

    /// Write `benchmarks.md` and the plots into `out`; returns the paths written.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
        let pulls = out.join("bench-pull-scaling.png");
        let invokes = out.join("bench-invoke-scaling.png");
        super::plot::scaling(
            &pulls,
            "Cold pull + extract vs image size",
            "compressed image size (MiB)",
            &self.rows,
            Section::ColdPull,
        )?;
        super::plot::scaling(
            &invokes,
            "Warm invocation vs input size",
            "input size (MiB)",
            &self.rows,
            Section::Invocation,
        )?;
        let doc = out.join("benchmarks.md");
        let text = self.markdown_doc();
        std::fs::write(&doc, text).map_err(|source| ReportError::Write {
            path: doc.clone(),
            source,
        })?;
        Ok(vec![doc, pulls, invokes])
    }

    fn markdown_doc(&self) -> String {
        let mut out = String::from("# Benchmarks\n\n");
        out.push_str(
            "Generated by `scar bench` (the numbers below are from one run of it; rerun it to \
             get yours). Every row was measured in the same run, side by side: the tools take \
             turns round by round, so a slow minute on this shared machine hurts them all alike. \
             Each figure is the median of the runs with the fastest and slowest next to it. Peak \
             RSS is the `ru_maxrss` GNU time reports for the tool (its own process or the \
             largest helper it waited for; the tool is forked by the small `time` process, not by \
             the bench, whose memory would otherwise count). Warm starts are timed bare, without \
             the `time` wrapper that would add an exec to every start; their memory comes from \
             an untimed warm-up run. The bootstrap's peak RSS is its `VmHWM` after the runs. A \
             tool that failed shows why instead of a number.\n\n\
             Before every timed cold pull, for every tool alike, the previous run's tree is \
             removed, `sync` writes back what is dirty, the clean page cache is dropped (as \
             root) and the run's inputs (the registry's blobs, the layout's blobs) and the tool's \
             program (`--version`) are read back: only the filesystem's metadata is cold. On an \
             ext4 without a journal, like this machine's, a new inode otherwise skips every \
             inode freed in the last minute whose inode-table block is still cached; after the \
             previous run removed a tree of ~28 000 files, that made extraction (scar's and \
             umoci's alike) take 10–17 s of system time instead of about 1 s, while gzip, which \
             creates no files, was not affected. Between warm starts the bench pauses, untimed, \
             and reaps what a tool leaves behind as an init would (the bench is a subreaper), \
             so that it does not slow the next one (the namespace teardown of a `scar run` \
             init, which `scar run` does not wait for); the tools' order rotates each round. \
             Before the warm starts the page cache is dropped once (as root), so every tool's \
             binaries and libraries come from pages read back from disk, as after a reboot. \
             A binary written moments ago (an install, the layer's unzip) sits in the page \
             cache in large folios and starts faster: 0.4 ms per `scar run` on this machine.\n\n\
             The cold-start section pulls one image (the large one; the small one in a quick \
             run) into an empty cache by each route of a fan-out: the loopback registry with one \
             connection per blob (`--ranges 1`) and with parallel ranges (the default), the S3 \
             format written by `scar image push` and served by `scar local`'s S3 endpoint, and \
             each again through a proxy inside the bench that holds every TCP connection to \
             40 MB/s (`SCAR_BENCH_THROTTLE_MBPS`), the wall one connection to S3 or a registry's \
             CDN meets on Lambda; loopback has none. Its rows take turns like the pull section's \
             and start from the same settled state.\n\n\
             The machine is shared (2 cores, other builds running), so the spread between the \
             fastest and slowest run is wide; compare rows within one run, not across runs.\n\n",
        );
        if self.quick {
            out.push_str(
                "**Quick run** (`--quick`): tiny images and two runs; not for quoting.\n\n",
            );
        }
        if !self.release_build {
            out.push_str(
                "**Debug build**: `scar` was built without optimisations; figures of this \
                 project's rows are pessimistic. Use `cargo build --release`.\n\n",
            );
        }
        out.push_str("## Machine\n\n");
        out.push_str(&machine(self.started));
        out.push_str("\n## Images\n\n| image | layers | compressed | unpacked (tar) | entries |\n| --- | ---: | ---: | ---: | ---: |\n");
        for (name, layout) in &self.images {
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} |\n",
                layout.layer_blobs.len(),
                human_bytes(layout.compressed_bytes),
                human_bytes(layout.uncompressed_bytes),
                layout.entries
            ));
        }
        out.push_str(
            "\nsmall: Debian's static busybox with its applet links; medium: `debootstrap \
             --variant=minbase bookworm` without apt's caches; large: the medium layer plus gcc, \
             g++, python3, perl and Go 1.19 as two more layers; dyn (quick runs): the host's \
             `/bin/true`, `sh`, `find` with their libraries. All are pushed with `skopeo copy` to \
             a loopback `docker-registry` with filesystem storage.\n\n",
        );
        out.push_str("## Results\n\n");
        out.push_str(&markdown(&self.rows));
        out.push('\n');
        out.push_str(&self.bounds_text());
        out.push_str(
            "\n## How cost grows\n\n![cold pull vs image size](bench-pull-scaling.png)\n\n\
             ![warm invocation vs input size](bench-invoke-scaling.png)\n\n",
        );
        out.push_str("## Peers and how they were run\n\n");
        out.push_str(&peers());
        out
    }
}

/// Versions of the peers, one line each (or that they are missing).
fn peers() -> String {
    let tools: [(&str, &[&str], &str); 8] = [
        ("skopeo", &["--version"], "skopeo"),
        ("umoci", &["--version"], "umoci"),
        (
            "udocker",
            &["--allow-root", "version"],
            "pip install udocker",
        ),
        ("proot", &["--version"], "proot"),
        ("bwrap", &["--version"], "bubblewrap"),
        ("unshare", &["--version"], "util-linux"),
        ("gzip", &["--version"], "gzip"),
        ("docker-registry", &["--version"], "docker-registry"),
    ];
    let mut out = String::new();
    for (tool, args, package) in tools {
        let version = Command::new(tool)
            .args(args)
            .env("UDOCKER_TARBALL", "")
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                // The first line with a version number (proot prints an ASCII-art banner first).
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.starts_with("Warning") && has_version(l))
                    .map(|l| {
                        l.trim_start_matches(|c: char| "|_/\\ ".contains(c))
                            .to_string()
                    })
            })
            .unwrap_or_else(|| format!("not installed ({package})"));
        out.push_str(&format!("- `{tool}`: {version}\n"));
    }
    out.push_str(
        "\nudocker runs offline: `UDOCKER_TARBALL` is empty so it does not try to download its \
         tools tarball, `UDOCKER_USE_PROOT_EXECUTABLE` points at Debian's `proot`, and it pulls \
         from the loopback registry with `--insecure pull --registry=http://127.0.0.1:PORT`. \
         Its `proot` is Debian's behind a small wrapper that drops udocker's `-k <kernel \
         release>`: with that kernel emulation on, Debian's proot 5.1 makes glibc's loader fail \
         inside the guest on this kernel (\"cannot stat shared object: Invalid argument\"); \
         udocker's own proot build comes in its tools tarball, which cannot be fetched offline. \
         Containers run in udocker's mode P1 (PRoot). \
         `bwrap` and `unshare` + `chroot` run in the image's tree as built (the same files the \
         image's layers hold).\n",
    );
    out
}

/// Whether a line holds something like `1.2.3`.
fn has_version(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_digit() && c != '.')
        .any(|word| word.contains('.') && word.starts_with(|c: char| c.is_ascii_digit()))
}

/// `nproc`, CPU model, kernel, memory and the date, as markdown lines.
fn machine(started: SystemTime) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".to_string(), |k| k.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("unknown".to_string(), |kib| human_bytes(kib * 1024));
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or("unknown".to_string(), |v| v.trim_matches('"').to_string());
    format!(
        "- CPUs (`nproc`): {cpus}\n- model: {model}\n- kernel: {kernel}\n- OS: {os}\n- memory: {memory}\n- date: {}\n",
        utc_date(started)
    )
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate (days-to-civil of the proleptic Gregorian
/// calendar).
pub fn utc_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rendered_in_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_786_908);
        assert_eq!(utc_date(at), "2026-11-27 13:41 UTC");
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00 UTC"
        );
    }
}

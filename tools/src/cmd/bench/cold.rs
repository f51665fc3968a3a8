//! Section 4: cold starts at fan-out (issue #21). One image (`large`, or `small` in a quick run)
//! pulled cold into an empty cache by every route a fan-out of sandboxes can take, in
//! interleaved rounds like the pull section:
//!
//! - from the loopback registry with one connection per blob (`--ranges 1`) and with parallel
//!   ranges (the default);
//! - from the S3 format (`scar image push`) served by the project's S3 endpoint (the one
//!   `scar local` serves);
//! - each of those again through a [`ThrottleProxy`] that holds every TCP connection to
//!   40 MB/s (`SCAR_BENCH_THROTTLE_MBPS`), the wall one connection to S3 or a registry's CDN
//!   meets on Lambda. Loopback has no such wall, so without the proxy parallel connections
//!   cannot show what they buy.
//!
//! The ratios the issue bounds are printed next to the rows (and with the other bounds under
//! the table); none is asserted.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use scar_tools::throttle::ThrottleProxy;

use super::cold_s3::S3Image;
use super::context::Bench;
use super::fresh_fs::FreshFs;
use super::images::BenchImage;
use super::measure::{RunError, Sample, measure};
use super::pull::{drop_page_cache, read_tree, remove_tree};
use super::table::{Row, Section, Series, human_bytes};

/// The variable that changes the proxy's rate, in MB/s (10^6 bytes) per connection.
pub const THROTTLE_MBPS_VAR: &str = "SCAR_BENCH_THROTTLE_MBPS";
/// The wall: 40 MB/s per connection.
const DEFAULT_MBPS: u64 = 40;

/// Where a row's pull comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// (a) the registry, one connection per blob.
    RegistryOne,
    /// (b) the registry, parallel ranges.
    RegistryRanges,
    /// (c) (a) through the proxy.
    ThrottledOne,
    /// (d) (b) through the proxy.
    ThrottledRanges,
    /// (e) the S3 format from the S3 endpoint.
    S3Format,
    /// (f) (e) through the proxy.
    ThrottledS3,
}

impl Route {
    /// All of them, in row order.
    pub const ALL: [Route; 6] = [
        Route::RegistryOne,
        Route::RegistryRanges,
        Route::S3Format,
        Route::ThrottledOne,
        Route::ThrottledRanges,
        Route::ThrottledS3,
    ];

    /// The row's name. No label is the beginning of another: the report finds rows by prefix.
    pub fn label(self) -> &'static str {
        match self {
            Route::RegistryOne => "(a) registry, one connection per blob",
            Route::RegistryRanges => "(b) registry, parallel ranges",
            Route::S3Format => "(e) S3 format (scar image push)",
            Route::ThrottledOne => "(c) proxy: registry, one connection per blob",
            Route::ThrottledRanges => "(d) proxy: registry, parallel ranges",
            Route::ThrottledS3 => "(f) proxy: S3 format",
        }
    }

    fn throttled(self) -> bool {
        matches!(
            self,
            Route::ThrottledOne | Route::ThrottledRanges | Route::ThrottledS3
        )
    }

    fn one_connection(self) -> bool {
        matches!(self, Route::RegistryOne | Route::ThrottledOne)
    }

    fn s3(self) -> bool {
        matches!(self, Route::S3Format | Route::ThrottledS3)
    }
}

/// The ratios printed with the rows: (row, base, bound if the issue sets one).
const RATIOS: [(Route, Route, Option<f64>); 5] = [
    (Route::ThrottledRanges, Route::ThrottledOne, Some(0.5)),
    (Route::S3Format, Route::RegistryOne, Some(0.5)),
    (Route::S3Format, Route::RegistryRanges, None),
    (Route::ThrottledS3, Route::ThrottledOne, Some(0.35)),
    (Route::ThrottledS3, Route::ThrottledRanges, None),
];

/// The proxy's rate from [`THROTTLE_MBPS_VAR`], in bytes per second.
fn throttle_rate() -> Result<u64, String> {
    match std::env::var(THROTTLE_MBPS_VAR) {
        Err(_) => Ok(DEFAULT_MBPS * 1_000_000),
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|mbps| (1..=1_000_000).contains(mbps))
            .map(|mbps| mbps * 1_000_000)
            .ok_or_else(|| {
                format!("{THROTTLE_MBPS_VAR}={text} is not a whole number of MB/s from 1")
            }),
    }
}

/// The proxies of one run: one in front of the registry, one in front of the S3 endpoint.
struct Proxies {
    registry: ThrottleProxy,
    s3: Option<ThrottleProxy>,
}

/// Measure every route on the largest image of the run (`large`, else `small`).
pub fn cold_starts(bench: &Bench, images: &[BenchImage]) -> Vec<Row> {
    let Some(image) = ["large", "small"]
        .iter()
        .find_map(|name| images.iter().find(|i| i.name == *name))
    else {
        return Vec::new();
    };
    let case = format!(
        "{} ({} gz, {} unpacked)",
        image.name,
        human_bytes(image.layout.compressed_bytes),
        human_bytes(image.layout.uncompressed_bytes)
    );
    // Each pull's cache on a file system of its own, as each sandbox has its own `/tmp`.
    let fresh = FreshFs::mount(&bench.work.join("cold-probe"), 64 << 20).map(drop);
    let case = match &fresh {
        Ok(()) => format!("{case}, each pull on a fresh ext4"),
        Err(err) => {
            eprintln!(
                "scar bench: cannot make a fresh file system per pull ({err}); the cold pulls share the host's (run as root for loop mounts)"
            );
            format!("{case}, on the host file system")
        }
    };
    eprintln!("scar bench: cold starts of {case}");
    let s3 = S3Image::prepare(bench, image);
    let proxies = throttle_rate().and_then(|rate| {
        let registry_addr: SocketAddr = bench
            .registry
            .host()
            .parse()
            .map_err(|err| format!("the registry's address: {err}"))?;
        let start = |upstream| {
            ThrottleProxy::try_start(upstream, rate)
                .map_err(|err| format!("the bandwidth proxy: {err}"))
        };
        Ok(Proxies {
            registry: start(registry_addr)?,
            s3: match &s3 {
                Ok(s3) => Some(start(s3.addr())?),
                Err(_) => None,
            },
        })
    });
    let mut series: Vec<Series> = Route::ALL.iter().map(|_| Series::default()).collect();
    // What the proxy carried for the last pull of each route: the connections it opened.
    let mut connections: Vec<Option<u64>> = vec![None; Route::ALL.len()];
    for (route, series) in Route::ALL.iter().zip(series.iter_mut()) {
        let reason = match (route.s3(), &s3, route.throttled(), &proxies) {
            (true, Err(reason), _, _) => Some(reason.clone()),
            (_, _, true, Err(reason)) => Some(reason.clone()),
            _ => None,
        };
        if let Some(reason) = reason {
            series.failure = Some(reason);
        }
    }
    for round in 0..bench.runs.pull {
        for (i, route) in Route::ALL.iter().enumerate() {
            if !series[i].alive() {
                continue;
            }
            let proxy = proxies.as_ref().ok().and_then(|p| match route.s3() {
                true => p.s3.as_ref(),
                false => Some(&p.registry),
            });
            let before = proxy.map(|p| p.stats().connections);
            let run = pull_once(
                bench,
                image,
                (*route, round),
                s3.as_ref().ok(),
                proxy,
                fresh.is_ok(),
            );
            if let (Some(proxy), Some(before)) = (proxy.filter(|_| route.throttled()), before) {
                connections[i] = Some(proxy.stats().connections - before);
            }
            series[i].record(run);
        }
    }
    let mut rows: Vec<Row> = Route::ALL
        .iter()
        .zip(series)
        .map(|(route, s)| {
            let mut row = s.into_row(Section::ColdStart, &case, route.label());
            row.x = Some(image.layout.compressed_bytes as f64);
            row
        })
        .collect();
    annotate(&mut rows, &connections, proxies.as_ref().ok());
    rows
}

/// Notes: the ratios of [`RATIOS`] with their bounds, and for proxy rows the rate and the
/// connections one pull opened.
fn annotate(rows: &mut [Row], connections: &[Option<u64>], proxies: Option<&Proxies>) {
    let index = |route: Route| Route::ALL.iter().position(|r| *r == route);
    let median = |rows: &[Row], route: Route| index(route).and_then(|i| rows[i].median());
    let mut notes: Vec<Vec<String>> = vec![Vec::new(); rows.len()];
    for (row, base, bound) in RATIOS {
        let (Some(a), Some(b), Some(i)) = (median(rows, row), median(rows, base), index(row))
        else {
            continue;
        };
        let ratio = a / b;
        let tag = |r: Route| r.label().get(1..2).unwrap_or("?");
        let mut note = format!("{}/{} = {ratio:.2}×", tag(row), tag(base));
        if let Some(bound) = bound {
            let verdict = if ratio <= bound { "met" } else { "NOT met" };
            note.push_str(&format!(" (bound ≤ {bound}: {verdict})"));
        }
        notes[i].push(note);
    }
    let rate = proxies.map(|p| p.registry.bytes_per_second());
    for (i, route) in Route::ALL.iter().enumerate() {
        if let (true, Some(rate)) = (route.throttled(), rate) {
            let mut note = format!("{} MB/s per connection", rate / 1_000_000);
            if let Some(n) = connections.get(i).copied().flatten() {
                let plural = if n == 1 { "" } else { "s" };
                note.push_str(&format!(", {n} connection{plural} per pull"));
            }
            notes[i].push(note);
        }
    }
    for (row, notes) in rows.iter_mut().zip(notes) {
        if row.result.is_ok() {
            row.note = notes.join("; ");
        }
    }
}

/// One cold `scar pull` by `route` into a fresh cache, on a fresh file system when `fresh`.
fn pull_once(
    bench: &Bench,
    image: &BenchImage,
    (route, round): (Route, usize),
    s3: Option<&S3Image>,
    proxy: Option<&ThrottleProxy>,
    fresh: bool,
) -> Result<Sample, RunError> {
    let scratch = bench.work.join(format!("cold-{}-{round}", image.name));
    remove_tree(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|source| RunError::Scratch {
        path: scratch.display().to_string(),
        source,
    })?;
    // Room for the tree, the pull's estimate (twice the compressed size) and ext4's own.
    let bytes = 2 * image.layout.uncompressed_bytes + 2 * image.layout.compressed_bytes + (1 << 30);
    let fs = if fresh {
        let fs =
            FreshFs::mount(&scratch.join("cache"), bytes).map_err(|err| RunError::Scratch {
                path: scratch.join("cache").display().to_string(),
                source: std::io::Error::other(err),
            })?;
        Some(fs)
    } else {
        None
    };
    settle(bench, s3);
    let mut command = bench.scar_command("pull");
    // The proxy is the route measured: no proxy from the environment in between. Nor a CA
    // store named by the environment, which a Lambda sandbox does not set: the S3 client then
    // reads the system's store before its first request (on this host's `/etc/ssl/certs`, some
    // 7 ms of CPU at the start of an e pull, by `perf`), which the registry client never does,
    // and every endpoint measured is plain HTTP anyway.
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        command.env_remove(var);
    }
    let via = proxy.filter(|_| route.throttled()).map(ThrottleProxy::addr);
    match (route.s3(), s3) {
        (true, Some(s3)) => {
            s3.configure(&mut command, via);
            command.arg(s3.reference());
        }
        _ => {
            let host = via.map_or_else(|| bench.registry.host(), |addr| addr.to_string());
            command
                .env("SCAR_INSECURE_REGISTRIES", &host)
                .arg(format!("{host}/bench/{}:latest", image.name));
        }
    }
    if route.one_connection() {
        command.args(["--ranges", "1"]);
    } else {
        // The default, whatever the bench's own environment says.
        command.env_remove("SCAR_PULL_RANGES");
    }
    command.arg("--cache").arg(scratch.join("cache"));
    let result = measure(&mut command, &bench.work.join("stderr"), bench.limit);
    drop(fs);
    remove_tree(&scratch);
    result
}

/// The same start for every route, as the pull section does it (see `pull::settle` for why):
/// what is dirty written back, the clean page cache dropped (as root), then the inputs (the
/// registry's blobs, the S3 object) and `scar` read back, so only file system metadata is cold.
fn settle(bench: &Bench, s3: Option<&S3Image>) {
    if drop_page_cache().is_err() {
        return;
    }
    read_tree(&bench.registry.storage);
    if let Some(s3) = s3 {
        read_tree(s3.dir());
    }
    let _ = Command::new(&bench.scar)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(route: Route, secs: f64) -> Row {
        let sample = Sample {
            secs,
            max_rss_kib: 1024,
        };
        Row::from_runs(Section::ColdStart, "large", route.label(), &[sample], None)
    }

    #[test]
    fn no_label_begins_another() {
        for a in Route::ALL {
            for b in Route::ALL.iter().filter(|b| **b != a) {
                assert!(!b.label().starts_with(a.label()), "{a:?} / {b:?}");
            }
        }
    }

    #[test]
    fn ratios_carry_their_bound_and_verdict() {
        let secs = [10.0, 5.0, 4.0, 20.0, 8.0, 6.0];
        let mut rows: Vec<Row> = Route::ALL
            .iter()
            .zip(secs)
            .map(|(r, s)| row(*r, s))
            .collect();
        annotate(
            &mut rows,
            &[None, None, None, Some(3), Some(12), None],
            None,
        );
        let note = |route: Route| {
            let i = Route::ALL.iter().position(|r| *r == route).unwrap();
            rows[i].note.clone()
        };
        assert_eq!(
            note(Route::ThrottledRanges),
            "d/c = 0.40× (bound ≤ 0.5: met)"
        );
        assert_eq!(
            note(Route::S3Format),
            "e/a = 0.40× (bound ≤ 0.5: met); e/b = 0.80×"
        );
        assert_eq!(
            note(Route::ThrottledS3),
            "f/c = 0.30× (bound ≤ 0.35: met); f/d = 0.75×"
        );
        assert_eq!(note(Route::RegistryOne), "");
    }

    #[test]
    fn a_missed_bound_says_so() {
        let secs = [10.0, 5.0, 6.0, 20.0, 15.0, 8.0];
        let mut rows: Vec<Row> = Route::ALL
            .iter()
            .zip(secs)
            .map(|(r, s)| row(*r, s))
            .collect();
        annotate(&mut rows, &[None; 6], None);
        assert!(
            rows[4].note.contains("0.75× (bound ≤ 0.5: NOT met)"),
            "{}",
            rows[4].note
        );
        assert!(rows[2].note.contains("e/a = 0.60× (bound ≤ 0.5: NOT met)"));
    }

    #[test]
    fn the_rate_defaults_to_forty_megabytes_a_second() {
        // The variable is not set by the test runner; a bad value is refused, not guessed.
        if std::env::var_os(THROTTLE_MBPS_VAR).is_none() {
            assert_eq!(throttle_rate(), Ok(40_000_000));
        }
    }
}

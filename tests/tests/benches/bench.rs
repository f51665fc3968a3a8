//! `scar bench --quick` keeps working: it builds its tiny images, starts its loopback registry,
//! measures every row it can, and writes the report and the plots. No figure is asserted (the
//! machine is shared; bounds are printed by the bench, never checked by timing here), only that
//! each row has either a number or the reason it has none.
//!
//! Run: `cargo test -p scar-e2e --test benches bench::quick` (needs docker-registry, skopeo,
//! busybox-static; the peers umoci, udocker, proot, bwrap and GNU time are measured when
//! installed).

use std::process::Command;

#[test]
fn quick_bench_prints_one_table_and_writes_the_report_and_plots() {
    let _alone = crate::alone();
    let [scar, bootstrap] =
        scar_e2e::workspace::binaries([("scar-tools", "scar"), ("scar-bootstrap", "bootstrap")]);
    let out = tempfile::Builder::new()
        .prefix("scar-bench-test-")
        .tempdir()
        .expect("tempdir");
    let output = Command::new(&scar)
        .args(["bench", "--quick", "--out"])
        .arg(out.path())
        .arg("--bootstrap")
        .arg(&bootstrap)
        .output()
        .expect("run scar bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scar bench --quick failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );

    // One table with the three sections, the peers named, and the bounds listed under it.
    for heading in [
        "1. Cold pull + extract",
        "2. Warm start in a cached image",
        "3. Warm invocation through bootstrap",
    ] {
        assert_eq!(stdout.matches(heading).count(), 1, "{heading}:\n{stdout}");
    }
    for tool in [
        "scar pull",
        "skopeo copy + umoci raw unpack --rootless",
        "udocker pull + create",
        "floor: gzip -dc of the blobs",
        "scar run --engine namespace",
        "scar run --engine preload",
        "bwrap --unshare-all",
        "unshare -U -r --mount --pid --fork chroot ROOT",
        "floor: plain exec on the host",
    ] {
        assert!(stdout.contains(tool), "no row for {tool}:\n{stdout}");
    }
    assert!(stdout.contains("Bounds from the issues"), "{stdout}");

    // Every table row carries a median or says why it has none.
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && !l.starts_with("| **")
                && !l.starts_with("| case")
                && !l.starts_with("| ---")
        })
        .collect();
    assert!(rows.len() >= 10, "too few rows:\n{stdout}");
    for row in &rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        let measured = cells.get(2).is_some_and(|c| c.ends_with('s') && c != &"—");
        assert!(
            measured || row.contains("**no number:**"),
            "row with neither a figure nor a reason: {row}"
        );
    }
    // The floors need nothing but coreutils and gzip: they always give numbers.
    let floor = rows
        .iter()
        .find(|r| r.contains("floor: plain exec"))
        .expect("plain exec row");
    assert!(!floor.contains("no number"), "{floor}");

    // The cold-start section: its registry rows, direct and through the 40 MB/s proxy, need
    // nothing but the loopback registry, so they always give numbers; the S3 rows give a
    // number or their reason like every row.
    assert_eq!(
        stdout.matches("4. Cold start at fan-out").count(),
        1,
        "{stdout}"
    );
    for route in [
        "(a) registry, one connection per blob",
        "(b) registry, parallel ranges",
        "(c) proxy: registry, one connection per blob",
        "(d) proxy: registry, parallel ranges",
    ] {
        let row = rows
            .iter()
            .find(|r| r.contains(route))
            .unwrap_or_else(|| panic!("no cold-start row {route}:\n{stdout}"));
        assert!(!row.contains("no number"), "{row}");
    }
    for route in ["(e) S3 format", "(f) proxy: S3 format"] {
        assert!(
            stdout.contains(route),
            "no cold-start row {route}:\n{stdout}"
        );
    }
    for bound in [
        "(d/c)",
        "(e/a)",
        "(f/c)",
        "peak RSS of every cold-start pull",
    ] {
        assert!(stdout.contains(bound), "no bound {bound}:\n{stdout}");
    }

    let report = std::fs::read_to_string(out.path().join("benchmarks.md")).expect("benchmarks.md");
    for part in [
        "## Machine",
        "CPUs (`nproc`)",
        "kernel:",
        "memory:",
        "date:",
        "## Results",
    ] {
        assert!(report.contains(part), "benchmarks.md lacks {part}");
    }
    for plot in ["bench-pull-scaling.png", "bench-invoke-scaling.png"] {
        let bytes = std::fs::read(out.path().join(plot)).expect(plot);
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{plot} is not a PNG"
        );
        assert!(report.contains(plot), "benchmarks.md does not show {plot}");
    }
}

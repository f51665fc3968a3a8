//! Section 3: full warm invocations through the real `bootstrap`, driven by the embedded Runtime
//! API and S3 server of `scar local`, with the supervisor's phases broken out.

use super::Bench;
use super::images::BenchImage;
use super::table::{Row, Section};

/// The rows of section 3.
pub struct Invocations {
    /// End-to-end and per-phase rows.
    pub rows: Vec<Row>,
}

/// Measure warm invocations at each input size.
pub fn invocations(bench: &Bench, images: &[BenchImage]) -> Invocations {
    let _ = images;
    let reason = if bench.bootstrap.is_file() {
        "the embedded Runtime API and S3 server of `scar local` have not landed yet".to_string()
    } else {
        format!(
            "{} not found: build it with `cargo build -p scar-bootstrap`",
            bench.bootstrap.display()
        )
    };
    Invocations {
        rows: vec![Row::from_runs(
            Section::Invocation,
            "1 KiB input",
            "bootstrap (end to end)",
            &[],
            Some(reason),
        )],
    }
}

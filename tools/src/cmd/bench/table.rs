//! The one table of a bench run: rows measured side by side, each a median with its range and
//! peak memory, or the reason a tool gave no number.

use super::measure::{RunError, Sample, Stats};

/// The parts of the table, in print order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Cold pull and extract from the loopback registry into an empty cache.
    ColdPull,
    /// Warm start of a process in a cached image.
    WarmStart,
    /// A full warm invocation through `bootstrap`.
    Invocation,
    /// Cold pulls of one large image by the routes of a fan-out: one connection per blob or
    /// parallel ranges, a registry or the S3 format, on loopback or held to a bandwidth.
    ColdStart,
}

impl Section {
    /// Heading text.
    pub fn title(self) -> &'static str {
        match self {
            Section::ColdPull => "1. Cold pull + extract (loopback registry, empty cache)",
            Section::WarmStart => "2. Warm start in a cached image",
            Section::Invocation => "3. Warm invocation through bootstrap (Runtime API + S3)",
            Section::ColdStart => {
                "4. Cold start at fan-out (empty cache; direct, and through a per-connection bandwidth)"
            }
        }
    }
}

/// One measured line.
#[derive(Clone, Debug)]
pub struct Row {
    /// Where it goes.
    pub section: Section,
    /// What was measured (image, job or input size).
    pub case: String,
    /// Who did it.
    pub tool: String,
    /// The figures, or why there are none.
    pub result: Result<Stats, String>,
    /// Extra figures or comparisons for the last column.
    pub note: String,
    /// The size this row is a point of on a scaling plot (image or input bytes).
    pub x: Option<f64>,
}

impl Row {
    /// A row from the samples gathered so far and the first failure, if any: a tool that failed
    /// gives its failure, never a number from a partial set of runs.
    pub fn from_runs(
        section: Section,
        case: impl Into<String>,
        tool: impl Into<String>,
        samples: &[Sample],
        failure: Option<String>,
    ) -> Row {
        let result = match (failure, Stats::of(samples)) {
            (Some(reason), _) => Err(reason),
            (None, Some(stats)) => Ok(stats),
            (None, None) => Err("not run".to_string()),
        };
        Row {
            section,
            case: case.into(),
            tool: tool.into(),
            result,
            note: String::new(),
            x: None,
        }
    }

    /// Median seconds when measured.
    pub fn median(&self) -> Option<f64> {
        self.result.as_ref().ok().map(|s| s.median)
    }
}

/// Gathers samples of one tool for one case over interleaved rounds.
#[derive(Default)]
pub struct Series {
    /// Samples so far.
    pub samples: Vec<Sample>,
    /// The first failure; once set the tool is not run again for this case.
    pub failure: Option<String>,
    /// Peak RSS of an untimed warm-up run, for series timed without the memory wrapper.
    pub warm_up_rss_kib: u64,
}

impl Series {
    /// Whether to run the tool again.
    pub fn alive(&self) -> bool {
        self.failure.is_none()
    }

    /// Record one run.
    pub fn record(&mut self, run: Result<Sample, RunError>) {
        match run {
            Ok(sample) => self.samples.push(sample),
            Err(err) => self.failure = Some(err.short()),
        }
    }

    /// Record an untimed warm-up run: only its memory figure (or its failure) is kept.
    pub fn warm_up(&mut self, run: Result<Sample, RunError>) {
        match run {
            Ok(sample) => self.warm_up_rss_kib = self.warm_up_rss_kib.max(sample.max_rss_kib),
            Err(err) => self.failure = Some(err.short()),
        }
    }

    /// The row of this series.
    pub fn into_row(self, section: Section, case: &str, tool: &str) -> Row {
        let mut row = Row::from_runs(section, case, tool, &self.samples, self.failure);
        if let Ok(stats) = &mut row.result {
            stats.max_rss_kib = stats.max_rss_kib.max(self.warm_up_rss_kib);
        }
        row
    }
}

/// Escape a cell for a markdown table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Seconds for a person: ms below 10 s.
pub fn human_secs(secs: f64) -> String {
    if secs < 0.001 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 0.1 {
        format!("{:.2} ms", secs * 1e3)
    } else if secs < 10.0 {
        format!("{:.0} ms", secs * 1e3)
    } else {
        format!("{secs:.1} s")
    }
}

/// Bytes for a person, binary units.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// The table as GitHub markdown (also readable as plain text on a terminal).
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut sections: Vec<Section> = rows.iter().map(|r| r.section).collect();
    sections.dedup();
    out.push_str("| case | tool | median | min–max | runs | peak RSS | notes |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | --- |\n");
    let mut last = None;
    for row in rows {
        if last != Some(row.section) {
            out.push_str(&format!("| **{}** | | | | | | |\n", row.section.title()));
            last = Some(row.section);
        }
        match &row.result {
            Ok(stats) => out.push_str(&format!(
                "| {} | {} | {} | {}–{} | {} | {} | {} |\n",
                cell(&row.case),
                cell(&row.tool),
                human_secs(stats.median),
                human_secs(stats.min),
                human_secs(stats.max),
                stats.runs,
                if stats.max_rss_kib == 0 {
                    "—".to_string()
                } else {
                    human_bytes(stats.max_rss_kib * 1024)
                },
                cell(&row.note)
            )),
            Err(reason) => out.push_str(&format!(
                "| {} | {} | — | — | — | — | **no number:** {} |\n",
                cell(&row.case),
                cell(&row.tool),
                cell(reason)
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_tool_shows_its_reason_instead_of_a_number() {
        let samples = [Sample {
            secs: 1.0,
            max_rss_kib: 10,
        }];
        let row = Row::from_runs(
            Section::WarmStart,
            "/bin/true",
            "bwrap",
            &samples,
            Some("bwrap exited with status 1: no permission".into()),
        );
        let table = markdown(&[row]);
        assert!(table.contains("no number:** bwrap exited"), "{table}");
        assert!(!table.contains("1000 ms"), "{table}");
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(human_secs(0.000_5), "500 µs");
        assert_eq!(human_secs(0.012_34), "12.34 ms");
        assert_eq!(human_secs(2.5), "2500 ms");
        assert_eq!(human_secs(31.3), "31.3 s");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.0 MiB");
    }
}

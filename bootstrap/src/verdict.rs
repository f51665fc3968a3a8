//! The verdict on one run: from how the container ended, which statically linked programs were
//! refused and which outputs went up, the exit code of the response or the `Scar.*` failure.

use std::time::Duration;

use scar_rootfs::engine::Unconfined;

use crate::report::{Failure, FailureKind, describe_outputs};
use crate::run::{Ran, Tails};
use crate::upload::UploadReport;

/// Decide the result of one run from its outcome (`ran`), its uploads (`report`, and every
/// upload of the invocation so far) and the stderr tail; `margin` is `SCAR_TIMEOUT_MARGIN`,
/// `unconfined` the programs of the invocation that ran unconfined so far (named in a failure).
/// In order: a run that could not start, refused static programs, the timeout, a non-zero
/// exit, failed uploads; else the exit code (0).
pub fn verdict(
    ran: Result<Ran, Failure>,
    report: &UploadReport,
    uploaded_so_far: &[String],
    tails: &Tails,
    margin: Duration,
    unconfined: &[String],
) -> Result<i32, Failure> {
    judge(ran, report, uploaded_so_far, tails, margin).map_err(|f| f.with_unconfined(unconfined))
}

fn judge(
    ran: Result<Ran, Failure>,
    report: &UploadReport,
    uploaded_so_far: &[String],
    tails: &Tails,
    margin: Duration,
) -> Result<i32, Failure> {
    let outputs = describe_outputs(uploaded_so_far, &report.failed);
    let Ran {
        outcome,
        unconfined,
    } = ran.map_err(|f| f.with_outputs(&outputs))?;
    if let Some(refused) = refused_statics(&unconfined) {
        return Err(Failure::new(
            FailureKind::ScriptFailed,
            format!("{refused}{outputs}; stderr tail:\n{}", tails.stderr_text()),
        ));
    }
    if outcome.timed_out {
        return Err(Failure::new(
            FailureKind::Timeout,
            format!(
                "the container was stopped {:.1} s before the deadline (SCAR_TIMEOUT_MARGIN) and had not finished{outputs}; stderr tail:\n{}",
                margin.as_secs_f64(),
                tails.stderr_text()
            ),
        ));
    }
    let code = outcome.exit_code();
    if code != 0 {
        return Err(Failure::new(
            FailureKind::ScriptFailed,
            format!(
                "the script exited with code {code}{outputs}; stderr tail:\n{}",
                tails.stderr_text()
            ),
        ));
    }
    if !report.failed.is_empty() {
        return Err(Failure::new(
            FailureKind::Output,
            format!(
                "{} output(s) could not be uploaded{outputs}",
                report.failed.len()
            ),
        ));
    }
    Ok(code)
}

/// The failure text when `SCAR_PRELOAD_STATIC=refuse` refused programs of the run: even a
/// script that ignored the refusal did not do what it was meant to.
fn refused_statics(unconfined: &Unconfined) -> Option<String> {
    if unconfined.refused.is_empty() {
        return None;
    }
    Some(format!(
        "statically linked programs were refused because SCAR_PRELOAD_STATIC=refuse (they cannot be confined to the image): {}; use dynamically linked programs or set SCAR_PRELOAD_STATIC=warn",
        unconfined.refused.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::UploadFailure;
    use scar_rootfs::engine::Outcome;

    const MARGIN: Duration = Duration::from_secs(10);

    fn ran(code: Option<i32>, signal: Option<i32>, timed_out: bool) -> Result<Ran, Failure> {
        Ok(Ran {
            outcome: Outcome {
                code,
                signal,
                timed_out,
            },
            unconfined: Unconfined::default(),
        })
    }

    fn tails(stderr: &str) -> Tails {
        let tails = Tails::default();
        tails.stderr.lock().unwrap().push(stderr.as_bytes());
        tails
    }

    fn uploaded(urls: &[&str]) -> UploadReport {
        UploadReport {
            uploaded: urls.iter().map(|u| u.to_string()).collect(),
            failed: Vec::new(),
        }
    }

    fn failed_upload(what: &str) -> UploadReport {
        UploadReport {
            uploaded: Vec::new(),
            failed: vec![UploadFailure {
                what: what.into(),
                reason: "AccessDenied".into(),
            }],
        }
    }

    #[test]
    fn a_clean_exit_with_its_outputs_up_is_exit_code_zero() {
        let report = uploaded(&["s3://b/output/a"]);
        let code = verdict(
            ran(Some(0), None, false),
            &report,
            &report.uploaded,
            &tails(""),
            MARGIN,
            &[],
        );
        assert_eq!(code, Ok(0));
    }

    #[test]
    fn a_non_zero_exit_is_script_failed_with_the_code_and_the_stderr_tail() {
        let failure = verdict(
            ran(Some(3), None, false),
            &uploaded(&[]),
            &[],
            &tails("boom\n"),
            MARGIN,
            &[],
        )
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::ScriptFailed);
        assert!(
            failure.message.starts_with("the script exited with code 3"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.ends_with("stderr tail:\nboom\n"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_kill_by_signal_is_reported_as_128_plus_the_signal() {
        let failure = verdict(
            ran(None, Some(9), false),
            &uploaded(&[]),
            &[],
            &tails(""),
            MARGIN,
            &[],
        )
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::ScriptFailed);
        assert!(failure.message.contains("code 137"), "{}", failure.message);
    }

    #[test]
    fn the_timeout_wins_over_the_exit_code_and_names_the_margin() {
        let failure = verdict(
            ran(None, Some(15), true),
            &uploaded(&[]),
            &[],
            &tails(""),
            MARGIN,
            &[],
        )
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Timeout);
        assert_eq!(failure.kind.error_type(), "Scar.Timeout");
        assert!(
            failure
                .message
                .starts_with("the container was stopped 10.0 s before the deadline"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn refused_static_programs_fail_the_run_even_when_it_exited_zero() {
        let mut refused = ran(Some(0), None, false).unwrap();
        refused.unconfined.refused = vec!["/bin/busybox".into()];
        let failure =
            verdict(Ok(refused), &uploaded(&[]), &[], &tails(""), MARGIN, &[]).unwrap_err();
        assert_eq!(failure.kind, FailureKind::ScriptFailed);
        assert!(
            failure.message.contains("SCAR_PRELOAD_STATIC=refuse"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("/bin/busybox"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_failed_upload_after_a_clean_exit_is_an_output_error() {
        let failure = verdict(
            ran(Some(0), None, false),
            &failed_upload("a.txt"),
            &[],
            &tails(""),
            MARGIN,
            &[],
        )
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Output);
        assert!(
            failure
                .message
                .starts_with("1 output(s) could not be uploaded"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("a.txt"), "{}", failure.message);
    }

    #[test]
    fn a_run_that_could_not_start_keeps_its_failure_and_gains_the_outputs() {
        let start = Failure::new(FailureKind::Image, "cannot run the container: no /bin/sh");
        let report = uploaded(&["s3://b/output/early"]);
        let failure = verdict(
            Err(start),
            &report,
            &report.uploaded,
            &tails(""),
            MARGIN,
            &[],
        )
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Image);
        assert!(
            failure
                .message
                .starts_with("cannot run the container: no /bin/sh")
        );
        assert!(
            failure.message.contains("s3://b/output/early"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_failure_names_the_programs_that_ran_unconfined() {
        let unconfined = ["/usr/bin/static-tool".to_owned()];
        let failure = verdict(
            ran(Some(1), None, false),
            &uploaded(&[]),
            &[],
            &tails(""),
            MARGIN,
            &unconfined,
        )
        .unwrap_err();
        assert!(
            failure.message.contains("ran unconfined"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("/usr/bin/static-tool"),
            "{}",
            failure.message
        );
        let clean = verdict(
            ran(Some(0), None, false),
            &uploaded(&[]),
            &[],
            &tails(""),
            MARGIN,
            &unconfined,
        );
        assert_eq!(clean, Ok(0));
    }
}

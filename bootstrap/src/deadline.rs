//! The invocation's deadline, from the Runtime API's `Lambda-Runtime-Deadline-Ms` header.
//!
//! Lambda sends epoch milliseconds. The `cargo lambda` emulator sends a constant `600000`, which
//! as an epoch time is January 1970: taken literally, every invocation would be over before it
//! began. A value that cannot be a current epoch time is therefore read as milliseconds from
//! now, with a warning.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Epoch milliseconds below this (2001-09-09) cannot be a real deadline.
const PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;
/// Used when the header is missing or unreadable: Lambda's longest timeout.
const FALLBACK: Duration = Duration::from_secs(15 * 60);

/// When the invocation must be finished, as a monotonic instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

/// How the header was read when it was not plain epoch milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineWarning {
    /// The value is too small for epoch milliseconds; read as a duration from now.
    RelativeValue(u64),
    /// The header is missing or not a number; the fallback applies.
    Unreadable(Option<String>),
}

impl std::fmt::Display for DeadlineWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RelativeValue(ms) => write!(
                f,
                "Lambda-Runtime-Deadline-Ms={ms} cannot be epoch milliseconds; reading it as {ms} ms from now"
            ),
            Self::Unreadable(None) => write!(
                f,
                "no Lambda-Runtime-Deadline-Ms header; assuming 15 minutes from now"
            ),
            Self::Unreadable(Some(value)) => {
                write!(
                    f,
                    "Lambda-Runtime-Deadline-Ms={value:?} is not a number; assuming 15 minutes from now"
                )
            }
        }
    }
}

impl Deadline {
    /// Read the header value at the moment the invocation arrived (`now`, `wall` for the same
    /// moment on the two clocks).
    pub fn from_header(
        value: Option<&str>,
        now: Instant,
        wall: SystemTime,
    ) -> (Self, Option<DeadlineWarning>) {
        let Some(ms) = value.and_then(|v| v.trim().parse::<u64>().ok()) else {
            let warning = DeadlineWarning::Unreadable(value.map(str::to_owned));
            return (Self { at: now + FALLBACK }, Some(warning));
        };
        if ms < PLAUSIBLE_EPOCH_MS {
            return (
                Self {
                    at: now + Duration::from_millis(ms),
                },
                Some(DeadlineWarning::RelativeValue(ms)),
            );
        }
        let wall_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let remaining = Duration::from_millis(ms.saturating_sub(wall_ms));
        (
            Self {
                at: now + remaining,
            },
            None,
        )
    }

    /// A deadline `remaining` from `now` (for callers that know the budget directly).
    pub fn after(now: Instant, remaining: Duration) -> Self {
        Self {
            at: now + remaining,
        }
    }

    /// The instant the invocation must be finished.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// When to stop the container: `margin` before the deadline, never before `now`.
    pub fn stop_at(&self, margin: Duration, now: Instant) -> Instant {
        self.at.checked_sub(margin).map_or(now, |at| at.max(now))
    }

    /// Time left until the deadline.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn an_epoch_deadline_gives_the_remaining_time() {
        let now = Instant::now();
        let (deadline, warning) =
            Deadline::from_header(Some("1795792930000"), now, wall(1_795_792_900_000));
        assert_eq!(warning, None);
        assert_eq!(deadline.remaining(now), Duration::from_secs(30));
    }

    #[test]
    fn the_emulators_constant_is_read_as_milliseconds_from_now_with_a_warning() {
        let now = Instant::now();
        let (deadline, warning) =
            Deadline::from_header(Some("600000"), now, wall(1_795_792_900_000));
        assert_eq!(warning, Some(DeadlineWarning::RelativeValue(600_000)));
        assert_eq!(deadline.remaining(now), Duration::from_secs(600));
        assert!(warning.unwrap().to_string().contains("600000 ms from now"));
    }

    #[test]
    fn a_past_epoch_deadline_leaves_no_time() {
        let now = Instant::now();
        let (deadline, warning) =
            Deadline::from_header(Some("1795792800000"), now, wall(1_795_792_900_000));
        assert_eq!(warning, None);
        assert_eq!(deadline.remaining(now), Duration::ZERO);
    }

    #[test]
    fn a_missing_or_garbled_header_falls_back_to_fifteen_minutes_with_a_warning() {
        let now = Instant::now();
        for value in [None, Some("soon")] {
            let (deadline, warning) = Deadline::from_header(value, now, SystemTime::now());
            assert!(matches!(warning, Some(DeadlineWarning::Unreadable(_))));
            assert_eq!(deadline.remaining(now), FALLBACK);
        }
    }

    #[test]
    fn the_stop_time_keeps_the_margin_and_is_never_in_the_past() {
        let now = Instant::now();
        let deadline = Deadline::after(now, Duration::from_secs(30));
        assert_eq!(
            deadline.stop_at(Duration::from_secs(10), now),
            now + Duration::from_secs(20)
        );
        assert_eq!(deadline.stop_at(Duration::from_secs(60), now), now);
    }
}

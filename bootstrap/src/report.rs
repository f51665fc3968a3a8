//! What an invocation answers: the response JSON on success (with each record's result), an
//! error type and message on failure, both kept under Lambda's payload limit.
//!
//! [`failure`] names the kinds of failure, [`record`] one record's result and what a batch of
//! them amounts to, [`response`] the success body, [`cap`] the cut that keeps a body under 6 MB.

mod cap;
mod failure;
mod record;
mod response;

pub use cap::{MAX_PAYLOAD, cap_error, cut_message, encode_response};
pub use failure::{Failure, FailureKind, describe_outputs};
pub use record::{
    BatchItemFailure, RecordResult, RecordStatus, batch_item_failures, summary_failure,
};
pub use response::{Omitted, Phases, Response, SkippedEntry};

#[cfg(test)]
mod cap_tests;
#[cfg(test)]
mod record_tests;

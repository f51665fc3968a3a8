//! A failed run as an HTTP answer. API Gateway and Function URLs turn a Lambda error into a
//! bare 502 that tells the caller nothing, so an HTTP request's failure is answered as HTTP:
//! a status for its kind and a JSON body with the `Scar.*` type and message.

use serde::Serialize;

use super::message::{Reply, ReplyBody};
use crate::report::{Failure, FailureKind, cut_message};

/// The most an error message takes in the answer (as a JSON string): the whole message is in
/// the function's logs.
pub const MESSAGE_BUDGET: usize = 256 * 1024;

/// The HTTP status for a failure of `kind`: 400 when the request itself is at fault, 422 when
/// the script rejected it, 504 when it ran out of time, 500 otherwise.
pub fn status_for(kind: FailureKind) -> u16 {
    match kind {
        FailureKind::Input => 400,
        FailureKind::ScriptFailed => 422,
        FailureKind::Timeout => 504,
        FailureKind::Config | FailureKind::Image | FailureKind::Output | FailureKind::Internal => {
            500
        }
    }
}

/// The body of a failure's answer, in the field names of Lambda's own error document.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error_type: &'a str,
    error_message: String,
    request_id: &'a str,
}

/// `failure` as an HTTP answer: [`status_for`] its kind, body `{"errorType": "Scar.…",
/// "errorMessage": "…", "requestId": "…"}` (the message cut to [`MESSAGE_BUDGET`]).
pub fn for_failure(failure: &Failure, request_id: &str) -> Reply {
    let body = ErrorBody {
        error_type: failure.kind.error_type(),
        error_message: cut_message(&failure.message, MESSAGE_BUDGET),
        request_id,
    };
    // Serialising a struct of strings cannot fail.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut reply = Reply::ok("application/json", ReplyBody::Bytes(json.into()));
    reply.status = status_for(failure.kind);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_status() {
        let expected = [
            (FailureKind::Input, 400),
            (FailureKind::ScriptFailed, 422),
            (FailureKind::Timeout, 504),
            (FailureKind::Config, 500),
            (FailureKind::Image, 500),
            (FailureKind::Output, 500),
            (FailureKind::Internal, 500),
        ];
        for (kind, status) in expected {
            let reply = for_failure(&Failure::new(kind, "why"), "req-1");
            assert_eq!(reply.status, status, "{kind:?}");
        }
    }

    #[test]
    fn a_failure_body_carries_its_type_message_and_request_id() {
        let failure = Failure::new(FailureKind::ScriptFailed, "exit 3: \"bad\" input");
        let reply = for_failure(&failure, "req-1");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let ReplyBody::Bytes(body) = reply.body else {
            panic!("a failure's body is in memory");
        };
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "errorType": "Scar.ScriptFailed",
                "errorMessage": "exit 3: \"bad\" input",
                "requestId": "req-1"
            })
        );
    }

    #[test]
    fn a_huge_failure_message_is_cut() {
        let failure = Failure::new(FailureKind::Output, "x".repeat(10 * MESSAGE_BUDGET));
        let reply = for_failure(&failure, "req-1");
        assert!(reply.body.len() < MESSAGE_BUDGET as u64 + 200);
        assert_eq!(reply.status, 500);
    }
}

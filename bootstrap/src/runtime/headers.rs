//! Names of the Runtime API's own headers that more than one call sends.

/// Given by `/next`, echoed on `/response` and `/error` (Lambda's protection against a late
/// result of a timed-out attempt reaching a retry that reuses the request id).
pub(crate) const INVOCATION_ID_HEADER: &str = "lambda-runtime-invocation-id";

/// The `errorType` of a failure: a header on `/error` and `/init/error`, a trailer at the end of
/// a streamed response that broke.
pub(crate) const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";

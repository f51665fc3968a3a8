//! The `bootstrap` as a Lambda function end to end: invocations, failures and timeouts,
//! isolation, prefetch. One test binary, one module per subject.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap` (one module: `... --test bootstrap prefetch::`).

#[path = "../support/bootstrap.rs"]
mod bootstrap_support;

mod bootstrap;
mod bootstrap_failures;
mod bootstrap_isolation;
mod concurrency;
mod contract;
mod framed_image;
mod http;
mod http_answers;
mod http_streamed;
mod prefetch;
mod runtime_headers;
mod shared_cache;

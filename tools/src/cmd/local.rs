//! `scar local`: the whole Lambda + S3 flow on one machine, with no AWS account.
//!
//! It serves an embedded Runtime API ([`runtime_api`]) and an embedded S3-compatible endpoint
//! over a local directory ([`s3`]), and runs the real `bootstrap` with Lambda's environment
//! ([`sandbox`], [`environment`]), so the same code paths (Runtime API, `aws-sdk-s3`, engines)
//! run as on Lambda. The function's configuration comes from its SAM template ([`function`]).
//!
//! - `scar local --function DIR --watch DATA` ([`serve`]): an S3 event ([`event`]) for each file
//!   that appears under `DATA/input/` ([`watch`]); outputs land in `DATA/output/`.
//! - `scar local --function DIR --http ADDR` ([`http`]): the function as a Lambda Function
//!   URL, each request a Function URL event ([`http_event`]), its answer the HTTP response,
//!   buffered or streamed as it arrives ([`http_answer`], [`http_stream`], [`runtime_stream`]).
//! - `scar local invoke --function DIR --event EVENT.json` (or `--input FILE`) ([`invoke`]):
//!   one event, the response printed.
//!
//! All parse their command line in [`args`], start a [`session`] with [`start`], and print
//! through [`output`]; this file only dispatches.

mod args;
mod channel_body;
mod environment;
mod error;
pub(crate) mod event;
mod function;
mod http;
mod http_answer;
mod http_event;
mod http_stream;
mod invoke;
mod output;
pub(crate) mod runtime_api;
pub(crate) mod runtime_stream;
pub(crate) mod s3;
mod s3_store;
mod sandbox;
mod serve;
mod session;
mod start;
mod watch;

use std::process::ExitCode;

pub use self::args::LocalArgs;
use self::args::LocalCommand;
use self::error::LocalError;

/// Run `scar local`.
pub fn run(args: LocalArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return super::fail(&LocalError::Tokio(err)),
    };
    let result = runtime.block_on(async {
        match args.command {
            Some(LocalCommand::Invoke(invoke)) => invoke::run_invoke(invoke).await,
            None => match args.http {
                Some(address) => http::run_http(args.function, address, args.dir).await,
                None => {
                    serve::run_watch(args.function, args.watch.unwrap_or_default(), args.existing)
                        .await
                }
            },
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => super::fail(&err),
    }
}

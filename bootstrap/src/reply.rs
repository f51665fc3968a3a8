//! An HTTP request's answer, in the integration's own format: what a run made becomes an HTTP
//! response (one file, a listing, an archive or the script's stdout), a failure becomes a
//! status and a JSON error, and either is shaped as API Gateway's or a Function URL's response
//! document (buffered) or as a streamed answer's prelude. Also the variables a request gives
//! the script. Pure: nothing here talks to the network.
//!
//! [`message`] is the answer itself, [`output_file`] one output and how it is opened,
//! [`disposition`] the `Content-Disposition` of a named file, [`archive`] the tar of all
//! outputs, [`outputs`] the answer of a run that succeeded, [`failure`] of one that failed,
//! [`document`] the integration response document and the prelude, [`env`] the variables.

mod archive;
mod disposition;
mod document;
mod env;
mod failure;
mod message;
mod output_file;
mod outputs;

pub use archive::ArchiveError;
pub use disposition::content_disposition;
pub use document::{Buffered, buffered, is_textual, prelude};
pub use env::{
    MAX_QUERY_VARIABLES, MAX_SCAR_HEADER_VARIABLES, MAX_VALUE_BYTES, http_env, variable_name,
};
pub use failure::{MESSAGE_BUDGET, for_failure, status_for};
pub use message::{Reply, ReplyBody};
pub use output_file::OutputFile;
pub use outputs::{ARCHIVE_NAME, LISTING_BUDGET, ReplyError, for_outputs, listing};

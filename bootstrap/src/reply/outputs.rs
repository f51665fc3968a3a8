//! The answer of a run that succeeded: one output's bytes, a list of several, one archive of
//! them all, or the script's stdout when it made none.

use std::path::Path;

use bytes::Bytes;
use serde::Serialize;

use super::archive::{ArchiveError, write_tar};
use super::disposition::content_disposition;
use super::message::{Reply, ReplyBody};
use super::output_file::{OutputFile, open_regular};
use crate::event::HttpInput;

/// The archive's file name, in `scratch` and in its `Content-Disposition`.
pub const ARCHIVE_NAME: &str = "outputs.tar";

/// The most a listing's JSON may take once embedded in an integration response document
/// (escaped as a JSON string): Lambda's buffered limit less room for the document around it,
/// so a listing always fits a buffered answer however many outputs there are.
pub const LISTING_BUDGET: usize = crate::report::MAX_PAYLOAD - 64 * 1024;

/// Why a successful run could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The one output to answer could not be opened as a regular file.
    #[error("the output {name} cannot be answered: {reason}")]
    Output {
        /// Its name under `output/`.
        name: String,
        /// Why.
        reason: String,
    },
    /// The archive of the outputs could not be written.
    #[error("the archive of the outputs could not be written: {0}")]
    Archive(#[from] ArchiveError),
}

/// The answer of a run that made `outputs` and printed `stdout`, for `input`:
/// - none: `stdout` as `text/plain; charset=utf-8`;
/// - an archive asked (`input.archive`), whatever the number of outputs: one tar of them all,
///   written to `scratch/outputs.tar`, as one file;
/// - one: that file, typed by its extension, with its name in `Content-Disposition`;
/// - several: their [`listing`].
pub fn for_outputs(
    input: &HttpInput,
    outputs: &[OutputFile],
    stdout: &str,
    scratch: &Path,
) -> Result<Reply, ReplyError> {
    match outputs {
        [] => Ok(Reply::ok(
            "text/plain; charset=utf-8",
            ReplyBody::Bytes(Bytes::copy_from_slice(stdout.as_bytes())),
        )),
        _ if input.archive => {
            let (file, len) = write_tar(outputs, &scratch.join(ARCHIVE_NAME))?;
            Ok(attachment(ARCHIVE_NAME, ReplyBody::File { file, len }))
        }
        [one] => {
            let (file, len) = open_regular(&one.path).map_err(|err| ReplyError::Output {
                name: one.name.clone(),
                reason: if err.raw_os_error() == Some(libc::ELOOP) {
                    "it is a symbolic link, which is never followed".to_owned()
                } else {
                    err.to_string()
                },
            })?;
            Ok(attachment(&one.name, ReplyBody::File { file, len }))
        }
        _ => Ok(listing(outputs, None)),
    }
}

/// A 200 answer of the file `name`: typed by its extension, named in `Content-Disposition`.
fn attachment(name: &str, body: ReplyBody) -> Reply {
    let mut reply = Reply::ok(crate::upload::content_type(name), body);
    reply
        .headers
        .push(("content-disposition".to_owned(), content_disposition(name)));
    reply
}

/// The body of a [`listing`].
#[derive(Serialize)]
struct Listing<'a> {
    outputs: Vec<Entry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    omitted: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

/// One output in a [`listing`].
#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

/// A 200 JSON answer listing `outputs`: `{"outputs": [{"name", "size", "url"?}],
/// "omitted"?, "note"?}` (`url` when uploaded). Outputs are listed in order until
/// [`LISTING_BUDGET`] is reached; `omitted` counts the rest.
pub fn listing(outputs: &[OutputFile], note: Option<&str>) -> Reply {
    let entries: Vec<Entry<'_>> = (outputs.iter())
        .map(|o| Entry {
            name: &o.name,
            size: o.size,
            url: o.url.as_deref(),
        })
        .collect();
    // What the listing takes besides its entries, with the largest `omitted` it could carry.
    let frame = Listing {
        outputs: Vec::new(),
        omitted: Some(usize::MAX),
        note,
    };
    let mut used = embedded_len(&frame);
    let mut kept = 0;
    for entry in &entries {
        used += embedded_len(entry) + 1;
        if used > LISTING_BUDGET {
            break;
        }
        kept += 1;
    }
    let omitted = entries.len() - kept;
    let mut entries = entries;
    entries.truncate(kept);
    let body = Listing {
        outputs: entries,
        omitted: (omitted > 0).then_some(omitted),
        note,
    };
    // Serialising these plain structs cannot fail.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Reply::ok("application/json", ReplyBody::Bytes(json.into()))
}

/// The length of `value`'s JSON once written inside a JSON string (quotes and backslashes
/// escaped), as a buffered answer carries it.
fn embedded_len(value: &impl Serialize) -> usize {
    let json = serde_json::to_string(value).unwrap_or_default();
    let escaped = serde_json::to_string(&json).unwrap_or_default();
    escaped.len().saturating_sub(2)
}

#[cfg(test)]
#[path = "outputs_tests.rs"]
mod tests;

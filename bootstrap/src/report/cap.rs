//! Keeping answers under Lambda's payload limit: a response or error body past 6 MB is refused
//! by the Runtime API after the work (and the uploads) succeeded, so the invocation would count
//! as failed and be retried for nothing.
//!
//! A response over the limit has its longest lists cut from their ends (the outputs of the
//! response and of each record, the inputs, the skipped entries, and each failed record's
//! message), all to one common size found by bisection, so a short list is kept whole while a
//! long one shrinks; what was cut is counted in `omitted`. Only if that is not enough are
//! records cut from the end. Each element is measured once (serialised into a counter), so the
//! cut costs a few passes whatever the number of outputs; one final serialisation checks it.
//! `batchItemFailures` is never cut: Lambda deletes every message it does not list.

use std::io;

use serde::Serialize;

use super::record::RecordResult;
use super::response::Response;
use crate::runtime::ErrorReport;

/// The largest body posted to the Runtime API: Lambda's 6 MB limit less a 64 KiB margin.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024 - 64 * 1024;

/// Upper bound of `,"omitted":{"inputs":N,"outputs":N,"skipped":N,"records":N}`, each count
/// at most 20 digits.
const OMITTED_RESERVE: usize = 55 + 4 * 20;

/// The response's JSON, at most `limit` bytes when it can be (see the module doc). A response
/// that fits is exactly `serde_json::to_vec(response)`.
pub fn encode_response(response: &Response, limit: usize) -> Vec<u8> {
    // Counted first, not written: a response of 200,000 outputs is some 23 MB the bootstrap
    // need not hold (its memory is bounded per concurrent invocation).
    let full = serialized_len(response);
    if full <= limit {
        return to_json(response);
    }
    let sizes = Sizes::measure(response, full);
    let cut = match sizes.fitting_share(limit) {
        Some(share) => sizes.cut(response, share, response.records.len()),
        None => sizes.cut(response, 0, sizes.records_fitting(limit)),
    };
    let body = to_json(&cut);
    if body.len() <= limit {
        return body;
    }
    // Only when the parts never cut (stdout and stderr, 64 KiB each, `unconfined`,
    // `batchItemFailures`) leave no room for the rest, i.e. a tiny limit: keep the limit, at the
    // cost of the output tails.
    let mut bare = sizes.cut(response, 0, 0);
    bare.stdout = cut_message(&bare.stdout, 0);
    bare.stderr = cut_message(&bare.stderr, 0);
    to_json(&bare)
}

/// The same error with its message cut (keeping its start) so the report's JSON is at most
/// `limit` bytes; the cut message ends "… (N more bytes)".
pub fn cap_error(report: ErrorReport, limit: usize) -> ErrorReport {
    let size = serialized_len(&report);
    if size <= limit {
        return report;
    }
    let rest = size - serialized_len(&report.error_message);
    let error_message = cut_message(&report.error_message, limit.saturating_sub(rest));
    ErrorReport {
        error_type: report.error_type,
        error_message,
    }
}

/// `text`, or its start followed by "… (N more bytes)", whose JSON string (quotes included)
/// takes at most `budget` bytes, or the bare suffix when even that does not fit. The cut falls
/// on a character boundary, so the result is valid UTF-8.
pub fn cut_message(text: &str, budget: usize) -> String {
    if text.is_empty() || serialized_len(text) <= budget {
        return text.to_owned();
    }
    let room = budget.saturating_sub(2 + suffix_len(text.len()));
    let mut used = 0;
    let mut end = 0;
    for (at, c) in text.char_indices() {
        used += escaped_len(c);
        if used > room {
            break;
        }
        end = at + c.len_utf8();
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// The largest length of "… (N more bytes)" for a text of `len` bytes (N ≤ len).
fn suffix_len(len: usize) -> usize {
    "… ( more bytes)".len() + digits(len)
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{08}' | '\u{0c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising these types cannot fail: every map key is a field name, and serde_json
    // writes a non-finite f64 as null. An empty body would be refused as invalid JSON, which
    // is the right outcome for the impossible.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Bytes `value` takes as JSON, counted without keeping them.
fn serialized_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    // Writing into a counter cannot fail (see `to_json` for the serialiser).
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON array cut from its end.
struct List {
    /// `prefix[k]`: the bytes of the array holding the first `k` elements (`[]` is 2).
    prefix: Vec<usize>,
}

impl List {
    fn measure<T: Serialize>(items: &[T]) -> Self {
        let mut prefix = Vec::with_capacity(items.len() + 1);
        prefix.push(2);
        let mut size = 2;
        for (i, item) in items.iter().enumerate() {
            size += serialized_len(item) + usize::from(i > 0);
            prefix.push(size);
        }
        Self { prefix }
    }

    fn full(&self) -> usize {
        self.prefix[self.prefix.len() - 1]
    }

    /// How many elements fit in `share` bytes (0 when even `[]` does not).
    fn kept(&self, share: usize) -> usize {
        self.prefix
            .partition_point(|&size| size <= share)
            .saturating_sub(1)
    }

    /// Bytes of the array cut to `share`.
    fn cost(&self, share: usize) -> usize {
        self.prefix[self.kept(share)]
    }
}

/// A record's error message, cut by [`cut_message`].
struct Message {
    full: usize,
    /// The bytes of the bare "… (N more bytes)".
    least: usize,
}

impl Message {
    fn measure(text: &str) -> Self {
        Self {
            full: serialized_len(text),
            least: 2 + suffix_len(text.len()),
        }
    }

    fn cost(&self, share: usize) -> usize {
        if self.full <= share {
            self.full
        } else {
            share.max(self.least)
        }
    }
}

/// A record: its outputs and message may be cut; the rest is kept whole.
struct Record {
    fixed: usize,
    outputs: List,
    message: Option<Message>,
}

impl Record {
    fn measure(record: &RecordResult) -> Self {
        let outputs = List::measure(&record.outputs);
        let message = record.error.as_ref().map(|e| Message::measure(&e.message));
        let whole = serialized_len(record);
        let fixed = whole - outputs.full() - message.as_ref().map_or(0, |m| m.full);
        Self {
            fixed,
            outputs,
            message,
        }
    }

    fn full(&self) -> usize {
        self.fixed + self.outputs.full() + self.message.as_ref().map_or(0, |m| m.full)
    }

    fn cost(&self, share: usize) -> usize {
        self.fixed + self.outputs.cost(share) + self.message.as_ref().map_or(0, |m| m.cost(share))
    }
}

/// The measured sizes of a response's parts.
struct Sizes {
    /// The response's bytes without the cut parts, with room for `omitted`.
    base: usize,
    inputs: List,
    outputs: List,
    skipped: List,
    records: Vec<Record>,
}

impl Sizes {
    fn measure(response: &Response, full: usize) -> Self {
        let inputs = List::measure(&response.inputs);
        let outputs = List::measure(&response.outputs);
        let skipped = List::measure(&response.skipped);
        let records: Vec<Record> = response.records.iter().map(Record::measure).collect();
        let records_full = array_size(records.iter().map(Record::full));
        let omitted_now = response
            .omitted
            .map_or(0, |o| serialized_len(&o) + ",\"omitted\":".len());
        let base = (full + OMITTED_RESERVE).saturating_sub(
            inputs.full() + outputs.full() + skipped.full() + records_full + omitted_now,
        );
        Self {
            base,
            inputs,
            outputs,
            skipped,
            records,
        }
    }

    /// The response's bytes with every cuttable part cut to `share` bytes.
    fn total(&self, share: usize) -> usize {
        self.base
            + self.inputs.cost(share)
            + self.outputs.cost(share)
            + self.skipped.cost(share)
            + array_size(self.records.iter().map(|r| r.cost(share)))
    }

    /// The largest share that keeps the response within `limit`, if any does.
    fn fitting_share(&self, limit: usize) -> Option<usize> {
        if self.total(0) > limit {
            return None;
        }
        let longest = [self.inputs.full(), self.outputs.full(), self.skipped.full()]
            .into_iter()
            .chain(
                self.records
                    .iter()
                    .flat_map(|r| [r.outputs.full(), r.message.as_ref().map_or(0, |m| m.full)]),
            )
            .max()
            .unwrap_or(0);
        // total(0) fits and total(longest) is the whole response, which does not: bisect.
        let (mut fits, mut over) = (0, longest);
        while over - fits > 1 {
            let middle = fits + (over - fits) / 2;
            if self.total(middle) <= limit {
                fits = middle;
            } else {
                over = middle;
            }
        }
        Some(fits)
    }

    /// How many records fit within `limit` when everything else is cut to nothing.
    fn records_fitting(&self, limit: usize) -> usize {
        let others = self.base + self.inputs.cost(0) + self.outputs.cost(0) + self.skipped.cost(0);
        let mut size = others + 2;
        for (kept, record) in self.records.iter().enumerate() {
            size += record.cost(0) + usize::from(kept > 0);
            if size > limit {
                return kept;
            }
        }
        self.records.len()
    }

    /// `response` with its lists and messages cut to `share` bytes and `records` records kept.
    fn cut(&self, response: &Response, share: usize, records: usize) -> Response {
        let mut omitted = response.omitted.unwrap_or_default();
        let inputs = self.inputs.kept(share);
        omitted.inputs += response.inputs.len() - inputs;
        let outputs = self.outputs.kept(share);
        omitted.outputs += response.outputs.len() - outputs;
        let skipped = self.skipped.kept(share);
        omitted.skipped += response.skipped.len() - skipped;
        omitted.records += response.records.len() - records;
        let kept_records = response.records[..records]
            .iter()
            .zip(&self.records)
            .map(|(record, sizes)| {
                let outputs = sizes.outputs.kept(share);
                omitted.outputs += record.outputs.len() - outputs;
                let mut error = record.error.clone();
                if let Some(error) = &mut error {
                    error.message = cut_message(&error.message, share);
                }
                RecordResult {
                    input: record.input.clone(),
                    message_id: record.message_id.clone(),
                    status: record.status,
                    exit_code: record.exit_code,
                    outputs: record.outputs[..outputs].to_vec(),
                    error,
                }
            })
            .collect();
        Response {
            request_id: response.request_id.clone(),
            image: response.image.clone(),
            engine: response.engine.clone(),
            exit_code: response.exit_code,
            duration_ms: response.duration_ms,
            inputs: response.inputs[..inputs].to_vec(),
            outputs: response.outputs[..outputs].to_vec(),
            skipped: response.skipped[..skipped].to_vec(),
            records: kept_records,
            batch_item_failures: response.batch_item_failures.clone(),
            stdout: response.stdout.clone(),
            stderr: response.stderr.clone(),
            unconfined: response.unconfined.clone(),
            phases_ms: response.phases_ms.clone(),
            omitted: Some(omitted),
        }
    }
}

/// Bytes of a JSON array whose elements take `sizes` bytes.
fn array_size(sizes: impl Iterator<Item = usize>) -> usize {
    let (count, sum) = sizes.fold((0usize, 0), |(count, sum), size| (count + 1, sum + size));
    2 + sum + count.saturating_sub(1)
}

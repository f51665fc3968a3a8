//! S3 event notifications as Lambda delivers them (`ObjectCreated:Put`, one record per object).
//!
//! The records are `aws_lambda_events`' S3 types, filled as S3 fills them (event message
//! structure version 2.1); the object key is URL-encoded the way S3 does it (form encoding: a space becomes `+`, `/` stays), which is why
//! the bootstrap must decode it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::s3::{S3Event, S3EventRecord, S3UserIdentity};
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::error::{LocalError, io};

/// Bytes S3 leaves as they are in event keys: unreserved characters and `/`.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b'*');

/// An object that was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedObject {
    /// The bucket.
    pub bucket: String,
    /// The key, not encoded.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The object's ETag (hex MD5 for a simple upload), without quotes.
    pub etag: String,
}

/// Encode a key as S3 does in event notifications.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ENCODE)
        .to_string()
        .replace("%20", "+")
}

/// A UTC date and time of day, to the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    /// The year (1970 or later).
    pub year: i64,
    /// 1 to 12.
    pub month: i64,
    /// 1 to 31.
    pub day: i64,
    /// 0 to 23.
    pub hour: u64,
    /// 0 to 59.
    pub minute: u64,
    /// 0 to 59.
    pub second: u64,
    /// 0 to 999.
    pub millis: u32,
}

impl Civil {
    /// The UTC date and time of `at` (the epoch for a time before it).
    pub fn of(at: SystemTime) -> Self {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        // Civil-from-days (Howard Hinnant's algorithm), valid for any date after 1970.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rest / 3600,
            minute: rest % 3600 / 60,
            second: rest % 60,
            millis: since.subsec_millis(),
        }
    }
}

/// ISO 8601 UTC time with milliseconds, as in S3 events (`2026-11-27T15:04:05.123Z`).
pub fn event_time(at: SystemTime) -> String {
    let t = Civil::of(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

/// The `ObjectCreated:Put` event for `objects`, as JSON.
pub fn object_created(objects: &[CreatedObject], region: &str, at: SystemTime) -> String {
    let nanos = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let stamp = format!("{:016X}", nanos as u64);
    let mut event = S3Event::default();
    event.records = objects
        .iter()
        .map(|object| record(object, region, &stamp))
        .collect();
    let Ok(mut document) = serde_json::to_value(&event) else {
        return String::new();
    };
    // The record type holds `eventTime` as a chrono date, which writes no fraction for a whole
    // second; S3 always writes milliseconds, and the bootstrap passes the text on as
    // EVENT_TIME, so it is written here the way S3 does.
    let time = serde_json::Value::String(event_time(at));
    for record in document["Records"].as_array_mut().into_iter().flatten() {
        record["eventTime"] = time.clone();
    }
    // Serialising strings, integers and maps cannot fail.
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// One record of [`object_created`]: the fields S3 sets for a `PUT` (`eventTime` is written
/// by the caller).
fn record(object: &CreatedObject, region: &str, stamp: &str) -> S3EventRecord {
    let mut record = S3EventRecord::default();
    record.event_version = Some("2.1".to_owned());
    record.event_source = Some("aws:s3".to_owned());
    record.aws_region = Some(region.to_owned());
    record.event_name = Some("ObjectCreated:Put".to_owned());
    record.principal_id.principal_id = Some("AWS:SCARLOCAL".to_owned());
    record.request_parameters.source_ip_address = Some("127.0.0.1".to_owned());
    record.response_elements = [
        ("x-amz-request-id".to_owned(), stamp.to_owned()),
        ("x-amz-id-2".to_owned(), "scar/local".to_owned()),
    ]
    .into();
    record.s3.schema_version = Some("1.0".to_owned());
    record.s3.configuration_id = Some("scar-local".to_owned());
    record.s3.bucket.name = Some(object.bucket.clone());
    let mut owner = S3UserIdentity::default();
    owner.principal_id = Some("SCARLOCAL".to_owned());
    record.s3.bucket.owner_identity = Some(owner);
    record.s3.bucket.arn = Some(format!("arn:aws:s3:::{}", object.bucket));
    record.s3.object.key = Some(encode_key(&object.key));
    record.s3.object.size = i64::try_from(object.size).ok();
    record.s3.object.e_tag = Some(object.etag.clone());
    record.s3.object.sequencer = Some(stamp.to_owned());
    record
}

/// The ETag S3 gives a simple upload: the hex MD5 of the content (what the S3 endpoint reports
/// for the same file), streamed so a big input is never held in memory.
pub fn etag_of(path: &Path) -> std::io::Result<String> {
    use s3s::crypto::{Checksum, Md5};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut md5 = Md5::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        md5.update(&buffer[..n]);
    }
    Ok(md5.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The key of a file of the data directory (`/`-separated, relative).
pub(super) fn key_of(data_dir: &Path, path: &Path) -> Result<String, LocalError> {
    let relative = path
        .strip_prefix(data_dir)
        .map_err(|_| LocalError::Outside {
            path: path.to_path_buf(),
            dir: data_dir.to_path_buf(),
        })?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

/// The ObjectCreated event for one file of the data directory.
pub(super) fn event_for(
    data_dir: &Path,
    bucket: &str,
    region: &str,
    path: &Path,
) -> Result<(String, Bytes), LocalError> {
    let key = key_of(data_dir, path)?;
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    let etag = etag_of(path).map_err(io(path))?;
    let object = CreatedObject {
        bucket: bucket.to_owned(),
        key: key.clone(),
        size,
        etag,
    };
    Ok((
        key,
        Bytes::from(object_created(&[object], region, SystemTime::now())),
    ))
}

/// The buckets named by the S3 records of an event document (none for other events).
pub fn buckets_of(event: &serde_json::Value) -> Vec<String> {
    let mut buckets: Vec<String> = event
        .get("Records")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter_map(|record| {
            record
                .pointer("/s3/bucket/name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
        })
        .collect();
    buckets.sort();
    buckets.dedup();
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_are_slash_separated_and_relative_to_the_data_directory() {
        assert_eq!(
            key_of(Path::new("/d"), Path::new("/d/input/a b/c.png")).unwrap(),
            "input/a b/c.png"
        );
        assert!(key_of(Path::new("/d"), Path::new("/elsewhere/c.png")).is_err());
    }

    #[test]
    fn keys_are_form_encoded_like_s3_does() {
        assert_eq!(encode_key("input/my photo.png"), "input/my+photo.png");
        assert_eq!(encode_key("input/é+&.jpg"), "input/%C3%A9%2B%26.jpg");
    }

    #[test]
    fn etag_is_the_md5_of_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(etag_of(&path).unwrap(), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn event_time_is_iso_8601_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_791_845_123);
        assert_eq!(event_time(at), "2026-11-27T15:04:05.123Z");
        assert_eq!(event_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            event_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn the_event_has_the_shape_of_an_s3_notification() {
        let object = CreatedObject {
            bucket: "b".into(),
            key: "input/a b.png".into(),
            size: 7,
            etag: "e".into(),
        };
        let json: serde_json::Value =
            serde_json::from_str(&object_created(&[object], "eu-west-1", UNIX_EPOCH)).unwrap();
        let record = &json["Records"][0];
        assert_eq!(record["eventSource"], "aws:s3");
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert_eq!(record["awsRegion"], "eu-west-1");
        assert_eq!(record["s3"]["bucket"]["name"], "b");
        assert_eq!(record["s3"]["bucket"]["arn"], "arn:aws:s3:::b");
        assert_eq!(record["s3"]["object"]["key"], "input/a+b.png");
        assert_eq!(record["s3"]["object"]["size"], 7);
        assert_eq!(record["s3"]["object"]["eTag"], "e");
        assert_eq!(record["requestParameters"]["sourceIPAddress"], "127.0.0.1");
        assert_eq!(record["userIdentity"]["principalId"], "AWS:SCARLOCAL");
        assert_eq!(record["eventTime"], "1970-01-01T00:00:00.000Z");
        assert_eq!(buckets_of(&json), ["b"]);
    }

    #[test]
    fn an_event_round_trips_through_the_s3_event_type_with_one_record_per_object() {
        let objects =
            [("b", "input/a.png"), ("c", "input/é.png")].map(|(bucket, key)| CreatedObject {
                bucket: bucket.into(),
                key: key.into(),
                size: 3,
                etag: "e".into(),
            });
        let at = UNIX_EPOCH + Duration::from_millis(1_795_791_845_123);
        let text = object_created(&objects, "us-east-1", at);
        let event: S3Event = serde_json::from_str(&text).expect("an S3 event");
        assert_eq!(event.records.len(), 2);
        let second = &event.records[1];
        assert_eq!(second.s3.bucket.name.as_deref(), Some("c"));
        assert_eq!(second.s3.object.key.as_deref(), Some("input/%C3%A9.png"));
        assert_eq!(second.s3.object.size, Some(3));
        assert_eq!(second.event_time.timestamp_millis(), 1_795_791_845_123);
    }
}

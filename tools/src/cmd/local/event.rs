//! S3 event notifications as Lambda delivers them (`ObjectCreated:Put`, one record per object).
//!
//! The shape follows AWS's documented event message structure (version 2.1); the object key is
//! URL-encoded the way S3 does it (form encoding: a space becomes `+`, `/` stays), which is why
//! the bootstrap must decode it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'static str,
    event_source: &'static str,
    aws_region: &'a str,
    event_time: String,
    event_name: &'static str,
    user_identity: Principal,
    request_parameters: RequestParameters,
    response_elements: ResponseElements,
    s3: S3Entity<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Principal {
    principal_id: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestParameters {
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: &'static str,
}

#[derive(Serialize)]
struct ResponseElements {
    #[serde(rename = "x-amz-request-id")]
    request_id: String,
    #[serde(rename = "x-amz-id-2")]
    id_2: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct S3Entity<'a> {
    s3_schema_version: &'static str,
    configuration_id: &'static str,
    bucket: Bucket<'a>,
    object: Object,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bucket<'a> {
    name: &'a str,
    owner_identity: Principal,
    arn: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    key: String,
    size: u64,
    e_tag: String,
    sequencer: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Event<'a> {
    records: Vec<Record<'a>>,
}

/// ISO 8601 UTC time with milliseconds, as in S3 events (`2026-11-27T15:04:05.123Z`).
pub fn event_time(at: SystemTime) -> String {
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
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The `ObjectCreated:Put` event for `objects`, as JSON.
pub fn object_created(objects: &[CreatedObject], region: &str, at: SystemTime) -> String {
    let nanos = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let records = objects
        .iter()
        .map(|object| Record {
            event_version: "2.1",
            event_source: "aws:s3",
            aws_region: region,
            event_time: event_time(at),
            event_name: "ObjectCreated:Put",
            user_identity: Principal {
                principal_id: "AWS:SCARLOCAL",
            },
            request_parameters: RequestParameters {
                source_ip_address: "127.0.0.1",
            },
            response_elements: ResponseElements {
                request_id: format!("{:016X}", nanos as u64),
                id_2: "scar/local".to_owned(),
            },
            s3: S3Entity {
                s3_schema_version: "1.0",
                configuration_id: "scar-local",
                bucket: Bucket {
                    name: &object.bucket,
                    owner_identity: Principal {
                        principal_id: "SCARLOCAL",
                    },
                    arn: format!("arn:aws:s3:::{}", object.bucket),
                },
                object: Object {
                    key: encode_key(&object.key),
                    size: object.size,
                    e_tag: object.etag.clone(),
                    sequencer: format!("{:016X}", nanos as u64),
                },
            },
        })
        .collect();
    // Serialising plain strings and integers cannot fail.
    serde_json::to_string_pretty(&Event { records }).unwrap_or_default()
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
        assert_eq!(buckets_of(&json), ["b"]);
    }
}

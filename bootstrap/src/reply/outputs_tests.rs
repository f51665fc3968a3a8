use std::process::Command;

use super::*;
use crate::event::{HttpFormat, HttpSource};
use crate::reply::document::{Buffered, buffered};

fn input(archive: bool) -> HttpInput {
    HttpInput {
        source: HttpSource::FunctionUrl,
        format: HttpFormat::V2,
        method: "POST".into(),
        path: "/sample.png".into(),
        raw_query: String::new(),
        query: Vec::new(),
        headers: Vec::new(),
        body: Bytes::new(),
        file_name: "sample.png".into(),
        archive,
    }
}

fn outputs(dir: &Path, contents: &[(&str, &[u8])]) -> Vec<OutputFile> {
    (contents.iter())
        .map(|(name, bytes)| {
            let path = dir.join("output").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            OutputFile {
                name: (*name).to_owned(),
                path,
                size: bytes.len() as u64,
                url: None,
            }
        })
        .collect()
}

fn json_body(reply: &Reply) -> serde_json::Value {
    let ReplyBody::Bytes(bytes) = &reply.body else {
        panic!("a JSON body is in memory");
    };
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn no_output_answers_the_scripts_stdout_as_utf8_text() {
    let dir = tempfile::tempdir().unwrap();
    let reply = for_outputs(&input(false), &[], "done: 3 frames\n", dir.path()).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(matches!(&reply.body, ReplyBody::Bytes(b) if &b[..] == b"done: 3 frames\n"));
}

#[test]
fn one_output_is_answered_as_the_file_typed_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = outputs(dir.path(), &[("out/grey image.png", b"\x89PNG....")]);
    let reply = for_outputs(&input(false), &files, "", dir.path()).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("image/png"));
    assert_eq!(
        reply.header("content-disposition"),
        Some("inline; filename=\"grey image.png\"; filename*=UTF-8''grey%20image.png")
    );
    assert!(matches!(reply.body, ReplyBody::File { len: 8, .. }));
}

#[test]
fn one_symlinked_output_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("environ");
    std::os::unix::fs::symlink("/proc/self/environ", &link).unwrap();
    let files = [OutputFile {
        name: "environ".into(),
        path: link,
        size: 0,
        url: None,
    }];
    let err = for_outputs(&input(false), &files, "", dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the output environ cannot be answered: it is a symbolic link, which is never followed"
    );
}

#[test]
fn a_fifo_swapped_in_for_an_output_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let files = [OutputFile {
        name: "pipe".into(),
        path: fifo,
        size: 0,
        url: None,
    }];
    let err = for_outputs(&input(false), &files, "", dir.path()).unwrap_err();
    assert!(err.to_string().ends_with("not a regular file"), "{err}");
}

#[test]
fn several_outputs_are_listed_with_sizes_and_urls_when_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = outputs(dir.path(), &[("a.png", b"aaaa"), ("b/c.txt", b"c")]);
    files[0].url = Some("s3://bucket/output/a.png".into());
    let reply = for_outputs(&input(false), &files, "ignored", dir.path()).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        json_body(&reply),
        serde_json::json!({"outputs": [
            {"name": "a.png", "size": 4, "url": "s3://bucket/output/a.png"},
            {"name": "b/c.txt", "size": 1}
        ]})
    );
}

#[test]
fn a_listing_carries_its_note() {
    let dir = tempfile::tempdir().unwrap();
    let files = outputs(dir.path(), &[("a.png", b"a")]);
    let reply = listing(&files, Some("too large to answer"));
    assert_eq!(json_body(&reply)["note"], "too large to answer");
}

#[test]
fn a_listing_of_very_many_outputs_is_cut_to_fit_a_buffered_answer() {
    let url_tail = "u\"".repeat(450);
    let files: Vec<OutputFile> = (0..9_000)
        .map(|i| OutputFile {
            name: format!("frame-{i:05}.png"),
            path: std::path::PathBuf::from("/nonexistent"),
            size: i,
            url: Some(format!("s3://bucket/output/{i}/{url_tail}")),
        })
        .collect();
    let reply = listing(&files, Some("note"));
    let body = json_body(&reply);
    let kept = body["outputs"].as_array().unwrap().len();
    let omitted = body["omitted"].as_u64().unwrap() as usize;
    assert!(
        kept > 1000 && omitted > 1000,
        "kept {kept}, omitted {omitted}"
    );
    assert_eq!(kept + omitted, files.len());
    assert_eq!(
        body["outputs"][kept - 1]["name"],
        format!("frame-{:05}.png", kept - 1)
    );
    let document = buffered(reply, HttpFormat::V1, crate::report::MAX_PAYLOAD).unwrap();
    let Buffered::Payload(document) = document else {
        panic!("the listing must fit a buffered answer");
    };
    assert!(
        document.len() > LISTING_BUDGET - 10_000,
        "the budget is used: {}",
        document.len()
    );
}

#[test]
fn an_archive_asked_for_answers_one_tar_of_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let files = outputs(dir.path(), &[("a.png", b"aaaa"), ("b/c.txt", b"c")]);
    let scratch = dir.path().join("meta");
    std::fs::create_dir(&scratch).unwrap();
    let reply = for_outputs(&input(true), &files, "", &scratch).unwrap();
    assert_eq!(reply.header("content-type"), Some("application/x-tar"));
    assert_eq!(
        reply.header("content-disposition"),
        Some("inline; filename=\"outputs.tar\"; filename*=UTF-8''outputs.tar")
    );
    let ReplyBody::File { len, .. } = reply.body else {
        panic!("the archive is a file");
    };
    let archive = scratch.join(ARCHIVE_NAME);
    assert_eq!(len, std::fs::metadata(&archive).unwrap().len());
    let out = Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a.png\nb/c.txt\n");
}

#[test]
fn an_archive_asked_for_one_output_is_still_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let files = outputs(dir.path(), &[("a.png", b"aaaa")]);
    let reply = for_outputs(&input(true), &files, "", dir.path()).unwrap();
    assert_eq!(reply.header("content-type"), Some("application/x-tar"));
}

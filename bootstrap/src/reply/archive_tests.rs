use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;

/// Files under `dir/output`, made with `contents`, as the outputs list names them.
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

fn system_tar(args: &[&str], archive: &Path) -> String {
    let out = Command::new("tar")
        .args(args)
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_archive_lists_every_output_with_its_size_in_system_tar() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("deep/{}/{}.png", "d".repeat(120), "n".repeat(140));
    let files = outputs(
        dir.path(),
        &[
            ("grey.png", &[0x89, b'P', b'N', b'G', 0, 13, 10][..]),
            ("frames/0001.txt", b"first frame\n"),
            (&long, &[7u8; 1500][..]),
            ("empty", b""),
        ],
    );
    let dest = dir.path().join("outputs.tar");
    let (mut file, len) = write_tar(&files, &dest).unwrap();
    assert_eq!(len, std::fs::metadata(&dest).unwrap().len());
    assert_eq!(len % 512, 0);
    let mut start = [0u8; 8];
    file.read_exact(&mut start).unwrap();
    assert_eq!(&start, b"grey.png", "the returned file is at its start");

    let listing = system_tar(&["-tvf"], &dest);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "{listing}");
    assert!(
        lines[0].starts_with("-rw-r--r-- 0/0") && lines[0].ends_with(" grey.png"),
        "{listing}"
    );
    assert!(lines[0].contains(" 7 "), "{listing}");
    assert!(
        lines[1].contains(" 12 ") && lines[1].ends_with(" frames/0001.txt"),
        "{listing}"
    );
    assert!(
        lines[2].contains(" 1500 ") && lines[2].ends_with(&format!(" {long}")),
        "{listing}"
    );
    assert!(lines[3].ends_with(" empty"), "{listing}");
}

#[test]
fn the_archive_extracts_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let files = outputs(dir.path(), &[("a/b.bin", &big[..]), ("c.txt", b"c\n")]);
    let dest = dir.path().join("outputs.tar");
    write_tar(&files, &dest).unwrap();
    let into = dir.path().join("x");
    std::fs::create_dir(&into).unwrap();
    system_tar(&["-C", into.to_str().unwrap(), "-xf"], &dest);
    assert_eq!(std::fs::read(into.join("a/b.bin")).unwrap(), big);
    assert_eq!(std::fs::read(into.join("c.txt")).unwrap(), b"c\n");
}

#[test]
fn an_executable_output_keeps_its_execute_bits_only() {
    let dir = tempfile::tempdir().unwrap();
    let files = outputs(dir.path(), &[("run.sh", b"#!/bin/sh\n")]);
    std::fs::set_permissions(&files[0].path, std::fs::Permissions::from_mode(0o4777)).unwrap();
    let dest = dir.path().join("outputs.tar");
    write_tar(&files, &dest).unwrap();
    assert!(system_tar(&["-tvf"], &dest).starts_with("-rwxr-xr-x 0/0"));
}

#[test]
fn a_symlinked_output_is_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = outputs(dir.path(), &[("ok.txt", b"ok")]);
    let link = dir.path().join("output/link");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    files.push(OutputFile {
        name: "link".into(),
        path: link,
        size: 0,
        url: None,
    });
    let err = write_tar(&files, &dir.path().join("outputs.tar")).unwrap_err();
    assert_eq!(err.what, "link");
    assert_eq!(err.source.raw_os_error(), Some(libc::ELOOP));
}

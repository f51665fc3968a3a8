use super::*;

fn frame(offset: u64, length: u64, continues: bool) -> Frame {
    Frame {
        offset,
        length,
        size: 10,
        digest: FrameDigest::of(b"x"),
        continues,
    }
}

fn object(frames: Vec<Frame>) -> (Vec<u8>, Index) {
    let index = Index {
        format: FORMAT.into(),
        source: "docker.io/library/alpine:3".into(),
        config: ImageConfig::default(),
        frames,
        entries: 3,
    };
    let (bytes, digest) = index.encode();
    let offset = index.compressed_size();
    let mut object = vec![7u8; offset as usize];
    object.extend_from_slice(&bytes);
    let trailer = Trailer {
        index_offset: offset,
        index_len: bytes.len() as u64,
        index_digest: digest,
    };
    object.extend_from_slice(&trailer.encode());
    (object, index)
}

fn read(object: &[u8], pin: Option<&Digest>) -> Result<Index, FormatError> {
    let trailer = Trailer::decode(object, object.len() as u64)?;
    let start = trailer.index_offset as usize;
    let bytes = &object[start..start + trailer.index_len as usize];
    Index::parse(bytes, &trailer, pin)
}

#[test]
fn an_object_round_trips_and_its_pin_is_the_index_digest() {
    let (object, index) = object(vec![frame(0, 5, false), frame(5, 9, true)]);
    let (_, digest) = index.encode();
    assert_eq!(read(&object, None), Ok(index.clone()));
    assert_eq!(read(&object, Some(&digest)), Ok(index));
    let other = Digest::of(b"other");
    assert_eq!(
        read(&object, Some(&other)),
        Err(FormatError::Pin {
            pinned: other,
            actual: digest
        })
    );
}

#[test]
fn a_truncated_or_altered_object_is_refused() {
    let (object, _) = object(vec![frame(0, 5, false)]);
    // Cut anywhere: the trailer is gone or points outside.
    for cut in [1, 10, TRAILER_LEN, object.len() - 1] {
        let short = &object[..object.len() - cut];
        assert!(read(short, None).is_err(), "cut {cut} was accepted");
    }
    assert_eq!(read(&object[..20], None), Err(FormatError::TooShort(20)));
    // One byte of the index changed: its digest no longer matches the trailer's.
    let mut altered = object.clone();
    altered[6] ^= 1;
    assert_eq!(read(&altered, None), Err(FormatError::IndexDigest));
    // The magic changed.
    let mut altered = object.clone();
    let at = altered.len() - TRAILER_LEN;
    altered[at] = b'X';
    assert_eq!(read(&altered, None), Err(FormatError::NoTrailer));
}

#[test]
fn frames_that_do_not_tile_the_object_are_refused() {
    for frames in [
        vec![frame(0, 5, false), frame(6, 8, false)],
        vec![frame(1, 13, false)],
        vec![frame(0, 14, true)],
        vec![frame(0, 0, false), frame(0, 14, false)],
    ] {
        let (object, _) = object(frames.clone());
        assert!(
            matches!(read(&object, None), Err(FormatError::Inconsistent(_))),
            "{frames:?} accepted"
        );
    }
}

#[test]
fn a_framed_image_is_one_layer_whose_chain_id_is_its_index_digest() {
    let d = Digest::of(b"index");
    assert_eq!(crate::digest::chain_id(&[d]), Some(Index::chain_id(&d)));
}

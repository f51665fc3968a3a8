//! The byte path of one layer: source bytes → digest check → decompression (its own thread) →
//! tar application, with bounded buffers in between so no layer is ever held in memory.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::blob::BlobError;
use crate::digest::{Digest, Hasher};

/// Size of the decompressed chunks handed to the extractor.
const CHUNK: usize = 256 * 1024;
/// Decompressed chunks buffered between the threads.
const DEPTH: usize = 4;
/// Read buffer in front of the decompressor.
const INPUT_BUF: usize = 256 * 1024;

/// Reads a tokio channel of chunks from a blocking thread.
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// Time spent waiting for the network (logged at the end, to tell where a pull waits).
    waited: Duration,
}

impl ChannelReader {
    /// Wrap a receiver fed by a download task.
    pub fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            waited: Duration::ZERO,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let asked = Instant::now();
            let next = self.rx.blocking_recv();
            self.waited += asked.elapsed();
            match next {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => {
                    tracing::debug!(
                        waited_secs = self.waited.as_secs_f64(),
                        "blob stream ended; time the decompressor waited for the network"
                    );
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Copies what is read into a file (compressed blobs kept in the cache).
pub struct Tee<R> {
    inner: R,
    copy: std::fs::File,
}

impl<R> Tee<R> {
    /// Copy `inner` into `copy` as it is read.
    pub fn new(inner: R, copy: std::fs::File) -> Self {
        Self { inner, copy }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(&mut self.copy, &buf[..n])?;
        Ok(n)
    }
}

type Input = Box<dyn Read + Send>;

/// A layer's decompressor, chosen by the stream's magic bytes (media types lie, or are absent
/// as in `docker save`).
enum Decoder {
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<Input>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<Input>>),
    Plain(BufReader<Input>),
}

impl Decoder {
    fn sniff(input: Input) -> io::Result<Self> {
        let mut reader = BufReader::with_capacity(INPUT_BUF, input);
        let head = reader.fill_buf()?;
        Ok(if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd(zstd::stream::read::Decoder::with_buffer(reader)?)
        } else {
            Self::Plain(reader)
        })
    }

    fn format(&self) -> &'static str {
        match self {
            Self::Gzip(_) => "gzip",
            Self::Zstd(_) => "zstd",
            Self::Plain(_) => "tar",
        }
    }

    fn into_input(self) -> BufReader<Input> {
        match self {
            Self::Gzip(d) => d.into_inner(),
            Self::Zstd(d) => d.finish(),
            Self::Plain(r) => r,
        }
    }
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(d) => d.read(buf),
            Self::Zstd(d) => d.read(buf),
            Self::Plain(r) => r.read(buf),
        }
    }
}

/// Errors of ours pass through the decoder unchanged; anything else it says is corruption.
fn decoder_error(format: &'static str, err: io::Error) -> io::Error {
    if err.get_ref().is_some_and(|e| e.is::<BlobError>()) || format == "tar" {
        return err;
    }
    BlobError::Decompress {
        format,
        detail: err.to_string(),
    }
    .into_io()
}

/// The extractor's side of the decompression thread.
pub struct PipeReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    finished: bool,
    /// Time the extractor spent waiting for the decompressor.
    waited: Duration,
    /// The DiffID to verify and the hash of what came so far. The hashing runs here, on the
    /// extractor's thread, which mostly waits for the decompressor: on the decompressor's thread
    /// it lengthened a cold pull by about a fifth (inflate is the pipeline's slow stage).
    diff_id: Option<(Digest, Hasher)>,
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        tracing::debug!(
            waited_secs = self.waited.as_secs_f64(),
            "layer read; time the extractor waited for the decompressor"
        );
    }
}

impl PipeReader {
    /// Read to the end, so the digest verdict (which comes at the end) is seen even when the
    /// tar ended before its padding did.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if self.finished {
                return Ok(0);
            }
            let asked = Instant::now();
            let next = self.rx.recv();
            self.waited += asked.elapsed();
            match next {
                Ok(Ok(chunk)) => {
                    if let Some((_, h)) = self.diff_id.as_mut() {
                        h.update(&chunk);
                    }
                    let old = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                Err(_) => {
                    // The decompressor ended without an error: the stream is whole.
                    self.finished = true;
                    if let Some((expected, h)) = self.diff_id.take() {
                        let actual = h.finish();
                        if actual != expected {
                            return Err(BlobError::DiffId { expected, actual }.into_io());
                        }
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Start decompressing `input` on its own thread; `diff_id` additionally verifies the
/// uncompressed stream (the reader ends in an error instead of its end of file on a mismatch, so
/// read it to the end: [`PipeReader::drain`]). Returns the tar stream and the thread.
pub fn decompress(input: Input, diff_id: Option<Digest>) -> (PipeReader, JoinHandle<()>) {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    let (recycle_tx, recycle_rx) = channel::<Vec<u8>>();
    let handle = std::thread::spawn(move || {
        if let Err(e) = pump(input, &tx, &recycle_rx) {
            let _ = tx.send(Err(e));
        }
    });
    let reader = PipeReader {
        rx,
        recycle: recycle_tx,
        current: Vec::new(),
        pos: 0,
        finished: false,
        waited: Duration::ZERO,
        diff_id: diff_id.map(|d| (d, Hasher::new())),
    };
    (reader, handle)
}

fn pump(
    input: Input,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    recycle: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let mut total = 0u64;
    let mut decoder = Decoder::sniff(input)?;
    let format = decoder.format();
    loop {
        let mut chunk = recycle.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(decoder_error(format, e)),
            }
        }
        chunk.truncate(filled);
        let end = filled < CHUNK;
        total += filled as u64;
        let sending = Instant::now();
        if filled > 0 && tx.send(Ok(chunk)).is_err() {
            return Ok(()); // the extractor stopped
        }
        blocked += sending.elapsed();
        if end {
            break;
        }
    }
    // Whatever follows the compressed stream still counts towards the digest.
    let mut rest = decoder.into_input();
    io::copy(&mut rest, &mut io::sink())?;
    tracing::debug!(
        format,
        bytes = total,
        secs = started.elapsed().as_secs_f64(),
        blocked_secs = blocked.as_secs_f64(),
        "layer decompressed; blocked: time waiting for the extractor to take a chunk"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Verified;
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn run(blob: Vec<u8>, expected: Digest) -> io::Result<Vec<u8>> {
        let counter = Arc::new(AtomicU64::new(0));
        let size = Some(blob.len() as u64);
        let input = Box::new(Verified::new(
            io::Cursor::new(blob),
            expected,
            size,
            counter,
        ));
        let (mut pipe, handle) = decompress(input, None);
        let mut out = Vec::new();
        let r = pipe.read_to_end(&mut out);
        handle.join().unwrap();
        r.map(|_| out)
    }

    #[test]
    fn gzip_zstd_and_plain_streams_are_recognised() {
        let data = vec![7u8; 3 * CHUNK + 5];
        let gz = gzip(&data);
        assert_eq!(run(gz.clone(), Digest::of(&gz)).unwrap(), data);
        let zs = zstd::encode_all(data.as_slice(), 1).unwrap();
        assert_eq!(run(zs.clone(), Digest::of(&zs)).unwrap(), data);
        assert_eq!(run(data.clone(), Digest::of(&data)).unwrap(), data);
    }

    #[test]
    fn a_digest_mismatch_is_reported_at_the_end() {
        let gz = gzip(b"hello");
        let err = run(gz, Digest::of(b"other")).unwrap_err();
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
    }

    #[test]
    fn the_diff_id_is_checked_on_the_readers_side_before_its_end() {
        let data = vec![3u8; 2 * CHUNK + 11];
        let gz = gzip(&data);
        let read = |diff_id| {
            let input = Box::new(io::Cursor::new(gz.clone()));
            let (mut pipe, handle) = decompress(input, Some(diff_id));
            let mut out = Vec::new();
            let r = pipe.read_to_end(&mut out);
            handle.join().unwrap();
            r.map(|_| out)
        };
        assert_eq!(read(Digest::of(&data)).unwrap(), data);
        let err = read(Digest::of(b"another layer")).unwrap_err();
        assert!(err.to_string().contains("DiffID"), "{err}");
    }

    #[test]
    fn truncated_gzip_is_reported_as_corrupt() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut gz = gzip(&data);
        gz.truncate(gz.len() / 2);
        let err = run(gz.clone(), Digest::of(&gz)).unwrap_err();
        assert!(
            err.to_string()
                .contains("gzip data is corrupt or truncated"),
            "{err}"
        );
    }
}

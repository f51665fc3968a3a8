//! Reads the central directory of a zip: names, unix modes and sizes, as Lambda's unpacker sees
//! them. Written here (a few dozen lines) so the check does not trust the tool that made the zip.

use std::path::Path;

/// One entry of a zip's central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The path inside the zip, `/`-separated.
    pub name: String,
    /// The unix mode (type and permission bits) when the entry was made on unix.
    pub unix_mode: Option<u32>,
    /// Size once extracted.
    pub size: u64,
}

const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const CENTRAL_DIRECTORY_ENTRY: u32 = 0x0201_4b50;
/// "Version made by" host 3 means the external attributes hold a unix mode in their high half.
const HOST_UNIX: u8 = 3;

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// The entries of the zip at `path`; panics with the path if it is not a well-formed zip.
pub fn list(path: &Path) -> Vec<ZipEntry> {
    let data =
        std::fs::read(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    parse(&data).unwrap_or_else(|| panic!("{} is not a well-formed zip", path.display()))
}

/// The entries of the zip in `data`, or `None` if its central directory is malformed.
pub fn parse(data: &[u8]) -> Option<Vec<ZipEntry>> {
    // The end record is 22 bytes plus a comment of at most 64 KiB; search backwards for it.
    let lowest = data.len().saturating_sub(22 + 65_535);
    let end = (lowest..=data.len().checked_sub(22)?)
        .rev()
        .find(|&at| u32_at(data, at) == Some(END_OF_CENTRAL_DIRECTORY))?;
    let count = usize::from(u16_at(data, end + 10)?);
    let mut at = usize::try_from(u32_at(data, end + 16)?).ok()?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(data, at)? != CENTRAL_DIRECTORY_ENTRY {
            return None;
        }
        let made_by_host = *data.get(at + 5)?;
        let size = u64::from(u32_at(data, at + 24)?);
        let name_len = usize::from(u16_at(data, at + 28)?);
        let extra_len = usize::from(u16_at(data, at + 30)?);
        let comment_len = usize::from(u16_at(data, at + 32)?);
        let external = u32_at(data, at + 38)?;
        let name = String::from_utf8(data.get(at + 46..at + 46 + name_len)?.to_vec()).ok()?;
        entries.push(ZipEntry {
            name,
            unix_mode: (made_by_host == HOST_UNIX).then_some(external >> 16),
            size,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Some(entries)
}

//! File names for inputs: what a filesystem accepts, from keys and paths that may be longer.

/// Longest file name Linux filesystems accept (`NAME_MAX`), in bytes; S3 keys go to 1,024.
const NAME_MAX: usize = 255;

/// Longest extension an over-long name keeps (the dot included).
const MAX_KEPT_EXTENSION: usize = 16;

/// Hex digits of the key's sha256 that make a shortened name unique.
const NAME_HASH_HEX: usize = 16;

/// `name` when it fits in [`NAME_MAX`] bytes (which `File::create` would refuse past it); else
/// `<stem>~<hash><.ext>`: the stem cut at a character boundary, 16 hex digits of the sha256 of
/// `whole` (the S3 key, the request path: two long names differing only past the cut get two
/// names), and the extension when it has at most 16 bytes, so that tools going by the
/// extension still do.
pub fn fit_file_name(name: &str, whole: &[u8]) -> String {
    if name.len() <= NAME_MAX {
        return name.to_owned();
    }
    let extension = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION => &name[dot..],
        _ => "",
    };
    let stem = &name[..name.len() - extension.len()];
    let budget = NAME_MAX - 1 - NAME_HASH_HEX - extension.len();
    let cut = (0..=budget)
        .rev()
        .find(|&at| stem.is_char_boundary(at))
        .unwrap_or(0);
    let hash = scar_rootfs::digest::Digest::of(whole).hex();
    format!("{}~{}{extension}", &stem[..cut], &hash[..NAME_HASH_HEX])
}

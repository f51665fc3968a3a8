//! What the cache writes down about a reference and about a root filesystem.

use crate::digest::Digest;

/// What `refs/<ref>` records.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RefRecord {
    /// The normalised reference.
    pub reference: String,
    /// Digest of the manifest it resolved to, when the source has one.
    pub manifest: Option<Digest>,
    /// ChainID of the image's layers: the `rootfs/` key.
    pub chain_id: Digest,
    /// Digest of the image's config blob: the `configs/` key. `None` in records of older
    /// versions, which are then resolved again.
    #[serde(default)]
    pub config: Option<Digest>,
}

/// What `rootfs/<hex>/image.json` records.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The reference it was first pulled as.
    pub reference: String,
    /// ChainID.
    pub chain_id: Digest,
    /// The DiffIDs that the uncompressed layers were hashed to while they were extracted,
    /// bottom first: the proof that the root holds what its key says. `None` in records of
    /// older versions, which did not verify them; such a root is never served.
    #[serde(default)]
    pub verified_diff_ids: Option<Vec<Digest>>,
    /// Bytes it occupies (content plus per-entry overhead, as charged during extraction).
    pub size: u64,
    /// Number of layers.
    pub layers: usize,
}

impl ImageRecord {
    /// Whether this record proves that the root it describes is the one `key` names: the
    /// DiffIDs its extraction verified chain to `key` (an image without layers has the ChainID
    /// of nothing at all, as `source::finish` gives it).
    pub fn proves(&self, key: &Digest) -> bool {
        let Some(verified) = &self.verified_diff_ids else {
            return false;
        };
        let chain = crate::digest::chain_id(verified).unwrap_or_else(|| Digest::of(b""));
        self.chain_id == *key && chain == *key && verified.len() == self.layers
    }
}

//! How blobs are cut into range requests: the parts, how many are in flight, and the byte
//! spans requests ask for. Plain data, read by the client, the settings and [`super::ranged`].

/// Blobs at least this large (from the manifest's descriptor) are fetched in parts.
pub const THRESHOLD: u64 = 32 * 1024 * 1024;
/// Bytes per range request.
pub const PART: u64 = 8 * 1024 * 1024;
/// Bytes of a blob's first range request. The decompressor can start only once a part is
/// whole, so a short first part starts it sooner: at 40 MB/s a connection brings 1 MiB in
/// 26 ms and 8 MiB in 210 ms, while the parts after it download side by side.
pub const FIRST_PART: u64 = 1024 * 1024;
/// Parts in flight off Lambda, and on Lambda between 512 MB and 2 GB of memory.
pub const DEFAULT_IN_FLIGHT: usize = 4;
/// Most parts in flight `SCAR_PULL_RANGES` may ask for (memory: this many parts).
pub const MAX_IN_FLIGHT: usize = 32;

/// Bytes `start..=end` of a blob (`end` `None`: to its end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u64,
    /// Last byte, included.
    pub end: Option<u64>,
}

impl Span {
    /// The whole blob: no `Range` header.
    pub const WHOLE: Span = Span {
        start: 0,
        end: None,
    };

    /// The value of the `Range` header, if one is needed.
    pub fn header(&self) -> Option<String> {
        match self.end {
            Some(end) => Some(format!("bytes={}-{end}", self.start)),
            None if self.start > 0 => Some(format!("bytes={}-", self.start)),
            None => None,
        }
    }
}

impl From<u64> for Span {
    /// From `offset` to the end.
    fn from(offset: u64) -> Self {
        Span {
            start: offset,
            end: None,
        }
    }
}

/// How blobs are cut into range requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Parts fetched at once; 1 means one stream per blob.
    pub in_flight: usize,
    /// Bytes per part.
    pub part: u64,
    /// Bytes of the first part (at most [`Plan::part`] counts).
    pub first: u64,
    /// Smallest blob fetched in parts.
    pub threshold: u64,
}

impl Plan {
    /// `in_flight` parts at once (capped at [`MAX_IN_FLIGHT`]; `None`: [`DEFAULT_IN_FLIGHT`]).
    pub fn new(in_flight: Option<usize>) -> Self {
        Plan {
            in_flight: in_flight
                .unwrap_or(DEFAULT_IN_FLIGHT)
                .clamp(1, MAX_IN_FLIGHT),
            part: PART,
            first: FIRST_PART,
            threshold: THRESHOLD,
        }
    }

    /// Whether a blob of `size` bytes is fetched in parts.
    pub fn applies(&self, size: u64) -> bool {
        self.in_flight > 1 && self.part > 0 && size >= self.threshold
    }

    /// The first part's length: [`Plan::first`], never more than a part, never 0.
    fn first_len(&self) -> u64 {
        self.first.clamp(1, self.part.max(1))
    }

    /// How many parts a blob of `size` bytes makes: the first, then whole parts.
    pub fn parts(&self, size: u64) -> u64 {
        let first = self.first_len();
        if size <= first {
            return 1;
        }
        1 + (size - first).div_ceil(self.part.max(1))
    }

    /// Part `index` of a blob of `size` bytes (the last one ends with the blob).
    pub fn span(&self, size: u64, index: u64) -> Span {
        let first = self.first_len();
        let (start, len) = match index {
            0 => (0, first),
            _ => (
                first.saturating_add((index - 1).saturating_mul(self.part.max(1))),
                self.part.max(1),
            ),
        };
        let end = start.saturating_add(len).min(size).saturating_sub(1);
        Span {
            start,
            end: Some(end),
        }
    }
}

/// Parts in flight for a Lambda function of `memory_mb` (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`):
/// small functions have little memory to buffer parts in and a slow network share anyway.
pub fn in_flight_for_memory(memory_mb: Option<u64>) -> usize {
    match memory_mb {
        None => DEFAULT_IN_FLIGHT,
        Some(mb) if mb < 512 => 2,
        Some(mb) if mb <= 2048 => 4,
        Some(_) => 8,
    }
}

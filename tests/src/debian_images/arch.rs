//! The Debian architectures the images are built for.

/// A Debian architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebArch {
    /// x86_64.
    Amd64,
    /// aarch64, run here through `qemu-user-static`.
    Arm64,
}

impl DebArch {
    /// Debian's (and OCI's) name: `amd64`, `arm64`.
    pub fn name(self) -> &'static str {
        match self {
            DebArch::Amd64 => "amd64",
            DebArch::Arm64 => "arm64",
        }
    }

    /// The multiarch triplet of library directories: `x86_64-linux-gnu`, `aarch64-linux-gnu`.
    pub fn triplet(self) -> &'static str {
        match self {
            DebArch::Amd64 => "x86_64-linux-gnu",
            DebArch::Arm64 => "aarch64-linux-gnu",
        }
    }
}

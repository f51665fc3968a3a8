//! What a program file is: a `#!` script, a dynamic ELF with its loader (`PT_INTERP`), or a
//! static ELF.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes of a `#!` line the kernel reads (`BINPRM_BUF_SIZE`).
const SHEBANG_MAX: usize = 256;
const PT_INTERP: u32 = 3;

/// The kind of an executable file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// `#!interpreter [argument]`.
    Script {
        /// Interpreter path as written (a container path).
        interpreter: String,
        /// The single optional argument.
        argument: Option<String>,
    },
    /// A dynamically linked ELF of this machine; its loader's container path.
    Dynamic {
        /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`.
        interpreter: String,
    },
    /// A statically linked ELF of this machine: it runs without a loader, so without the
    /// preload library.
    Static,
    /// An ELF for another machine or word size.
    Foreign {
        /// `e_machine`.
        machine: u16,
        /// 32 or 64.
        bits: u8,
    },
}

#[cfg(target_arch = "x86_64")]
const EM_NATIVE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const EM_NATIVE: u16 = 183;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const EM_NATIVE: u16 = 0;

/// Why a file cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The host file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Neither ELF nor `#!`.
    #[error("{path} is neither an ELF executable nor a #! script")]
    NotExecutable {
        /// The host file.
        path: String,
    },
    /// A truncated or inconsistent ELF.
    #[error("{path} is a damaged ELF file: {what}")]
    Damaged {
        /// The host file.
        path: String,
        /// What is wrong.
        what: &'static str,
    },
}

/// Inspect the file at `path` (a host path).
pub fn inspect(path: &Path) -> Result<Program, ElfError> {
    let shown = || path.display().to_string();
    let read_err = |source| ElfError::Read {
        path: shown(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut head = Vec::with_capacity(SHEBANG_MAX);
    (&mut file)
        .take(SHEBANG_MAX as u64)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let line = line.trim_matches([' ', '\t', '\r']);
        let (interp, arg) = match line.find([' ', '\t']) {
            Some(i) => (
                &line[..i],
                Some(line[i..].trim_matches([' ', '\t']).to_string()),
            ),
            None => (line, None),
        };
        if interp.is_empty() {
            return Err(ElfError::NotExecutable { path: shown() });
        }
        let argument = arg.filter(|a| !a.is_empty());
        return Ok(Program::Script {
            interpreter: interp.to_string(),
            argument,
        });
    }
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err(ElfError::NotExecutable { path: shown() });
    }
    let le16 = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let bits = if head[4] == 2 { 64 } else { 32 };
    let machine = le16(18);
    if bits != 64 || head[5] != 1 || machine != EM_NATIVE {
        return Ok(Program::Foreign { machine, bits });
    }
    let damaged = |what| ElfError::Damaged {
        path: shown(),
        what,
    };
    let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let phoff = le64(&head, 32);
    let (phentsize, phnum) = (le16(54) as u64, le16(56) as u64);
    if phentsize < 56 {
        return Err(damaged("program header entries are too small"));
    }
    let mut ph = [0u8; 56];
    for i in 0..phnum {
        file.read_exact_at(&mut ph, phoff + i * phentsize)
            .map_err(|_| damaged("program headers are truncated"))?;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != PT_INTERP {
            continue;
        }
        let (off, size) = (le64(&ph, 8), le64(&ph, 32));
        if size == 0 || size > 4096 {
            return Err(damaged("PT_INTERP has an impossible size"));
        }
        let mut buf = vec![0u8; size as usize];
        file.read_exact_at(&mut buf, off)
            .map_err(|_| damaged("PT_INTERP is truncated"))?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let interpreter = String::from_utf8_lossy(&buf[..end]).into_owned();
        return Ok(Program::Dynamic { interpreter });
    }
    Ok(Program::Static)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_shell_is_dynamic_with_a_loader() {
        let got = inspect(Path::new("/bin/sh")).unwrap();
        assert!(
            matches!(&got, Program::Dynamic { interpreter } if interpreter.contains("ld-")),
            "{got:?}"
        );
    }

    #[test]
    fn a_static_busybox_has_no_loader() {
        let busybox = Path::new("/bin/busybox");
        if busybox.exists() {
            assert_eq!(inspect(busybox).unwrap(), Program::Static);
        }
    }

    #[test]
    fn a_shebang_line_gives_interpreter_and_one_argument() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#! /usr/bin/env  python3 -u \necho\n").unwrap();
        assert_eq!(
            inspect(&script).unwrap(),
            Program::Script {
                interpreter: "/usr/bin/env".into(),
                argument: Some("python3 -u".into())
            }
        );
    }

    #[test]
    fn text_without_shebang_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("notes.txt");
        std::fs::write(&f, "hello").unwrap();
        let err = inspect(&f).unwrap_err().to_string();
        assert!(
            err.contains("notes.txt") && err.contains("neither"),
            "{err}"
        );
    }
}

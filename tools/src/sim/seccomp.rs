//! The seccomp filter of the simulated Lambda: `prctl`, `ptrace`, `seccomp` and `chroot` fail
//! with EPERM and `openat2` with ENOSYS, as Lambda's own filter answers them; everything else is
//! allowed.
//!
//! A classic BPF program, written by hand: for each ABI this host runs (x86_64 and its i386
//! compat ABI; aarch64 and its arm compat ABI), a block that checks the audit architecture,
//! then the five system call numbers of that ABI. x32 calls (x86_64's architecture with bit 30
//! set in the number) fail with ENOSYS; any other architecture kills the process.
//!
//! arm64 programs run here through `qemu-aarch64-static` (binfmt_misc): qemu makes x86_64
//! system calls on their behalf, so the x86_64 block is the one that judges them.

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// `SECCOMP_RET_*` actions.
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// Classic BPF opcodes used (`BPF_LD|BPF_W|BPF_ABS`, `BPF_JMP|BPF_JEQ|BPF_K`,
/// `BPF_JMP|BPF_JGE|BPF_K`, `BPF_RET|BPF_K`).
const LD_ABS: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGE: u16 = 0x35;
const RET: u16 = 0x06;

/// x32 system calls carry this bit in their number under `AUDIT_ARCH_X86_64`.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// One ABI's audit architecture and the numbers of the five system calls Lambda refuses.
#[derive(Clone, Copy, Debug)]
pub struct Abi {
    /// `AUDIT_ARCH_*`.
    pub arch: u32,
    /// `prctl`, `ptrace`, `seccomp`, `chroot` (EPERM).
    pub refused: [u32; 4],
    /// `openat2` (ENOSYS).
    pub openat2: u32,
    /// Whether x32 numbers (bit 30) must be refused under this architecture.
    pub has_x32: bool,
}

/// x86_64: `AUDIT_ARCH_X86_64`.
pub const X86_64: Abi = Abi {
    arch: 0xc000_003e,
    refused: [157, 101, 317, 161],
    openat2: 437,
    has_x32: true,
};
/// i386 programs on an x86_64 kernel: `AUDIT_ARCH_I386`.
pub const I386: Abi = Abi {
    arch: 0x4000_0003,
    refused: [172, 26, 354, 61],
    openat2: 437,
    has_x32: false,
};
/// aarch64: `AUDIT_ARCH_AARCH64`.
pub const AARCH64: Abi = Abi {
    arch: 0xc000_00b7,
    refused: [167, 117, 277, 51],
    openat2: 437,
    has_x32: false,
};
/// 32-bit arm programs on an aarch64 kernel: `AUDIT_ARCH_ARM`.
pub const ARM: Abi = Abi {
    arch: 0x4000_0028,
    refused: [172, 26, 383, 61],
    openat2: 437,
    has_x32: false,
};

/// The ABIs of this host: native first.
pub fn host_abis() -> &'static [Abi] {
    if cfg!(target_arch = "aarch64") {
        &[AARCH64, ARM]
    } else {
        &[X86_64, I386]
    }
}

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when true.
    pub jt: u8,
    /// Jump offset when false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// The filter for `abis` (see the module docs).
pub fn program(abis: &[Abi]) -> Vec<Insn> {
    let mut program = vec![insn(LD_ABS, 0, 0, DATA_ARCH)];
    for abi in abis {
        let mut block = vec![insn(LD_ABS, 0, 0, DATA_NR)];
        if abi.has_x32 {
            block.push(insn(JGE, 0, 1, X32_SYSCALL_BIT));
            block.push(insn(RET, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
        }
        for nr in abi.refused {
            block.push(insn(JEQ, 0, 1, nr));
            block.push(insn(RET, 0, 0, RET_ERRNO | libc::EPERM as u32));
        }
        block.push(insn(JEQ, 0, 1, abi.openat2));
        block.push(insn(RET, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
        block.push(insn(RET, 0, 0, RET_ALLOW));
        // A block loads the number and always returns: an architecture that does not match
        // skips it whole, to the reload of the architecture for the next block.
        let skip = u8::try_from(block.len()).unwrap_or(u8::MAX);
        program.push(insn(JEQ, 0, skip, abi.arch));
        program.extend(block);
        program.push(insn(LD_ABS, 0, 0, DATA_ARCH));
    }
    program.pop();
    program.push(insn(RET, 0, 0, RET_KILL_PROCESS));
    program
}

/// Install the filter for this host's ABIs on the calling thread (no_new_privs must be set).
pub fn install() -> std::io::Result<()> {
    let filter = program(host_abis());
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const Insn,
    }
    let fprog = Fprog {
        len: u16::try_from(filter.len()).map_err(std::io::Error::other)?,
        filter: filter.as_ptr(),
    };
    // SAFETY: PR_SET_SECCOMP reads a sock_fprog pointing at `len` instructions, all valid for
    // the call (the kernel copies them).
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const Fprog,
            0,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The few classic BPF instructions [`program`] uses, run over one system call.
    fn evaluate(program: &[Insn], arch: u32, nr: u32) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                LD_ABS => acc = if i.k == DATA_ARCH { arch } else { nr },
                JEQ => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RET => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn the_native_numbers_are_the_c_librarys() {
        let native = host_abis()[0];
        let libc_numbers = [
            libc::SYS_prctl,
            libc::SYS_ptrace,
            libc::SYS_seccomp,
            libc::SYS_chroot,
        ]
        .map(|n| n as u32);
        assert_eq!(native.refused, libc_numbers);
        assert_eq!(native.openat2, libc::SYS_openat2 as u32);
    }

    #[test]
    fn each_abi_refuses_its_own_numbers_and_allows_the_rest() {
        for abis in [[X86_64, I386], [AARCH64, ARM]] {
            let program = program(&abis);
            assert!(program.len() < 64, "{}", program.len());
            for abi in abis {
                for nr in abi.refused {
                    assert_eq!(evaluate(&program, abi.arch, nr), EPERM, "{abi:?} {nr}");
                }
                assert_eq!(evaluate(&program, abi.arch, abi.openat2), ENOSYS);
                // read, write, openat, execve of either ABI: allowed.
                for nr in [0, 1, 3, 11, 56, 59, 221, 257, 322] {
                    if !abi.refused.contains(&nr) && nr != abi.openat2 {
                        assert_eq!(evaluate(&program, abi.arch, nr), RET_ALLOW, "{abi:?} {nr}");
                    }
                }
            }
        }
    }

    #[test]
    fn x32_calls_and_unknown_architectures_are_refused() {
        let program = program(&[X86_64, I386]);
        assert_eq!(evaluate(&program, X86_64.arch, X32_SYSCALL_BIT | 1), ENOSYS);
        assert_eq!(evaluate(&program, AARCH64.arch, 1), RET_KILL_PROCESS);
        // i386's prctl (172) is x86_64's iopl: allowed there.
        assert_eq!(evaluate(&program, X86_64.arch, 172), RET_ALLOW);
    }
}

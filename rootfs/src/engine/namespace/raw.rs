//! The few system calls made while the caller and the container's init run side by side in
//! one address space, without the C library.
//!
//! The direct start clones the init with `CLONE_VM` (see [`super::direct`]): no page tables
//! are copied and neither side takes copy-on-write faults afterwards. The two then share all
//! memory, the C library's thread-local `errno` and allocator included. Until the init hands
//! over (closes its report pipe, the command running) the caller waits in [`read`]; after it,
//! the init waits for signals and children with these calls only, never allocating. Each
//! returns the kernel's result as is: a negative value is `-errno`, and nothing else is
//! written anywhere.

use std::os::fd::RawFd;

#[cfg(target_arch = "x86_64")]
unsafe fn syscall4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid system call number and arguments for it; the kernel
    // clobbers only rcx and r11 (declared) and returns in rax.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid system call number and arguments for it; the kernel
    // returns in x0 and preserves every other register.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            options(nostack),
        );
    }
    ret
}

/// read(2) into `buf`.
pub fn read(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> isize {
    // SAFETY: `buf` is writable for its whole length.
    unsafe {
        syscall4(
            libc::SYS_read,
            fd as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
        )
    }
}

/// write(2) of `buf`.
pub fn write(fd: RawFd, buf: &[u8]) -> isize {
    // SAFETY: `buf` is readable for its whole length.
    unsafe {
        syscall4(
            libc::SYS_write,
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
            0,
        )
    }
}

/// close(2); the caller must own `fd` and not use it again.
pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor touches no memory.
    unsafe { syscall4(libc::SYS_close, fd as usize, 0, 0, 0) };
}

/// kill(2).
pub fn kill(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: sending a signal touches no memory.
    unsafe { syscall4(libc::SYS_kill, pid as usize, signal as usize, 0, 0) };
}

/// `wait4(-1, &status, WNOHANG, NULL)`: a child's PID and wait status, 0 when none has
/// ended, `-errno` (`-ECHILD`: no child left).
pub fn wait_any_nohang() -> (isize, libc::c_int) {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a writable int; no rusage is asked for.
    let pid = unsafe {
        syscall4(
            libc::SYS_wait4,
            -1isize as usize,
            &raw mut status as usize,
            libc::WNOHANG as usize,
            0,
        )
    };
    (pid, status)
}

/// `rt_sigtimedwait(set, NULL, NULL)`: the next pending signal of `set` (which must be
/// blocked), or `-errno`.
pub fn wait_signal(set: &libc::sigset_t) -> isize {
    sigtimedwait(set, None)
}

/// `rt_sigtimedwait(set, NULL, timeout)`: as [`wait_signal`], or `-EAGAIN` once `millis`
/// milliseconds have passed.
pub fn wait_signal_for(set: &libc::sigset_t, millis: u32) -> isize {
    // SAFETY: an all-zero timespec is a valid value; its fields are set below (`as _`: the
    // seconds' type differs between the C libraries).
    let mut timeout: libc::timespec = unsafe { std::mem::zeroed() };
    timeout.tv_sec = (millis / 1000) as _;
    timeout.tv_nsec = ((millis % 1000) * 1_000_000) as _;
    sigtimedwait(set, Some(&timeout))
}

/// rt_sigtimedwait(2) without a siginfo; no timeout is no limit.
fn sigtimedwait(set: &libc::sigset_t, timeout: Option<&libc::timespec>) -> isize {
    // The kernel's signal set is 64 bits, the first bytes of the C library's larger one.
    const KERNEL_SIGSET: usize = 8;
    let timeout = timeout.map_or(0, |t| std::ptr::from_ref(t) as usize);
    // SAFETY: `set` is readable for at least KERNEL_SIGSET bytes and `timeout` is null or a
    // valid timespec borrowed for the call; no siginfo is asked for.
    unsafe {
        syscall4(
            libc::SYS_rt_sigtimedwait,
            std::ptr::from_ref(set) as usize,
            0,
            timeout,
            KERNEL_SIGSET,
        )
    }
}

/// `sched_setaffinity(0, mask)` for the calling thread: 0, or `-errno`.
pub fn set_affinity(mask: &[u64; 16]) -> isize {
    // SAFETY: the kernel reads `size_of_val(mask)` bytes from `mask`, which is that long.
    unsafe {
        syscall4(
            libc::SYS_sched_setaffinity,
            0,
            std::mem::size_of_val(mask),
            mask.as_ptr() as usize,
            0,
        )
    }
}

/// exit_group(2): end this process now, running nothing of the C library's exit.
pub fn exit(code: libc::c_int) -> ! {
    loop {
        // SAFETY: exit_group touches no memory and does not return.
        unsafe { syscall4(libc::SYS_exit_group, code as usize, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_io_and_errors_come_back_from_the_kernel_as_is() {
        let (r, w) = nix::unistd::pipe().unwrap();
        use std::os::fd::IntoRawFd;
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        assert_eq!(write(w, b"abc"), 3);
        close(w);
        let mut buf = [std::mem::MaybeUninit::new(0u8); 8];
        assert_eq!(read(r, &mut buf), 3);
        assert_eq!(
            read(r, &mut buf),
            0,
            "end of file once the write end is closed"
        );
        close(r);
        assert_eq!(read(r, &mut buf), -(libc::EBADF as isize));
    }

    #[test]
    fn a_wait_for_a_signal_that_does_not_come_ends_after_its_timeout() {
        // In a thread of its own, with the signal blocked there only.
        std::thread::spawn(|| {
            let mut set = nix::sys::signal::SigSet::empty();
            set.add(nix::sys::signal::Signal::SIGUSR2);
            set.thread_block().unwrap();
            let started = std::time::Instant::now();
            assert_eq!(wait_signal_for(set.as_ref(), 30), -(libc::EAGAIN as isize));
            assert!(started.elapsed() >= std::time::Duration::from_millis(30));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_process_without_children_is_told_so() {
        // The test harness may have children of its own; only the error's shape matters
        // when it has none, so ask in a child that has none.
        // SAFETY: the child makes raw system calls only and ends with exit_group.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let (pid, _) = wait_any_nohang();
                exit(if pid == -(libc::ECHILD as isize) {
                    0
                } else {
                    1
                });
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}

//! Creating the engines' processes: the one module that calls fork(2) or clone(2). (A process
//! that only executes a binary, the namespace engine's helper or the preload engine's loader,
//! is started with `std::process::Command`.)
//!
//! The kernel imposes two ways, and which one a start path takes depends on what the parent
//! does while the child runs:
//!
//! - [`fork_private`]: the child gets a copy of the parent's memory. The only way when both go
//!   on running ordinary code side by side (the helper forks the init, then stays as its
//!   monitor while the init builds the container). Its price is the page tables copied and the
//!   copy-on-write faults taken afterwards by both sides.
//! - [`clone_shared`]: `CLONE_VM`, the child runs on a stack of its own in the parent's memory.
//!   Nothing is copied, so the start costs the same whatever the size of the process; in
//!   return, the parent must leave the memory alone while the child uses it. It either sleeps
//!   (`CLONE_VFORK`, [`vfork_run`]: the probe, the command's exec) or waits in a raw read(2)
//!   until the child hands over (the direct start, see `namespace::direct`). The child of a
//!   multithreaded parent may make async-signal-safe calls only; the child of a
//!   single-threaded one may run any code until the hand-over.

use std::mem::MaybeUninit;

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

/// fork(2): a child with a private copy of this process's memory.
///
/// # Safety
/// This process must be single-threaded (the child may then run any code), or the child must
/// make async-signal-safe calls only.
pub unsafe fn fork_private() -> Result<ForkResult, Errno> {
    // SAFETY: the caller upholds fork's contract, stated above.
    unsafe { nix::unistd::fork() }
}

/// clone(2) with `CLONE_VM | flags`: `entry(arg)` runs in a child that shares this address
/// space, on the stack whose top (highest address, 16-byte aligned) is `top`. The single
/// clone(2) of the engines. Returns the child's PID.
///
/// # Safety
/// `top` must be the end of writable memory that outlives the child's use of it, `arg` must
/// stay valid for as long as the child reads it, and while the child runs this process must
/// not touch what the child uses (see the module's doc); `entry` ends by returning, exiting or
/// executing a program.
pub unsafe fn clone_shared<T>(
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: &T,
    top: *mut libc::c_void,
    flags: libc::c_int,
) -> Result<Pid, Errno> {
    // SAFETY: the caller upholds the contract above; SIGCHLD makes the child reapable with
    // waitpid as any other.
    let pid = unsafe {
        libc::clone(
            entry,
            top,
            libc::CLONE_VM | libc::SIGCHLD | flags,
            std::ptr::from_ref(arg).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(Errno::last());
    }
    Ok(Pid::from_raw(pid))
}

/// Stack of a [`vfork_run`] child: a few syscall frames.
const VFORK_STACK: usize = 32 * 1024;

/// Run `entry(arg)` in a child that shares this address space while this thread sleeps until
/// the child has executed a program or exited (`CLONE_VFORK`). Returns the child's PID.
///
/// # Safety
/// `entry` may only make async-signal-safe raw syscalls and store into memory reachable from
/// `arg` (which must stay valid until this returns); it runs on a private stack of
/// `VFORK_STACK` bytes and must end by returning, `_exit(2)` or a successful `execve(2)`.
pub unsafe fn vfork_run<T>(
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: &T,
) -> Result<Pid, Errno> {
    // Uninitialised: zeroing it would fault in every page, where the child touches two or three.
    let mut stack = Box::<[MaybeUninit<u8>]>::new_uninit_slice(VFORK_STACK);
    // The stack grows down on every architecture we build for; keep it 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: `top` is the aligned end of a live buffer of VFORK_STACK bytes that outlives the
    // child's use of it (CLONE_VFORK suspends this thread until the child has executed or
    // exited); `entry` and `arg` meet the contract the caller accepted.
    let pid = unsafe { clone_shared(entry, arg, top as *mut libc::c_void, libc::CLONE_VFORK) };
    drop(stack);
    pid
}

/// A stack for a [`clone_shared`] child that runs on after the call returns (the direct
/// start's init): mapped without backing (pages are backed where touched), with a guard page
/// at its low end.
pub struct SharedStack {
    /// The mapping's address (a number, so that the handle may move between threads).
    base: usize,
    len: usize,
}

impl SharedStack {
    /// Map `len` bytes (a multiple of the page size).
    pub fn map(len: usize) -> Result<Self, (&'static str, Errno)> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // affects no existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(("mapping the init's stack", Errno::last()));
        }
        let stack = Self {
            base: base as usize,
            len,
        };
        // SAFETY: the first page of the mapping made above; an overflow then faults.
        if unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) } != 0 {
            return Err(("guarding the init's stack", Errno::last()));
        }
        Ok(stack)
    }

    /// The initial stack pointer: the mapping's end (16-byte aligned, as mmap's pages are).
    pub fn top(&self) -> *mut libc::c_void {
        (self.base + self.len) as *mut libc::c_void
    }
}

impl Drop for SharedStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, dropped only once no process runs on it (the
        // child was reaped, or never started).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};

    extern "C" fn store_pid(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the AtomicI32 on the suspended parent's stack.
        let seen = unsafe { &*arg.cast::<AtomicI32>() };
        // SAFETY: getpid(2) touches no memory.
        seen.store(unsafe { libc::getpid() }, Ordering::SeqCst);
        7
    }

    #[test]
    fn a_vfork_child_writes_into_the_parents_memory_before_the_parent_goes_on() {
        let seen = AtomicI32::new(0);
        // SAFETY: `store_pid` makes one raw syscall and one store into `seen`.
        let pid = unsafe { vfork_run(store_pid, &seen) }.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), pid.as_raw());
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 7));
    }

    #[test]
    fn a_child_on_a_mapped_stack_shares_the_parents_memory() {
        let stack = SharedStack::map(64 * 1024).unwrap();
        let seen = AtomicI32::new(0);
        // SAFETY: the stack outlives the child (reaped below), `seen` too; the child makes
        // one raw syscall and one store; this thread only waits for it.
        let pid = unsafe { clone_shared(store_pid, &seen, stack.top(), 0) }.unwrap();
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 7));
        assert_eq!(seen.load(Ordering::SeqCst), pid.as_raw());
        drop(stack);
    }
}

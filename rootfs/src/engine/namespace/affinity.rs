//! Keeping the container's init on the caller's CPU.
//!
//! The start is a chain of hand-offs, each party waiting for the one before: the caller
//! clones the init and waits, the init builds the root, forks the command and waits; the
//! command's end wakes the init. Left to the scheduler, the new init is placed on the idlest
//! CPU, whose wake-up (an inter-processor interrupt; on a virtual machine, a halted vCPU the
//! host must bring back) costs tens of microseconds, while the CPU the caller was on goes
//! idle as the caller starts waiting. So the caller pins itself to its CPU for the clone (the
//! init inherits the mask) and takes its own mask back at once; the init stays there, where
//! it mostly sleeps. The command gets the caller's mask back before it executes: it, and
//! whatever it starts, may use every CPU the caller could.

/// A CPU mask as sched_getaffinity(2) and sched_setaffinity(2) take it: room for 1024 CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuMask([u64; 16]);

impl CpuMask {
    const BYTES: usize = std::mem::size_of::<[u64; 16]>();

    /// The calling thread's mask; `None` on a host with more CPUs than the mask holds (the
    /// kernel then refuses with EINVAL) or when the call fails otherwise.
    pub fn current() -> Option<Self> {
        let mut mask = CpuMask([0; 16]);
        // SAFETY: the kernel writes at most BYTES bytes into the array it is given.
        let got = unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0,
                Self::BYTES,
                mask.0.as_mut_ptr(),
            )
        };
        (got > 0).then_some(mask)
    }

    /// A mask holding only `cpu`, if it fits.
    fn only(cpu: usize) -> Option<Self> {
        let mut mask = CpuMask([0; 16]);
        *mask.0.get_mut(cpu / 64)? = 1 << (cpu % 64);
        Some(mask)
    }

    /// Whether `cpu` is in the mask.
    fn holds(&self, cpu: usize) -> bool {
        self.0
            .get(cpu / 64)
            .is_some_and(|word| word & (1 << (cpu % 64)) != 0)
    }

    /// Make this the calling thread's mask. The one system call, with no allocation and no
    /// `errno` written: safe in a `CLONE_VM | CLONE_VFORK` child. True when the kernel
    /// accepted it.
    pub fn apply(&self) -> bool {
        super::raw::set_affinity(&self.0) == 0
    }
}

/// The calling thread pinned to its CPU; its mask is applied again when this is dropped.
#[derive(Debug)]
pub struct Pinned(Option<CpuMask>);

impl Pinned {
    /// Pin the calling thread to the CPU it is running on (or leave it, see
    /// [`pin_to_this_cpu`]).
    pub fn here() -> Self {
        Self(pin_to_this_cpu())
    }

    /// The mask the thread had, if it was changed.
    pub fn saved(&self) -> Option<CpuMask> {
        self.0
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(mask) = self.0.take() {
            mask.apply();
        }
    }
}

/// Pin the calling thread to the CPU it is running on; returns the mask it had, to be
/// applied again later. `None` when nothing was changed: the CPU or the mask cannot be
/// read, or the mask already holds that CPU alone.
pub fn pin_to_this_cpu() -> Option<CpuMask> {
    let saved = CpuMask::current()?;
    // SAFETY: sched_getcpu(3) only reads the CPU number (vDSO or getcpu(2)).
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    let here = CpuMask::only(cpu)?;
    if here == saved || !saved.holds(cpu) {
        return None;
    }
    here.apply().then_some(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_its_cpu_stays_there_and_gets_its_mask_back() {
        // In a thread of its own, so the test harness's other threads are not affected.
        std::thread::spawn(|| {
            let before = CpuMask::current().expect("the affinity mask can be read");
            let Some(saved) = pin_to_this_cpu() else {
                // A single-CPU mask (e.g. `taskset -c 0 cargo test`) is left alone.
                assert_eq!(before.0.iter().map(|w| w.count_ones()).sum::<u32>(), 1);
                return;
            };
            assert_eq!(saved, before);
            let pinned = CpuMask::current().unwrap();
            assert_eq!(pinned.0.iter().map(|w| w.count_ones()).sum::<u32>(), 1);
            // SAFETY: sched_getcpu(3) only reads the CPU number.
            let cpu = unsafe { libc::sched_getcpu() } as usize;
            assert!(pinned.holds(cpu), "runs on the CPU it is pinned to");
            assert!(saved.apply());
            assert_eq!(CpuMask::current(), Some(before));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_cpu_beyond_the_mask_makes_no_mask() {
        assert!(CpuMask::only(1024).is_none());
        let mask = CpuMask::only(70).unwrap();
        assert!(mask.holds(70) && !mask.holds(6) && !mask.holds(71));
    }
}

//! A bump arena in front of the system allocator, for the first allocations of a process.
//!
//! A warm `scar run` is a few milliseconds, and the C library's allocator spent a good part of
//! them mapping and unmapping a 64 KiB slab per size class (two syscalls each) and faulting in
//! a page per class. The arena is a zeroed static (`.bss`: no file bytes, its pages appear
//! when first touched), handed out front to back with one atomic add: the start's small
//! allocations share a few pages and make no syscall. A block is given back only when it is
//! the last one handed out (the common case of a short-lived buffer or a growing `Vec`, which
//! then grows in place); any other freed block stays used until the process ends. Once the
//! arena is full, and for any block above [`StartArena::MAX_BLOCK`], the system allocator
//! serves as before, so a long-running process loses at most the arena's size.
//!
//! Lock-free (a compare-and-swap per call), so any thread, or a child sharing the address
//! space, may allocate at any time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `N` bytes of bump arena, then the system allocator.
pub struct StartArena<const N: usize> {
    memory: UnsafeCell<[u8; N]>,
    /// Offset of the first free byte.
    next: AtomicUsize,
}

// SAFETY: the memory is only reached through blocks handed out by `alloc`, each to one owner,
// and `next` is changed by compare-and-swap only; no two live blocks overlap.
unsafe impl<const N: usize> Sync for StartArena<N> {}

impl<const N: usize> Default for StartArena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StartArena<N> {
    /// Larger blocks go to the system allocator: they are few, and would eat the arena.
    pub const MAX_BLOCK: usize = 32 * 1024;

    /// An empty arena (all zeroes, so a `static` of it costs no file bytes).
    pub const fn new() -> Self {
        Self {
            memory: UnsafeCell::new([0; N]),
            next: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.memory.get() as usize
    }

    /// The block's offset when `ptr` is in the arena.
    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        (ptr as usize)
            .checked_sub(self.base())
            .filter(|off| *off < N)
    }

    /// Hand out `layout` from the arena, or `None` when it does not fit.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if layout.size() > Self::MAX_BLOCK {
            return None;
        }
        let base = self.base();
        let mut current = self.next.load(Ordering::Acquire);
        loop {
            let start = (base + current).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size()).filter(|end| *end <= N)?;
            match self
                .next
                .compare_exchange_weak(current, end, Ordering::AcqRel, Ordering::Acquire)
            {
                // Derived from the arena's own pointer, so the block keeps its provenance.
                Ok(_) => return Some(self.memory.get().cast::<u8>().wrapping_add(start)),
                Err(now) => current = now,
            }
        }
    }

    /// Bytes of the arena handed out so far (blocks given back excepted).
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Acquire)
    }
}

// SAFETY: every block is either a disjoint range of the arena, aligned as asked (see `bump`),
// or comes from `System`, and each pointer goes back to the allocator it came from (decided by
// its address: the arena's range is fixed).
unsafe impl<const N: usize> GlobalAlloc for StartArena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout contract is passed on unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => {
                // A block given back and handed out again is not zero any more.
                // SAFETY: `ptr` is a fresh block of `layout.size()` bytes.
                unsafe { ptr.write_bytes(0, layout.size()) };
                ptr
            }
            // SAFETY: the caller's layout contract is passed on unchanged.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset_of(ptr) {
            // Given back only if it is the last block; otherwise it stays used.
            Some(off) => {
                let _ = self.next.compare_exchange(
                    off + layout.size(),
                    off,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
            // SAFETY: not in the arena, so `System` handed it out with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(off) = self.offset_of(ptr) else {
            // SAFETY: not in the arena, so `System` handed it out with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        if new_size <= layout.size() {
            return ptr;
        }
        // The last block grows in place while it fits.
        if new_size <= Self::MAX_BLOCK
            && off + new_size <= N
            && self
                .next
                .compare_exchange(
                    off + layout.size(),
                    off + new_size,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, does not
        // overflow `isize`, and the alignment is the block's own, valid one.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (larger than the old one).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least `layout.size()` long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_the_last_one_is_given_back() {
        let arena = Box::new(StartArena::<4096>::new());
        // SAFETY: non-zero layouts, each block freed once with its own layout.
        unsafe {
            let a = arena.alloc(layout(3, 1));
            let b = arena.alloc(layout(8, 64));
            assert!(arena.offset_of(a).is_some() && arena.offset_of(b).is_some());
            assert_eq!(b as usize % 64, 0);
            assert!(b as usize >= a as usize + 3);
            let used = arena.used();
            let c = arena.alloc(layout(100, 8));
            arena.dealloc(c, layout(100, 8));
            assert_eq!(arena.used(), used, "the last block is given back");
            // `a` is not the last block: freeing it changes nothing.
            arena.dealloc(a, layout(3, 1));
            assert_eq!(arena.used(), used);
            arena.dealloc(b, layout(8, 64));
        }
    }

    #[test]
    fn the_last_block_grows_in_place_and_others_move_with_their_bytes() {
        let arena = Box::new(StartArena::<4096>::new());
        // SAFETY: non-zero layouts, each block reallocated and freed with its own.
        unsafe {
            let a = arena.alloc(layout(16, 8));
            a.write_bytes(7, 16);
            let grown = arena.realloc(a, layout(16, 8), 64);
            assert_eq!(grown, a, "the last block grows in place");
            let b = arena.alloc(layout(8, 8));
            let moved = arena.realloc(grown, layout(64, 8), 128);
            assert_ne!(moved, grown, "a block that is not the last moves");
            assert!(
                (0..16).all(|i| *moved.add(i) == 7),
                "its bytes move with it"
            );
            arena.dealloc(b, layout(8, 8));
            arena.dealloc(moved, layout(128, 8));
        }
    }

    #[test]
    fn a_full_arena_and_large_blocks_fall_back_to_the_system_allocator() {
        let arena = Box::new(StartArena::<256>::new());
        // SAFETY: non-zero layouts, each block freed once with its own layout.
        unsafe {
            let big = arena.alloc(layout(StartArena::<256>::MAX_BLOCK + 1, 8));
            assert!(!big.is_null() && arena.offset_of(big).is_none());
            arena.dealloc(big, layout(StartArena::<256>::MAX_BLOCK + 1, 8));
            let fill = arena.alloc(layout(200, 8));
            assert!(arena.offset_of(fill).is_some());
            let over = arena.alloc(layout(100, 8));
            assert!(!over.is_null() && arena.offset_of(over).is_none());
            over.write_bytes(1, 100);
            // Growing an arena block beyond the arena moves it to the system allocator.
            fill.write_bytes(3, 200);
            let moved = arena.realloc(fill, layout(200, 8), 400);
            assert!(arena.offset_of(moved).is_none());
            assert!((0..200).all(|i| *moved.add(i) == 3));
            arena.dealloc(moved, layout(400, 8));
            arena.dealloc(over, layout(100, 8));
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_reused() {
        let arena = Box::new(StartArena::<4096>::new());
        // SAFETY: non-zero layouts, each block freed once with its own layout.
        unsafe {
            let a = arena.alloc(layout(64, 8));
            a.write_bytes(0xff, 64);
            arena.dealloc(a, layout(64, 8));
            let z = arena.alloc_zeroed(layout(64, 8));
            assert_eq!(z, a, "the given-back block is handed out again");
            assert!((0..64).all(|i| *z.add(i) == 0));
            arena.dealloc(z, layout(64, 8));
        }
    }

    #[test]
    fn threads_allocating_at_once_never_share_a_byte() {
        static ARENA: StartArena<{ 1 << 20 }> = StartArena::new();
        let arena = &ARENA;
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut blocks = Vec::new();
                    for i in 0..500usize {
                        let l = layout(1 + i % 40, 1 << (i % 4));
                        // SAFETY: a non-zero layout; the block is filled, checked and freed
                        // below with the same layout.
                        let p = unsafe { arena.alloc(l) };
                        assert!(!p.is_null());
                        // SAFETY: `p` is a live block of `l.size()` bytes.
                        unsafe { p.write_bytes(t, l.size()) };
                        blocks.push((p as usize, l));
                    }
                    for (p, l) in blocks {
                        let p = p as *mut u8;
                        // SAFETY: as above; each block is read and freed once.
                        unsafe {
                            assert!((0..l.size()).all(|i| *p.add(i) == t));
                            arena.dealloc(p, l);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

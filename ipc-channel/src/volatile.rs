//! Shared memory as a guest sees it: a range of physical memory that the hypervisor
//! maps into two partitions (and a Linux agent maps through `/dev/mem`). This is the
//! crate's only `unsafe`: turning an address into accesses.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

use crate::mem::{copy_in, copy_out, Shared};

/// A shared region at a fixed address.
pub struct VolatileRegion {
    base: *mut u32,
    words: usize,
}

// SAFETY: the region is plain memory reached only through atomic and volatile word
// accesses; moving the handle to another thread changes nothing about that.
unsafe impl Send for VolatileRegion {}

impl VolatileRegion {
    /// # Safety
    /// `[base, base+size)` must be mapped memory, 4-byte aligned, valid for the
    /// handle's lifetime, and reached by this program only through this handle (the
    /// peer partition may write it at any time: that is what the protocol expects).
    pub unsafe fn new(base: usize, size: usize) -> Self {
        Self { base: base as *mut u32, words: size / 4 }
    }

    fn word(&self, i: usize) -> *mut u32 {
        self.base.wrapping_add(i)
    }
}

impl Shared for VolatileRegion {
    fn size(&self) -> usize {
        self.words * 4
    }
    fn load_acquire(&self, off: usize) -> u32 {
        if off / 4 >= self.words {
            return 0;
        }
        // SAFETY: in bounds and aligned (checked above; `new`'s contract); an atomic
        // view of shared memory is how concurrent access to it is made defined.
        unsafe { AtomicU32::from_ptr(self.word(off / 4)) }.load(Ordering::Acquire)
    }
    fn store_release(&self, off: usize, value: u32) {
        if off / 4 < self.words {
            // SAFETY: as in `load_acquire`.
            unsafe { AtomicU32::from_ptr(self.word(off / 4)) }.store(value, Ordering::Release);
        }
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        // SAFETY: `copy_out` only asks for words below `self.words`.
        copy_out(self.words, |i| unsafe { self.word(i).read_volatile() }, off, dst);
    }
    fn write(&self, off: usize, src: &[u8]) {
        copy_in(
            self.words,
            // SAFETY: `copy_in` only asks for words below `self.words`.
            |i| unsafe { self.word(i).read_volatile() },
            // SAFETY: as above; this side owns (is the only writer of) the region.
            |i, v| unsafe { self.word(i).write_volatile(v) },
            off,
            src,
        );
    }
}

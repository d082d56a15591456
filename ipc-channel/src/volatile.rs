//! Shared memory as a guest sees it: a range of physical memory that the hypervisor
//! maps into two partitions (and a Linux agent maps through `/dev/septum/<label>` or
//! `/dev/mem`). This is the crate's only `unsafe`: turning an address into accesses.
//!
//! Index words are 32-bit atomics. Bulk copies go 16 bytes per access where the shared
//! side is 16-byte aligned (every slot payload is: slots are 16-byte multiples after a
//! 64-byte header, in page-aligned regions), so a 4 KiB message is 256 volatile loads,
//! not 1,024; each shared byte is still read or written exactly once, and what is left
//! at the end goes through the 32-bit word routines of [`crate::mem`].
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

use crate::mem::{copy_in, copy_out, Shared};

/// The widest plain access the target has without optional features: an SSE register
/// on x86-64 (the host bench and tools), a register pair (`LDP`/`STP`) elsewhere.
#[cfg(target_arch = "x86_64")]
type Wide = core::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Wide = u128;

/// Bytes per wide access.
const WIDE: usize = core::mem::size_of::<Wide>();

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

    /// How many whole wide words from `off` lie inside the region and inside a copy of
    /// `len` bytes: none unless `off` is [`WIDE`]-aligned in memory.
    fn wide_words(&self, off: usize, len: usize) -> usize {
        let aligned = (self.base as usize).wrapping_add(off).is_multiple_of(WIDE);
        let inside = self.size().saturating_sub(off);
        if aligned {
            len.min(inside) / WIDE
        } else {
            0
        }
    }

    /// The `k`-th wide word from byte `off`. Callers keep `k < wide_words(off, ..)`.
    fn wide(&self, off: usize, k: usize) -> *mut Wide {
        self.base.cast::<u8>().wrapping_add(off).cast::<Wide>().wrapping_add(k)
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
        let wide = self.wide_words(off, dst.len());
        let to = dst.as_mut_ptr().cast::<Wide>();
        // A private buffer that is aligned too is stored to as such: a target that must
        // not make unaligned accesses (the guests) would otherwise store byte by byte.
        if to.is_aligned() {
            for k in 0..wide {
                // SAFETY: as below, and `to` is aligned for `Wide`.
                unsafe { to.add(k).write(self.wide(off, k).read_volatile()) };
            }
        } else {
            for k in 0..wide {
                // SAFETY: `k < wide`: the shared word is aligned and inside the region
                // (`wide_words`; `new`'s contract), and its copy lands inside `dst`
                // (`wide * WIDE <= dst.len()`), which need not be aligned.
                unsafe { to.add(k).write_unaligned(self.wide(off, k).read_volatile()) };
            }
        }
        // SAFETY: `copy_out` only asks for words below `self.words`.
        copy_out(self.words, |i| unsafe { self.word(i).read_volatile() }, off + wide * WIDE, &mut dst[wide * WIDE..]);
    }
    fn write(&self, off: usize, src: &[u8]) {
        let wide = self.wide_words(off, src.len());
        let from = src.as_ptr().cast::<Wide>();
        if from.is_aligned() {
            for k in 0..wide {
                // SAFETY: as below, and `from` is aligned for `Wide`.
                unsafe { self.wide(off, k).write_volatile(from.add(k).read()) };
            }
        } else {
            for k in 0..wide {
                // SAFETY: as in `read`, the other way round; this side owns (is the only
                // writer of) the region.
                unsafe { self.wide(off, k).write_volatile(from.add(k).read_unaligned()) };
            }
        }
        copy_in(
            self.words,
            // SAFETY: `copy_in` only asks for words below `self.words`.
            |i| unsafe { self.word(i).read_volatile() },
            // SAFETY: as above; this side owns (is the only writer of) the region.
            |i, v| unsafe { self.word(i).write_volatile(v) },
            off + wide * WIDE,
            &src[wide * WIDE..],
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::queuing::{Consumer, Producer, RecvError};
    use crate::{Checksum, Geometry};
    use core::sync::atomic::AtomicU64;
    use std::vec::Vec;

    /// Host memory standing in for a shared page: atomics, so it may be written
    /// through raw pointers while shared, and 16-byte aligned like a real mapping.
    #[repr(align(16))]
    struct Line([AtomicU64; 2]);

    fn memory(bytes: usize) -> Vec<Line> {
        (0..bytes.div_ceil(16)).map(|_| Line([AtomicU64::new(0), AtomicU64::new(0)])).collect()
    }

    fn region(mem: &[Line], skip: usize, size: usize) -> VolatileRegion {
        assert!(skip + size <= mem.len() * 16);
        // SAFETY: inside `mem`, which every test keeps alive longer than the region.
        unsafe { VolatileRegion::new(mem.as_ptr() as usize + skip, size) }
    }

    #[test]
    fn byte_copies_round_trip_at_every_alignment_and_length() {
        // Lengths around each width (none, a word, a wide word, two) and every start
        // alignment relative to a wide word, from an aligned and an unaligned base.
        let lens = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 19, 20, 23, 24, 28, 31, 32, 33, 35];
        let mem = memory(112);
        for skip in [0, 4] {
            let r = region(&mem, skip, 100);
            for off in 0..17 {
                for len in lens {
                    let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37) ^ off as u8).collect();
                    r.write(off, &src);
                    let mut dst = std::vec![0xAA; len];
                    r.read(off, &mut dst);
                    assert_eq!(dst, src, "base +{skip}, off {off}, len {len}");
                }
            }
        }
    }

    #[test]
    fn out_of_range_reads_zero_and_writes_nothing() {
        let mem = memory(48);
        for w in mem.iter().flat_map(|l| &l.0) {
            w.store(u64::MAX, core::sync::atomic::Ordering::Relaxed);
        }
        let r = region(&mem, 0, 32);
        let mut dst = [0xAAu8; 40];
        r.read(16, &mut dst);
        assert_eq!(dst[..16], [0xFF; 16]);
        assert_eq!(dst[16..], [0; 24]);
        r.write(28, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let mut back = [0u8; 48];
        region(&mem, 0, 48).read(0, &mut back);
        assert_eq!(back[28..32], [1, 2, 3, 4]);
        assert_eq!(back[32..], [0xFF; 16], "bytes past the region are untouched");
        assert_eq!(r.load_acquire(32), 0);
        r.store_release(32, 7);
        assert_eq!(mem[2].0[0].load(core::sync::atomic::Ordering::Relaxed), u64::MAX);
    }

    /// Two threads stream over the volatile regions as two partitions do. Under Miri
    /// this shows the honest protocol orders every plain (volatile) access of a slot
    /// with its acquire/release indices: no data race, whatever the message length.
    #[test]
    fn streams_between_two_threads_without_a_data_race() {
        let geo = Geometry::new(64, 4).unwrap();
        let count: u32 = if cfg!(miri) { 40 } else { 5_000 };
        let prod = memory(geo.producer_region_size());
        let cons = memory(geo.consumer_region_size());
        let (psize, csize) = (geo.producer_region_size(), geo.consumer_region_size());
        let mut tx = Producer::new(geo, Checksum::Crc32c, region(&prod, 0, psize), region(&cons, 0, csize)).unwrap();
        let mut rx = Consumer::new(geo, Checksum::Crc32c, region(&cons, 0, csize), region(&prod, 0, psize)).unwrap();
        let message = |n: u32| -> Vec<u8> { (0..n as usize % 49).map(|i| (n as usize * 31 + i) as u8).collect() };
        std::thread::scope(|s| {
            s.spawn(|| {
                for n in 0..count {
                    while tx.send(&message(n)).is_err() {
                        std::thread::yield_now();
                    }
                }
            });
            let mut buf = [0u8; 48];
            for n in 0..count {
                let len = loop {
                    match rx.recv(&mut buf) {
                        Ok(len) => break len,
                        Err(RecvError::Empty) => std::thread::yield_now(),
                        Err(e) => panic!("message {n}: {e:?}"),
                    }
                };
                assert_eq!(buf[..len], message(n)[..], "message {n}");
            }
        });
        assert_eq!(rx.stats().rejected(), 0);
    }
}

//! The one door from the protocol to shared memory. The same protocol code runs over
//! volatile memory shared between partitions ([`crate::volatile`]), over atomics on the
//! host (tests, Miri) and over loom's atomics (model checking), and, in the
//! Linux agent, over an `mmap` of the `septum_channel` module's device (or of
//! `/dev/mem`).
//!
//! Contract: the protocol only passes offsets that lie inside the region and index
//! words that are 4-byte aligned (it checks region sizes once, at creation). An
//! implementation must still never panic or touch memory outside the region: out of
//! range, a read yields zeros and a write is dropped.

#[cfg(not(loom))]
use core::sync::atomic::{fence, AtomicU32, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU32, Ordering};

/// A region of memory shared with another partition.
pub trait Shared {
    /// Bytes in the region.
    fn size(&self) -> usize;
    /// Loads the 32-bit word at `off` with acquire ordering.
    fn load_acquire(&self, off: usize) -> u32;
    /// Stores the 32-bit word at `off` with release ordering.
    fn store_release(&self, off: usize, value: u32);
    /// Copies `dst.len()` bytes out from `off`; unordered on its own.
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` in at `off`; unordered on its own.
    fn write(&self, off: usize, src: &[u8]);
    /// Orders earlier loads before later loads and stores (a sequence lock's read side).
    fn fence_acquire(&self) {
        fence(Ordering::Acquire);
    }
    /// Orders earlier loads and stores before later stores (a sequence lock's write side).
    fn fence_release(&self) {
        fence(Ordering::Release);
    }
}

/// Copies bytes out of a word-addressed region: whole words where aligned, single bytes
/// at the edges; bytes past the region's end read as zero. Every byte of `dst` is written.
pub(crate) fn copy_out(words: usize, load: impl Fn(usize) -> u32, off: usize, dst: &mut [u8]) {
    let byte = |at: usize| if at / 4 < words { load(at / 4).to_le_bytes()[at % 4] } else { 0 };
    let lead = ((4 - off % 4) % 4).min(dst.len());
    for (i, d) in dst[..lead].iter_mut().enumerate() {
        *d = byte(off.saturating_add(i));
    }
    let first_word = off.saturating_add(lead) / 4;
    let body = (dst.len() - lead) / 4;
    let whole = words.saturating_sub(first_word).min(body);
    for (k, chunk) in dst[lead..lead + whole * 4].chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&load(first_word + k).to_le_bytes());
    }
    let tail = lead + whole * 4;
    for (i, d) in dst.iter_mut().enumerate().skip(tail) {
        *d = byte(off.saturating_add(i));
    }
}

/// Copies bytes into a word-addressed region: whole words where aligned, a
/// read-merge-write at the edges (safe because only the region's owner writes it);
/// bytes past the region's end are dropped.
pub(crate) fn copy_in(words: usize, load: impl Fn(usize) -> u32, store: impl Fn(usize, u32), off: usize, src: &[u8]) {
    let put_byte = |at: usize, b: u8| {
        if at / 4 < words {
            let mut w = load(at / 4).to_le_bytes();
            w[at % 4] = b;
            store(at / 4, u32::from_le_bytes(w));
        }
    };
    let lead = ((4 - off % 4) % 4).min(src.len());
    for (i, &b) in src[..lead].iter().enumerate() {
        put_byte(off.saturating_add(i), b);
    }
    let first_word = off.saturating_add(lead) / 4;
    let body = (src.len() - lead) / 4;
    let whole = words.saturating_sub(first_word).min(body);
    for (k, chunk) in src[lead..lead + whole * 4].chunks_exact(4).enumerate() {
        store(first_word + k, u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
    }
    for (i, &b) in src.iter().enumerate().skip(lead + whole * 4) {
        put_byte(off.saturating_add(i), b);
    }
}

/// Shared memory on the host: a slice of atomic words, so concurrent access from two
/// threads is free of data races (and Miri and loom can check it).
pub struct HostRegion<'a> {
    words: &'a [AtomicU32],
}

impl<'a> HostRegion<'a> {
    pub fn new(words: &'a [AtomicU32]) -> Self {
        Self { words }
    }
}

impl Shared for HostRegion<'_> {
    fn size(&self) -> usize {
        self.words.len() * 4
    }
    fn load_acquire(&self, off: usize) -> u32 {
        self.words.get(off / 4).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn store_release(&self, off: usize, value: u32) {
        if let Some(w) = self.words.get(off / 4) {
            w.store(value, Ordering::Release);
        }
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        // The common case, an aligned copy inside the region, runs as one tight loop
        // over the words (no per-word bounds checks); anything else goes byte-careful.
        if off.is_multiple_of(4) && dst.len().is_multiple_of(4) {
            if let Some(words) = self.words.get(off / 4..off / 4 + dst.len() / 4) {
                for (d, w) in dst.chunks_exact_mut(4).zip(words) {
                    d.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                return;
            }
        }
        copy_out(self.words.len(), |i| self.words[i].load(Ordering::Relaxed), off, dst);
    }
    fn write(&self, off: usize, src: &[u8]) {
        if off.is_multiple_of(4) && src.len().is_multiple_of(4) {
            if let Some(words) = self.words.get(off / 4..off / 4 + src.len() / 4) {
                for (s, w) in src.chunks_exact(4).zip(words) {
                    w.store(u32::from_le_bytes([s[0], s[1], s[2], s[3]]), Ordering::Relaxed);
                }
                return;
            }
        }
        copy_in(
            self.words.len(),
            |i| self.words[i].load(Ordering::Relaxed),
            |i, v| self.words[i].store(v, Ordering::Relaxed),
            off,
            src,
        );
    }
    fn fence_acquire(&self) {
        fence(Ordering::Acquire);
    }
    fn fence_release(&self) {
        fence(Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn byte_copies_round_trip_at_every_alignment() {
        let words: Vec<AtomicU32> = (0..16).map(|_| AtomicU32::new(0)).collect();
        let r = HostRegion::new(&words);
        for off in 0..8 {
            for len in 0..20 {
                let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37).wrapping_add(off as u8)).collect();
                r.write(off, &src);
                let mut dst = std::vec![0xAA; len];
                r.read(off, &mut dst);
                assert_eq!(dst, src, "off {off} len {len}");
            }
        }
    }

    #[test]
    fn out_of_range_reads_zero_and_writes_nothing() {
        let words: Vec<AtomicU32> = (0..2).map(|_| AtomicU32::new(u32::MAX)).collect();
        let r = HostRegion::new(&words);
        let mut dst = [0xAAu8; 12];
        r.read(4, &mut dst);
        assert_eq!(dst, [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
        r.write(6, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(words[1].load(Ordering::Relaxed).to_le_bytes(), [0xFF, 0xFF, 1, 2]);
        assert_eq!(r.load_acquire(4096), 0);
        r.store_release(4096, 7);
    }
}

//! Sampling port: the latest value, with a sequence number and a freshness check.
//!
//! The writer publishes under a sequence lock: `seq` odd while writing, even and two
//! higher when done. A reader tries a bounded number of times to copy a stable value
//! (same even `seq` before and after), copies it into private memory, validates the
//! format word, length and CRC-32C (unless the channel carries no checksum) on the
//! copy, and judges freshness against the configured validity period
//! with its own clock. A writer that never finishes, or lies, costs the reader a
//! bounded number of attempts and an error value.

use crate::mem::Shared;
use crate::wire::{self, Checksum, SamplingHeader, HEADER_SIZE};
use zerocopy::{FromBytes, IntoBytes};

/// Attempts a reader makes before reporting [`SampleError::Busy`].
pub const READ_ATTEMPTS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleError {
    /// Nothing written yet.
    NoValue,
    /// The writer was writing on every attempt.
    Busy,
    /// The value's length or checksum is wrong, or its stamp lies in the future.
    Invalid,
    /// The value's format word is not this reader's: another version of the wire
    /// format, or another checksum than the channel is configured for.
    BadFormat,
    BufferTooSmall,
}

/// A value read from a sampling port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub len: usize,
    /// Values written so far by the writer (1 for the first).
    pub seq: u32,
    /// Reader's clock minus the writer's stamp.
    pub age: u64,
    /// `age` within the validity period.
    pub fresh: bool,
    /// A different value than the previous successful read.
    pub new: bool,
}

/// Bytes a sampling region needs for values of up to `capacity` bytes.
pub const fn region_size(capacity: usize) -> usize {
    HEADER_SIZE + capacity.div_ceil(4) * 4
}

pub struct Writer<M: Shared> {
    own: M,
    capacity: usize,
    checksum: Checksum,
    seq: u32,
}

impl<M: Shared> Writer<M> {
    /// `checksum` is the channel's, as configured for both ends.
    pub fn new(capacity: usize, checksum: Checksum, own: M) -> Option<Self> {
        if own.size() < region_size(capacity) {
            return None;
        }
        let header = SamplingHeader {
            magic: wire::MAGIC_SAMPLING,
            version: wire::VERSION,
            capacity: capacity as u32,
            seq: 0,
            stamp_lo: 0,
            stamp_hi: 0,
            len: 0,
            crc: 0,
            format: wire::format(checksum),
            _reserved: [0; 7],
        };
        own.write(0, header.as_bytes());
        own.store_release(wire::SAMPLING_SEQ, 0);
        Some(Self { own, capacity, checksum, seq: 0 })
    }

    /// Publishes `value` stamped with the writer's clock `now`.
    pub fn write(&mut self, value: &[u8], now: u64) -> Result<(), SampleError> {
        if value.len() > self.capacity {
            return Err(SampleError::BufferTooSmall);
        }
        let next = self.seq.wrapping_add(2);
        self.own.store_release(wire::SAMPLING_SEQ, self.seq.wrapping_add(1));
        self.own.fence_release();
        let len = value.len() as u32;
        let crc = match self.checksum {
            Checksum::Crc32c => crate::checksum(next, len, value),
            Checksum::None => 0,
        };
        // The format word too, each time: a value is whole in what this write stores.
        let fields = [now as u32, (now >> 32) as u32, len, crc, wire::format(self.checksum)];
        self.own.write(core::mem::offset_of!(SamplingHeader, stamp_lo), fields.as_bytes());
        self.own.write(HEADER_SIZE, value);
        self.own.store_release(wire::SAMPLING_SEQ, next);
        self.seq = next;
        Ok(())
    }
}

pub struct Reader<M: Shared> {
    peer: M,
    capacity: usize,
    checksum: Checksum,
    validity: u64,
    last: u32,
}

impl<M: Shared> Reader<M> {
    /// `validity` is the configured validity period, in the reader's clock units;
    /// `checksum` the channel's, as configured for both ends.
    pub fn new(capacity: usize, checksum: Checksum, validity: u64, peer: M) -> Option<Self> {
        (peer.size() >= region_size(capacity)).then_some(Self { peer, capacity, checksum, validity, last: 0 })
    }

    /// Reads the latest value into `buf` (at least `capacity` bytes); `now` is the
    /// reader's clock.
    pub fn read(&mut self, buf: &mut [u8], now: u64) -> Result<Sample, SampleError> {
        if buf.len() < self.capacity {
            return Err(SampleError::BufferTooSmall);
        }
        for _ in 0..READ_ATTEMPTS {
            let before = self.peer.load_acquire(wire::SAMPLING_SEQ);
            if before % 2 == 1 {
                continue;
            }
            if before == 0 {
                return Err(SampleError::NoValue);
            }
            let mut raw = [0u8; HEADER_SIZE];
            self.peer.read(0, &mut raw);
            let header = SamplingHeader::read_from_bytes(&raw).map_err(|_| SampleError::Invalid)?;
            let len = (header.len as usize).min(self.capacity);
            self.peer.read(HEADER_SIZE, &mut buf[..len]);
            self.peer.fence_acquire();
            if self.peer.load_acquire(wire::SAMPLING_SEQ) != before {
                continue;
            }
            if header.format != wire::format(self.checksum) {
                return Err(SampleError::BadFormat);
            }
            let stamp = u64::from(header.stamp_lo) | (u64::from(header.stamp_hi) << 32);
            let bad_crc =
                self.checksum == Checksum::Crc32c && crate::checksum(before, header.len, &buf[..len]) != header.crc;
            if header.len as usize > self.capacity || bad_crc || stamp > now {
                return Err(SampleError::Invalid);
            }
            let age = now - stamp;
            let new = before != self.last;
            self.last = before;
            return Ok(Sample { len, seq: before / 2, age, fresh: age <= self.validity, new });
        }
        Err(SampleError::Busy)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::mem::HostRegion;
    use core::sync::atomic::{AtomicU32, Ordering};
    use proptest::prelude::*;
    use std::vec::Vec;

    fn region(cap: usize) -> Vec<AtomicU32> {
        (0..region_size(cap) / 4).map(|_| AtomicU32::new(0)).collect()
    }

    /// CH-005: latest value wins, with its sequence number, freshness and newness.
    #[test]
    fn latest_value_with_freshness() {
        let mem = region(16);
        let mut w = Writer::new(16, Checksum::Crc32c, HostRegion::new(&mem)).unwrap();
        let mut r = Reader::new(16, Checksum::Crc32c, 100, HostRegion::new(&mem)).unwrap();
        let mut b = [0u8; 16];
        assert_eq!(r.read(&mut b, 0), Err(SampleError::NoValue));
        w.write(b"one", 10).unwrap();
        w.write(b"two!", 20).unwrap();
        let s = r.read(&mut b, 50).unwrap();
        assert_eq!((&b[..s.len], s.seq, s.age, s.fresh, s.new), (&b"two!"[..], 2, 30, true, true));
        let s = r.read(&mut b, 500).unwrap();
        assert_eq!((s.fresh, s.new), (false, false));
        assert_eq!(r.read(&mut b, 5), Err(SampleError::Invalid), "a stamp from the future is a lie");
    }

    #[test]
    fn a_writer_stuck_mid_write_costs_a_bounded_read() {
        let mem = region(16);
        let mut w = Writer::new(16, Checksum::Crc32c, HostRegion::new(&mem)).unwrap();
        w.write(b"x", 1).unwrap();
        mem[wire::SAMPLING_SEQ / 4].store(7, Ordering::Relaxed);
        let mut r = Reader::new(16, Checksum::Crc32c, 100, HostRegion::new(&mem)).unwrap();
        assert_eq!(r.read(&mut [0u8; 16], 2), Err(SampleError::Busy));
    }

    /// CH-013: a value whose format word is not the reader's (version 1's zero, another
    /// checksum) is refused by name; CH-012: without a checksum the value still reads.
    #[test]
    fn a_value_of_another_format_is_refused() {
        let at = core::mem::offset_of!(SamplingHeader, format) / 4;
        for checksum in [Checksum::Crc32c, Checksum::None] {
            let mem = region(16);
            let mut w = Writer::new(16, checksum, HostRegion::new(&mem)).unwrap();
            w.write(b"v", 1).unwrap();
            let mut b = [0u8; 16];
            let mut r = Reader::new(16, checksum, 100, HostRegion::new(&mem)).unwrap();
            assert_eq!(r.read(&mut b, 2).map(|s| s.len), Ok(1));
            let other = if checksum == Checksum::None { Checksum::Crc32c } else { Checksum::None };
            let mut r = Reader::new(16, other, 100, HostRegion::new(&mem)).unwrap();
            assert_eq!(r.read(&mut b, 2), Err(SampleError::BadFormat));
            mem[at].store(0, Ordering::Relaxed);
            let mut r = Reader::new(16, checksum, 100, HostRegion::new(&mem)).unwrap();
            assert_eq!(r.read(&mut b, 2), Err(SampleError::BadFormat));
        }
    }

    proptest! {
        /// CH-002 for sampling: arbitrary bytes never make the reader panic or return
        /// more than its capacity.
        #[test]
        fn hostile_writer_cannot_break_the_reader(
            scribbles in proptest::collection::vec((any::<u8>(), any::<u32>()), 0..100),
            now in any::<u64>(),
        ) {
            let mem = region(24);
            let mut w = Writer::new(24, Checksum::Crc32c, HostRegion::new(&mem)).unwrap();
            w.write(b"honest", 0).unwrap();
            let mut r = Reader::new(24, Checksum::Crc32c, 100, HostRegion::new(&mem)).unwrap();
            let mut b = [0u8; 24];
            for (at, v) in scribbles {
                mem[at as usize % mem.len()].store(v, Ordering::Relaxed);
                if let Ok(s) = r.read(&mut b, now) {
                    prop_assert!(s.len <= 24);
                }
            }
        }
    }
}

//! The channel between Septum partitions: the only path for data between the
//! critical-monitor and the connectivity partition. The connectivity side is assumed
//! hostile: it may write any bytes into memory it can write, at any moment, and the
//! critical side must stay correct and on time whatever it does.
//!
//! * [`wire`]: the layout of shared memory (zerocopy structs, explicit sizes), format
//!   version 2.
//! * [`crc32c`]: the checksum, with the CPU's instruction where there is one (the
//!   crate's other `unsafe`: calls to `#[target_feature]` functions).
//! * [`mem`]: the one trait ([`Shared`]) the protocol reaches shared memory through,
//!   and a race-free host implementation; [`volatile`] is the guest's (the crate's only
//!   `unsafe`).
//! * [`queuing`]: a bounded FIFO (ARINC 653 queuing port).
//! * [`sampling`]: the latest value with a sequence number and a freshness check
//!   (ARINC 653 sampling port).
//!
//! The protocol, the rules each side keeps and the verification are described in
//! `README.md`; the SPIN model is `model/channel.pml`.
#![no_std]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod crc32c;
pub mod mem;
pub mod queuing;
pub mod sampling;
pub mod volatile;
pub mod wire;

pub use mem::{HostRegion, Shared};
pub use wire::{Checksum, Geometry, GeometryError};

/// The checksum a message carries (format 2): CRC-32C over its sequence number, length
/// (both little-endian) and bytes.
pub fn checksum(seq: u32, len: u32, payload: &[u8]) -> u32 {
    // The numbers as one 8-byte piece, the payload after them, in one call.
    let numbers = u64::from(len) << 32 | u64::from(seq);
    crc32c::finish(crc32c::sum(crc32c::INIT, Some(numbers), payload))
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// CH-011: the checksum is part of the wire format: these values (the `crc` crate's
    /// CRC-32/ISCSI of the little-endian numbers, then the bytes) must never change
    /// within a version.
    #[test]
    fn checksum_is_crc32c_of_the_numbers_then_the_bytes() {
        let reference = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let mut digest = reference.digest();
        digest.update(&1u32.to_le_bytes());
        digest.update(&5u32.to_le_bytes());
        digest.update(b"hello");
        assert_eq!(super::checksum(1, 5, b"hello"), digest.finalize());
        assert_eq!(super::checksum(1, 5, b"hello"), 0x797b_4483);
        assert_eq!(super::checksum(0xdead_beef, 0, b""), reference.checksum(&[0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0]));
    }
}

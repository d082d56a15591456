//! The channel between Septum partitions: the only path for data between the
//! critical-monitor and the connectivity partition. The connectivity side is assumed
//! hostile: it may write any bytes into memory it can write, at any moment, and the
//! critical side must stay correct and on time whatever it does.
//!
//! * [`wire`]: the layout of shared memory (zerocopy structs, explicit sizes).
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

pub mod mem;
pub mod queuing;
pub mod sampling;
pub mod volatile;
pub mod wire;

pub use mem::{HostRegion, Shared};
pub use wire::{Geometry, GeometryError};

/// The checksum a message carries: CRC-32 over its sequence number, length and bytes
/// (both numbers little-endian, fed as one 8-byte piece: one hasher call fewer per
/// message, which shows for short ones).
pub fn checksum(seq: u32, len: u32, payload: &[u8]) -> u32 {
    let numbers = (u64::from(len) << 32 | u64::from(seq)).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&numbers);
    h.update(payload);
    h.finalize()
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// The checksum is part of the wire format: these values (zlib's CRC-32 of the
    /// little-endian numbers and the bytes) must never change within a version.
    #[test]
    fn checksum_is_crc32_of_the_numbers_then_the_bytes() {
        assert_eq!(super::checksum(1, 5, b"hello"), 0x6847_8bd3);
        assert_eq!(super::checksum(0xdead_beef, 0, b""), 0xdcdf_1f51);
    }
}

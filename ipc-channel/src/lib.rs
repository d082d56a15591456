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

/// The checksum a message carries: CRC-32 over its sequence number, length and bytes.
pub fn checksum(seq: u32, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

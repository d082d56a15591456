//! Shared-memory layout. Per direction there are two regions: the **producer region**
//! (header, then `depth` slots), writable by the producer only, and the **consumer
//! region** (its header with the read index), writable by the consumer only. The
//! hypervisor maps each writable to its owner and read-only to the peer.
//!
//! Geometry (slot size, depth) comes from the system description on both sides, never
//! from shared memory: the headers carry it only so a mismatch can be reported.
//!
//! All fields are little-endian `u32`, at fixed offsets given by these structs.
//!
//! Format version 2 (this one): every message (slot) and every sampling value carries a
//! [`format`] word, its version and what checksum it carries, which a receiver checks
//! before anything else and refuses when it is not exactly its own; the checksum is
//! CRC-32C ([`crate::crc32c`]), or none on a channel configured so. Version 1 carried
//! a CRC-32 and no format word (a zero there), so a version-1 message is refused by
//! name (`bad_format`), never misread.

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const MAGIC_PRODUCER: u32 = u32::from_le_bytes(*b"SQPR");
pub const MAGIC_CONSUMER: u32 = u32::from_le_bytes(*b"SQCO");
pub const MAGIC_SAMPLING: u32 = u32::from_le_bytes(*b"SQSA");
/// The wire format's version, in every header and in every message's [`format`] word.
pub const VERSION: u32 = 2;

/// What a channel's messages carry to be checked, chosen per channel in the system
/// description (`checksum = "crc32c" | "none"`) and given to both ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Checksum {
    /// CRC-32C over the message's sequence number, length and bytes ([`crate::checksum`]).
    #[default]
    Crc32c,
    /// No checksum (the field is zero and not read): only for payloads that authenticate
    /// themselves end to end (a signed update), where a CRC adds nothing the signature
    /// does not check, never for the critical monitor's channels. The receiver still
    /// checks the format word, the sequence number and the length.
    None,
}

impl Checksum {
    /// The name the system description and the device tree give it.
    pub const fn name(self) -> &'static str {
        match self {
            Checksum::Crc32c => "crc32c",
            Checksum::None => "none",
        }
    }

    /// The checksum named `name` ([`Checksum::name`]), if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        [Checksum::Crc32c, Checksum::None].into_iter().find(|c| c.name() == name)
    }
}

/// The word a message carries to name its format: [`VERSION`] in the low half, the
/// checksum in the high half (1: CRC-32C, 2: none; zero never occurs, so zeroed or
/// version-1 memory never passes).
pub const fn format(checksum: Checksum) -> u32 {
    let kind = match checksum {
        Checksum::Crc32c => 1,
        Checksum::None => 2,
    };
    VERSION | kind << 16
}

/// One cache line: headers never share a line with slots.
pub const HEADER_SIZE: usize = 64;

/// Head of a queuing producer region.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ProducerHeader {
    pub magic: u32,
    pub version: u32,
    pub slot_size: u32,
    pub depth: u32,
    /// Messages written so far (free-running, wraps at 2^32). Stored with release
    /// ordering after the slot it publishes.
    pub write_index: u32,
    pub _reserved: [u32; 11],
}

/// Head of a queuing consumer region.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ConsumerHeader {
    pub magic: u32,
    pub version: u32,
    /// Messages consumed so far (free-running). Stored with release ordering after the
    /// slot has been copied out.
    pub read_index: u32,
    pub _reserved: [u32; 13],
}

/// Head of each slot; the payload follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct SlotHeader {
    /// The write index the message was written at.
    pub seq: u32,
    pub len: u32,
    /// [`crate::checksum`] of `seq`, `len` and the payload; zero without a checksum.
    pub crc: u32,
    /// [`format`] of the channel's checksum: checked first, refused unless exactly the
    /// receiver's.
    pub format: u32,
}

/// Head of a sampling region (one writer, any number of readers).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct SamplingHeader {
    pub magic: u32,
    pub version: u32,
    pub capacity: u32,
    /// Sequence lock: odd while the writer is writing, even when stable; a new value
    /// adds 2.
    pub seq: u32,
    /// Writer's counter ticks when the value was written.
    pub stamp_lo: u32,
    pub stamp_hi: u32,
    pub len: u32,
    /// [`crate::checksum`] of `seq`, `len` and the payload; zero without a checksum.
    pub crc: u32,
    /// [`format`] of the channel's checksum, as in a slot.
    pub format: u32,
    pub _reserved: [u32; 7],
}

pub const WRITE_INDEX: usize = offset_of!(ProducerHeader, write_index);
pub const READ_INDEX: usize = offset_of!(ConsumerHeader, read_index);
pub const SLOT_HEADER: usize = size_of::<SlotHeader>();
pub const SAMPLING_SEQ: usize = offset_of!(SamplingHeader, seq);

const _: () = assert!(size_of::<ProducerHeader>() == HEADER_SIZE);
const _: () = assert!(size_of::<ConsumerHeader>() == HEADER_SIZE);
const _: () = assert!(size_of::<SamplingHeader>() == HEADER_SIZE);

/// Slot size and depth of a queuing channel, as the system description gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    slot_size: u32,
    depth: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// Depth must be a power of two, 2..=65536.
    Depth,
    /// Slot size must be a multiple of 16, 32..=65536.
    SlotSize,
    /// A region is smaller than the geometry needs.
    RegionTooSmall { needed: usize, found: usize },
}

impl Geometry {
    pub const fn new(slot_size: u32, depth: u32) -> Result<Self, GeometryError> {
        if !depth.is_power_of_two() || depth < 2 || depth > 65536 {
            return Err(GeometryError::Depth);
        }
        if !slot_size.is_multiple_of(16) || slot_size < 32 || slot_size > 65536 {
            return Err(GeometryError::SlotSize);
        }
        Ok(Self { slot_size, depth })
    }
    pub const fn slot_size(&self) -> u32 {
        self.slot_size
    }
    pub const fn depth(&self) -> u32 {
        self.depth
    }
    /// Largest message.
    pub const fn payload_capacity(&self) -> usize {
        self.slot_size as usize - SLOT_HEADER
    }
    pub const fn producer_region_size(&self) -> usize {
        HEADER_SIZE + self.depth as usize * self.slot_size as usize
    }
    pub const fn consumer_region_size(&self) -> usize {
        HEADER_SIZE
    }
    /// Offset of the slot a (free-running) index lands in. Always in bounds: the index
    /// is masked by the depth.
    pub const fn slot_offset(&self, index: u32) -> usize {
        HEADER_SIZE + (index & (self.depth - 1)) as usize * self.slot_size as usize
    }
}

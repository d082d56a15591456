//! The channel between partitions: the only path for data from the connectivity side to
//! the critical side. Its protocol, wire format and verification are the subject of
//! their own issue; this crate holds the place in the workspace and the rules the
//! implementation must keep (see README.md).
#![no_std]
#![forbid(unsafe_code)]

/// Bytes of the smallest channel memory region: one page, the stage-2 granule, so each
/// direction's producer and consumer regions can be mapped with their own rights.
pub const REGION_GRANULE: usize = 4096;

//! Anti-rollback counters: the values the hypervisor has accepted and will never go
//! below. [`Floors`] is the data; storing it in flash (two copies, sequence number,
//! checksum) is below.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{MAX_ROLES, NAME_LEN};

/// One partition's floors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct PartitionFloor {
    /// The partition (release role) name; all zero for an unused entry.
    pub name: [u8; NAME_LEN],
    /// Keys of this role with a lower `key_version` are revoked.
    pub min_key_version: u32,
    pub _reserved: u32,
    /// Manifests with a lower security counter are refused.
    pub security_counter: u64,
}

/// Everything the hypervisor must never forget across resets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Floors {
    /// Highest root document version accepted.
    pub root_version: u32,
    /// Root keys with a lower `key_version` are revoked.
    pub root_min_key_version: u32,
    /// Boots so far (the audit log stamps records with it).
    pub boot_count: u32,
    pub _reserved: u32,
    pub partitions: [PartitionFloor; MAX_ROLES],
}

const _: () = assert!(size_of::<PartitionFloor>() == 40 && size_of::<Floors>() == 16 + 40 * MAX_ROLES);

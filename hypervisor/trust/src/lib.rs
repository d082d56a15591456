//! Septum's chain of trust, as host-testable logic shared by the EL2 kernel and xtask:
//!
//! * [`format`]: the signed documents' wire layout (zerocopy, fixed sizes): the signed
//!   envelope, the root document with its roles, the partition manifest.
//! * [`verify`]: thresholds, rotation, revocation, manifest, image and device tree checks.
//! * [`boot`]: the boot-time checks as the hypervisor runs them; each returns its result
//!   together with the audit event that records it.
//! * [`flash`], [`counters`], [`audit`]: hypervisor-owned persistent storage (NOR
//!   flash): anti-rollback counters in two copies, and the hash-chained audit log.
//! * [`history`]: where a log's history begins, and whether a later dump continues an
//!   earlier one (a wiped bank is otherwise a chain as intact as any).
//! * [`hash`]: SHA-512 and constant-time comparison.
//!
//! The design and the threat model are in `docs/trust.md`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod audit;
pub mod boot;
pub mod counters;
pub mod flash;
pub mod format;
pub mod hash;
pub mod history;
pub mod verify;

/// Bytes of a partition or role name (NUL-padded ASCII), as in the configuration.
pub const NAME_LEN: usize = 24;
/// Bytes of a board (hardware) identifier (NUL-padded ASCII, e.g. `qemu-virt`).
pub const BOARD_ID_LEN: usize = 32;
/// Keys a role may list.
pub const MAX_KEYS: usize = 4;
/// Release roles a root document may list (one per partition).
pub const MAX_ROLES: usize = 8;
/// Signatures an envelope may carry.
pub const MAX_SIGNATURES: usize = 8;
/// SHA-512 digest bytes.
pub const HASH_LEN: usize = 64;

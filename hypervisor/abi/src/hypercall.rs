//! Hypercall numbers. A guest calls with `HVC #0`, the function number in `x0` and
//! arguments in `x1..x7`, following the SMC Calling Convention (Arm DEN 0028). Septum's
//! own calls live in the "vendor-specific hypervisor service" range (owning entity 6);
//! PSCI (Arm DEN 0022) uses its standard numbers over the same conduit.

/// SMCCC: fast call, 64-bit convention, owning entity 6 (vendor hypervisor service).
const VENDOR_HYP_BASE: u32 = 0xC600_0000;

/// Write bytes to the hypervisor's log on the partition's behalf (partitions without a
/// UART of their own). `x1` = byte count (at most [`CONSOLE_WRITE_MAX`]), `x2..x7` =
/// the bytes, little-endian packed. Lines are prefixed with the partition's name.
pub const CONSOLE_WRITE: u32 = VENDOR_HYP_BASE | 0x01;
/// Maximum bytes per [`CONSOLE_WRITE`] call (six registers of eight bytes).
pub const CONSOLE_WRITE_MAX: usize = 48;

/// Ask how this partition was started (ARINC 653's START_CONDITION). Returns
/// `x0` = [`SUCCESS`], `x1` = [`StartCondition`] as u64, `x2` = restarts so far.
pub const PARTITION_STATUS: u32 = VENDOR_HYP_BASE | 0x02;

/// The audit log's shape, for a partition granted `audit_reader` (read-only export,
/// so an uploader can copy the log off the device; nothing can write it). Returns
/// `x0` = [`SUCCESS`], `x1` = slots in the log's ring, `x2` = the slot the next record
/// goes to (the newest is the one before it), `x3` = the next record's sequence number.
/// Not granted, or no log on this board: `x0` = [`NOT_SUPPORTED`].
pub const AUDIT_INFO: u32 = VENDOR_HYP_BASE | 0x03;
/// Half of one audit log slot, as it lies in flash (the reader checks it: a record
/// carries its own hash and its predecessor's). `x1` = slot, `x2` = half (0: bytes
/// `0..128`, 1: `128..256`). Returns `x0` = [`SUCCESS`] and the bytes in `x1..=x16`,
/// little-endian; a slot or half out of range: [`INVALID_PARAMETERS`]; not granted:
/// [`NOT_SUPPORTED`].
pub const AUDIT_READ: u32 = VENDOR_HYP_BASE | 0x04;
/// Bytes one [`AUDIT_READ`] returns (sixteen registers).
pub const AUDIT_READ_BYTES: usize = 128;

/// Return value: the call succeeded.
pub const SUCCESS: u64 = 0;
/// Return value (SMCCC): the function is not implemented.
pub const NOT_SUPPORTED: u64 = u64::MAX; // -1
/// Return value: an argument was out of range.
pub const INVALID_PARAMETERS: u64 = (-2i64) as u64;

/// Why a partition is running.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartCondition {
    /// First start after the hypervisor booted.
    NormalStart = 0,
    /// Restarted by the health monitor after a fault.
    HmPartitionRestart = 1,
    /// Restarted because the partition asked (PSCI SYSTEM_RESET).
    PartitionRestart = 2,
}

impl StartCondition {
    pub fn from_u64(v: u64) -> Option<Self> {
        match v {
            0 => Some(Self::NormalStart),
            1 => Some(Self::HmPartitionRestart),
            2 => Some(Self::PartitionRestart),
            _ => None,
        }
    }
}

/// PSCI function numbers Septum recognises (Arm DEN 0022, "PSCI 1.1").
pub mod psci {
    pub const VERSION: u32 = 0x8400_0000;
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON_32: u32 = 0x8400_0003;
    pub const CPU_ON_64: u32 = 0xC400_0003;
    pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    pub const FEATURES: u32 = 0x8400_000A;
    pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;

    pub const SUCCESS: i32 = 0;
    pub const NOT_SUPPORTED: i32 = -1;
    pub const INVALID_PARAMETERS: i32 = -2;
    pub const DENIED: i32 = -3;
    pub const ALREADY_ON: i32 = -4;
    pub const ON_PENDING: i32 = -5;
    /// VERSION's answer: major 1, minor 1.
    pub const VERSION_1_1: u32 = 0x0001_0001;
}

/// SMCCC architecture calls.
pub mod smccc {
    pub const VERSION: u32 = 0x8000_0000;
    pub const ARCH_FEATURES: u32 = 0x8000_0001;
    /// Spectre-v2 (CVE-2017-5715) branch-predictor invalidation.
    pub const ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    /// Speculative store bypass (CVE-2018-3639) mitigation switch.
    pub const ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
    /// Spectre-BHB (CVE-2022-23960) and Spectre-v2 mitigation (SMCCC 1.4).
    pub const ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;
    /// SMCCC 1.1.
    pub const VERSION_1_1: u32 = 0x0001_0001;
}

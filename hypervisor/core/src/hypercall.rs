//! Answers to the calls a partition makes with `HVC #0`: PSCI (Arm DEN 0022), the SMCCC
//! architecture calls (Arm DEN 0028) and Septum's own. Pure decisions; the EL2 binary
//! writes the answer into the guest's registers or carries out the action.

use crate::health::StopCause;
use septum_abi::hypercall::{self as abi, psci, smccc, StartCondition};

/// What the caller needs to know about the calling partition.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub vcpu: usize,
    pub vcpu_count: usize,
    pub start: StartCondition,
    pub restarts: u32,
    /// The configuration grants it the audit log export.
    pub audit_reader: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Write x0..x3 and resume after the HVC.
    Return([u64; 4]),
    /// Append `bytes[..len]` to the partition's console line, then return SUCCESS.
    ConsoleWrite { bytes: [u8; abi::CONSOLE_WRITE_MAX], len: usize },
    /// The calling vCPU turns itself off (PSCI CPU_OFF).
    CpuOff,
    /// PSCI CPU_ON: start the partition's vCPU with MPIDR `target` at `entry`, `x0` =
    /// `context`.
    CpuOn { target: u64, entry: u64, context: u64 },
    /// PSCI AFFINITY_INFO for `target` at affinity `level`.
    AffinityInfo { target: u64, level: u64 },
    /// The partition asked to be reset or switched off: its fault policy decides.
    Stop(StopCause),
    /// Answer `AUDIT_INFO` from the log (granted).
    AuditInfo,
    /// Answer `AUDIT_READ` with half `half` (0 or 1) of slot `slot` (granted; the slot
    /// is checked against the log).
    AuditRead { slot: u64, half: u8 },
    /// A function nobody implements: answer `NOT_SUPPORTED` in x0 (x1..x3 zero), and
    /// count it (it leaves no other trace).
    Unknown,
}

fn ret(v: i64) -> Answer {
    Answer::Return([v as u64, 0, 0, 0])
}

/// PSCI functions a partition can call, as reported by PSCI_FEATURES.
const PSCI_SUPPORTED: &[u32] = &[
    psci::VERSION,
    psci::CPU_SUSPEND_32,
    psci::CPU_SUSPEND_64,
    psci::CPU_OFF,
    psci::CPU_ON_32,
    psci::CPU_ON_64,
    psci::AFFINITY_INFO_64,
    psci::MIGRATE_INFO_TYPE,
    psci::SYSTEM_OFF,
    psci::SYSTEM_RESET,
    psci::SYSTEM_RESET2_64,
    psci::FEATURES,
    smccc::VERSION,
];

/// The answer (x0; x1..x3 are zero) to a call that depends on nothing but its own
/// arguments: versions and features. The EL2 binary answers these before it looks up
/// the calling partition (the hypercall fast path); [`answer`] gives the same.
pub fn stateless(function: u32, arg0: u64) -> Option<u64> {
    let v = match function {
        psci::VERSION => psci::VERSION_1_1 as i64,
        psci::FEATURES => {
            let fid = arg0 as u32;
            if PSCI_SUPPORTED.contains(&fid) {
                0
            } else {
                psci::NOT_SUPPORTED as i64
            }
        }
        // 2: no trusted OS that needs migration.
        psci::MIGRATE_INFO_TYPE => 2,
        smccc::VERSION => smccc::VERSION_1_1 as i64,
        smccc::ARCH_FEATURES => {
            let fid = arg0 as u32;
            if fid == smccc::VERSION || fid == smccc::ARCH_FEATURES {
                0
            } else {
                psci::NOT_SUPPORTED as i64
            }
        }
        _ => return None,
    };
    Some(v as u64)
}

pub fn answer(function: u32, args: [u64; 7], caller: &Caller) -> Answer {
    if let Some(v) = stateless(function, args[0]) {
        return Answer::Return([v, 0, 0, 0]);
    }
    match function {
        // A power-down request may return at once as if woken (PSCI 1.1, 5.4.2).
        psci::CPU_SUSPEND_32 | psci::CPU_SUSPEND_64 => ret(psci::SUCCESS as i64),
        psci::CPU_OFF => Answer::CpuOff,
        // The partition's vCPU power states decide (`crate::vcpu`); SMC32 calls carry
        // 32-bit addresses.
        psci::CPU_ON_32 => Answer::CpuOn {
            target: args[0] & 0xFFFF_FFFF,
            entry: args[1] as u32 as u64,
            context: args[2] as u32 as u64,
        },
        psci::CPU_ON_64 => Answer::CpuOn { target: args[0], entry: args[1], context: args[2] },
        psci::AFFINITY_INFO_64 => Answer::AffinityInfo { target: args[0], level: args[1] },
        psci::SYSTEM_OFF => Answer::Stop(StopCause::OffRequest),
        psci::SYSTEM_RESET | psci::SYSTEM_RESET2_64 => Answer::Stop(StopCause::ResetRequest),
        abi::CONSOLE_WRITE => {
            let len = args[0] as usize;
            if len > abi::CONSOLE_WRITE_MAX {
                return Answer::Return([abi::INVALID_PARAMETERS, 0, 0, 0]);
            }
            let mut bytes = [0u8; abi::CONSOLE_WRITE_MAX];
            for (i, word) in args[1..7].iter().enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
            }
            Answer::ConsoleWrite { bytes, len }
        }
        abi::AUDIT_INFO | abi::AUDIT_READ if !caller.audit_reader => ret(abi::NOT_SUPPORTED as i64),
        abi::AUDIT_INFO => Answer::AuditInfo,
        abi::AUDIT_READ => match u8::try_from(args[1]) {
            Ok(half @ (0 | 1)) => Answer::AuditRead { slot: args[0], half },
            _ => ret(abi::INVALID_PARAMETERS as i64),
        },
        abi::PARTITION_STATUS => Answer::Return([abi::SUCCESS, caller.start as u64, u64::from(caller.restarts), 0]),
        _ => Answer::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: Caller =
        Caller { vcpu: 0, vcpu_count: 1, start: StartCondition::NormalStart, restarts: 0, audit_reader: false };

    /// The fast path answers only calls whose answer needs no state, and answers them
    /// as `answer` does.
    #[test]
    fn stateless_calls_answer_as_the_full_path() {
        let calls = [
            (psci::VERSION, 0),
            (psci::FEATURES, psci::CPU_ON_64 as u64),
            (psci::FEATURES, 0x8400_00FF),
            (psci::MIGRATE_INFO_TYPE, 0),
            (smccc::VERSION, 0),
            (smccc::ARCH_FEATURES, smccc::VERSION as u64),
            (smccc::ARCH_FEATURES, 0x8000_7FFF),
        ];
        for (f, a) in calls {
            let v = stateless(f, a).unwrap_or_else(|| panic!("{f:#x} is stateless"));
            assert_eq!(answer(f, [a, 0, 0, 0, 0, 0, 0], &CALLER), Answer::Return([v, 0, 0, 0]), "{f:#x}");
        }
        for f in [psci::CPU_ON_64, psci::CPU_OFF, psci::SYSTEM_RESET, abi::CONSOLE_WRITE, abi::PARTITION_STATUS] {
            assert_eq!(stateless(f, 0), None, "{f:#x} needs the partition");
        }
        assert_eq!(stateless(0xC600_0000, 0), None, "unknown calls take the full path (NOT_SUPPORTED there)");
    }

    #[test]
    fn psci_version_features_and_reset() {
        assert_eq!(answer(psci::VERSION, [0; 7], &CALLER), Answer::Return([0x10001, 0, 0, 0]));
        assert_eq!(answer(psci::FEATURES, [psci::SYSTEM_RESET as u64, 0, 0, 0, 0, 0, 0], &CALLER), ret(0));
        assert_eq!(answer(psci::FEATURES, [0x8400_00FF, 0, 0, 0, 0, 0, 0], &CALLER), ret(-1));
        assert_eq!(answer(psci::SYSTEM_RESET, [0; 7], &CALLER), Answer::Stop(StopCause::ResetRequest));
        assert_eq!(answer(psci::SYSTEM_OFF, [0; 7], &CALLER), Answer::Stop(StopCause::OffRequest));
    }

    /// HM-005: every hypercall number has an answer; unknown ones are `NOT_SUPPORTED`
    /// (the EL2 binary answers [`Answer::Unknown`] so and counts it).
    #[test]
    fn unknown_calls_are_not_supported() {
        for f in [0u32, 0x8400_0020, 0xC200_0000, 0xFFFF_FFFF] {
            assert_eq!(answer(f, [u64::MAX; 7], &CALLER), Answer::Unknown);
        }
    }

    #[test]
    fn console_write_unpacks_bytes_and_bounds_length() {
        let a = answer(abi::CONSOLE_WRITE, [3, u64::from_le_bytes(*b"hi!\0\0\0\0\0"), 0, 0, 0, 0, 0], &CALLER);
        match a {
            Answer::ConsoleWrite { bytes, len } => assert_eq!(&bytes[..len], b"hi!"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answer(abi::CONSOLE_WRITE, [49, 0, 0, 0, 0, 0, 0], &CALLER),
            Answer::Return([abi::INVALID_PARAMETERS, 0, 0, 0])
        );
    }

    /// TRUST-007: only a partition granted `audit_reader` reaches the audit log, and
    /// only to read it (there is no call that writes it).
    #[test]
    fn audit_export_is_granted_read_only() {
        let reader = Caller { audit_reader: true, ..CALLER };
        for f in [abi::AUDIT_INFO, abi::AUDIT_READ] {
            assert_eq!(answer(f, [0; 7], &CALLER), Answer::Return([abi::NOT_SUPPORTED, 0, 0, 0]));
        }
        assert_eq!(answer(abi::AUDIT_INFO, [0; 7], &reader), Answer::AuditInfo);
        assert_eq!(answer(abi::AUDIT_READ, [7, 1, 0, 0, 0, 0, 0], &reader), Answer::AuditRead { slot: 7, half: 1 });
        for half in [2, 256, u64::MAX] {
            assert_eq!(
                answer(abi::AUDIT_READ, [0, half, 0, 0, 0, 0, 0], &reader),
                Answer::Return([abi::INVALID_PARAMETERS, 0, 0, 0])
            );
        }
    }

    #[test]
    fn cpu_on_and_affinity_info_go_to_the_partitions_power_states() {
        assert_eq!(
            answer(psci::CPU_ON_64, [1, 0x4000_2000, 7, 0, 0, 0, 0], &CALLER),
            Answer::CpuOn { target: 1, entry: 0x4000_2000, context: 7 }
        );
        assert_eq!(
            answer(psci::CPU_ON_32, [1 << 40 | 1, 1 << 33 | 0x10, 1 << 32 | 5, 0, 0, 0, 0], &CALLER),
            Answer::CpuOn { target: 1, entry: 0x10, context: 5 },
            "SMC32: 32-bit arguments"
        );
        assert_eq!(
            answer(psci::AFFINITY_INFO_64, [1, 0, 0, 0, 0, 0, 0], &CALLER),
            Answer::AffinityInfo { target: 1, level: 0 }
        );
    }
}

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
    /// What this core does against branch-predictor attacks, as `SMCCC_ARCH_FEATURES`
    /// reports it ([`crate::speculation::Plan::answers`]).
    pub workarounds: Workarounds,
}

/// `SMCCC_ARCH_FEATURES` of `SMCCC_ARCH_WORKAROUND_1`, `_2` and `_3` on the calling
/// core (Arm DEN 0028): 0 implemented, 1 (`_1`, `_3`) not required on this core, -2
/// (`_2`) not required, -1 not supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workarounds {
    pub wa1: i32,
    pub wa2: i32,
    pub wa3: i32,
}

impl Workarounds {
    /// Nothing known or done: every workaround unsupported.
    pub const NONE: Workarounds = Workarounds { wa1: -1, wa2: -1, wa3: -1 };
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
/// arguments and the core it runs on: versions, features and the SMCCC workarounds.
/// The EL2 binary answers these before it looks up the calling partition (the
/// hypercall fast path); [`answer`] gives the same.
///
/// A workaround call (`SMCCC_ARCH_WORKAROUND_1` or `_3`) reported implemented has
/// already been carried out by the time this runs: every entry from a partition
/// applies it in the exception vector. It then returns SUCCESS, as it does where the
/// core does not need it; elsewhere NOT_SUPPORTED, as for any unknown call.
///
/// `workarounds` is asked only for those calls (the EL2 binary looks them up per core).
pub fn stateless(function: u32, arg0: u64, workarounds: impl FnOnce() -> Workarounds) -> Option<u64> {
    let done = |feature: i32| if feature >= 0 { 0 } else { psci::NOT_SUPPORTED as i64 };
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
        smccc::ARCH_FEATURES => match arg0 as u32 {
            smccc::VERSION | smccc::ARCH_FEATURES => 0,
            smccc::ARCH_WORKAROUND_1 => i64::from(workarounds().wa1),
            smccc::ARCH_WORKAROUND_2 => i64::from(workarounds().wa2),
            smccc::ARCH_WORKAROUND_3 => i64::from(workarounds().wa3),
            _ => psci::NOT_SUPPORTED as i64,
        },
        smccc::ARCH_WORKAROUND_1 => done(workarounds().wa1),
        smccc::ARCH_WORKAROUND_3 => done(workarounds().wa3),
        // No dynamic store-bypass mitigation to switch.
        smccc::ARCH_WORKAROUND_2 => psci::NOT_SUPPORTED as i64,
        _ => return None,
    };
    Some(v as u64)
}

pub fn answer(function: u32, args: [u64; 7], caller: &Caller) -> Answer {
    if let Some(v) = stateless(function, args[0], || caller.workarounds) {
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

    const CALLER: Caller = Caller {
        vcpu: 0,
        vcpu_count: 1,
        start: StartCondition::NormalStart,
        restarts: 0,
        audit_reader: false,
        workarounds: Workarounds::NONE,
    };

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
            (smccc::ARCH_FEATURES, 0x8000_7FFE),
            (smccc::ARCH_FEATURES, smccc::ARCH_WORKAROUND_1 as u64),
            (smccc::ARCH_FEATURES, smccc::ARCH_WORKAROUND_3 as u64),
            (smccc::ARCH_WORKAROUND_1, 0),
            (smccc::ARCH_WORKAROUND_2, 1),
        ];
        for (f, a) in calls {
            let v = stateless(f, a, || CALLER.workarounds).unwrap_or_else(|| panic!("{f:#x} is stateless"));
            assert_eq!(answer(f, [a, 0, 0, 0, 0, 0, 0], &CALLER), Answer::Return([v, 0, 0, 0]), "{f:#x}");
        }
        for f in [psci::CPU_ON_64, psci::CPU_OFF, psci::SYSTEM_RESET, abi::CONSOLE_WRITE, abi::PARTITION_STATUS] {
            assert_eq!(stateless(f, 0, || CALLER.workarounds), None, "{f:#x} needs the partition");
        }
        assert_eq!(
            stateless(0xC600_0000, 0, || CALLER.workarounds),
            None,
            "unknown calls take the full path (NOT_SUPPORTED there)"
        );
    }

    /// ISO-009: SMCCC_ARCH_FEATURES reports each workaround as the core's plan has it
    /// (DEN 0028), and a call of one reported implemented or unneeded returns SUCCESS:
    /// the vector already applied it on the way in.
    #[test]
    fn workaround_discovery_follows_what_the_core_does() {
        use crate::speculation::{plan, CoreIds, Firmware, IMPLEMENTED};
        let a72 = CoreIds { midr: 0x410F_D083, ..Default::default() };
        let a53 = CoreIds { midr: 0x410F_D034, ..Default::default() };
        let firmware = Firmware { wa1: IMPLEMENTED, ..Firmware::NONE };
        let features = |w: &Workarounds, fid: u32| stateless(smccc::ARCH_FEATURES, fid as u64, || *w).map(|v| v as i64);
        let call = |w: &Workarounds, fid: u32| stateless(fid, 0, || *w).map(|v| v as i64);
        let cases = [
            // (core, firmware) -> ARCH_FEATURES of _1, _2, _3; then the calls of _1, _3
            (a72, firmware, [0, -1, 0], [0, 0]),
            (a72, Firmware::NONE, [-1, -1, -1], [-1, -1]),
            (a53, Firmware::NONE, [1, -2, 1], [0, 0]),
        ];
        for (ids, fw, features_of, calls) in cases {
            let w = plan(&ids, &fw).answers();
            let got = [smccc::ARCH_WORKAROUND_1, smccc::ARCH_WORKAROUND_2, smccc::ARCH_WORKAROUND_3]
                .map(|fid| features(&w, fid).unwrap());
            assert_eq!(got, features_of, "{ids:x?} {fw:?}");
            let got = [smccc::ARCH_WORKAROUND_1, smccc::ARCH_WORKAROUND_3].map(|fid| call(&w, fid).unwrap());
            assert_eq!(got, calls, "{ids:x?} {fw:?}");
            assert_eq!(call(&w, smccc::ARCH_WORKAROUND_2), Some(-1), "no dynamic store-bypass switch");
        }
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

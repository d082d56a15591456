//! What a partition's synchronous exception means. The EL2 vector hands over the
//! syndrome registers and the guest's argument registers; [`classify`] answers with a
//! value, never a panic, whatever the guest did.

use crate::esr::{Esr, ExceptionClass, FaultStatus, SysRegAccess};

/// The registers a classification needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapInfo {
    pub esr: u64,
    /// FAR_EL2: the faulting virtual address (guest stage 1).
    pub far: u64,
    /// HPFAR_EL2: the faulting IPA page, for stage-2 aborts (where the architecture
    /// leaves it UNKNOWN, the EL2 binary's own translation of FAR, or
    /// [`UNKNOWN_HPFAR`]).
    pub hpfar: u64,
    /// The guest's x0..x7 (hypercall function and arguments).
    pub x: [u64; 8],
}

/// The meaning of a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `HVC #0`: a PSCI, SMCCC or Septum call; see [`crate::hypercall`].
    Hypercall { function: u32, args: [u64; 7] },
    /// DC ISW/CSW/CISW. Trapped because set/way maintenance acts on the whole shared
    /// cache (an invalidate could discard another partition's dirty lines). Completed
    /// as a no-op: the hypervisor keeps partition memory coherent itself.
    SetWayMaintenance,
    /// A write to an SGI generation register: the SGI goes to the partition's own
    /// vCPUs named in the value of guest register `reg` (31: zero), see
    /// [`crate::vgic::sgi_targets`].
    Sgi { reg: u8 },
    /// A rule broken: the health monitor applies the partition's policy.
    Violation(Violation),
}

/// A partition broke a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A load or store to an IPA its stage 2 does not map (or maps read-only).
    Stage2DataAbort { ipa: u64, va: u64, write: bool, esr: Esr },
    /// An instruction fetch its stage 2 does not allow.
    Stage2InstructionAbort { ipa: u64, va: u64, esr: Esr },
    /// SMC: partitions have no path to the secure monitor.
    Smc { function: u32, esr: Esr },
    /// HVC with an immediate other than 0.
    HvcImmediate { imm: u16, esr: Esr },
    /// An instruction the partition may not execute (trapped or undefined at EL2).
    Undefined { esr: Esr },
    /// A system register or instruction the hypervisor traps and does not emulate.
    SysReg { access: SysRegAccess, esr: Esr },
    /// An asynchronous error attributed to the partition.
    SError { esr: Esr },
    /// Any other exception class routed to EL2.
    Unexpected { esr: Esr },
}

impl Violation {
    pub fn esr(&self) -> Esr {
        match *self {
            Violation::Stage2DataAbort { esr, .. }
            | Violation::Stage2InstructionAbort { esr, .. }
            | Violation::Smc { esr, .. }
            | Violation::HvcImmediate { esr, .. }
            | Violation::Undefined { esr }
            | Violation::SysReg { esr, .. }
            | Violation::SError { esr }
            | Violation::Unexpected { esr } => esr,
        }
    }

    /// One phrase for the log.
    pub fn summary(&self) -> &'static str {
        match self {
            Violation::Stage2DataAbort { .. } => "access outside its memory map",
            Violation::Stage2InstructionAbort { .. } => "instruction fetch outside its memory map",
            Violation::Smc { .. } => "forbidden SMC",
            Violation::HvcImmediate { .. } => "HVC with unknown immediate",
            Violation::Undefined { .. } => "undefined or trapped instruction",
            Violation::SysReg { .. } => "trapped system register access",
            Violation::SError { .. } => "SError",
            Violation::Unexpected { .. } => "unexpected exception",
        }
    }
}

/// The IPA of a stage-2 abort when it could not be found (a permission fault whose VA
/// no longer translates: the guest changed its tables meanwhile).
pub const UNKNOWN_IPA: u64 = u64::MAX;
/// [`TrapInfo::hpfar`] when the EL2 binary could not find the faulting IPA (no real
/// HPFAR_EL2 value has its RES0 bits [3:0] set).
pub const UNKNOWN_HPFAR: u64 = u64::MAX;

/// The IPA of a stage-2 abort: HPFAR_EL2.FIPA gives the page, FAR_EL2 the offset.
pub fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    if hpfar == UNKNOWN_HPFAR {
        return UNKNOWN_IPA;
    }
    (((hpfar >> 4) & 0xFF_FFFF_FFFF) << 12) | (far & 0xFFF)
}

/// Whether HPFAR_EL2 holds the faulting IPA for a lower-EL abort with syndrome `esr`.
/// The architecture writes it for stage-2 translation, access flag and address size
/// faults, and for any fault on a stage-2 walk of the guest's own tables (S1PTW); for
/// a permission fault it leaves it UNKNOWN, and the EL2 binary must translate FAR
/// itself (`AT S1E1R`/`S1E1W`, [`hpfar_from_par`]).
pub fn hpfar_valid(esr: u64) -> bool {
    let esr = Esr(esr);
    let (status, s1ptw) = match esr.class() {
        ExceptionClass::DataAbortLower => {
            let da = esr.data_abort();
            (da.status, da.s1ptw)
        }
        ExceptionClass::InstructionAbortLower => (esr.instruction_fault(), esr.iss() & (1 << 7) != 0),
        _ => return true,
    };
    s1ptw || !matches!(status, FaultStatus::Permission(_))
}

/// An HPFAR_EL2-shaped value for the IPA in `par` (PAR_EL1 after a successful `AT
/// S1E1*`: PA bits [47:12] hold the IPA's page), so [`fault_ipa`] serves both; `None`
/// if the translation failed (PAR.F): the guest changed its tables meanwhile.
pub fn hpfar_from_par(par: u64) -> Option<u64> {
    (par & 1 == 0).then_some(((par >> 12) & 0xF_FFFF_FFFF) << 4)
}

/// Whether a trap with this ESR is a hypercall (`HVC #0`): [`classify`] makes it
/// [`Exit::Hypercall`] with `x0` as the function and `x1..=x7` as the arguments. The
/// EL2 binary uses this to take its most common exit without building a [`TrapInfo`].
pub fn is_hypercall(esr: u64) -> bool {
    let esr = Esr(esr);
    esr.class() == ExceptionClass::Hvc64 && esr.imm16() == 0
}

pub fn classify(t: &TrapInfo) -> Exit {
    let esr = Esr(t.esr);
    match esr.class() {
        ExceptionClass::Hvc64 if is_hypercall(t.esr) => {
            Exit::Hypercall { function: t.x[0] as u32, args: [t.x[1], t.x[2], t.x[3], t.x[4], t.x[5], t.x[6], t.x[7]] }
        }
        ExceptionClass::Hvc64 => Exit::Violation(Violation::HvcImmediate { imm: esr.imm16(), esr }),
        ExceptionClass::Smc64 => Exit::Violation(Violation::Smc { function: t.x[0] as u32, esr }),
        ExceptionClass::DataAbortLower => {
            let da = esr.data_abort();
            Exit::Violation(Violation::Stage2DataAbort {
                ipa: fault_ipa(t.hpfar, t.far),
                va: t.far,
                write: da.write,
                esr,
            })
        }
        ExceptionClass::InstructionAbortLower => {
            Exit::Violation(Violation::Stage2InstructionAbort { ipa: fault_ipa(t.hpfar, t.far), va: t.far, esr })
        }
        ExceptionClass::SysReg64 => {
            let access = SysRegAccess::decode(esr);
            if access.is_set_way() {
                Exit::SetWayMaintenance
            } else if access.is_sgi_write() {
                Exit::Sgi { reg: access.reg }
            } else {
                Exit::Violation(Violation::SysReg { access, esr })
            }
        }
        ExceptionClass::Unknown => Exit::Violation(Violation::Undefined { esr }),
        ExceptionClass::SError => Exit::Violation(Violation::SError { esr }),
        _ => Exit::Violation(Violation::Unexpected { esr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage2_abort_reports_ipa_and_direction() {
        let t = TrapInfo {
            esr: (0x24 << 26) | (1 << 25) | (1 << 6) | 0x07,
            far: 0x5000_0123,
            hpfar: (0x5000_0000 >> 12) << 4,
            x: [0; 8],
        };
        match classify(&t) {
            Exit::Violation(Violation::Stage2DataAbort { ipa, write, .. }) => {
                assert_eq!(ipa, 0x5000_0123);
                assert!(write);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hvc_zero_is_a_call_and_smc_is_forbidden() {
        assert!(is_hypercall((0x16 << 26) | (1 << 25)));
        assert!(!is_hypercall((0x16 << 26) | (1 << 25) | 5), "HVC #5");
        assert!(!is_hypercall((0x17 << 26) | (1 << 25)), "SMC");
        let mut t = TrapInfo { esr: (0x16 << 26) | (1 << 25), ..Default::default() };
        t.x[0] = 0x8400_0009;
        t.x[1] = 7;
        assert_eq!(classify(&t), Exit::Hypercall { function: 0x8400_0009, args: [7, 0, 0, 0, 0, 0, 0] });
        t.esr |= 5;
        assert!(matches!(classify(&t), Exit::Violation(Violation::HvcImmediate { imm: 5, .. })));
        t.esr = (0x17 << 26) | (1 << 25);
        assert!(matches!(classify(&t), Exit::Violation(Violation::Smc { function: 0x8400_0009, .. })));
    }

    /// HM-001: the IPA of a permission fault comes from translating FAR (HPFAR is
    /// UNKNOWN then); translation faults and walks keep HPFAR.
    #[test]
    fn hpfar_is_used_only_where_the_architecture_writes_it() {
        let da = |fsc: u64, s1ptw: bool| (0x24 << 26) | (1 << 25) | (u64::from(s1ptw) << 7) | fsc;
        assert!(hpfar_valid(da(0x07, false)), "translation fault, level 3");
        assert!(hpfar_valid(da(0x0B, false)), "access flag fault");
        assert!(!hpfar_valid(da(0x0F, false)), "permission fault, level 3");
        assert!(hpfar_valid(da(0x0F, true)), "permission fault on the stage-1 walk");
        assert!(!hpfar_valid((0x20 << 26) | (1 << 25) | 0x0E), "instruction permission fault");
        let par = 0x0000_0000_5000_0000 | (0xFF << 56); // attributes in the top byte
        let hpfar = hpfar_from_par(par).unwrap();
        assert_eq!(fault_ipa(hpfar, 0x1234_5678), 0x5000_0678);
        assert_eq!(hpfar_from_par(1), None, "PAR.F: not translated");
        assert_eq!(fault_ipa(UNKNOWN_HPFAR, 0x1234), UNKNOWN_IPA);
    }

    #[test]
    fn a_16_bit_instruction_is_two_bytes() {
        assert_eq!(Esr((0x24 << 26) | (1 << 25)).instruction_len(), 4);
        assert_eq!(Esr(0x24 << 26).instruction_len(), 2);
    }

    /// HM-005: every syndrome a guest can cause has an answer, never a panic.
    #[test]
    fn every_exception_class_has_an_answer() {
        for ec in 0..64u64 {
            for iss in [0u64, 0x1FF_FFFF, 0x0AA_AAAA] {
                let _ = classify(&TrapInfo { esr: (ec << 26) | iss, far: u64::MAX, hpfar: u64::MAX, x: [u64::MAX; 8] });
            }
        }
    }
}

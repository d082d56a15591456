//! A partition owns the debug and performance-monitor registers of its cores, with
//! two exceptions that reach beyond them, so the hypervisor traps and emulates them:
//!
//! * The PMU's filters. Before PMUv3p5 (`MDCR_EL2.HPMD` and `HCCD`) nothing stops a
//!   counter the guest owns from counting at EL2 if its filter says so (`NSH`): a
//!   timing window into the hypervisor. Every PMU access traps (`MDCR_EL2.TPM`) and is
//!   carried out for the guest, with `NSH` cleared on the way.
//! * The OS double lock (`OSDLR_EL1.DLK`): once set, the core may not halt, so the
//!   hypervisor's semihosting `HLT` becomes undefined on it. The OS-lock registers trap
//!   (`MDCR_EL2.TDOSA`): the double lock and the power-down request read as zero and
//!   ignore writes (a partition has no power-down of its own to prepare); the OS lock
//!   itself (`OSLAR_EL1`, `OSLSR_EL1`) is the guest's and passed through.
//!
//! This module decides: [`mdcr_el2`] (the trap configuration), [`decode`] (what a
//! trapped access is) and [`guest_write`] (what reaches the register). The EL2 binary
//! performs the access.

use crate::esr::SysRegAccess;

/// A performance-monitor register a guest can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmuReg {
    Cr,
    CntenSet,
    CntenClr,
    OvsClr,
    OvsSet,
    Swinc,
    Selr,
    Ceid0,
    Ceid1,
    Ccntr,
    XevTyper,
    XevCntr,
    UserEnr,
    IntenSet,
    IntenClr,
    /// `PMEVCNTR<n>_EL0`, n < 31.
    EvCntr(u8),
    /// `PMEVTYPER<n>_EL0`, n < 31; n = 31 is `PMCCFILTR_EL0`.
    EvTyper(u8),
}

/// The index `PMEVTYPER<n>` uses for the cycle counter's filter, `PMCCFILTR_EL0`.
pub const CYCLE_COUNTER: u8 = 31;

/// A trapped register this module emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Pmu(PmuReg),
    /// `OSLAR_EL1` (write) and `OSLSR_EL1` (read): the guest's OS lock.
    OsLock,
    /// `OSDLR_EL1`: read as zero, writes ignored.
    DoubleLock,
    /// `DBGPRCR_EL1`: read as zero, writes ignored.
    PowerDownRequest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emulated {
    pub target: Target,
    pub read: bool,
    /// The guest register (31: XZR).
    pub reg: u8,
}

/// What a trapped `MRS`/`MSR` (EC 0x18) is, if this module emulates it.
pub fn decode(a: &SysRegAccess) -> Option<Emulated> {
    let target = match (a.op0, a.op1, a.crn, a.crm, a.op2) {
        (2, 0, 1, 0, 4) if !a.read => Target::OsLock,
        (2, 0, 1, 1, 4) if a.read => Target::OsLock,
        (2, 0, 1, 3, 4) => Target::DoubleLock,
        (2, 0, 1, 4, 4) => Target::PowerDownRequest,
        (3, 3, 9, 12, op2) => Target::Pmu(match op2 {
            0 => PmuReg::Cr,
            1 => PmuReg::CntenSet,
            2 => PmuReg::CntenClr,
            3 => PmuReg::OvsClr,
            4 => PmuReg::Swinc,
            5 => PmuReg::Selr,
            6 => PmuReg::Ceid0,
            _ => PmuReg::Ceid1,
        }),
        (3, 3, 9, 13, 0) => Target::Pmu(PmuReg::Ccntr),
        (3, 3, 9, 13, 1) => Target::Pmu(PmuReg::XevTyper),
        (3, 3, 9, 13, 2) => Target::Pmu(PmuReg::XevCntr),
        (3, 3, 9, 14, 0) => Target::Pmu(PmuReg::UserEnr),
        (3, 3, 9, 14, 3) => Target::Pmu(PmuReg::OvsSet),
        (3, 0, 9, 14, 1) => Target::Pmu(PmuReg::IntenSet),
        (3, 0, 9, 14, 2) => Target::Pmu(PmuReg::IntenClr),
        (3, 3, 14, crm @ 8..=15, op2) => {
            let n = ((crm & 0b11) << 3) | op2;
            Target::Pmu(if crm < 12 {
                // PMEVCNTR31 does not exist (the cycle counter has its own register).
                if n == CYCLE_COUNTER {
                    return None;
                }
                PmuReg::EvCntr(n)
            } else {
                PmuReg::EvTyper(n)
            })
        }
        _ => return None,
    };
    Some(Emulated { target, read: a.read, reg: a.reg })
}

/// `PMEVTYPER<n>_EL0.NSH` / `PMCCFILTR_EL0.NSH`: count at EL2.
pub const NSH: u64 = 1 << 27;

/// The value a guest write of `value` to `reg` puts in the register: the event
/// filters never count at EL2. (PMCR, the enables and counters are the guest's.)
pub fn guest_write(reg: PmuReg, value: u64) -> u64 {
    match reg {
        PmuReg::EvTyper(_) | PmuReg::XevTyper => value & !NSH,
        _ => value,
    }
}

/// Whether an access to `reg` reaches an implemented register when the core has
/// `counters` event counters (`PMCR_EL0.N`): others read as zero and ignore writes
/// (on hardware they are undefined; the guest's ID registers say how many there are).
pub fn implemented(reg: PmuReg, counters: u8) -> bool {
    match reg {
        PmuReg::EvCntr(n) => n < counters,
        PmuReg::EvTyper(n) => n < counters || n == CYCLE_COUNTER,
        _ => true,
    }
}

/// What EL2 does about the PMU on a core, from `ID_AA64DFR0_EL1.PMUVer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmuPolicy {
    /// No architected PMU: nothing to own; accesses trap and read as zero.
    Absent,
    /// PMUv3 before v3p5: trap every access and clear the EL2 filter bits.
    TrapAndFilter,
    /// PMUv3p5 or later: `HPMD` and `HCCD` keep every counter off at EL2 by hardware;
    /// the guest accesses its PMU directly.
    Prohibit,
}

pub fn pmu_policy(dfr0: u64) -> PmuPolicy {
    match (dfr0 >> 8) & 0xF {
        0 | 0xF => PmuPolicy::Absent,
        1..=5 => PmuPolicy::TrapAndFilter,
        _ => PmuPolicy::Prohibit,
    }
}

/// MDCR_EL2 bits.
pub const MDCR_TPM: u64 = 1 << 6;
pub const MDCR_TDOSA: u64 = 1 << 10;
pub const MDCR_HPMD: u64 = 1 << 17;
pub const MDCR_HCCD: u64 = 1 << 23;

/// MDCR_EL2 for a partition's core: every event counter the guest's (HPMN = N), none
/// counting at EL2 (by trap or by HPMD/HCCD), the OS-lock registers trapped; debug
/// register accesses and debug exceptions stay the guest's (TDA = TDE = 0).
pub fn mdcr_el2(dfr0: u64, counters: u8) -> u64 {
    let hpmn = u64::from(counters & 0x1F);
    let pmu = match pmu_policy(dfr0) {
        PmuPolicy::Absent | PmuPolicy::TrapAndFilter => MDCR_TPM,
        PmuPolicy::Prohibit => MDCR_HPMD | MDCR_HCCD,
    };
    hpmn | pmu | MDCR_TDOSA
}

/// Breakpoints and watchpoints the core implements (`ID_AA64DFR0_EL1.BRPs`, `WRPs`).
pub fn breakpoints_and_watchpoints(dfr0: u64) -> (u8, u8) {
    (((dfr0 >> 12) & 0xF) as u8 + 1, ((dfr0 >> 20) & 0xF) as u8 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esr::Esr;

    fn access(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, reg: u64, read: bool) -> SysRegAccess {
        let iss = (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (reg << 5) | (crm << 1) | u64::from(read);
        SysRegAccess::decode(Esr((0x18 << 26) | (1 << 25) | iss))
    }

    /// QEMU's Cortex-A72 and Cortex-A53: PMUv3, 6 breakpoints, 4 watchpoints.
    const DFR0_A72: u64 = 0x1030_5106;

    /// ISO-008: on a PMUv3 core every PMU access traps and the OS-lock registers trap;
    /// on PMUv3p5 the hardware keeps the counters off at EL2 instead.
    #[test]
    fn mdcr_traps_what_the_core_cannot_prohibit() {
        assert_eq!(pmu_policy(DFR0_A72), PmuPolicy::TrapAndFilter);
        assert_eq!(mdcr_el2(DFR0_A72, 6), 6 | MDCR_TPM | MDCR_TDOSA);
        let v3p5 = (DFR0_A72 & !0xF00) | (6 << 8);
        assert_eq!(mdcr_el2(v3p5, 20), 20 | MDCR_HPMD | MDCR_HCCD | MDCR_TDOSA);
        assert_eq!(pmu_policy(0), PmuPolicy::Absent);
        assert_eq!(mdcr_el2(0, 0), MDCR_TPM | MDCR_TDOSA);
        assert_eq!(breakpoints_and_watchpoints(DFR0_A72), (6, 4));
    }

    /// ISO-008: a filter the guest writes never counts at EL2.
    #[test]
    fn event_filters_lose_nsh() {
        let pmccfiltr = decode(&access(3, 3, 14, 15, 7, 2, false)).unwrap();
        assert_eq!(pmccfiltr, Emulated { target: Target::Pmu(PmuReg::EvTyper(CYCLE_COUNTER)), read: false, reg: 2 });
        let evtyper5 = decode(&access(3, 3, 14, 12, 5, 0, false)).unwrap();
        assert_eq!(evtyper5.target, Target::Pmu(PmuReg::EvTyper(5)));
        for reg in [PmuReg::EvTyper(5), PmuReg::EvTyper(CYCLE_COUNTER), PmuReg::XevTyper] {
            assert_eq!(guest_write(reg, NSH | 0x11 | 1 << 31), 0x11 | 1 << 31);
        }
        assert_eq!(guest_write(PmuReg::Cr, 0x7F), 0x7F);
        assert_eq!(guest_write(PmuReg::EvCntr(3), NSH), NSH, "a counter's value is not a filter");
    }

    #[test]
    fn decodes_every_pmu_register_and_the_os_lock_registers() {
        let pmu = |op1, crn, crm, op2| decode(&access(3, op1, crn, crm, op2, 1, true)).map(|e| e.target);
        assert_eq!(pmu(3, 9, 12, 0), Some(Target::Pmu(PmuReg::Cr)));
        assert_eq!(pmu(3, 9, 12, 5), Some(Target::Pmu(PmuReg::Selr)));
        assert_eq!(pmu(3, 9, 13, 0), Some(Target::Pmu(PmuReg::Ccntr)));
        assert_eq!(pmu(3, 9, 14, 0), Some(Target::Pmu(PmuReg::UserEnr)));
        assert_eq!(pmu(0, 9, 14, 1), Some(Target::Pmu(PmuReg::IntenSet)));
        assert_eq!(pmu(3, 14, 8, 0), Some(Target::Pmu(PmuReg::EvCntr(0))));
        assert_eq!(pmu(3, 14, 11, 6), Some(Target::Pmu(PmuReg::EvCntr(30))));
        assert_eq!(pmu(3, 14, 11, 7), None, "there is no PMEVCNTR31");
        assert_eq!(pmu(3, 14, 13, 1), Some(Target::Pmu(PmuReg::EvTyper(9))));
        assert_eq!(pmu(0, 1, 0, 1), None, "ACTLR_EL1 is not emulated");
        let os = |crm, op2, read| decode(&access(2, 0, 1, crm, op2, 3, read)).map(|e| e.target);
        assert_eq!(os(0, 4, false), Some(Target::OsLock), "OSLAR_EL1");
        assert_eq!(os(1, 4, true), Some(Target::OsLock), "OSLSR_EL1");
        assert_eq!(os(3, 4, false), Some(Target::DoubleLock), "OSDLR_EL1");
        assert_eq!(os(4, 4, true), Some(Target::PowerDownRequest), "DBGPRCR_EL1");
        assert_eq!(os(0, 4, true), None, "OSLAR_EL1 is write-only");
    }

    #[test]
    fn counters_beyond_pmcr_n_are_not_reached() {
        assert!(implemented(PmuReg::EvCntr(5), 6));
        assert!(!implemented(PmuReg::EvCntr(6), 6));
        assert!(!implemented(PmuReg::EvTyper(6), 6));
        assert!(implemented(PmuReg::EvTyper(CYCLE_COUNTER), 0));
        assert!(implemented(PmuReg::Cr, 0));
    }
}

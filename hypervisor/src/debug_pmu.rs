//! The debug and performance-monitor state of a partition's core: its reset on every
//! vCPU entry (ISO-008), and the emulation of the registers EL2 traps
//! ([`septum_core::debug_pmu`]: the PMU before PMUv3p5, so no counter counts at EL2;
//! the OS double lock, so no guest stops its core from halting for the hypervisor's
//! semihosting). An emulated access is carried out at EL2 on this core's own
//! registers, which belong to the partition.

use aarch64_cpu::registers::{Readable, ID_AA64DFR0_EL1};
use septum_core::debug_pmu::{
    breakpoints_and_watchpoints, decode, guest_write, implemented, pmu_policy, Emulated, PmuPolicy, PmuReg, Target,
};
use septum_core::esr::{Esr, ExceptionClass, SysRegAccess};

use crate::trap::TrapFrame;

macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reads a PMU, debug or ID register of this core at EL2; reads of
        // these have no side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nostack, nomem, preserves_flags)) };
        v
    }};
}

macro_rules! msr {
    ($reg:expr, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: writes a PMU or debug register of this core, which belongs to the
        // partition running on it (or is being reset for it); EL2's own state and
        // memory are unaffected (the values written never enable counting at EL2).
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) v, options(nostack, nomem, preserves_flags)) };
    }};
}

fn isb() {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Event counters the core implements (`PMCR_EL0.N`).
fn counters() -> u8 {
    ((mrs!("pmcr_el0") >> 11) & 0x1F) as u8
}

/// Emulates the trapped system-register access of `esr` if it is one of the PMU or
/// OS-lock registers; false otherwise (the caller classifies it).
pub fn emulate(frame: &mut TrapFrame, esr: u64) -> bool {
    let esr = Esr(esr);
    if esr.class() != ExceptionClass::SysReg64 {
        return false;
    }
    let Some(e) = decode(&SysRegAccess::decode(esr)) else { return false };
    let value = if e.read { read(&e) } else { write(&e, frame.reg(e.reg)) };
    if e.read {
        frame.set_reg(e.reg, value);
    }
    true
}

fn read(e: &Emulated) -> u64 {
    match e.target {
        Target::OsLock => mrs!("oslsr_el1"),
        Target::DoubleLock | Target::PowerDownRequest => 0,
        Target::Pmu(reg) => pmu_read(reg),
    }
}

fn write(e: &Emulated, value: u64) -> u64 {
    match e.target {
        Target::OsLock => msr!("oslar_el1", value & 1),
        // The double lock and the power-down request are the hypervisor's.
        Target::DoubleLock | Target::PowerDownRequest => {}
        Target::Pmu(reg) => pmu_write(reg, guest_write(reg, value)),
    }
    0
}

fn pmu_present() -> bool {
    pmu_policy(ID_AA64DFR0_EL1.get()) != PmuPolicy::Absent
}

fn pmu_read(reg: PmuReg) -> u64 {
    if !pmu_present() || !implemented(reg, counters()) {
        return 0;
    }
    match reg {
        PmuReg::Cr => mrs!("pmcr_el0"),
        PmuReg::CntenSet | PmuReg::CntenClr => mrs!("pmcntenset_el0"),
        PmuReg::OvsClr | PmuReg::OvsSet => mrs!("pmovsset_el0"),
        PmuReg::Swinc => 0,
        PmuReg::Selr => mrs!("pmselr_el0"),
        PmuReg::Ceid0 => mrs!("pmceid0_el0"),
        PmuReg::Ceid1 => mrs!("pmceid1_el0"),
        PmuReg::Ccntr => mrs!("pmccntr_el0"),
        PmuReg::XevTyper => mrs!("pmxevtyper_el0"),
        PmuReg::XevCntr => mrs!("pmxevcntr_el0"),
        PmuReg::UserEnr => mrs!("pmuserenr_el0"),
        PmuReg::IntenSet | PmuReg::IntenClr => mrs!("pmintenset_el1"),
        PmuReg::EvCntr(n) => selected(n, || mrs!("pmxevcntr_el0")),
        PmuReg::EvTyper(n) => selected(n, || mrs!("pmxevtyper_el0")),
    }
}

fn pmu_write(reg: PmuReg, v: u64) {
    if !pmu_present() || !implemented(reg, counters()) {
        return;
    }
    match reg {
        PmuReg::Cr => msr!("pmcr_el0", v),
        PmuReg::CntenSet => msr!("pmcntenset_el0", v),
        PmuReg::CntenClr => msr!("pmcntenclr_el0", v),
        PmuReg::OvsClr => msr!("pmovsclr_el0", v),
        PmuReg::OvsSet => msr!("pmovsset_el0", v),
        PmuReg::Swinc => msr!("pmswinc_el0", v),
        PmuReg::Selr => msr!("pmselr_el0", v),
        // Read-only: a write is ignored.
        PmuReg::Ceid0 | PmuReg::Ceid1 => {}
        PmuReg::Ccntr => msr!("pmccntr_el0", v),
        PmuReg::XevTyper => msr!("pmxevtyper_el0", v),
        PmuReg::XevCntr => msr!("pmxevcntr_el0", v),
        PmuReg::UserEnr => msr!("pmuserenr_el0", v),
        PmuReg::IntenSet => msr!("pmintenset_el1", v),
        PmuReg::IntenClr => msr!("pmintenclr_el1", v),
        PmuReg::EvCntr(n) => selected(n, || msr!("pmxevcntr_el0", v)),
        PmuReg::EvTyper(n) => selected(n, || msr!("pmxevtyper_el0", v)),
    }
}

/// Runs `f` with counter `n` selected through PMSELR_EL0, which is restored after:
/// `PMEVCNTR<n>`/`PMEVTYPER<n>` reached by the architected indirection, so one access
/// routine serves all 31 (the guest's own selection is left as it was).
fn selected<T>(n: u8, f: impl FnOnce() -> T) -> T {
    let saved = mrs!("pmselr_el0");
    msr!("pmselr_el0", u64::from(n));
    isb();
    let r = f();
    msr!("pmselr_el0", saved);
    isb();
    r
}

/// Puts the PMU and the self-hosted debug state of this core at their reset values
/// for the next vCPU: counters stopped and zero, no overflow or interrupt enabled,
/// filters, selection and user access cleared; every implemented breakpoint and
/// watchpoint cleared; the OS lock locked (its cold-reset state) and the double lock
/// off; claim tags and the debug comms channel quiet.
pub fn reset() {
    let dfr0 = ID_AA64DFR0_EL1.get();
    if pmu_policy(dfr0) != PmuPolicy::Absent {
        let n = counters();
        let all = (1u64 << 31) | ((1u64 << n) - 1);
        // E = 0 stops everything; P and C zero the event and cycle counters.
        msr!("pmcr_el0", 0b110);
        msr!("pmcntenclr_el0", all);
        msr!("pmintenclr_el1", all);
        msr!("pmovsclr_el0", all);
        msr!("pmuserenr_el0", 0);
        msr!("pmccfiltr_el0", 0);
        msr!("pmccntr_el0", 0);
        for k in 0..n {
            msr!("pmselr_el0", u64::from(k));
            isb();
            msr!("pmxevtyper_el0", 0);
            msr!("pmxevcntr_el0", 0);
        }
        msr!("pmselr_el0", 0);
    }
    let (brps, wrps) = breakpoints_and_watchpoints(dfr0);
    clear_breakpoints(brps);
    clear_watchpoints(wrps);
    msr!("mdccint_el1", 0);
    msr!("dbgclaimclr_el1", 0xFF);
    // DBGPRCR_EL1 is left as firmware set it: the guest cannot reach it (trapped,
    // read as zero) and QEMU does not implement it.
    msr!("osdlr_el1", 0);
    // Locked, as after a cold reset; then the save/restore registers the lock guards.
    msr!("oslar_el1", 1);
    isb();
    msr!("oseccr_el1", 0);
    msr!("osdtrrx_el1", 0);
    msr!("osdtrtx_el1", 0);
    isb();
}

/// `DBG{B,W}{C,V}R<n>_EL1` are named by number in the instruction: one arm each.
macro_rules! clear_numbered {
    ($count:expr, $ctrl:literal, $value:literal, $($n:literal)*) => {
        $(
            if $n < $count {
                msr!(concat!($ctrl, stringify!($n), "_el1"), 0);
                msr!(concat!($value, stringify!($n), "_el1"), 0);
            }
        )*
    };
}

fn clear_breakpoints(count: u8) {
    clear_numbered!(count, "dbgbcr", "dbgbvr", 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
}

fn clear_watchpoints(count: u8) {
    clear_numbered!(count, "dbgwcr", "dbgwvr", 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
}

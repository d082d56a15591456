//! The EL1 state a vCPU starts from: architectural reset values, so a restarted
//! partition finds its core exactly as at first boot (MMU and caches off, no vectors,
//! timers stopped).

/// SCTLR_EL1 at reset: RES1 bits only (MMU, caches and alignment checks off).
const SCTLR_EL1_RESET: u64 = 0x30D0_0800;
/// CNTHCTL_EL2: EL1 may read the physical counter and use the physical timer
/// (EL1PCTEN, EL1PCEN). The virtual counter equals the physical one (CNTVOFF_EL2 = 0).
const CNTHCTL_EL2_VALUE: u64 = 0b11;

macro_rules! write_sysregs {
    ($($reg:literal = $val:expr),* $(,)?) => {
        $(
            // SAFETY: writes an EL1/EL0 register of the guest context (or an EL2 timer
            // control) while the guest is not running; EL2's own state is unaffected.
            unsafe { core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) ($val as u64), options(nostack, preserves_flags)) };
        )*
    };
}

pub fn reset() {
    write_sysregs!(
        "sctlr_el1" = SCTLR_EL1_RESET,
        "tcr_el1" = 0,
        "ttbr0_el1" = 0,
        "ttbr1_el1" = 0,
        "mair_el1" = 0,
        "amair_el1" = 0,
        "vbar_el1" = 0,
        "cpacr_el1" = 0,
        "contextidr_el1" = 0,
        "tpidr_el1" = 0,
        "tpidr_el0" = 0,
        "tpidrro_el0" = 0,
        "sp_el0" = 0,
        "sp_el1" = 0,
        "elr_el1" = 0,
        "spsr_el1" = 0,
        "esr_el1" = 0,
        "far_el1" = 0,
        "afsr0_el1" = 0,
        "afsr1_el1" = 0,
        "par_el1" = 0,
        "mdscr_el1" = 0,
        "cntkctl_el1" = 0,
        "cntv_ctl_el0" = 0,
        "cntv_cval_el0" = 0,
        "cntp_ctl_el0" = 0,
        "cntp_cval_el0" = 0,
        "cnthctl_el2" = CNTHCTL_EL2_VALUE,
        "cntvoff_el2" = 0,
    );
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// MDCR_EL2 and HSTR_EL2 reset to UNKNOWN values on hardware, so they are set here.
/// A partition owns its cores outright, so it also owns their debug and PMU: all PMU
/// counters belong to EL1 (HPMN = PMCR_EL0.N), no debug or PMU access traps, debug
/// exceptions go to the guest (TDE = 0). The ID registers therefore tell the truth
/// without emulation: what they advertise is the partition's to use.
pub fn own_core_debug_and_pmu() {
    let pmcr: u64;
    // SAFETY: reads PMCR_EL0 at EL2, which has no side effect.
    unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nostack, nomem)) };
    let counters = (pmcr >> 11) & 0x1F;
    write_sysregs!("mdcr_el2" = counters, "hstr_el2" = 0);
}

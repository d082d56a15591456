//! The EL1 state a vCPU starts from: architectural reset values, so a restarted
//! partition finds its core exactly as at first boot (MMU and caches off, no vectors,
//! timers stopped) and nothing its previous run left there (ISO-008): FP/SIMD
//! registers and their control, pointer-authentication keys, PMU and debug state.
//!
//! What a guest cannot reach needs no reset: SVE and SME state (CPTR_EL2 traps them),
//! SCXTNUM (HCR_EL2.EnSCXT clear), MTE tags and registers (HCR_EL2.ATA clear),
//! LORegions and RAS error records (trapped), ACTLR_EL1 (trapped), the AArch32 banked
//! registers (EL1 is AArch64).

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
        "csselr_el1" = 0,
    );
    // SAFETY: drops this core's exclusive-access monitor, which only the guest uses.
    unsafe { core::arch::asm!("clrex", options(nostack, nomem, preserves_flags)) };
    // SAFETY: the routine writes only V0-V31, FPCR and FPSR, the guest's FP/SIMD state
    // (EL2 code is built without FP/SIMD and keeps none there).
    unsafe { septum_clear_fpsimd() };
    clear_optional_state();
    crate::debug_pmu::reset();
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// State of features some cores have: pointer-authentication keys (FEAT_PAuth, which
/// HCR_EL2.APK/API leave to the guest), TPIDR2_EL0 (FEAT_SME), the deferred SError
/// record a guest's ESB writes (VDISR_EL2, FEAT_RAS, with HCR_EL2.AMO set).
fn clear_optional_state() {
    let crate::cpu::IdRegisters { isar1, isar2, pfr0, pfr1, .. } = crate::cpu::id_registers();
    let nibble = |reg: u64, shift: u32| (reg >> shift) & 0xF != 0;
    // APA, API, GPA, GPI; APA3, GPA3.
    let pauth = [4, 8, 24, 28].iter().any(|&s| nibble(isar1, s)) || [8, 12].iter().any(|&s| nibble(isar2, s));
    if pauth {
        // The key registers by encoding (APIAKeyLo_EL1 .. APGAKeyHi_EL1).
        write_sysregs!(
            "s3_0_c2_c1_0" = 0,
            "s3_0_c2_c1_1" = 0,
            "s3_0_c2_c1_2" = 0,
            "s3_0_c2_c1_3" = 0,
            "s3_0_c2_c2_0" = 0,
            "s3_0_c2_c2_1" = 0,
            "s3_0_c2_c2_2" = 0,
            "s3_0_c2_c2_3" = 0,
            "s3_0_c2_c3_0" = 0,
            "s3_0_c2_c3_1" = 0,
        );
    }
    if nibble(pfr1, 24) {
        write_sysregs!("s3_3_c13_c0_5" = 0); // TPIDR2_EL0
    }
    if nibble(pfr0, 28) {
        write_sysregs!("s3_4_c12_c1_1" = 0); // VDISR_EL2
    }
}

// Zeroes the guest's FP/SIMD registers and their control and status. Assembled with FP
// and SIMD enabled for this routine only: the rest of EL2 is built without them.
core::arch::global_asm!(
    r#"
.section .text.septum_clear_fpsimd, "ax"
.arch_extension fp
.arch_extension simd
.global septum_clear_fpsimd
.balign 4
septum_clear_fpsimd:
    movi    v0.2d, #0
    movi    v1.2d, #0
    movi    v2.2d, #0
    movi    v3.2d, #0
    movi    v4.2d, #0
    movi    v5.2d, #0
    movi    v6.2d, #0
    movi    v7.2d, #0
    movi    v8.2d, #0
    movi    v9.2d, #0
    movi    v10.2d, #0
    movi    v11.2d, #0
    movi    v12.2d, #0
    movi    v13.2d, #0
    movi    v14.2d, #0
    movi    v15.2d, #0
    movi    v16.2d, #0
    movi    v17.2d, #0
    movi    v18.2d, #0
    movi    v19.2d, #0
    movi    v20.2d, #0
    movi    v21.2d, #0
    movi    v22.2d, #0
    movi    v23.2d, #0
    movi    v24.2d, #0
    movi    v25.2d, #0
    movi    v26.2d, #0
    movi    v27.2d, #0
    movi    v28.2d, #0
    movi    v29.2d, #0
    movi    v30.2d, #0
    movi    v31.2d, #0
    msr     fpcr, xzr
    msr     fpsr, xzr
    ret
"#
);

extern "C" {
    fn septum_clear_fpsimd();
}

/// MDCR_EL2 and HSTR_EL2 reset to UNKNOWN values on hardware, so they are set here.
/// A partition owns its cores outright, so it also owns their debug and PMU: all PMU
/// counters belong to EL1 (HPMN = PMCR_EL0.N), debug register accesses do not trap,
/// debug exceptions go to the guest (TDE = 0); the ID registers tell the truth. But no
/// counter may count at EL2 and no guest may set the OS double lock
/// ([`septum_core::debug_pmu::mdcr_el2`]): before PMUv3p5 the PMU registers trap and
/// are emulated with EL2 filtered out, and the OS-lock registers always trap
/// ([`crate::debug_pmu`]).
pub fn own_core_debug_and_pmu() {
    let (pmcr, dfr0): (u64, u64);
    // SAFETY: reads PMCR_EL0 and ID_AA64DFR0_EL1 at EL2, which have no side effect.
    unsafe {
        core::arch::asm!("mrs {}, pmcr_el0", "mrs {}, id_aa64dfr0_el1", out(reg) pmcr, out(reg) dfr0,
            options(nostack, nomem))
    };
    let counters = ((pmcr >> 11) & 0x1F) as u8;
    write_sysregs!("mdcr_el2" = septum_core::debug_pmu::mdcr_el2(dfr0, counters), "hstr_el2" = 0);
}

//! Attack `leftovers` (ISO-008): before faulting, write distinctive values into every
//! piece of core state a restart must not hand on: the FP/SIMD registers and their
//! control, the pointer-authentication keys (where the core has them), the PMU (with
//! a filter that asks to count at EL2), the breakpoints and watchpoints, the debug
//! control and comms-channel registers, the OS lock; and set the OS double lock. At
//! every boot [`report`] reads them back as the vCPU found them at entry (the FP/SIMD
//! registers through [`septum_entry_hook`], before any Rust code runs) and says whether
//! they are at their reset values. It also reports what `SMCCC_ARCH_FEATURES` says of
//! the Spectre workarounds on this core (ISO-009).

use core::fmt::Write;

use septum_abi::hypercall::smccc;
use septum_guest::{hvc, Console};

/// FP/SIMD state at entry: V0-V31 (two words each), FPCR, FPSR. In `.data` (not
/// BSS, which the runtime zeroes after the hook); all ones until the hook ran.
#[repr(C, align(16))]
struct EntryFpSimd([u64; 66]);
#[no_mangle]
static mut SEPTUM_ENTRY_FPSIMD: EntryFpSimd = EntryFpSimd([u64::MAX; 66]);

core::arch::global_asm!(
    r#"
.section .text.septum_entry_hook, "ax"
.global septum_entry_hook
septum_entry_hook:
    adrp    x9, SEPTUM_ENTRY_FPSIMD
    add     x9, x9, #:lo12:SEPTUM_ENTRY_FPSIMD
    stp     q0, q1, [x9], #32
    stp     q2, q3, [x9], #32
    stp     q4, q5, [x9], #32
    stp     q6, q7, [x9], #32
    stp     q8, q9, [x9], #32
    stp     q10, q11, [x9], #32
    stp     q12, q13, [x9], #32
    stp     q14, q15, [x9], #32
    stp     q16, q17, [x9], #32
    stp     q18, q19, [x9], #32
    stp     q20, q21, [x9], #32
    stp     q22, q23, [x9], #32
    stp     q24, q25, [x9], #32
    stp     q26, q27, [x9], #32
    stp     q28, q29, [x9], #32
    stp     q30, q31, [x9], #32
    mrs     x10, fpcr
    mrs     x11, fpsr
    stp     x10, x11, [x9]
    ret

// Fills V0-V31 with x0, x0 + 1, ... and sets FPCR and FPSR to x1 and x2.
.section .text.leftovers_fill_fpsimd, "ax"
.global leftovers_fill_fpsimd
leftovers_fill_fpsimd:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    dup     v\n\().2d, x0
    add     x0, x0, #1
    .endr
    msr     fpcr, x1
    msr     fpsr, x2
    ret
"#
);

extern "C" {
    fn leftovers_fill_fpsimd(pattern: u64, fpcr: u64, fpsr: u64);
}

macro_rules! mrs {
    ($reg:expr) => {{
        let v: u64;
        // SAFETY: reads one of this vCPU's own system registers (the PMU and OS-lock
        // ones trap to the hypervisor, which emulates them).
        unsafe { core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nostack)) };
        v
    }};
}

macro_rules! msr {
    ($reg:expr, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: writes one of this vCPU's own debug, PMU or key registers; none of
        // the values enables a debug event or changes memory.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) v, options(nostack)) };
    }};
}

/// `PMEVTYPER<n>.NSH`/`PMCCFILTR.NSH`: count at EL2.
const NSH: u64 = 1 << 27;
/// PMCR_EL0's writable control bits (E, P, C, D, X, DP, LC); N and the ID are read-only.
const PMCR_CONTROL: u64 = 0x7F;

fn pmu_present() -> bool {
    !matches!((mrs!("id_aa64dfr0_el1") >> 8) & 0xF, 0 | 0xF)
}

fn pauth_present() -> bool {
    let isar1 = mrs!("id_aa64isar1_el1");
    [4, 8, 24, 28].iter().any(|&s| (isar1 >> s) & 0xF != 0)
}

/// (breakpoints, watchpoints) the core has.
fn debug_counts() -> (u8, u8) {
    let dfr0 = mrs!("id_aa64dfr0_el1");
    (((dfr0 >> 12) & 0xF) as u8 + 1, ((dfr0 >> 20) & 0xF) as u8 + 1)
}

/// Breakpoint or watchpoint registers 0..count, named by number in the instruction:
/// `read` ORs each pair, `write` sets each pair.
macro_rules! debug_regs {
    (read $count:expr, $c:literal, $v:literal) => {{
        let mut acc = 0;
        debug_regs!(@read acc, $count, $c, $v, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        acc
    }};
    (@read $acc:ident, $count:expr, $c:literal, $v:literal, $($n:literal)*) => {
        $(
            if $n < $count {
                $acc |= mrs!(concat!($c, stringify!($n), "_el1")) | mrs!(concat!($v, stringify!($n), "_el1"));
            }
        )*
    };
    (write $count:expr, $c:literal = $cval:expr, $v:literal = $vval:expr) => {
        debug_regs!(@write $count, $c, $cval, $v, $vval, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@write $count:expr, $c:literal, $cval:expr, $v:literal, $vval:expr, $($n:literal)*) => {
        $(
            if $n < $count {
                msr!(concat!($c, stringify!($n), "_el1"), $cval);
                msr!(concat!($v, stringify!($n), "_el1"), $vval);
            }
        )*
    };
}

/// The OR of every breakpoint and watchpoint register, MDSCR_EL1 and MDCCINT_EL1.
fn debug_state() -> u64 {
    let (brps, wrps) = debug_counts();
    mrs!("mdscr_el1")
        | mrs!("mdccint_el1")
        | debug_regs!(read brps, "dbgbcr", "dbgbvr")
        | debug_regs!(read wrps, "dbgwcr", "dbgwvr")
}

/// The PMU's guest-visible state: (OR of everything, PMCCFILTR, PMEVTYPER0).
fn pmu_state() -> (u64, u64, u64) {
    if !pmu_present() {
        return (0, 0, 0);
    }
    let ccfiltr = mrs!("pmccfiltr_el0");
    let evtyper0 = mrs!("pmevtyper0_el0");
    let acc = (mrs!("pmcr_el0") & PMCR_CONTROL)
        | mrs!("pmcntenset_el0")
        | mrs!("pmintenset_el1")
        | mrs!("pmovsset_el0")
        | mrs!("pmselr_el0")
        | mrs!("pmuserenr_el0")
        | mrs!("pmccntr_el0")
        | mrs!("pmevcntr0_el0")
        | ccfiltr
        | evtyper0;
    (acc, ccfiltr, evtyper0)
}

/// The OR of the pointer-authentication keys, if the core has them.
fn pauth_state() -> Option<u64> {
    pauth_present().then(|| {
        mrs!("s3_0_c2_c1_0")
            | mrs!("s3_0_c2_c1_1")
            | mrs!("s3_0_c2_c1_2")
            | mrs!("s3_0_c2_c1_3")
            | mrs!("s3_0_c2_c2_0")
            | mrs!("s3_0_c2_c2_1")
            | mrs!("s3_0_c2_c2_2")
            | mrs!("s3_0_c2_c2_3")
            | mrs!("s3_0_c2_c3_0")
            | mrs!("s3_0_c2_c3_1")
    })
}

/// OSLSR_EL1.OSLK.
fn os_lock() -> u64 {
    (mrs!("oslsr_el1") >> 1) & 1
}

/// Reads back, at boot, what this vCPU was entered with; one line, ending `(reset)`
/// when everything is at its reset value. And the Spectre workaround discovery.
pub fn report(console: &mut Console) {
    // SAFETY: written once, by the entry hook, before any Rust code ran.
    let entry = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(SEPTUM_ENTRY_FPSIMD)) };
    let fpsimd = entry.0[..64].iter().fold(0, |a, w| a | w);
    let (fpcr, fpsr) = (entry.0[64], entry.0[65]);
    let (pmu, _, _) = pmu_state();
    let pauth = pauth_state();
    let debug = debug_state();
    let oslk = os_lock();
    let reset = fpsimd == 0 && fpcr == 0 && fpsr == 0 && pmu == 0 && pauth.unwrap_or(0) == 0 && debug == 0 && oslk == 1;
    let _ = write!(console, "connectivity: leftovers: fpsimd={fpsimd:#x} fpcr={fpcr:#x} fpsr={fpsr:#x} pmu={pmu:#x} ");
    let _ = match pauth {
        Some(k) => write!(console, "pauth={k:#x} "),
        None => write!(console, "pauth=absent "),
    };
    let _ = writeln!(console, "debug={debug:#x} oslk={oslk} ({})", if reset { "reset" } else { "NOT reset" });
    let feature = |wa: u32| hvc(smccc::ARCH_FEATURES, [u64::from(wa), 0, 0, 0, 0, 0, 0])[0] as i64;
    let call = |wa: u32| hvc(wa, [0; 7])[0] as i64;
    let _ = writeln!(
        console,
        "connectivity: smccc workarounds 1/2/3: features {}/{}/{}, calls {}/{}",
        feature(smccc::ARCH_WORKAROUND_1),
        feature(smccc::ARCH_WORKAROUND_2),
        feature(smccc::ARCH_WORKAROUND_3),
        call(smccc::ARCH_WORKAROUND_1),
        call(smccc::ARCH_WORKAROUND_3)
    );
}

/// Writes distinctive values into all of it, sets the OS double lock, and says what
/// stuck (the caller then faults).
pub fn dirty(console: &mut Console) {
    if pmu_present() {
        msr!("pmcr_el0", 0x79); // E, D, X, DP, LC
        msr!("pmcntenset_el0", 0x8000_0001);
        msr!("pmintenset_el1", 0x8000_0001);
        msr!("pmovsset_el0", 0x8000_0001);
        msr!("pmuserenr_el0", 0xF);
        msr!("pmevtyper0_el0", NSH | 0x11); // CPU_CYCLES, at EL2 too if allowed
        msr!("pmccfiltr_el0", NSH | 1 << 31);
        msr!("pmevcntr0_el0", 0x1234_5678);
        msr!("pmccntr_el0", 0xABCD_0000_0000);
        msr!("pmselr_el0", 3);
    }
    if pauth_present() {
        msr!("s3_0_c2_c1_0", 0x6B65_7900);
        msr!("s3_0_c2_c1_1", 0x6B65_7901);
        msr!("s3_0_c2_c1_2", 0x6B65_7902);
        msr!("s3_0_c2_c1_3", 0x6B65_7903);
        msr!("s3_0_c2_c2_0", 0x6B65_7904);
        msr!("s3_0_c2_c2_1", 0x6B65_7905);
        msr!("s3_0_c2_c2_2", 0x6B65_7906);
        msr!("s3_0_c2_c2_3", 0x6B65_7907);
        msr!("s3_0_c2_c3_0", 0x6B65_7908);
        msr!("s3_0_c2_c3_1", 0x6B65_7909);
    }
    let (brps, wrps) = debug_counts();
    // Enabled for no exception level and E clear: the values stay, nothing fires.
    debug_regs!(write brps, "dbgbcr" = 0x1E6, "dbgbvr" = 0x4000_1000);
    debug_regs!(write wrps, "dbgwcr" = 0x1FFE, "dbgwvr" = 0x4000_2000);
    msr!("mdscr_el1", 1 << 12 | 1 << 13); // TDCC, KDE
    msr!("mdccint_el1", 1 << 29 | 1 << 30);
    msr!("oslar_el1", 0); // OS lock off
    msr!("osdlr_el1", 1); // the OS double lock: would make halting (semihosting) fail
    let (pmu, ccfiltr, evtyper0) = pmu_state();
    let (debug, oslk, osdlr) = (debug_state(), os_lock(), mrs!("osdlr_el1"));
    let _ = writeln!(
        console,
        "connectivity: leftovers written: pmu={pmu:#x} ccfiltr={ccfiltr:#x} evtyper0={evtyper0:#x} \
         (NSH {}) debug={debug:#x} oslk={oslk} osdlr={osdlr:#x}",
        if (ccfiltr | evtyper0) & NSH == 0 { "cleared" } else { "SET" }
    );
    // SAFETY: fills only FP/SIMD registers and FPCR/FPSR, which nothing relies on
    // across this call (the caller faults next). FPCR: FZ and round towards zero;
    // FPSR: QC and every cumulative flag.
    unsafe { leftovers_fill_fpsimd(0x5EB7_0000_0000_0000, 1 << 24 | 3 << 22, 1 << 27 | 0x9F) };
}

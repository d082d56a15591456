//! The few instructions Septum needs that are not register reads or writes: cache and
//! TLB maintenance, PSCI calls to the board firmware, waiting. Each is a small `unsafe`
//! block with its reason.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0, ID_AA64MMFR0_EL1, MPIDR_EL1};

const CACHE_LINE: u64 = 64;

/// This core's MPIDR affinity fields (Aff3..Aff0).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xFF_00FF_FFFF
}

/// The AArch64 feature ID registers Septum decides by (reads have no side effects).
#[derive(Clone, Copy, Debug)]
pub struct IdRegisters {
    pub pfr0: u64,
    pub pfr1: u64,
    pub mmfr1: u64,
    pub isar1: u64,
    pub isar2: u64,
}

/// This core's feature ID registers.
pub fn id_registers() -> IdRegisters {
    let (pfr0, pfr1, mmfr1, isar1, isar2): (u64, u64, u64, u64, u64);
    // SAFETY: ID register reads have no side effects. ID_AA64ISAR2_EL1 is named by
    // its encoding: before Armv8.7 it is a reserved ID register, which reads as zero.
    unsafe {
        core::arch::asm!(
            "mrs {0}, id_aa64pfr0_el1",
            "mrs {1}, id_aa64pfr1_el1",
            "mrs {2}, id_aa64mmfr1_el1",
            "mrs {3}, id_aa64isar1_el1",
            "mrs {4}, s3_0_c0_c6_2",
            out(reg) pfr0, out(reg) pfr1, out(reg) mmfr1, out(reg) isar1, out(reg) isar2,
            options(nomem, nostack, preserves_flags)
        )
    };
    IdRegisters { pfr0, pfr1, mmfr1, isar1, isar2 }
}

/// The PS/IPS field value for TCR_EL2 and VTCR_EL2: the physical address size the core
/// supports (ID_AA64MMFR0_EL1.PARange), at most 48 bits.
pub fn pa_size() -> u64 {
    (ID_AA64MMFR0_EL1.get() & 0xF).min(5)
}

/// The generic timer's count.
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

pub fn counter_hz() -> u64 {
    CNTFRQ_EL0.get()
}

/// Busy-waits until the counter reaches `deadline`. Used only on a core whose partition
/// is stopped, so the wait costs no one else anything.
pub fn wait_until(deadline: u64) {
    while counter() < deadline {
        core::hint::spin_loop();
    }
}

/// Runs `op` on the address of every data-cache line covering `[va, va+len)`, then
/// waits for the maintenance to complete.
fn each_dcache_line(va: u64, len: u64, op: impl Fn(u64)) {
    let mut line = va & !(CACHE_LINE - 1);
    while line < va + len {
        op(line);
        line += CACHE_LINE;
    }
    barrier::dsb(barrier::SY);
}

/// Cleans data-cache lines covering `[va, va+len)` to the point of coherency, so a guest
/// that starts with its caches off sees what the hypervisor wrote.
pub fn clean_dcache_range(va: u64, len: u64) {
    each_dcache_line(va, len, |line| {
        // SAFETY: DC CVAC writes back a line; it changes no data and the address is
        // mapped in the hypervisor's stage 1 (callers pass partition RAM or its own image).
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) line, options(nostack, preserves_flags)) };
    });
}

/// Invalidates data-cache lines covering `[va, va+len)`; used with the MMU off, before
/// turning caches on, so no stale line from the bootloader shadows what we wrote.
pub fn invalidate_dcache_range(va: u64, len: u64) {
    each_dcache_line(va, len, |line| {
        // SAFETY: called with caches off on the hypervisor's own image, whose memory
        // holds the authoritative data; dropping cached copies loses nothing.
        unsafe { core::arch::asm!("dc ivac, {}", in(reg) line, options(nostack, preserves_flags)) };
    });
}

/// Invalidates all instruction caches to the point of unification (inner shareable).
pub fn invalidate_icache() {
    // SAFETY: IC IALLUIS only drops instruction-cache contents.
    unsafe { core::arch::asm!("ic ialluis", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// Drops the stage-1 and stage-2 TLB entries of the VMID in VTTBR_EL2, on all cores.
pub fn flush_guest_tlb() {
    barrier::dsb(barrier::ISHST);
    // SAFETY: TLBI VMALLS12E1IS invalidates cached translations of the current VMID only.
    unsafe { core::arch::asm!("tlbi vmalls12e1is", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// Drops the hypervisor's own EL2 TLB entries on this core.
pub fn flush_el2_tlb() {
    barrier::dsb(barrier::ISHST);
    // SAFETY: TLBI ALLE2 invalidates cached EL2 translations; the tables they came from
    // are about to be (re)installed.
    unsafe { core::arch::asm!("tlbi alle2", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// Drops the hypervisor's own EL2 TLB entries on every core (inner shareable): after a
/// core leaves a partition's load view.
pub fn flush_el2_tlb_all_cores() {
    barrier::dsb(barrier::ISHST);
    // SAFETY: TLBI ALLE2IS invalidates cached EL2 translations on every core; the
    // tables each core uses map the hypervisor alike, so they are walked again.
    unsafe { core::arch::asm!("tlbi alle2is", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// Calls the board firmware's PSCI (Arm DEN 0022) with SMC. (A DTB that names HVC as
/// the conduit describes a guest's view; from EL2, HVC would trap to ourselves.)
pub fn psci(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    smccc(function, a1, a2, a3)
}

/// Calls the board firmware with SMC following the SMC Calling Convention (Arm DEN
/// 0028): PSCI, or the SMCCC architecture calls. Only for functions the firmware is
/// known to implement (discovered through PSCI_FEATURES and SMCCC_ARCH_FEATURES).
pub fn smccc(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    // SAFETY: an SMCCC call to firmware: it may clobber x0-x17 (declared) and, for
    // CPU_ON, start another core at our secondary entry point; it touches no memory of
    // ours.
    unsafe {
        core::arch::asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
            inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack))
    };
    x0 as i64
}

/// Stops this core for good (interrupts stay masked at EL2).
pub fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}

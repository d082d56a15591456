//! EL2 exception vectors. A partition's exception arrives here with its registers saved
//! in a [`TrapFrame`] on this core's stack; on a core whose speculation plan asks for it
//! the entry first clears branch-predictor state the partition could have trained
//! (ISO-009, [`crate::speculation`]). The PMU and OS-lock registers EL2 traps are
//! emulated at once ([`crate::debug_pmu`]); otherwise [`septum_core::traps::classify`]
//! says what the exception means and [`crate::exit`] acts on it. An exception
//! taken *in* EL2 is a hypervisor bug: it is logged and the system goes to its safe
//! state.

use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};
use core::sync::atomic::{AtomicU64, Ordering};

use septum_core::events::Event;
use septum_core::traps::{classify, TrapInfo};

use crate::cpu;
use crate::gic::Irq;

pub use crate::frame::TrapFrame;

core::arch::global_asm!(
    r#"
.equ FRAME, {frame_size}

.macro SAVE_FRAME
    sub     sp, sp, #FRAME
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x0, elr_el2
    mrs     x1, spsr_el2
    stp     x30, x0, [sp, #240]
    str     x1, [sp, #256]
.endm

// An exception from a partition: its registers saved, the vector's number in x19
// (callee-saved, so it survives a firmware call), then `common`: straight to the
// handler, or through the branch-predictor hardening first.
.macro LOWER kind, common
    SAVE_FRAME
    mov     x19, #\kind
    b       \common
.endm

.macro CURRENT kind
    // The hypervisor itself faulted, perhaps by running its stack into the guard page
    // below it: continue from the top of this core's stack, never returned to.
    mrs     x9, tpidr_el2
    adrp    x10, __stacks_start
    add     x10, x10, #:lo12:__stacks_start
    ldr     x11, ={stack_stride}
    madd    x10, x9, x11, x10
    add     sp, x10, x11
    mov     x0, #\kind
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    bl      handle_hypervisor_fault
    b       .
.endm

// A synchronous exception of EL2's own. If it is the undefined `HLT #0xF000` of the
// semihosting routine (no debugger; QEMU without semihosting), skip it and return
// ABSENT in x0: the routine's caller treats x9-x10 as clobbered (C calling
// convention). Anything else is a hypervisor fault, which never returns, so the
// scratch registers are free either way.
current_sync:
    mrs     x9, esr_el2
    lsr     x9, x9, #26              // EC 0: unknown reason (an undefined instruction)
    cbnz    x9, 1f
    mrs     x9, elr_el2
    adrp    x10, septum_semihosting_call
    add     x10, x10, #:lo12:septum_semihosting_call
    cmp     x9, x10
    b.ne    1f
    mov     x0, #-1                  // semihosting::ABSENT
    add     x9, x9, #4
    msr     elr_el2, x9
    eret
1:  CURRENT 0

// The two vector tables differ only in the way in from a partition. Each core installs
// `el2_vectors_hardened` if its speculation plan needs work on entry (`speculation`).
.macro VECTORS name, lower
.balign 2048
.global \name
\name:
    // Current EL with SP_EL0 (never used by Septum).
    .balign 128
    CURRENT 0
    .balign 128
    CURRENT 1
    .balign 128
    CURRENT 2
    .balign 128
    CURRENT 3
    // Current EL with SP_ELx: the hypervisor itself faulted, or its semihosting call
    // found no debugger.
    .balign 128
    b       current_sync
    .balign 128
    CURRENT 1
    .balign 128
    CURRENT 2
    .balign 128
    CURRENT 3
    // Lower EL, AArch64: the partitions.
    .balign 128
    LOWER 0, \lower
    .balign 128
    LOWER 1, \lower
    .balign 128
    LOWER 2, \lower
    .balign 128
    LOWER 3, \lower
    // Lower EL, AArch32: Septum runs no AArch32 guests (HCR_EL2.RW=1).
    .balign 128
    LOWER 4, \lower
    .balign 128
    LOWER 4, \lower
    .balign 128
    LOWER 4, \lower
    .balign 128
    LOWER 4, \lower
.endm

.section .text.vectors, "ax"
VECTORS el2_vectors, lower_entry
VECTORS el2_vectors_hardened, lower_entry_hardened

// Entry from a partition on a core that needs hardening (ISO-009), before EL2 runs a
// single indirect branch: this core's word of SEPTUM_ENTRY_HARDENING says what to do.
// The firmware workaround first (SMCCC 1.1 keeps x4-x17; x19 holds the vector), then
// the branch-history loop of the core's advisory or CLRBHB. The closing DSB and ISB
// let nothing after them run until the steps before have really executed, so a
// mispredicted skip of a step cannot run ahead into the handler.
lower_entry_hardened:
    mrs     x9, tpidr_el2
    adrp    x10, SEPTUM_ENTRY_HARDENING
    add     x10, x10, #:lo12:SEPTUM_ENTRY_HARDENING
    ldr     x11, [x10, x9, lsl #3]
    tbz     x11, #{wa1_bit}, 1f
    mov     w0, #0x8000                  // SMCCC_ARCH_WORKAROUND_1
    movk    w0, #0x8000, lsl #16
    smc     #0
1:  tbz     x11, #{wa3_bit}, 2f
    mov     w0, #0x3fff                  // SMCCC_ARCH_WORKAROUND_3
    movk    w0, #0x8000, lsl #16
    smc     #0
2:  and     x12, x11, #0xff              // taken branches that overwrite the history
    cbz     x12, 4f
3:  b       .+4
    subs    x12, x12, #1
    b.ne    3b
4:  tbz     x11, #{clrbhb_bit}, 5f
    hint    #22                          // CLRBHB
5:  dsb     nsh
    isb
    // Fall through to the common path.

lower_entry:
    mov     x0, sp
    mov     x1, x19
    bl      handle_lower
    b       trap_return

.global trap_return
trap_return:
    ldp     x30, x0, [sp, #240]
    ldr     x1, [sp, #256]
    msr     elr_el2, x0
    msr     spsr_el2, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #FRAME
    eret
"#,
    frame_size = const core::mem::size_of::<TrapFrame>(),
    stack_stride = const crate::stage1::STACK_GUARD + crate::stage1::STACK_SIZE,
    wa1_bit = const septum_core::speculation::ENTRY_WA1_BIT,
    wa3_bit = const septum_core::speculation::ENTRY_WA3_BIT,
    clrbhb_bit = const septum_core::speculation::ENTRY_CLRBHB_BIT,
);

/// Which vector a lower-EL exception came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerKind {
    Sync,
    Irq,
    Fiq,
    SError,
    AArch32,
}

#[no_mangle]
extern "C" fn handle_lower(frame: &mut TrapFrame, kind: u64) {
    dispatch(frame, kind);
    // Back to the guest (a path that does not come back enters it afresh): under quirk
    // virq-unwired, signal what its list registers now hold (IRQ-007).
    crate::gic::update_virq_line();
}

/// Acts on a lower-EL exception of kind `kind` (the vector's number).
#[inline(always)]
fn dispatch(frame: &mut TrapFrame, kind: u64) {
    let kind = match kind {
        0 => LowerKind::Sync,
        1 => LowerKind::Irq,
        2 => LowerKind::Fiq,
        3 => LowerKind::SError,
        _ => LowerKind::AArch32,
    };
    match kind {
        LowerKind::Irq => return on_irq(),
        // Septum uses group 1 (IRQ) only; no FIQ is enabled.
        LowerKind::Fiq => return,
        LowerKind::Sync | LowerKind::SError | LowerKind::AArch32 => {}
    }
    let esr = ESR_EL2.get();
    if kind == LowerKind::Sync {
        if septum_core::traps::is_hypercall(esr) {
            // Versions and features are answered before anything else is looked at.
            let stateless =
                septum_core::hypercall::stateless(frame.x[0] as u32, frame.x[1], crate::speculation::answers);
            if let Some(v) = stateless {
                frame.x[..4].copy_from_slice(&[v, 0, 0, 0]);
                return;
            }
            // The most common exit, straight to its handler: what `classify` makes of it.
            let [function, args @ ..] =
                [frame.x[0], frame.x[1], frame.x[2], frame.x[3], frame.x[4], frame.x[5], frame.x[6], frame.x[7]];
            return crate::hypercall::on_hypercall(frame, function as u32, args);
        }
        if crate::debug_pmu::emulate(frame, esr) {
            frame.skip(esr);
            return;
        }
    }
    // An SError (or an exception from AArch32, which Septum does not run) is classified
    // as an SError with the syndrome's ISS.
    let esr = if kind == LowerKind::Sync { esr } else { (0x2F << 26) | (esr & 0x01FF_FFFF) };
    let far = FAR_EL2.get();
    let x = [frame.x[0], frame.x[1], frame.x[2], frame.x[3], frame.x[4], frame.x[5], frame.x[6], frame.x[7]];
    let info = TrapInfo { esr, far, hpfar: fault_hpfar(esr, far), x };
    crate::exit::on_exit(frame, classify(&info), &info)
}

/// A physical interrupt taken from the partition on this core.
fn on_irq() {
    let current = crate::partition::current();
    let owns = |intid| current.is_some_and(|(p, _)| p.owns_spi(intid));
    match crate::gic::on_irq(owns) {
        Irq::Done => {}
        Irq::Kick => crate::partition::power::on_kick(),
        Irq::Summary => crate::partition::on_summary_timer(),
        Irq::Held => {
            if let Some((part, _)) = current {
                part.note(Event::ListRegistersFull, false);
            }
        }
        Irq::Ended(intid) => {
            ended_irq(intid);
            crate::partition::dma::stop_if_faulted();
        }
    }
}

/// A physical interrupt EL2 ended without forwarding it: the SMMU's, whose work is
/// done here, or one nobody expected (reported at powers of two).
fn ended_irq(intid: u32) {
    if crate::partition::dma::on_smmu_irq(intid) {
        return;
    }
    let count = UNEXPECTED.fetch_add(1, Ordering::Relaxed) + 1;
    if count.is_power_of_two() {
        log::warn!("GIC: unexpected physical INTID {intid} on MPIDR {:#x} ({count} so far)", cpu::mpidr());
    }
}

/// Physical interrupts the hypervisor did not expect (reported at powers of two).
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// HPFAR_EL2 for a stage-2 abort: as the core wrote it where the architecture defines
/// it, else (a permission fault) the page of FAR translated by the guest's own stage 1
/// (`AT S1E1R`), or `traps::UNKNOWN_HPFAR` if that fails (the guest changed its tables
/// meanwhile). HM-001.
fn fault_hpfar(esr: u64, far: u64) -> u64 {
    if septum_core::traps::hpfar_valid(esr) {
        return HPFAR_EL2.get();
    }
    let saved: u64;
    let par: u64;
    // SAFETY: AT S1E1R translates FAR through the guest's stage 1 (its EL1 registers are
    // live on this core) and writes PAR_EL1, the guest's register, which is saved before
    // and restored after, so the guest sees no change. No memory is written.
    unsafe {
        core::arch::asm!(
            "mrs {saved}, par_el1",
            "at s1e1r, {far}",
            "isb",
            "mrs {par}, par_el1",
            "msr par_el1, {saved}",
            saved = out(reg) saved,
            par = out(reg) par,
            far = in(reg) far,
            options(nostack, preserves_flags),
        )
    };
    let _ = saved;
    septum_core::traps::hpfar_from_par(par).unwrap_or(septum_core::traps::UNKNOWN_HPFAR)
}

#[no_mangle]
extern "C" fn handle_hypervisor_fault(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    let esr = septum_core::esr::Esr(esr);
    log::error!("hypervisor fault (vector {kind}) at {elr:#x}, FAR {far:#x}: {esr}");
    crate::safe_state::safe_state("the hypervisor itself faulted")
}

//! The first instructions: the arm64 `Image` header, the drop from EL3 to EL2, the
//! refusal of EL1, per-CPU stacks, and the way back into a guest ([`enter_guest`]).
//!
//! Register contract into Rust:
//! * `primary_main(dtb, entered_el)` on the boot core, at EL2, MMU off, stack set, BSS zero.
//! * `secondary_main(cpu)` on a core started with PSCI `CPU_ON` (context id = its slot).
//! * `refuse_el1(dtb)` when entered at EL1: nothing is set up but a stack.

use crate::frame::TrapFrame;

core::arch::global_asm!(
    r#"
.equ STACK_STRIDE, {stack_stride}                              // guard page + stack, per core
.equ SCR_EL3_VALUE, (1 << 0) | (3 << 4) | (1 << 8) | (1 << 10)   // NS, RES1, HCE, RW
.equ SPSR_EL2H_MASKED, 0x3c9                                   // EL2h, DAIF set
.equ SCTLR_EL2_RESET, 0x30c50830                               // RES1 bits, MMU/caches off
.equ CPTR_EL2_VALUE, 0x33ff                                    // RES1 bits, no FP/SIMD trap

// \dst = top of the stack of core slot \slot (clobbers x10). Slot k's stack lies just
// above its guard page: [start + k * STRIDE + GUARD, start + (k + 1) * STRIDE).
.macro STACK_TOP dst, slot
    adrp    \dst, __stacks_start
    add     \dst, \dst, #:lo12:__stacks_start
    ldr     x10, =STACK_STRIDE
    madd    \dst, \slot, x10, \dst
    add     \dst, \dst, x10
.endm

.section .text.head, "ax"
.global _start
_start:
    // arm64 Image header: code0/code1, text_offset, image_size, flags, res2-4, magic, res5.
    b       primary_entry
    .long   0
    .quad   __image_text_offset
    .quad   __image_size
    .quad   0x2                      // little-endian, 4 KiB pages, 2 MiB-aligned base
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"
    .long   0

primary_entry:
    mov     x19, x0                  // board DTB (Linux boot protocol), or 0 for an ELF boot
    mrs     x9, CurrentEL
    lsr     x9, x9, #2
    mov     x20, x9                  // the EL we were entered at, for the log
    cmp     x9, #3
    b.eq    1f
    cmp     x9, #2
    b.eq    2f
    // EL1 (or an impossible EL0): no virtualization. Refuse on a stack and stop.
    adrp    x9, __stacks_start
    add     x9, x9, #:lo12:__stacks_start
    add     sp, x9, #STACK_STRIDE
    mov     x0, x19
    bl      refuse_el1
0:  wfe
    b       0b

1:  // EL3: enter non-secure EL2, AArch64, with SMC enabled (PSCI is reached through it).
    ldr     x9, =SCR_EL3_VALUE
    msr     scr_el3, x9
    msr     cptr_el3, xzr
    // A GICv3 has a system-register CPU interface (ID_AA64PFR0_EL1.GIC != 0); a GICv2
    // has none.
    mrs     x9, id_aa64pfr0_el1
    ubfx    x9, x9, #24, #4
    cbz     x9, 7f
    // GICv3 (QEMU virt): the single-security-state view (GICD_CTLR.DS = 1), as Septum
    // runs it: non-secure EL2 then owns every interrupt, with no secure firmware to
    // configure groups. And EL2 may use the system-register CPU interface (ICC_SRE_EL3
    // SRE, Enable).
    ldr     x9, ={gicd}
    ldr     w10, [x9]
    orr     w10, w10, #(1 << 6)
    str     w10, [x9]
    mov     x9, #((1 << 3) | 1)
    msr     icc_sre_el3, x9
    b       8f
7:  // GICv2: a GIC-400 at the base the board's link script names (the Raspberry Pi 4;
    // none elsewhere). What the Pi's firmware stub does before it drops to EL2: every
    // interrupt becomes group 1 (non-secure), this core's banked SGIs and PPIs too,
    // and the distributor forwards both groups; non-secure EL2 does the rest.
    // A GIC without the security extensions (GICD_TYPER.SecurityExtn, QEMU's raspi4b)
    // has nothing secure to open.
    ldr     x9, =__el3_gic400_base
    cbz     x9, 8f
    add     x9, x9, #{gic400_gicd}
    ldr     w10, [x9, #{gicd_typer}]
    tbz     w10, #10, 8f
    and     w10, w10, #0x1F          // ITLinesNumber: 32 * (N + 1) interrupts
    add     x11, x9, #{gicd_igroupr}
    mov     w12, #-1
9:  str     w12, [x11], #4
    subs    w10, w10, #1
    b.pl    9b
    mov     w10, #3                  // EnableGrp0 | EnableGrp1
    str     w10, [x9]
    // Non-secure writes to this core's priority mask are ignored while it masks the
    // secure half, as it does from reset: open it.
    add     x9, x9, #({gic400_gicc} - {gic400_gicd})
    mov     w10, #0xFF
    str     w10, [x9, #{gicc_pmr}]
8:  ldr     x9, =SCTLR_EL2_RESET
    msr     sctlr_el2, x9
    mov     x9, #SPSR_EL2H_MASKED
    msr     spsr_el3, x9
    adr     x9, 2f
    msr     elr_el3, x9
    isb
    eret

2:  // EL2. The image is not relocatable: stop if the loader put it elsewhere.
    adr     x9, _start
    ldr     x10, =_start
    cmp     x9, x10
    b.ne    0b
    // Boards that start every core at the entry point (an ELF at EL3 on QEMU virt or
    // raspi4b) send all but core 0 here; they wait in the holding pen until released.
    mrs     x9, mpidr_el1
    ubfx    x10, x9, #0, #24
    cbnz    x10, holding_pen
    bl      el2_common_setup
    msr     tpidr_el2, xzr           // the boot core is slot 0
    adrp    x9, __stacks_start
    add     x9, x9, #:lo12:__stacks_start
    add     sp, x9, #STACK_STRIDE
    // Zero BSS (the stacks are NOLOAD and need no zeroing).
    adrp    x9, __bss_start
    add     x9, x9, #:lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, #:lo12:__bss_end
3:  cmp     x9, x10
    b.hs    4f
    stp     xzr, xzr, [x9], #16
    b       3b
4:  mov     x0, x19
    mov     x1, x20
    bl      primary_main
    b       0b

// A core released by a firmware spin table arrives here (at EL2); its pen word was
// set before the release, so it passes straight through the pen.
.global pen_entry
pen_entry:
    mrs     x9, mpidr_el1
    b       holding_pen

// Holding pen: wait (caches off) until the boot core writes slot+1 into this core's
// word of `holding_pen` (indexed by MPIDR Aff0), then start like a PSCI-started core.
holding_pen:
    and     x9, x9, #0xff
    cmp     x9, #{max_cpus}
    b.hs    0b
    adrp    x10, holding_pen_words
    add     x10, x10, #:lo12:holding_pen_words
    add     x10, x10, x9, lsl #3
6:  wfe
    ldr     x11, [x10]
    cbz     x11, 6b
    cmn     x11, #1                  // PenExit::Park: a core no partition uses
    b.eq    park_forever
    sub     x0, x11, #1
    b       secondary_entry

// A core no partition uses sleeps here for good: WFI with nothing enabled at its CPU
// interface (WFE would be a busy loop under an emulator).
park_forever:
    wfi
    b       park_forever

// In .data, not .bss: the waiting cores read it before the boot core zeroes BSS.
.section .data
.balign 64
.global holding_pen_words
holding_pen_words:
    .fill {max_cpus}, 8, 0

.section .text
// A core started by PSCI CPU_ON: x0 = its slot.
.global secondary_entry
secondary_entry:
    mov     x19, x0
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    0b
    bl      el2_common_setup
    msr     tpidr_el2, x19
    STACK_TOP x9, x19
    mov     sp, x9
    mov     x0, x19
    bl      secondary_main
    b       0b

// EL2 state every core needs before Rust runs.
el2_common_setup:
    ldr     x9, =SCTLR_EL2_RESET
    msr     sctlr_el2, x9
    ldr     x9, =CPTR_EL2_VALUE
    msr     cptr_el2, x9
    adrp    x9, el2_vectors
    add     x9, x9, #:lo12:el2_vectors
    msr     vbar_el2, x9
    isb
    ret

// enter_guest(frame): reset this core's stack to its top, then restore `frame` and
// ERET. Used for a guest's first entry and for a restart, so no EL2 frames pile up.
.global enter_guest_asm
enter_guest_asm:
    mrs     x9, tpidr_el2
    STACK_TOP x11, x9
    sub     x10, x11, #{frame_size}
    // The source frame may sit just below the stack top and overlap the destination,
    // which is never below it: copy from the highest word down, as memmove would.
    mov     x11, #{frame_size}
5:  sub     x11, x11, #8
    ldr     x12, [x0, x11]
    str     x12, [x10, x11]
    cbnz    x11, 5b
    mov     sp, x10
    b       trap_return
"#,
    frame_size = const core::mem::size_of::<TrapFrame>(),
    max_cpus = const crate::slots::MAX_CPUS,
    gicd = const septum_platform::qemu_virt::GICD,
    gic400_gicd = const septum_platform::gicv2::GIC400_DISTRIBUTOR_OFFSET,
    gicd_typer = const septum_platform::gicv2::GICD_TYPER_OFFSET,
    gicd_igroupr = const septum_platform::gicv2::GICD_IGROUPR_OFFSET,
    gic400_gicc = const septum_platform::gicv2::GIC400_CPU_INTERFACE_OFFSET,
    gicc_pmr = const septum_platform::gicv2::GICC_PMR_OFFSET,
    stack_stride = const crate::stage1::STACK_GUARD + crate::stage1::STACK_SIZE,
);

extern "C" {
    fn enter_guest_asm(frame: *const TrapFrame) -> !;
    pub fn secondary_entry();
    pub fn pen_entry();
    static holding_pen_words: [u64; crate::slots::MAX_CPUS];
}

/// Where a core leaving the holding pen goes.
#[derive(Clone, Copy, Debug)]
pub enum PenExit {
    /// Starts like a PSCI-started core, in this slot.
    Slot(usize),
    /// `park_forever`: no partition uses the core.
    Park,
}

impl PenExit {
    /// Its pen word: slot + 1, or all ones for `park_forever` (0 keeps waiting).
    fn word(self) -> u64 {
        match self {
            PenExit::Slot(slot) => slot as u64 + 1,
            PenExit::Park => u64::MAX,
        }
    }
}

/// Releases a core waiting in the holding pen (found by MPIDR Aff0) to `exit`.
/// Returns false if no pen word exists for it.
pub fn release_from_pen(aff0: usize, exit: PenExit) -> bool {
    set_pen_word(aff0, exit) && {
        aarch64_cpu::asm::sev();
        true
    }
}

/// Releases a core waiting on a firmware spin table to `exit`: its pen word first,
/// then its entry address (`pen_entry`) into the release word the board DTB names.
pub fn release_from_spin_table(aff0: usize, exit: PenExit, release: u64) -> bool {
    if !set_pen_word(aff0, exit) {
        return false;
    }
    // SAFETY: `release` is the cpu-release-addr of this core in the board DTB; the
    // firmware's spin loop reads it and nothing else uses it (it is reserved memory).
    unsafe { crate::physmem::write_u64(release, pen_entry as *const () as u64) };
    crate::cpu::clean_dcache_range(release, 8);
    aarch64_cpu::asm::sev();
    true
}

fn set_pen_word(aff0: usize, exit: PenExit) -> bool {
    if aff0 >= crate::slots::MAX_CPUS {
        return false;
    }
    // SAFETY: `holding_pen_words` is the assembly's pen; only the boot core writes it,
    // once per core, and the waiting core only reads it. Its address is all we take.
    let word = unsafe { core::ptr::addr_of!(holding_pen_words[aff0]) } as *mut u64;
    // SAFETY: an aligned word of the pen (see above); volatile so it is really stored.
    unsafe { core::ptr::write_volatile(word, exit.word()) };
    // The waiting core runs with caches off: push the word to memory.
    crate::cpu::clean_dcache_range(word as u64, 8);
    true
}

/// Starts (or restarts) the guest on this core from `frame`. Never returns: the next
/// time this core is in EL2 it is through the exception vectors.
pub fn enter_guest(frame: &TrapFrame) -> ! {
    // SAFETY: `frame` is a complete guest register set; the routine copies it to the top
    // of this core's stack (whose frames are abandoned, nothing refers to them after
    // this call) and returns to EL1 with it.
    unsafe { enter_guest_asm(frame) }
}

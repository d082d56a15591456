//! Quirk `virq-unwired` (IRQ-007): virtual interrupts on a machine whose GIC does not
//! drive the cores' virtual IRQ input. Pure decisions; the EL2 binary reads the list
//! registers and `ICH_VMCR_EL2` and writes `HCR_EL2.VI` and `ICH_HCR_EL2`.
//!
//! QEMU 10.0.2's `imx8mp-evk` (`hw/arm/fsl-imx8mp.c`) connects only the GIC's IRQ and
//! FIQ outputs to its cores, not VIRQ and VFIQ (wired from QEMU 10.0.3 on: "hw/arm/
//! fsl-imx8mp: Wire VIRQ and VFIQ", upstream commit 930180f3). A pending list register
//! therefore never interrupts EL1, although the virtual CPU interface works: the guest's
//! `ICC_IAR1_EL1` acknowledges it. Both things the quirk needs are wired there as on
//! `virt`: the GIC maintenance interrupt (the CPU's `gicv3-maintenance-interrupt` output
//! to PPI 9, INTID 25, per core) and `HCR_EL2.VI` (the CPU's own virtual IRQ request).
//!
//! With the quirk on, EL2 plays the missing wire. Each time it returns to the guest it
//! sets `HCR_EL2.VI` to [`line`]'s answer and asks for the maintenance interrupts that
//! announce a change the guest can make without trapping:
//!
//! * VI is set while some group-1 list register is pending, the guest has group 1
//!   enabled and its priority mask lets that entry through. With it, EL2 asks for "no
//!   pending list register" (`NPIE`: the guest acknowledged the last one) and "group 1
//!   disabled" (`VGrp1DIE`); the maintenance interrupt is an exit, so VI is recomputed.
//! * A pending entry held back only because the guest has group 1 disabled (a guest
//!   that has not set up its CPU interface yet) leaves VI clear and asks for "group 1
//!   enabled" (`VGrp1EIE`).
//! * Each maintenance condition is asked for only while it is false, so none fires at
//!   once: the quirk never makes EL2 and the guest bounce off each other.
//! * A software entry (SGI, doorbell) raised again while the guest handles it is not
//!   made pending+active, which the maintenance interrupts could not follow (it turns
//!   pending at the guest's end of interrupt, without a trap): [`place`] marks the active
//!   entry for an end-of-interrupt maintenance interrupt instead (`ICH_LR<n>_EL2.EOI`),
//!   and the interrupt waits until then; [`ended`] names the entries to clear then.
//!
//! Where VI differs from the line the GIC would drive: the GIC also holds a pending
//! entry back while the guest runs an interrupt of the same or higher priority (every
//! forwarded interrupt has one priority), which no maintenance interrupt announces the
//! end of. VI stays set then, so a guest that keeps IRQs masked from acknowledge to end
//! of interrupt (Linux: every handler runs with IRQs masked; Septum's runtime: IRQs
//! always masked) takes the next interrupt right after its end of interrupt, as with
//! the wire. A guest that unmasks IRQs inside a handler, or masks with its priority
//! mask instead of PSTATE.I (Linux's pseudo-NMI mode, `irqchip.gicv3_pseudo_nmi=1`, off
//! by default), would be interrupted again and read 1023 until its next exit to EL2:
//! such guests are not supported with the quirk. A guest that raises its priority mask
//! without trapping is seen at its next exit (Linux and Septum's runtime set it before
//! enabling group 1, which is an exit here).

use crate::vgic::{ListRegister, LrState, Placement};

/// `HCR_EL2.VI` (bit 7): a virtual IRQ is pending for EL1.
pub const HCR_EL2_VI: u64 = 1 << 7;
/// `ICH_HCR_EL2.NPIE` (bit 3): maintenance interrupt while no list register is pending.
pub const NPIE: u64 = 1 << 3;
/// `ICH_HCR_EL2.VGrp1EIE` (bit 6): maintenance interrupt while group 1 is enabled.
pub const VGRP1EIE: u64 = 1 << 6;
/// `ICH_HCR_EL2.VGrp1DIE` (bit 7): maintenance interrupt while group 1 is disabled.
pub const VGRP1DIE: u64 = 1 << 7;
/// The `ICH_HCR_EL2` bits the quirk owns; the others (`En`, `UIE`) are left as they are.
pub const MAINTENANCE: u64 = NPIE | VGRP1EIE | VGRP1DIE;
/// `ICH_LR<n>_EL2.EOI` (bit 41, software entries only): maintenance interrupt when the
/// guest's end of interrupt leaves the entry invalid.
pub const LR_EOI: u64 = ListRegister::EOI;
/// `ICH_VMCR_EL2.VENG1` (bit 1): the guest has group 1 enabled.
const VMCR_VENG1: u64 = 1 << 1;
/// `ICH_VMCR_EL2.VPMR` (bits 31:24): the guest's priority mask.
const VMCR_VPMR_SHIFT: u32 = 24;

/// What EL2 writes before returning to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// `HCR_EL2.VI`.
    pub vi: bool,
    /// The [`MAINTENANCE`] bits of `ICH_HCR_EL2`.
    pub maintenance: u64,
}

impl Line {
    /// The line when the quirk has nothing to signal.
    pub const QUIET: Line = Line { vi: false, maintenance: 0 };

    /// `hcr` (an `HCR_EL2` value) with VI as decided, every other bit kept.
    pub fn hcr_el2(self, hcr: u64) -> u64 {
        if self.vi {
            hcr | HCR_EL2_VI
        } else {
            hcr & !HCR_EL2_VI
        }
    }

    /// `ich_hcr` (an `ICH_HCR_EL2` value) with the quirk's maintenance requests as
    /// decided, every other bit kept.
    pub fn ich_hcr_el2(self, ich_hcr: u64) -> u64 {
        (ich_hcr & !MAINTENANCE) | self.maintenance
    }
}

/// The mask of implemented priority bits for `ICH_VTR_EL2.PRIbits` (the number of
/// virtual priority bits minus one): the GIC compares only those.
pub fn priority_mask(pri_bits: u32) -> u8 {
    let bits = pri_bits.min(7) + 1;
    (0xFF_u16 << (8 - bits)) as u8
}

/// Decides `HCR_EL2.VI` and the maintenance interrupts to ask for, from the implemented
/// list registers `lrs` (GICv3 encoding), `ICH_VMCR_EL2` and `ICH_VTR_EL2.PRIbits`.
pub fn line(lrs: &[u64], vmcr: u64, pri_bits: u32) -> Line {
    let mask = priority_mask(pri_bits);
    let mut pending = lrs
        .iter()
        .map(|&v| ListRegister(v))
        .filter(|lr| lr.state() == LrState::Pending && lr.0 & ListRegister::GROUP1 != 0)
        .peekable();
    if pending.peek().is_none() {
        return Line::QUIET;
    }
    if vmcr & VMCR_VENG1 == 0 {
        return Line { vi: false, maintenance: VGRP1EIE };
    }
    let pmr = ((vmcr >> VMCR_VPMR_SHIFT) & 0xFF) as u8 & mask;
    if pending.any(|lr| lr.priority() & mask < pmr) {
        Line { vi: true, maintenance: NPIE | VGRP1DIE }
    } else {
        // Masked by the guest's priority mask: the GIC would not signal it either.
        Line::QUIET
    }
}

/// The list registers (bit n: `lrs[n]`) whose end-of-interrupt maintenance interrupt is
/// asserted: software entries marked [`LR_EOI`] that the guest ended (now invalid).
/// They count as occupied (`ICH_ELRSR_EL2` clear) until EL2 writes them to zero.
pub fn ended(lrs: &[u64]) -> u16 {
    lrs.iter()
        .take(16)
        .enumerate()
        .filter(|&(_, &v)| ListRegister(v).state() == LrState::Invalid && v & (ListRegister::HW | LR_EOI) == LR_EOI)
        .fold(0, |acc, (n, _)| acc | 1 << n)
}

/// [`crate::vgic::place`] under the quirk: the same, except that a software interrupt
/// whose entry is active is not made pending+active; the entry is marked for an
/// end-of-interrupt maintenance interrupt ([`Placement::AfterEnd`]) and the interrupt
/// waits for it.
pub fn place(lrs: &[u64], elrsr: u64, intid: u32, priority: u8) -> Placement {
    let active = lrs.iter().enumerate().find(|&(n, &v)| {
        let lr = ListRegister(v);
        elrsr & (1 << n) == 0 && lr.vintid() == intid && lr.state() == LrState::Active && lr.pintid().is_none()
    });
    match active {
        Some((n, &v)) => Placement::AfterEnd(n, v | LR_EOI),
        None => crate::vgic::place(lrs, elrsr, intid, priority),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vgic::{FORWARD_PRIORITY, VTIMER_PPI};

    const STATE_SHIFT: u32 = 62;
    /// Group 1 enabled, priority mask 0xF0 (Linux's `DEFAULT_PMR_VALUE`).
    const LINUX_VMCR: u64 = 0xF0 << 24 | VMCR_VENG1;
    /// QEMU's GICv3 CPU interface: five virtual priority bits.
    const QEMU_PRI_BITS: u32 = 4;

    fn with_state(v: u64, state: u64) -> u64 {
        v & !(3 << STATE_SHIFT) | state << STATE_SHIFT
    }
    fn timer() -> u64 {
        ListRegister::hw_pending(VTIMER_PPI, VTIMER_PPI, FORWARD_PRIORITY).0
    }
    fn sgi(intid: u32) -> u64 {
        ListRegister::sw_pending(intid, FORWARD_PRIORITY).0
    }
    fn active(v: u64) -> u64 {
        with_state(v, 2)
    }

    /// The GIC's maintenance interrupt for the quirk's requests (Arm IHI 0069,
    /// `ICH_MISR_EL2`: NP, VGrp1E, VGrp1D), as QEMU computes it.
    fn asserted(maintenance: u64, lrs: &[u64], vmcr: u64) -> bool {
        let no_pending = !lrs.iter().any(|&v| ListRegister(v).state() == LrState::Pending);
        (maintenance & NPIE != 0 && no_pending)
            || (maintenance & VGRP1EIE != 0 && vmcr & VMCR_VENG1 != 0)
            || (maintenance & VGRP1DIE != 0 && vmcr & VMCR_VENG1 == 0)
    }

    /// The virtual IRQ line a wired GIC drives (Arm IHI 0069, `CanSignalVirtualInt`;
    /// QEMU `hppvi_index` and `icv_hppi_can_preempt`): the highest-priority pending
    /// group-1 entry, if group 1 is enabled, below the priority mask and above the
    /// running priority (here: the highest-priority active entry; group priority with
    /// the minimum binary point).
    fn wired(lrs: &[u64], vmcr: u64, pri_bits: u32) -> bool {
        let mask = priority_mask(pri_bits);
        if vmcr & VMCR_VENG1 == 0 {
            return false;
        }
        let states = |s: LrState| {
            lrs.iter().map(|&v| ListRegister(v)).filter(move |lr| lr.state() == s && lr.0 & ListRegister::GROUP1 != 0)
        };
        let Some(hppi) = states(LrState::Pending).map(|lr| lr.priority() & mask).min() else { return false };
        let running = states(LrState::Active).chain(states(LrState::PendingActive)).map(ListRegister::priority).min();
        let pmr = ((vmcr >> 24) & 0xFF) as u8 & mask;
        hppi < pmr && running.is_none_or(|r| hppi < r & mask)
    }

    /// IRQ-007: a pending list register sets VI for a guest ready for it (group 1 on,
    /// priority mask open), and VI asks for "no pending" and "group 1 disabled" so EL2
    /// hears when to clear it; nothing pending, nothing signalled.
    #[test]
    fn a_pending_list_register_sets_vi_until_the_guest_takes_it() {
        let on = Line { vi: true, maintenance: NPIE | VGRP1DIE };
        assert_eq!(line(&[timer(), 0, 0, 0], LINUX_VMCR, QEMU_PRI_BITS), on);
        assert_eq!(line(&[0, 0, sgi(1), 0], LINUX_VMCR, QEMU_PRI_BITS), on);
        assert_eq!(line(&[active(timer()), sgi(2), 0, 0], LINUX_VMCR, QEMU_PRI_BITS), on);
        // Acknowledged (pending -> active): NPIE fired; nothing left to signal.
        assert_eq!(line(&[active(timer()), 0, 0, 0], LINUX_VMCR, QEMU_PRI_BITS), Line::QUIET);
        assert_eq!(line(&[0; 4], LINUX_VMCR, QEMU_PRI_BITS), Line::QUIET);
        assert_eq!(line(&[], LINUX_VMCR, QEMU_PRI_BITS), Line::QUIET);
    }

    /// IRQ-007: a guest that has not enabled group 1 is never sent VI (it would read
    /// 1023 forever); EL2 asks to hear when it enables group 1 instead. A priority mask
    /// that holds the entry back clears VI too, as the GIC would.
    #[test]
    fn no_vi_for_a_guest_that_cannot_take_it() {
        let lrs = [timer(), 0, 0, 0];
        assert_eq!(line(&lrs, 0xF0 << 24, QEMU_PRI_BITS), Line { vi: false, maintenance: VGRP1EIE });
        assert_eq!(line(&lrs, 0, QEMU_PRI_BITS), Line { vi: false, maintenance: VGRP1EIE }, "reset VMCR");
        assert_eq!(line(&lrs, VMCR_VENG1, QEMU_PRI_BITS), Line::QUIET, "priority mask 0 masks all");
        assert_eq!(line(&lrs, 0xA0 << 24 | VMCR_VENG1, QEMU_PRI_BITS), Line::QUIET, "0xA0 is not below 0xA0");
        assert!(line(&lrs, 0xA8 << 24 | VMCR_VENG1, 7).vi, "8 priority bits: 0xA0 < 0xA8");
        assert!(!line(&lrs, 0xA4 << 24 | VMCR_VENG1, QEMU_PRI_BITS).vi, "5 bits: 0xA4 compares as 0xA0");
        // Group 0 entries are not the guest's IRQs (Septum writes group 1 only).
        let group0 = timer() & !ListRegister::GROUP1;
        assert_eq!(line(&[group0, 0, 0, 0], LINUX_VMCR, QEMU_PRI_BITS), Line::QUIET);
        // Pending+active is not pending (the GIC signals it only after the end).
        assert_eq!(line(&[with_state(sgi(3), 3), 0, 0, 0], LINUX_VMCR, QEMU_PRI_BITS), Line::QUIET);
    }

    /// IRQ-007: the quirk never asks for a maintenance interrupt that is already
    /// asserted, so EL2 and the guest cannot bounce off each other; and whenever a wired
    /// GIC would interrupt the guest, VI is set (never less than the wire). Where VI is
    /// set and the wire would not be, the guest is inside a handler (an active entry
    /// holds the pending one back), which Linux and Septum's runtime run with IRQs
    /// masked. Every combination of four list registers over the states, groups and
    /// two priorities, with group 1 on or off and four priority masks.
    #[test]
    fn vi_follows_the_wire_and_maintenance_never_fires_at_once() {
        let entries: [u64; 7] = [
            0,
            timer(),
            active(timer()),
            sgi(1),
            with_state(ListRegister::sw_pending(2, 0x80).0, 1),
            with_state(sgi(3), 3),
            timer() & !ListRegister::GROUP1,
        ];
        let mut checked = 0;
        for a in &entries {
            for b in &entries {
                for c in &entries {
                    for d in &entries {
                        let lrs = [*a, *b, *c, *d];
                        for vmcr in [0, VMCR_VENG1, 0xA0 << 24 | VMCR_VENG1, LINUX_VMCR, 0xFF << 24 | VMCR_VENG1] {
                            for pri_bits in [4, 7] {
                                let l = line(&lrs, vmcr, pri_bits);
                                assert!(!asserted(l.maintenance, &lrs, vmcr), "{lrs:x?} {vmcr:#x}: {l:?}");
                                assert_eq!(l.maintenance & !MAINTENANCE, 0);
                                let wire = wired(&lrs, vmcr, pri_bits);
                                assert!(!wire || l.vi, "{lrs:x?} {vmcr:#x}: wire without VI");
                                if l.vi && !wire {
                                    let in_handler = lrs.iter().any(|&v| {
                                        matches!(ListRegister(v).state(), LrState::Active | LrState::PendingActive)
                                    });
                                    assert!(in_handler, "{lrs:x?} {vmcr:#x}: VI with nothing to take");
                                }
                                if l.vi {
                                    assert_eq!(l.maintenance, NPIE | VGRP1DIE);
                                }
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 7usize.pow(4) * 5 * 2);
    }

    /// IRQ-007: an SGI or doorbell raised again while the guest handles it waits for the
    /// guest's end of interrupt (the active entry asks for the EOI maintenance
    /// interrupt) instead of becoming pending+active; everything else is placed as
    /// without the quirk.
    #[test]
    fn a_software_interrupt_raised_while_active_waits_for_its_end() {
        let a = active(sgi(3));
        assert_eq!(place(&[a, 0, 0, 0], 0b1110, 3, FORWARD_PRIORITY), Placement::AfterEnd(0, a | LR_EOI));
        // Already marked: the same answer (writing it again changes nothing).
        assert_eq!(place(&[a | LR_EOI, 0, 0, 0], 0b1110, 3, FORWARD_PRIORITY), Placement::AfterEnd(0, a | LR_EOI));
        // Other INTIDs, pending ones and free registers: as `vgic::place`.
        for (lrs, elrsr, intid) in
            [([a, 0, 0, 0], 0b1110, 4), ([sgi(3), 0, 0, 0], 0b1110, 3), ([0; 4], 0b1111, 3), ([sgi(1); 4], 0, 5)]
        {
            assert_eq!(
                place(&lrs, elrsr, intid, FORWARD_PRIORITY),
                crate::vgic::place(&lrs, elrsr, intid, FORWARD_PRIORITY)
            );
        }
        // A hardware-linked entry has no EOI bit: never marked (Septum places software
        // interrupts only; this keeps `vgic::place`'s answer).
        let hw = active(ListRegister::hw_pending(3, 3, FORWARD_PRIORITY).0);
        assert_eq!(
            place(&[hw, 0, 0, 0], 0b1110, 3, FORWARD_PRIORITY),
            crate::vgic::place(&[hw, 0, 0, 0], 0b1110, 3, 0xA0)
        );
        // An entry ELRSR calls empty is not the interrupt's.
        assert_eq!(place(&[a, 0, 0, 0], 0b1111, 3, FORWARD_PRIORITY), Placement::Write(0, sgi(3)));
    }

    /// IRQ-007: the entries the EOI maintenance interrupt reports are the ended software
    /// entries marked for it, and only those.
    #[test]
    fn ended_entries_are_the_marked_invalid_software_ones() {
        let marked = active(sgi(3)) | LR_EOI;
        assert_eq!(ended(&[marked, 0, 0, 0]), 0, "still active");
        assert_eq!(ended(&[with_state(marked, 0), 0, 0, 0]), 0b1);
        assert_eq!(ended(&[0, with_state(marked, 0), with_state(sgi(4), 0), with_state(marked, 1)]), 0b10);
        // Bit 41 of a hardware-linked entry is part of its physical INTID.
        let hw = ListRegister::hw_pending(27, 0x200 | 27, FORWARD_PRIORITY).0;
        assert_ne!(hw & LR_EOI, 0);
        assert_eq!(ended(&[with_state(hw, 0)]), 0);
        assert_eq!(ended(&[]), 0);
    }

    /// IRQ-007: EL2 changes only VI in `HCR_EL2` and only the quirk's maintenance bits in
    /// `ICH_HCR_EL2`.
    #[test]
    fn only_the_quirks_bits_are_written() {
        let on = Line { vi: true, maintenance: NPIE | VGRP1DIE };
        assert_eq!(on.hcr_el2(0x8000_0001), 0x8000_0001 | HCR_EL2_VI);
        assert_eq!(Line::QUIET.hcr_el2(u64::MAX), !HCR_EL2_VI);
        let en_uie = 0b11;
        assert_eq!(on.ich_hcr_el2(en_uie | VGRP1EIE), en_uie | NPIE | VGRP1DIE);
        assert_eq!(Line::QUIET.ich_hcr_el2(en_uie | MAINTENANCE), en_uie);
        assert_eq!(priority_mask(4), 0xF8);
        assert_eq!(priority_mask(7), 0xFF);
        assert_eq!(priority_mask(0), 0x80);
        assert_eq!(priority_mask(99), 0xFF);
    }
}

//! Virtual interrupt decisions for the GICv3 CPU interface (Arm IHI 0069, 12.5.x
//! `ICH_LR<n>_EL2`): which physical interrupts reach which partition, and the list
//! register that carries one. Pure logic; the EL2 binary reads and writes the registers.
//!
//! The first interrupt virtualized is each core's EL1 virtual timer (PPI 27): a
//! partition owns its cores outright, so the interrupt of the timer it programs is
//! forwarded to it as a hardware-linked virtual interrupt. The guest's own end of
//! interrupt then deactivates the physical one, so the timer cannot fire again before
//! the guest has handled it, and the hypervisor never waits on a guest.

/// The EL1 virtual timer's PPI (Arm BSA; every board's DTB `/timer` node says 11, i.e.
/// INTID 16 + 11).
pub const VTIMER_PPI: u32 = 27;
/// The GIC maintenance interrupt (PPI 9): here, "list registers ran empty" (underflow),
/// asked for when virtual SGIs were left waiting for room; under quirk `virq-unwired`
/// also "no pending entry", "group 1 enabled/disabled" and end of interrupt
/// ([`crate::virq_unwired`]). EL2 ends it itself; it is never forwarded.
pub const MAINTENANCE_PPI: u32 = 25;
/// The EL2 physical timer's PPI (Arm BSA: 10, i.e. INTID 16 + 10): the hypervisor's
/// own timer, armed to write a partition's periodic summary of contained events
/// ([`crate::events`]). Never forwarded.
pub const HYP_TIMER_PPI: u32 = 26;
/// The SGI the hypervisor sends between its own cores ("leave your guest": a partition
/// is being stopped). Guests never see physical SGIs.
pub const KICK_SGI: u32 = 0;
/// INTIDs 1020..1023 are special (1023: spurious).
pub const FIRST_SPECIAL: u32 = 1020;
/// Priority the hypervisor gives forwarded interrupts, physical and virtual.
pub const FORWARD_PRIORITY: u8 = 0xA0;
/// Priority of the hypervisor's kick (more urgent than anything forwarded).
pub const KICK_PRIORITY: u8 = 0x80;

/// `ICC_SGI1R_EL1` value sending SGI `intid` to the one core with affinity `mpidr`
/// (Aff0 < 16; Arm IHI 0069, 12.2.23).
pub fn sgi1r(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xF;
    let aff1 = (mpidr >> 8) & 0xFF;
    let aff2 = (mpidr >> 16) & 0xFF;
    let aff3 = (mpidr >> 32) & 0xFF;
    (aff3 << 48) | (aff2 << 32) | (u64::from(intid & 0xF) << 24) | (aff1 << 16) | (1 << aff0)
}

/// What a physical interrupt taken at EL2 means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Physical {
    /// No interrupt after all (spurious INTID): nothing to acknowledge.
    Spurious,
    /// Forward to the partition on this core as this hardware-linked list register.
    Forward(ListRegister),
    /// Another core of the hypervisor kicked this one: end it, then see why.
    Kick,
    /// The list registers ran empty: end it, then place what waits.
    Maintenance,
    /// The hypervisor's own timer: write the summary it was armed for.
    HypTimer,
    /// A shared peripheral interrupt: forwarded if the partition on this core owns it.
    Spi(u32),
    /// Not one the hypervisor enabled: drop its priority, deactivate it, report it.
    Unexpected(u32),
}

/// Classifies the INTID read from `ICC_IAR1_EL1`.
pub fn classify(intid: u32) -> Physical {
    match intid {
        i if i >= FIRST_SPECIAL => Physical::Spurious,
        VTIMER_PPI => Physical::Forward(ListRegister::hw_pending(VTIMER_PPI, VTIMER_PPI, FORWARD_PRIORITY)),
        KICK_SGI => Physical::Kick,
        i if i >= 32 => Physical::Spi(i),
        MAINTENANCE_PPI => Physical::Maintenance,
        HYP_TIMER_PPI => Physical::HypTimer,
        i => Physical::Unexpected(i),
    }
}

/// A list register's state field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    Invalid,
    Pending,
    Active,
    PendingActive,
}

/// An `ICH_LR<n>_EL2` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRegister(pub u64);

impl ListRegister {
    const STATE_SHIFT: u32 = 62;
    pub(crate) const HW: u64 = 1 << 61;
    pub(crate) const GROUP1: u64 = 1 << 60;
    const PRIORITY_SHIFT: u32 = 48;
    /// `EOI` (bit 41, meaningful when HW = 0): maintenance interrupt on EOI.
    const EOI_SHIFT: u32 = 41;
    pub(crate) const EOI: u64 = 1 << Self::EOI_SHIFT;
    const PINTID_SHIFT: u32 = 32;
    const PINTID_MASK: u64 = 0x3FF;

    /// A pending group-1 virtual interrupt `vintid` linked to physical `pintid`.
    pub fn hw_pending(vintid: u32, pintid: u32, priority: u8) -> Self {
        Self(
            (1 << Self::STATE_SHIFT)
                | Self::HW
                | Self::GROUP1
                | (u64::from(priority) << Self::PRIORITY_SHIFT)
                | ((u64::from(pintid) & Self::PINTID_MASK) << Self::PINTID_SHIFT)
                | u64::from(vintid),
        )
    }

    /// A pending group-1 virtual interrupt with no physical one behind it (an SGI).
    pub fn sw_pending(vintid: u32, priority: u8) -> Self {
        Self(
            (1 << Self::STATE_SHIFT) | Self::GROUP1 | (u64::from(priority) << Self::PRIORITY_SHIFT) | u64::from(vintid),
        )
    }

    pub fn state(self) -> LrState {
        match self.0 >> Self::STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }

    pub fn priority(self) -> u8 {
        (self.0 >> Self::PRIORITY_SHIFT) as u8
    }

    pub fn vintid(self) -> u32 {
        self.0 as u32
    }

    /// The linked physical INTID, for a hardware-linked entry.
    pub fn pintid(self) -> Option<u32> {
        (self.0 & Self::HW != 0).then_some(((self.0 >> Self::PINTID_SHIFT) & Self::PINTID_MASK) as u32)
    }
}

/// The vCPUs of the sender's partition an SGI generation write names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    pub intid: u32,
    /// Bit k: vCPU k of the partition.
    pub targets: u16,
    /// The value also named targets outside the partition (ignored).
    pub outside: bool,
}

/// Decodes an `ICC_SGI1R_EL1` value written by vCPU `sender` of a partition with
/// `vcpus` vCPUs (virtual MPIDR of vCPU k: Aff0 = k, the rest 0). Only the partition's
/// own vCPUs can ever be named: every other affinity is outside it.
pub fn sgi_targets(value: u64, sender: usize, vcpus: usize) -> SgiRequest {
    let intid = ((value >> 24) & 0xF) as u32;
    let own: u16 = if vcpus >= 16 { u16::MAX } else { (1u16 << vcpus) - 1 };
    if value & (1 << 40) != 0 {
        // IRM: every PE but the sender.
        return SgiRequest { intid, targets: own & !(1u16 << (sender % 16)), outside: false };
    }
    let list = value as u16;
    let high_affinity = (value >> 16) & 0xFF != 0 || (value >> 32) & 0xFF != 0 || (value >> 48) & 0xFF != 0;
    let range_selector = (value >> 44) & 0xF != 0;
    if high_affinity || range_selector {
        return SgiRequest { intid, targets: 0, outside: list != 0 };
    }
    SgiRequest { intid, targets: list & own, outside: list & !own != 0 }
}

/// `GICH_LR<n>.Grp1` (Arm IHI 0048B, 5.3.x). [`lr_to_v2`] keeps the group the decision
/// made (group 1, as on a GICv3), so it and [`lr_from_v2`] translate faithfully; a
/// guest that enables only group 0 at its CPU interface (Linux's GICv2 driver writes
/// `GICC_CTLR` = 1) would never see group 1, so the EL2 code clears this bit on every
/// GICv2 list register it writes (the distributor view is all group 0, `vgicd2`).
pub const GICH_LR_GRP1: u32 = 1 << 30;

/// The GICv2 `GICH_LR<n>` value (Arm IHI 0048B, 5.3.x) carrying the same virtual
/// interrupt as `lr`: decisions are made in the GICv3 encoding and translated only at
/// the GICv2 hardware, so one set of logic serves both. The priority keeps its top five
/// bits (all a GICv2 list register holds); a software entry's source CPU is 0 and its
/// EOI maintenance request is carried over.
pub fn lr_to_v2(lr: ListRegister) -> u32 {
    let v = lr.0;
    let state = ((v >> ListRegister::STATE_SHIFT) & 0b11) as u32;
    let priority = ((v >> ListRegister::PRIORITY_SHIFT) & 0xFF) as u32 >> 3;
    let physical = match lr.pintid() {
        Some(pintid) => (1 << 31) | (pintid << 10),
        // HW = 0: bit 41 is EOI on a GICv3, bit 19 on a GICv2; CPUID (bits 12..10) 0.
        None => (((v >> ListRegister::EOI_SHIFT) & 1) as u32) << 19,
    };
    let group = if v & ListRegister::GROUP1 != 0 { GICH_LR_GRP1 } else { 0 };
    physical | group | (state << 28) | (priority << 23) | (lr.vintid() & 0x3FF)
}

/// The GICv3-encoded list register for a GICv2 `GICH_LR<n>` value, so the EL2 code reads
/// back in the encoding its decisions use. A software entry's source CPU (CPUID) has no
/// GICv3 counterpart and is dropped; the priority's low three bits read as zero.
pub fn lr_from_v2(v: u32) -> ListRegister {
    let v = u64::from(v);
    let state = (v >> 28) & 0b11;
    let priority = ((v >> 23) & 0x1F) << 3;
    let physical = if v & (1 << 31) != 0 {
        ListRegister::HW | (((v >> 10) & ListRegister::PINTID_MASK) << ListRegister::PINTID_SHIFT)
    } else {
        ((v >> 19) & 1) << ListRegister::EOI_SHIFT
    };
    let group = if v & u64::from(GICH_LR_GRP1) != 0 { ListRegister::GROUP1 } else { 0 };
    ListRegister(
        (state << ListRegister::STATE_SHIFT)
            | physical
            | group
            | (priority << ListRegister::PRIORITY_SHIFT)
            | (v & 0x3FF),
    )
}

/// Decodes a `GICD_SGIR` value (Arm IHI 0048B, 4.3.15) written by vCPU `sender` of a
/// partition with `vcpus` vCPUs; vCPU k is CPU interface k. As with [`sgi_targets`],
/// only the partition's own vCPUs can be named: list bits beyond them set `outside`,
/// and the reserved filter (3) names nobody.
pub fn sgir_targets(value: u32, sender: usize, vcpus: usize) -> SgiRequest {
    let intid = value & 0xF;
    // A GICv2 has eight CPU interfaces at most.
    let own: u16 = (1u16 << vcpus.min(8)) - 1;
    let me: u16 = u32::try_from(sender).ok().and_then(|s| 1u16.checked_shl(s)).unwrap_or(0) & own;
    let list = ((value >> 16) & 0xFF) as u16;
    match (value >> 24) & 0b11 {
        0 => SgiRequest { intid, targets: list & own, outside: list & !own != 0 },
        1 => SgiRequest { intid, targets: own & !me, outside: false },
        2 => SgiRequest { intid, targets: me, outside: false },
        _ => SgiRequest { intid, targets: 0, outside: false },
    }
}

/// Where a software virtual interrupt (an SGI) goes among the list registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Already pending there: SGIs of one INTID coalesce.
    Coalesced,
    /// Write this value to list register n (new entry, or active made pending+active).
    Write(usize, u64),
    /// No room: keep it pending and ask for the underflow maintenance interrupt.
    Full,
    /// Quirk `virq-unwired` only ([`crate::virq_unwired::place`]; never [`place`]'s
    /// answer): the interrupt is active in list register n. Write this value there (the
    /// same entry, now asking for an end-of-interrupt maintenance interrupt) and keep
    /// the interrupt waiting until that maintenance interrupt.
    AfterEnd(usize, u64),
}

/// Places virtual interrupt `intid` given the current list registers `lrs` (the
/// implemented ones) and `ICH_ELRSR_EL2`.
pub fn place(lrs: &[u64], elrsr: u64, intid: u32, priority: u8) -> Placement {
    for (n, &v) in lrs.iter().enumerate() {
        let lr = ListRegister(v);
        if elrsr & (1 << n) != 0 || lr.vintid() != intid {
            continue;
        }
        return match lr.state() {
            LrState::Pending | LrState::PendingActive => Placement::Coalesced,
            LrState::Active => Placement::Write(n, v | (3 << ListRegister::STATE_SHIFT)),
            LrState::Invalid => Placement::Write(n, ListRegister::sw_pending(intid, priority).0),
        };
    }
    match free_list_register(elrsr, lrs.len()) {
        Some(n) => Placement::Write(n, ListRegister::sw_pending(intid, priority).0),
        None => Placement::Full,
    }
}

/// The list register to use: the lowest empty one (`ICH_ELRSR_EL2` bit set) among the
/// `count` implemented (`ICH_VTR_EL2.ListRegs + 1`).
pub fn free_list_register(elrsr: u64, count: usize) -> Option<usize> {
    (0..count.min(16)).find(|&n| elrsr & (1 << n) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_timer_is_forwarded_hardware_linked() {
        let Physical::Forward(lr) = classify(VTIMER_PPI) else { panic!() };
        assert_eq!(lr.state(), LrState::Pending);
        assert_eq!((lr.vintid(), lr.pintid()), (27, Some(27)));
        // State pending (01), HW, group 1, priority 0xA0, pINTID 27, vINTID 27.
        assert_eq!(lr.0, 0x70A0_001B_0000_001B);
        assert_eq!(ListRegister(27).pintid(), None, "a software entry links nothing");
    }

    #[test]
    fn special_and_unowned_interrupts() {
        assert_eq!(classify(1023), Physical::Spurious);
        assert_eq!(classify(1020), Physical::Spurious);
        assert_eq!(classify(u32::MAX), Physical::Spurious);
        assert_eq!(classify(30), Physical::Unexpected(30));
        assert_eq!(classify(KICK_SGI), Physical::Kick);
        assert_eq!(classify(MAINTENANCE_PPI), Physical::Maintenance);
        assert_eq!(classify(HYP_TIMER_PPI), Physical::HypTimer);
        assert_eq!(classify(1), Physical::Unexpected(1));
        assert_eq!(classify(33), Physical::Spi(33));
    }

    #[test]
    fn sgi_to_one_core() {
        assert_eq!(sgi1r(KICK_SGI, 0), 1);
        assert_eq!(sgi1r(0, 3), 1 << 3);
        assert_eq!(sgi1r(5, 0x0001_0102), (1 << 32) | (5 << 24) | (1 << 16) | (1 << 2));
        assert_eq!(sgi1r(0, 0x2_0000_0000), 2 << 48 | 1);
    }

    #[test]
    fn sgis_reach_only_the_partitions_own_vcpus() {
        let sgi = |intid: u64| intid << 24;
        assert_eq!(sgi_targets(sgi(3) | 0b10, 0, 2), SgiRequest { intid: 3, targets: 0b10, outside: false });
        assert_eq!(
            sgi_targets(sgi(3) | 0b11, 1, 2),
            SgiRequest { intid: 3, targets: 0b11, outside: false },
            "self too"
        );
        // Beyond the partition's vCPUs, in another cluster, or via a range selector.
        assert_eq!(sgi_targets(sgi(1) | 0xFFFE, 0, 2), SgiRequest { intid: 1, targets: 0b10, outside: true });
        assert_eq!(sgi_targets(sgi(1) | (1 << 16) | 1, 0, 2), SgiRequest { intid: 1, targets: 0, outside: true });
        assert_eq!(sgi_targets(sgi(1) | (1 << 32) | 1, 0, 2).targets, 0);
        assert_eq!(sgi_targets(sgi(1) | (1 << 48) | 1, 0, 2).targets, 0);
        assert_eq!(sgi_targets(sgi(1) | (1 << 44) | 1, 0, 2).targets, 0);
        // IRM: every other vCPU of the partition, and nothing else.
        assert_eq!(sgi_targets(sgi(2) | (1 << 40), 0, 1), SgiRequest { intid: 2, targets: 0, outside: false });
        assert_eq!(sgi_targets(sgi(2) | (1 << 40), 1, 3), SgiRequest { intid: 2, targets: 0b101, outside: false });
        assert_eq!(sgi_targets(u64::MAX, 0, 8).targets, 0xFE);
    }

    #[test]
    fn sgis_coalesce_and_fill_list_registers() {
        let none = [0u64; 4];
        let p = ListRegister::sw_pending(3, 0xA0);
        assert_eq!(p.pintid(), None);
        assert_eq!(place(&none, 0b1111, 3, 0xA0), Placement::Write(0, p.0));
        let one = [p.0, 0, 0, 0];
        assert_eq!(place(&one, 0b1110, 3, 0xA0), Placement::Coalesced);
        assert_eq!(place(&one, 0b1110, 4, 0xA0), Placement::Write(1, ListRegister::sw_pending(4, 0xA0).0));
        let active = p.0 & !(3 << 62) | (2 << 62);
        assert_eq!(place(&[active, 0, 0, 0], 0b1110, 3, 0xA0), Placement::Write(0, active | (3 << 62)));
        let full = [1, 2, 4, 5].map(|i| ListRegister::sw_pending(i, 0xA0).0);
        assert_eq!(place(&full, 0, 3, 0xA0), Placement::Full);
        assert_eq!(place(&full, 0, 2, 0xA0), Placement::Coalesced);
    }

    #[test]
    fn list_register_choice() {
        assert_eq!(free_list_register(0b1111, 4), Some(0));
        assert_eq!(free_list_register(0b1010, 4), Some(1));
        assert_eq!(free_list_register(0b1_0000, 4), None, "beyond the implemented ones");
        assert_eq!(free_list_register(0, 4), None);
        assert_eq!(free_list_register(u64::MAX, 64), Some(0));
        assert_eq!(free_list_register(1 << 15, 64), Some(15));
    }

    #[test]
    fn list_registers_translate_to_gicv2() {
        // The timer: HW, group 1, pending, priority 0xA0 (top five bits 0x14), 27 -> 27.
        let timer = ListRegister::hw_pending(VTIMER_PPI, VTIMER_PPI, FORWARD_PRIORITY);
        let v2 = lr_to_v2(timer);
        assert_eq!(v2, (1 << 31) | GICH_LR_GRP1 | (1 << 28) | (0x14 << 23) | (27 << 10) | 27);
        assert_eq!(v2, 0xDA00_6C1B);
        assert_eq!(lr_from_v2(v2), timer);
        assert_eq!(lr_from_v2(v2).pintid(), Some(27));
        // A doorbell: software, no source CPU, no EOI maintenance.
        let doorbell = ListRegister::sw_pending(960, 0xA0);
        let v2 = lr_to_v2(doorbell);
        assert_eq!(v2, GICH_LR_GRP1 | (1 << 28) | (0x14 << 23) | 960);
        assert_eq!(lr_from_v2(v2), doorbell);
        assert_eq!(lr_from_v2(v2).pintid(), None);
        // An active SGI.
        let sgi = ListRegister(ListRegister::sw_pending(3, 0x80).0 & !(3 << 62) | (2 << 62));
        let v2 = lr_to_v2(sgi);
        assert_eq!(v2, GICH_LR_GRP1 | (2 << 28) | (0x10 << 23) | 3);
        assert_eq!(lr_from_v2(v2), sgi);
        assert_eq!(lr_from_v2(v2).state(), LrState::Active);
    }

    #[test]
    fn every_list_register_state_and_field_round_trips() {
        let states =
            [(LrState::Invalid, 0u64), (LrState::Pending, 1), (LrState::Active, 2), (LrState::PendingActive, 3)];
        for (state, bits) in states {
            for hw in [false, true] {
                for group1 in [false, true] {
                    for priority in [0u8, 0x08, 0xA0, 0xF8] {
                        let base = if hw {
                            ListRegister::hw_pending(1019, 1019, priority)
                        } else {
                            ListRegister::sw_pending(1019, priority)
                        };
                        let mut v = base.0 & !(3 << 62) | (bits << 62);
                        if !group1 {
                            v &= !(1 << 60);
                        }
                        let lr = ListRegister(v);
                        let v2 = lr_to_v2(lr);
                        assert_eq!(v2 >> 28 & 3, bits as u32);
                        assert_eq!(v2 & GICH_LR_GRP1 != 0, group1);
                        assert_eq!(v2 >> 31 != 0, hw);
                        let back = lr_from_v2(v2);
                        assert_eq!(back, lr, "{state:?} hw={hw} group1={group1} priority={priority:#x}");
                        assert_eq!(back.state(), state);
                        assert_eq!(lr_to_v2(back), v2);
                    }
                }
            }
        }
        // The priority's low three bits do not fit; the rest survives.
        assert_eq!(lr_from_v2(lr_to_v2(ListRegister::sw_pending(5, 0xA7))), ListRegister::sw_pending(5, 0xA0));
        // EOI maintenance (software entries only) crosses both ways; CPUID is dropped.
        let eoi = ListRegister(ListRegister::sw_pending(5, 0).0 | (1 << 41));
        assert_eq!(lr_to_v2(eoi), (1 << 28) | GICH_LR_GRP1 | (1 << 19) | 5);
        assert_eq!(lr_from_v2(lr_to_v2(eoi)), eoi);
        assert_eq!(lr_from_v2((1 << 28) | (3 << 10) | 5), ListRegister(1 << 62 | 5), "CPUID 3 dropped");
        assert_eq!(lr_to_v2(ListRegister(0)), 0);
        assert_eq!(lr_from_v2(0), ListRegister(0));
    }

    #[test]
    fn gicv2_sgis_reach_only_the_partitions_own_vcpus() {
        let sgir = |filter: u32, list: u32, intid: u32| (filter << 24) | (list << 16) | intid;
        // Filter 0: the listed CPU interfaces (vCPU k is interface k).
        assert_eq!(sgir_targets(sgir(0, 0b10, 3), 0, 2), SgiRequest { intid: 3, targets: 0b10, outside: false });
        assert_eq!(sgir_targets(sgir(0, 0b11, 3), 1, 2), SgiRequest { intid: 3, targets: 0b11, outside: false });
        assert_eq!(sgir_targets(sgir(0, 0xFE, 1), 0, 2), SgiRequest { intid: 1, targets: 0b10, outside: true });
        assert_eq!(sgir_targets(sgir(0, 0x04, 1), 0, 2), SgiRequest { intid: 1, targets: 0, outside: true });
        assert_eq!(sgir_targets(sgir(0, 0, 1), 0, 2), SgiRequest { intid: 1, targets: 0, outside: false });
        assert_eq!(sgir_targets(sgir(0, 0xFF, 15), 0, 8), SgiRequest { intid: 15, targets: 0xFF, outside: false });
        // Filter 1: all but the sender.
        assert_eq!(sgir_targets(sgir(1, 0xFF, 2), 1, 3), SgiRequest { intid: 2, targets: 0b101, outside: false });
        assert_eq!(sgir_targets(sgir(1, 0, 2), 0, 1), SgiRequest { intid: 2, targets: 0, outside: false });
        // Filter 2: the sender only.
        assert_eq!(sgir_targets(sgir(2, 0xFF, 7), 1, 2), SgiRequest { intid: 7, targets: 0b10, outside: false });
        // Filter 3: reserved, nobody.
        assert_eq!(sgir_targets(sgir(3, 0xFF, 7), 0, 2), SgiRequest { intid: 7, targets: 0, outside: false });
        // Bits beyond the fields (NSATT, reserved) change nothing; odd inputs do not panic.
        assert_eq!(sgir_targets(sgir(0, 1, 4) | (1 << 15) | 0xF000_0000, 0, 1).targets, 1);
        assert_eq!(sgir_targets(u32::MAX, usize::MAX, usize::MAX).targets, 0);
        assert_eq!(sgir_targets(sgir(1, 0, 0), usize::MAX, 16).targets, 0xFF);
        assert_eq!(sgir_targets(sgir(2, 0, 0), 9, 16).targets, 0);
        assert_eq!(sgir_targets(sgir(0, 1, 0), 0, 0), SgiRequest { intid: 0, targets: 0, outside: true });
    }
}

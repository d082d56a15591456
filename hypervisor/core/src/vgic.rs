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
    /// Not one the hypervisor enabled: drop its priority, deactivate it, report it.
    Unexpected(u32),
}

/// Classifies the INTID read from `ICC_IAR1_EL1`.
pub fn classify(intid: u32) -> Physical {
    match intid {
        i if i >= FIRST_SPECIAL => Physical::Spurious,
        VTIMER_PPI => Physical::Forward(ListRegister::hw_pending(VTIMER_PPI, VTIMER_PPI, FORWARD_PRIORITY)),
        KICK_SGI => Physical::Kick,
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
    const HW: u64 = 1 << 61;
    const GROUP1: u64 = 1 << 60;
    const PRIORITY_SHIFT: u32 = 48;
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

    pub fn state(self) -> LrState {
        match self.0 >> Self::STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }

    pub fn vintid(self) -> u32 {
        self.0 as u32
    }

    /// The linked physical INTID, for a hardware-linked entry.
    pub fn pintid(self) -> Option<u32> {
        (self.0 & Self::HW != 0).then_some(((self.0 >> Self::PINTID_SHIFT) & Self::PINTID_MASK) as u32)
    }

    /// The physical interrupt the hypervisor must deactivate itself when it discards
    /// this entry (a partition restarted before it ended the interrupt): a linked
    /// physical interrupt stays active until its virtual one is deactivated.
    pub fn left_active(self) -> Option<u32> {
        self.pintid().filter(|_| self.state() != LrState::Invalid)
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
        assert_eq!(lr.left_active(), Some(27));
        assert_eq!(ListRegister(lr.0 & !(3 << 62)).left_active(), None);
        assert_eq!(ListRegister(27).pintid(), None, "a software entry links nothing");
    }

    #[test]
    fn special_and_unowned_interrupts() {
        assert_eq!(classify(1023), Physical::Spurious);
        assert_eq!(classify(1020), Physical::Spurious);
        assert_eq!(classify(u32::MAX), Physical::Spurious);
        assert_eq!(classify(30), Physical::Unexpected(30));
        assert_eq!(classify(KICK_SGI), Physical::Kick);
        assert_eq!(classify(1), Physical::Unexpected(1));
        assert_eq!(classify(33), Physical::Unexpected(33));
    }

    #[test]
    fn sgi_to_one_core() {
        assert_eq!(sgi1r(KICK_SGI, 0), 1);
        assert_eq!(sgi1r(0, 3), 1 << 3);
        assert_eq!(sgi1r(5, 0x0001_0102), (1 << 32) | (5 << 24) | (1 << 16) | (1 << 2));
        assert_eq!(sgi1r(0, 0x2_0000_0000), 2 << 48 | 1);
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
}

//! The GICv3 distributor a partition sees (Arm IHI 0069, 12.9): an emulation, since the
//! physical distributor is the hypervisor's. It shows only the partition's own
//! interrupts: the shared peripheral interrupts its system description gives it and
//! the doorbell interrupts of its channels. Everything else reads as zero and ignores
//! writes, and the access is counted, so a partition can neither see nor change another
//! partition's interrupts. Pure logic: the EL2 binary decodes the trapped access,
//! calls [`VirtualDistributor::read`] or [`VirtualDistributor::write`], and carries out
//! the returned [`Effect`] on the physical distributor.
//!
//! The view is the single-security-state one with affinity routing on (`ARE` reads as
//! one), as on the hardware Septum runs: SGIs and PPIs live in the redistributors, so
//! their distributor bits are reserved here too.

/// The distributor's registers Septum emulates (offsets from its base).
pub mod reg {
    pub const CTLR: u64 = 0x0000;
    pub const TYPER: u64 = 0x0004;
    pub const IIDR: u64 = 0x0008;
    pub const IGROUPR: u64 = 0x0080;
    pub const ISENABLER: u64 = 0x0100;
    pub const ICENABLER: u64 = 0x0180;
    pub const ISPENDR: u64 = 0x0200;
    pub const ICPENDR: u64 = 0x0280;
    pub const ISACTIVER: u64 = 0x0300;
    pub const ICACTIVER: u64 = 0x0380;
    pub const IPRIORITYR: u64 = 0x0400;
    pub const ICFGR: u64 = 0x0C00;
    pub const IROUTER: u64 = 0x6000;
    pub const PIDR2: u64 = 0xFFE8;
    /// The distributor's frame.
    pub const SIZE: u64 = 0x1_0000;
}

/// A trapped access to the distributor's frame that can be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub offset: u64,
    pub width: u8,
    pub write: bool,
    /// The transfer register (31 = XZR).
    pub reg: u8,
}

/// Whether a stage-2 data abort at `ipa` is an access to the distributor at `base` that
/// the hardware fully describes (ESR.ISV); anything else there stays a violation.
pub fn decode(base: u64, ipa: u64, esr: crate::esr::Esr) -> Option<Access> {
    let offset = ipa.checked_sub(base).filter(|&o| o < reg::SIZE)?;
    let da = esr.data_abort();
    da.valid.then_some(Access { offset, width: da.size, write: da.write, reg: da.reg })
}

/// Interrupts a partition may own at once.
pub const MAX_OWNED: usize = 32;
/// INTIDs the emulated distributor describes (`TYPER.ITLinesNumber` = 31).
pub const INTIDS: u32 = 1024;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// `IIDR`: implementer JEP106 0x43B (Arm), as the hardware below; revision 0.
const IIDR: u32 = 0x0000_043B;

/// What the physical distributor must do after a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Physical interrupts of the partition were enabled or disabled: bit `i` of `mask`
    /// is INTID `first + i` (one write may name every SPI of its word); each is routed
    /// to the vCPU [`VirtualDistributor::vcpu_of`] names.
    Enable {
        first: u32,
        mask: u32,
        on: bool,
    },
    /// A physical interrupt of the partition got a new priority.
    Priority {
        intid: u32,
        priority: u8,
    },
    /// A physical interrupt of the partition is routed to the partition's vCPU `vcpu`
    /// (and stays enabled or disabled as it was).
    Route {
        intid: u32,
        vcpu: usize,
        enabled: bool,
    },
}

/// How an access was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A register of the partition's own interrupts, or a global one.
    Done,
    /// The access named interrupts that are not the partition's (or unknown registers):
    /// read as zero, write ignored, counted.
    Outside,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owned {
    intid: u32,
    /// A device's interrupt (the physical one is programmed) or a doorbell's (virtual
    /// only).
    physical: bool,
    enabled: bool,
    /// A virtual interrupt raised while disabled, latched until the guest enables it
    /// (or clears it), as the GIC keeps an edge's pending state.
    pending: bool,
    priority: u8,
    /// ICFGR's two bits.
    config: u8,
    vcpu: usize,
}

/// One partition's distributor.
#[derive(Clone, Debug)]
pub struct VirtualDistributor {
    ctlr: u32,
    vcpus: usize,
    owned: [Option<Owned>; MAX_OWNED],
    /// Accesses that named interrupts outside the partition, or unknown registers.
    pub outside: u64,
}

impl VirtualDistributor {
    /// A distributor for `vcpus` vCPUs showing the physical interrupts `physical` and the
    /// virtual ones `virt` (beyond [`MAX_OWNED`] in total, the rest are not shown).
    pub fn new(vcpus: usize, physical: &[u32], virt: &[u32]) -> Self {
        let mut owned = [None; MAX_OWNED];
        let all = physical.iter().map(|&i| (i, true)).chain(virt.iter().map(|&i| (i, false)));
        for (slot, (intid, physical)) in owned.iter_mut().zip(all.filter(|&(i, _)| (32..INTIDS).contains(&i))) {
            *slot = Some(Owned { intid, physical, enabled: false, pending: false, priority: 0, config: 0, vcpu: 0 });
        }
        Self { ctlr: CTLR_ARE, vcpus: vcpus.max(1), owned, outside: 0 }
    }

    fn find(&mut self, intid: u32) -> Option<&mut Owned> {
        self.owned.iter_mut().flatten().find(|o| o.intid == intid)
    }

    /// Whether the distributor shows `intid` as enabled (a virtual interrupt is only
    /// delivered when it is; its priority is the one set here).
    pub fn enabled(&self, intid: u32) -> Option<u8> {
        self.owned.iter().flatten().find(|o| o.intid == intid && o.enabled).map(|o| o.priority)
    }

    /// The vCPU an interrupt the distributor shows is routed to.
    pub fn vcpu_of(&self, intid: u32) -> Option<usize> {
        self.owned.iter().flatten().find(|o| o.intid == intid).map(|o| o.vcpu)
    }

    /// A virtual interrupt of the partition (a doorbell) fires: the vCPU to deliver it
    /// to now if the guest has it enabled; otherwise it stays pending here until the
    /// guest enables it ([`Self::take_ready`]). `None` too for an INTID not shown.
    pub fn raise(&mut self, intid: u32) -> Option<usize> {
        let o = self.find(intid).filter(|o| !o.physical)?;
        if o.enabled {
            Some(o.vcpu)
        } else {
            o.pending = true;
            None
        }
    }

    /// A latched virtual interrupt that is now enabled, cleared here for delivery:
    /// its INTID and target vCPU. Called after every write until it answers `None`.
    pub fn take_ready(&mut self) -> Option<(u32, usize)> {
        let o = self.owned.iter_mut().flatten().find(|o| !o.physical && o.enabled && o.pending)?;
        o.pending = false;
        Some((o.intid, o.vcpu))
    }

    /// A read of `width` bytes (1, 4 or 8) at `offset`.
    pub fn read(&mut self, offset: u64, width: u8) -> (u64, Outcome) {
        let done = |v: u64| (v, Outcome::Done);
        match (offset, width) {
            (reg::CTLR, 4) => done(u64::from(self.ctlr)),
            (reg::TYPER, 4) => {
                let it_lines = INTIDS / 32 - 1;
                let cpus = (self.vcpus as u32 - 1).min(7);
                done(u64::from((9 << 19) | (cpus << 5) | it_lines))
            }
            (reg::IIDR, 4) => done(u64::from(IIDR)),
            (reg::PIDR2, 4) => done(0x30),
            _ => self.per_interrupt(offset, width, None),
        }
    }

    /// A write of `value` (`width` bytes) at `offset`.
    pub fn write(&mut self, offset: u64, width: u8, value: u64) -> (Effect, Outcome) {
        match (offset, width) {
            (reg::CTLR, 4) => {
                self.ctlr = CTLR_ARE | (value as u32 & CTLR_ENABLE_GRP1);
                (Effect::None, Outcome::Done)
            }
            (reg::TYPER | reg::IIDR | reg::PIDR2, 4) => (Effect::None, Outcome::Done),
            _ => {
                let mut effect = Effect::None;
                let (_, outcome) = self.per_interrupt(offset, width, Some((value, &mut effect)));
                (effect, outcome)
            }
        }
    }

    /// The per-interrupt register banks. `write`: the value and where to put the effect.
    fn per_interrupt(&mut self, offset: u64, width: u8, write: Option<(u64, &mut Effect)>) -> (u64, Outcome) {
        // One bit per INTID.
        let bit_banks =
            [reg::IGROUPR, reg::ISENABLER, reg::ICENABLER, reg::ISPENDR, reg::ICPENDR, reg::ISACTIVER, reg::ICACTIVER];
        if let Some(&bank) = bit_banks.iter().find(|&&b| (b..b + 0x80).contains(&offset)) {
            if width != 4 || !offset.is_multiple_of(4) {
                return self.outside_access();
            }
            let first = ((offset - bank) * 8) as u32;
            return self.bits(bank, first, write);
        }
        if (reg::IPRIORITYR..reg::IPRIORITYR + u64::from(INTIDS)).contains(&offset) {
            let first = (offset - reg::IPRIORITYR) as u32;
            return match width {
                1 | 4 => self.priorities(first, u32::from(width), write),
                _ => self.outside_access(),
            };
        }
        if (reg::ICFGR..reg::ICFGR + u64::from(INTIDS) / 4).contains(&offset) && width == 4 && offset.is_multiple_of(4)
        {
            let first = ((offset - reg::ICFGR) * 4) as u32;
            return self.configs(first, write);
        }
        if (reg::IROUTER..reg::IROUTER + u64::from(INTIDS) * 8).contains(&offset)
            && width == 8
            && offset.is_multiple_of(8)
        {
            let intid = ((offset - reg::IROUTER) / 8) as u32;
            return self.router(intid, write);
        }
        self.outside_access()
    }

    fn outside_access(&mut self) -> (u64, Outcome) {
        self.outside += 1;
        (0, Outcome::Outside)
    }

    /// 32 INTIDs from `first`, one bit each, in bank `bank`.
    fn bits(&mut self, bank: u64, first: u32, write: Option<(u64, &mut Effect)>) -> (u64, Outcome) {
        let mut value = 0u64;
        let (mut foreign_write, mut any_owned) = (false, false);
        let written = write.as_ref().map(|(v, _)| *v as u32);
        let mut effect = Effect::None;
        for i in 0..32 {
            let intid = first + i;
            let asked = written.is_some_and(|w| w & (1 << i) != 0);
            let Some(o) = self.find(intid) else {
                // SGI/PPI bits are reserved here (silent); anyone else's are counted.
                foreign_write |= asked && intid >= 32;
                continue;
            };
            any_owned = true;
            match bank {
                reg::IGROUPR => value |= 1 << i,
                reg::ISENABLER | reg::ICENABLER => {
                    if asked {
                        o.enabled = bank == reg::ISENABLER;
                        if o.physical {
                            let mask = match effect {
                                Effect::Enable { mask, .. } => mask,
                                _ => 0,
                            };
                            effect = Effect::Enable { first, mask: mask | 1 << i, on: o.enabled };
                        }
                    }
                    if o.enabled {
                        value |= 1 << i;
                    }
                }
                // A doorbell's pending state is the emulation's; a device's is the
                // hardware's (not shown, not set: the device raises it).
                reg::ISPENDR | reg::ICPENDR if !o.physical => {
                    if asked {
                        o.pending = bank == reg::ISPENDR;
                    }
                    if o.pending {
                        value |= 1 << i;
                    }
                }
                _ => {}
            }
        }
        let read_of_nothing_owned = written.is_none() && !any_owned && first >= 32;
        if let Some((_, slot)) = write {
            *slot = effect;
        }
        self.answer(value, foreign_write || read_of_nothing_owned)
    }

    fn answer(&mut self, value: u64, outside: bool) -> (u64, Outcome) {
        if outside {
            self.outside += 1;
            return (value, Outcome::Outside);
        }
        (value, Outcome::Done)
    }

    /// `count` (1 or 4) priority bytes from INTID `first`.
    fn priorities(&mut self, first: u32, count: u32, write: Option<(u64, &mut Effect)>) -> (u64, Outcome) {
        let mut value = 0u64;
        let (mut foreign_write, mut any_owned) = (false, false);
        let mut effect = Effect::None;
        let written = write.as_ref().map(|(v, _)| *v);
        for i in 0..count {
            let intid = first + i;
            let byte = written.map(|w| (w >> (8 * i)) as u8);
            let Some(o) = self.find(intid) else {
                foreign_write |= intid >= 32 && byte.is_some();
                continue;
            };
            any_owned = true;
            if let Some(b) = byte {
                o.priority = b;
                if o.physical {
                    effect = Effect::Priority { intid, priority: b };
                }
            }
            value |= u64::from(o.priority) << (8 * i);
        }
        let read_of_nothing_owned = written.is_none() && !any_owned && first >= 32;
        if let Some((_, slot)) = write {
            *slot = effect;
        }
        self.answer(value, foreign_write || read_of_nothing_owned)
    }

    /// 16 INTIDs from `first`, two configuration bits each.
    fn configs(&mut self, first: u32, write: Option<(u64, &mut Effect)>) -> (u64, Outcome) {
        let mut value = 0u64;
        let mut any_owned = false;
        let written = write.as_ref().map(|(v, _)| *v as u32);
        for i in 0..16 {
            let Some(o) = self.find(first + i) else { continue };
            any_owned = true;
            if let Some(w) = written {
                o.config = ((w >> (2 * i)) & 0b11) as u8;
            }
            value |= u64::from(o.config) << (2 * i);
        }
        self.answer(value, !any_owned && first >= 32)
    }

    fn router(&mut self, intid: u32, write: Option<(u64, &mut Effect)>) -> (u64, Outcome) {
        let vcpus = self.vcpus;
        let Some(o) = self.find(intid) else {
            return self.outside_access();
        };
        if let Some((w, slot)) = write {
            // Aff0 names the vCPU; Interrupt_Routing_Mode (bit 31) "any PE" means vCPU 0.
            let vcpu = if w & (1 << 31) != 0 { 0 } else { (w & 0xFF) as usize };
            if vcpu < vcpus && w & 0xFF_00FF_FF00 == 0 {
                o.vcpu = vcpu;
                if o.physical {
                    *slot = Effect::Route { intid, vcpu, enabled: o.enabled };
                }
            }
        }
        (o.vcpu as u64, Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IRQ-003: one write naming two of the partition's SPIs carries both to the
    /// physical distributor, each routed as set.
    #[test]
    fn one_write_enabling_two_spis_enables_both() {
        let mut d = VirtualDistributor::new(2, &[33, 40], &[]);
        d.write(reg::IROUTER + 40 * 8, 8, 1);
        let bank = reg::ISENABLER + 4;
        let both = (1 << 1) | (1 << 8);
        assert_eq!(d.write(bank, 4, both), (Effect::Enable { first: 32, mask: both as u32, on: true }, Outcome::Done));
        assert_eq!((d.vcpu_of(33), d.vcpu_of(40)), (Some(0), Some(1)));
        assert_eq!(d.write(reg::ICENABLER + 4, 4, both).0, Effect::Enable { first: 32, mask: both as u32, on: false });
        assert_eq!(d.read(bank, 4).0, 0);
    }

    /// A partition owning UART1's SPI (INTID 34) and one doorbell (960), on 2 vCPUs.
    fn dist() -> VirtualDistributor {
        VirtualDistributor::new(2, &[34], &[960])
    }

    #[test]
    fn identification_and_control() {
        let mut d = dist();
        assert_eq!(d.read(reg::CTLR, 4), (0x10, Outcome::Done), "ARE on, groups off");
        assert_eq!(d.write(reg::CTLR, 4, 0xFFFF_FFFF), (Effect::None, Outcome::Done));
        assert_eq!(d.read(reg::CTLR, 4).0, 0x12, "only EnableGrp1 is the guest's");
        let typer = d.read(reg::TYPER, 4).0;
        assert_eq!((typer & 0x1F, (typer >> 5) & 7, (typer >> 19) & 0x1F), (31, 1, 9));
        assert_eq!(d.read(reg::PIDR2, 4).0 >> 4 & 0xF, 3, "GICv3");
        assert_eq!(d.outside, 0);
    }

    /// IRQ-003: a partition enables, prioritises and routes its own interrupts, and the
    /// physical distributor follows; a doorbell stays virtual.
    #[test]
    fn own_interrupts_are_programmed() {
        let mut d = dist();
        let bank = reg::ISENABLER + 4; // INTIDs 32..64
        assert_eq!(d.write(bank, 4, 1 << 2), (Effect::Enable { first: 32, mask: 1 << 2, on: true }, Outcome::Done));
        assert_eq!(d.vcpu_of(34), Some(0));
        assert_eq!(d.read(bank, 4), (1 << 2, Outcome::Done));
        assert_eq!(
            d.write(reg::ICENABLER + 4, 4, 1 << 2),
            (Effect::Enable { first: 32, mask: 1 << 2, on: false }, Outcome::Done)
        );
        assert_eq!(d.read(bank, 4).0, 0);
        assert_eq!(
            d.write(reg::IPRIORITYR + 34, 1, 0x80),
            (Effect::Priority { intid: 34, priority: 0x80 }, Outcome::Done)
        );
        assert_eq!(d.read(reg::IPRIORITYR + 32, 4).0, 0x80 << 16);
        assert_eq!(
            d.write(reg::IROUTER + 34 * 8, 8, 1),
            (Effect::Route { intid: 34, vcpu: 1, enabled: false }, Outcome::Done)
        );
        assert_eq!(d.read(reg::IROUTER + 34 * 8, 8).0, 1);
        assert_eq!(d.write(reg::IROUTER + 34 * 8, 8, 5).0, Effect::None, "no vCPU 5: routing unchanged");
        assert_eq!(d.read(reg::IROUTER + 34 * 8, 8).0, 1);
        assert_eq!(d.write(bank, 4, 1 << 2).0, Effect::Enable { first: 32, mask: 1 << 2, on: true });
        assert_eq!(d.vcpu_of(34), Some(1), "routed as set");
        assert_eq!(d.read(reg::IGROUPR + 4, 4).0, 1 << 2, "group 1");
        // The doorbell: enabled and pended virtually, no physical effect.
        let db_bank = reg::ISENABLER + 960 / 8;
        assert_eq!(d.write(db_bank, 4, 1), (Effect::None, Outcome::Done));
        assert_eq!(d.enabled(960), Some(0));
        assert_eq!(d.write(reg::ISPENDR + 960 / 8, 4, 1), (Effect::None, Outcome::Done));
        assert_eq!(d.take_ready(), Some((960, 0)), "pended by the guest, enabled: delivered");
        assert_eq!(d.take_ready(), None);
        assert_eq!(d.outside, 0);
    }

    /// IRQ-005: a doorbell raised while its interrupt is disabled is not delivered; it
    /// stays pending and is delivered, to the vCPU its router names, once enabled.
    #[test]
    fn a_disabled_doorbell_is_latched_until_enabled() {
        let mut d = VirtualDistributor::new(2, &[], &[960, 961]);
        assert_eq!(d.raise(960), None, "disabled: not delivered");
        assert_eq!(d.raise(961), None);
        assert_eq!(d.read(reg::ISPENDR + 960 / 8, 4).0, 0b11, "both show pending");
        assert_eq!(d.take_ready(), None, "still disabled");
        assert_eq!(d.write(reg::ICPENDR + 960 / 8, 4, 0b10).0, Effect::None);
        assert_eq!(d.write(reg::IROUTER + 960 * 8, 8, 1).0, Effect::None, "virtual: no physical effect");
        d.write(reg::ISENABLER + 960 / 8, 4, 0b11);
        assert_eq!(d.take_ready(), Some((960, 1)), "delivered to vCPU 1");
        assert_eq!(d.take_ready(), None, "961 was cleared before it was enabled");
        assert_eq!(d.raise(961), Some(0), "enabled now: delivered at once");
        assert_eq!(d.raise(40), None, "not the partition's");
    }

    /// IRQ-003: other partitions' interrupts read as zero, ignore writes, and are counted.
    #[test]
    fn other_interrupts_are_invisible_and_untouchable() {
        let mut d = dist();
        // UART0's SPI 33 (the critical monitor's) sits in the same bank as 34.
        assert_eq!(d.write(reg::ISENABLER + 4, 4, 1 << 1), (Effect::None, Outcome::Outside));
        assert_eq!(d.read(reg::ISENABLER + 4, 4), (0, Outcome::Done), "only its own bit can show");
        assert_eq!(d.write(reg::IPRIORITYR + 33, 1, 0), (Effect::None, Outcome::Outside));
        assert_eq!(d.write(reg::IROUTER + 33 * 8, 8, 0), (Effect::None, Outcome::Outside));
        assert_eq!(d.read(reg::ISENABLER + 8, 4), (0, Outcome::Outside), "a bank with nothing of its own");
        assert_eq!(d.read(0x8000, 4), (0, Outcome::Outside), "an unknown register");
        assert_eq!(d.read(reg::ISENABLER + 2, 4).1, Outcome::Outside, "misaligned");
        assert_eq!(d.read(reg::IROUTER + 34 * 8, 4).1, Outcome::Outside, "IROUTER is 64-bit");
        assert_eq!(d.outside, 7);
        // SGI/PPI bits are reserved in the distributor: silent, not counted.
        assert_eq!(d.write(reg::ISENABLER, 4, u64::MAX), (Effect::None, Outcome::Done));
        assert_eq!(d.read(reg::ISENABLER, 4), (0, Outcome::Done));
        assert_eq!(d.outside, 7);
    }

    #[test]
    fn never_panics_on_any_offset_or_width() {
        let mut d = dist();
        for offset in (0..reg::SIZE).step_by(4).chain([1, 3, 0xFFFF, u64::MAX - 7]) {
            for width in [0u8, 1, 2, 4, 8, 16] {
                d.read(offset, width);
                d.write(offset, width, u64::MAX);
            }
        }
    }
}

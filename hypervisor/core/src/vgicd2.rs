//! The GICv2 distributor a partition sees (Arm IHI 0048B, 4.3), on the boards whose GIC
//! is a GICv2 (QEMU `virt` with `gic-version=2`, the Raspberry Pi 4's GIC-400). Like
//! [`crate::vgicd`] it shows only the partition's own interrupts, and it is an adapter
//! over the same state rather than a second emulation, so both GIC versions keep one
//! set of rules:
//!
//! * SPIs and doorbells (INTID 32 and up) are [`VirtualDistributor`]'s: the GICv2 and
//!   GICv3 distributors lay their per-interrupt banks out alike, so those accesses go to
//!   it at the same offsets, and routing (`GICD_ITARGETSR`) becomes its `IROUTER`.
//! * SGIs and PPIs (INTIDs 0..32) are banked per CPU interface on a GICv2, in the
//!   distributor; on a GICv3 they sit in each vCPU's redistributor. The accessing vCPU's
//!   word 0 of each bank is therefore its frame in [`VirtualRedistributors`] (through its
//!   `SGI_base` offsets, [`crate::vgicr::reg`]), which already latches SGIs sent while
//!   disabled ([`VirtualRedistributors::raise_sgi`], [`VirtualRedistributors::take_ready`]).
//! * `GICD_SGIR` is decoded here ([`crate::vgic::sgir_targets`]); the EL2 code delivers
//!   the SGI as it does a GICv3 guest's `ICC_SGI1R_EL1`.
//!
//! Everything not emulated reads as zero, ignores writes and counts in
//! [`VirtualDistributor::outside`], the counter the EL2 code reports. After a write, the
//! EL2 code takes what became ready from both: [`VirtualDistributor::take_ready`] and
//! [`VirtualRedistributors::take_ready`] of the accessing vCPU.
//!
//! The view has no Security Extensions and puts every interrupt in group 0: Linux's
//! GICv2 driver enables only group 0 at its CPU interface (`GICC_CTLR` = 1) and never
//! writes `GICD_IGROUPR`, and KVM shows GICv2 guests the same. So `IGROUPR` is RAZ/WI,
//! `CTLR` bit 0 (EnableGrp0) is the one enable (the state GICv3's `EnableGrp1` holds in
//! [`VirtualDistributor`]) and bit 1 is RAZ/WI. The list registers must match: see
//! [`crate::vgic::GICH_LR_GRP1`].

use crate::vgic::{self, SgiRequest};
use crate::vgicd::{self, Access, Effect, Outcome, VirtualDistributor};
use crate::vgicr::{self, VirtualRedistributors};

/// The GICv2 distributor's registers (offsets from its base).
pub mod reg {
    pub const CTLR: u64 = 0x000;
    pub const TYPER: u64 = 0x004;
    pub const IIDR: u64 = 0x008;
    pub const IGROUPR: u64 = 0x080;
    pub const ISENABLER: u64 = 0x100;
    pub const ICENABLER: u64 = 0x180;
    pub const ISPENDR: u64 = 0x200;
    pub const ICPENDR: u64 = 0x280;
    pub const ISACTIVER: u64 = 0x300;
    pub const ICACTIVER: u64 = 0x380;
    pub const IPRIORITYR: u64 = 0x400;
    pub const ITARGETSR: u64 = 0x800;
    pub const ICFGR: u64 = 0xC00;
    pub const SGIR: u64 = 0xF00;
    pub const CPENDSGIR: u64 = 0xF10;
    pub const SPENDSGIR: u64 = 0xF20;
    /// The identification block: PIDR4..7, PIDR0..3, CIDR0..3, one byte per word.
    pub const ID: u64 = 0xFD0;
    pub const PIDR2: u64 = 0xFE8;
    /// The distributor's frame (4 KiB on a GICv2).
    pub const SIZE: u64 = 0x1000;
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Write {
    /// What the physical distributor must do (a partition's own SPI changed).
    pub effect: Effect,
    pub outcome: Outcome,
    /// A `GICD_SGIR` write: the SGI to deliver (each target still gated by
    /// [`VirtualRedistributors::raise_sgi`]). Targets outside the partition are in its
    /// `outside` flag, not in `outcome`: the EL2 code reports those itself.
    pub sgi: Option<SgiRequest>,
}

/// Whether a stage-2 data abort at `ipa` is an access to the GICv2 distributor at `base`
/// that the hardware fully describes (ESR.ISV), as [`vgicd::decode`] for its 4 KiB.
pub fn decode(base: u64, ipa: u64, esr: crate::esr::Esr) -> Option<Access> {
    let offset = ipa.checked_sub(base).filter(|&o| o < reg::SIZE)?;
    let da = esr.data_abort();
    da.valid.then_some(Access { offset, width: da.size, write: da.write, reg: da.reg })
}

/// `GICD_IIDR`: ProductID 0x02 (the GIC-400's), variant 0, revision 0, implementer
/// JEP106 0x43B (Arm). The GIC-400 is the GICv2 Septum runs on, and no guest driver
/// keys a quirk on it.
const IIDR: u32 = 0x0200_043B;
/// The GIC-400's identification registers from 0xFD0 (PIDR4..7, PIDR0..3, CIDR0..3):
/// PIDR2 0x2B says architecture version 2 (bits 7..4).
const ID_REGS: [u8; 12] = [0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1];
/// `GICD_CTLR.EnableGrp0`: the only enable of this all-group-0 view.
const CTLR_ENABLE: u64 = 1;
/// `GICD_CTLR.EnableGrp1` of the GICv3 view: the same state, as [`VirtualDistributor`]
/// keeps it.
const V3_CTLR_ENABLE_GRP1: u64 = 1 << 1;
/// The one-bit-per-INTID banks whose word 0 is the vCPU's frame: (GICv2 offset, frame
/// offset). `IGROUPR` is not among them (RAZ/WI here).
const BIT_BANKS: [(u64, u64); 6] = [
    (reg::ISENABLER, vgicr::reg::ISENABLER0),
    (reg::ICENABLER, vgicr::reg::ICENABLER0),
    (reg::ISPENDR, vgicr::reg::ISPENDR0),
    (reg::ICPENDR, vgicr::reg::ICPENDR0),
    (reg::ISACTIVER, vgicr::reg::ISACTIVER0),
    (reg::ICACTIVER, vgicr::reg::ICACTIVER0),
];

/// A read of `width` bytes at `offset` by the partition's vCPU `vcpu`.
pub fn read(
    d: &mut VirtualDistributor,
    r: &mut VirtualRedistributors,
    vcpu: usize,
    offset: u64,
    width: u8,
) -> (u64, Outcome) {
    let a = access(d, r, vcpu, offset, width, None);
    (a.value, a.outcome)
}

/// A write of `value` (`width` bytes) at `offset` by the partition's vCPU `vcpu`.
pub fn write(
    d: &mut VirtualDistributor,
    r: &mut VirtualRedistributors,
    vcpu: usize,
    offset: u64,
    width: u8,
    value: u64,
) -> V2Write {
    let a = access(d, r, vcpu, offset, width, Some(value));
    V2Write { effect: a.effect, outcome: a.outcome, sgi: a.sgi }
}

/// The answer to one access, read or write.
struct Answer {
    value: u64,
    effect: Effect,
    outcome: Outcome,
    sgi: Option<SgiRequest>,
}

impl Answer {
    fn done(value: u64) -> Self {
        Self { value, effect: Effect::None, outcome: Outcome::Done, sgi: None }
    }

    fn of(value: u64, outcome: Outcome) -> Self {
        Self { value, effect: Effect::None, outcome, sgi: None }
    }
}

/// Read as zero, ignored, counted where the EL2 code looks.
fn outside(d: &mut VirtualDistributor) -> Answer {
    d.outside += 1;
    Answer::of(0, Outcome::Outside)
}

/// The partition's vCPUs, as its distributor was made for (`TYPER.CPUNumber` + 1, so
/// at most eight: all a GICv2 can name).
fn vcpus(d: &mut VirtualDistributor) -> usize {
    ((d.read(vgicd::reg::TYPER, 4).0 >> 5) & 7) as usize + 1
}

fn access(
    d: &mut VirtualDistributor,
    r: &mut VirtualRedistributors,
    vcpu: usize,
    offset: u64,
    width: u8,
    write: Option<u64>,
) -> Answer {
    let vcpus = vcpus(d);
    if vcpu >= vcpus {
        return outside(d);
    }
    let word = width == 4 && offset.is_multiple_of(4);
    let byte_or_word = width == 1 || word;
    match offset {
        reg::CTLR if word => match write {
            Some(v) => {
                let (_, outcome) =
                    d.write(vgicd::reg::CTLR, 4, if v & CTLR_ENABLE != 0 { V3_CTLR_ENABLE_GRP1 } else { 0 });
                Answer::of(0, outcome)
            }
            None => Answer::done(u64::from(d.read(vgicd::reg::CTLR, 4).0 & V3_CTLR_ENABLE_GRP1 != 0)),
        },
        // ITLinesNumber 31 (1024 INTIDs), CPUNumber, no Security Extensions, LSPI 0.
        reg::TYPER if word => Answer::done((((vcpus - 1) as u64) << 5) | u64::from(vgicd::INTIDS / 32 - 1)),
        reg::IIDR if word => Answer::done(u64::from(IIDR)),
        o if (reg::IGROUPR..reg::IGROUPR + 0x80).contains(&o) => {
            if !word {
                return outside(d);
            }
            if o == reg::IGROUPR {
                return Answer::done(0);
            }
            // RAZ/WI, but another partition's INTIDs still count as the GICv3 view does.
            let mut a = distributor(d, o, width, write);
            a.value = 0;
            a
        }
        o if (reg::ISENABLER..reg::IPRIORITYR).contains(&o) => {
            if !word {
                return outside(d);
            }
            let bank = o & !0x7F;
            match BIT_BANKS.iter().find(|&&(b, _)| b == bank) {
                Some(&(_, frame_offset)) if o == bank => frame(d, r, vcpu, frame_offset, width, write),
                _ => distributor(d, o, width, write),
            }
        }
        o if (reg::IPRIORITYR..reg::ITARGETSR).contains(&o) => {
            if !byte_or_word {
                return outside(d);
            }
            if o < reg::IPRIORITYR + 32 {
                frame(d, r, vcpu, vgicr::reg::IPRIORITYR + (o - reg::IPRIORITYR), width, write)
            } else {
                distributor(d, o, width, write)
            }
        }
        o if (reg::ITARGETSR..reg::ICFGR).contains(&o) => {
            if !byte_or_word {
                return outside(d);
            }
            targets(d, vcpu, vcpus, ((o - reg::ITARGETSR) as u32, u32::from(width)), write)
        }
        o if (reg::ICFGR..reg::ICFGR + 0x100).contains(&o) => match o {
            _ if !word => outside(d),
            reg::ICFGR => frame(d, r, vcpu, vgicr::reg::ICFGR0, width, write),
            _ if o == reg::ICFGR + 4 => frame(d, r, vcpu, vgicr::reg::ICFGR1, width, write),
            _ => distributor(d, o, width, write),
        },
        reg::SGIR if word => match write {
            // Write-only: reads as zero.
            None => Answer::done(0),
            // TargetListFilter 3 is reserved: nothing is sent, the access is counted.
            Some(v) if (v >> 24) & 0b11 == 0b11 => outside(d),
            Some(v) => Answer { sgi: Some(vgic::sgir_targets(v as u32, vcpu, vcpus)), ..Answer::done(0) },
        },
        // SGIs have one source here (CPU 0 of a list register): per-source pending state
        // is not kept, so these read as zero and ignore writes.
        o if (reg::CPENDSGIR..reg::SPENDSGIR + 0x10).contains(&o) && byte_or_word => Answer::done(0),
        o if (reg::ID..reg::SIZE).contains(&o) && word => {
            Answer::done(u64::from(ID_REGS[((o - reg::ID) / 4) as usize]))
        }
        _ => outside(d),
    }
}

/// An access at the same offset in [`VirtualDistributor`] (its INTIDs 32 and up).
fn distributor(d: &mut VirtualDistributor, offset: u64, width: u8, write: Option<u64>) -> Answer {
    match write {
        Some(v) => {
            let (effect, outcome) = d.write(offset, width, v);
            Answer { effect, ..Answer::of(0, outcome) }
        }
        None => {
            let (value, outcome) = d.read(offset, width);
            Answer::of(value, outcome)
        }
    }
}

/// An access to the accessing vCPU's own frame (its SGIs and PPIs), at `SGI_base`
/// offset `frame_offset`. Anything the frame does not describe is counted in `d` too.
fn frame(
    d: &mut VirtualDistributor,
    r: &mut VirtualRedistributors,
    vcpu: usize,
    frame_offset: u64,
    width: u8,
    write: Option<u64>,
) -> Answer {
    let (value, outcome) = match write {
        Some(v) => (0, r.write(vcpu, frame_offset, width, v)),
        None => r.read(vcpu, frame_offset, width),
    };
    if outcome == Outcome::Outside {
        return outside(d);
    }
    Answer::done(value)
}

/// The vCPU [`VirtualDistributor`] routes `intid` to, if it is the partition's. Asked
/// through its `IROUTER`, whose refusal of another partition's INTID is no access of
/// the guest's and is not counted.
fn route(d: &mut VirtualDistributor, intid: u32) -> Option<usize> {
    let counted = d.outside;
    match d.read(vgicd::reg::IROUTER + 8 * u64::from(intid), 8) {
        (vcpu, Outcome::Done) => Some(vcpu as usize),
        (_, Outcome::Outside) => {
            d.outside = counted;
            None
        }
    }
}

/// `count` (1 or 4) `GICD_ITARGETSR` bytes from INTID `first`, one CPU-interface mask
/// each (vCPU k is interface k).
///
/// INTIDs 0..32 read as the accessing vCPU's own mask and ignore writes (read-only, as
/// on hardware: Linux learns its CPU interface numbers from them). A partition's own
/// SPI or doorbell reads as the mask of the vCPU it is routed to; a write routes it to
/// the lowest vCPU its byte names (a GICv3 routes to one PE; so does Septum). A byte
/// naming none of the partition's vCPUs (0 among them) is ignored and counted.
///
/// A write that leaves an interrupt's vCPU as it was does nothing (Linux writes every
/// SPI's word at boot, and read-modify-writes one byte later). Of the interrupts a
/// 4-byte write really moves, only the first physical one is moved: [`V2Write`] carries
/// one [`Effect`], and the physical distributor must never disagree with the virtual
/// one, so a second is refused (left where it was, the access counted). Partitions own
/// few SPIs and Linux moves one at a time; doorbells, virtual only, always move.
fn targets(
    d: &mut VirtualDistributor,
    vcpu: usize,
    vcpus: usize,
    (first, count): (u32, u32),
    write: Option<u64>,
) -> Answer {
    let mask = |v: usize| 1u64.checked_shl(v as u32).filter(|_| v < 8).unwrap_or(0);
    let own: u8 = ((1u16 << vcpus.min(8)) - 1) as u8;
    let (mut value, mut effect) = (0u64, Effect::None);
    let (mut refused, mut any_owned) = (false, false);
    for i in 0..count {
        let intid = first + i;
        let byte = write.map(|w| (w >> (8 * i)) as u8);
        if intid < 32 {
            value |= mask(vcpu) << (8 * i);
            continue;
        }
        let Some(was) = route(d, intid) else {
            refused |= byte.is_some();
            continue;
        };
        any_owned = true;
        let mut now = was;
        if let Some(b) = byte {
            let named = b & own;
            if named == 0 {
                refused = true;
            } else if named.trailing_zeros() as usize != was {
                let to = named.trailing_zeros() as usize;
                let irouter = vgicd::reg::IROUTER + 8 * u64::from(intid);
                match d.write(irouter, 8, to as u64).0 {
                    Effect::None => now = to,
                    e if effect == Effect::None => {
                        effect = e;
                        now = to;
                    }
                    _ => {
                        // A second physical move: put it back, as if never asked.
                        d.write(irouter, 8, was as u64);
                        refused = true;
                    }
                }
            }
        }
        value |= mask(now) << (8 * i);
    }
    let read_of_nothing_owned = write.is_none() && !any_owned && first >= 32;
    if refused || read_of_nothing_owned {
        d.outside += 1;
        return Answer { value, effect, outcome: Outcome::Outside, sgi: None };
    }
    Answer { value, effect, outcome: Outcome::Done, sgi: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esr::Esr;

    /// A partition owning UART1's SPI (INTID 34) and one doorbell (960), on 2 vCPUs.
    fn gic() -> (VirtualDistributor, VirtualRedistributors) {
        (VirtualDistributor::new(2, &[34], &[960]), VirtualRedistributors::new(2))
    }

    #[test]
    fn identification_and_control() {
        let (mut d, mut r) = gic();
        let typer = read(&mut d, &mut r, 0, reg::TYPER, 4);
        assert_eq!(typer, ((1 << 5) | 31, Outcome::Done), "1024 INTIDs, 2 CPUs, no Security Extensions");
        assert_eq!(typer.0 >> 10 & 1, 0, "SecurityExtn");
        assert_eq!(read(&mut d, &mut r, 1, reg::TYPER, 4), typer, "the same for every vCPU");
        let (mut d1, mut r1) = (VirtualDistributor::new(1, &[], &[]), VirtualRedistributors::new(1));
        assert_eq!(read(&mut d1, &mut r1, 0, reg::TYPER, 4).0, 31);
        assert_eq!(read(&mut d, &mut r, 0, reg::IIDR, 4).0, 0x0200_043B);
        assert_eq!(read(&mut d, &mut r, 0, reg::PIDR2, 4), (0x2B, Outcome::Done));
        assert_eq!(read(&mut d, &mut r, 0, reg::PIDR2, 4).0 >> 4 & 0xF, 2, "GICv2");
        assert_eq!(read(&mut d, &mut r, 0, reg::ID + 0x2C, 4).0, 0xB1, "CIDR3");
        assert_eq!(write(&mut d, &mut r, 0, reg::TYPER, 4, 0).outcome, Outcome::Done, "read-only: ignored");
        assert_eq!(read(&mut d, &mut r, 0, reg::TYPER, 4), typer);
        // CTLR: bit 0 enables the (group 0) interrupts; it is GICv3's EnableGrp1 state.
        assert_eq!(read(&mut d, &mut r, 0, reg::CTLR, 4), (0, Outcome::Done));
        let w = write(&mut d, &mut r, 0, reg::CTLR, 4, 1);
        assert_eq!(w, V2Write { effect: Effect::None, outcome: Outcome::Done, sgi: None });
        assert_eq!(read(&mut d, &mut r, 1, reg::CTLR, 4).0, 1, "not banked");
        assert_eq!(d.read(vgicd::reg::CTLR, 4).0, 0x12, "the GICv3 state follows");
        write(&mut d, &mut r, 0, reg::CTLR, 4, 0b10);
        assert_eq!(read(&mut d, &mut r, 0, reg::CTLR, 4).0, 0, "EnableGrp1 RAZ/WI: no group 1 here");
        assert_eq!(d.read(vgicd::reg::CTLR, 4).0, 0x10);
        write(&mut d, &mut r, 0, reg::CTLR, 4, 0xFFFF_FFFF);
        assert_eq!(read(&mut d, &mut r, 0, reg::CTLR, 4).0, 1);
        assert_eq!(d.outside, 0);
    }

    #[test]
    fn everything_is_group_0() {
        let (mut d, mut r) = gic();
        for (offset, value) in [(reg::IGROUPR, u64::MAX), (reg::IGROUPR + 4, 1 << 2), (reg::IGROUPR + 960 / 8, 1)] {
            assert_eq!(write(&mut d, &mut r, 0, offset, 4, value).outcome, Outcome::Done);
            assert_eq!(read(&mut d, &mut r, 0, offset, 4), (0, Outcome::Done));
        }
        assert_eq!(d.outside, 0);
        assert_eq!(read(&mut d, &mut r, 0, reg::IGROUPR + 8, 4), (0, Outcome::Outside), "nothing of its own");
        assert_eq!(write(&mut d, &mut r, 0, reg::IGROUPR + 4, 4, 1 << 1).outcome, Outcome::Outside, "SPI 33");
        assert_eq!(d.outside, 2);
    }

    /// SGI and PPI state is banked: each vCPU sees and changes its own.
    #[test]
    fn sgi_and_ppi_state_is_per_vcpu() {
        let (mut d, mut r) = gic();
        let w = write(&mut d, &mut r, 0, reg::ISENABLER, 4, 0xFFFF | (1 << 27));
        assert_eq!((w.effect, w.outcome), (Effect::None, Outcome::Done));
        assert_eq!(read(&mut d, &mut r, 0, reg::ISENABLER, 4).0, 0xFFFF | (1 << 27));
        assert_eq!(read(&mut d, &mut r, 1, reg::ISENABLER, 4).0, 0, "vCPU 1's view");
        assert_eq!(read(&mut d, &mut r, 1, reg::ICENABLER, 4).0, 0);
        assert_eq!(r.read(0, vgicr::reg::ISENABLER0, 4).0, 0xFFFF | (1 << 27), "the redistributor frame");
        write(&mut d, &mut r, 0, reg::ICENABLER, 4, 1 << 27);
        assert_eq!(read(&mut d, &mut r, 0, reg::ICENABLER, 4).0, 0xFFFF);
        // Priorities, by byte and by word.
        write(&mut d, &mut r, 1, reg::IPRIORITYR + 27, 1, 0xA0);
        assert_eq!(read(&mut d, &mut r, 1, reg::IPRIORITYR + 24, 4).0, 0xA0 << 24);
        assert_eq!(read(&mut d, &mut r, 0, reg::IPRIORITYR + 27, 1).0, 0, "vCPU 0's view");
        write(&mut d, &mut r, 0, reg::IPRIORITYR, 4, 0x8070_6050);
        assert_eq!(read(&mut d, &mut r, 0, reg::IPRIORITYR + 1, 1).0, 0x60);
        // Configuration: SGIs edge (fixed), PPIs as written.
        assert_eq!(read(&mut d, &mut r, 0, reg::ICFGR, 4).0, 0xAAAA_AAAA);
        write(&mut d, &mut r, 0, reg::ICFGR, 4, 0);
        assert_eq!(read(&mut d, &mut r, 0, reg::ICFGR, 4).0, 0xAAAA_AAAA);
        write(&mut d, &mut r, 1, reg::ICFGR + 4, 4, 0x55);
        assert_eq!(read(&mut d, &mut r, 1, reg::ICFGR + 4, 4).0, 0x55);
        assert_eq!(read(&mut d, &mut r, 0, reg::ICFGR + 4, 4).0, 0);
        assert_eq!(read(&mut d, &mut r, 0, reg::ISACTIVER, 4), (0, Outcome::Done));
        assert_eq!(write(&mut d, &mut r, 0, reg::ICACTIVER, 4, u64::MAX).outcome, Outcome::Done);
        assert_eq!((d.outside, r.outside), (0, 0));
    }

    /// An SGI sent while disabled is latched in the frame and released by a GICv2 enable.
    #[test]
    fn a_latched_sgi_is_released_by_the_v2_enable() {
        let (mut d, mut r) = gic();
        assert!(!r.raise_sgi(1, 3));
        assert_eq!(read(&mut d, &mut r, 1, reg::ISPENDR, 4).0, 1 << 3);
        assert_eq!(read(&mut d, &mut r, 0, reg::ISPENDR, 4).0, 0);
        write(&mut d, &mut r, 1, reg::ISENABLER, 4, 0xFFFF);
        assert_eq!(r.take_ready(1), 1 << 3);
        assert!(!r.raise_sgi(0, 4), "vCPU 0 still has it disabled");
        write(&mut d, &mut r, 0, reg::ICPENDR, 4, 1 << 4);
        write(&mut d, &mut r, 0, reg::ISENABLER, 4, 0xFFFF);
        assert_eq!(r.take_ready(0), 0, "cleared before it was enabled");
    }

    /// Linux's `gic_get_cpumask` ORs ITARGETSR0..7 and must find its own interface.
    #[test]
    fn private_targets_read_as_the_vcpus_own_mask() {
        let (mut d, mut r) = gic();
        for vcpu in 0..2 {
            let mut mask = 0;
            for n in 0..8 {
                let (v, outcome) = read(&mut d, &mut r, vcpu, reg::ITARGETSR + 4 * n, 4);
                assert_eq!((v, outcome), (0x0101_0101 << vcpu, Outcome::Done));
                mask |= v | v >> 8 | v >> 16 | v >> 24;
            }
            assert_eq!(mask & 0xFF, 1 << vcpu);
            assert_eq!(read(&mut d, &mut r, vcpu, reg::ITARGETSR + 27, 1).0, 1 << vcpu);
            // Read-only.
            assert_eq!(write(&mut d, &mut r, vcpu, reg::ITARGETSR + 24, 4, 0).outcome, Outcome::Done);
            assert_eq!(read(&mut d, &mut r, vcpu, reg::ITARGETSR + 24, 4).0, 0x0101_0101 << vcpu);
        }
        assert_eq!(d.outside, 0);
    }

    #[test]
    fn an_spi_is_routed_through_its_target_byte() {
        let (mut d, mut r) = gic();
        let at = reg::ITARGETSR + 34;
        assert_eq!(read(&mut d, &mut r, 0, at, 1), (0b01, Outcome::Done), "vCPU 0 at reset");
        let w = write(&mut d, &mut r, 0, at, 1, 0b10);
        assert_eq!(w.effect, Effect::Route { intid: 34, vcpu: 1, enabled: false });
        assert_eq!(w.outcome, Outcome::Done);
        assert_eq!(read(&mut d, &mut r, 1, at, 1).0, 0b10);
        assert_eq!(d.read(vgicd::reg::IROUTER + 34 * 8, 8).0, 1, "the GICv3 router follows");
        // The word: 32 and 33 are not the partition's and read as zero.
        assert_eq!(read(&mut d, &mut r, 0, reg::ITARGETSR + 32, 4), (0b10 << 16, Outcome::Done));
        // Several vCPUs named: the lowest. Unchanged: no effect.
        assert_eq!(write(&mut d, &mut r, 0, at, 1, 0b11).effect, Effect::Route { intid: 34, vcpu: 0, enabled: false });
        assert_eq!(
            write(&mut d, &mut r, 0, at, 1, 0b01),
            V2Write { effect: Effect::None, outcome: Outcome::Done, sgi: None }
        );
        assert_eq!(d.outside, 0);
        // Linux at boot: its own mask in every SPI byte; 32 and 33 are another's.
        let w = write(&mut d, &mut r, 0, reg::ITARGETSR + 32, 4, 0x0101_0101);
        assert_eq!((w.effect, w.outcome), (Effect::None, Outcome::Outside));
        assert_eq!(d.outside, 1, "counted once");
        // Naming no vCPU of the partition: ignored and counted.
        let w = write(&mut d, &mut r, 0, at, 1, 0b100);
        assert_eq!((w.effect, w.outcome), (Effect::None, Outcome::Outside));
        assert_eq!(write(&mut d, &mut r, 0, at, 1, 0).outcome, Outcome::Outside);
        assert_eq!(read(&mut d, &mut r, 0, at, 1).0, 0b01);
        assert_eq!(d.outside, 3);
        // Enabled, then moved: the move keeps it enabled.
        assert_eq!(
            write(&mut d, &mut r, 0, reg::ISENABLER + 4, 4, 1 << 2).effect,
            Effect::Enable { first: 32, mask: 1 << 2, on: true }
        );
        assert_eq!(write(&mut d, &mut r, 0, at, 1, 0b10).effect, Effect::Route { intid: 34, vcpu: 1, enabled: true });
    }

    /// One 4-byte write moves at most one physical SPI; a second is refused, not lost.
    #[test]
    fn one_physical_move_per_access() {
        let mut d = VirtualDistributor::new(2, &[32, 33, 34], &[35]);
        let mut r = VirtualRedistributors::new(2);
        let w = write(&mut d, &mut r, 0, reg::ITARGETSR + 32, 4, 0x0202_0201);
        assert_eq!(w.effect, Effect::Route { intid: 33, vcpu: 1, enabled: false }, "32 stays: no move");
        assert_eq!(w.outcome, Outcome::Outside);
        assert_eq!(read(&mut d, &mut r, 0, reg::ITARGETSR + 32, 4).0, 0x0201_0201, "34 refused, 35 virtual moved");
        assert_eq!(d.read(vgicd::reg::IROUTER + 34 * 8, 8).0, 0);
        assert_eq!(d.outside, 1);
        // Asked again, it moves.
        let w = write(&mut d, &mut r, 0, reg::ITARGETSR + 32, 4, 0x0202_0201);
        assert_eq!((w.effect, w.outcome), (Effect::Route { intid: 34, vcpu: 1, enabled: false }, Outcome::Done));
    }

    /// A doorbell through the GICv2 offsets: enable, pend, routing, latched delivery.
    #[test]
    fn a_doorbell_works_through_the_v2_offsets() {
        let (mut d, mut r) = gic();
        let bank = 960 / 8;
        assert_eq!(d.raise(960), None, "disabled: latched");
        assert_eq!(read(&mut d, &mut r, 0, reg::ISPENDR + bank, 4), (1, Outcome::Done));
        assert_eq!(write(&mut d, &mut r, 1, reg::ITARGETSR + 960, 1, 0b10).effect, Effect::None, "virtual");
        assert_eq!(read(&mut d, &mut r, 0, reg::ITARGETSR + 960, 4), (0b10, Outcome::Done));
        write(&mut d, &mut r, 0, reg::IPRIORITYR + 960, 1, 0xA0);
        let w = write(&mut d, &mut r, 0, reg::ISENABLER + bank, 4, 1);
        assert_eq!((w.effect, w.outcome), (Effect::None, Outcome::Done));
        assert_eq!(read(&mut d, &mut r, 1, reg::ISENABLER + bank, 4).0, 1, "SPIs are not banked");
        assert_eq!(d.enabled(960), Some(0xA0));
        assert_eq!(d.take_ready(), Some((960, 1)));
        assert_eq!(d.take_ready(), None);
        write(&mut d, &mut r, 0, reg::ISPENDR + bank, 4, 1);
        assert_eq!(d.take_ready(), Some((960, 1)), "pended by the guest");
        write(&mut d, &mut r, 0, reg::ICENABLER + bank, 4, 1);
        assert_eq!(d.raise(960), None);
        write(&mut d, &mut r, 0, reg::ICPENDR + bank, 4, 1);
        write(&mut d, &mut r, 0, reg::ISENABLER + bank, 4, 1);
        assert_eq!(d.take_ready(), None, "cleared while disabled");
        assert_eq!(read(&mut d, &mut r, 0, reg::ICFGR + 960 / 4, 4).1, Outcome::Done);
        assert_eq!(d.outside, 0);
    }

    #[test]
    fn sgir_names_the_partitions_vcpus() {
        let mut d = VirtualDistributor::new(3, &[], &[]);
        let mut r = VirtualRedistributors::new(3);
        let sgir = |filter: u64, list: u64, intid: u64| (filter << 24) | (list << 16) | intid;
        let sent = |d: &mut VirtualDistributor, r: &mut VirtualRedistributors, vcpu, value| {
            let w = write(d, r, vcpu, reg::SGIR, 4, value);
            assert_eq!((w.effect, w.outcome), (Effect::None, Outcome::Done));
            w.sgi.unwrap()
        };
        assert_eq!(sent(&mut d, &mut r, 0, sgir(0, 0b110, 5)), SgiRequest { intid: 5, targets: 0b110, outside: false });
        assert_eq!(sent(&mut d, &mut r, 1, sgir(1, 0, 6)), SgiRequest { intid: 6, targets: 0b101, outside: false });
        assert_eq!(sent(&mut d, &mut r, 2, sgir(2, 0, 7)), SgiRequest { intid: 7, targets: 0b100, outside: false });
        // Beyond its vCPUs: the EL2 code reports the request's `outside`.
        assert_eq!(sent(&mut d, &mut r, 0, sgir(0, 0xF1, 1)), SgiRequest { intid: 1, targets: 1, outside: true });
        assert_eq!(d.outside, 0);
        let w = write(&mut d, &mut r, 0, reg::SGIR, 4, sgir(3, 0xFF, 1));
        assert_eq!((w.sgi, w.outcome), (None, Outcome::Outside), "reserved filter");
        assert_eq!(write(&mut d, &mut r, 0, reg::SGIR, 1, sgir(0, 1, 1)).sgi, None, "32-bit only");
        assert_eq!(read(&mut d, &mut r, 0, reg::SGIR, 4), (0, Outcome::Done), "write-only");
        // The pending-SGI registers: RAZ/WI.
        assert_eq!(write(&mut d, &mut r, 0, reg::SPENDSGIR, 4, u64::MAX).outcome, Outcome::Done);
        assert_eq!(read(&mut d, &mut r, 0, reg::CPENDSGIR + 3, 1), (0, Outcome::Done));
        assert_eq!(r.take_ready(0), 0);
        assert_eq!(d.outside, 2);
    }

    /// Another partition's SPIs cannot be seen or changed, and every try is counted.
    #[test]
    fn other_interrupts_are_invisible_and_untouchable() {
        let (mut d, mut r) = gic();
        let spi33 = [
            (reg::ISENABLER + 4, 4, 1 << 1),
            (reg::ISPENDR + 4, 4, 1 << 1),
            (reg::IPRIORITYR + 33, 1, 0),
            (reg::ITARGETSR + 33, 1, 0b10),
        ];
        for (n, &(offset, width, value)) in spi33.iter().enumerate() {
            let w = write(&mut d, &mut r, 0, offset, width, value);
            assert_eq!((w.effect, w.outcome), (Effect::None, Outcome::Outside), "{offset:#x}");
            assert_eq!(d.outside, n as u64 + 1);
        }
        assert_eq!(read(&mut d, &mut r, 0, reg::ISENABLER + 4, 4), (0, Outcome::Done), "only its own bit can show");
        assert_eq!(read(&mut d, &mut r, 0, reg::ITARGETSR + 33, 1), (0, Outcome::Outside));
        assert_eq!(read(&mut d, &mut r, 0, reg::ITARGETSR + 40, 4), (0, Outcome::Outside));
        assert_eq!(read(&mut d, &mut r, 0, reg::IPRIORITYR + 40, 4), (0, Outcome::Outside));
        assert_eq!(read(&mut d, &mut r, 0, reg::ISENABLER + 8, 4), (0, Outcome::Outside));
        assert_eq!(read(&mut d, &mut r, 0, reg::ICFGR + 16, 4), (0, Outcome::Outside));
        assert_eq!(read(&mut d, &mut r, 0, 0xE00, 4), (0, Outcome::Outside), "an unknown register");
        assert_eq!(read(&mut d, &mut r, 0, reg::ISENABLER + 2, 4).1, Outcome::Outside, "misaligned");
        assert_eq!(read(&mut d, &mut r, 0, reg::ISENABLER, 8).1, Outcome::Outside, "no 64-bit registers");
        assert_eq!(read(&mut d, &mut r, 0, reg::IPRIORITYR, 2).1, Outcome::Outside);
        assert_eq!(read(&mut d, &mut r, 2, reg::ISENABLER, 4).1, Outcome::Outside, "no vCPU 2");
        assert_eq!(d.outside, 14);
        assert_eq!(read(&mut d, &mut r, 0, reg::ITARGETSR + 34, 1).0, 1, "its own SPI unchanged");
    }

    #[test]
    fn decodes_only_the_4k_frame() {
        // A 32-bit store from W3: ESR with ISV, SAS = 2, WnR.
        let esr = Esr((0x24 << 26) | (1 << 25) | (1 << 24) | (0b10 << 22) | (3 << 16) | (1 << 6) | 0x07);
        let base = 0x0800_0000;
        let a = decode(base, base + reg::SGIR, esr).unwrap();
        assert_eq!(a, Access { offset: reg::SGIR, width: 4, write: true, reg: 3 });
        assert_eq!(decode(base, base + reg::SIZE, esr), None, "the CPU interface follows");
        assert_eq!(decode(base, base - 4, esr), None);
        assert_eq!(decode(base, base, Esr((0x24 << 26) | 0x07)), None, "no syndrome");
    }

    #[test]
    fn never_panics_on_any_offset_or_width() {
        let mut d = VirtualDistributor::new(2, &[33, 34, 40], &[960, 961]);
        let mut r = VirtualRedistributors::new(2);
        for vcpu in [0, 1, 2, 8, usize::MAX] {
            for offset in (0..reg::SIZE).chain([reg::SIZE, 0xFFFF, u64::MAX - 7, u64::MAX]) {
                for width in [0u8, 1, 2, 4, 8, 16] {
                    read(&mut d, &mut r, vcpu, offset, width);
                    write(&mut d, &mut r, vcpu, offset, width, u64::MAX);
                    write(&mut d, &mut r, vcpu, offset, width, 0x0202_0202);
                }
            }
        }
        let mut d8 = VirtualDistributor::new(8, &[34], &[]);
        let mut r8 = VirtualRedistributors::new(8);
        for offset in 0..reg::SIZE {
            read(&mut d8, &mut r8, 7, offset, 4);
            write(&mut d8, &mut r8, 7, offset, 1, 0x80);
        }
    }
}

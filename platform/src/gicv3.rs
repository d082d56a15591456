//! GICv3 distributor and redistributors, as far as the hypervisor programs them (Arm
//! GICv3/v4 architecture specification, IHI 0069, chapter 12). The hypervisor alone owns
//! them: no partition's stage 2 maps either. The CPU interface is system registers
//! (`ICC_*`, `ICH_*`), handled in the hypervisor.
//!
//! Septum runs the GIC in its single-security-state view (`GICD_CTLR.DS` = 1: QEMU virt
//! without `secure=on`, or set by the hypervisor at EL3 before it drops to EL2), so the
//! register layout below is that view's.

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    pub GICD_CTLR [
        /// Register write pending.
        RWP OFFSET(31) NUMBITS(1) [],
        /// Disable security: one security state.
        DS OFFSET(6) NUMBITS(1) [],
        /// Affinity routing (GICv3 mode).
        ARE OFFSET(4) NUMBITS(1) [],
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
    ],
    pub GICR_WAKER [
        CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
        PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) []
    ]
}

register_bitfields! {u64,
    pub GICR_TYPER [
        /// Aff3.Aff2.Aff1.Aff0 of the PE this redistributor serves.
        AFFINITY OFFSET(32) NUMBITS(32) [],
        /// The last redistributor of the contiguous region.
        LAST OFFSET(4) NUMBITS(1) []
    ]
}

register_structs! {
    pub DistributorRegs {
        (0x0000 => pub ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => pub typer: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => pub igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        (0x0380 => pub icactiver: [ReadWrite<u32>; 32]),
        (0x0400 => pub ipriorityr: [ReadWrite<u32>; 255]),
        (0x07FC => _reserved2),
        (0x0C00 => pub icfgr: [ReadWrite<u32>; 64]),
        (0x0D00 => _reserved3),
        (0x6000 => pub irouter: [ReadWrite<u64>; 1020]),
        (0x7FE0 => @END),
    }
}

register_structs! {
    /// A redistributor's RD_base frame.
    pub RdRegs {
        (0x0000 => pub ctlr: ReadWrite<u32>),
        (0x0004 => _reserved0),
        (0x0008 => pub typer: ReadOnly<u64, GICR_TYPER::Register>),
        (0x0010 => _reserved1),
        (0x0014 => pub waker: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => @END),
    }
}

register_structs! {
    /// A redistributor's SGI_base frame: SGIs and PPIs (INTIDs 0..32) of its PE.
    pub SgiRegs {
        (0x0000 => _reserved0),
        (0x0080 => pub igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => pub isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => pub icenabler0: WriteOnly<u32>),
        (0x0184 => _reserved3),
        (0x0380 => pub icactiver0: WriteOnly<u32>),
        (0x0384 => _reserved4),
        (0x0400 => pub ipriorityr: [ReadWrite<u32>; 8]),
        (0x0420 => @END),
    }
}

/// One redistributor: RD_base, then SGI_base 64 KiB above it.
const FRAME_STRIDE: usize = 0x2_0000;
const SGI_OFFSET: usize = 0x1_0000;

/// The distributor.
pub struct Distributor {
    regs: &'static DistributorRegs,
}

impl Distributor {
    /// # Safety
    /// `base` is the GICv3 distributor, mapped as Device memory, used by nothing else.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: per the caller, `base` is the distributor's register block.
        Self { regs: unsafe { &*(base as *const DistributorRegs) } }
    }

    /// Affinity routing and group 1 on; interrupts stay disabled until enabled one by one.
    pub fn enable(&self) {
        self.regs.ctlr.modify(GICD_CTLR::ARE::SET + GICD_CTLR::ENABLE_GRP1::SET);
        self.wait_for_writes();
    }

    fn wait_for_writes(&self) {
        // Bounded: the distributor completes a write in a few cycles.
        for _ in 0..1_000_000 {
            if !self.regs.ctlr.is_set(GICD_CTLR::RWP) {
                return;
            }
        }
    }

    /// Readies shared peripheral interrupt `intid` (32..1020) for forwarding: group 1,
    /// `priority`, routed to the one core `mpidr`; left disabled.
    pub fn configure_spi(&self, intid: u32, priority: u8, mpidr: u64) {
        let Some(n) = spi(intid) else { return };
        let (word, bit) = (n / 32, 1u32 << (n % 32));
        self.regs.icenabler[word].set(bit);
        self.regs.igroupr[word].set(self.regs.igroupr[word].get() | bit);
        let (pword, shift) = (n / 4, (n % 4) * 8);
        let p = &self.regs.ipriorityr[pword];
        p.set((p.get() & !(0xFF << shift)) | (u32::from(priority) << shift));
        // Aff3 in bits 39..32, Aff2..Aff0 in 23..0; routing mode 0: this core only.
        self.regs.irouter[n].set((mpidr & 0xFF_00FF_FFFF) & !(1 << 31));
        self.wait_for_writes();
    }

    /// Makes shared peripheral interrupt `intid` edge-triggered (`true`) or level-
    /// sensitive; it must be disabled.
    pub fn set_edge(&self, intid: u32, edge: bool) {
        let Some(n) = spi(intid) else { return };
        let (word, bit) = (n / 16, 2u32 << (2 * (n % 16)));
        let c = &self.regs.icfgr[word];
        c.set(if edge { c.get() | bit } else { c.get() & !bit });
        self.wait_for_writes();
    }

    /// Enables or disables shared peripheral interrupt `intid`.
    pub fn enable_spi(&self, intid: u32, on: bool) {
        let Some(n) = spi(intid) else { return };
        let (word, bit) = (n / 32, 1u32 << (n % 32));
        if on {
            self.regs.isenabler[word].set(bit);
        } else {
            self.regs.icenabler[word].set(bit);
            self.wait_for_writes();
        }
    }

    /// Deactivates shared peripheral interrupt `intid` if it is active.
    pub fn deactivate_spi(&self, intid: u32) {
        let Some(n) = spi(intid) else { return };
        self.regs.icactiver[n / 32].set(1 << (n % 32));
    }

    /// Whether the GIC shows one security state (needed for the layout used here).
    pub fn single_security_state(&self) -> bool {
        self.regs.ctlr.is_set(GICD_CTLR::DS)
    }
}

/// `intid` as an index into the distributor's per-interrupt arrays, if it is an SPI
/// (GICv2 and GICv3 distributors alike).
pub(crate) fn spi(intid: u32) -> Option<usize> {
    (32..1020).contains(&intid).then_some(intid as usize)
}

/// The redistributor of one PE.
pub struct Redistributor {
    rd: &'static RdRegs,
    sgi: &'static SgiRegs,
}

impl Redistributor {
    /// Finds the redistributor serving the PE with affinity `aff` (Aff3.Aff2.Aff1.Aff0)
    /// among the contiguous frames at `base`, looking at no more than `max` frames.
    ///
    /// # Safety
    /// `base` is the GICv3 redistributor region, mapped as Device memory, with at least
    /// `max` frames or a frame marked last.
    pub unsafe fn find(base: usize, aff: u32, max: usize) -> Option<Self> {
        for i in 0..max {
            let rd_base = base + i * FRAME_STRIDE;
            // SAFETY: per the caller, frame `i` exists (the previous one was not last).
            let rd = unsafe { &*(rd_base as *const RdRegs) };
            if rd.typer.read(GICR_TYPER::AFFINITY) as u32 == aff {
                // SAFETY: the SGI_base frame follows each RD_base frame.
                let sgi = unsafe { &*((rd_base + SGI_OFFSET) as *const SgiRegs) };
                return Some(Self { rd, sgi });
            }
            if rd.typer.is_set(GICR_TYPER::LAST) {
                break;
            }
        }
        None
    }

    /// Wakes the redistributor so it forwards interrupts to its PE.
    pub fn wake(&self) {
        self.rd.waker.modify(GICR_WAKER::PROCESSOR_SLEEP::CLEAR);
        for _ in 0..1_000_000 {
            if !self.rd.waker.is_set(GICR_WAKER::CHILDREN_ASLEEP) {
                return;
            }
        }
    }

    /// All SGIs and PPIs in group 1 (the non-secure IRQ group), disabled and inactive
    /// (pending ones stay pending).
    pub fn reset_private(&self) {
        self.sgi.icenabler0.set(u32::MAX);
        self.sgi.icactiver0.set(u32::MAX);
        self.sgi.igroupr0.set(u32::MAX);
    }

    /// Enables private interrupt `intid` (< 32) at `priority` (lower is more urgent).
    pub fn enable_private(&self, intid: u32, priority: u8) {
        let (reg, shift) = ((intid / 4) as usize, (intid % 4) * 8);
        if let Some(p) = self.sgi.ipriorityr.get(reg) {
            p.set((p.get() & !(0xFF << shift)) | (u32::from(priority) << shift));
        }
        self.sgi.isenabler0.set(1 << (intid % 32));
    }
}

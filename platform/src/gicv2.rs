//! GICv2 distributor, CPU interface and virtual interface control, as far as the
//! hypervisor programs them (Arm GIC architecture specification v1.0/v2.0, IHI 0048B,
//! chapters 4 and 5). The hypervisor alone owns the distributor (`GICD`), the physical
//! CPU interface (`GICC`) and the virtual interface control (`GICH`): no partition's
//! stage 2 maps them. A partition's stage 2 maps the virtual CPU interface (`GICV`) at
//! the address its device tree gives as its `GICC`, so it has no module here.
//!
//! Unlike GICv3, every register is memory-mapped; banked registers (INTIDs 0..32 in
//! the distributor, the whole CPU interface and `GICH`) show the accessing core's copy.
//!
//! On a GIC without the Security Extensions (QEMU virt without `secure=on`) every
//! interrupt is in group 0, signalled as IRQ; on one with them (GIC-400 of the
//! Raspberry Pi 4, its firmware having put every interrupt in group 1), the hypervisor
//! runs Non-secure and sees the Non-secure copies, whose bit 0 enables its group and bit
//! 9 of `GICC_CTLR` is its `EOImode`. The methods below are right for both views.

use crate::gicv3::spi;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    pub GICD_CTLR [
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        /// Group 0 (or, in the Non-secure view, the only group it sees).
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
    ],
    pub GICD_TYPER [
        /// CPU interfaces implemented, minus one.
        CPU_NUMBER OFFSET(5) NUMBITS(3) [],
        /// INTIDs implemented: 32 * (ITLinesNumber + 1).
        IT_LINES_NUMBER OFFSET(0) NUMBITS(5) []
    ],
    pub GICD_SGIR [
        TARGET_LIST_FILTER OFFSET(24) NUMBITS(2) [
            /// The CPU interfaces in CPU_TARGET_LIST.
            List = 0,
            AllButSelf = 1,
            SelfOnly = 2
        ],
        /// Bit k: CPU interface k.
        CPU_TARGET_LIST OFFSET(16) NUMBITS(8) [],
        NSATT OFFSET(15) NUMBITS(1) [],
        SGI_INTID OFFSET(0) NUMBITS(4) []
    ],
    pub GICC_CTLR [
        /// Priority drop (`GICC_EOIR`) and deactivation (`GICC_DIR`) are separate writes
        /// (`EOImodeS` without the Security Extensions, `EOImodeNS` in the Non-secure copy).
        EOI_MODE OFFSET(9) NUMBITS(1) [],
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
    ],
    pub GICC_IAR [
        /// For an SGI, the CPU interface that sent it.
        CPU_ID OFFSET(10) NUMBITS(3) [],
        INTERRUPT_ID OFFSET(0) NUMBITS(10) []
    ],
    pub GICH_HCR [
        /// End-of-interrupt count (guest EOIs with no list register to match).
        EOI_COUNT OFFSET(27) NUMBITS(5) [],
        /// Maintenance interrupt when no list register, or only one, holds an interrupt.
        UIE OFFSET(1) NUMBITS(1) [],
        /// The virtual CPU interface on.
        EN OFFSET(0) NUMBITS(1) []
    ],
    pub GICH_VTR [
        PRI_BITS OFFSET(29) NUMBITS(3) [],
        PRE_BITS OFFSET(26) NUMBITS(3) [],
        /// List registers implemented, minus one.
        LIST_REGS OFFSET(0) NUMBITS(6) []
    ],
    pub GICH_LR [
        /// The physical interrupt `PHYSICAL_ID` is deactivated when the guest ends this one.
        HW OFFSET(31) NUMBITS(1) [],
        /// Group 1 (signalled as vIRQ); group 0 is vFIQ only if `GICV_CTLR.FIQEn`.
        GRP1 OFFSET(30) NUMBITS(1) [],
        STATE OFFSET(28) NUMBITS(2) [
            Invalid = 0,
            Pending = 1,
            Active = 2,
            PendingActive = 3
        ],
        /// The priority's top five bits.
        PRIORITY OFFSET(23) NUMBITS(5) [],
        /// With HW: the physical INTID. Without: bit 19 asks for a maintenance interrupt
        /// at EOI, bits 12..10 are an SGI's source CPU.
        PHYSICAL_ID OFFSET(10) NUMBITS(10) [],
        VIRTUAL_ID OFFSET(0) NUMBITS(10) []
    ]
}

/// A GIC-400's distributor and CPU interface, from its base (Arm GIC-400 TRM, table 3-1).
pub const GIC400_DISTRIBUTOR_OFFSET: u64 = 0x1000;
pub const GIC400_CPU_INTERFACE_OFFSET: u64 = 0x2000;
/// Offsets for the EL3 entry's assembly, which cannot use the register struct.
pub const GICD_TYPER_OFFSET: u64 = core::mem::offset_of!(DistributorRegs, typer) as u64;
pub const GICD_IGROUPR_OFFSET: u64 = core::mem::offset_of!(DistributorRegs, igroupr) as u64;
pub const GICC_PMR_OFFSET: u64 = core::mem::offset_of!(CpuInterfaceRegs, pmr) as u64;

register_structs! {
    /// The distributor (4 KiB).
    pub DistributorRegs {
        (0x0000 => pub ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => pub typer: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => pub iidr: ReadOnly<u32>),
        (0x000C => _reserved0),
        (0x0080 => pub igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => pub ispendr: [ReadWrite<u32>; 32]),
        (0x0280 => pub icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => pub isactiver: [ReadWrite<u32>; 32]),
        (0x0380 => pub icactiver: [ReadWrite<u32>; 32]),
        /// Byte-accessible (IHI 0048B 4.3.11); the last word is reserved.
        (0x0400 => pub ipriorityr: [ReadWrite<u8>; 1024]),
        /// Byte-accessible; bytes 0..32 (SGIs, PPIs) read-only, each this core's mask.
        (0x0800 => pub itargetsr: [ReadWrite<u8>; 1024]),
        (0x0C00 => pub icfgr: [ReadWrite<u32>; 64]),
        (0x0D00 => _reserved1),
        (0x0F00 => pub sgir: WriteOnly<u32, GICD_SGIR::Register>),
        (0x0F04 => _reserved2),
        /// Pending SGIs of this core: byte n for SGI n, bit k for source CPU k.
        (0x0F10 => pub cpendsgir: [ReadWrite<u32>; 4]),
        (0x0F20 => pub spendsgir: [ReadWrite<u32>; 4]),
        (0x0F30 => _reserved3),
        (0x1000 => @END),
    }
}

register_structs! {
    /// A CPU interface (8 KiB; `GICC_DIR` in the second page).
    pub CpuInterfaceRegs {
        (0x0000 => pub ctlr: ReadWrite<u32, GICC_CTLR::Register>),
        (0x0004 => pub pmr: ReadWrite<u32>),
        (0x0008 => pub bpr: ReadWrite<u32>),
        (0x000C => pub iar: ReadOnly<u32, GICC_IAR::Register>),
        (0x0010 => pub eoir: WriteOnly<u32>),
        (0x0014 => pub rpr: ReadOnly<u32>),
        (0x0018 => pub hppir: ReadOnly<u32>),
        (0x001C => _reserved0),
        (0x00FC => pub iidr: ReadOnly<u32>),
        (0x0100 => _reserved1),
        (0x1000 => pub dir: WriteOnly<u32>),
        (0x1004 => _reserved2),
        (0x2000 => @END),
    }
}

register_structs! {
    /// The virtual interface control registers (`GICH`, this core's copy).
    pub HypInterfaceRegs {
        (0x0000 => pub hcr: ReadWrite<u32, GICH_HCR::Register>),
        (0x0004 => pub vtr: ReadOnly<u32, GICH_VTR::Register>),
        (0x0008 => pub vmcr: ReadWrite<u32>),
        (0x000C => _reserved0),
        (0x0010 => pub misr: ReadOnly<u32>),
        (0x0014 => _reserved1),
        (0x0020 => pub eisr: [ReadOnly<u32>; 2]),
        (0x0028 => _reserved2),
        (0x0030 => pub elrsr: [ReadOnly<u32>; 2]),
        (0x0038 => _reserved3),
        (0x00F0 => pub apr: ReadWrite<u32>),
        (0x00F4 => _reserved4),
        (0x0100 => pub lr: [ReadWrite<u32, GICH_LR::Register>; 64]),
        (0x0200 => @END),
    }
}

/// The distributor.
pub struct Distributor {
    regs: &'static DistributorRegs,
}

impl Distributor {
    /// # Safety
    /// `base` is the GICv2 distributor, mapped as Device memory, used by nothing else.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: per the caller, `base` is the distributor's register block.
        Self { regs: unsafe { &*(base as *const DistributorRegs) } }
    }

    /// Groups 0 and 1 on; interrupts stay disabled until enabled one by one.
    pub fn enable(&self) {
        self.regs.ctlr.write(GICD_CTLR::ENABLE_GRP0::SET + GICD_CTLR::ENABLE_GRP1::SET);
    }

    /// This core's CPU interface as a target mask (bit k: interface k): the banked,
    /// read-only `GICD_ITARGETSR0` byte 0. Reads 0 on a GIC with one CPU interface.
    pub fn own_cpu_mask(&self) -> u8 {
        self.regs.itargetsr[0].get()
    }

    /// Readies shared peripheral interrupt `intid` (32..1020) for forwarding: disabled
    /// first, then `priority` and the CPU interfaces `cpu_mask` as its targets; left
    /// disabled. Its trigger (`GICD_ICFGR`) and group stay as they are.
    pub fn configure_spi(&self, intid: u32, priority: u8, cpu_mask: u8) {
        let Some(n) = spi(intid) else { return };
        self.regs.icenabler[n / 32].set(1 << (n % 32));
        self.regs.ipriorityr[n].set(priority);
        self.regs.itargetsr[n].set(cpu_mask);
    }

    /// Makes shared peripheral interrupt `intid` edge-triggered (`true`) or level-
    /// sensitive; it must be disabled.
    pub fn set_edge(&self, intid: u32, edge: bool) {
        let Some(n) = spi(intid) else { return };
        let (word, bit) = (n / 16, 2u32 << (2 * (n % 16)));
        let c = &self.regs.icfgr[word];
        c.set(if edge { c.get() | bit } else { c.get() & !bit });
    }

    /// Enables or disables shared peripheral interrupt `intid`.
    pub fn enable_spi(&self, intid: u32, on: bool) {
        let Some(n) = spi(intid) else { return };
        let (word, bit) = (n / 32, 1u32 << (n % 32));
        if on {
            self.regs.isenabler[word].set(bit);
        } else {
            self.regs.icenabler[word].set(bit);
        }
    }

    /// Deactivates shared peripheral interrupt `intid` if it is active.
    pub fn deactivate_spi(&self, intid: u32) {
        let Some(n) = spi(intid) else { return };
        self.regs.icactiver[n / 32].set(1 << (n % 32));
    }

    /// This core's SGIs and PPIs (INTIDs 0..32, banked): disabled, not pending,
    /// inactive. (SGIs' pending state is cleared through `GICD_CPENDSGIR`: their bits in
    /// `GICD_ICPENDR0` ignore writes.) Their group stays as it is.
    pub fn reset_private(&self) {
        self.regs.icenabler[0].set(u32::MAX);
        self.regs.icpendr[0].set(u32::MAX);
        for r in &self.regs.cpendsgir {
            r.set(u32::MAX);
        }
        self.regs.icactiver[0].set(u32::MAX);
    }

    /// Enables this core's private interrupt `intid` (< 32) at `priority` (lower is more
    /// urgent). Some GICs keep SGIs always enabled; the write is then ignored.
    pub fn enable_private(&self, intid: u32, priority: u8) {
        if intid >= 32 {
            return;
        }
        self.regs.ipriorityr[intid as usize].set(priority);
        self.regs.isenabler[0].set(1 << intid);
    }

    /// Sends SGI `intid` (0..16) to the CPU interfaces in `cpu_mask` (bit k: interface k).
    pub fn send_sgi(&self, intid: u32, cpu_mask: u8) {
        self.regs.sgir.write(
            GICD_SGIR::TARGET_LIST_FILTER::List
                + GICD_SGIR::CPU_TARGET_LIST.val(u32::from(cpu_mask))
                + GICD_SGIR::SGI_INTID.val(intid & 0xF),
        );
    }
}

/// `GICC_IAR`'s INTID when no interrupt is pending (1020..=1023 are all special).
pub const SPURIOUS: u32 = 1023;

/// This core's physical CPU interface.
pub struct CpuInterface {
    regs: &'static CpuInterfaceRegs,
}

impl CpuInterface {
    /// # Safety
    /// `base` is the GICv2 CPU interface (8 KiB), mapped as Device memory, used by
    /// nothing else.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: per the caller, `base` is the CPU interface's register block.
        Self { regs: unsafe { &*(base as *const CpuInterfaceRegs) } }
    }

    /// All priorities unmasked, no preemption grouping, the interface on (group 0: every
    /// interrupt without the Security Extensions; the Non-secure group with them) with
    /// priority drop (`eoi`) split from deactivation (`deactivate`).
    pub fn init_split_eoi(&self) {
        self.regs.pmr.set(0xFF);
        self.regs.bpr.set(0);
        self.regs.ctlr.write(GICC_CTLR::ENABLE_GRP0::SET + GICC_CTLR::EOI_MODE::SET);
    }

    /// Acknowledges the highest-priority pending interrupt: the whole `GICC_IAR`, INTID
    /// in bits 9..0 ([`SPURIOUS`] if none) and, for an SGI, the sender in bits 12..10.
    /// [`Self::eoi`] and [`Self::deactivate`] take this value as it is.
    pub fn iar(&self) -> u32 {
        self.regs.iar.get()
    }

    /// Drops the running priority of the interrupt `iar` acknowledged.
    pub fn eoi(&self, iar: u32) {
        self.regs.eoir.set(iar);
    }

    /// Deactivates the interrupt `iar` acknowledged (after [`Self::eoi`]).
    pub fn deactivate(&self, iar: u32) {
        self.regs.dir.set(iar);
    }
}

/// The INTID in a `GICC_IAR` value.
pub fn intid_of(iar: u32) -> u32 {
    iar & 0x3FF
}

/// This core's virtual interface control (`GICH`).
pub struct HypInterface {
    regs: &'static HypInterfaceRegs,
    list_registers: usize,
}

impl HypInterface {
    /// # Safety
    /// `base` is the GICv2 virtual interface control block (this core's view), mapped as
    /// Device memory, used by nothing else.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: per the caller, `base` is the GICH register block.
        let regs = unsafe { &*(base as *const HypInterfaceRegs) };
        let list_registers = (regs.vtr.read(GICH_VTR::LIST_REGS) as usize + 1).min(regs.lr.len());
        Self { regs, list_registers }
    }

    /// The virtual CPU interface on or off, and the underflow maintenance interrupt
    /// (no list register, or only one, holds an interrupt) on or off.
    pub fn set_hcr(&self, enable: bool, underflow_irq: bool) {
        self.regs.hcr.write(GICH_HCR::EN.val(u32::from(enable)) + GICH_HCR::UIE.val(u32::from(underflow_irq)));
    }

    /// List registers implemented (`GICH_VTR.ListRegs` + 1).
    pub fn list_registers(&self) -> usize {
        self.list_registers
    }

    /// Empty list registers (bit n: list register n).
    pub fn elrsr(&self) -> u64 {
        u64::from(self.regs.elrsr[0].get()) | (u64::from(self.regs.elrsr[1].get()) << 32)
    }

    /// List register `n`; 0 (invalid) if there is no such register.
    pub fn lr(&self, n: usize) -> u32 {
        self.lr_reg(n).map_or(0, Readable::get)
    }

    /// Writes list register `n`; nothing if there is no such register.
    pub fn set_lr(&self, n: usize, value: u32) {
        if let Some(r) = self.lr_reg(n) {
            r.set(value);
        }
    }

    fn lr_reg(&self, n: usize) -> Option<&ReadWrite<u32, GICH_LR::Register>> {
        self.regs.lr.get(n).filter(|_| n < self.list_registers)
    }

    /// No active virtual priorities (`GICH_APR` = 0).
    pub fn clear_active_priorities(&self) {
        self.regs.apr.set(0);
    }

    /// Sets the virtual machine control register (the guest's `GICV_CTLR`, `GICV_PMR`,
    /// `GICV_BPR` and `GICV_ABPR` fields).
    pub fn set_vmcr(&self, value: u32) {
        self.regs.vmcr.set(value);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;

    /// Plain memory standing in for a register block: writes stay as written.
    #[repr(C, align(4096))]
    struct Fake([u32; 2048]);

    /// A leaked, zeroed block, reached only through its address from then on.
    fn fake() -> usize {
        Box::into_raw(Box::new(Fake([0; 2048]))) as usize
    }

    fn word(base: usize, offset: usize) -> u32 {
        assert!(offset < 0x2000);
        // SAFETY: `offset` is inside the block `fake` leaked.
        unsafe { core::ptr::read_volatile((base + offset) as *const u32) }
    }

    fn poke(base: usize, offset: usize, value: u32) {
        assert!(offset < 0x2000);
        // SAFETY: as in `word`.
        unsafe { core::ptr::write_volatile((base + offset) as *mut u32, value) }
    }

    #[test]
    fn distributor_offsets() {
        let base = fake();
        // SAFETY: the block is ours alone, big enough for the distributor.
        let d = unsafe { Distributor::new(base) };
        d.enable();
        d.configure_spi(41, 0xA0, 0b10);
        d.enable_spi(42, true);
        d.deactivate_spi(43);
        d.send_sgi(5, 0b0110);
        d.enable_private(27, 0x80);
        assert_eq!(word(base, 0x000), 0b11);
        assert_eq!(word(base, 0x184), 1 << 9);
        assert_eq!(word(base, 0x400 + 40), 0xA0 << 8);
        assert_eq!(word(base, 0x800 + 40), 0b10 << 8);
        assert_eq!(word(base, 0x104), 1 << 10);
        assert_eq!(word(base, 0x384), 1 << 11);
        assert_eq!(word(base, 0xF00), (0b0110 << 16) | 5);
        assert_eq!(word(base, 0x400 + 24), 0x80 << 24);
        assert_eq!(word(base, 0x100), 1 << 27);
        d.reset_private();
        for offset in [0x180, 0x280, 0x380, 0xF10, 0xF14, 0xF18, 0xF1C] {
            assert_eq!(word(base, offset), u32::MAX, "offset {offset:#x}");
        }
        // Not an SPI: nothing written.
        d.configure_spi(1020, 0xFF, 0xFF);
        assert_eq!(word(base, 0x180 + 4 * 31), 0);
    }

    #[test]
    fn cpu_interface_offsets() {
        let base = fake();
        // SAFETY: as above; 8 KiB.
        let c = unsafe { CpuInterface::new(base) };
        c.init_split_eoi();
        assert_eq!((word(base, 0x0), word(base, 0x4), word(base, 0x8)), ((1 << 9) | 1, 0xFF, 0));
        poke(base, 0xC, (3 << 10) | 7);
        let iar = c.iar();
        assert_eq!(intid_of(iar), 7);
        c.eoi(iar);
        c.deactivate(iar);
        assert_eq!((word(base, 0x10), word(base, 0x1000)), (iar, iar));
    }

    #[test]
    fn hyp_interface_offsets() {
        let base = fake();
        poke(base, 0x4, 3); // VTR: four list registers
        poke(base, 0x30, 0b1010);
        poke(base, 0x34, 1);
        // SAFETY: as above.
        let h = unsafe { HypInterface::new(base) };
        assert_eq!(h.list_registers(), 4);
        assert_eq!(h.elrsr(), (1 << 32) | 0b1010);
        h.set_hcr(true, true);
        assert_eq!(word(base, 0x0), 0b11);
        h.set_lr(3, 0x1234_5678);
        h.set_lr(4, 0xDEAD);
        assert_eq!((word(base, 0x10C), word(base, 0x110)), (0x1234_5678, 0));
        assert_eq!((h.lr(3), h.lr(4)), (0x1234_5678, 0));
        poke(base, 0xF0, 0xFF);
        h.clear_active_priorities();
        h.set_vmcr(0x55);
        assert_eq!((word(base, 0xF0), word(base, 0x8)), (0, 0x55));
    }
}

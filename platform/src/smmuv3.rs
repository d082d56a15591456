//! Arm SMMUv3 registers, as far as the hypervisor programs them (Arm IHI 0070, chapter
//! 6). The SMMU belongs to the hypervisor alone: no partition's stage 2 maps it (it is
//! among every board's kept devices). What goes into its tables and queues is
//! `septum_core::smmu`'s.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    pub IDR0 [
        /// Stage-2 translation supported.
        S2P OFFSET(0) NUMBITS(1) [],
        /// Translation table formats: 0b10 AArch64.
        TTF OFFSET(2) NUMBITS(2) [],
        /// Table walks and queue accesses are coherent with the cores.
        COHACC OFFSET(4) NUMBITS(1) [],
        /// Two-level stream tables (not used).
        ST_LEVEL OFFSET(27) NUMBITS(2) []
    ],
    pub IDR1 [
        SIDSIZE OFFSET(0) NUMBITS(6) [],
        EVENTQS OFFSET(16) NUMBITS(5) [],
        CMDQS OFFSET(21) NUMBITS(5) []
    ],
    pub IDR5 [
        /// Output address size (the PS/IPS encoding).
        OAS OFFSET(0) NUMBITS(3) [],
        GRAN4K OFFSET(4) NUMBITS(1) []
    ],
    pub CR0 [
        SMMUEN OFFSET(0) NUMBITS(1) [],
        EVENTQEN OFFSET(2) NUMBITS(1) [],
        CMDQEN OFFSET(3) NUMBITS(1) []
    ],
    pub CR1 [
        QUEUE_IC OFFSET(0) NUMBITS(2) [],
        QUEUE_OC OFFSET(2) NUMBITS(2) [],
        QUEUE_SH OFFSET(4) NUMBITS(2) [],
        TABLE_IC OFFSET(6) NUMBITS(2) [],
        TABLE_OC OFFSET(8) NUMBITS(2) [],
        TABLE_SH OFFSET(10) NUMBITS(2) []
    ],
    pub CR2 [
        /// Record `C_BAD_STREAMID` for streams beyond the table.
        RECINVSID OFFSET(1) NUMBITS(1) []
    ],
    pub GBPA [
        UPDATE OFFSET(31) NUMBITS(1) [],
        /// With the SMMU disabled, abort every transaction (rather than let it through).
        ABORT OFFSET(20) NUMBITS(1) []
    ],
    pub IRQ_CTRL [
        GERROR_IRQEN OFFSET(0) NUMBITS(1) [],
        EVENTQ_IRQEN OFFSET(2) NUMBITS(1) []
    ],
    pub STRTAB_BASE_CFG [
        /// 0: linear.
        FMT OFFSET(16) NUMBITS(2) [],
        LOG2SIZE OFFSET(0) NUMBITS(6) []
    ],
    pub CMDQ_CONS [
        /// The error of the command at CONS (0: none).
        ERR OFFSET(24) NUMBITS(7) []
    ]
}

register_structs! {
    /// Page 0 of the SMMU's register frame.
    pub Regs {
        (0x000 => pub idr0: ReadOnly<u32, IDR0::Register>),
        (0x004 => pub idr1: ReadOnly<u32, IDR1::Register>),
        (0x008 => _reserved0),
        (0x014 => pub idr5: ReadOnly<u32, IDR5::Register>),
        (0x018 => _reserved1),
        (0x020 => pub cr0: ReadWrite<u32, CR0::Register>),
        (0x024 => pub cr0ack: ReadOnly<u32, CR0::Register>),
        (0x028 => pub cr1: ReadWrite<u32, CR1::Register>),
        (0x02C => pub cr2: ReadWrite<u32, CR2::Register>),
        (0x030 => _reserved2),
        (0x044 => pub gbpa: ReadWrite<u32, GBPA::Register>),
        (0x048 => _reserved3),
        (0x050 => pub irq_ctrl: ReadWrite<u32, IRQ_CTRL::Register>),
        (0x054 => pub irq_ctrlack: ReadOnly<u32, IRQ_CTRL::Register>),
        (0x058 => _reserved4),
        (0x060 => pub gerror: ReadOnly<u32>),
        (0x064 => pub gerrorn: ReadWrite<u32>),
        (0x068 => pub gerror_irq_cfg0: ReadWrite<u64>),
        (0x070 => _reserved5),
        (0x080 => pub strtab_base: ReadWrite<u64>),
        (0x088 => pub strtab_base_cfg: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x08C => _reserved6),
        (0x090 => pub cmdq_base: ReadWrite<u64>),
        (0x098 => pub cmdq_prod: ReadWrite<u32>),
        (0x09C => pub cmdq_cons: ReadWrite<u32, CMDQ_CONS::Register>),
        (0x0A0 => pub eventq_base: ReadWrite<u64>),
        (0x0A8 => _reserved7),
        (0x0B0 => pub eventq_irq_cfg0: ReadWrite<u64>),
        (0x0B8 => @END),
    }
}

register_structs! {
    /// Page 1 of the SMMU's register frame (at +64 KiB): the event queue's indices.
    pub Page1Regs {
        (0x00 => _reserved0),
        (0xA8 => pub eventq_prod: ReadWrite<u32>),
        (0xAC => pub eventq_cons: ReadWrite<u32>),
        (0xB0 => @END),
    }
}

/// Offset of page 1 in the register frame.
pub const PAGE1: usize = 0x1_0000;

/// An SMMUv3's registers.
pub struct Smmu {
    pub regs: &'static Regs,
    pub page1: &'static Page1Regs,
}

// SAFETY: the handle is only the registers' address; whoever holds it may use it from
// any core, and the hypervisor serializes its use with a lock (`hypervisor/src/smmu.rs`).
unsafe impl Send for Smmu {}

impl Smmu {
    /// # Safety
    /// `base` is an SMMUv3's register frame (two 64 KiB pages), mapped as Device memory
    /// and programmed by nothing else.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: per the caller, `base` and `base + PAGE1` are the SMMU's two register
        // pages.
        unsafe { Self { regs: &*(base as *const Regs), page1: &*((base + PAGE1) as *const Page1Regs) } }
    }

    /// The event queue's producer index, as the SMMU last wrote it.
    pub fn eventq_prod(&self) -> u32 {
        self.page1.eventq_prod.get()
    }

    /// Hands the event queue's entries up to `cons` back to the SMMU.
    pub fn set_eventq_cons(&self, cons: u32) {
        self.page1.eventq_cons.set(cons);
    }
}

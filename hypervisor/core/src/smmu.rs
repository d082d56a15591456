//! What the hypervisor writes into an Arm SMMUv3's tables and queues, and what its
//! event records mean (Arm IHI 0070, SMMUv3: 5.2 STE, 4 commands, 7.3 events). Pure
//! encoding and decoding; the EL2 binary owns the SMMU's memory and registers.
//!
//! The SMMU belongs to the hypervisor (DMA-003). A stream (a PCIe function's requester
//! ID) of a device given to a partition translates with that partition's own stage-2
//! tables and VMID, so the device reaches exactly what the partition's vCPUs reach,
//! never more; every other stream is aborted and its transactions recorded as events.

use core::fmt;

/// Bytes of a stream table entry.
pub const STE_BYTES: usize = 64;
/// Bytes of a command, and of an event record.
pub const CMD_BYTES: usize = 16;
pub const EVENT_BYTES: usize = 32;

/// A stream table entry, as eight little-endian 64-bit words.
pub type Ste = [u64; 8];

/// An entry that aborts every transaction of its stream and records it (V = 0: the
/// SMMU reports `C_BAD_STE`): streams of no partition, and a stopped partition's.
pub const STE_ABORT: Ste = [0; 8];

/// The stage-2 translation every partition's tables use (`stage2.rs`, VTCR_EL2): a
/// 39-bit input (T0SZ 25), 4 KiB granule, walks starting at level 1, write-back
/// inner-shareable table walks.
pub const S2_T0SZ: u64 = 25;
pub const S2_SL0: u64 = 1;

/// An entry that translates its stream with a partition's stage 2: VMID `vmid`, tables
/// at `ttb`, output addresses of the size code `ps` (the smaller of what the CPU's
/// VTCR_EL2 and the SMMU's IDR5.OAS allow). Stage 1 bypassed (the partition programs
/// its devices with guest-physical addresses); faults recorded (S2R), never stalled
/// (S2S clear: a stalled stream would wait on the hypervisor).
pub fn ste_s2(vmid: u16, ttb: u64, ps: u8) -> Ste {
    const V: u64 = 1;
    const CONFIG_S2: u64 = 0b110 << 1;
    let vtcr = S2_T0SZ
        | S2_SL0 << 6
        | 1 << 8 // IR0: write-back read/write-allocate
        | 1 << 10 // OR0: the same
        | 3 << 12 // SH0: inner shareable
        | (u64::from(ps) & 0b111) << 16; // PS; TG (bits 15:14) 0: 4 KiB
    const S2AA64: u64 = 1 << 51;
    const S2R: u64 = 1 << 58;
    let mut ste = [0u64; 8];
    ste[0] = V | CONFIG_S2;
    // SHCFG (bits 45:44 of the second word): use the incoming shareability.
    ste[1] = 1 << 44;
    ste[2] = u64::from(vmid) | vtcr << 32 | S2AA64 | S2R;
    ste[3] = ttb & 0x000F_FFFF_FFFF_FFF0;
    ste
}

/// A command, as two little-endian 64-bit words.
pub type Cmd = [u64; 2];

pub mod opcode {
    pub const CFGI_STE: u64 = 0x03;
    pub const CFGI_ALL: u64 = 0x04;
    pub const TLBI_NSNH_ALL: u64 = 0x30;
    pub const TLBI_S12_VMALL: u64 = 0x28;
    pub const SYNC: u64 = 0x46;
}

/// Invalidate what the SMMU cached of stream `sid`'s entry (leaf only).
pub fn cmd_cfgi_ste(sid: u32) -> Cmd {
    [opcode::CFGI_STE | u64::from(sid) << 32, 1]
}

/// Invalidate every cached stream table entry (boot).
pub fn cmd_cfgi_all() -> Cmd {
    [opcode::CFGI_ALL, 31]
}

/// Invalidate every non-secure translation (boot).
pub fn cmd_tlbi_nsnh_all() -> Cmd {
    [opcode::TLBI_NSNH_ALL, 0]
}

/// Invalidate the stage-1 and stage-2 translations of VMID `vmid`.
pub fn cmd_tlbi_s12_vmall(vmid: u16) -> Cmd {
    [opcode::TLBI_S12_VMALL | u64::from(vmid) << 32, 0]
}

/// Completes when every command before it has (no interrupt, no MSI: polled).
pub fn cmd_sync() -> Cmd {
    [opcode::SYNC, 0]
}

/// A circular queue's producer or consumer index: `log2` entries, a wrap bit above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    pub log2: u32,
}

impl Queue {
    fn mask(self) -> u32 {
        (1 << self.log2) - 1
    }
    /// The entry an index points at.
    pub fn slot(self, index: u32) -> usize {
        (index & self.mask()) as usize
    }
    /// The next index, the wrap bit toggled at the end.
    pub fn next(self, index: u32) -> u32 {
        let wrap = index & (1 << self.log2);
        let i = (index & self.mask()) + 1;
        if i > self.mask() {
            wrap ^ (1 << self.log2)
        } else {
            wrap | i
        }
    }
    /// Nothing between `cons` and `prod`.
    pub fn is_empty(self, prod: u32, cons: u32) -> bool {
        let keep = (1 << (self.log2 + 1)) - 1;
        prod & keep == cons & keep
    }
    /// Every entry between `cons` and `prod` is taken.
    pub fn is_full(self, prod: u32, cons: u32) -> bool {
        prod & self.mask() == cons & self.mask() && (prod ^ cons) & (1 << self.log2) != 0
    }
}

/// `SMMU_EVENTQ_PROD.OVFLG` (bit 31): events were lost, the queue being full.
pub const EVENTQ_OVERFLOW: u32 = 1 << 31;

/// A decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: u8,
    pub sid: u32,
    /// The transaction was a read (RnW).
    pub read: bool,
    /// The fault arose at stage 2.
    pub s2: bool,
    /// The input address (for a stage-2-only stream: the device's guest-physical one).
    pub input: u64,
    /// The intermediate physical address, where the record carries one.
    pub ipa: u64,
}

impl Event {
    pub fn decode(words: [u64; 4]) -> Self {
        Self {
            kind: words[0] as u8,
            sid: (words[0] >> 32) as u32,
            read: words[1] & (1 << 35) != 0,
            s2: words[1] & (1 << 39) != 0,
            input: words[2],
            ipa: words[3] & 0x000F_FFFF_FFFF_F000,
        }
    }

    /// The event's name in the specification, and what it means here.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            0x01 => "F_UUT: unsupported upstream transaction",
            0x02 => "C_BAD_STREAMID: a stream beyond the table (no partition's)",
            0x03 => "F_STE_FETCH: stream table unreadable",
            0x04 => "C_BAD_STE: a stream of no running partition (aborted)",
            0x06 => "F_STREAM_DISABLED",
            0x07 => "F_TRANSL_FORBIDDEN",
            0x0B => "F_WALK_EABT: external abort on a table walk",
            0x10 => "F_TRANSLATION: outside the partition's memory map",
            0x11 => "F_ADDR_SIZE: beyond the partition's address space",
            0x12 => "F_ACCESS: access flag",
            0x13 => "F_PERMISSION: a write to memory the partition may only read",
            0x20 => "F_TLB_CONFLICT",
            0x21 => "F_CFG_CONFLICT",
            _ => "an event Septum does not decode",
        }
    }

    /// A fault of the stream's own transaction (the partition's device did it), rather
    /// than a configuration event about the stream.
    pub fn is_transaction_fault(&self) -> bool {
        matches!(self.kind, 0x10..=0x13)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream {:#x} {} at {:#x}: {} (event {:#04x})",
            self.sid,
            if self.read { "read" } else { "write" },
            self.input,
            self.describe(),
            self.kind
        )
    }
}

/// The configuration-space address of bus 0, device `dev`, function `func` in a PCIe
/// ECAM window at `ecam` (4 KiB per function).
pub fn ecam_function(ecam: u64, dev: u8, func: u8) -> u64 {
    ecam + (u64::from(dev & 0x1F) << 15) + (u64::from(func & 0x7) << 12)
}

/// PCI command register bit: Bus Master Enable.
pub const PCI_COMMAND_BUS_MASTER: u16 = 1 << 2;
/// The command register's offset in configuration space, and the vendor ID's.
pub const PCI_COMMAND: u64 = 0x04;
pub const PCI_VENDOR_ID: u64 = 0x00;

#[cfg(test)]
mod tests {
    use super::*;

    /// DMA-003: a partition's stream translates with exactly its stage 2 as the CPU's
    /// VTCR_EL2 describes it (T0SZ 25, SL0 1, 4 KiB, inner-shareable write-back walks),
    /// its VMID and its table root; faults recorded, stage 1 bypassed.
    #[test]
    fn a_stage_2_entry_mirrors_the_partitions_tables() {
        let ste = ste_s2(2, 0x4012_3000, 4);
        assert_eq!(ste[0] & 1, 1, "valid");
        assert_eq!((ste[0] >> 1) & 0b111, 0b110, "stage 1 bypass, stage 2 translate");
        let dw2 = ste[2];
        assert_eq!(dw2 & 0xFFFF, 2, "VMID");
        assert_eq!((dw2 >> 32) & 0x3F, 25, "S2T0SZ");
        assert_eq!((dw2 >> 38) & 0b11, 1, "S2SL0");
        assert_eq!((dw2 >> 46) & 0b11, 0, "S2TG: 4 KiB");
        assert_eq!((dw2 >> 48) & 0b111, 4, "S2PS");
        assert_ne!(dw2 & (1 << 51), 0, "S2AA64");
        assert_ne!(dw2 & (1 << 58), 0, "S2R: faults recorded");
        assert_eq!(dw2 & (1 << 57), 0, "S2S: never stalled");
        assert_eq!(ste[3], 0x4012_3000, "S2TTB");
        assert_eq!(STE_ABORT[0] & 1, 0, "the abort entry is invalid: every transaction aborted and recorded");
    }

    #[test]
    fn commands_carry_their_operands() {
        assert_eq!(cmd_cfgi_ste(0x18), [0x03 | 0x18 << 32, 1]);
        assert_eq!(cmd_tlbi_s12_vmall(7), [0x28 | 7 << 32, 0]);
        assert_eq!(cmd_sync()[0] & 0xFF, 0x46);
    }

    #[test]
    fn queue_indices_wrap() {
        let q = Queue { log2: 2 };
        let mut i = 0;
        for _ in 0..4 {
            i = q.next(i);
        }
        assert_eq!(i, 1 << 2, "a full lap toggles the wrap bit");
        assert!(q.is_full(i, 0));
        assert!(!q.is_empty(i, 0));
        assert!(q.is_empty(i, i));
        assert_eq!(q.slot(q.next(i)), 1);
        assert!(q.is_empty(EVENTQ_OVERFLOW, 0), "the overflow flag is not an index bit");
    }

    /// DMA-003: an event record says which stream did what where.
    #[test]
    fn events_decode_stream_address_and_reason() {
        let words = [0x10 | 0x08 << 32, 1 << 39, 0x5000_0000, 0x5000_0000];
        let e = Event::decode(words);
        assert_eq!((e.kind, e.sid, e.read, e.s2, e.input), (0x10, 8, false, true, 0x5000_0000));
        assert!(e.is_transaction_fault());
        let text = std::format!("{e}");
        assert_eq!(
            text,
            "stream 0x8 write at 0x50000000: F_TRANSLATION: outside the partition's memory map (event 0x10)"
        );
        assert!(!Event::decode([0x04, 0, 0, 0]).is_transaction_fault());
        let _ = Event::decode([u64::MAX; 4]).describe();
    }

    #[test]
    fn ecam_addresses_by_device_and_function() {
        assert_eq!(ecam_function(0x40_1000_0000, 1, 0), 0x40_1000_8000);
        assert_eq!(ecam_function(0x40_1000_0000, 31, 7), 0x40_1000_0000 + (31 << 15) + (7 << 12));
    }
}

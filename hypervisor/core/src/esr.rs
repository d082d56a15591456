//! ESR_EL2 decoding (Arm ARM D24.2.40 "ESR_EL2"). Used to dispatch a trap and to log,
//! in words, why a partition was stopped.

use core::fmt;

/// A raw exception syndrome.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Esr(pub u64);

/// The exception classes Septum distinguishes (ESR.EC, bits [31:26]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfxTrap,
    FpAccess,
    IllegalState,
    Svc64,
    Hvc64,
    Smc64,
    SysReg64,
    SveAccess,
    InstructionAbortLower,
    InstructionAbortSame,
    PcAlignment,
    DataAbortLower,
    DataAbortSame,
    SpAlignment,
    FpException,
    SError,
    Breakpoint,
    SoftwareStep,
    Watchpoint,
    Brk,
    Other(u8),
}

impl ExceptionClass {
    pub fn from_ec(ec: u8) -> Self {
        match ec {
            0x00 => Self::Unknown,
            0x01 => Self::WfxTrap,
            0x07 => Self::FpAccess,
            0x0E => Self::IllegalState,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg64,
            0x19 => Self::SveAccess,
            0x20 => Self::InstructionAbortLower,
            0x21 => Self::InstructionAbortSame,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2C => Self::FpException,
            0x2F => Self::SError,
            0x30 | 0x31 => Self::Breakpoint,
            0x32 | 0x33 => Self::SoftwareStep,
            0x34 | 0x35 => Self::Watchpoint,
            0x3C => Self::Brk,
            other => Self::Other(other),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Unknown => "unknown reason (undefined instruction)",
            Self::WfxTrap => "trapped WFI/WFE",
            Self::FpAccess => "trapped FP/SIMD access",
            Self::IllegalState => "illegal execution state",
            Self::Svc64 => "SVC",
            Self::Hvc64 => "HVC",
            Self::Smc64 => "SMC",
            Self::SysReg64 => "trapped system register or instruction",
            Self::SveAccess => "trapped SVE access",
            Self::InstructionAbortLower => "instruction abort from the partition",
            Self::InstructionAbortSame => "instruction abort in the hypervisor",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLower => "data abort from the partition",
            Self::DataAbortSame => "data abort in the hypervisor",
            Self::SpAlignment => "SP alignment fault",
            Self::FpException => "floating-point exception",
            Self::SError => "SError",
            Self::Breakpoint => "breakpoint",
            Self::SoftwareStep => "software step",
            Self::Watchpoint => "watchpoint",
            Self::Brk => "BRK instruction",
            Self::Other(_) => "unexpected exception class",
        }
    }
}

/// Fault status code of an abort (DFSC/IFSC, ISS bits [5:0]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize(u8),
    Translation(u8),
    AccessFlag(u8),
    Permission(u8),
    SyncExternal,
    Alignment,
    TlbConflict,
    Other(u8),
}

impl FaultStatus {
    pub fn from_fsc(fsc: u8) -> Self {
        let level = fsc & 0b11;
        match fsc & 0b11_1111 {
            0b00_0000..=0b00_0011 => Self::AddressSize(level),
            0b00_0100..=0b00_0111 => Self::Translation(level),
            0b00_1000..=0b00_1011 => Self::AccessFlag(level),
            0b00_1100..=0b00_1111 => Self::Permission(level),
            0b01_0000 => Self::SyncExternal,
            0b10_0001 => Self::Alignment,
            0b11_0000 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressSize(l) => write!(f, "address size fault, level {l}"),
            Self::Translation(l) => write!(f, "translation fault, level {l}"),
            Self::AccessFlag(l) => write!(f, "access flag fault, level {l}"),
            Self::Permission(l) => write!(f, "permission fault, level {l}"),
            Self::SyncExternal => write!(f, "synchronous external abort"),
            Self::Alignment => write!(f, "alignment fault"),
            Self::TlbConflict => write!(f, "TLB conflict abort"),
            Self::Other(c) => write!(f, "fault status {c:#04x}"),
        }
    }
}

/// A decoded data-abort ISS (ESR bits [24:0] for EC 0x24/0x25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// ISV: the fields below (size, register) are valid.
    pub valid: bool,
    /// Access size in bytes.
    pub size: u8,
    pub sign_extend: bool,
    /// The transfer register Xt (31 = XZR).
    pub reg: u8,
    pub sixty_four: bool,
    pub write: bool,
    /// The fault happened on a stage-2 walk of the guest's own stage-1 tables.
    pub s1ptw: bool,
    pub status: FaultStatus,
}

impl Esr {
    pub fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3F) as u8
    }
    pub fn class(self) -> ExceptionClass {
        ExceptionClass::from_ec(self.ec())
    }
    /// IL: the trapped instruction was 32 bits (always, for A64).
    pub fn il32(self) -> bool {
        self.0 & (1 << 25) != 0
    }
    /// Bytes of the trapped instruction: 4, or 2 for a 16-bit T32 instruction (IL = 0,
    /// only from an AArch32 EL0).
    pub fn instruction_len(self) -> u64 {
        if self.il32() {
            4
        } else {
            2
        }
    }
    pub fn iss(self) -> u32 {
        (self.0 & 0x01FF_FFFF) as u32
    }
    /// The 16-bit immediate of an HVC/SMC.
    pub fn imm16(self) -> u16 {
        (self.iss() & 0xFFFF) as u16
    }
    pub fn data_abort(self) -> DataAbort {
        let iss = self.iss();
        DataAbort {
            valid: iss & (1 << 24) != 0,
            size: 1 << ((iss >> 22) & 0b11),
            sign_extend: iss & (1 << 21) != 0,
            reg: ((iss >> 16) & 0x1F) as u8,
            sixty_four: iss & (1 << 15) != 0,
            write: iss & (1 << 6) != 0,
            s1ptw: iss & (1 << 7) != 0,
            status: FaultStatus::from_fsc((iss & 0x3F) as u8),
        }
    }
    /// Fault status of an instruction abort.
    pub fn instruction_fault(self) -> FaultStatus {
        FaultStatus::from_fsc((self.iss() & 0x3F) as u8)
    }
}

impl fmt::Debug for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Esr({:#x})", self.0)
    }
}

/// `ESR 0x92000007 EC=0x24 data abort from the partition: read, translation fault, level 3`
impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class();
        write!(f, "ESR {:#010x} EC={:#04x} {}", self.0, self.ec(), class.describe())?;
        match class {
            ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame => {
                let da = self.data_abort();
                write!(f, ": {}, {}", if da.write { "write" } else { "read" }, da.status)?;
                if da.valid {
                    write!(f, ", {} bytes via x{}", da.size, da.reg)?;
                }
                if da.s1ptw {
                    write!(f, ", on a stage-1 table walk")?;
                }
                Ok(())
            }
            ExceptionClass::InstructionAbortLower | ExceptionClass::InstructionAbortSame => {
                write!(f, ": {}", self.instruction_fault())
            }
            ExceptionClass::Hvc64 | ExceptionClass::Smc64 => write!(f, " #{:#x}", self.imm16()),
            ExceptionClass::SysReg64 => {
                let s = SysRegAccess::decode(*self);
                write!(f, ": {s}")
            }
            _ => Ok(()),
        }
    }
}

/// A trapped MSR/MRS/SYS (EC 0x18), ISS decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    pub reg: u8,
    pub read: bool,
}

impl SysRegAccess {
    pub fn decode(esr: Esr) -> Self {
        let iss = esr.iss();
        Self {
            op0: ((iss >> 20) & 0b11) as u8,
            op2: ((iss >> 17) & 0b111) as u8,
            op1: ((iss >> 14) & 0b111) as u8,
            crn: ((iss >> 10) & 0xF) as u8,
            reg: ((iss >> 5) & 0x1F) as u8,
            crm: ((iss >> 1) & 0xF) as u8,
            read: iss & 1 != 0,
        }
    }
    /// A write to an SGI generation register (`ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1`,
    /// `ICC_SGI0R_EL1`), trapped by HCR_EL2.IMO/FMO. They are write-only.
    pub fn is_sgi_write(&self) -> bool {
        !self.read && self.op0 == 3 && self.op1 == 0 && self.crn == 12 && self.crm == 11 && (5..=7).contains(&self.op2)
    }

    /// DC ISW / CSW / CISW (cache maintenance by set/way).
    pub fn is_set_way(&self) -> bool {
        self.op0 == 1 && self.op1 == 0 && self.crn == 7 && matches!((self.crm, self.op2), (6, 2) | (10, 2) | (14, 2))
    }
}

impl SysRegAccess {
    /// The architectural name of registers Septum traps on purpose.
    pub fn name(&self) -> Option<&'static str> {
        Some(match (self.op0, self.op1, self.crn, self.crm, self.op2) {
            (3, 0, 1, 0, 1) => "ACTLR_EL1",
            (3, 0, 12, 11, 5) => "ICC_SGI1R_EL1",
            (3, 0, 12, 11, 6) => "ICC_ASGI1R_EL1",
            (3, 0, 12, 11, 7) => "ICC_SGI0R_EL1",
            (1, 0, 7, 6, 2) => "DC ISW",
            (1, 0, 7, 10, 2) => "DC CSW",
            (1, 0, 7, 14, 2) => "DC CISW",
            _ => return None,
        })
    }
}

impl fmt::Display for SysRegAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.name() {
            let dir = if self.read { "MRS" } else { "MSR" };
            return write!(f, "{dir} {name} {} x{}", if self.read { "into" } else { "from" }, self.reg);
        }
        write!(
            f,
            "{} S{}_{}_C{}_C{}_{} {} x{}",
            if self.read { "MRS" } else { "MSR/SYS" },
            self.op0,
            self.op1,
            self.crn,
            self.crm,
            self.op2,
            if self.read { "into" } else { "from" },
            self.reg
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_stage2_read_translation_fault() {
        // LDR w1, [x0] faulting at stage 2, level 3: EC=0x24, IL, ISV, SAS=word, SRT=1.
        let esr = Esr((0x24 << 26) | (1 << 25) | (1 << 24) | (0b10 << 22) | (1 << 16) | 0x07);
        assert_eq!(esr.class(), ExceptionClass::DataAbortLower);
        let da = esr.data_abort();
        assert!(da.valid && !da.write);
        assert_eq!((da.size, da.reg), (4, 1));
        assert_eq!(da.status, FaultStatus::Translation(3));
        let text = std::format!("{esr}");
        assert!(
            text.contains("data abort from the partition: read, translation fault, level 3, 4 bytes via x1"),
            "{text}"
        );
    }

    #[test]
    fn decodes_smc_and_set_way() {
        let smc = Esr((0x17 << 26) | (1 << 25));
        assert_eq!(smc.class(), ExceptionClass::Smc64);
        // DC CISW, x3: op0=1 op1=0 CRn=7 CRm=14 op2=2, write.
        let iss = (1 << 20) | (2 << 17) | (7 << 10) | (3 << 5) | (14 << 1);
        let dc = Esr((0x18 << 26) | (1 << 25) | iss);
        assert!(SysRegAccess::decode(dc).is_set_way());
    }
}

//! A guest's registers as the exception vectors save them, and what a trap handler
//! changes in them.

/// A guest's general-purpose registers and return state, as the vectors save them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub _pad: u64,
}

impl TrapFrame {
    /// Guest register `Xn` as an instruction names it (31: XZR, reads zero).
    pub fn reg(&self, n: u8) -> u64 {
        self.x.get(usize::from(n)).copied().unwrap_or(0)
    }

    /// Sets guest register `Xn` (31: XZR, the value is discarded).
    pub fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(x) = self.x.get_mut(usize::from(n)) {
            *x = value;
        }
    }

    /// Resumes the guest after the trapped instruction, which the syndrome `esr` says
    /// is 4 bytes long (ESR.IL) or 2 (a 16-bit T32 instruction of an AArch32 EL0).
    pub fn skip(&mut self, esr: u64) {
        self.elr = self.elr.wrapping_add(septum_core::esr::Esr(esr).instruction_len());
    }
}

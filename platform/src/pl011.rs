//! Arm PrimeCell UART (PL011), as far as Septum and its guests use it: polled transmit
//! and receive, no interrupts (Arm PL011 TRM, DDI 0183, section 3).

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    pub FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Interrupt mask (IMSC) and clear (ICR) bits.
    pub INT [
        /// Transmit: asserted while the transmitter can take more.
        TX OFFSET(5) NUMBITS(1) []
    ],
    pub CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ]
}

register_structs! {
    pub Pl011Regs {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x038 => imsc: ReadWrite<u32, INT::Register>),
        (0x03c => _reserved3),
        (0x044 => icr: WriteOnly<u32, INT::Register>),
        (0x048 => @END),
    }
}

/// A PL011 at a fixed address.
pub struct Pl011 {
    regs: &'static Pl011Regs,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011's registers, mapped as device memory for
    /// the caller's lifetime, and no one else may drive the same UART.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` is a mapped PL011 register block that
        // lives forever and that this is the only driver of it.
        let regs = unsafe { &*(base as *const Pl011Regs) };
        regs.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
        Self { regs }
    }

    pub fn write_byte(&self, b: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.set(u32::from(b));
    }

    /// Raises the UART's interrupt while the transmitter can take more (IMSC.TXIM):
    /// since it always can here, at once. [`Pl011::quiet`] masks it again.
    pub fn interrupt_when_writable(&self) {
        self.regs.imsc.modify(INT::TX::SET);
    }

    /// Masks and clears the transmit interrupt.
    pub fn quiet(&self) {
        self.regs.imsc.modify(INT::TX::CLEAR);
        self.regs.icr.write(INT::TX::SET);
    }

    pub fn read_byte(&self) -> Option<u8> {
        if self.regs.fr.is_set(FR::RXFE) {
            None
        } else {
            Some(self.regs.dr.get() as u8)
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        crate::uart::write_text(s, |b| self.write_byte(b))
    }
}

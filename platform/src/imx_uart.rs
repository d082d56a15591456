//! i.MX UART (i.MX6/7/8, Linux `fsl,imx6q-uart`), as far as Septum's guests use it:
//! polled transmit and receive, and the transmitter-ready interrupt (i.MX 8M Plus
//! Applications Processor Reference Manual, IMX8MPRM, chapter "UART"; the registers
//! Linux's `drivers/tty/serial/imx.c` and QEMU's `hw/char/imx_serial.c` drive).
//!
//! The baud rate is left as the firmware (or U-Boot) set it; QEMU ignores it.

use tock_registers::fields::FieldValue;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

/// The device tree `compatible` strings of this UART: the i.MX8M Plus's own, and the
/// i.MX6Q one every later i.MX UART also lists (the one Linux matches).
pub const COMPATIBLE: &[&str] = &["fsl,imx8mp-uart", "fsl,imx6q-uart"];

register_bitfields! {u32,
    pub URXD [
        /// The received character.
        RX_DATA OFFSET(0) NUMBITS(8) []
    ],
    pub UCR1 [
        /// Transmitter ready interrupt enable: asserted while the transmit FIFO is
        /// below its trigger level (UFCR.TXTL).
        TRDYEN OFFSET(13) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    pub UCR2 [
        /// Ignore the RTS pin (no hardware flow control).
        IRTS OFFSET(14) NUMBITS(1) [],
        /// Word size: 1 is 8 data bits.
        WS OFFSET(5) NUMBITS(1) [],
        TXEN OFFSET(2) NUMBITS(1) [],
        RXEN OFFSET(1) NUMBITS(1) [],
        /// Software reset, active low: writing 0 resets the UART, so every write keeps 1.
        SRST OFFSET(0) NUMBITS(1) []
    ],
    pub UCR3 [
        /// RXD muxed input select: must be 1 on i.MX6 and later.
        RXDMUXSEL OFFSET(2) NUMBITS(1) []
    ],
    pub USR2 [
        /// Transmit FIFO empty.
        TXFE OFFSET(14) NUMBITS(1) [],
        /// Transmission complete (FIFO and shift register empty).
        TXDC OFFSET(3) NUMBITS(1) [],
        /// Receive data ready: at least one character in the receive FIFO.
        RDR OFFSET(0) NUMBITS(1) []
    ],
    pub UTS [
        RXEMPTY OFFSET(5) NUMBITS(1) [],
        TXFULL OFFSET(4) NUMBITS(1) []
    ]
}

register_structs! {
    /// i.MX UART registers (IMX8MPRM, UART memory map).
    pub ImxUartRegs {
        (0x00 => urxd: ReadOnly<u32, URXD::Register>),
        (0x04 => _reserved0),
        (0x40 => utxd: WriteOnly<u32>),
        (0x44 => _reserved1),
        (0x80 => ucr1: ReadWrite<u32, UCR1::Register>),
        (0x84 => ucr2: ReadWrite<u32, UCR2::Register>),
        (0x88 => ucr3: ReadWrite<u32, UCR3::Register>),
        (0x8c => ucr4: ReadWrite<u32>),
        (0x90 => ufcr: ReadWrite<u32>),
        (0x94 => usr1: ReadWrite<u32>),
        (0x98 => usr2: ReadWrite<u32, USR2::Register>),
        (0x9c => _reserved2),
        (0xb4 => uts: ReadWrite<u32, UTS::Register>),
        (0xb8 => @END),
    }
}

/// UCR2 as [`ImxUart::new`] writes it: 8 data bits, no parity, one stop bit, receiver
/// and transmitter on, RTS ignored, out of reset.
fn ucr2_enabled() -> FieldValue<u32, UCR2::Register> {
    UCR2::SRST::SET + UCR2::RXEN::SET + UCR2::TXEN::SET + UCR2::WS::SET + UCR2::IRTS::SET
}

/// An i.MX UART at a fixed address.
pub struct ImxUart {
    regs: &'static ImxUartRegs,
}

impl ImxUart {
    /// Enables the UART, receiver and transmitter (8N1, no flow control), with its
    /// interrupts off; the baud rate stays as it was.
    ///
    /// # Safety
    /// `base` must be the address of an i.MX UART's registers, mapped as device memory
    /// for the caller's lifetime, and no one else may drive the same UART.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` is a mapped i.MX UART register block that
        // lives forever and that this is the only driver of it.
        let regs = unsafe { &*(base as *const ImxUartRegs) };
        regs.ucr1.write(UCR1::UARTEN::SET);
        regs.ucr2.write(ucr2_enabled());
        regs.ucr3.modify(UCR3::RXDMUXSEL::SET);
        Self { regs }
    }

    pub fn write_byte(&self, b: u8) {
        while self.regs.uts.is_set(UTS::TXFULL) {
            core::hint::spin_loop();
        }
        self.regs.utxd.set(u32::from(b));
    }

    /// Raises the UART's interrupt while the transmitter can take more (UCR1.TRDYEN):
    /// since it always can here, at once. [`ImxUart::quiet`] masks it again.
    pub fn interrupt_when_writable(&self) {
        self.regs.ucr1.modify(UCR1::TRDYEN::SET);
    }

    /// Masks the transmitter-ready interrupt (its status, USR1.TRDY, follows the FIFO
    /// level and needs no clearing).
    pub fn quiet(&self) {
        self.regs.ucr1.modify(UCR1::TRDYEN::CLEAR);
    }

    pub fn read_byte(&self) -> Option<u8> {
        if self.regs.usr2.is_set(USR2::RDR) {
            Some(self.regs.urxd.read(URXD::RX_DATA) as u8)
        } else {
            None
        }
    }
}

impl core::fmt::Write for ImxUart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        crate::uart::write_text(s, |b| self.write_byte(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    /// The register map Linux's `imx.c` and QEMU's `imx_serial.c` use (`IMX21_UTS` for
    /// every i.MX after the i.MX1).
    #[test]
    fn registers_are_where_linux_and_qemu_put_them() {
        assert_eq!(offset_of!(ImxUartRegs, urxd), 0x00);
        assert_eq!(offset_of!(ImxUartRegs, utxd), 0x40);
        assert_eq!(offset_of!(ImxUartRegs, ucr1), 0x80);
        assert_eq!(offset_of!(ImxUartRegs, ucr2), 0x84);
        assert_eq!(offset_of!(ImxUartRegs, ucr3), 0x88);
        assert_eq!(offset_of!(ImxUartRegs, ucr4), 0x8c);
        assert_eq!(offset_of!(ImxUartRegs, ufcr), 0x90);
        assert_eq!(offset_of!(ImxUartRegs, usr1), 0x94);
        assert_eq!(offset_of!(ImxUartRegs, usr2), 0x98);
        assert_eq!(offset_of!(ImxUartRegs, uts), 0xb4);
    }

    /// The bits as Linux's `imx.c` defines them.
    #[test]
    fn bits_are_where_linux_puts_them() {
        assert_eq!(UCR1::UARTEN::SET.value, 1 << 0);
        assert_eq!(UCR1::TRDYEN::SET.value, 1 << 13);
        assert_eq!(UCR3::RXDMUXSEL::SET.value, 1 << 2);
        assert_eq!(USR2::RDR::SET.value, 1 << 0);
        assert_eq!(USR2::TXDC::SET.value, 1 << 3);
        assert_eq!(USR2::TXFE::SET.value, 1 << 14);
        assert_eq!(UTS::TXFULL::SET.value, 1 << 4);
        assert_eq!(UTS::RXEMPTY::SET.value, 1 << 5);
        assert_eq!(URXD::RX_DATA.read(0xc041), 0x41, "status bits above the character are dropped");
    }

    /// Enabling never resets the UART (SRST is active low) and selects 8 data bits.
    #[test]
    fn enabling_keeps_it_out_of_reset_with_eight_data_bits() {
        let ucr2 = ucr2_enabled().value;
        assert_eq!(ucr2, 0x4027, "IRTS | WS | TXEN | RXEN | SRST");
        assert!(UCR2::SRST.is_set(ucr2));
        assert!(UCR2::WS.is_set(ucr2));
    }
}

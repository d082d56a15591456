//! The BCM2835/BCM2711 mini UART (the AUX block's UART, Linux `brcm,bcm2835-aux-uart`),
//! as far as Septum's guests use it: polled transmit and receive, and the transmit
//! interrupt (BCM2711 ARM Peripherals, section 2.2; the registers QEMU's
//! `hw/char/bcm2835_aux.c` models and Linux's `8250_bcm2835aux.c` drives as a 16550
//! with `reg-shift` 2).
//!
//! Its device tree node's `reg` is the mini UART's first register (`AUX_MU_IO_REG`,
//! [`MINI_UART_OFFSET`] into the AUX block); the AUX block's enable register is in the
//! same 4 KiB page, before it. The baud rate is left as the firmware set it (it derives
//! from the VideoCore clock); QEMU ignores it.

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

/// The device tree `compatible` string of the mini UART.
pub const COMPATIBLE: &[&str] = &["brcm,bcm2835-aux-uart"];

register_bitfields! {u32,
    /// AUX_ENABLES: which of the AUX block's peripherals (mini UART, SPI1, SPI2) run.
    pub ENABLES [
        MINI_UART OFFSET(0) NUMBITS(1) []
    ],
    pub IO [
        DATA OFFSET(0) NUMBITS(8) []
    ],
    /// Interrupt enables, laid out as a 16550's IER (the BCM2835 datasheet's description
    /// has the two swapped; its errata, Linux and QEMU 10 agree on this order).
    pub IER [
        /// Transmit: asserted while the transmit FIFO is empty.
        TX OFFSET(1) NUMBITS(1) [],
        /// Receive: asserted while the receive FIFO holds a byte.
        RX OFFSET(0) NUMBITS(1) []
    ],
    pub LCR [
        /// DLAB: IO and IER reach the baud rate register instead. Kept 0.
        DLAB OFFSET(7) NUMBITS(1) [],
        DATA_SIZE OFFSET(0) NUMBITS(2) [
            SevenBit = 0,
            EightBit = 3
        ]
    ],
    pub LSR [
        /// The transmit FIFO can accept at least one byte.
        TX_EMPTY OFFSET(5) NUMBITS(1) [],
        /// The receive FIFO holds at least one byte.
        DATA_READY OFFSET(0) NUMBITS(1) []
    ],
    pub CNTL [
        TX_ENABLE OFFSET(1) NUMBITS(1) [],
        RX_ENABLE OFFSET(0) NUMBITS(1) []
    ]
}

register_structs! {
    /// The mini UART's registers, from `AUX_MU_IO_REG` (what its device tree node's
    /// `reg` names) to the end of its window in the AUX block.
    pub MiniUartRegs {
        (0x00 => io: ReadWrite<u32, IO::Register>),
        (0x04 => ier: ReadWrite<u32, IER::Register>),
        (0x08 => iir: ReadWrite<u32>),
        (0x0c => lcr: ReadWrite<u32, LCR::Register>),
        (0x10 => mcr: ReadWrite<u32>),
        (0x14 => lsr: ReadOnly<u32, LSR::Register>),
        (0x18 => msr: ReadOnly<u32>),
        (0x1c => scratch: ReadWrite<u32>),
        (0x20 => cntl: ReadWrite<u32, CNTL::Register>),
        (0x24 => stat: ReadOnly<u32>),
        (0x28 => baud: ReadWrite<u32>),
        (0x2c => _reserved0),
        (0x40 => @END),
    }
}

register_structs! {
    /// The AUX block up to the end of the mini UART (SPI1 and SPI2 follow it).
    pub AuxRegs {
        (0x00 => irq: ReadOnly<u32>),
        (0x04 => enables: ReadWrite<u32, ENABLES::Register>),
        (0x08 => _reserved0),
        (0x40 => mini_uart: MiniUartRegs),
        (0x80 => @END),
    }
}

/// Where the mini UART's registers are in the AUX block.
pub const MINI_UART_OFFSET: usize = core::mem::offset_of!(AuxRegs, mini_uart);
/// Bytes of the mini UART's window (its device tree `reg` size).
pub const MINI_UART_SIZE: usize = core::mem::size_of::<MiniUartRegs>();

/// A mini UART at a fixed address.
pub struct MiniUart {
    aux: &'static AuxRegs,
}

impl MiniUart {
    /// Enables the mini UART in the AUX block and its receiver and transmitter (8 data
    /// bits, no flow control), with its interrupts off; the baud rate stays as it was.
    ///
    /// # Safety
    /// `base` must be the address of a mini UART's registers (`AUX_MU_IO_REG`, as its
    /// device tree node's `reg` says), and the AUX block they are in, from
    /// [`MINI_UART_OFFSET`] bytes before `base` to the end of the mini UART, must be
    /// mapped as device memory for the caller's lifetime. No one else may drive the
    /// mini UART or write `AUX_ENABLES`.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees the AUX block from `base - MINI_UART_OFFSET`
        // through the mini UART is mapped register memory that lives forever, and that
        // this is the only driver of the mini UART and of AUX_ENABLES.
        let aux = unsafe { &*((base - MINI_UART_OFFSET) as *const AuxRegs) };
        // Read-modify-write: SPI1 and SPI2 keep their enables.
        aux.enables.modify(ENABLES::MINI_UART::SET);
        let mu = &aux.mini_uart;
        mu.ier.set(0);
        mu.lcr.write(LCR::DATA_SIZE::EightBit + LCR::DLAB::CLEAR);
        mu.cntl.write(CNTL::RX_ENABLE::SET + CNTL::TX_ENABLE::SET);
        Self { aux }
    }

    pub fn write_byte(&self, b: u8) {
        let mu = &self.aux.mini_uart;
        while !mu.lsr.is_set(LSR::TX_EMPTY) {
            core::hint::spin_loop();
        }
        mu.io.write(IO::DATA.val(u32::from(b)));
    }

    /// Raises the UART's interrupt while the transmit FIFO is empty (IER bit 1): since
    /// it is here, at once. [`MiniUart::quiet`] masks it again.
    pub fn interrupt_when_writable(&self) {
        self.aux.mini_uart.ier.modify(IER::TX::SET);
    }

    /// Masks the transmit interrupt (a level, which drops with its enable).
    pub fn quiet(&self) {
        self.aux.mini_uart.ier.modify(IER::TX::CLEAR);
    }

    pub fn read_byte(&self) -> Option<u8> {
        let mu = &self.aux.mini_uart;
        if mu.lsr.is_set(LSR::DATA_READY) {
            Some(mu.io.read(IO::DATA) as u8)
        } else {
            None
        }
    }
}

impl core::fmt::Write for MiniUart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        crate::uart::write_text(s, |b| self.write_byte(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    /// The AUX block as QEMU's `bcm2835_aux.c` maps it: `AUX_ENABLES` at 0x04, the mini
    /// UART from `AUX_MU_IO_REG` at 0x40, in a 0x40-byte window (Linux's `reg` size).
    #[test]
    fn the_mini_uart_is_where_qemu_puts_it_in_the_aux_block() {
        assert_eq!(offset_of!(AuxRegs, enables), 0x04);
        assert_eq!(MINI_UART_OFFSET, 0x40);
        assert_eq!(MINI_UART_SIZE, 0x40);
        assert_eq!(MINI_UART_OFFSET - offset_of!(AuxRegs, enables), 0x3c, "AUX_ENABLES from the node's reg");
        assert_eq!(MINI_UART_OFFSET + offset_of!(MiniUartRegs, baud), 0x68, "AUX_MU_BAUD_REG");
    }

    /// Linux drives the mini UART as a 16550 with `reg-shift` 2: its first eight
    /// registers must be the 16550's, one per word.
    #[test]
    fn its_first_registers_are_a_16550s_one_per_word() {
        // 16550 register numbers: RBR/THR, IER, IIR, LCR, MCR, LSR, MSR, SCR.
        let offsets = [
            offset_of!(MiniUartRegs, io),
            offset_of!(MiniUartRegs, ier),
            offset_of!(MiniUartRegs, iir),
            offset_of!(MiniUartRegs, lcr),
            offset_of!(MiniUartRegs, mcr),
            offset_of!(MiniUartRegs, lsr),
            offset_of!(MiniUartRegs, msr),
            offset_of!(MiniUartRegs, scratch),
        ];
        for (n, offset) in offsets.into_iter().enumerate() {
            assert_eq!(offset, n << 2, "16550 register {n}");
        }
        assert_eq!(offset_of!(MiniUartRegs, cntl), 0x20);
        assert_eq!(offset_of!(MiniUartRegs, stat), 0x24);
    }

    /// The bits as a 16550's (Linux `serial_reg.h`) and QEMU's `bcm2835_aux.c` define them.
    #[test]
    fn bits_are_a_16550s() {
        assert_eq!(IER::RX::SET.value, 0x1, "UART_IER_RDI");
        assert_eq!(IER::TX::SET.value, 0x2, "UART_IER_THRI");
        assert_eq!(LSR::DATA_READY::SET.value, 0x01, "UART_LSR_DR");
        assert_eq!(LSR::TX_EMPTY::SET.value, 0x20, "UART_LSR_THRE");
        assert_eq!(LCR::DATA_SIZE::EightBit.value, 3, "8 data bits");
        assert_eq!(LCR::DLAB::SET.value, 0x80, "UART_LCR_DLAB");
        assert_eq!((CNTL::RX_ENABLE::SET + CNTL::TX_ENABLE::SET).value, 0x3);
        assert_eq!(ENABLES::MINI_UART::SET.value, 0x1);
    }
}

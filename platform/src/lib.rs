//! Board support. Each board module says what the board has (RAM, cores, the devices a
//! system description may name, the memory the hypervisor keeps) and how its console
//! and bring-up work. xtask reads the catalogue to validate a system description; the
//! hypervisor uses the same constants and checks them against the board's DTB at boot.
//!
//! The hardware-facing `unsafe` of this crate is in the UART drivers [`pl011`],
//! [`imx_uart`] and [`bcm2835_aux`], in [`gicv2`], [`gicv3`] and [`smmuv3`] (MMIO all), and in
//! [`semihosting`] (the `HLT #0xF000` debug call); nothing else here touches hardware.
#![no_std]

pub mod bcm2835_aux;
pub mod catalog;
pub mod gicv2;
pub mod gicv3;
pub mod imx8mp_evk;
pub mod imx_uart;
pub mod pl011;
pub mod qemu_virt;
pub mod rpi4;
#[cfg(target_arch = "aarch64")]
pub mod semihosting;
pub mod smmuv3;
pub mod uart;

pub use catalog::{Board, DeviceInfo, Gic, HypervisorConsole};

//! Raspberry Pi 4 Model B (BCM2711: 4× Cortex-A72, GIC-400) and QEMU 10's `raspi4b`.
//!
//! Addresses are the ARM view ("low peripheral" mode, the firmware's default), from
//! Debian's `bcm2711-rpi-4-b.dtb` translated through `/soc`'s `ranges`, and checked
//! against QEMU's model. The firmware (and QEMU given an arm64 `Image`) enters the
//! hypervisor at EL2 on core 0; cores 1–3 wait on the spin table in page 0, whose
//! release words the DTB names (`cpu-release-addr`).
#![forbid(unsafe_code)]

use crate::catalog::{Board, DeviceInfo, Dma, Gic, GicVersion, HypervisorConsole, KeptDevice};
use septum_abi::config::{BoardId, Range};

const MIB: u64 = 1 << 20;
/// The first RAM range the firmware reports (QEMU: 960 MiB; a real board's firmware
/// reports a little less, below the VideoCore's memory, and more above 1 GiB).
pub const RAM_SIZE: u64 = 0x3C00_0000;
/// Linked 2 MiB into RAM (arm64 `Image` text_offset 0x20_0000); page 0 holds the
/// spin table. On a real board `config.txt` says `kernel_address=0x200000`.
pub const HYPERVISOR_BASE: u64 = 2 * MIB;
/// QEMU's `-initrd` lands at RAM + 128 MiB, the DTB right after it.
pub const STAGING_BASE: u64 = 128 * MIB;

/// PL011 UART0 (`serial@7e201000`). Its 4 KiB page also holds UART2–5 on a real
/// BCM2711, so whoever owns UART0 owns those too.
pub const UART0: u64 = 0xFE20_1000;
/// The AUX block (`aux@7e215000`): the mini UART's registers start at +0x40; the page
/// also holds the AUX enables and SPI1/SPI2.
pub const AUX: u64 = 0xFE21_5000;
/// GIC-400 (`interrupt-controller@40041000`): distributor, CPU interface, hypervisor
/// control and virtual CPU interface frames.
pub const GIC_BASE: u64 = 0xFF84_0000;
pub const GICD: u64 = GIC_BASE + 0x1000;
pub const GICC: u64 = GIC_BASE + 0x2000;
pub const GICH: u64 = GIC_BASE + 0x4000;
pub const GICV: u64 = GIC_BASE + 0x6000;

pub static BOARD: Board = Board {
    id: BoardId::Rpi4,
    name: "rpi4",
    ram: &[Range::new(0, RAM_SIZE)],
    cpus: &[0, 1, 2, 3],
    devices: &[
        DeviceInfo {
            name: "uart0",
            base: UART0,
            size: 0x1000,
            irqs: &[32 + 121],
            compatible: &["arm,pl011", "arm,primecell"],
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "miniuart",
            base: AUX,
            size: 0x1000,
            irqs: &[32 + 93],
            compatible: &["brcm,bcm2835-aux-uart"],
            ..DeviceInfo::PLAIN
        },
        // Bus masters: the BCM2711 has no IOMMU, so each is given only with the
        // description's `dma = "unprotected"` (DMA-002; docs/boards.md).
        DeviceInfo {
            name: "genet",
            base: 0xFD58_0000,
            size: 0x1_0000,
            irqs: &[32 + 157, 32 + 158],
            compatible: &["brcm,bcm2711-genet-v5"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "emmc2",
            base: 0xFE34_0000,
            size: 0x1000,
            irqs: &[32 + 126],
            compatible: &["brcm,bcm2711-emmc2"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "usb-otg",
            base: 0xFE98_0000,
            size: 0x1_0000,
            irqs: &[32 + 73],
            compatible: &["brcm,bcm2835-usb"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "pcie",
            base: 0xFD50_0000,
            size: 0xA000,
            irqs: &[32 + 147, 32 + 148],
            compatible: &["brcm,bcm2711-pcie"],
            windows: &[Range::new(0x6_0000_0000, 0x4000_0000)],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
    ],
    hypervisor_devices: &[Range::new(GIC_BASE, 0x8000)],
    // Bus masters no partition is meant to drive (there is no IOMMU) and the firmware's
    // mailbox, at the ARM's addresses of Debian's DTB nodes (`/soc`, `/v3dbus`); the bus
    // masters a partition may be given with the opt-out are `devices`. The display
    // pipeline (HVS, pixel valves) also reads RAM; it is in no system and not listed.
    kept_devices: &[
        KeptDevice::new(
            "gic",
            GIC_BASE,
            0x8000,
            "the GIC-400 (distributor, CPU, hypervisor and virtual CPU interfaces), which it drives",
        ),
        KeptDevice::new(
            "dma",
            0xFE00_7000,
            0x1000,
            "the DMA controllers (legacy and DMA4): they copy between any addresses",
        ),
        KeptDevice::new(
            "mailbox",
            0xFE00_B000,
            0x1000,
            "the VideoCore firmware's mailboxes: the firmware reads and writes the RAM a request names",
        ),
        KeptDevice::new(
            "sdhci",
            0xFE30_0000,
            0x1000,
            "the Wi-Fi's SDIO host controller (SDHCI with ADMA): a bus master",
        ),
        KeptDevice::new("v3d", 0xFEC0_0000, 0x8000, "the V3D GPU: a bus master"),
    ],
    reserved: &[Range::new(0, 64 * MIB), Range::new(STAGING_BASE, 128 * MIB)],
    // Debian's DTB: `/memreserve/` 0..0x1000 (the ARM stub and spin table), inside
    // `reserved`; `/reserved-memory` has a CMA pool placed by Linux (no `reg`) and an
    // empty, disabled `nvram`.
    firmware_reserved: &[],
    hypervisor_base: HYPERVISOR_BASE,
    default_bundle: STAGING_BASE,
    // An ELF boot (QEMU, all cores at EL3) gets no DTB in x0: xtask loads one here.
    default_dtb: 0x0300_0000,
    console: HypervisorConsole::Semihosting,
    storage: None,
    gic: Gic {
        version: GicVersion::V2,
        distributor: GICD,
        redistributors: 0,
        redistributor_frames: 0,
        cpu_interface: GICC,
        hyp_interface: GICH,
        vcpu_interface: GICV,
    },
    iommu: None,
    dt_compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
    qemu_virq_unwired: false,
};

//! NXP i.MX 8M Plus EVK (4× Cortex-A53, GICv3) and QEMU 10's `imx8mp-evk`.
//!
//! Addresses from Debian's `freescale/imx8mp-evk.dtb`, checked against QEMU's model.
//! TF-A (and QEMU given an arm64 `Image`) enters the hypervisor at EL2 on core 0 and
//! starts the others with PSCI `CPU_ON` over SMC.
#![forbid(unsafe_code)]

use crate::catalog::{Board, DeviceInfo, Dma, Gic, GicVersion, HypervisorConsole, KeptDevice};
use septum_abi::config::{BoardId, Range};

const MIB: u64 = 1 << 20;
pub const RAM_BASE: u64 = 0x4000_0000;
/// The EVK has 6 GiB; QEMU is run with 2 GiB. Systems may use the first 2 GiB.
pub const RAM_SIZE: u64 = 2048 * MIB;
pub const HYPERVISOR_BASE: u64 = RAM_BASE + 2 * MIB;
/// QEMU's `-initrd` lands at RAM + 128 MiB (with at least 256 MiB of RAM), the DTB
/// right after it.
pub const STAGING_BASE: u64 = RAM_BASE + 128 * MIB;

pub const UART1: u64 = 0x3086_0000;
pub const UART2: u64 = 0x3089_0000;
pub const GICD: u64 = 0x3880_0000;
pub const GICR: u64 = 0x3888_0000;

pub static BOARD: Board = Board {
    id: BoardId::Imx8mpEvk,
    name: "imx8mp-evk",
    ram: &[Range::new(RAM_BASE, RAM_SIZE)],
    cpus: &[0, 1, 2, 3],
    devices: &[
        DeviceInfo {
            name: "uart1",
            base: UART1,
            size: 0x1_0000,
            irqs: &[32 + 26],
            compatible: &["fsl,imx8mp-uart", "fsl,imx6q-uart"],
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "uart2",
            base: UART2,
            size: 0x1_0000,
            irqs: &[32 + 27],
            compatible: &["fsl,imx8mp-uart", "fsl,imx6q-uart"],
            ..DeviceInfo::PLAIN
        },
        // Bus masters: no SMMU is in front of the application cores' masters, so each is
        // given only with the description's `dma = "unprotected"` (DMA-002;
        // docs/boards.md).
        DeviceInfo {
            name: "fec",
            base: 0x30BE_0000,
            size: 0x1_0000,
            irqs: &[32 + 118, 32 + 119, 32 + 120, 32 + 121],
            compatible: &["fsl,imx8mp-fec", "fsl,imx8mq-fec", "fsl,imx6sx-fec"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "eqos",
            base: 0x30BF_0000,
            size: 0x1_0000,
            irqs: &[32 + 135, 32 + 134],
            compatible: &["nxp,imx8mp-dwmac-eqos", "snps,dwmac-5.10a"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "usdhc2",
            base: 0x30B5_0000,
            size: 0x1_0000,
            irqs: &[32 + 23],
            compatible: &["fsl,imx8mm-usdhc", "fsl,imx7d-usdhc"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "usdhc3",
            base: 0x30B6_0000,
            size: 0x1_0000,
            irqs: &[32 + 24],
            compatible: &["fsl,imx8mm-usdhc", "fsl,imx7d-usdhc"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "usb1",
            base: 0x3810_0000,
            size: 0x1_0000,
            irqs: &[32 + 40],
            compatible: &["snps,dwc3"],
            dma: Dma::Unprotected,
            ..DeviceInfo::PLAIN
        },
    ],
    hypervisor_devices: &[Range::new(GICD, 0x1_0000), Range::new(GICR, 0x8_0000)],
    // Bus masters (the i.MX 8M Plus has no IOMMU), from Debian's DTB: DMA engine, crypto
    // engine, network, SD, USB, PCIe, GPUs, the audio DSP.
    kept_devices: &[
        KeptDevice::new("gicd", GICD, 0x1_0000, "the GICv3 distributor, which it drives"),
        KeptDevice::new("gicr", GICR, 0x8_0000, "the GICv3 redistributors, which it drives"),
        KeptDevice::new("sdma1", 0x30BD_0000, 0x1_0000, "the SDMA engine: it copies between any addresses"),
        KeptDevice::new("caam", 0x3090_0000, 0x4_0000, "the crypto engine (CAAM, job rings): a bus master"),
        KeptDevice::new("usdhc1", 0x30B4_0000, 0x1_0000, "an SD/eMMC host controller (ADMA): a bus master"),
        KeptDevice::new("usb2", 0x3820_0000, 0x1_0000, "a USB controller (DWC3): a bus master"),
        KeptDevice::new("pcie", 0x3380_0000, 0x40_0000, "the PCIe controller: its devices are bus masters"),
        KeptDevice::new("pcie-window", 0x1800_0000, 0x800_0000, "the PCIe memory, I/O and configuration windows"),
        KeptDevice::new("gpu", 0x3800_0000, 0x1_0000, "the 3D and 2D GPUs: bus masters"),
        KeptDevice::new("dsp", 0x3B6E_8000, 0x8_8000, "the audio DSP: it runs its own code and reaches RAM"),
    ],
    reserved: &[Range::new(RAM_BASE, 64 * MIB), Range::new(STAGING_BASE, 128 * MIB)],
    // Debian's DTB: `/reserved-memory/dsp@92400000` (no-map), the audio DSP's.
    firmware_reserved: &[Range::new(0x9240_0000, 0x200_0000)],
    hypervisor_base: HYPERVISOR_BASE,
    default_bundle: STAGING_BASE,
    default_dtb: RAM_BASE,
    console: HypervisorConsole::Semihosting,
    storage: None,
    gic: Gic {
        version: GicVersion::V3,
        distributor: GICD,
        redistributors: GICR,
        redistributor_frames: 4,
        cpu_interface: 0,
        hyp_interface: 0,
        vcpu_interface: 0,
    },
    iommu: None,
    dt_compatible: &["fsl,imx8mp-evk", "fsl,imx8mp"],
    qemu_virq_unwired: true,
};

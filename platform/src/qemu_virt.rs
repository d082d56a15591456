//! QEMU `virt` (`-M virt,virtualization=on,gic-version=3 -cpu cortex-a72 -smp 4 -m 1G`).
//! Addresses from QEMU 10's `hw/arm/virt.c` memory map, checked against its DTB.
#![forbid(unsafe_code)]

use crate::catalog::{Board, DeviceInfo, Dma, Gic, GicVersion, HypervisorConsole, Iommu, KeptDevice, Storage, Streams};
use septum_abi::config::{BoardId, Range};

const MIB: u64 = 1 << 20;
pub const RAM_BASE: u64 = 0x4000_0000;
pub const RAM_SIZE: u64 = 1024 * MIB;
/// Linked 2 MiB into RAM (arm64 `Image` text_offset 0x20_0000): QEMU's boot stub and,
/// for ELF boots, the board DTB occupy the first pages of RAM.
pub const HYPERVISOR_BASE: u64 = RAM_BASE + 2 * MIB;
/// QEMU's `-initrd` lands at RAM + 128 MiB, the DTB right after it; ELF boots load the
/// bundle here with `-device loader`.
pub const STAGING_BASE: u64 = RAM_BASE + 128 * MIB;

pub const UART0: u64 = 0x0900_0000;
pub const GICD: u64 = 0x0800_0000;
/// GICv3 redistributors (`VIRT_GIC_REDIST`), 128 KiB per core.
pub const GICR: u64 = 0x080A_0000;
/// The second pflash bank (`-drive if=pflash,unit=1`): non-secure even with
/// `secure=on`, 64 MiB of 256 KiB erase blocks (QEMU `virt_flash_create1`).
pub const FLASH1: u64 = 0x0400_0000;
pub const FLASH1_SIZE: u64 = 64 * MIB;

/// The SMMUv3 QEMU adds with `-M virt,iommu=smmuv3` (xtask always does), in front of
/// the PCIe host bridge: `VIRT_SMMU` and its four SPIs (event queue, PRI queue, CMD_SYNC,
/// global error).
pub const SMMU: u64 = 0x0905_0000;
pub const SMMU_SIZE: u64 = 0x2_0000;
/// The PCIe host bridge (`pci-host-ecam-generic`): its configuration space (the high
/// ECAM, 256 buses), 32-bit memory window and I/O window, and its INTx lines (SPIs 3..6).
pub const PCIE_ECAM: u64 = 0x40_1000_0000;
pub const PCIE_MMIO: u64 = 0x1000_0000;
pub const PCIE_MMIO_SIZE: u64 = 0x2EFF_0000;
pub const PCIE_IO: u64 = 0x3EFF_0000;

/// Devices no partition may have, whatever the GIC version (QEMU 10's `hw/arm/virt.c`
/// memory map; checked against its DTBs, `hypervisor/core/tests/qemu-virt*.dtb`).
/// The PCIe host bridge is an assignable device behind the SMMU (`devices`); its 64-bit
/// memory window lies above the 39-bit guest-physical space Septum gives partitions,
/// and the low ECAM is unused while the high one is (QEMU's `highmem`).
const KEPT_WHATEVER_THE_GIC: [KeptDevice; 8] = {
    [
        KeptDevice::new("flash1", FLASH1, FLASH1_SIZE, "its flash bank (anti-rollback counters, audit log)"),
        KeptDevice::new(
            "flash0",
            0,
            64 * MIB,
            "the first flash bank: boot firmware (the secure world's with secure=on)",
        ),
        KeptDevice::new(
            "fw-cfg",
            0x0902_0000,
            0x1000,
            "QEMU's firmware configuration interface, whose DMA interface writes anywhere in RAM",
        ),
        KeptDevice::new(
            "smmu",
            SMMU,
            SMMU_SIZE,
            "the SMMUv3 (`iommu=smmuv3`): whoever programs it decides what every bus master reaches",
        )
        .raising(&[32 + 74, 32 + 75, 32 + 76, 32 + 77]),
        // 32 transports of 0x200 bytes, SPIs 16..47.
        KeptDevice::new(
            "virtio-mmio",
            0x0A00_0000,
            0x4000,
            "virtio-mmio transports: bus masters with no IOMMU in front, they read and write any RAM",
        )
        .raising(&[
            48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74,
            75, 76, 77, 78, 79,
        ]),
        KeptDevice::new(
            "platform-bus",
            0x0C00_0000,
            0x0200_0000,
            "QEMU's dynamic platform bus: what `-device` adds there may be a bus master",
        ),
        KeptDevice::new(
            "pcie-ecam-low",
            0x3F00_0000,
            0x100_0000,
            "the PCIe host bridge's low configuration window, which QEMU leaves unused with highmem",
        ),
        KeptDevice::new(
            "pcie-mmio-high",
            0x80_0000_0000,
            0x80_0000_0000,
            "the PCIe host bridge's 64-bit memory window, beyond the 39-bit guest-physical space",
        ),
    ]
};

/// A GIC version's kept frames, then [`KEPT_WHATEVER_THE_GIC`].
const fn kept<const G: usize, const N: usize>(gic: [KeptDevice; G]) -> [KeptDevice; N] {
    assert!(G + KEPT_WHATEVER_THE_GIC.len() == N);
    let mut out = [KEPT_WHATEVER_THE_GIC[0]; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < G { gic[i] } else { KEPT_WHATEVER_THE_GIC[i - G] };
        i += 1;
    }
    out
}

const KEPT_GICV3: [KeptDevice; 11] = kept([
    KeptDevice::new("gicd", GICD, 0x1_0000, "the GICv3 distributor, which it drives"),
    KeptDevice::new("gic-its", 0x0808_0000, 0x2_0000, "the GICv3 ITS: device writes to it raise any LPI"),
    KeptDevice::new("gicr", GICR, 0xF6_0000, "the GICv3 redistributors, which it drives"),
]);

pub static BOARD: Board = Board {
    id: BoardId::QemuVirt,
    name: "qemu-virt",
    ram: &[Range::new(RAM_BASE, RAM_SIZE)],
    cpus: &[0, 1, 2, 3],
    devices: &[
        DeviceInfo {
            name: "uart0",
            base: UART0,
            size: 0x1000,
            irqs: &[33],
            compatible: &["arm,pl011", "arm,primecell"],
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "uart1",
            base: 0x0904_0000,
            size: 0x1000,
            irqs: &[40],
            compatible: &["arm,pl011", "arm,primecell"],
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "rtc",
            base: 0x0901_0000,
            size: 0x1000,
            irqs: &[34],
            compatible: &["arm,pl031", "arm,primecell"],
            ..DeviceInfo::PLAIN
        },
        DeviceInfo {
            name: "pcie",
            base: PCIE_ECAM,
            size: 0x1000_0000,
            irqs: &[32 + 3, 32 + 4, 32 + 5, 32 + 6],
            compatible: &["pci-host-ecam-generic"],
            windows: &[Range::new(PCIE_MMIO, PCIE_MMIO_SIZE), Range::new(PCIE_IO, 0x1_0000)],
            // Bus 0's requester IDs (the SMMU's stream table covers one bus).
            dma: Dma::Iommu { streams: Streams { first: 0, count: 256 } },
            pci_ecam: true,
        },
        DeviceInfo {
            name: "gpio",
            base: 0x0903_0000,
            size: 0x1000,
            irqs: &[39],
            compatible: &["arm,pl061", "arm,primecell"],
            ..DeviceInfo::PLAIN
        },
    ],
    // GICv3 distributor, ITS and redistributors; the hypervisor's flash bank; the SMMU.
    hypervisor_devices: &[
        Range::new(SMMU, SMMU_SIZE),
        Range::new(FLASH1, FLASH1_SIZE),
        Range::new(GICD, 0x10000),
        Range::new(0x0808_0000, 0x20000),
        Range::new(0x080A_0000, 0xF6_0000),
    ],
    kept_devices: &KEPT_GICV3,
    reserved: &[Range::new(RAM_BASE, 64 * MIB), Range::new(STAGING_BASE, 128 * MIB)],
    // QEMU's DTB has neither `/memreserve/` nor `/reserved-memory`.
    firmware_reserved: &[],
    hypervisor_base: HYPERVISOR_BASE,
    default_bundle: STAGING_BASE,
    default_dtb: RAM_BASE,
    console: HypervisorConsole::Semihosting,
    storage: Some(Storage { base: FLASH1, size: FLASH1_SIZE, block_size: 256 * 1024 }),
    gic: Gic {
        version: GicVersion::V3,
        distributor: GICD,
        redistributors: GICR,
        redistributor_frames: 8,
        cpu_interface: 0,
        hyp_interface: 0,
        vcpu_interface: 0,
    },
    iommu: Some(Iommu {
        base: SMMU,
        size: SMMU_SIZE,
        event_irq: 32 + 74,
        gerror_irq: 32 + 77,
        compatible: "arm,smmu-v3",
    }),
    dt_compatible: &["linux,dummy-virt"],
    qemu_virq_unwired: false,
};

/// GICv2 (`VIRT_GIC_CPU`, `VIRT_GIC_HYP`, `VIRT_GIC_VCPU` in QEMU's map).
pub const GICC: u64 = 0x0801_0000;
pub const GICH: u64 = 0x0803_0000;
pub const GICV: u64 = 0x0804_0000;

const KEPT_GICV2: [KeptDevice; 13] = kept([
    KeptDevice::new("gicd", GICD, 0x1_0000, "the GICv2 distributor, which it drives"),
    KeptDevice::new("gicc", GICC, 0x1_0000, "the GICv2 CPU interface, which it drives"),
    KeptDevice::new("gic-v2m", 0x0802_0000, 0x1000, "the GICv2m MSI frame: writes to it raise SPIs"),
    KeptDevice::new("gich", GICH, 0x1_0000, "the GICv2 hypervisor control interface, which it drives"),
    KeptDevice::new(
        "gicv",
        GICV,
        0x1_0000,
        "the GICv2 virtual CPU interface, which it maps for each partition where its CPU interface belongs",
    ),
]);

/// The same machine with `gic-version=2` (QEMU models the virtualization extensions):
/// a GICv2 distributor and CPU interface where GICv3's distributor and ITS would be.
pub static BOARD_GICV2: Board = Board {
    id: BoardId::QemuVirtGicV2,
    name: "qemu-virt-gicv2",
    hypervisor_devices: &[
        Range::new(SMMU, SMMU_SIZE),
        Range::new(FLASH1, FLASH1_SIZE),
        Range::new(GICD, 0x10000),
        Range::new(GICC, 0x10000),
        Range::new(GICH, 0x10000),
        Range::new(GICV, 0x10000),
    ],
    kept_devices: &KEPT_GICV2,
    gic: Gic {
        version: GicVersion::V2,
        distributor: GICD,
        redistributors: 0,
        redistributor_frames: 0,
        cpu_interface: GICC,
        hyp_interface: GICH,
        vcpu_interface: GICV,
    },
    ..BOARD
};

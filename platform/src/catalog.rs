//! The shape of a board description, shared by all boards.
#![forbid(unsafe_code)]

use septum_abi::config::{BoardDevice, BoardFacts, BoardId, DeviceDma, DeviceIrqs, Range};

/// A device a system description can give to a partition, by name.
#[derive(Clone, Copy, Debug)]
pub struct DeviceInfo {
    pub name: &'static str,
    /// Its first window (a PCIe host bridge's: its configuration space, ECAM).
    pub base: u64,
    pub size: u64,
    /// GIC INTIDs (SPIs are 32 + the DTB's number).
    pub irqs: &'static [u32],
    /// The device tree `compatible` list, most specific first.
    pub compatible: &'static [&'static str],
    /// Its further windows, given with it (a PCIe host bridge's memory and I/O windows).
    pub windows: &'static [Range],
    /// Whether it masters the bus, and what contains it (DMA-001).
    pub dma: Dma,
    /// Its first window is a PCIe host bridge's configuration space (ECAM), where the
    /// hypervisor can turn its functions' bus mastering off (DMA-004).
    pub pci_ecam: bool,
}

impl DeviceInfo {
    /// What a device is unless its entry says otherwise: one window, no bus master.
    pub const PLAIN: DeviceInfo = DeviceInfo {
        name: "",
        base: 0,
        size: 0,
        irqs: &[],
        compatible: &[],
        windows: &[],
        dma: Dma::None,
        pci_ecam: false,
    };

    /// Its first window and the others.
    pub fn ranges(&self) -> impl Iterator<Item = Range> + '_ {
        core::iter::once(Range::new(self.base, self.size)).chain(self.windows.iter().copied())
    }

    /// What the validator knows of its DMA on a board where the IOMMU is `iommu_present`.
    pub fn dma_facts(&self, iommu_present: bool) -> DeviceDma {
        match self.dma {
            Dma::None => DeviceDma::None,
            Dma::Iommu { .. } if iommu_present => DeviceDma::Contained,
            Dma::Iommu { .. } | Dma::Unprotected => DeviceDma::Uncontained,
        }
    }
}

/// What a device can do on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dma {
    /// It does not master the bus.
    None,
    /// A bus master whose transactions reach memory through the board's IOMMU
    /// ([`Board::iommu`]), tagged with the stream IDs `streams` (a PCIe host bridge: its
    /// functions' requester IDs).
    Iommu { streams: Streams },
    /// A bus master with nothing in front of it: it reaches any memory.
    Unprotected,
}

/// Stream IDs `first..first + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    pub first: u32,
    pub count: u32,
}

impl Streams {
    pub fn contains(&self, sid: u32) -> bool {
        sid.checked_sub(self.first).is_some_and(|k| k < self.count)
    }
}

/// An Arm SMMUv3 the hypervisor drives (it is also among the kept devices).
#[derive(Clone, Copy, Debug)]
pub struct Iommu {
    pub base: u64,
    pub size: u64,
    /// The event queue's and global error's interrupts (wired SPIs, INTIDs).
    pub event_irq: u32,
    pub gerror_irq: u32,
    /// The board DTB's node for it, present only when the machine has it (QEMU virt:
    /// `iommu=smmuv3`).
    pub compatible: &'static str,
}

/// Where the hypervisor's own log goes on this board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypervisorConsole {
    /// Arm semihosting `SYS_WRITE0` (QEMU: `-semihosting-config enable=on,chardev=...`).
    Semihosting,
}

/// Everything xtask and the hypervisor need to know about one board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    pub id: BoardId,
    pub name: &'static str,
    pub ram: &'static [Range],
    /// MPIDR affinity of each core, indexed by the CPU numbers system descriptions use.
    pub cpus: &'static [u64],
    pub devices: &'static [DeviceInfo],
    /// Device windows the hypervisor drives and maps in its own stage 1 (interrupt
    /// controller, flash bank); each lies in one of the `kept_devices`.
    pub hypervisor_devices: &'static [Range],
    /// Device windows no partition may be given, even in part: those the hypervisor
    /// drives, bus masters with no IOMMU between them and RAM, firmware interfaces. At
    /// boot they are added to what the board's DTB says, as not assignable, whatever
    /// the DTB calls them.
    pub kept_devices: &'static [KeptDevice],
    /// RAM no partition may use: the hypervisor's image, stacks and tables, and where the
    /// bootloader stages the device tree and bundle.
    pub reserved: &'static [Range],
    /// RAM the board's firmware keeps: what its device tree (Debian's, as shipped) lists
    /// in `/memreserve/` and `/reserved-memory`, outside `reserved`. At boot the
    /// hypervisor reads those from the DTB it is given; this list lets xtask refuse the
    /// same at build time.
    pub firmware_reserved: &'static [Range],
    /// Physical address the hypervisor is linked at.
    pub hypervisor_base: u64,
    /// Where the bundle is when the bootloader does not say (ELF boots without `/chosen`).
    pub default_bundle: u64,
    /// Where the board DTB is when `x0` does not point at one (ELF boots).
    pub default_dtb: u64,
    pub console: HypervisorConsole,
    /// Persistent storage only the hypervisor uses (anti-rollback counters, audit log);
    /// it is also listed in `hypervisor_devices` and `kept_devices`, so no partition can
    /// be given it.
    pub storage: Option<Storage>,
    /// The interrupt controller the hypervisor owns.
    pub gic: Gic,
    /// The IOMMU in front of the board's bus masters, if it has one (DMA-003).
    pub iommu: Option<Iommu>,
    /// Root `compatible` strings of the board's DTB that name this board.
    pub dt_compatible: &'static [&'static str],
    /// Quirk `virq-unwired`: QEMU's model of this board (QEMU 10.0.2's `imx8mp-evk`)
    /// does not wire the GIC's virtual IRQ output to the CPUs, so a pending list
    /// register never interrupts EL1; the hypervisor signals with `HCR_EL2.VI` instead.
    /// Active only when the board DTB shows a QEMU model (or the hypervisor's
    /// `bootargs` say `septum.virq_quirk=on`).
    pub qemu_virq_unwired: bool,
}

/// A device window no partition may be given, and why. It has a name so that a system
/// description naming it is refused with the reason, by the validator.
#[derive(Clone, Copy, Debug)]
pub struct KeptDevice {
    pub device: DeviceInfo,
    /// Why, as it reads after "kept by the hypervisor: ".
    pub why: &'static str,
}

impl KeptDevice {
    pub const fn new(name: &'static str, base: u64, size: u64, why: &'static str) -> Self {
        Self { device: DeviceInfo { name, base, size, ..DeviceInfo::PLAIN }, why }
    }
    pub const fn raising(self, irqs: &'static [u32]) -> Self {
        Self { device: DeviceInfo { irqs, ..self.device }, ..self }
    }
    pub const fn range(&self) -> Range {
        Range::new(self.device.base, self.device.size)
    }
}

/// The board's GIC architecture version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 with the virtualization extensions (GICH, GICV), e.g. GIC-400.
    V2,
    V3,
}

/// The interrupt controller: a GICv3 (distributor and the contiguous redistributor
/// frames, one per core) or a GICv2 (distributor, CPU interface, and the
/// virtualization extensions' hypervisor control and virtual CPU interface frames).
#[derive(Clone, Copy, Debug)]
pub struct Gic {
    pub version: GicVersion,
    pub distributor: u64,
    /// GICv3: the redistributors (0 on GICv2).
    pub redistributors: u64,
    /// GICv3: frames to search for a core's redistributor.
    pub redistributor_frames: usize,
    /// GICv2: the physical CPU interface (GICC), the hypervisor's own.
    pub cpu_interface: u64,
    /// GICv2: the hypervisor control interface (GICH).
    pub hyp_interface: u64,
    /// GICv2: the virtual CPU interface (GICV), which each partition finds at the
    /// `cpu_interface` address in its own address space.
    pub vcpu_interface: u64,
}

impl Gic {
    /// Bytes of the distributor's frame a guest reaches.
    pub fn distributor_size(&self) -> u64 {
        match self.version {
            GicVersion::V2 => 0x1000,
            GicVersion::V3 => 0x1_0000,
        }
    }
}

/// Bytes of a GICv2 CPU interface (GICC, GICV): two 4 KiB pages.
pub const GICV2_CPU_INTERFACE_SIZE: u64 = 0x2000;

/// A CFI (Intel command set) NOR flash bank.
#[derive(Clone, Copy, Debug)]
pub struct Storage {
    pub base: u64,
    pub size: u64,
    /// Erase block bytes.
    pub block_size: u64,
}

impl Board {
    pub fn device(&self, name: &str) -> Option<&'static DeviceInfo> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// A kept device by the name a system description may (wrongly) give it.
    pub fn kept_device(&self, name: &str) -> Option<&'static KeptDevice> {
        self.kept_devices.iter().find(|k| k.device.name == name)
    }

    /// The first kept device `range` reaches into.
    pub fn kept_at(&self, range: &Range) -> Option<&'static KeptDevice> {
        self.kept_devices.iter().find(|k| k.range().overlaps(range))
    }

    /// The facts a system description is validated against at build time.
    pub fn facts(&self) -> BoardFacts {
        let mut f = BoardFacts::default();
        for &r in self.ram {
            f.ram.push(r);
        }
        for &c in self.cpus {
            f.cpus.push(c);
        }
        for d in self.devices {
            self.add_device(&mut f, d, self.iommu.is_some());
        }
        self.keep_devices(&mut f);
        for &r in self.reserved.iter().chain(self.firmware_reserved) {
            f.reserved.push(r);
        }
        f
    }

    /// Adds device `d`'s windows to `facts` as assignable, with its interrupts (on the
    /// first) and what it can do on the bus where the IOMMU is `iommu_present`. `false`
    /// if `facts` has no room.
    pub fn add_device(&self, facts: &mut BoardFacts, d: &DeviceInfo, iommu_present: bool) -> bool {
        let dma = d.dma_facts(iommu_present);
        d.ranges().enumerate().all(|(k, range)| {
            let irqs = if k == 0 { DeviceIrqs::of(d.irqs) } else { DeviceIrqs::NONE };
            facts.devices.push(BoardDevice { irqs, dma, ..BoardDevice::new(range, true) })
        })
    }

    /// At boot, what the board's DTB shows of the catalogue's devices: each device whose
    /// first window the DTB has (`facts`, read from it) gets all its windows added with
    /// what it can do on the bus, contained only if the IOMMU is there
    /// (`iommu_present`: the DTB has the board's SMMU). A PCIe host bridge's memory and
    /// I/O windows are in its `ranges`, which the DTB reader does not list as devices.
    /// `false` if `facts` has no room.
    pub fn add_shown_devices(&self, facts: &mut BoardFacts, iommu_present: bool) -> bool {
        self.devices.iter().all(|d| {
            let first = Range::new(d.base, d.size);
            let shown = facts.devices.iter().any(|x| x.assignable && x.range.overlaps(&first));
            !shown || self.add_device(facts, d, iommu_present)
        })
    }

    /// Whether the DTB's SMMU (at `smmu_base`) is this board's IOMMU.
    pub fn iommu_at(&self, smmu_base: Option<u64>) -> bool {
        matches!((self.iommu, smmu_base), (Some(i), Some(b)) if i.base == b)
    }

    /// The catalogue device one of whose windows contains `range`.
    pub fn device_at(&self, range: &Range) -> Option<&'static DeviceInfo> {
        self.devices.iter().find(|d| d.ranges().any(|w| w.contains(range)))
    }

    /// Adds the kept devices to `facts` (read from a DTB at boot, or the catalogue's) as
    /// windows no partition's may overlap, with their interrupts. `false` if `facts`
    /// has no room for them all (the caller refuses to go on).
    pub fn keep_devices(&self, facts: &mut BoardFacts) -> bool {
        let kept = self
            .kept_devices
            .iter()
            .map(|k| BoardDevice { irqs: DeviceIrqs::of(k.device.irqs), ..BoardDevice::new(k.range(), false) });
        let driven = self.hypervisor_devices.iter().map(|&r| BoardDevice::new(r, false));
        kept.chain(driven).all(|d| facts.devices.push(d))
    }
}

/// Every board Septum supports, by the name system descriptions use.
pub const BOARDS: &[&Board] =
    &[&crate::qemu_virt::BOARD, &crate::qemu_virt::BOARD_GICV2, &crate::rpi4::BOARD, &crate::imx8mp_evk::BOARD];

pub fn board(name: &str) -> Option<&'static Board> {
    BOARDS.iter().copied().find(|b| b.name == name)
}

/// The board a DTB's root `compatible` list (most specific first) names, given whether
/// its GIC is a GICv2 (QEMU `virt` comes with either).
pub fn board_for<'a>(root_compatible: impl IntoIterator<Item = &'a str>, gic_v2: bool) -> Option<&'static Board> {
    root_compatible.into_iter().find_map(|c| {
        BOARDS.iter().copied().find(|b| b.dt_compatible.contains(&c) && (b.gic.version == GicVersion::V2) == gic_v2)
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn inside_mapped(board: &Board, base: u64, size: u64) -> bool {
        board.hypervisor_devices.iter().any(|k| k.contains(&Range::new(base, size)))
    }

    /// CFG-004: what the hypervisor drives (its GIC's frames, its flash bank) it maps,
    /// and keeps; no device a description can name reaches into a kept one; every name
    /// is one device's.
    #[test]
    fn kept_devices_cover_what_the_hypervisor_drives_and_no_assignable_device() {
        for board in BOARDS {
            for r in board.hypervisor_devices {
                assert!(board.kept_devices.iter().any(|k| k.range().contains(r)), "{}: {r} is not kept", board.name);
            }
            let gic = board.gic;
            assert!(inside_mapped(board, gic.distributor, gic.distributor_size()), "{}: GICD", board.name);
            let frames = [
                (gic.redistributors, gic.redistributor_frames as u64 * 0x2_0000),
                (gic.cpu_interface, GICV2_CPU_INTERFACE_SIZE),
                (gic.hyp_interface, 0x1000),
                (gic.vcpu_interface, GICV2_CPU_INTERFACE_SIZE),
            ];
            for (base, size) in frames.into_iter().filter(|&(base, size)| base != 0 && size != 0) {
                assert!(inside_mapped(board, base, size), "{}: GIC frame {base:#x}", board.name);
            }
            if let Some(s) = board.storage {
                assert!(inside_mapped(board, s.base, s.size), "{}: its flash bank", board.name);
            }
            for d in board.devices {
                let range = Range::new(d.base, d.size);
                assert!(board.kept_at(&range).is_none(), "{}: {} reaches into a kept device", board.name, d.name);
            }
            let mut names: Vec<&str> =
                board.devices.iter().map(|d| d.name).chain(board.kept_devices.iter().map(|k| k.device.name)).collect();
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), count, "{}: a name used twice", board.name);
        }
    }

    /// CFG-004, DMA-001: QEMU virt's flash banks, fw-cfg, virtio-mmio, SMMU, ITS and the
    /// PCIe windows no partition can use are kept on both GIC versions, and the
    /// build-time facts say so; the PCIe host bridge is an assignable bus master behind
    /// the SMMU.
    #[test]
    fn qemu_virt_keeps_its_bus_masters_and_firmware_interfaces() {
        for board in [&crate::qemu_virt::BOARD, &crate::qemu_virt::BOARD_GICV2] {
            let facts = board.facts();
            for at in [0x0, 0x0400_0000, 0x0902_0000, 0x0905_0000, 0x0A00_0000, 0x0A00_3E00, 0x3F00_0000] {
                let page = Range::new(at & !0xFFF, 0x1000);
                assert!(board.kept_at(&page).is_some(), "{}: {at:#x}", board.name);
                assert!(facts.devices.iter().any(|d| !d.assignable && d.range.overlaps(&page)), "{at:#x}");
            }
            assert!(board.kept_at(&Range::new(0x80_0000_0000, 0x1000)).is_some(), "64-bit PCIe window");
            for at in [0x40_1000_0000, 0x1000_0000, 0x3EFF_0000] {
                let page = Range::new(at, 0x1000);
                assert!(board.kept_at(&page).is_none(), "{at:#x}");
                let dev = facts.devices.iter().find(|d| d.range.contains(&page)).expect("a PCIe window");
                assert!(dev.assignable && dev.dma == DeviceDma::Contained, "{at:#x}");
            }
            assert!(board.iommu.is_some());
        }
        assert!(crate::qemu_virt::BOARD.kept_at(&Range::new(0x0808_0000, 0x1000)).is_some(), "the ITS");
        assert!(crate::qemu_virt::BOARD_GICV2.kept_at(&Range::new(0x0802_0000, 0x1000)).is_some(), "the v2m frame");
        let uart0 = crate::qemu_virt::BOARD.facts().devices.iter().find(|d| d.range.base == 0x0900_0000).unwrap();
        assert!(uart0.assignable && uart0.irqs.iter().eq([33]));
    }

    /// CFG-006: the build-time facts reserve what each board's firmware keeps.
    #[test]
    fn build_time_facts_reserve_the_firmwares_memory() {
        for board in BOARDS {
            let facts = board.facts();
            for r in board.reserved.iter().chain(board.firmware_reserved) {
                assert!(facts.reserved.iter().any(|f| f == *r), "{}: {r}", board.name);
            }
        }
        let dsp = Range::new(0x9240_0000, 0x200_0000);
        assert!(crate::imx8mp_evk::BOARD.facts().reserved.iter().any(|r| r == dsp));
    }
}

//! The shape of a board description, shared by all boards.
#![forbid(unsafe_code)]

use septum_abi::config::{BoardDevice, BoardFacts, BoardId, Range};

/// A device a system description can give to a partition, by name.
#[derive(Clone, Copy, Debug)]
pub struct DeviceInfo {
    pub name: &'static str,
    pub base: u64,
    pub size: u64,
    /// GIC INTIDs (SPIs are 32 + the DTB's number).
    pub irqs: &'static [u32],
    /// The device tree `compatible` list, most specific first.
    pub compatible: &'static [&'static str],
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
    /// Device windows the hypervisor keeps (never assignable).
    pub hypervisor_devices: &'static [Range],
    /// RAM no partition may use: the hypervisor's image, stacks and tables, and where the
    /// bootloader stages the device tree and bundle.
    pub reserved: &'static [Range],
    /// Physical address the hypervisor is linked at.
    pub hypervisor_base: u64,
    /// Where the bundle is when the bootloader does not say (ELF boots without `/chosen`).
    pub default_bundle: u64,
    /// Where the board DTB is when `x0` does not point at one (ELF boots).
    pub default_dtb: u64,
    pub console: HypervisorConsole,
    /// Persistent storage only the hypervisor uses (anti-rollback counters, audit log);
    /// it is also listed in `hypervisor_devices`, so no partition can be given it.
    pub storage: Option<Storage>,
    /// The interrupt controller the hypervisor owns.
    pub gic: Gic,
    /// Root `compatible` strings of the board's DTB that name this board.
    pub dt_compatible: &'static [&'static str],
    /// Quirk `virq-unwired`: QEMU's model of this board (QEMU 10.0.2's `imx8mp-evk`)
    /// does not wire the GIC's virtual IRQ output to the CPUs, so a pending list
    /// register never interrupts EL1; the hypervisor signals with `HCR_EL2.VI` instead.
    /// Active only when the board DTB shows a QEMU model (or the hypervisor's
    /// `bootargs` say `septum.virq_quirk=on`).
    pub qemu_virq_unwired: bool,
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
            f.devices.push(BoardDevice { range: Range::new(d.base, d.size), assignable: true });
        }
        for &r in self.hypervisor_devices {
            f.devices.push(BoardDevice { range: r, assignable: false });
        }
        for &r in self.reserved {
            f.reserved.push(r);
        }
        f
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

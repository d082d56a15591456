//! The board facts the hypervisor checks a configuration against, read from the board's
//! device tree (passed by the bootloader in `x0`). The DTB comes from firmware, not from
//! a partition; partitions never hand the hypervisor a device tree.

use fdt::Fdt;
use septum_abi::config::{BoardDevice, BoardFacts, Range};

/// How the board's firmware takes PSCI calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

/// How the board starts a secondary core (the DTB's `enable-method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuStart {
    /// PSCI `CPU_ON` over the conduit of `/psci`.
    Psci,
    /// The core spins in firmware until a non-zero entry address appears at `release`.
    SpinTable { release: u64 },
    /// No method named: the core either entered with the boot core (holding pen) or
    /// cannot be started.
    Unnamed,
}

/// What the hypervisor learns from the board DTB.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootFacts {
    pub board: BoardFacts,
    /// The start method of each CPU, in the order of `board.cpus`.
    pub cpu_start: [Option<CpuStart>; 16],
    pub psci: Option<Conduit>,
    /// `/chosen` `linux,initrd-start/end`: where the bootloader put the boot bundle.
    pub initrd: Option<Range>,
    /// `septum.power_cut=N` in `/chosen` `bootargs`: a test hook (development builds
    /// only) that cuts the flash bank's power at its N-th write step.
    pub power_cut_after: Option<u32>,
    /// The interrupt controller is a GICv2 (`arm,cortex-a15-gic`, `arm,gic-400`), not a
    /// GICv3: QEMU `virt` has either, by its `gic-version`.
    pub gic_v2: bool,
}

/// `compatible` strings of GICv2 distributors.
pub const GICV2_COMPATIBLE: &[&str] = &["arm,cortex-a15-gic", "arm,gic-400"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// Not a flattened device tree.
    Invalid,
    NoMemory,
    NoCpus,
    /// More RAM ranges, CPUs or devices than the fixed tables hold.
    TooMany(&'static str),
}

impl BootFacts {
    /// How to start the core with this MPIDR.
    pub fn start_method(&self, mpidr: u64) -> CpuStart {
        let index = self.board.cpus.iter().position(|c| c == mpidr);
        index.and_then(|i| self.cpu_start.get(i).copied().flatten()).unwrap_or(CpuStart::Unnamed)
    }
}

impl core::fmt::Display for DtbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DtbError::Invalid => write!(f, "not a valid flattened device tree"),
            DtbError::NoMemory => write!(f, "no /memory node with a reg"),
            DtbError::NoCpus => write!(f, "no /cpus/cpu@ nodes"),
            DtbError::TooMany(what) => write!(f, "more {what} than the hypervisor's tables hold"),
        }
    }
}

fn be_cells(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u64::from(u32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

pub fn read(blob: &[u8]) -> Result<BootFacts, DtbError> {
    let fdt = Fdt::new(blob).map_err(|_| DtbError::Invalid)?;
    let mut facts = BootFacts::default();
    let root = fdt.find_node("/").ok_or(DtbError::Invalid)?;

    for node in root.children() {
        let name = node.name;
        let is_memory = node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
        let status = node.property("status").and_then(|p| p.as_str()).unwrap_or("okay");
        let enabled = status == "okay" || status == "ok";
        if is_memory {
            // Secure-only memory (status "disabled", secure-status "okay") is not ours.
            if !enabled {
                continue;
            }
            for r in node.reg().into_iter().flatten() {
                let range = Range::new(r.starting_address as u64, r.size.unwrap_or(0) as u64);
                if range.size > 0 && !facts.board.ram.push(range) {
                    return Err(DtbError::TooMany("RAM ranges"));
                }
            }
            continue;
        }
        if name == "cpus" || name == "chosen" || name == "aliases" {
            continue;
        }
        let is_irq_controller = node.property("interrupt-controller").is_some();
        if is_irq_controller && node.compatible().is_some_and(|c| c.all().any(|c| GICV2_COMPATIBLE.contains(&c))) {
            facts.gic_v2 = true;
        }
        for r in node.reg().into_iter().flatten() {
            let Some(size) = r.size.filter(|&s| s > 0) else {
                continue;
            };
            let device = BoardDevice {
                range: Range::new(r.starting_address as u64, size as u64),
                assignable: enabled && !is_irq_controller,
            };
            if !facts.board.devices.push(device) {
                return Err(DtbError::TooMany("devices"));
            }
        }
    }
    if facts.board.ram.is_empty() {
        return Err(DtbError::NoMemory);
    }

    if let Some(cpus) = fdt.find_node("/cpus") {
        for cpu in cpus.children().filter(|c| c.name.split('@').next() == Some("cpu")) {
            let Some(mpidr) = cpu.property("reg").and_then(|p| be_cells(p.value)) else { continue };
            let index = facts.board.cpus.len();
            if !facts.board.cpus.push(mpidr) {
                return Err(DtbError::TooMany("CPUs"));
            }
            let method = cpu.property("enable-method").and_then(|p| p.as_str());
            let release = cpu.property("cpu-release-addr").and_then(|p| be_cells(p.value));
            facts.cpu_start[index] = Some(match (method, release) {
                (Some("psci"), _) => CpuStart::Psci,
                (Some("spin-table"), Some(release)) => CpuStart::SpinTable { release },
                _ => CpuStart::Unnamed,
            });
        }
    }
    if facts.board.cpus.is_empty() {
        return Err(DtbError::NoCpus);
    }

    facts.psci =
        fdt.find_node("/psci").and_then(|n| n.property("method")).and_then(|p| p.as_str()).and_then(|m| match m {
            "smc" => Some(Conduit::Smc),
            "hvc" => Some(Conduit::Hvc),
            _ => None,
        });
    if let Some(chosen) = fdt.find_node("/chosen") {
        let start = chosen.property("linux,initrd-start").and_then(|p| be_cells(p.value));
        let end = chosen.property("linux,initrd-end").and_then(|p| be_cells(p.value));
        if let (Some(s), Some(e)) = (start, end) {
            if e > s {
                facts.initrd = Some(Range::new(s, e - s));
            }
        }
        let bootargs = chosen.property("bootargs").and_then(|p| p.as_str()).unwrap_or("");
        facts.power_cut_after = power_cut_after(bootargs);
    }
    Ok(facts)
}

/// The `septum.power_cut=N` test hook in a kernel command line, if there (N > 0).
pub fn power_cut_after(bootargs: &str) -> Option<u32> {
    bootargs
        .split_ascii_whitespace()
        .filter_map(|arg| arg.strip_prefix("septum.power_cut="))
        .filter_map(|n| n.parse().ok())
        .find(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10.0.2 `-M virt,virtualization=on,gic-version=3 -cpu cortex-a72 -smp 4 -m 1G`,
    /// dumped with `dumpdtb=` and two `-serial`s.
    const VIRT_DTB: &[u8] = include_bytes!("../tests/qemu-virt.dtb");

    /// BOOT-005: RAM, CPUs, devices and the PSCI conduit come from the board's DTB.
    #[test]
    fn reads_qemu_virt() {
        let f = read(VIRT_DTB).unwrap();
        assert_eq!(f.board.ram.iter().next(), Some(Range::new(0x4000_0000, 0x4000_0000)));
        assert_eq!(f.board.cpus.iter().collect::<std::vec::Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(f.psci, Some(Conduit::Smc));
        let uart1 = f.board.devices.iter().find(|d| d.range.base == 0x0904_0000).unwrap();
        assert!(uart1.assignable);
        let gicd = f.board.devices.iter().find(|d| d.range.base == 0x0800_0000).unwrap();
        assert!(!gicd.assignable, "the GIC stays with the hypervisor");
        assert!(!f.gic_v2);
    }

    /// The same machine with `gic-version=2` (dumped the same way): its GIC is a GICv2,
    /// whose CPU interface, hypervisor and virtual CPU interface frames stay the
    /// hypervisor's too.
    #[test]
    fn reads_qemu_virt_with_gicv2() {
        let f = read(include_bytes!("../tests/qemu-virt-gicv2.dtb")).unwrap();
        assert!(f.gic_v2);
        for base in [0x0800_0000, 0x0801_0000, 0x0803_0000, 0x0804_0000] {
            let frame = f.board.devices.iter().find(|d| d.range.base == base).unwrap();
            assert!(!frame.assignable, "{base:#x} stays with the hypervisor");
        }
    }

    /// Raspberry Pi-style spin tables (dtc-compiled from `tests/spin-table.dts`).
    const SPIN_DTB: &[u8] = include_bytes!("../tests/spin-table.dtb");

    /// BOOT-004: the start method of each core comes from its `enable-method`.
    #[test]
    fn reads_start_methods() {
        let virt = read(VIRT_DTB).unwrap();
        assert_eq!(virt.start_method(2), CpuStart::Psci);
        let pi = read(SPIN_DTB).unwrap();
        assert_eq!(pi.psci, None);
        assert_eq!(pi.start_method(1), CpuStart::SpinTable { release: 0xe0 });
        assert_eq!(pi.start_method(3), CpuStart::SpinTable { release: 0xf0 });
        assert_eq!(pi.start_method(9), CpuStart::Unnamed);
    }

    #[test]
    fn reads_the_power_cut_test_hook() {
        assert_eq!(read(VIRT_DTB).unwrap().power_cut_after, None);
        assert_eq!(power_cut_after("console=ttyAMA0 septum.power_cut=7"), Some(7));
        assert_eq!(power_cut_after("septum.power_cut=0 septum.power_cut=x"), None);
        assert_eq!(power_cut_after("septum.power_cut_after=3 xseptum.power_cut=3"), None);
        assert_eq!(power_cut_after(""), None);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(read(&[0u8; 64]).unwrap_err(), DtbError::Invalid);
    }
}

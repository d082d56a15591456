//! The board facts the hypervisor checks a configuration against, read from the board's
//! device tree (passed by the bootloader in `x0`): RAM, CPUs, devices with the
//! interrupts they raise, and the memory the firmware reserves. The DTB comes from
//! firmware, not from a partition; partitions never hand the hypervisor a device tree.
//! What the DTB cannot say (which devices are bus masters, which the hypervisor keeps)
//! comes from the board catalogue, added by the caller.

use fdt::node::FdtNode;
use fdt::Fdt;
use septum_abi::config::{BoardDevice, BoardFacts, DeviceIrqs, Range, FIRST_SPI};

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
    /// `/psci` is the node QEMU's loader writes (it carries PSCI 0.1's `cpu_on`
    /// function ID; firmware-provided nodes on the supported boards do not): the board
    /// is a QEMU model, whose known defects the platform may work around.
    pub qemu_psci: bool,
    /// `septum.virq_quirk=on|off` in `/chosen` `bootargs`: overrides the choice of the
    /// `virq-unwired` quirk.
    pub virq_quirk: Option<bool>,
    /// The base of an enabled Arm SMMUv3 (`arm,smmu-v3`), if the machine has one (QEMU
    /// virt: `iommu=smmuv3`): the bus masters behind it can be contained (DMA-003).
    pub smmu_v3: Option<u64>,
}

/// `compatible` of an Arm SMMUv3.
pub const SMMU_V3_COMPATIBLE: &str = "arm,smmu-v3";

/// `compatible` strings of GICv2 distributors.
pub const GICV2_COMPATIBLE: &[&str] = &["arm,cortex-a15-gic", "arm,gic-400"];
/// `compatible` strings of GICv3 distributors.
pub const GICV3_COMPATIBLE: &[&str] = &["arm,gic-v3"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// Not a flattened device tree.
    Invalid,
    NoMemory,
    NoCpus,
    /// More RAM ranges, CPUs, devices or reserved ranges than the fixed tables hold.
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

/// A node's `status` and `secure-status`.
struct Status {
    enabled: bool,
    secure_only: bool,
}

impl Status {
    fn of(node: &FdtNode<'_, '_>) -> Status {
        let okay = |name| node.property(name).and_then(|p| p.as_str()).map(|s| s == "okay" || s == "ok");
        let enabled = okay("status").unwrap_or(true);
        Status { enabled, secure_only: !enabled && okay("secure-status") == Some(true) }
    }

    /// Memory the non-secure world may use.
    fn usable(&self) -> bool {
        self.enabled
    }
}

/// Bus nodes between the root and a device, innermost last: each one's `ranges`
/// translates its children's addresses into its parent's.
#[derive(Default)]
struct Bus<'a> {
    levels: [Option<BusLevel<'a>>; MAX_BUS_DEPTH],
    depth: usize,
}

#[derive(Clone, Copy)]
struct BusLevel<'a> {
    /// `ranges`; empty means identity.
    ranges: &'a [u8],
    child_cells: usize,
    parent_cells: usize,
    size_cells: usize,
}

/// Nesting of buses the hypervisor follows (the i.MX 8M Plus has `/soc@0/bus@…`).
const MAX_BUS_DEPTH: usize = 4;

fn cells(bytes: &[u8], n: usize) -> Option<u64> {
    match n {
        1 => be_cells(bytes.get(..4)?),
        2 => be_cells(bytes.get(..8)?),
        _ => None,
    }
}

impl Bus<'_> {
    /// The CPU physical address of bus address `addr`, if every bus on the way maps it.
    fn translate(&self, mut addr: u64) -> Option<u64> {
        for level in self.levels[..self.depth].iter().rev().flatten() {
            if level.ranges.is_empty() {
                continue;
            }
            let entry = 4 * (level.child_cells + level.parent_cells + level.size_cells);
            if entry == 0 {
                return None;
            }
            addr = level.ranges.chunks_exact(entry).find_map(|e| {
                let child = cells(e, level.child_cells)?;
                let parent = cells(e.get(4 * level.child_cells..)?, level.parent_cells)?;
                let size = cells(e.get(4 * (level.child_cells + level.parent_cells)..)?, level.size_cells)?;
                (child <= addr && addr - child < size).then(|| parent + (addr - child))
            })?;
        }
        Some(addr)
    }
}

/// The GIC interrupt controller nodes (a board has one; room for a few): their phandles
/// and `#interrupt-cells`, so that `interrupts` naming them can be decoded.
#[derive(Clone, Copy, Default)]
struct Gics {
    nodes: [Option<(u32, usize)>; 4],
}

impl Gics {
    fn find(fdt: &Fdt<'_>) -> Gics {
        let mut gics = Gics::default();
        let is_gic = |n: &FdtNode<'_, '_>| {
            n.property("interrupt-controller").is_some()
                && n.compatible()
                    .is_some_and(|c| c.all().any(|c| GICV2_COMPATIBLE.contains(&c) || GICV3_COMPATIBLE.contains(&c)))
        };
        // A GIC specifier has at least a type and a number.
        let found = fdt
            .all_nodes()
            .filter(is_gic)
            .filter_map(|n| Some((phandle(&n)?, n.interrupt_cells().filter(|&c| c >= 2)?)));
        for (slot, gic) in gics.nodes.iter_mut().zip(found) {
            *slot = Some(gic);
        }
        gics
    }

    /// The `#interrupt-cells` of the GIC with this phandle; `None` for other controllers.
    fn cells(&self, phandle: u32) -> Option<usize> {
        self.nodes.iter().flatten().find(|(p, _)| *p == phandle).map(|&(_, cells)| cells)
    }
}

fn phandle(node: &FdtNode<'_, '_>) -> Option<u32> {
    cell(node.property("phandle").or_else(|| node.property("linux,phandle"))?.value, 0)
}

/// Cell `i` (big-endian) of a property.
fn cell(bytes: &[u8], i: usize) -> Option<u32> {
    bytes.get(4 * i..4 * i + 4).and_then(|c| c.try_into().ok()).map(u32::from_be_bytes)
}

/// The INTID a GIC interrupt specifier names: `<type number flags>`, type 0 an SPI
/// (32 + number), type 1 a PPI (16 + number); `None` for other types (GICv3's extended
/// ranges).
fn gic_intid(kind: u32, number: u32) -> Option<u32> {
    match kind {
        0 => FIRST_SPI.checked_add(number),
        1 if number < 16 => Some(16 + number),
        _ => None,
    }
}

/// The GIC interrupts `node` raises: its `interrupts` when its interrupt parent (its
/// own `interrupt-parent`, else the nearest ancestor's) is a GIC, and the GIC entries
/// of its `interrupts-extended`. An interrupt routed through another controller (a
/// GPIO block, a second-level controller) is that controller's, not the node's.
fn node_irqs(fdt: &Fdt<'_>, node: &FdtNode<'_, '_>, parent: Option<u32>, gics: &Gics) -> DeviceIrqs {
    let mut irqs = DeviceIrqs::NONE;
    let mut add = |specifier: &[u8]| {
        if let Some(intid) = cell(specifier, 0).zip(cell(specifier, 1)).and_then(|(k, n)| gic_intid(k, n)) {
            irqs.push(intid);
        }
    };
    if let Some(extended) = node.property("interrupts-extended") {
        // Entries of a controller's phandle and its `#interrupt-cells` cells.
        let mut at = 0;
        while let Some(controller) = cell(extended.value, at) {
            let gic_cells = gics.cells(controller);
            let Some(count) = gic_cells.or_else(|| fdt.find_phandle(controller)?.interrupt_cells()) else { break };
            let Some(specifier) = extended.value.get(4 * (at + 1)..4 * (at + 1 + count)) else { break };
            if gic_cells.is_some() {
                add(specifier);
            }
            at += 1 + count;
        }
    } else if let (Some(interrupts), Some(count)) = (node.property("interrupts"), parent.and_then(|p| gics.cells(p))) {
        interrupts.value.chunks_exact(4 * count).for_each(add);
    }
    irqs
}

/// What every node is read with: the tree, to look up phandles, and its GICs.
struct Walk<'f, 'a> {
    fdt: &'f Fdt<'a>,
    gics: Gics,
}

/// Records `node`'s registers as board devices (page-rounded: stage 2 maps pages) with
/// the GIC interrupts it raises, and those of its children when it is a bus whose
/// `ranges` say where they are. `irq_parent` is the phandle of the interrupt parent it
/// inherits.
fn read_devices<'b, 'a: 'b>(
    walk: &Walk<'_, 'a>,
    node: FdtNode<'b, 'a>,
    parent_cells: usize,
    irq_parent: Option<u32>,
    bus: &mut Bus<'a>,
    facts: &mut BootFacts,
) -> Result<(), DtbError> {
    let status = Status::of(&node);
    let is_irq_controller = node.property("interrupt-controller").is_some();
    if is_irq_controller && node.compatible().is_some_and(|c| c.all().any(|c| GICV2_COMPATIBLE.contains(&c))) {
        facts.gic_v2 = true;
    }
    let smmu = !status.secure_only
        && status.usable()
        && node.compatible().is_some_and(|c| c.all().any(|c| c == SMMU_V3_COMPATIBLE));
    let irq_parent = interrupt_parent(&node).or(irq_parent);
    let irqs = node_irqs(walk.fdt, &node, irq_parent, &walk.gics);
    for r in node.reg().into_iter().flatten() {
        let Some(size) = r.size.filter(|&s| s > 0) else {
            continue;
        };
        let Some(base) = bus.translate(r.starting_address as u64) else {
            continue;
        };
        let start = base & !(PAGE - 1);
        let end = (base.saturating_add(size as u64)).saturating_add(PAGE - 1) & !(PAGE - 1);
        // A disabled device may still be given to a partition: board DTBs disable what
        // the board's default OS setup leaves unused (the i.MX 8M Plus EVK's UART1), and a
        // signed configuration names it on purpose. One only the secure world may use
        // (QEMU `virt`'s secure UART) is never given.
        if smmu && facts.smmu_v3.is_none() {
            facts.smmu_v3 = Some(base);
        }
        // What a device does on the bus is the catalogue's to say (the boot-time merge).
        let device = BoardDevice {
            range: Range::new(start, end - start),
            assignable: !status.secure_only && !is_irq_controller,
            irqs,
            dma: septum_abi::config::DeviceDma::None,
        };
        if !facts.board.devices.push(device) {
            return Err(DtbError::TooMany("devices"));
        }
    }
    let Some(ranges) = node.property("ranges") else {
        return Ok(());
    };
    if bus.depth == MAX_BUS_DEPTH {
        return Ok(());
    }
    let own = node.cell_sizes();
    bus.levels[bus.depth] = Some(BusLevel {
        ranges: ranges.value,
        child_cells: own.address_cells,
        parent_cells,
        size_cells: own.size_cells,
    });
    bus.depth += 1;
    let result =
        node.children().try_for_each(|child| read_devices(walk, child, own.address_cells, irq_parent, bus, facts));
    bus.depth -= 1;
    result
}

/// A node's own `interrupt-parent` phandle.
fn interrupt_parent(node: &FdtNode<'_, '_>) -> Option<u32> {
    cell(node.property("interrupt-parent")?.value, 0)
}

/// The memory the firmware keeps: `/memreserve/` entries and the `reg` of every enabled
/// `/reserved-memory` child (`no-map` or not: either is the firmware's or a driver's,
/// never a partition's). A child without `reg` (a pool Linux places) reserves nothing
/// yet.
fn read_reserved(fdt: &Fdt<'_>, facts: &mut BootFacts) -> Result<(), DtbError> {
    let memreserve = fdt.memory_reservations().map(|r| Range::new(r.address() as u64, r.size() as u64));
    let nodes = fdt.find_node("/reserved-memory").into_iter().flat_map(|n| n.children());
    let reserved_memory = nodes
        .filter(|n| Status::of(n).usable())
        .flat_map(|n| n.reg().into_iter().flatten())
        .map(|r| Range::new(r.starting_address as u64, r.size.unwrap_or(0) as u64));
    for range in memreserve.chain(reserved_memory).filter(|r| r.size > 0) {
        if !facts.board.reserved.push(range) {
            return Err(DtbError::TooMany("reserved memory ranges"));
        }
    }
    Ok(())
}

const PAGE: u64 = 0x1000;

/// What the board DTB says; it must name RAM and CPUs.
pub fn read(blob: &[u8]) -> Result<BootFacts, DtbError> {
    let facts = read_as_shipped(blob)?;
    if facts.board.ram.is_empty() {
        return Err(DtbError::NoMemory);
    }
    if facts.board.cpus.is_empty() {
        return Err(DtbError::NoCpus);
    }
    Ok(facts)
}

/// What a DTB says before firmware completes it: a board DTB as a distribution ships
/// it may leave `/memory` empty for the firmware to fill (Debian's Raspberry Pi 4 one
/// does), so RAM and CPUs may be missing here.
pub fn read_as_shipped(blob: &[u8]) -> Result<BootFacts, DtbError> {
    let fdt = Fdt::new(blob).map_err(|_| DtbError::Invalid)?;
    let mut facts = BootFacts::default();
    let root = fdt.find_node("/").ok_or(DtbError::Invalid)?;

    let root_cells = root.cell_sizes().address_cells;
    let walk = Walk { fdt: &fdt, gics: Gics::find(&fdt) };
    let root_irq_parent = interrupt_parent(&root);
    for node in root.children() {
        let is_memory = node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
        if is_memory {
            // Secure-only memory (status "disabled", secure-status "okay") is not ours.
            if !Status::of(&node).usable() {
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
        if matches!(node.name, "cpus" | "chosen" | "aliases" | "reserved-memory") {
            continue;
        }
        read_devices(&walk, node, root_cells, root_irq_parent, &mut Bus::default(), &mut facts)?;
    }
    read_reserved(&fdt, &mut facts)?;

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

    facts.psci =
        fdt.find_node("/psci").and_then(|n| n.property("method")).and_then(|p| p.as_str()).and_then(|m| match m {
            "smc" => Some(Conduit::Smc),
            "hvc" => Some(Conduit::Hvc),
            _ => None,
        });
    facts.qemu_psci = fdt.find_node("/psci").is_some_and(|n| n.property("cpu_on").is_some());
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
        facts.virq_quirk = virq_quirk(bootargs);
    }
    Ok(facts)
}

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Header fields (big-endian u32 words): totalsize, off_dt_struct, off_dt_strings,
/// size_dt_strings, size_dt_struct.
const HDR_TOTALSIZE: usize = 4;
const HDR_OFF_STRUCT: usize = 8;
const HDR_OFF_STRINGS: usize = 12;
const HDR_SIZE_STRINGS: usize = 32;
const HDR_SIZE_STRUCT: usize = 36;
const HDR_LEN: usize = 40;

/// Copies a DTB into `out` without its `FDT_NOP` tokens, returning the copy's length.
///
/// Firmware that edits a DTB in place deletes nodes by overwriting them with NOPs
/// (QEMU does for the Raspberry Pi 4 and the i.MX 8M Plus); the `fdt` crate does not
/// accept NOPs everywhere the specification allows them. The copy has the same
/// reservation map and strings, and a structure block with the same tokens less NOPs.
pub fn without_nops(blob: &[u8], out: &mut [u8]) -> Result<usize, DtbError> {
    let word = |b: &[u8], at: usize| -> Result<u32, DtbError> {
        let w = b.get(at..at + 4).ok_or(DtbError::Invalid)?;
        Ok(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let total = (word(blob, HDR_TOTALSIZE)? as usize).min(blob.len());
    let off_struct = word(blob, HDR_OFF_STRUCT)? as usize;
    let off_strings = word(blob, HDR_OFF_STRINGS)? as usize;
    let size_strings = word(blob, HDR_SIZE_STRINGS)? as usize;
    let size_struct = word(blob, HDR_SIZE_STRUCT)? as usize;
    let structs = blob.get(off_struct..off_struct.saturating_add(size_struct).min(total)).ok_or(DtbError::Invalid)?;
    let strings = blob.get(off_strings..off_strings.saturating_add(size_strings)).ok_or(DtbError::Invalid)?;
    if off_struct < HDR_LEN || off_struct > out.len() || !off_struct.is_multiple_of(4) {
        return Err(DtbError::Invalid);
    }
    out[..off_struct].copy_from_slice(&blob[..off_struct]);
    let mut w = off_struct;
    let mut emit = |bytes: &[u8], w: &mut usize| -> Result<(), DtbError> {
        let dst = out.get_mut(*w..*w + bytes.len()).ok_or(DtbError::TooMany("device tree bytes"))?;
        dst.copy_from_slice(bytes);
        *w += bytes.len();
        Ok(())
    };
    let mut r = 0;
    loop {
        let token = word(structs, r)?;
        let len = match token {
            FDT_NOP => {
                r += 4;
                continue;
            }
            FDT_BEGIN_NODE => {
                let name = structs.get(r + 4..).ok_or(DtbError::Invalid)?;
                let nul = name.iter().position(|&b| b == 0).ok_or(DtbError::Invalid)?;
                4 + (nul + 1).next_multiple_of(4)
            }
            FDT_PROP => 12 + (word(structs, r + 4)? as usize).next_multiple_of(4),
            FDT_END_NODE | FDT_END => 4,
            _ => return Err(DtbError::Invalid),
        };
        emit(structs.get(r..r + len).ok_or(DtbError::Invalid)?, &mut w)?;
        r += len;
        if token == FDT_END {
            break;
        }
    }
    let new_struct = w - off_struct;
    let new_strings = w;
    emit(strings, &mut w)?;
    let set = |out: &mut [u8], at: usize, v: usize| out[at..at + 4].copy_from_slice(&(v as u32).to_be_bytes());
    set(out, HDR_SIZE_STRUCT, new_struct);
    set(out, HDR_OFF_STRINGS, new_strings);
    set(out, HDR_TOTALSIZE, w);
    Ok(w)
}

/// The root node's `compatible` strings, most specific first: which board this is.
pub fn root_compatible(blob: &[u8]) -> impl Iterator<Item = &str> {
    let fdt = Fdt::new(blob).ok();
    let root = fdt.as_ref().and_then(|f| f.find_node("/"));
    let list: &[u8] = root.and_then(|n| n.property("compatible")).map_or(&[], |p| p.value);
    list.split(|&b| b == 0).filter_map(|s| core::str::from_utf8(s).ok()).filter(|s| !s.is_empty())
}

/// `septum.virq_quirk=on|off` in a kernel command line, if there.
pub fn virq_quirk(bootargs: &str) -> Option<bool> {
    bootargs.split_ascii_whitespace().find_map(|a| match a {
        "septum.virq_quirk=on" => Some(true),
        "septum.virq_quirk=off" => Some(false),
        _ => None,
    })
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

    /// DMA-003: an SMMUv3 is found where the machine has one (QEMU `iommu=smmuv3`), and
    /// only there.
    #[test]
    fn reads_the_smmu_where_the_machine_has_one() {
        let with = read(include_bytes!("../tests/qemu-virt-smmuv3.dtb")).unwrap();
        assert_eq!(with.smmu_v3, Some(0x0905_0000));
        let ecam = with.board.devices.iter().find(|d| d.range.base == 0x40_1000_0000).expect("the PCIe ECAM");
        assert!(ecam.assignable);
        assert_eq!(read(VIRT_DTB).unwrap().smmu_v3, None);
    }

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
        let irqs = |base: u64| f.board.devices.iter().find(|d| d.range.base == base).unwrap().irqs;
        assert!(uart1.irqs.iter().eq([40]));
        assert!(irqs(0x0900_0000).iter().eq([33]));
        assert!(irqs(0x0A00_0000).iter().eq([48]), "the first virtio-mmio transport");
        assert!(irqs(0x0902_0000).iter().eq([]), "fw-cfg raises none");
        assert_eq!(f.board.reserved.len(), 0, "QEMU's DTB reserves nothing");
    }

    const IRQS_DTB: &[u8] = include_bytes!("../tests/irqs-and-reserved.dtb");

    /// CFG-005, BOOT-005: each device's GIC interrupts come from its `interrupts` (when
    /// its interrupt parent, its own or inherited, is the GIC: SPI n is INTID 32 + n,
    /// PPI n 16 + n) and the GIC entries of its `interrupts-extended`; interrupts through
    /// another controller are not the device's.
    #[test]
    fn reads_the_interrupts_of_devices() {
        let f = read(IRQS_DTB).unwrap();
        let irqs = |base: u64| {
            let d = f.board.devices.iter().find(|d| d.range.base == base).unwrap();
            d.irqs.iter().collect::<std::vec::Vec<_>>()
        };
        assert_eq!(irqs(0x0900_0000), [33]);
        assert_eq!(irqs(0x0901_0000), [34, 35, 30], "two SPIs and a PPI");
        assert_eq!(irqs(0x0903_0000), [39], "the GPIO block's own interrupt");
        assert_eq!(irqs(0x0905_0000), [], "through the GPIO block");
        assert_eq!(irqs(0x0906_0000), [42, 43], "interrupts-extended, the GIC's entries");
        assert_eq!(irqs(0x0A00_1000), [], "a bus's interrupt parent is inherited");
        assert_eq!(irqs(0x0A00_2000), [52], "and overridden");
        assert_eq!(irqs(0x0800_0000), [25], "the GIC's maintenance interrupt, on a window no one is given");
    }

    /// CFG-006, BOOT-005: `/memreserve/` entries and every enabled `/reserved-memory`
    /// child with a `reg` (`no-map` or reusable) are reserved; a pool without `reg` and
    /// a disabled child are not.
    #[test]
    fn reads_reserved_memory() {
        let f = read(IRQS_DTB).unwrap();
        let reserved: std::vec::Vec<_> = f.board.reserved.iter().collect();
        assert_eq!(
            reserved,
            [
                Range::new(0, 0x1000),
                Range::new(0x4800_0000, 0x10_0000),
                Range::new(0x9240_0000, 0x200_0000),
                Range::new(0x5000_0000, 0x40_0000),
            ]
        );
        assert!(f.board.devices.iter().all(|d| d.range.base != 0x9240_0000), "reserved memory is no device");
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

    /// BOOT-005: devices behind buses are found at the CPU's addresses, page-rounded;
    /// a bus without `ranges` hides its children; a secure-only device is never
    /// assignable, a merely disabled one is; the GIC stays the hypervisor's.
    #[test]
    fn translates_bus_addresses() {
        let f = read(include_bytes!("../tests/buses.dtb")).unwrap();
        let find = |base: u64| f.board.devices.iter().find(|d| d.range.base == base);
        let pl011 = find(0xFE20_1000).unwrap();
        assert_eq!(pl011.range.size, 0x1000);
        assert!(pl011.assignable);
        assert_eq!(find(0xFE21_5000).unwrap().range.size, 0x1000, "the mini UART's page");
        assert!(!find(0xFF84_1000).unwrap().assignable);
        assert!(!find(0xFF84_2000).unwrap().assignable);
        assert!(f.gic_v2);
        assert!(find(0x3086_0000).unwrap().assignable, "disabled, but not secure-only");
        assert!(find(0x3089_0000).unwrap().assignable);
        assert!(!find(0x0904_0000).unwrap().assignable, "secure-only");
        assert!(find(0x1_0000).is_none() && find(0x100).is_none() && find(0x0).is_none());
        assert!(f.qemu_psci);
        assert!(read(VIRT_DTB).unwrap().qemu_psci, "QEMU virt's PSCI node is its loader's too");
        assert!(!read(SPIN_DTB).unwrap().qemu_psci);
        let names: std::vec::Vec<_> = root_compatible(include_bytes!("../tests/buses.dtb")).collect();
        assert_eq!(names, ["vendor,test-board", "brcm,bcm2711"]);
        assert_eq!(root_compatible(&[0u8; 16]).count(), 0);
    }

    #[test]
    fn reads_the_virq_quirk_override() {
        assert_eq!(read(VIRT_DTB).unwrap().virq_quirk, None);
        assert_eq!(virq_quirk("console=x septum.virq_quirk=on"), Some(true));
        assert_eq!(virq_quirk("septum.virq_quirk=off"), Some(false));
        assert_eq!(virq_quirk("septum.virq_quirk=maybe"), None);
    }

    #[test]
    fn reads_the_power_cut_test_hook() {
        assert_eq!(read(VIRT_DTB).unwrap().power_cut_after, None);
        assert_eq!(power_cut_after("console=ttyAMA0 septum.power_cut=7"), Some(7));
        assert_eq!(power_cut_after("septum.power_cut=0 septum.power_cut=x"), None);
        assert_eq!(power_cut_after("septum.power_cut_after=3 xseptum.power_cut=3"), None);
        assert_eq!(power_cut_after(""), None);
    }

    /// A DTB with NOPs where QEMU's and firmware's edits leave them (between
    /// properties, before child nodes) reads the same as without them.
    #[test]
    fn reads_through_nops() {
        let plain = include_bytes!("../tests/buses.dtb");
        // Insert a NOP before every PROP and BEGIN_NODE token after the root's.
        let off = u32::from_be_bytes(plain[8..12].try_into().unwrap()) as usize;
        let size = u32::from_be_bytes(plain[36..40].try_into().unwrap()) as usize;
        let mut noisy = plain[..off].to_vec();
        let structs = &plain[off..off + size];
        let mut r = 0;
        while r < structs.len() {
            let token = u32::from_be_bytes(structs[r..r + 4].try_into().unwrap());
            let len = match token {
                FDT_BEGIN_NODE => 4 + (structs[r + 4..].iter().position(|&b| b == 0).unwrap() + 1).next_multiple_of(4),
                FDT_PROP => {
                    12 + (u32::from_be_bytes(structs[r + 4..r + 8].try_into().unwrap()) as usize).next_multiple_of(4)
                }
                _ => 4,
            };
            if r > 0 && (token == FDT_PROP || token == FDT_BEGIN_NODE) {
                noisy.extend_from_slice(&FDT_NOP.to_be_bytes());
            }
            noisy.extend_from_slice(&structs[r..r + len]);
            r += len;
        }
        let new_size = noisy.len() - off;
        let strings_at = noisy.len();
        let so = u32::from_be_bytes(plain[12..16].try_into().unwrap()) as usize;
        let ss = u32::from_be_bytes(plain[32..36].try_into().unwrap()) as usize;
        noisy.extend_from_slice(&plain[so..so + ss]);
        let total = noisy.len();
        noisy[36..40].copy_from_slice(&(new_size as u32).to_be_bytes());
        noisy[12..16].copy_from_slice(&(strings_at as u32).to_be_bytes());
        noisy[4..8].copy_from_slice(&(total as u32).to_be_bytes());

        let mut out = [0u8; 8192];
        let n = without_nops(&noisy, &mut out).unwrap();
        assert!(n < noisy.len());
        let a = read(&out[..n]).unwrap();
        let b = read(plain).unwrap();
        assert_eq!(a.board.devices.len(), b.board.devices.len());
        assert_eq!(a.board.ram.iter().next(), b.board.ram.iter().next());
        assert!(without_nops(&noisy, &mut [0u8; 64]).is_err(), "too small a buffer is an error");
        assert!(without_nops(&[0u8; 16], &mut out).is_err());
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(read(&[0u8; 64]).unwrap_err(), DtbError::Invalid);
    }
}

//! Partition stage-2 translation: each partition's tables map exactly the regions of its
//! validated configuration (RAM normal cacheable; devices Device-nGnRnE; channel memory
//! read-write for its writer and read-only for its reader, never executable; doorbells
//! not at all) and, on a GICv2, the virtual CPU interface; nothing else. VTCR_EL2 is the same for all: 39-bit IPA, 4 KiB granule.

use aarch64_cpu::registers::{Writeable, VTCR_EL2};
use septum_abi::config::{PartitionDesc, RegionKind};
use septum_core::pagetable::{Access, Arena, MapError, Mapping, MemType, Regime, Table, T0SZ};
use septum_platform::catalog::{GicVersion, GICV2_CPU_INTERFACE_SIZE};
use spin::Mutex;

const TABLES: usize = 128;
static S2_TABLES: Mutex<([Table; TABLES], usize)> = Mutex::new(([Table::EMPTY; TABLES], 0));

/// Builds a partition's tables; returns the root's physical address.
pub fn build(desc: &PartitionDesc) -> Result<u64, MapError> {
    let mut guard = S2_TABLES.lock();
    let (tables, used) = &mut *guard;
    let base = tables.as_ptr() as u64;
    let mut arena = Arena::resume(&mut tables[..], base, *used);
    let root = arena.alloc()?;
    for region in desc.regions() {
        let (mem, access) = match region.kind() {
            Some(RegionKind::Ram) => (MemType::Normal, Access::RWX),
            Some(RegionKind::Device) => (MemType::Device, Access::RW),
            Some(RegionKind::SharedRw) => (MemType::Normal, Access::RW),
            Some(RegionKind::SharedRo | RegionKind::Sensor) => (MemType::Normal, Access::RO),
            // Doorbells stay unmapped: every access traps (see `partition`).
            Some(RegionKind::Doorbell) | None => continue,
        };
        arena.map(Regime::Stage2, root, Mapping::new(region.ipa, region.pa, region.size, mem, access))?;
    }
    // On a GICv2 the guest's CPU interface is the virtual one (GICV), at the address
    // its device tree gives the CPU interface (GICC): the guest acknowledges and ends
    // its virtual interrupts there without a trap.
    let gic = crate::this_board().gic;
    if gic.version == GicVersion::V2 {
        let (ipa, pa) = (gic.cpu_interface, gic.vcpu_interface);
        arena.map(
            Regime::Stage2,
            root,
            Mapping::new(ipa, pa, GICV2_CPU_INTERFACE_SIZE, MemType::Device, Access::RW),
        )?;
    }
    *used = arena.used();
    Ok(arena.pa_of(root))
}

/// VTCR_EL2, the same for every partition: 39-bit IPA starting at level 1, 4 KiB
/// granule, write-back inner-shareable walks, 8-bit VMID, physical addresses as wide
/// as the core supports (at most 48 bits).
pub fn set_vtcr() {
    let ps = crate::cpu::pa_size();
    VTCR_EL2.write(
        VTCR_EL2::RES1::SET
            + VTCR_EL2::PS.val(ps)
            + VTCR_EL2::TG0.val(0b00)
            + VTCR_EL2::SH0.val(0b11)
            + VTCR_EL2::ORGN0.val(0b01)
            + VTCR_EL2::IRGN0.val(0b01)
            + VTCR_EL2::SL0.val(0b01)
            + VTCR_EL2::T0SZ.val(T0SZ),
    );
}

//! Partition stage-2 translation: each partition's tables map exactly the regions of its
//! validated configuration (RAM normal cacheable, devices Device-nGnRnE and never
//! executable), nothing else. VTCR_EL2 is the same for all: 39-bit IPA, 4 KiB granule.

use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
use septum_abi::config::{PartitionDesc, RegionKind};
use septum_core::pagetable::{Access, Arena, MapError, Mapping, MemType, Regime, Table, T0SZ};
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
            None => continue, // refused by validation already
        };
        arena.map(Regime::Stage2, root, Mapping::new(region.ipa, region.pa, region.size, mem, access))?;
    }
    *used = arena.used();
    Ok(arena.pa_of(root))
}

/// VTCR_EL2 for every partition.
pub fn vtcr() -> u64 {
    let pa_range = ID_AA64MMFR0_EL1.get() & 0xF;
    let ps = pa_range.min(5);
    // RES1 bit 31, PS, TG0 = 4 KiB, SH0 inner shareable, ORGN0/IRGN0 write-back,
    // SL0 = 1 (start at level 1), T0SZ = 25.
    (1 << 31) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (0b01 << 6) | T0SZ
}

//! The hypervisor's own EL2 stage-1 translation: text read-only and executable, rodata
//! read-only, data/BSS/stacks read-write and never executable (SCTLR_EL2.WXN enforces
//! that nothing writable executes), the rest of RAM read-write non-executable so
//! partitions can be loaded. No device is mapped: on QEMU virt the log uses semihosting.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2};
use septum_abi::config::Range;
use septum_core::pagetable::{Access, Arena, MapError, Mapping, MemType, Regime, Table, MAIR_EL2 as MAIR_VALUE, T0SZ};
use spin::Mutex;

const TABLES: usize = 32;
static S1_TABLES: Mutex<[Table; TABLES]> = Mutex::new([Table::EMPTY; TABLES]);
static ROOT: spin::Once<u64> = spin::Once::new();

extern "C" {
    static __hv_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __hv_end: u8;
}

fn addr(sym: &u8) -> u64 {
    sym as *const u8 as u64
}

/// The hypervisor's own footprint in RAM (image, BSS, stacks).
pub fn image_range() -> Range {
    // SAFETY: linker-script symbols; only their addresses are taken, never their values.
    let (start, end) = unsafe { (addr(&__hv_start), addr(&__hv_end)) };
    Range::new(start, end - start)
}

/// Builds the tables on the boot core (MMU still off) and turns the MMU on.
pub fn init(ram: impl Iterator<Item = Range>) -> Result<(), MapError> {
    // SAFETY: as above, addresses of linker symbols.
    let (start, text_end, rodata_end, end) =
        unsafe { (addr(&__hv_start), addr(&__text_end), addr(&__rodata_end), addr(&__hv_end)) };
    let mut tables = S1_TABLES.lock();
    let base = tables.as_ptr() as u64;
    let mut arena = Arena::new(&mut tables[..], base);
    let root = arena.alloc()?;
    let r = Regime::El2Stage1;
    arena.map(r, root, Mapping::new(start, start, text_end - start, MemType::Normal, Access::RX))?;
    arena.map(r, root, Mapping::new(text_end, text_end, rodata_end - text_end, MemType::Normal, Access::RO))?;
    arena.map(r, root, Mapping::new(rodata_end, rodata_end, end - rodata_end, MemType::Normal, Access::RW))?;
    for ram in ram {
        // RAM around the image: read-write, never executable.
        let below = Range::new(ram.base, start.clamp(ram.base, ram.end()) - ram.base);
        let above_start = end.clamp(ram.base, ram.end());
        let above = Range::new(above_start, ram.end() - above_start);
        for part in [below, above] {
            if part.size > 0 {
                arena.map(r, root, Mapping::new(part.base, part.base, part.size, MemType::Normal, Access::RW))?;
            }
        }
    }
    let root_pa = arena.pa_of(root);
    drop(tables);
    ROOT.call_once(|| root_pa);
    // Nothing cached from before may shadow what was written with the caches off.
    crate::cpu::invalidate_dcache_range(start, end - start);
    enable_on_this_core();
    Ok(())
}

/// Installs the shared tables on this core and turns on MMU and caches.
pub fn enable_on_this_core() {
    let Some(&root) = ROOT.get() else { crate::cpu::park() };
    MAIR_EL2.set(MAIR_VALUE);
    // Physical address size: what the core supports, at most 48 bits.
    let pa_range = ID_AA64MMFR0_EL1.get() & 0xF;
    let ps = pa_range.min(5);
    // TCR_EL2 (non-VHE): RES1 bits 31 and 23, T0SZ, inner/outer write-back
    // write-allocate cacheable walks, inner shareable, 4 KiB granule, PS.
    let tcr = (1 << 31) | (1 << 23) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | T0SZ;
    TCR_EL2.set(tcr);
    TTBR0_EL2.set(root);
    crate::cpu::flush_el2_tlb();
    // M (MMU), C (data cache), I (instruction cache), WXN, SA (stack alignment check).
    let sctlr = SCTLR_EL2.get() | (1 << 0) | (1 << 2) | (1 << 12) | (1 << 19) | (1 << 3);
    SCTLR_EL2.set(sctlr);
    barrier::isb(barrier::SY);
}

//! The hypervisor's own EL2 stage-1 translation: text read-only and executable, rodata
//! read-only, data/BSS/stacks read-write and never executable (SCTLR_EL2.WXN enforces
//! that nothing writable executes), the rest of RAM read-write non-executable so
//! partitions can be loaded; the devices the hypervisor keeps (the GIC) Device-nGnRnE.
//! Below each core's stack lies an unmapped guard page: a stack overflow faults (and
//! stops the system) instead of silently overwriting BSS or another core's stack.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, Readable, Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2};
use septum_abi::config::Range;
use septum_core::pagetable::{Access, Arena, MapError, Mapping, MemType, Regime, Table, MAIR_EL2 as MAIR_VALUE, T0SZ};
use spin::Mutex;

const TABLES: usize = 48;
static S1_TABLES: Mutex<[Table; TABLES]> = Mutex::new([Table::EMPTY; TABLES]);
static ROOT: spin::Once<u64> = spin::Once::new();

/// Each core's stack, and the unmapped guard page below it (as in the linker script).
pub const STACK_SIZE: usize = 0x2_0000;
pub const STACK_GUARD: usize = 0x1000;
const STACK_STRIDE: u64 = (STACK_GUARD + STACK_SIZE) as u64;

extern "C" {
    static __hv_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __stacks_start: u8;
    static __stacks_end: u8;
    static __hv_end: u8;
}

/// Where the stacks are: (start, end).
fn stacks() -> (u64, u64) {
    let addr = |sym: &u8| sym as *const u8 as u64;
    // SAFETY: linker-script symbols; only their addresses are taken, never their values.
    unsafe { (addr(&__stacks_start), addr(&__stacks_end)) }
}

/// Where the linker put the hypervisor's sections: (start, end of text, end of
/// rodata, end of everything including BSS and stacks).
fn layout() -> (u64, u64, u64, u64) {
    let addr = |sym: &u8| sym as *const u8 as u64;
    // SAFETY: linker-script symbols; only their addresses are taken, never their values.
    unsafe { (addr(&__hv_start), addr(&__text_end), addr(&__rodata_end), addr(&__hv_end)) }
}

/// The hypervisor's own footprint in RAM (image, BSS, stacks).
pub fn image_range() -> Range {
    let (start, _, _, end) = layout();
    Range::new(start, end - start)
}

/// Builds the tables on the boot core (MMU still off) and turns the MMU on.
pub fn init(ram: impl Iterator<Item = Range>, devices: &[Range]) -> Result<(), MapError> {
    let (start, text_end, rodata_end, end) = layout();
    let mut tables = S1_TABLES.lock();
    let base = tables.as_ptr() as u64;
    let mut arena = Arena::new(&mut tables[..], base);
    let root = arena.alloc()?;
    let r = Regime::El2Stage1;
    arena.map(r, root, Mapping::new(start, start, text_end - start, MemType::Normal, Access::RX))?;
    arena.map(r, root, Mapping::new(text_end, text_end, rodata_end - text_end, MemType::Normal, Access::RO))?;
    // Data and BSS; then each stack without its guard page; then the rest of the image.
    let (stacks_start, stacks_end) = stacks();
    // The linker script and these constants must agree on the stacks' layout.
    if stacks_end - stacks_start != STACK_STRIDE * crate::partition::MAX_CPUS as u64 {
        return Err(MapError::Unaligned);
    }
    let rw = |base: u64, size: u64| Mapping::new(base, base, size, MemType::Normal, Access::RW);
    arena.map(r, root, rw(rodata_end, stacks_start - rodata_end))?;
    for slot in 0..crate::partition::MAX_CPUS as u64 {
        let stack = stacks_start + slot * STACK_STRIDE + STACK_GUARD as u64;
        arena.map(r, root, rw(stack, STACK_SIZE as u64))?;
    }
    if end > stacks_end {
        arena.map(r, root, rw(stacks_end, end - stacks_end))?;
    }
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
    // Devices the hypervisor keeps (the interrupt controller): Device-nGnRnE, never
    // executable.
    for d in devices {
        arena.map(r, root, Mapping::new(d.base, d.base, d.size, MemType::Device, Access::RW))?;
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
    // 39-bit VA from level 1, 4 KiB granule, write-back inner-shareable walks,
    // physical addresses as wide as the core supports (at most 48 bits).
    let ps = crate::cpu::pa_size();
    TCR_EL2.write(
        TCR_EL2::PS.val(ps)
            + TCR_EL2::TG0.val(0b00)
            + TCR_EL2::SH0.val(0b11)
            + TCR_EL2::ORGN0.val(0b01)
            + TCR_EL2::IRGN0.val(0b01)
            + TCR_EL2::T0SZ.val(T0SZ),
    );
    // TCR_EL2 bits 31 and 23 are RES1 (non-VHE); aarch64-cpu names no field for them.
    TCR_EL2.set(TCR_EL2.get() | (1 << 31) | (1 << 23));
    TTBR0_EL2.set(root);
    crate::cpu::flush_el2_tlb();
    // MMU, caches, write-implies-execute-never, stack alignment check.
    SCTLR_EL2
        .modify(SCTLR_EL2::M::SET + SCTLR_EL2::C::SET + SCTLR_EL2::I::SET + SCTLR_EL2::WXN::SET + SCTLR_EL2::SA::SET);
    barrier::isb(barrier::SY);
}

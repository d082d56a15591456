//! The hypervisor's own EL2 stage-1 translation: text read-only and executable, rodata
//! read-only, data/BSS/stacks read-write and never executable (SCTLR_EL2.WXN enforces
//! that nothing writable executes); the devices the hypervisor keeps (the GIC, its
//! flash bank) Device-nGnRnE. Below each core's stack lies an unmapped guard page: a
//! stack overflow faults (and stops the system) instead of silently overwriting BSS or
//! another core's stack.
//!
//! Three kinds of view ([`septum_core::el2map`], ISO-010): the boot view (all RAM
//! around the image, until the configuration is read), the run view every core uses
//! from then on (no partition memory at all: a speculative gadget in EL2 finds nothing
//! of a partition to reach), and each partition's load view, installed only on the core
//! that loads or verifies that partition ([`load_view`]) and left with a broadcast TLB
//! invalidation. All views are built once, at boot; tables never change afterwards.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, Readable, Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2};
use septum_abi::config::{Config, PartitionDesc, Range, RegionKind, MAX_PARTITIONS};
use septum_core::el2map::{self, Fixed, Image, Kept};
use septum_core::pagetable::{Arena, MapError, Table, MAIR_EL2 as MAIR_VALUE, T0SZ};
use spin::{Mutex, Once};

/// Tables for all views: boot, run and one load view per partition, about a dozen each.
const TABLES: usize = 128;
static S1_TABLES: Mutex<([Table; TABLES], usize)> = Mutex::new(([Table::EMPTY; TABLES], 0));
static BOOT_ROOT: Once<u64> = Once::new();
static RUN_ROOT: Once<u64> = Once::new();
static LOAD_ROOTS: [Once<u64>; MAX_PARTITIONS] = [const { Once::new() }; MAX_PARTITIONS];

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

/// Where the linker put the hypervisor's sections.
fn layout() -> Image {
    let addr = |sym: &u8| sym as *const u8 as u64;
    // SAFETY: linker-script symbols; only their addresses are taken, never their values.
    unsafe {
        Image {
            start: addr(&__hv_start),
            text_end: addr(&__text_end),
            rodata_end: addr(&__rodata_end),
            stacks_start: addr(&__stacks_start),
            stacks_end: addr(&__stacks_end),
            end: addr(&__hv_end),
            stack_size: STACK_SIZE as u64,
            stack_guard: STACK_GUARD as u64,
        }
    }
}

/// The hypervisor's own footprint in RAM (image, BSS, stacks).
pub fn image_range() -> Range {
    let img = layout();
    Range::new(img.start, img.end - img.start)
}

fn fixed() -> Fixed<'static> {
    Fixed { image: layout(), devices: crate::this_board().hypervisor_devices }
}

/// Builds the boot view on the boot core (MMU still off) and turns the MMU on.
pub fn init(ram: impl Iterator<Item = Range>) -> Result<(), MapError> {
    let img = layout();
    // The linker script and these constants must agree on the stacks' layout.
    if img.stacks_end - img.stacks_start != STACK_STRIDE * crate::slots::MAX_CPUS as u64 {
        return Err(MapError::Unaligned);
    }
    let root = build(|arena| el2map::boot_view(arena, &fixed(), ram))?;
    BOOT_ROOT.call_once(|| root);
    // Nothing cached from before may shadow what was written with the caches off.
    crate::cpu::invalidate_dcache_range(img.start, img.end - img.start);
    enable_on_this_core();
    Ok(())
}

/// Builds views in the shared pool: returns the new root's physical address.
fn build(view: impl FnOnce(&mut Arena<'_>) -> Result<usize, MapError>) -> Result<u64, MapError> {
    let mut guard = S1_TABLES.lock();
    let (tables, used) = &mut *guard;
    let base = tables.as_ptr() as u64;
    let mut arena = Arena::resume(&mut tables[..], base, *used);
    let root = view(&mut arena)?;
    *used = arena.used();
    Ok(arena.pa_of(root))
}

/// Why the views could not be built or failed their check.
#[derive(Clone, Copy, Debug)]
pub enum ViewError {
    Map(MapError),
    /// A view maps partition memory it must not (the address).
    Maps(&'static str, u64),
}

impl core::fmt::Display for ViewError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ViewError::Map(e) => write!(f, "{e:?}"),
            ViewError::Maps(view, at) => write!(f, "{view} maps partition memory at {at:#x}"),
        }
    }
}

/// Builds the run view and every partition's load view, checks them by walking the
/// tables (the run view maps no partition memory; a load view none of another
/// partition's RAM), and moves this core to the run view. Called on the boot core once
/// the configuration is accepted, before any partition is loaded or any other core
/// started.
pub fn build_views(config: &Config<'static>, bundle: Range, firmware: &[Range]) -> Result<(), ViewError> {
    let kept = Kept { bundle, firmware };
    let run = build(|arena| el2map::run_view(arena, &fixed(), &kept)).map_err(ViewError::Map)?;
    for (i, desc) in config.partitions.iter().enumerate() {
        let root = build(|arena| el2map::load_view(arena, &fixed(), &kept, desc)).map_err(ViewError::Map)?;
        if let Some(slot) = LOAD_ROOTS.get(i) {
            slot.call_once(|| root);
        }
    }
    RUN_ROOT.call_once(|| run);
    let all = config.partitions.iter().flat_map(memory);
    let (mapped, ranges) = {
        let mut guard = S1_TABLES.lock();
        let (tables, used) = &mut *guard;
        let base = tables.as_ptr() as u64;
        let arena = Arena::resume(&mut tables[..], base, *used);
        let idx = |pa: u64| ((pa - base) / 4096) as usize;
        if let Some(at) = el2map::first_mapped_in(&arena, idx(run), all.clone()) {
            return Err(ViewError::Maps("the run view", at));
        }
        for (i, desc) in config.partitions.iter().enumerate() {
            let others = config.partitions.iter().enumerate().filter(|&(j, _)| j != i).flat_map(|(_, p)| {
                p.regions().iter().filter(|r| r.kind() == Some(RegionKind::Ram)).map(|r| Range::new(r.pa, r.size))
            });
            let Some(root) = LOAD_ROOTS.get(i).and_then(Once::get) else { continue };
            if let Some(at) = el2map::first_mapped_in(&arena, idx(*root), others) {
                return Err(ViewError::Maps(desc.name(), at));
            }
        }
        let (mut mapped, mut ranges) = (0u64, 0usize);
        el2map::mapped_ranges(&arena, idx(run), |s, e| {
            mapped += e - s;
            ranges += 1;
        });
        (mapped, ranges)
    };
    switch_to(run, false);
    log::info!(
        "EL2 stage 1: run view maps {ranges} ranges, {} KiB (image, devices, bundle read-only, firmware pages); \
         no partition memory ({} regions checked); {} load views, each one partition's own",
        mapped >> 10,
        all.count(),
        config.partitions.len()
    );
    Ok(())
}

/// A partition's memory regions (RAM and channel memory, not doorbells).
fn memory(p: &PartitionDesc) -> impl Iterator<Item = Range> + Clone + '_ {
    p.regions().iter().filter(|r| r.kind().is_some_and(RegionKind::is_memory)).map(|r| Range::new(r.pa, r.size))
}

/// A partition's load view, installed on this core while it lives; dropping it puts
/// back the view that was installed before (the run view, unless nested) and
/// invalidates EL2's TLB entries on every core.
pub struct LoadView {
    previous: u64,
}

/// Installs partition `index`'s load view on this core: its RAM and the channel memory
/// it writes become reachable for loading and verifying, here only.
pub fn load_view(index: usize) -> LoadView {
    let previous = TTBR0_EL2.get();
    if let Some(&root) = LOAD_ROOTS.get(index).and_then(Once::get) {
        switch_to(root, false);
    }
    LoadView { previous }
}

impl Drop for LoadView {
    fn drop(&mut self) {
        switch_to(self.previous, true);
    }
}

/// Moves this core (MMU on) to the view at `root`. The image is mapped alike in every
/// view, so the switch needs no break-before-make; the TLB is invalidated after it,
/// on every core with `broadcast` (tables are shared, so a stale entry anywhere could
/// keep partition memory reachable).
fn switch_to(root: u64, broadcast: bool) {
    TTBR0_EL2.set(root);
    barrier::isb(barrier::SY);
    if broadcast {
        crate::cpu::flush_el2_tlb_all_cores();
    } else {
        crate::cpu::flush_el2_tlb();
    }
}

/// Installs the run view (before it exists, the boot view) on this core and turns on
/// MMU and caches.
pub fn enable_on_this_core() {
    let Some(&root) = RUN_ROOT.get().or(BOOT_ROOT.get()) else { crate::cpu::park() };
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

//! What the hypervisor's own stage 1 maps, and when (ISO-010). A speculative gadget in
//! EL2 can only reach what EL2's tables map, so partition memory is mapped only while
//! the hypervisor writes or checks it, and only on the core doing so:
//!
//! * the *boot view*, until the configuration is read: the image, the hypervisor's
//!   devices, and all RAM around the image (the bundle's place and size are not known
//!   yet). No partition runs while it is installed.
//! * the *run view*, on every core from then on: the image (text RX, rodata RO, data
//!   and stacks RW, guard pages unmapped), the devices, the boot bundle read-only (a
//!   restart reloads from it) and the firmware's spin-table release words. No partition
//!   memory at all.
//! * one *load view* per partition: the run view plus the memory loading writes (its
//!   RAM and the channel memory it writes), installed only on the core that loads or
//!   verifies that partition, and replaced by the run view (with TLB invalidation)
//!   before anything else runs there.

use septum_abi::config::{device_flags, PartitionDesc, Range, RegionKind};

use crate::pagetable::{Access, Arena, MapError, Mapping, MemType, Regime};

/// Where the linker put the hypervisor's sections.
#[derive(Clone, Copy, Debug)]
pub struct Image {
    pub start: u64,
    pub text_end: u64,
    pub rodata_end: u64,
    pub stacks_start: u64,
    pub stacks_end: u64,
    pub end: u64,
    /// Each core's stack, above its unmapped guard page.
    pub stack_size: u64,
    pub stack_guard: u64,
}

/// What every view maps besides RAM.
#[derive(Clone, Copy, Debug)]
pub struct Fixed<'a> {
    pub image: Image,
    /// Device-nGnRnE, read-write (the interrupt controller, the flash bank).
    pub devices: &'a [Range],
}

const REGIME: Regime = Regime::El2Stage1;

fn same(base: u64, size: u64, mem: MemType, access: Access) -> Mapping {
    Mapping::new(base, base, size, mem, access)
}

/// The image, stacks (without guard pages) and devices; returns the new root.
fn map_fixed(arena: &mut Arena<'_>, fixed: &Fixed<'_>) -> Result<usize, MapError> {
    let img = fixed.image;
    let stride = img.stack_guard + img.stack_size;
    if stride == 0 || !(img.stacks_end - img.stacks_start).is_multiple_of(stride) {
        return Err(MapError::Unaligned);
    }
    let root = arena.alloc()?;
    let normal = |base, size, access| same(base, size, MemType::Normal, access);
    arena.map(REGIME, root, normal(img.start, img.text_end - img.start, Access::RX))?;
    arena.map(REGIME, root, normal(img.text_end, img.rodata_end - img.text_end, Access::RO))?;
    arena.map(REGIME, root, normal(img.rodata_end, img.stacks_start - img.rodata_end, Access::RW))?;
    let mut stack = img.stacks_start;
    while stack < img.stacks_end {
        arena.map(REGIME, root, normal(stack + img.stack_guard, img.stack_size, Access::RW))?;
        stack += stride;
    }
    if img.end > img.stacks_end {
        arena.map(REGIME, root, normal(img.stacks_end, img.end - img.stacks_end, Access::RW))?;
    }
    for d in fixed.devices {
        arena.map(REGIME, root, same(d.base, d.size, MemType::Device, Access::RW))?;
    }
    Ok(root)
}

/// The boot view: [`Fixed`] and every part of `ram` outside the image, read-write.
pub fn boot_view(
    arena: &mut Arena<'_>,
    fixed: &Fixed<'_>,
    ram: impl Iterator<Item = Range>,
) -> Result<usize, MapError> {
    let root = map_fixed(arena, fixed)?;
    let (start, end) = (fixed.image.start, fixed.image.end);
    for ram in ram {
        let below = Range::new(ram.base, start.clamp(ram.base, ram.end()) - ram.base);
        let above_start = end.clamp(ram.base, ram.end());
        for part in [below, Range::new(above_start, ram.end() - above_start)] {
            if part.size > 0 {
                arena.map(REGIME, root, same(part.base, part.size, MemType::Normal, Access::RW))?;
            }
        }
    }
    Ok(root)
}

/// What the run view keeps of RAM outside the image.
#[derive(Clone, Copy, Debug)]
pub struct Kept<'a> {
    /// The boot bundle (pristine images for restarts): read-only.
    pub bundle: Range,
    /// Pages holding firmware spin-table release words: read-write.
    pub firmware: &'a [Range],
}

fn map_kept(arena: &mut Arena<'_>, root: usize, kept: &Kept<'_>) -> Result<(), MapError> {
    let page = |r: Range| {
        let base = r.base & !0xFFF;
        Range::new(base, ((r.end() + 0xFFF) & !0xFFF) - base)
    };
    let bundle = page(kept.bundle);
    arena.map(REGIME, root, same(bundle.base, bundle.size, MemType::Normal, Access::RO))?;
    for &f in kept.firmware {
        let f = page(f);
        // Firmware pages are reserved apart from the bundle (the configuration check
        // keeps them apart); an overlap would be refused here as a double mapping.
        arena.map(REGIME, root, same(f.base, f.size, MemType::Normal, Access::RW))?;
    }
    Ok(())
}

/// The run view.
pub fn run_view(arena: &mut Arena<'_>, fixed: &Fixed<'_>, kept: &Kept<'_>) -> Result<usize, MapError> {
    let root = map_fixed(arena, fixed)?;
    map_kept(arena, root, kept)?;
    Ok(root)
}

/// The memory loading a partition writes: its RAM and the channel memory it writes.
/// (Channel memory it only reads is its peer's and left alone.)
pub fn load_regions(desc: &PartitionDesc) -> impl Iterator<Item = Range> + '_ {
    desc.regions()
        .iter()
        .filter(|r| matches!(r.kind(), Some(RegionKind::Ram | RegionKind::SharedRw)))
        .map(|r| Range::new(r.pa, r.size))
}

/// The device windows the hypervisor reaches while a partition is stopped: a PCIe host
/// bridge's configuration space, where it turns bus mastering off before the
/// partition's memory is reloaded (DMA-004).
pub fn quiesce_regions(desc: &PartitionDesc) -> impl Iterator<Item = Range> + '_ {
    desc.regions()
        .iter()
        .filter(|r| r.kind() == Some(RegionKind::Device) && r.param & device_flags::PCI_ECAM != 0)
        .map(|r| Range::new(r.pa, r.size))
}

/// The load view of `desc`: the run view, [`load_regions`] read-write, and
/// [`quiesce_regions`] as Device memory.
pub fn load_view(
    arena: &mut Arena<'_>,
    fixed: &Fixed<'_>,
    kept: &Kept<'_>,
    desc: &PartitionDesc,
) -> Result<usize, MapError> {
    let root = run_view(arena, fixed, kept)?;
    for r in load_regions(desc) {
        arena.map(REGIME, root, same(r.base, r.size, MemType::Normal, Access::RW))?;
    }
    for r in quiesce_regions(desc) {
        arena.map(REGIME, root, same(r.base, r.size, MemType::Device, Access::RW))?;
    }
    Ok(root)
}

/// The lowest address `root` maps inside any of `ranges`, if any: the boot-time check
/// that the run view holds no partition memory.
pub fn first_mapped_in(arena: &Arena<'_>, root: usize, ranges: impl Iterator<Item = Range> + Clone) -> Option<u64> {
    let mut found: Option<u64> = None;
    arena.for_each_leaf(root, &mut |va, size, _| {
        for r in ranges.clone() {
            let (lo, hi) = (va.max(r.base), (va + size).min(r.end()));
            if lo < hi && found.is_none_or(|f| lo < f) {
                found = Some(lo);
            }
        }
    });
    found
}

/// The mapped ranges under `root`, adjacent leaves merged: (start, end).
pub fn mapped_ranges(arena: &Arena<'_>, root: usize, mut f: impl FnMut(u64, u64)) {
    let mut run: Option<(u64, u64)> = None;
    arena.for_each_leaf(root, &mut |va, size, _| match run {
        Some((s, e)) if e == va => run = Some((s, e + size)),
        _ => {
            if let Some((s, e)) = run {
                f(s, e);
            }
            run = Some((va, va + size));
        }
    });
    if let Some((s, e)) = run {
        f(s, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagetable::Table;
    use septum_abi::config::MemRegion;
    use std::vec;
    use std::vec::Vec;
    use zerocopy::FromZeros;

    const MB: u64 = 1 << 20;

    /// A layout like QEMU virt's: the image at 0x4008_0000, two partitions' RAM above,
    /// a channel between them, the bundle at 0x4800_0000.
    fn fixed() -> Fixed<'static> {
        Fixed {
            image: Image {
                start: 0x4008_0000,
                text_end: 0x400A_0000,
                rodata_end: 0x400B_0000,
                stacks_start: 0x4010_0000,
                stacks_end: 0x4010_0000 + 2 * 0x2_1000,
                end: 0x4030_0000,
                stack_size: 0x2_0000,
                stack_guard: 0x1000,
            },
            devices: &[Range { base: 0x0800_0000, size: 0x1_0000 }, Range { base: 0x0400_0000, size: 64 * MB }],
        }
    }

    const BUNDLE: Range = Range { base: 0x4800_0000, size: 0x12_3456 };
    const SPIN: [Range; 1] = [Range { base: 0xD8, size: 8 }];

    fn partition(ram: Range, channel: (Range, RegionKind)) -> PartitionDesc {
        let region = |kind: RegionKind, r: Range, ipa| MemRegion {
            pa: r.base,
            ipa,
            size: r.size,
            kind: kind as u32,
            param: 0,
            signal_partition: 0,
            signal_intid: 0,
        };
        let mut d = PartitionDesc::new_zeroed();
        d.regions[0] = region(RegionKind::Ram, ram, 0x4000_0000);
        d.regions[1] = region(channel.1, channel.0, 0x1000_0000);
        d.region_count = 2;
        d
    }

    const CRIT: Range = Range { base: 0x5000_0000, size: 16 * MB };
    const CONN: Range = Range { base: 0x6000_0000, size: 64 * MB };
    const CHANNEL: Range = Range { base: 0x5F00_0000, size: 0x10_0000 };

    /// ISO-010: at run time EL2 maps its image, its devices, the bundle (read-only)
    /// and the spin-table page, and no byte of any partition's memory; a partition's
    /// load view adds exactly the memory its loading writes.
    #[test]
    fn run_view_maps_no_partition_memory_and_load_views_only_their_own() {
        let mut tables = vec![Table::EMPTY; 64];
        let mut arena = Arena::new(&mut tables, 0x4020_0000);
        let kept = Kept { bundle: BUNDLE, firmware: &SPIN };
        let run = run_view(&mut arena, &fixed(), &kept).unwrap();
        let crit_desc = partition(CRIT, (CHANNEL, RegionKind::SharedRw));
        let conn_desc = partition(CONN, (CHANNEL, RegionKind::SharedRo));
        let load_crit = load_view(&mut arena, &fixed(), &kept, &crit_desc).unwrap();
        let load_conn = load_view(&mut arena, &fixed(), &kept, &conn_desc).unwrap();
        // Each view is a handful of tables: the pool sized in `stage1` suffices.
        assert!(arena.used() <= 3 * 12, "{} tables", arena.used());

        let all = [CRIT, CONN, CHANNEL];
        assert_eq!(first_mapped_in(&arena, run, all.iter().copied()), None);
        let rights = |root, va| arena.translate(root, va).map(|(_, a)| (a >> 6) & 0b11);
        const RW: u64 = 0b01;
        const RO: u64 = 0b11;
        assert_eq!(rights(run, 0x4008_0000), Some(RO), "text");
        assert_eq!(rights(run, 0x400C_0000), Some(RW), "data");
        assert_eq!(rights(run, 0x4010_0000), None, "guard page");
        assert_eq!(rights(run, 0x4010_1000), Some(RW), "stack");
        assert_eq!(rights(run, BUNDLE.base), Some(RO), "bundle");
        assert_eq!(rights(run, BUNDLE.end() - 1), Some(RO), "bundle's last page");
        assert_eq!(rights(run, BUNDLE.end() + 0x1000), None, "past the bundle");
        assert_eq!(rights(run, 0), Some(RW), "spin-table page");
        assert_eq!(rights(run, 0x0800_0000), Some(RW), "GIC");
        assert_eq!(rights(run, 0x4400_0000), None, "other RAM");

        assert_eq!(rights(load_crit, CRIT.base), Some(RW));
        assert_eq!(rights(load_crit, CHANNEL.base), Some(RW), "the channel it writes");
        assert_eq!(first_mapped_in(&arena, load_crit, [CONN].into_iter()), None);
        assert_eq!(rights(load_conn, CONN.end() - 1), Some(RW));
        assert_eq!(first_mapped_in(&arena, load_conn, [CRIT, CHANNEL].into_iter()), None, "its peer's memory");
        assert_eq!(first_mapped_in(&arena, load_conn, [CONN].into_iter()), Some(CONN.base));

        let mut ranges = Vec::new();
        mapped_ranges(&arena, run, |s, e| ranges.push((s, e)));
        assert_eq!(ranges.first(), Some(&(0, 0x1000)));
        assert!(ranges.contains(&(0x4800_0000, 0x4812_4000)), "{ranges:x?}");
    }

    /// BOOT-001: the boot view keeps the image's rights and maps the rest of RAM
    /// read-write, never executable.
    #[test]
    fn boot_view_maps_ram_around_the_image() {
        let mut tables = vec![Table::EMPTY; 32];
        let mut arena = Arena::new(&mut tables, 0);
        let root = boot_view(&mut arena, &fixed(), [Range::new(0x4000_0000, 1 << 30)].into_iter()).unwrap();
        assert_eq!(arena.translate(root, 0x4000_0000).map(|(_, a)| (a >> 6) & 3), Some(0b01));
        assert_eq!(arena.translate(root, 0x4008_0000).map(|(_, a)| (a >> 6) & 3), Some(0b11));
        assert_ne!(arena.translate(root, 0x6000_0000).unwrap().1 & (1 << 54), 0, "never executable");
        assert_eq!(arena.translate(root, 0x4010_0000), None, "guard page");
    }
}

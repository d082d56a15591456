//! A partition's pristine image and device tree: copied from the boot bundle into its
//! zeroed RAM, then verified where they lie against the signed manifest, at boot and
//! on every restart. The caller guarantees the partition does not run meanwhile (at
//! boot: no core has started; on a restart: `power::stop` waited until every core of
//! the partition left its guest), and holds the partition's load view
//! (`stage1::load_view`): outside it EL2 maps no partition memory (ISO-010).

use septum_abi::bundle::{Bundle, EntryKind};
use septum_abi::config::{MemRegion, PartitionDesc, RegionKind, DTB_MAX};
use septum_core::vcpu::Start;
use septum_trust::boot::{InRam, Payload, PayloadFault, Refusal};
use septum_trust::format::RootBody;
use septum_trust::hash::Hash;
use septum_trust::verify::Placement;

use crate::cpu;

#[derive(Clone, Copy, Debug)]
pub enum LoadError {
    Stage2(septum_core::pagetable::MapError),
    /// The partition is not started: a payload of its is missing, corrupted or too
    /// large, or the chain of trust refused what was loaded.
    Refused(Refusal),
    /// More partitions than the hypervisor's table holds.
    NoSlot,
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Stage2(e) => write!(f, "stage-2 tables: {e:?}"),
            LoadError::Refused(r) => write!(f, "{r}"),
            LoadError::NoSlot => write!(f, "no room in the partition table"),
        }
    }
}

/// The boot vCPU's start: the image's entry, its device tree in `x0`.
pub fn boot_start(desc: &PartitionDesc) -> Start {
    Start { entry: desc.entry_ipa, x0: desc.dtb_ipa }
}

/// Loads partition `index` from `bundle` and verifies it where it lies; the result is
/// its manifest's security counter. The partition must not be running.
pub fn load_and_verify(
    desc: &PartitionDesc,
    index: usize,
    bundle: &Bundle<'_>,
    root: &RootBody,
    config_hash: &Hash,
) -> Result<u64, LoadError> {
    load(desc, index, bundle)?;
    verify_loaded(desc, index, bundle, root, config_hash)
}

/// Verifies partition `index`'s image and device tree where `load` put them; the result
/// is its manifest's security counter.
fn verify_loaded(
    desc: &PartitionDesc,
    index: usize,
    bundle: &Bundle<'_>,
    root: &RootBody,
    config_hash: &Hash,
) -> Result<u64, LoadError> {
    let len = |kind| bundle.payload_len(kind, index as u32).unwrap_or(0) as usize;
    let pa = |what, ipa| desc.ram_ipa_to_pa(ipa).ok_or(too_large(what));
    let (image_pa, dtb_pa) = (pa(Payload::Image, desc.image_ipa)?, pa(Payload::DeviceTree, desc.dtb_ipa)?);
    // SAFETY: `load` just copied the image and the device tree there, inside this
    // partition's validated RAM; the partition is not running (this module's contract)
    // and the views end with this call.
    let in_ram = unsafe {
        InRam {
            image: crate::physmem::partition_bytes(image_pa, len(EntryKind::Image)),
            dtb: crate::physmem::partition_bytes(dtb_pa, len(EntryKind::DeviceTree)),
        }
    };
    let placement = Placement { load_ipa: desc.image_ipa, entry_ipa: desc.entry_ipa, dtb_ipa: desc.dtb_ipa };
    crate::trust::verify_partition(root, bundle, index, desc.name(), config_hash, placement, in_ram)
        .map(|m| m.security_counter)
        .map_err(LoadError::Refused)
}

fn too_large(what: Payload) -> LoadError {
    LoadError::Refused(Refusal::Payload(what, PayloadFault::TooLarge))
}

/// Its RAM and the channel memory it writes; channel memory it only reads belongs to
/// the peer and is left alone.
fn own(r: &&MemRegion) -> bool {
    matches!(r.kind(), Some(RegionKind::Ram | RegionKind::SharedRw))
}

/// Zeroes the partition's RAM and copies in its image and device tree from the bundle
/// (CRC-checked on every load), then cleans them to the point of coherency.
fn load(desc: &PartitionDesc, index: usize, bundle: &Bundle<'_>) -> Result<(), LoadError> {
    let image = crate::trust::payload(bundle, Payload::Image, index).map_err(LoadError::Refused)?;
    let dtb = crate::trust::payload(bundle, Payload::DeviceTree, index).map_err(LoadError::Refused)?;
    scrub(desc);
    // Validation put the image inside the partition's RAM and reserved DTB_MAX bytes for
    // the device tree; check the actual sizes against that, translate, then copy.
    if dtb.len() as u64 > DTB_MAX {
        return Err(too_large(Payload::DeviceTree));
    }
    for (what, ipa, data) in [(Payload::Image, desc.image_ipa, image), (Payload::DeviceTree, desc.dtb_ipa, dtb)] {
        let pa = desc.ram_ipa_to_pa(ipa).filter(|_| desc.ram_contains(ipa, data.len() as u64));
        let Some(pa) = pa else { return Err(too_large(what)) };
        // SAFETY: inside this partition's validated RAM, which is not running (this
        // module's contract); the bundle is elsewhere (reserved memory), so the ranges
        // do not overlap.
        unsafe { crate::physmem::copy_in(pa, data) };
    }
    for r in desc.regions().iter().filter(own) {
        cpu::clean_dcache_range(r.pa, r.size);
    }
    cpu::invalidate_icache();
    Ok(())
}

/// Zeroes the memory the partition owns (its RAM, the channel memory it writes): before
/// a load, and after a refused one, so nothing unverified stays behind. A reading peer
/// sees zeros, which the channel protocol treats as any other bytes.
pub fn scrub(desc: &PartitionDesc) {
    for r in desc.regions().iter().filter(own) {
        // SAFETY: validated memory of this partition only (channel regions it writes are
        // shared solely with readers), and the partition is not running (this module's
        // contract).
        unsafe { crate::physmem::zero(r.pa, r.size) };
    }
}

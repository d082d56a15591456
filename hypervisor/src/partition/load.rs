//! A partition's pristine image and device tree: copied from the boot bundle into its
//! zeroed RAM, then verified where they lie against the signed manifest, at boot and
//! on every restart. The caller guarantees the partition does not run meanwhile (at
//! boot: no core has started; on a restart: `power::stop` waited until every core of
//! the partition left its guest), and holds the partition's load view
//! (`stage1::load_view`): outside it EL2 maps no partition memory (ISO-010).

use septum_abi::bundle::{Bundle, EntryKind};
use septum_abi::config::{MemRegion, PartitionDesc, RegionKind, DTB_MAX};
use septum_core::vcpu::Start;
use septum_trust::format::RootBody;
use septum_trust::hash::Hash;
use septum_trust::verify::TrustError;

use crate::cpu;

#[derive(Clone, Copy, Debug)]
pub enum LoadError {
    Bundle(septum_abi::bundle::BundleError),
    Stage2(septum_core::pagetable::MapError),
    /// The image or device tree does not fit where the configuration puts it.
    TooLarge(&'static str),
    /// The image in its RAM is not what its signed manifest names.
    Refused(TrustError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Bundle(e) => write!(f, "{e}"),
            LoadError::Stage2(e) => write!(f, "stage-2 tables: {e:?}"),
            LoadError::TooLarge(what) => write!(f, "its {what} does not fit where the configuration puts it"),
            LoadError::Refused(e) => write!(f, "image refused: {e}"),
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

/// Verifies partition `index`'s image where `load` put it; the result is its manifest's
/// security counter.
fn verify_loaded(
    desc: &PartitionDesc,
    index: usize,
    bundle: &Bundle<'_>,
    root: &RootBody,
    config_hash: &Hash,
) -> Result<u64, LoadError> {
    let len = bundle.payload_len(EntryKind::Image, index as u32).unwrap_or(0) as usize;
    let pa = desc.ram_ipa_to_pa(desc.image_ipa).ok_or(LoadError::TooLarge("image"))?;
    // SAFETY: `load` just copied the image to `[pa, pa+len)`, inside this partition's
    // validated RAM; the partition is not running (this module's contract) and the
    // view ends with this call.
    let in_ram = unsafe { crate::physmem::partition_bytes(pa, len) };
    crate::trust::verify_partition(root, bundle, index, desc.name(), config_hash, in_ram)
        .map(|m| m.security_counter)
        .map_err(LoadError::Refused)
}

/// Its RAM and the channel memory it writes; channel memory it only reads belongs to
/// the peer and is left alone.
fn own(r: &&MemRegion) -> bool {
    matches!(r.kind(), Some(RegionKind::Ram | RegionKind::SharedRw))
}

/// Zeroes the partition's RAM and copies in its image and device tree from the bundle
/// (CRC-checked on every load), then cleans them to the point of coherency.
fn load(desc: &PartitionDesc, index: usize, bundle: &Bundle<'_>) -> Result<(), LoadError> {
    let image = bundle.payload(EntryKind::Image, index as u32).map_err(LoadError::Bundle)?;
    let dtb = bundle.payload(EntryKind::DeviceTree, index as u32).map_err(LoadError::Bundle)?;
    scrub(desc);
    // Validation put the image inside the partition's RAM and reserved DTB_MAX bytes for
    // the device tree; check the actual sizes against that, translate, then copy.
    if dtb.len() as u64 > DTB_MAX {
        return Err(LoadError::TooLarge("device tree"));
    }
    for (what, ipa, data) in [("image", desc.image_ipa, image), ("device tree", desc.dtb_ipa, dtb)] {
        let pa = desc.ram_ipa_to_pa(ipa).filter(|_| desc.ram_contains(ipa, data.len() as u64));
        let Some(pa) = pa else { return Err(LoadError::TooLarge(what)) };
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

//! Turns a linked ELF into a load image: the bytes from its lowest to its highest loaded
//! address, with its load address and entry point. (BSS is zero because the hypervisor
//! zeroes a partition's RAM before loading it.)

use object::{Object, ObjectSegment};
use septum_abi::config::Range;

#[derive(Debug, Clone)]
pub struct LoadImage {
    pub load: u64,
    pub entry: u64,
    pub bytes: Vec<u8>,
}

pub fn from_elf(elf: &[u8]) -> Result<LoadImage, String> {
    let file = object::File::parse(elf).map_err(|e| format!("not an ELF: {e}"))?;
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    let mut segments = Vec::new();
    for seg in file.segments() {
        let data = seg.data().map_err(|e| e.to_string())?;
        if data.is_empty() {
            continue;
        }
        let addr = seg.address();
        lo = lo.min(addr);
        hi = hi.max(addr + data.len() as u64);
        segments.push((addr, data));
    }
    if segments.is_empty() {
        return Err("ELF has no loadable bytes".into());
    }
    let mut bytes = vec![0u8; (hi - lo) as usize];
    for (addr, data) in segments {
        let off = (addr - lo) as usize;
        bytes[off..off + data.len()].copy_from_slice(data);
    }
    Ok(LoadImage { load: lo, entry: file.entry(), bytes })
}

/// The fields of an arm64 `Image` header (Linux's Documentation/arch/arm64/booting.rst)
/// a loader uses: `text_offset` (byte 8), `image_size` (byte 16: the whole footprint,
/// BSS included) and `flags` (byte 24); the magic "ARM\x64" is at byte 56.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    pub image_size: u64,
    pub flags: u64,
}

const ARM64_HEADER_LEN: usize = 64;
const ARM64_MAGIC_AT: usize = 56;
const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";
/// Kernels load at a 2 MiB-aligned base plus `text_offset`.
pub const ARM64_ALIGN: u64 = 2 << 20;
/// `flags` bit 3: the 2 MiB aligned base may be anywhere in RAM (else: as low as possible).
pub const FLAG_ANYWHERE: u64 = 1 << 3;

/// Whether `bytes` start with an arm64 `Image` header.
pub fn is_arm64_image(bytes: &[u8]) -> bool {
    bytes.get(ARM64_MAGIC_AT..ARM64_MAGIC_AT + 4) == Some(ARM64_MAGIC)
}

impl ImageHeader {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < ARM64_HEADER_LEN || !is_arm64_image(bytes) {
            return Err("not an arm64 Image (no \"ARM\\x64\" magic at byte 56)".into());
        }
        let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let h = Self { text_offset: field(8), image_size: field(16), flags: field(24) };
        // image_size 0 marks kernels older than 3.17: their footprint is not stated.
        if h.image_size == 0 {
            return Err("arm64 Image states no image_size (a kernel older than 3.17): not supported".into());
        }
        if h.image_size < bytes.len() as u64 {
            return Err(format!(
                "arm64 Image: image_size {:#x} is smaller than the file ({:#x})",
                h.image_size,
                bytes.len()
            ));
        }
        Ok(h)
    }

    /// Where a loader following the arm64 boot protocol puts the Image with its base as
    /// low as possible in RAM starting at `ram_base`: the first 2 MiB boundary there plus
    /// `text_offset`. (U-Boot's `booti` does exactly this when `flags` bit 3 is clear.)
    pub fn load_address(&self, ram_base: u64) -> u64 {
        ram_base.next_multiple_of(ARM64_ALIGN) + self.text_offset
    }

    /// The memory the Image occupies once running at `load`.
    pub fn footprint(&self, load: u64) -> Range {
        Range::new(load, self.image_size)
    }
}

/// A kernel laid out for boot, with its initrd's place (`[start, end)` IPAs) if any.
#[derive(Debug, Clone)]
pub struct KernelImage {
    pub image: LoadImage,
    pub initrd: Option<(u64, u64)>,
}

/// Lays out an arm64 `Image` (and an optional initrd) as one load image at the first
/// 2 MiB boundary of the partition's RAM plus the kernel's `text_offset`. The initrd
/// follows the kernel's whole footprint (`image_size`, which includes its BSS), page
/// aligned, so signing the load image signs both and the kernel never overlaps it.
pub fn from_arm64_image(kernel: &[u8], initrd: Option<&[u8]>, ram_ipa: u64) -> Result<KernelImage, String> {
    let header = ImageHeader::parse(kernel)?;
    let image_size = header.image_size;
    let load = header.load_address(ram_ipa);
    let mut bytes = kernel.to_vec();
    let initrd = match initrd {
        None => None,
        Some(rd) => {
            let at = image_size.next_multiple_of(4096);
            bytes.resize(at as usize, 0);
            bytes.extend_from_slice(rd);
            Some((load + at, load + at + rd.len() as u64))
        }
    };
    Ok(KernelImage { image: LoadImage { load, entry: load, bytes }, initrd })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_kernel(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut k = vec![0xAAu8; len];
        k[8..16].copy_from_slice(&text_offset.to_le_bytes());
        k[16..24].copy_from_slice(&image_size.to_le_bytes());
        k[56..60].copy_from_slice(ARM64_MAGIC);
        k
    }

    #[test]
    fn initrd_follows_the_kernel_footprint_page_aligned() {
        let k = fake_kernel(0, 0x2345, 0x1000);
        let out = from_arm64_image(&k, Some(b"initrd"), 0x4000_0000).unwrap();
        assert_eq!(out.image.load, 0x4000_0000);
        assert_eq!(out.image.entry, 0x4000_0000);
        assert_eq!(out.initrd, Some((0x4000_3000, 0x4000_3006)));
        assert_eq!(&out.image.bytes[0x3000..], b"initrd");
        assert!(out.image.bytes[0x1000..0x3000].iter().all(|&b| b == 0), "BSS and padding are zero");
    }

    #[test]
    fn text_offset_and_alignment_place_the_kernel() {
        let k = fake_kernel(0x8_0000, 0x1000, 0x1000);
        let out = from_arm64_image(&k, None, 0x4010_0000).unwrap();
        assert_eq!(out.image.load, 0x4028_0000);
        assert_eq!(out.initrd, None);
        assert_eq!(out.image.bytes.len(), 0x1000);
    }

    #[test]
    fn refuses_what_is_not_a_kernel_it_can_place() {
        assert!(from_arm64_image(&[0u8; 64], None, 0).is_err());
        assert!(from_arm64_image(&fake_kernel(0, 0, 0x100), None, 0).unwrap_err().contains("image_size"));
        assert!(from_arm64_image(&fake_kernel(0, 0x10, 0x100), None, 0).unwrap_err().contains("smaller"));
    }
}

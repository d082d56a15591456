//! Turns a linked ELF into a load image: the bytes from its lowest to its highest loaded
//! address, with its load address and entry point. (BSS is zero because the hypervisor
//! zeroes a partition's RAM before loading it.)

use object::{Object, ObjectSegment};

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

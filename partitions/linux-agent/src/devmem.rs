//! Physical memory through `/dev/mem`, and the `mmap` that `chardev` shares: with
//! `chardev`, the agent's only `unsafe`.
//!
//! The channel regions and doorbell pages lie outside the partition's System RAM, so a
//! kernel with `STRICT_DEVMEM` (Debian's) lets root map them; opened with `O_SYNC`, Linux
//! maps them as Device memory, where every access must be aligned: the regions are
//! reached only through [`VolatileRegion`] (32-bit index words, 16-byte `LDP`/`STP`
//! copies, all aligned) and the doorbell through one aligned 32-bit store. Mappings are
//! never unmapped: the agent makes a handful at start and keeps them until it exits.
#![allow(unsafe_code)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use septum_ipc_channel::volatile::VolatileRegion;

pub const DEV_MEM: &str = "/dev/mem";

/// Bytes of a doorbell (one page of the hypervisor's 4 KiB granule).
pub const DOORBELL_SIZE: u64 = 4096;

/// Whether a mapping may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Why a range could not be mapped.
#[derive(Debug)]
pub enum MapError {
    /// The address or size is not a multiple of the page size.
    Unaligned { page: usize },
    /// Empty, or beyond what `mmap` can take.
    BadRange,
    /// `mmap` failed.
    Os(io::Error),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Unaligned { page } => write!(f, "not aligned to the {page}-byte page size"),
            MapError::BadRange => write!(f, "empty or out of range"),
            MapError::Os(e) => write!(f, "mmap failed: {e}"),
        }
    }
}

/// Checks that `[addr, addr+size)` can be mapped whole with pages of `page` bytes, and
/// returns `mmap`'s offset and length.
pub fn check_mappable(addr: u64, size: u64, page: usize) -> Result<(libc::off_t, usize), MapError> {
    let page64 = page as u64;
    if page == 0 || !addr.is_multiple_of(page64) || !size.is_multiple_of(page64) {
        return Err(MapError::Unaligned { page });
    }
    let offset = libc::off_t::try_from(addr).map_err(|_| MapError::BadRange)?;
    let len = usize::try_from(size).map_err(|_| MapError::BadRange)?;
    if len == 0 || addr.checked_add(size).is_none() {
        return Err(MapError::BadRange);
    }
    Ok((offset, len))
}

/// The kernel's page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|n| n.is_power_of_two()).unwrap_or(4096)
}

/// An open `/dev/mem` (or a channel device: offsets are then the driver's, not
/// physical addresses).
pub struct DevMem {
    pub(crate) file: File,
    page: usize,
}

impl DevMem {
    pub fn open() -> io::Result<Self> {
        Self::open_at(Path::new(DEV_MEM))
    }

    /// Another file standing for physical memory: a channel device, or a plain file in
    /// tests.
    pub(crate) fn open_at(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_SYNC).open(path)?;
        Ok(Self { file, page: page_size() })
    }

    /// Maps `[addr, addr+size)` for the rest of the program's life.
    fn map(&self, addr: u64, size: u64, access: Access) -> Result<*mut u32, MapError> {
        let (offset, len) = check_mappable(addr, size, self.page)?;
        let prot = match access {
            Access::ReadOnly => libc::PROT_READ,
            Access::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        // SAFETY: a new mapping at an address the kernel picks (no MAP_FIXED), so no
        // memory this program uses is replaced; offset and length are checked above.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, self.file.as_raw_fd(), offset) };
        if p == libc::MAP_FAILED {
            return Err(MapError::Os(io::Error::last_os_error()));
        }
        Ok(p.cast())
    }

    /// A channel region. The protocol only ever stores to a side's own region, so the
    /// peer's may (and should) be mapped [`Access::ReadOnly`].
    pub fn region(&self, addr: u64, size: u64, access: Access) -> Result<VolatileRegion, MapError> {
        let p = self.map(addr, size, access)?;
        // SAFETY: `p` is a page-aligned mapping of `size` bytes that is never unmapped,
        // so valid for the handle's whole life, and nothing else in this program refers
        // to it. A read-only mapping is only handed to the protocol as a peer region,
        // which it loads from and never stores to.
        Ok(unsafe { VolatileRegion::new(p as usize, size as usize) })
    }

    /// A doorbell page.
    pub fn doorbell(&self, addr: u64) -> Result<Doorbell, MapError> {
        let size = DOORBELL_SIZE.max(self.page as u64);
        Ok(Doorbell { word: self.map(addr, size, Access::ReadWrite)? })
    }
}

/// A mapped doorbell page: a store to it traps to the hypervisor, which signals the peer.
pub struct Doorbell {
    word: *mut u32,
}

impl Doorbell {
    pub fn ring(&self) {
        // SAFETY: `word` is the page-aligned start of a read-write mapping that is never
        // unmapped; there is no memory behind it (the hypervisor traps the store).
        unsafe { self.word.write_volatile(1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use septum_ipc_channel::Checksum;

    #[test]
    fn only_whole_pages_map() {
        assert_eq!(check_mappable(0x4F00_0000, 0x11000, 4096).ok(), Some((0x4F00_0000, 0x11000)));
        assert!(matches!(check_mappable(0x4F00_0800, 0x1000, 4096), Err(MapError::Unaligned { page: 4096 })));
        assert!(matches!(check_mappable(0x4F00_0000, 0x800, 4096), Err(MapError::Unaligned { page: 4096 })));
        assert!(matches!(check_mappable(0x4F00_1000, 0x1000, 0x10000), Err(MapError::Unaligned { page: 0x10000 })));
        assert!(matches!(check_mappable(0x4F00_0000, 0, 4096), Err(MapError::BadRange)));
        assert!(matches!(check_mappable(u64::MAX - 4095, 4096, 4096), Err(MapError::BadRange)));
        assert!(page_size().is_power_of_two());
    }

    /// The real mapping code over a plain file: offsets, protections, the doorbell store.
    #[test]
    fn maps_a_file_as_it_would_dev_mem() {
        use septum_ipc_channel::queuing::{Consumer, Producer};
        use septum_ipc_channel::{Geometry, Shared};

        let dir = crate::dt::tests::TempDir::new("devmem");
        let path = dir.0.join("mem");
        let page = page_size() as u64;
        std::fs::write(&path, vec![0u8; 4 * page as usize]).unwrap();
        let mem = DevMem::open_at(&path).unwrap();
        let geo = Geometry::new(32, 2).unwrap();
        let (prod, cons, bell) = (page, 2 * page, 3 * page);
        let mut rx = Consumer::new(
            geo,
            Checksum::Crc32c,
            mem.region(cons, page, Access::ReadWrite).unwrap(),
            mem.region(prod, page, Access::ReadOnly).unwrap(),
        )
        .unwrap();
        let mut tx = Producer::new(
            geo,
            Checksum::Crc32c,
            mem.region(prod, page, Access::ReadWrite).unwrap(),
            mem.region(cons, page, Access::ReadOnly).unwrap(),
        )
        .unwrap();
        tx.send(&7u64.to_le_bytes()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf), Ok(8));
        assert_eq!(buf[..8], 7u64.to_le_bytes());
        assert_eq!(mem.region(prod, page, Access::ReadOnly).unwrap().size(), page as usize);
        mem.doorbell(bell).unwrap().ring();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[..page as usize], vec![0u8; page as usize][..], "nothing outside the regions");
        assert_eq!(&bytes[prod as usize..prod as usize + 4], b"SQPR", "the producer header, through the mapping");
        assert_eq!(&bytes[cons as usize..cons as usize + 4], b"SQCO");
        assert_eq!(bytes[bell as usize..bell as usize + 8], [1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(mem.region(prod + 8, page, Access::ReadOnly), Err(MapError::Unaligned { .. })));
    }
}

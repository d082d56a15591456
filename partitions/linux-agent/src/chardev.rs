//! A channel end through the `septum_channel` kernel module
//! (`partitions/linux-agent/kmod/septum_channel.c`): `/dev/septum/<label>`. The device
//! maps the end's own region at offset 0 and the peer's, read-only, right after it;
//! a 4-byte `write` rings the peer; `poll` says a doorbell interrupt came, and a
//! 4-byte `read` takes it (returning the count). The agent sleeps in `poll` rather
//! than polling the queues.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use septum_ipc_channel::volatile::VolatileRegion;

use crate::devmem::{Access, DevMem, MapError};

pub const DIR: &str = "/dev/septum";

/// `/dev/septum/<label>`.
pub fn path(label: &str) -> PathBuf {
    Path::new(DIR).join(label)
}

/// One end's device, open read-write.
pub struct Device {
    mem: DevMem,
    path: PathBuf,
}

impl Device {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self { mem: DevMem::open_at(path)?, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps the own region (`own_size` bytes) read-write and the peer's (`peer_size`)
    /// read-only, at the offsets the driver gives them.
    pub fn regions(&self, own_size: u64, peer_size: u64) -> Result<(VolatileRegion, VolatileRegion), MapError> {
        let own = self.mem.region(0, own_size, Access::ReadWrite)?;
        let peer = self.mem.region(own_size, peer_size, Access::ReadOnly)?;
        Ok((own, peer))
    }

    /// Rings the peer (the driver stores to the doorbell page, which traps).
    pub fn ring(&self) -> io::Result<()> {
        let n = (&self.mem.file).write(&1u32.to_ne_bytes())?;
        if n == 4 {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::WriteZero, "short write"))
        }
    }

    /// Takes the pending doorbell interrupts: blocks until there is one, then returns
    /// the device's interrupt count.
    pub fn take(&self) -> io::Result<u32> {
        let mut count = [0u8; 4];
        (&self.mem.file).read_exact(&mut count)?;
        Ok(u32::from_ne_bytes(count))
    }

    fn file(&self) -> &File {
        &self.mem.file
    }
}

/// Sleeps until one of `devices` has a doorbell interrupt pending or `timeout` has
/// passed (rounded up to a millisecond), then takes the pending interrupts. A signal
/// ends the wait early, harmlessly: the caller's loop runs again.
pub fn wait(devices: &[&Device], timeout: Duration) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> =
        devices.iter().map(|d| libc::pollfd { fd: d.file().as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a live, exclusively borrowed array of `fds.len()` pollfds, and
    // the descriptors stay open (the devices are borrowed) for the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
    }
    for (fd, device) in fds.iter().zip(devices) {
        if fd.revents & libc::POLLIN != 0 {
            device.take()?;
        }
        if fd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(io::Error::other(format!("{}: poll reports an error", device.path().display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devmem::page_size;
    use septum_ipc_channel::Shared;

    /// Over a plain file: the own region at offset 0, the peer's right after it; a
    /// ring is one 4-byte write; a pending "interrupt" (a readable file) is taken.
    #[test]
    fn maps_own_then_peer_and_rings_with_a_write() {
        let dir = crate::dt::tests::TempDir::new("chardev");
        let path = dir.0.join("vitals");
        let page = page_size() as u64;
        let mut bytes = vec![0u8; 3 * page as usize];
        bytes[0] = 0xAA;
        bytes[page as usize] = 0xBB;
        std::fs::write(&path, &bytes).unwrap();
        let dev = Device::open(&path).unwrap();
        let (own, peer) = dev.regions(page, 2 * page).unwrap();
        assert_eq!((own.size(), peer.size()), (page as usize, 2 * page as usize));
        let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
        own.read(0, &mut a);
        peer.read(0, &mut b);
        assert_eq!((a[0], b[0]), (0xAA, 0xBB));
        assert!(dev.regions(page / 2, page).is_err(), "whole pages only");
        dev.ring().unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[..4], 1u32.to_ne_bytes());
        // A regular file always polls readable: the wait returns and takes 4 bytes.
        wait(&[&dev], Duration::from_secs(5)).unwrap();
        assert_eq!(super::path("vitals"), Path::new("/dev/septum/vitals"));
    }
}

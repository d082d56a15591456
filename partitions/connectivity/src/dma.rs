//! DMA attacks (DMA-003): the hostile connectivity guest drives the `virtio-blk-pci`
//! disk controller on the PCIe host bridge it was given itself (legacy virtio over the
//! virtio 1.x registers in its memory BAR: no firmware, no driver) and points the buffer of a disk read
//! at an address of its choosing. The controller writes there by DMA, through the SMMU,
//! as the partition's stage 2 translates it: the critical monitor's RAM, the
//! hypervisor's memory, or any address outside the partition's map must each be a
//! fault the SMMU stops and the hypervisor answers with the partition's policy.
//!
//! Boot arguments: `pcie_ecam` (the host bridge's configuration window), and the
//! targets `dma_critical`, `dma_hypervisor`, `dma_outside` (physical addresses, which
//! is all a device knows).

use core::cell::UnsafeCell;
use core::fmt::Write;

use septum_guest::{counter, counter_hz, Boot};

/// PCI IDs of a modern virtio block device (QEMU's `virtio-blk-pci` with
/// `disable-legacy=on`: only so does QEMU route its DMA through the IOMMU).
const VIRTIO_VENDOR: u16 = 0x1AF4;
const VIRTIO_BLK: u16 = 0x1042;
/// Where the attack puts the controller's memory BAR (BAR4, 64-bit), in the host
/// bridge's 32-bit memory window.
const MEM_BAR: u64 = 0x1000_0000;

/// Virtio 1.x PCI transport (virtio spec 4.1.4): vendor capabilities, and the common
/// configuration's registers.
mod reg {
    pub const CAP_VENDOR: u8 = 0x09;
    pub const CAP_COMMON: u8 = 1;
    pub const CAP_NOTIFY: u8 = 2;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0C;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_ENABLE: u64 = 0x1C;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1E;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
}

/// A virtqueue's memory: descriptors, the available ring, and (page aligned) the used
/// ring, for up to [`MAX_QUEUE`] entries; then the request's header and status.
const MAX_QUEUE: usize = 256;
#[repr(C, align(4096))]
struct Rings(UnsafeCell<[u8; 4 * 4096]>);
// SAFETY: only vCPU 0 of this guest touches it (the attack runs there alone).
unsafe impl Sync for Rings {}
static RINGS: Rings = Rings(UnsafeCell::new([0; 4 * 4096]));
#[repr(C, align(64))]
struct Request(UnsafeCell<[u8; 64]>);
// SAFETY: as for `RINGS`.
unsafe impl Sync for Request {}
static REQUEST: Request = Request(UnsafeCell::new([0; 64]));

fn read16(at: u64) -> u16 {
    // SAFETY: `at` is in the partition's PCIe windows (configuration space, or the I/O
    // window where the attack placed the controller's registers), mapped as Device
    // memory by its stage 2.
    unsafe { core::ptr::read_volatile(at as *const u16) }
}

fn read32(at: u64) -> u32 {
    // SAFETY: as in `read16`.
    unsafe { core::ptr::read_volatile(at as *const u32) }
}

fn read8(at: u64) -> u8 {
    // SAFETY: as in `read16`.
    unsafe { core::ptr::read_volatile(at as *const u8) }
}

fn write16(at: u64, v: u16) {
    // SAFETY: as in `read16`.
    unsafe { core::ptr::write_volatile(at as *mut u16, v) }
}

fn write64(at: u64, v: u64) {
    write32(at, v as u32);
    write32(at + 4, (v >> 32) as u32);
}

fn write32(at: u64, v: u32) {
    // SAFETY: as in `read16`.
    unsafe { core::ptr::write_volatile(at as *mut u32, v) }
}

fn write8(at: u64, v: u8) {
    // SAFETY: as in `read16`.
    unsafe { core::ptr::write_volatile(at as *mut u8, v) }
}

/// Writes `bytes` at offset `at` of `buf` (the guest's own memory).
fn put(buf: *mut u8, at: usize, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: `buf` is one of this module's statics and every caller's offset lies
        // inside it; only this vCPU uses them.
        unsafe { core::ptr::write_volatile(buf.add(at + i), b) };
    }
}

/// Runs DMA attack `name` if it is one (never returns then: the SMMU's fault stops the
/// partition, or the attack says it was not contained).
pub fn attack(boot: &mut Boot, name: &str) {
    if name == "bar-outside" {
        return bar_outside(boot);
    }
    let target_arg = match name {
        "dma-critical" => "dma_critical",
        "dma-hypervisor" => "dma_hypervisor",
        "dma-outside" => "dma_outside",
        _ => return,
    };
    let (Some(ecam), Some(target)) = (boot.arg_u64("pcie_ecam"), boot.arg_u64(target_arg)) else {
        let _ = writeln!(boot.console, "connectivity: attack {name}: pcie_ecam or {target_arg} missing");
        return;
    };
    let Some(function) =
        (0..32u64).map(|dev| ecam + (dev << 15)).find(|&f| read16(f) == VIRTIO_VENDOR && read16(f + 2) == VIRTIO_BLK)
    else {
        let _ = writeln!(boot.console, "connectivity: attack {name}: no virtio-blk-pci controller");
        return;
    };
    // BAR4 (64-bit memory: the virtio structures), memory decoding and bus mastering on.
    write32(function + 0x20, MEM_BAR as u32);
    write32(function + 0x24, (MEM_BAR >> 32) as u32);
    write16(function + 0x04, 0b110);
    // The common configuration's and the notification area's places in BAR4.
    let (mut common, mut notify, mut multiplier) = (None, None, 0);
    let mut cap = u64::from(read8(function + 0x34));
    for _ in 0..32 {
        if cap == 0 {
            break;
        }
        let at = function + cap;
        if read8(at) == reg::CAP_VENDOR {
            let offset = u64::from(read32(at + 8));
            match read8(at + 3) {
                reg::CAP_COMMON => common = Some(MEM_BAR + offset),
                reg::CAP_NOTIFY => {
                    notify = Some(MEM_BAR + offset);
                    multiplier = u64::from(read32(at + 16));
                }
                _ => {}
            }
        }
        cap = u64::from(read8(at + 1));
    }
    let (Some(common), Some(notify)) = (common, notify) else {
        let _ = writeln!(boot.console, "connectivity: attack {name}: no virtio capabilities");
        return;
    };
    // Reset, acknowledge, driver; features VERSION_1 and ACCESS_PLATFORM (bits 32, 33).
    write8(common + reg::DEVICE_STATUS, 0);
    write8(common + reg::DEVICE_STATUS, 1 | 2);
    write32(common + reg::DRIVER_FEATURE_SELECT, 1);
    write32(common + reg::DRIVER_FEATURE, 0b11);
    write8(common + reg::DEVICE_STATUS, 1 | 2 | 8);
    write16(common + reg::QUEUE_SELECT, 0);
    let size = usize::from(read16(common + reg::QUEUE_SIZE)).min(MAX_QUEUE);
    write16(common + reg::QUEUE_SIZE, size as u16);
    let rings = RINGS.0.get().cast::<u8>();
    let request = REQUEST.0.get().cast::<u8>();
    // A read of sector 0 (header: type 0 "in", reserved, sector), into `target`, then a
    // status byte: three chained descriptors.
    put(request, 0, &[0; 16]);
    let (header, status) = (request as u64, request as u64 + 16);
    let desc = |i: usize, addr: u64, len: u32, flags: u16, next: u16| {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        put(rings, 16 * i, &d);
    };
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    desc(0, header, 16, NEXT, 1);
    desc(1, target, 512, NEXT | WRITE, 2);
    desc(2, status, 1, WRITE, 0);
    // The driver (available) ring: flags, idx = 1, ring[0] = 0; the device (used) ring
    // on the next page.
    let (avail, used) = (16 * size, 2 * 4096);
    put(rings, avail, &[0, 0, 1, 0, 0, 0]);
    // Said first: the controller may start on the queue as soon as it is enabled.
    let _ = writeln!(boot.console, "connectivity: attack {name}: the disk controller writes to {target:#x}");
    write64(common + reg::QUEUE_DESC, rings as u64);
    write64(common + reg::QUEUE_DRIVER, rings as u64 + avail as u64);
    write64(common + reg::QUEUE_DEVICE, rings as u64 + used);
    write16(common + reg::QUEUE_ENABLE, 1);
    let notify_at = notify + u64::from(read16(common + reg::QUEUE_NOTIFY_OFF)) * multiplier;
    write8(common + reg::DEVICE_STATUS, 1 | 2 | 8 | 4);
    write16(notify_at, 0);
    // The SMMU stops the write and the hypervisor this partition; a tenth of a second
    // more means it did not.
    let deadline = counter() + counter_hz() / 10;
    while counter() < deadline {
        core::hint::spin_loop();
    }
    let _ = writeln!(boot.console, "connectivity: attack {name} returned: NOT CONTAINED");
}

/// `bar-outside`: moves the disk controller's memory BAR to `bar_at` (a physical
/// address outside the host bridge's windows: the critical monitor's RAM) and touches
/// it there. The host bridge forwards only its windows, and the partition's stage 2 maps
/// nothing else, so the access is a stage-2 fault the hypervisor logs and contains; the
/// critical monitor's RAM is not the device's.
fn bar_outside(boot: &mut Boot) {
    let (Some(ecam), Some(at)) = (boot.arg_u64("pcie_ecam"), boot.arg_u64("bar_at")) else {
        let _ = writeln!(boot.console, "connectivity: attack bar-outside: pcie_ecam or bar_at missing");
        return;
    };
    let Some(function) =
        (0..32u64).map(|dev| ecam + (dev << 15)).find(|&f| read16(f) == VIRTIO_VENDOR && read16(f + 2) == VIRTIO_BLK)
    else {
        return;
    };
    write32(function + 0x20, at as u32);
    write32(function + 0x24, (at >> 32) as u32);
    write16(function + 0x04, 0b110);
    let _ = writeln!(boot.console, "connectivity: attack bar-outside: BAR4 at {at:#x}, now writing there");
    write32(at, 0xBAD);
    let _ = writeln!(boot.console, "connectivity: attack bar-outside returned: NOT CONTAINED");
}

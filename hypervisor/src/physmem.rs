//! Views of physical memory that the hypervisor reaches by address: the board DTB, the
//! boot bundle, and partition RAM. The hypervisor's stage 1 maps what it maps at its
//! physical address, so a physical address is usable as a pointer once it is
//! range-checked and mapped: the board DTB and bundle before the run view; the bundle
//! (read-only) always; a partition's RAM only inside its load view
//! ([`crate::stage1::load_view`]).

/// # Safety
/// `[pa, pa+len)` must be mapped memory that nothing writes for the rest of the
/// hypervisor's life (the board DTB, the boot bundle: no stage 2 maps them).
pub unsafe fn slice(pa: u64, len: usize) -> &'static [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

/// Reads a big-endian u32 (an FDT header field) at `pa`.
///
/// # Safety
/// `pa` must be a mapped (or, with the MMU off, existing) RAM address.
pub unsafe fn read_be32(pa: u64) -> u32 {
    // SAFETY: guaranteed by the caller; a byte-wise read has no alignment needs.
    let bytes = unsafe { core::ptr::read_volatile(pa as *const [u8; 4]) };
    u32::from_be_bytes(bytes)
}

/// Fills `[pa, pa+len)` of a partition's RAM with zeros.
///
/// # Safety
/// The range must be RAM of a partition that is not running (its cores are in EL2 or
/// not started), checked against the validated configuration, and mapped: this core
/// is in that partition's load view.
pub unsafe fn zero(pa: u64, len: u64) {
    // SAFETY: guaranteed by the caller; nothing else reads or writes it meanwhile.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, len as usize) };
}

/// Copies `data` into a partition's RAM at `pa`.
///
/// # Safety
/// As for [`zero`], for `[pa, pa+data.len())`; `data` must not overlap it.
pub unsafe fn copy_in(pa: u64, data: &[u8]) {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), pa as *mut u8, data.len()) };
}

/// Writes a little-endian u64 at `pa`.
///
/// # Safety
/// `pa` must be 8-byte aligned, mapped, and a word firmware hands to the hypervisor
/// (a spin-table release address), used by nothing else.
pub unsafe fn write_u64(pa: u64, value: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::write_volatile(pa as *mut u64, value) };
}

/// A view of a partition's RAM, for the hypervisor to check what it loaded there.
///
/// # Safety
/// `[pa, pa+len)` must be RAM of a partition that is not running, this core in its
/// load view, and the view must be dropped before the load view is left.
pub unsafe fn partition_bytes<'a>(pa: u64, len: usize) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

/// Bytes of the boot core's scratch buffer for the board DTB's NOP-free copy.
pub const DTB_COPY_MAX: usize = 256 << 10;

struct DtbCopy(core::cell::UnsafeCell<[u8; DTB_COPY_MAX]>);
// SAFETY: used only through `dtb_copy`, whose contract allows one caller, ever.
unsafe impl Sync for DtbCopy {}
static DTB_COPY: DtbCopy = DtbCopy(core::cell::UnsafeCell::new([0; DTB_COPY_MAX]));

/// The buffer the board DTB is copied into (in BSS, so in the hypervisor's image range).
///
/// # Safety
/// Call once, on the boot core, before any other core runs hypervisor code: the
/// returned reference is the only one.
pub unsafe fn dtb_copy() -> &'static mut [u8; DTB_COPY_MAX] {
    // SAFETY: guaranteed by the caller: no other reference exists or will.
    unsafe { &mut *DTB_COPY.0.get() }
}

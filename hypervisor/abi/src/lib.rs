//! Septum's binary interfaces, defined once and shared by `xtask` (which writes them),
//! the hypervisor (which reads them at boot) and the guests (which call the hypervisor).
//!
//! * [`config`]: the compiled system description the hypervisor runs from, and the one
//!   validator both xtask and the hypervisor apply to it.
//! * [`bundle`]: the container that carries the configuration, partition images and
//!   partition device trees into memory next to the hypervisor.
//! * [`hypercall`]: function numbers a guest passes in `x0` to `HVC #0`.
//!
//! All multi-byte fields are little-endian (both aarch64 and the x86_64 build hosts are).
#![no_std]
#![forbid(unsafe_code)]

pub mod bundle;
pub mod config;
pub mod hypercall;

/// Bytes in a page of the 4 KiB translation granule Septum uses everywhere.
pub const PAGE_SIZE: u64 = 4096;

/// A NUL-padded fixed-size name as carried in binary structures.
pub fn name_str(raw: &[u8]) -> &str {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    core::str::from_utf8(&raw[..len]).unwrap_or("<invalid-name>")
}

/// Writes `name` into a NUL-padded field; `None` if it does not fit with one NUL left.
pub fn name_field<const N: usize>(name: &str) -> Option<[u8; N]> {
    let bytes = name.as_bytes();
    if bytes.len() >= N || bytes.contains(&0) {
        return None;
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Some(out)
}

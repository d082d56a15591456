//! Arm semihosting (Arm IHI 0056), the hypervisor's log path under QEMU or a debugger.
//! QEMU sends `SYS_WRITE0` output to the chardev given by
//! `-semihosting-config enable=on,target=native,chardev=ID`.
//!
//! On a board with no debugger attached (or QEMU without `-semihosting-config`),
//! `HLT #0xF000` is an undefined instruction. Every call therefore goes through the one
//! routine `septum_semihosting_call`, whose first instruction is the `HLT`: an exception
//! handler that finds an undefined instruction at [`call_site`] skips it and returns
//! [`ABSENT`] in `x0` (the hypervisor's vector for its own exceptions does), and the
//! caller learns that semihosting is not there instead of stopping.

const SYS_WRITE0: u64 = 0x04;

/// What a call returns when semihosting is absent (set by the exception handler).
pub const ABSENT: u64 = u64::MAX;

core::arch::global_asm!(
    r#"
.section .text.septum_semihosting, "ax"
.global septum_semihosting_call
.balign 4
septum_semihosting_call:
    hlt     #0xf000
    ret
"#
);

extern "C" {
    /// `x0` = operation, `x1` = its argument; returns the result, or [`ABSENT`].
    fn septum_semihosting_call(op: u64, arg: u64) -> u64;
}

/// The address of the `HLT #0xF000` every call executes.
pub fn call_site() -> usize {
    septum_semihosting_call as *const () as usize
}

/// Writes a NUL-terminated string; false if semihosting is absent (nothing written).
pub fn write0(s: &core::ffi::CStr) -> bool {
    // SAFETY: SYS_WRITE0 reads the NUL-terminated string at x1 and changes no memory;
    // the routine follows the C calling convention (only x0 is returned, the rest of
    // what it may touch is caller-saved).
    let r = unsafe { septum_semihosting_call(SYS_WRITE0, s.as_ptr() as u64) };
    r != ABSENT
}

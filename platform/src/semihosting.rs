//! Arm semihosting (Arm IHI 0056), the hypervisor's log path on QEMU `virt`, whose two
//! non-secure UARTs both belong to partitions. QEMU sends `SYS_WRITE0` output to the
//! chardev given by `-semihosting-config enable=on,target=native,chardev=ID`.
//!
//! Semihosting must be enabled in QEMU: without it `HLT #0xF000` is an undefined
//! instruction. xtask always enables it for boards whose console is semihosting.

const SYS_WRITE0: u64 = 0x04;

/// Writes a NUL-terminated string.
pub fn write0(s: &core::ffi::CStr) {
    // SAFETY: SYS_WRITE0 reads the NUL-terminated string at x1 and changes no memory;
    // it returns with x0 clobbered, which is declared.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_WRITE0 => _,
            in("x1") s.as_ptr(),
            options(nostack, readonly)
        );
    }
}

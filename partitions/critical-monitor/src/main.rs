//! The critical-monitor partition: the safety function. Here it stands in for patient
//! monitoring with a fixed-period loop that reports a heartbeat with a monotonic count
//! and the generic-timer count, so a test (or an assessor) can see any stall.
#![no_std]
#![no_main]

use core::fmt::Write;
use septum_guest::{counter_hz, Boot, Heartbeat};

#[no_mangle]
fn partition_main(mut boot: Boot) -> ! {
    let period_ms = boot.arg_u64("heartbeat_ms").unwrap_or(20).max(1);
    let _ = writeln!(
        boot.console,
        "critical-monitor: boot ({:?}, restarts {}), heartbeat every {period_ms} ms, timer {} Hz",
        boot.start,
        boot.restarts,
        counter_hz()
    );
    // Test hook: `fault_after=N` makes the monitor itself fault after N beats, to show
    // the system's safe state.
    let fault_after = boot.arg_u64("fault_after");
    let mut beat = Heartbeat::new(period_ms);
    loop {
        let (n, cntvct) = beat.wait();
        let _ = writeln!(boot.console, "critical-monitor: heartbeat n={n} cntvct={cntvct}");
        if fault_after == Some(n) {
            let _ = writeln!(boot.console, "critical-monitor: faulting on purpose");
            // SAFETY: a deliberate read outside our RAM (IPA 0x1000_0000 is unmapped);
            // the hypervisor stops it.
            unsafe { core::ptr::read_volatile(0x1000_0000 as *const u64) };
        }
    }
}

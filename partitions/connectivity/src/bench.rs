//! `bench=1`: measurements `cargo xtask bench` reads, taken with the generic counter
//! under `-icount shift=0` (one instruction per virtual nanosecond, so one tick of the
//! 62.5 MHz counter is 16 instructions). Each line: `bench: <what> ticks=<T> count=<N>`;
//! xtask turns it into instructions per operation.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use septum_abi::hypercall::smccc;
use septum_guest::{counter, hvc, smp, vtimer, Console};

/// Null hypercalls timed together.
const HYPERCALLS: u64 = 4096;
/// SGIs to itself timed together.
const SELF_SGIS: u64 = 1024;
/// Timer interrupts (and SGIs) timed one by one; the report is the median.
const SAMPLES: usize = 64;
/// How far ahead the timer is armed, in ticks.
const LEAD_TICKS: u64 = 2000;
/// The SGI the benchmark sends vCPU 1.
const BENCH_SGI: u32 = 5;

/// Counter value vCPU 0 read just before sending an SGI; vCPU 1's latency sample.
static SENT_AT: AtomicU64 = AtomicU64::new(0);
static SGI_LATENCY: AtomicU64 = AtomicU64::new(u64::MAX);

pub fn run(console: &mut Console, vcpus: usize, gicd: Option<u64>) {
    // Null hypercall: SMCCC_VERSION, answered in EL2 without side effects.
    let t0 = counter();
    for _ in 0..HYPERCALLS {
        hvc(smccc::VERSION, [0; 7]);
    }
    let ticks = counter() - t0;
    let _ = writeln!(console, "bench: null-hypercall ticks={ticks} count={HYPERCALLS}");

    // A trapped, emulated distributor read (GICD_TYPER).
    if let Some(gicd) = gicd {
        let t0 = counter();
        let mut sum = 0u32;
        for _ in 0..HYPERCALLS {
            sum = sum.wrapping_add(septum_guest::gicd::read_raw(gicd, 4));
        }
        let ticks = counter() - t0;
        let _ = writeln!(console, "bench: distributor-read ticks={ticks} count={HYPERCALLS} (sum {sum:#x})");
    }

    // Virtual timer interrupt: from the deadline to the guest having it acknowledged.
    let mut samples = [0u64; SAMPLES];
    for s in samples.iter_mut() {
        let deadline = counter() + LEAD_TICKS;
        let intid = vtimer::sleep_until(deadline);
        *s = if intid == Some(vtimer::INTID) { counter().saturating_sub(deadline) } else { u64::MAX };
    }
    samples.sort_unstable();
    let _ = writeln!(console, "bench: timer-interrupt ticks={} count=1", samples[SAMPLES / 2]);

    // SGI to itself: the trapped write, the list register, the acknowledge and end.
    let t0 = counter();
    let mut taken = 0u64;
    for _ in 0..SELF_SGIS {
        smp::send_sgi(BENCH_SGI, 0b1, 0);
        if vtimer::take() == Some(BENCH_SGI) {
            taken += 1;
        }
    }
    let ticks = counter() - t0;
    let _ = writeln!(console, "bench: sgi-self ticks={ticks} count={taken}");

    // SGI from vCPU 0 to vCPU 1, sleeping in WFI on its own core.
    if vcpus > 1 && smp::start(1, sgi_receiver).is_ok() {
        let mut samples = [0u64; SAMPLES];
        for s in samples.iter_mut() {
            // Let vCPU 1 settle into WFI.
            let settle = counter() + LEAD_TICKS;
            while counter() < settle {}
            SGI_LATENCY.store(u64::MAX, Ordering::Release);
            SENT_AT.store(counter(), Ordering::Release);
            smp::send_sgi(BENCH_SGI, 0b10, 0);
            let give_up = counter() + 100 * LEAD_TICKS;
            while SGI_LATENCY.load(Ordering::Acquire) == u64::MAX && counter() < give_up {}
            *s = SGI_LATENCY.load(Ordering::Acquire);
        }
        samples.sort_unstable();
        let _ = writeln!(console, "bench: sgi ticks={} count=1", samples[SAMPLES / 2]);
    }
    let _ = writeln!(console, "bench: done");
}

/// vCPU 1 in a benchmark system: sleeps until an SGI and stamps its latency, for good
/// (the benchmark system's connectivity does nothing else with it).
fn sgi_receiver(_vcpu: usize) -> ! {
    loop {
        // A far deadline: only the SGI wakes it.
        if vtimer::sleep_until(counter() + (1 << 40)) == Some(BENCH_SGI) {
            let now = counter();
            SGI_LATENCY.store(now.saturating_sub(SENT_AT.load(Ordering::Acquire)), Ordering::Release);
        }
    }
}

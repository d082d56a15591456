//! `bench=1`: measurements `cargo xtask bench` reads, taken with the generic counter
//! under `-icount shift=0` (one instruction per virtual nanosecond, so one tick of the
//! 62.5 MHz counter is 16 instructions). Each line: `bench: <what> ticks=<T> count=<N>`;
//! xtask turns it into instructions per operation. `bench=channel`: the channel's cost
//! per message, under `-icount shift=4` (a tick is an instruction; [`channel`]).

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use septum_abi::config::DOORBELL_INTIDS;
use septum_abi::hypercall::smccc;
use septum_guest::channel::checksum;
use septum_guest::{counter, counter_hz, hvc, smp, vtimer, Boot, Console};

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

/// Message sizes of the channel benchmark (as the host bench's).
const CHANNEL_SIZES: [usize; 3] = [16, 256, 4096];
/// Messages timed together: one queue's worth (the channels in `systems/bench-channel.toml`
/// are this deep), so a batch is sent without a `Full` and drained without an `Empty`.
const CHANNEL_BATCH: u64 = 16;
/// The channels, in the order both partitions go through them: each way, with the
/// CRC-32C and without a checksum.
const CHANNELS: [&str; 4] = ["ab", "ba", "ab-plain", "ba-plain"];
/// Virtual time both partitions give each other to boot and attach their ends.
const SETTLE_MS: u64 = 100;

/// `bench=channel`: instructions per message through the channel between two
/// partitions running this image (`systems/bench-channel.toml`), under `-icount shift=4`
/// (one counter tick per instruction). Both go through [`CHANNELS`] and
/// [`CHANNEL_SIZES`] in the same order; for each, the consumer rings "ready", the
/// producer sends a batch, timed, and rings; the consumer drains it, timed, and rings
/// "ready" for the next. Whoever is not timing waits in WFI for its doorbell, so the
/// counter moves only with the timed side's instructions. Lines:
/// `bench: channel <name> <send|recv> <size> ticks=<T> count=<N>`, and from the first
/// channel's producer `bench: crc32c <size> ticks=<T> count=<N>` (the CRC-32C alone).
pub fn channel(boot: &mut Boot) -> ! {
    let mut producers = [None, None, None, None];
    let mut consumers = [None, None, None, None];
    for (i, name) in CHANNELS.iter().enumerate() {
        let end = boot.channel(name);
        producers[i] = end.filter(|e| e.role == "producer").and_then(|e| Some((e, e.producer()?)));
        consumers[i] = end.filter(|e| e.role == "consumer").and_then(|e| Some((e, e.consumer()?)));
    }
    let mut bells = Bells(0);
    bells.sleep_until(counter() + counter_hz() / 1000 * SETTLE_MS);
    // Aligned, as a program that cares keeps its message buffers (the copies and the CRC
    // then go a word at a time; this target never makes an unaligned access).
    let mut msg = Aligned([0; 4096]);
    for (i, b) in msg.0.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let (msg, mut buf) = (&msg.0, Aligned([0u8; 4096]));
    let buf = &mut buf.0;
    for (i, name) in CHANNELS.iter().enumerate() {
        for size in CHANNEL_SIZES {
            if let Some((end, tx)) = producers[i].as_mut() {
                bells.wait_for(end.interrupt);
                if i == 0 {
                    let t0 = counter();
                    for seq in 0..CHANNEL_BATCH {
                        core::hint::black_box(checksum(seq as u32, size as u32, core::hint::black_box(&msg[..size])));
                    }
                    let ticks = counter() - t0;
                    let _ = writeln!(boot.console, "bench: crc32c {size} ticks={ticks} count={CHANNEL_BATCH}");
                }
                let t0 = counter();
                let mut sent = 0;
                for _ in 0..CHANNEL_BATCH {
                    sent += u64::from(tx.send(&msg[..size]).is_ok());
                }
                let ticks = counter() - t0;
                let _ = writeln!(boot.console, "bench: channel {name} send {size} ticks={ticks} count={sent}");
                end.ring();
            }
            if let Some((end, rx)) = consumers[i].as_mut() {
                end.ring();
                bells.wait_for(end.interrupt);
                let t0 = counter();
                let mut received = 0;
                for _ in 0..CHANNEL_BATCH {
                    received += u64::from(rx.recv(buf) == Ok(size));
                }
                let ticks = counter() - t0;
                let _ = writeln!(boot.console, "bench: channel {name} recv {size} ticks={ticks} count={received}");
                if buf[..size] != msg[..size] || rx.stats().rejected() != 0 {
                    let _ = writeln!(boot.console, "bench: channel {name}: WRONG message ({:?})", rx.stats());
                }
            }
        }
    }
    let _ = writeln!(boot.console, "bench: channel done");
    loop {
        vtimer::sleep_until(counter() + (1 << 40));
    }
}

#[repr(align(16))]
struct Aligned([u8; 4096]);

/// Doorbell interrupts taken and not yet waited for, one bit per INTID from
/// [`DOORBELL_INTIDS`]'s start: a ring that arrives while its partition sleeps for
/// something else (its peer booted a little earlier) is kept for its waiter.
struct Bells(u64);

impl Bells {
    fn note(&mut self, intid: Option<u32>) {
        if let Some(bit) = intid.and_then(|i| i.checked_sub(DOORBELL_INTIDS.start)).filter(|&b| b < 64) {
            self.0 |= 1 << bit;
        }
    }

    /// Sleeps until the doorbell interrupt `intid` has come (now or before).
    fn wait_for(&mut self, intid: u32) {
        let bit = 1u64 << (intid.saturating_sub(DOORBELL_INTIDS.start) % 64);
        while self.0 & bit == 0 {
            self.note(vtimer::sleep_until(counter() + (1 << 40)));
        }
        self.0 &= !bit;
    }

    /// Sleeps until the counter reaches `deadline`, keeping the rings that come.
    fn sleep_until(&mut self, deadline: u64) {
        while counter() < deadline {
            self.note(vtimer::sleep_until(deadline));
        }
    }
}

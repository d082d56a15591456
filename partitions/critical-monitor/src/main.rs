//! The critical-monitor partition: the safety function. Here it stands in for patient
//! monitoring with a fixed-period loop that reports a heartbeat with a monotonic count
//! and the generic-timer count, so a test (or an assessor) can see any stall.
//!
//! Between beats it streams numbered "vital signs" records to the connectivity
//! partition over the `vitals` channel, and takes commands from it over `commands`,
//! counting every message it rejects. Channel work is bounded per iteration, so
//! whatever the other side does, the next beat is never late by more than one step.
//! With nothing to send or take it sleeps until its virtual timer's interrupt, which
//! the hypervisor forwards: the beat is interrupt-driven, and the core idles.
#![no_std]
#![no_main]

use core::fmt::Write;
use septum_guest::channel::queuing::{Consumer, Producer, RecvError};
use septum_guest::channel::volatile::VolatileRegion;
use septum_guest::{counter_hz, Boot, Console, Heartbeat};

/// Beats between channel reports.
const REPORT_EVERY: u64 = 25;

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
    // Test hook: `canary=1` fills the last page of its RAM with a pattern and checks it
    // every beat: what another partition's device could write (DMA-003) would show.
    let canary = (boot.arg("canary") == Some("1")).then(|| Canary::lay(boot.ram.0 + boot.ram.1 - CANARY_BYTES));
    let vitals_end = boot.channel("vitals");
    let mut vitals = vitals_end.and_then(|c| c.producer());
    let mut commands = boot.channel("commands").and_then(|c| c.consumer());
    let mut command_stream = CommandStream::default();
    let mut beat = Heartbeat::new(period_ms);
    let mut seq: u64 = 0;
    // Records sent since the last doorbell ring: the peer is signalled at most once per
    // beat (each ring is a trap on our own core), whatever the stream's rate.
    let mut unsignalled = 0u64;
    let mut buf = [0u8; 256];
    loop {
        if let Some((n, cntvct)) = beat.poll() {
            let _ = writeln!(boot.console, "critical-monitor: heartbeat n={n} cntvct={cntvct}");
            if let (Some(end), true) = (vitals_end, unsignalled > 0) {
                end.ring();
                unsignalled = 0;
            }
            if let Some(c) = &canary {
                let changed = c.changed();
                if changed > 0 {
                    let _ = writeln!(boot.console, "critical-monitor: CANARY CHANGED: {changed} words");
                } else if n.is_multiple_of(REPORT_EVERY) {
                    let _ = writeln!(boot.console, "critical-monitor: canary intact at {:#x}", c.at);
                }
            }
            if n.is_multiple_of(REPORT_EVERY) {
                let _ = writeln!(boot.console, "critical-monitor: timer interrupts={}", beat.timer_irqs());
                report(&mut boot.console, seq, vitals.as_ref(), commands.as_ref(), &command_stream);
            }
            if fault_after == Some(n) {
                let _ = writeln!(boot.console, "critical-monitor: faulting on purpose");
                // SAFETY: a deliberate read outside our RAM (IPA 0x1000_0000 is
                // unmapped); the hypervisor stops it.
                unsafe { core::ptr::read_volatile(0x1000_0000 as *const u64) };
            }
            continue;
        }
        let mut busy = false;
        if let Some(tx) = vitals.as_mut() {
            if tx.send(&record(seq)).is_ok() {
                seq += 1;
                unsignalled += 1;
                busy = true;
            }
        }
        if let Some(rx) = commands.as_mut() {
            match rx.recv(&mut buf) {
                Ok(len) => {
                    command_stream.take(&buf[..len.min(buf.len())]);
                    busy = true;
                }
                // Empty is the normal case; the rest is counted in the consumer's stats.
                Err(e) => {
                    let _ = e == RecvError::Empty;
                }
            }
        }
        // Nothing to send or take: idle until the next beat's timer interrupt.
        if !busy {
            beat.sleep();
        }
    }
}

/// Bytes of the canary: the last page of the monitor's RAM.
const CANARY_BYTES: u64 = 4096;

/// A page of the monitor's own RAM holding a known pattern.
struct Canary {
    at: u64,
}

impl Canary {
    fn word(i: u64) -> u64 {
        0xC0FF_EE00_0000_0000 | i
    }

    fn lay(at: u64) -> Self {
        for i in 0..CANARY_BYTES / 8 {
            // SAFETY: the last page of our RAM, above the image, stack and device tree,
            // which nothing else of this program uses.
            unsafe { core::ptr::write_volatile((at + 8 * i) as *mut u64, Self::word(i)) };
        }
        Self { at }
    }

    /// Words that no longer hold the pattern.
    fn changed(&self) -> u64 {
        (0..CANARY_BYTES / 8)
            // SAFETY: as in `lay`.
            .filter(|&i| unsafe { core::ptr::read_volatile((self.at + 8 * i) as *const u64) } != Self::word(i))
            .count() as u64
    }
}

/// A vital-signs record: its sequence number, then a simulated heart rate and SpO2.
fn record(seq: u64) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&seq.to_le_bytes());
    r[8..12].copy_from_slice(&(60 + (seq % 40) as u32).to_le_bytes());
    r[12..16].copy_from_slice(&(95 + (seq % 5) as u32).to_le_bytes());
    r
}

/// The numbering of the commands the connectivity partition sends: each is its sender's
/// `u64` (little-endian) counter, one higher than the one before. The rule, per command
/// `v` after the previous one `p`:
///
/// * `v == p + 1`: in order;
/// * `v > p + 1`: `v - p - 1` commands were lost (`gaps`);
/// * `v == p`: a duplicate (`out_of_order`);
/// * `v < p`: the sender restarted and counts from low numbers again (the bare-metal
///   guest sends its beat number, the Linux agent a counter from 0): a new stream
///   starts at `v` (`peer_restarts`), nothing counted as lost.
///
/// Messages shorter than 8 bytes carry no number and are not counted here. The sender
/// is untrusted: every count saturates.
#[derive(Default)]
struct CommandStream {
    previous: Option<u64>,
    gaps: u64,
    out_of_order: u64,
    peer_restarts: u64,
}

impl CommandStream {
    fn take(&mut self, msg: &[u8]) {
        let Some(v) = msg.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else { return };
        match self.previous {
            Some(p) if v > p => self.gaps = self.gaps.saturating_add(v - p - 1),
            Some(p) if v == p => self.out_of_order = self.out_of_order.saturating_add(1),
            Some(_) => self.peer_restarts = self.peer_restarts.saturating_add(1),
            None => {}
        }
        self.previous = Some(v);
    }
}

fn report(
    console: &mut Console,
    seq: u64,
    vitals: Option<&Producer<VolatileRegion>>,
    commands: Option<&Consumer<VolatileRegion>>,
    command_stream: &CommandStream,
) {
    if let Some(tx) = vitals {
        let s = tx.stats();
        let _ = writeln!(
            console,
            "critical-monitor: vitals sent={} next={seq} full={} peer_corrupt={}",
            s.sent, s.full, s.peer_corrupt
        );
    }
    if let Some(rx) = commands {
        let s = rx.stats();
        let _ = writeln!(
            console,
            "critical-monitor: commands received={} rejected={} (seq {} len {} crc {}) bad_index={} gaps={} \
             out_of_order={} peer_restarts={}",
            s.received,
            s.rejected(),
            s.bad_seq,
            s.bad_len,
            s.bad_crc,
            s.bad_index,
            command_stream.gaps,
            command_stream.out_of_order,
            command_stream.peer_restarts
        );
    }
}

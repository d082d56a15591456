//! The critical-monitor partition: the safety function. A fixed-period loop reports a
//! heartbeat with a monotonic count and the generic-timer count, so a test (or an
//! assessor) can see any stall.
//!
//! Between beats it sends records to the connectivity partition over the `vitals`
//! channel (`septum_vitals`) and takes commands from it over `commands`, refusing and
//! counting every one it does not accept. Without a sensor it exercises the channel
//! (`exercise.rs`). Channel work is bounded per iteration, so whatever the other side
//! does, the next beat is never late by more than one step. With nothing to send or
//! take it sleeps until its virtual timer's interrupt, which the hypervisor forwards:
//! the beat is interrupt-driven, and the core idles.
#![no_std]
#![no_main]

mod canary;
mod commands;
mod exercise;

use core::fmt::Write;
use septum_guest::channel::queuing::{Consumer, Producer, RecvError};
use septum_guest::channel::volatile::VolatileRegion;
use septum_guest::{counter, counter_hz, Boot, Console, Heartbeat};

use canary::{Canary, CANARY_BYTES};
use commands::Commands;
use exercise::Exerciser;

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
    let mut received = Commands::default();
    let mut beat = Heartbeat::new(period_ms);
    let mut exerciser = Exerciser::default();
    let started = counter();
    let ms = |now: u64| (now.wrapping_sub(started)).saturating_mul(1000) / counter_hz().max(1);
    let mut buf = [0u8; 256];
    loop {
        if let Some((n, cntvct)) = beat.poll() {
            let _ = writeln!(boot.console, "critical-monitor: heartbeat n={n} cntvct={cntvct}");
            // Records sent since the last ring: the peer is signalled at most once per
            // beat (each ring is a trap on our own core), whatever the stream's rate.
            if let (Some(end), true) = (vitals_end, exerciser.unsignalled > 0) {
                end.ring();
                exerciser.unsignalled = 0;
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
                report(&mut boot.console, exerciser.seq, vitals.as_ref(), commands.as_ref(), &received);
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
            busy |= exerciser.step(tx, ms(counter()));
        }
        if let Some(rx) = commands.as_mut() {
            match rx.recv(&mut buf) {
                Ok(len) => {
                    received.take(&buf[..len.min(buf.len())]);
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

fn report(
    console: &mut Console,
    seq: u64,
    vitals: Option<&Producer<VolatileRegion>>,
    commands: Option<&Consumer<VolatileRegion>>,
    received: &Commands,
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
            "critical-monitor: commands received={} rejected={} (seq {} len {} crc {}) bad_index={} accepted={} \
             refused={} gaps={} out_of_order={} peer_restarts={}",
            s.received,
            s.rejected(),
            s.bad_seq,
            s.bad_len,
            s.bad_crc,
            s.bad_index,
            received.accepted,
            received.refused,
            received.gaps,
            received.out_of_order,
            received.peer_restarts
        );
    }
}

//! The critical-monitor partition: the safety function. A fixed-period loop reports a
//! heartbeat with a monotonic count and the generic-timer count, so a test (or an
//! assessor) can see any stall.
//!
//! With an `ecg` sensor it monitors (`monitoring.rs`): it samples the front end
//! (`acquisition.rs`) at its rate from its own timer, runs `septum_ecg::Monitor` on
//! every sample, announces alarms on its own console, and sends derived records to the
//! connectivity partition over the `vitals` channel (`septum_vitals`). Without a
//! sensor it exercises the channel (`exercise.rs`). Either way it takes commands over
//! `commands`, refusing and counting every one it does not accept. Work is bounded per
//! iteration, so whatever the other side does, the next beat is never late by more
//! than one step. With nothing due it sleeps until its virtual timer's interrupt (the
//! next beat or the next sample), which the hypervisor forwards.
#![no_std]
#![no_main]

mod acquisition;
mod canary;
mod commands;
mod exercise;
mod limits;
mod monitoring;
mod strip;

use core::fmt::Write;
use septum_ecg::recording::Recording;
use septum_ecg::{Limits, Monitor};
use septum_guest::channel::queuing::{Consumer, Producer, RecvError};
use septum_guest::channel::volatile::VolatileRegion;
use septum_guest::{counter, counter_hz, Boot, Console, Heartbeat};

use acquisition::Replay;
use canary::{Canary, CANARY_BYTES};
use commands::Commands;
use exercise::Exerciser;
use monitoring::{AlarmNames, Monitoring};
use strip::Strips;

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
    let mut ecg = start_monitoring(&mut boot);
    let started = counter();
    let ms = |now: u64| (now.wrapping_sub(started)).saturating_mul(1000) / counter_hz().max(1);
    let mut buf = [0u8; 256];
    loop {
        if let Some((n, cntvct)) = beat.poll() {
            let _ = writeln!(boot.console, "critical-monitor: heartbeat n={n} cntvct={cntvct}");
            // Records sent since the last ring: the peer is signalled at most once per
            // beat (each ring is a trap on our own core), whatever the stream's rate.
            let unsignalled = exerciser.unsignalled + ecg.as_ref().map_or(0, |m| m.unsignalled);
            if let (Some(end), true) = (vitals_end, unsignalled > 0) {
                end.ring();
                exerciser.unsignalled = 0;
                if let Some(m) = ecg.as_mut() {
                    m.unsignalled = 0;
                }
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
                let next = ecg.as_ref().map_or(exerciser.seq, |m| m.seq);
                report(&mut boot.console, next, vitals.as_ref(), commands.as_ref(), &received);
                if let Some(m) = &ecg {
                    report_vitals(&mut boot.console, m);
                }
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
        let mut wake = None;
        match ecg.as_mut() {
            Some(m) => {
                let step = m.step(counter(), &mut boot.console, vitals.as_mut(), received.refused);
                busy |= step.busy;
                wake = step.idle_until;
            }
            None => {
                if let Some(tx) = vitals.as_mut() {
                    busy |= exerciser.step(tx, ms(counter()));
                }
            }
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
        // Nothing to send or take: idle until the next sample or the next beat.
        if !busy {
            match wake {
                Some(deadline) => beat.sleep_before(deadline),
                None => beat.sleep(),
            };
        }
    }
}

/// Monitoring if the partition has an `ecg` sensor holding a recording it can read;
/// each reason it does not is said on the console.
fn start_monitoring(boot: &mut Boot) -> Option<Monitoring<Replay>> {
    let Some(sensor) = boot.sensor("ecg") else {
        let _ = writeln!(boot.console, "critical-monitor: no ecg sensor: exercising the vitals channel");
        return None;
    };
    let recording = match Recording::parse(sensor.replay()) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                boot.console,
                "critical-monitor: ecg sensor at {:#x}: no recording ({e}): exercising the vitals channel",
                sensor.base
            );
            return None;
        }
    };
    let dt = boot.dt();
    let (limits, source) = match limits::read(dt.as_ref()) {
        Ok(l) => l,
        Err(why) => {
            // xtask refuses such a description; a device tree it did not build gets the
            // standard's defaults, said loudly.
            let _ = writeln!(boot.console, "critical-monitor: ALARM LIMITS REFUSED ({why}): using the defaults");
            (Limits::default(), limits::Source::Defaults)
        }
    };
    let rate = recording.rate_hz();
    let _ = writeln!(
        boot.console,
        "critical-monitor: ecg replay of {} samples at {rate} Hz ({} nV/LSB); alarm limits {}: {limits}",
        recording.len(),
        recording.nv_per_lsb(),
        match source {
            limits::Source::Defaults => "IEC 60601-2-27 defaults",
            limits::Source::Described => "from the system description",
        },
    );
    let monitor = match Monitor::new(rate, limits) {
        Ok(mut m) => {
            // Saturation is judged against the front end's own rails.
            m.set_full_scale_uv(recording.full_scale_uv());
            m
        }
        Err(e) => {
            let _ = writeln!(boot.console, "critical-monitor: ecg monitor refused its configuration: {e:?}");
            return None;
        }
    };
    // Rhythm strips around alarms (MED-008): off unless the signed command line asks.
    let strips = Strips::new(boot.arg_u64("rhythm_strip_s").unwrap_or(0), rate);
    if strips.len() > 0 {
        let _ = writeln!(
            boot.console,
            "critical-monitor: rhythm strips on: {} samples before each alarm go to connectivity",
            strips.len()
        );
    }
    Some(Monitoring::new(Replay::new(recording, counter(), counter_hz()), monitor, strips))
}

/// Once a report period: what the monitor measured, and what it could not do.
fn report_vitals(console: &mut Console, m: &Monitoring<Replay>) {
    let (hr, quality, alarms) = m.last.as_ref().map_or((None, 0, 0), |s| (s.hr_decibpm, s.quality, s.active_alarms));
    let _ = match hr {
        Some(d) => write!(console, "critical-monitor: ecg hr={}.{} bpm", d / 10, d % 10),
        None => write!(console, "critical-monitor: ecg hr=none"),
    };
    let _ = writeln!(
        console,
        " quality={quality} alarms={} samples={} beats={} overruns={} dropped={} strip_pieces={} cost_mean={} \
         cost_max={}",
        AlarmNames(alarms),
        m.samples(),
        m.beats,
        m.overruns,
        m.dropped(),
        m.strips.sent,
        m.cost_ticks / m.samples().max(1),
        m.cost_max
    );
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
             refused={} gaps={} out_of_order={} peer_restarts={} uplink={}",
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
            received.peer_restarts,
            // What connectivity last said of its upload (UplinkState): shown, never
            // acted on.
            match received.uplink {
                Some(true) => "up",
                Some(false) => "down",
                None => "unknown",
            }
        );
    }
}

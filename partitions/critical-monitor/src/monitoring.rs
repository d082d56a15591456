//! The monitoring function: samples from the front end through `septum_ecg::Monitor`,
//! alarms announced on the monitor's own console whatever connectivity does (MED-003),
//! and only derived records queued for the `vitals` channel (MED-004): a record per
//! beat, a summary per second, an event per alarm change. Raw samples never leave.
//!
//! Records wait in a small outbox when the channel is full (connectivity restarting or
//! slow), so a short stall loses nothing; beyond that the oldest beats give way first
//! and every record dropped is counted. Alarm events are the last to go.

use core::fmt::Write;

use septum_ecg::{AlarmChange, BeatEvent, Events, Monitor, SecondSummary};
use septum_guest::channel::queuing::Producer;
use septum_guest::channel::volatile::VolatileRegion;
use septum_guest::Console;
use septum_vitals::{AlarmEvent, AlarmKind, Beat, Header, Record, RecordKind, Summary};

use zerocopy::IntoBytes;

use crate::acquisition::{FrontEnd, Poll};
use crate::strip::Strips;

/// Samples taken per step at most: the loop checks its heartbeat between steps, so a
/// backlog (after a stall) is worked off without delaying the beat by more than this.
const SAMPLES_PER_STEP: usize = 16;
/// Records held while the channel is full: about 10 s of beats and summaries.
const OUTBOX: usize = 32;
/// Rhythm-strip pieces sent per step at most (a strip goes out in well under a second).
const STRIP_PIECES_PER_STEP: usize = 8;

pub struct Monitoring<F: FrontEnd> {
    front_end: F,
    monitor: Monitor,
    outbox: Outbox,
    pub strips: Strips,
    /// The next record's sequence number (one sequence across kinds).
    pub seq: u64,
    pub overruns: u64,
    pub beats: u64,
    /// The latest second's summary, for the console's report.
    pub last: Option<SecondSummary>,
    /// Records handed to the channel since the peer was last signalled.
    pub unsignalled: u64,
    /// Counter ticks spent in `Monitor::push`, in all and at most for one sample: under
    /// QEMU's `-icount` (shift 4 on virt) a tick is an instruction, which is how
    /// `cargo xtask bench ecg` reports the processing cost per sample.
    pub cost_ticks: u64,
    pub cost_max: u64,
}

/// What one step did.
pub struct Step {
    /// It took samples or sent records: call again before sleeping.
    pub busy: bool,
    /// When the front end has the next sample (counter), if it said.
    pub idle_until: Option<u64>,
}

impl<F: FrontEnd> Monitoring<F> {
    pub fn new(front_end: F, monitor: Monitor, strips: Strips) -> Self {
        Self {
            front_end,
            monitor,
            outbox: Outbox::new(),
            strips,
            seq: 0,
            overruns: 0,
            beats: 0,
            last: None,
            unsignalled: 0,
            cost_ticks: 0,
            cost_max: 0,
        }
    }

    /// Samples taken so far (the monitor numbers them).
    pub fn samples(&self) -> u64 {
        self.monitor.index()
    }

    pub fn dropped(&self) -> u64 {
        self.outbox.dropped
    }

    /// Takes the samples due at `now` (at most [`SAMPLES_PER_STEP`]), announces alarm
    /// changes on `console`, and moves queued records into the channel.
    pub fn step(
        &mut self,
        now: u64,
        console: &mut Console,
        tx: Option<&mut Producer<VolatileRegion>>,
        rejected_commands: u64,
    ) -> Step {
        let mut step = Step { busy: false, idle_until: None };
        for _ in 0..SAMPLES_PER_STEP {
            match self.front_end.poll(now) {
                Poll::Ready(sample) => {
                    self.strips.record(sample);
                    let before = septum_guest::counter();
                    let events = self.monitor.push(sample);
                    let cost = septum_guest::counter().wrapping_sub(before);
                    self.cost_ticks = self.cost_ticks.saturating_add(cost);
                    self.cost_max = self.cost_max.max(cost);
                    self.on(events, console, rejected_commands);
                    step.busy = true;
                }
                Poll::Lost(n) => {
                    self.overruns = self.overruns.saturating_add(n);
                    let _ = writeln!(console, "critical-monitor: OVERRUN: {n} samples lost (total {})", self.overruns);
                    step.busy = true;
                }
                Poll::Idle { until } => {
                    step.idle_until = Some(until);
                    break;
                }
            }
        }
        if let Some(tx) = tx {
            while let Some(r) = self.outbox.front() {
                if tx.send(r.as_bytes()).is_err() {
                    break;
                }
                self.outbox.pop();
                self.unsignalled += 1;
                step.busy = true;
            }
            // Rhythm-strip pieces only behind every derived record, a few per step.
            for _ in 0..STRIP_PIECES_PER_STEP {
                if self.outbox.front().is_some() {
                    break;
                }
                let Some(piece) = self.strips.peek(self.seq) else { break };
                if tx.send(piece.as_bytes()).is_err() {
                    break;
                }
                self.strips.advance();
                self.seq += 1;
                self.unsignalled += 1;
                step.busy = true;
            }
        }
        step
    }

    fn on(&mut self, e: Events, console: &mut Console, rejected_commands: u64) {
        let rate = u64::from(self.front_end.rate_hz().max(1));
        if let Some(b) = e.beat {
            self.beats += 1;
            let r = self.beat(&b, b.sample * 1000 / rate);
            self.outbox.push(r);
        }
        for change in e.alarm.iter() {
            let t_ms = self.samples() * 1000 / rate;
            let verb = if change.raised { "raised" } else { "cleared" };
            let _ = writeln!(
                console,
                "critical-monitor: ALARM {} {verb} at {}.{:03} s (value {}, limit {})",
                change.kind.name(),
                t_ms / 1000,
                t_ms % 1000,
                change.value,
                change.limit
            );
            let r = self.alarm(change, t_ms);
            self.outbox.push(r);
            if change.raised {
                self.strips.alarm_raised(change.kind);
            }
        }
        if let Some(s) = e.second {
            let r = self.summary(&s, (s.second + 1) * 1000, rejected_commands);
            self.outbox.push(r);
            self.last = Some(s);
        }
    }

    fn header(&mut self, kind: RecordKind, t_ms: u64) -> Header {
        let h = Header::new(kind, self.seq, t_ms);
        self.seq += 1;
        h
    }

    fn beat(&mut self, b: &BeatEvent, t_ms: u64) -> Record {
        let header = self.header(RecordKind::Beat, t_ms);
        Record::Beat(Beat { header, rr_ms: b.rr_ms.unwrap_or(0).into(), quality: b.quality, _reserved: [0; 3] })
    }

    fn summary(&mut self, s: &SecondSummary, t_ms: u64, rejected_commands: u64) -> Record {
        let header = self.header(RecordKind::Summary, t_ms);
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX).into();
        Record::Summary(Summary {
            header,
            hr_decibpm: s.hr_decibpm.unwrap_or(0).into(),
            quality: s.quality,
            _reserved: 0,
            active_alarms: s.active_alarms.into(),
            overruns: clamp(self.overruns),
            rejected_commands: clamp(rejected_commands),
        })
    }

    fn alarm(&mut self, a: &AlarmChange, t_ms: u64) -> Record {
        let header = self.header(RecordKind::Alarm, t_ms);
        Record::Alarm(AlarmEvent {
            header,
            alarm: a.kind as u8,
            raised: u8::from(a.raised),
            _reserved: [0; 2],
            value: a.value.into(),
            limit: a.limit.into(),
        })
    }
}

/// The active alarms' names, for the console (`asystole,leads-off` or `none`).
pub struct AlarmNames(pub u32);

impl core::fmt::Display for AlarmNames {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for k in AlarmKind::in_mask(self.0) {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(k.name())?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A fixed ring of records waiting for room in the channel.
struct Outbox {
    ring: [Option<Record>; OUTBOX],
    head: usize,
    len: usize,
    dropped: u64,
}

impl Outbox {
    const fn new() -> Self {
        Self { ring: [None; OUTBOX], head: 0, len: 0, dropped: 0 }
    }

    fn front(&self) -> Option<&Record> {
        if self.len == 0 {
            None
        } else {
            self.ring[self.head].as_ref()
        }
    }

    fn pop(&mut self) {
        if self.len > 0 {
            self.ring[self.head] = None;
            self.head = (self.head + 1) % OUTBOX;
            self.len -= 1;
        }
    }

    /// Queues `r`; when full, the oldest record that is not an alarm event gives way
    /// (counted), or `r` itself if it is not an alarm and all held are.
    fn push(&mut self, r: Record) {
        if self.len == OUTBOX {
            let victim = (0..OUTBOX)
                .map(|i| (self.head + i) % OUTBOX)
                .find(|&at| !matches!(self.ring[at], Some(Record::Alarm(_))));
            self.dropped = self.dropped.saturating_add(1);
            match victim {
                Some(at) => self.remove(at),
                None if !matches!(r, Record::Alarm(_)) => return,
                // Only alarms held and another comes: the oldest alarm event goes.
                None => self.pop(),
            }
        }
        self.ring[(self.head + self.len) % OUTBOX] = Some(r);
        self.len += 1;
    }

    /// Removes the record at ring position `at`, keeping the others' order.
    fn remove(&mut self, at: usize) {
        let mut i = at;
        while i != self.head {
            let prev = (i + OUTBOX - 1) % OUTBOX;
            self.ring[i] = self.ring[prev];
            i = prev;
        }
        self.pop();
    }
}

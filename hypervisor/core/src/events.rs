//! What a partition makes the hypervisor do that is contained but worth knowing:
//! counted per partition and reported in a periodic summary, and the budget for the
//! log lines a partition can cause (LOG-004). A partition decides how often it traps,
//! so nothing it causes may write a log line unbudgeted: the hypervisor's log (and the
//! lock every core takes to write it) would otherwise be the partition's to flood.
//! Pure logic over counter ticks; the EL2 binary holds one [`Chatter`] per partition,
//! writes the lines it admits, and arms a timer to write the summary.

use core::fmt;

use crate::console::{Admit, RateLimit};

/// A contained event a partition caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A vCPU entered its guest (boot, `CPU_ON`, restart).
    VcpuStarted,
    /// A vCPU turned itself off (PSCI `CPU_OFF`).
    VcpuOff,
    /// PSCI `CPU_ON` refused (a vCPU outside the partition, already on, a stale
    /// generation, a halted partition).
    CpuOnRefused,
    /// A power call from a vCPU of a stopped generation, or of a halted partition
    /// (PSCI-002): refused.
    StalePowerCall,
    /// Set/way cache maintenance, completed as a no-op.
    SetWayNoOp,
    /// A hypercall nobody implements (answered `NOT_SUPPORTED`).
    UnknownHypercall,
    /// An interrupt waited for a free list register (the guest left them all full).
    ListRegistersFull,
    /// A distributor access outside the partition's interrupts (read as zero, ignored).
    DistributorOutside,
    /// A redistributor access not emulated (read as zero, ignored).
    RedistributorOutside,
    /// An SGI naming vCPUs outside the partition (dropped).
    SgiOutside,
    /// A doorbell ring over its rate (dropped).
    DoorbellDropped,
    /// A console line over its rate (dropped).
    ConsoleDropped,
    /// A fault, or a stop the partition asked for, that its policy answered.
    Stop,
    /// A transaction of one of its devices the SMMU stopped (DMA-003).
    DmaFault,
    /// A log line the partition caused over its budget (not written).
    LineSuppressed,
}

/// Number of [`Event`] kinds.
pub const KINDS: usize = 15;

const ALL: [Event; KINDS] = [
    Event::VcpuStarted,
    Event::VcpuOff,
    Event::CpuOnRefused,
    Event::StalePowerCall,
    Event::SetWayNoOp,
    Event::UnknownHypercall,
    Event::ListRegistersFull,
    Event::DistributorOutside,
    Event::RedistributorOutside,
    Event::SgiOutside,
    Event::DoorbellDropped,
    Event::ConsoleDropped,
    Event::Stop,
    Event::DmaFault,
    Event::LineSuppressed,
];

impl Event {
    /// How the summary names it.
    pub fn label(self) -> &'static str {
        match self {
            Event::VcpuStarted => "vCPU starts",
            Event::VcpuOff => "CPU_OFF",
            Event::CpuOnRefused => "CPU_ON refused",
            Event::StalePowerCall => "power calls of a stopped partition refused",
            Event::SetWayNoOp => "set/way no-ops",
            Event::UnknownHypercall => "unknown hypercalls",
            Event::ListRegistersFull => "waits for a list register",
            Event::DistributorOutside => "distributor accesses outside",
            Event::RedistributorOutside => "redistributor accesses ignored",
            Event::SgiOutside => "SGIs outside",
            Event::DoorbellDropped => "doorbell rings dropped",
            Event::ConsoleDropped => "console lines dropped",
            Event::Stop => "stops",
            Event::DmaFault => "device transactions stopped by the SMMU",
            Event::LineSuppressed => "log lines suppressed",
        }
    }

    fn index(self) -> usize {
        ALL.iter().position(|&e| e == self).unwrap_or(0)
    }
}

/// Log lines a partition may cause per second, and the burst it may save up: room for
/// a boot, a restart and a fault report at once, far below what would crowd out the
/// other partitions' lines.
pub const LINES_PER_SECOND: u64 = 20;
pub const LINE_BURST: u64 = 60;
/// Seconds between summaries (at most; none while nothing new happened).
pub const SUMMARY_SECONDS: u64 = 10;

/// One partition's event counts and log budget.
#[derive(Clone, Copy, Debug)]
pub struct Chatter {
    counts: [u64; KINDS],
    reported: [u64; KINDS],
    lines: RateLimit,
    armed: bool,
}

/// What to do about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note {
    /// Write its log line (it is within the budget).
    pub write: bool,
    /// Arm the summary timer: this is the first event since the last summary.
    pub arm: bool,
}

impl Chatter {
    pub fn new(ticks_per_second: u64, now: u64) -> Self {
        Self {
            counts: [0; KINDS],
            reported: [0; KINDS],
            lines: RateLimit::new(LINES_PER_SECOND, LINE_BURST, ticks_per_second, now),
            armed: false,
        }
    }

    /// Counts `event` at `now`; `line`: it comes with a log line, written only within
    /// the budget (else counted as suppressed).
    pub fn note(&mut self, event: Event, now: u64, line: bool) -> Note {
        self.bump(event);
        let write = line && matches!(self.lines.admit(now), Admit::Write { .. });
        if line && !write {
            self.bump(Event::LineSuppressed);
        }
        Note { write, arm: !core::mem::replace(&mut self.armed, true) }
    }

    /// Counts `event`, whose log line is written only when the count reaches a power of
    /// two (and within the budget): for what a guest may do by the thousand in normal
    /// operation (a probe of registers it does not have). The count so far is returned
    /// for the line.
    pub fn note_sparse(&mut self, event: Event, now: u64) -> (Note, u64) {
        let line = self.count(event).saturating_add(1).is_power_of_two();
        (self.note(event, now, line), self.count(event))
    }

    /// A log line the partition caused that counts as no event of its own (it is
    /// part of one already noted): within the budget or not.
    pub fn admit_line(&mut self, now: u64) -> bool {
        let write = matches!(self.lines.admit(now), Admit::Write { .. });
        if !write {
            self.bump(Event::LineSuppressed);
            self.armed = true;
        }
        write
    }

    fn bump(&mut self, event: Event) {
        let c = &mut self.counts[event.index()];
        *c = c.saturating_add(1);
    }

    /// Events since boot of kind `event`.
    pub fn count(&self, event: Event) -> u64 {
        self.counts[event.index()]
    }

    /// Whether the summary timer is armed (an event waits to be reported).
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// The summary timer fired: what happened since the last summary (`None` if
    /// nothing did); the timer is then disarmed until the next event.
    pub fn take_summary(&mut self) -> Option<Summary> {
        self.armed = false;
        if self.counts == self.reported {
            return None;
        }
        let s = Summary { since: sub(&self.counts, &self.reported), total: self.counts };
        self.reported = self.counts;
        Some(s)
    }
}

fn sub(a: &[u64; KINDS], b: &[u64; KINDS]) -> [u64; KINDS] {
    core::array::from_fn(|i| a[i].saturating_sub(b[i]))
}

/// Events since the last summary, and since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub since: [u64; KINDS],
    pub total: [u64; KINDS],
}

impl Summary {
    pub fn since(&self, event: Event) -> u64 {
        self.since[event.index()]
    }
}

impl Summary {
    /// The kinds that happened since the last summary, in groups of at most `per_line`
    /// (so each fits a log line), each shown as `label N (T since boot), ...`.
    pub fn lines(&self, per_line: usize) -> impl Iterator<Item = SummaryLine<'_>> + '_ {
        let kinds = ALL.iter().filter(|e| self.since[e.index()] > 0).count();
        let per_line = per_line.max(1);
        (0..kinds.div_ceil(per_line)).map(move |k| SummaryLine { summary: self, skip: k * per_line, take: per_line })
    }
}

/// Part of a [`Summary`], for one log line.
#[derive(Clone, Copy, Debug)]
pub struct SummaryLine<'a> {
    summary: &'a Summary,
    skip: usize,
    take: usize,
}

impl fmt::Display for SummaryLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.summary;
        let kinds = ALL.iter().filter(|e| s.since[e.index()] > 0).skip(self.skip).take(self.take);
        for (k, e) in kinds.enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {} ({} since boot)", e.label(), s.since[e.index()], s.total[e.index()])?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    /// Every kind that happened since the last summary, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lines(KINDS).next() {
            Some(line) => line.fmt(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    /// LOG-004: a partition's lines beyond its budget are not written but counted, and
    /// the summary reports them with every event since the last one.
    #[test]
    fn lines_are_budgeted_and_events_summarised() {
        let mut c = Chatter::new(1000, 0); // 50 ticks per line
        let first = c.note(Event::VcpuStarted, 0, true);
        assert_eq!(first, Note { write: true, arm: true });
        let mut written = 1;
        for _ in 0..10_000 {
            let n = c.note(Event::CpuOnRefused, 0, true);
            assert!(!n.arm, "armed once until the summary");
            written += usize::from(n.write);
        }
        assert_eq!(written as u64, LINE_BURST, "only the burst at one instant");
        c.note(Event::SetWayNoOp, 0, false);
        let s = c.take_summary().expect("something happened");
        assert_eq!(s.since(Event::CpuOnRefused), 10_000);
        assert_eq!(s.since(Event::LineSuppressed), 10_001 - LINE_BURST);
        assert_eq!(s.since(Event::SetWayNoOp), 1);
        let text = format!("{s}");
        assert!(text.starts_with("vCPU starts 1 (1 since boot), CPU_ON refused 10000"), "{text}");
        assert!(text.contains("log lines suppressed 9941 (9941 since boot)"), "{text}");
        assert!(!text.contains("doorbell"), "only kinds that happened: {text}");
        let lines: std::vec::Vec<_> = s.lines(2).map(|l| format!("{l}")).collect();
        assert_eq!(lines.len(), 2, "four kinds, two a line: {lines:?}");
        assert_eq!(lines[0], "vCPU starts 1 (1 since boot), CPU_ON refused 10000 (10000 since boot)");
        assert_eq!(c.take_summary(), None, "nothing new");
        assert!(c.note(Event::UnknownHypercall, 1_000_000, true).arm, "re-armed by the next event");
        let s = c.take_summary().unwrap();
        assert_eq!((s.since(Event::UnknownHypercall), s.total[Event::CpuOnRefused.index()]), (1, 10_000));
        assert!(c.note(Event::UnknownHypercall, 1_000_000, true).write, "the budget refilled with time");
    }

    #[test]
    fn sparse_events_write_lines_at_powers_of_two() {
        let mut c = Chatter::new(1000, 0);
        let lines: std::vec::Vec<u64> = (0..100)
            .filter_map(|_| Some(c.note_sparse(Event::DistributorOutside, 0)).filter(|(n, _)| n.write))
            .map(|(_, k)| k)
            .collect();
        assert_eq!(lines, [1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn suppressed_lines_of_a_noted_event_arm_the_summary() {
        let mut c = Chatter::new(1000, 0);
        for _ in 0..LINE_BURST {
            assert!(c.admit_line(0));
        }
        assert!(!c.admit_line(0));
        assert!(c.armed());
        assert_eq!(c.take_summary().unwrap().since(Event::LineSuppressed), 1);
    }

    #[test]
    fn counts_saturate() {
        let mut c = Chatter::new(1, 0);
        c.counts[0] = u64::MAX;
        c.note(Event::VcpuStarted, 0, false);
        assert_eq!(c.count(Event::VcpuStarted), u64::MAX);
    }
}

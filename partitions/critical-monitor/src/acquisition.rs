//! The seam between the monitor and its ECG front end (MED-001).
//!
//! A front end delivers single-lead samples at a fixed rate; the monitor asks it, with
//! the time now, for the next one. On QEMU the front end is [`Replay`]: a recording
//! (`septum_ecg::recording`) that QEMU's loader placed in the partition's read-only
//! sensor memory, played back in real time from the monitor's own counter. On a board
//! an SPI analogue front end (TI ADS1292R: 24-bit samples on DRDY, lead-off status in
//! each frame) implements the same trait: `poll` reads a frame when DRDY is set, says
//! [`Poll::Idle`] until the next one is due, and reports a frame it missed (DRDY came
//! again before the previous frame was read) as [`Poll::Lost`]. Nothing above this
//! trait knows which one it has.

use septum_ecg::recording::Recording;
use septum_ecg::Sample;

/// What a front end has for the monitor now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The next sample, in order.
    Ready(Sample),
    /// Samples that were due but are gone: the monitor fell further behind than the
    /// front end buffers (an overrun). Counted and reported; the next poll goes on with
    /// the first sample still held.
    Lost(u64),
    /// Nothing is due before this counter value.
    Idle { until: u64 },
}

/// An ECG front end.
pub trait FrontEnd {
    /// Samples per second.
    fn rate_hz(&self) -> u32;
    /// The next sample if one is due at counter value `now`.
    fn poll(&mut self, now: u64) -> Poll;
}

/// How many due samples a replay holds for a monitor running late before it counts
/// them lost: the depth of a typical AFE's FIFO, and at 250 Hz 128 ms of slack, far
/// more than one heartbeat's work.
pub const BUFFERED: u64 = 32;

/// A recording in sensor memory, sampled at its own rate from the counter: sample `k`
/// is due at `start + k / rate` seconds, whatever the host running QEMU does. The
/// recording repeats when it ends (sample indices keep counting).
pub struct Replay {
    recording: Recording<'static>,
    start: u64,
    counter_hz: u64,
    /// The index of the next sample to deliver.
    next: u64,
}

impl Replay {
    pub fn new(recording: Recording<'static>, start: u64, counter_hz: u64) -> Self {
        Self { recording, start, counter_hz: counter_hz.max(1), next: 0 }
    }

    /// Counter ticks from `start` until sample `k` is due (rounded up).
    fn due_at(&self, k: u64) -> u64 {
        let rate = u128::from(self.recording.rate_hz().max(1));
        let ticks = (u128::from(k) * u128::from(self.counter_hz)).div_ceil(rate);
        self.start.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
    }

    /// How many samples are due at `now` (indices `0..due`).
    fn due(&self, now: u64) -> u64 {
        let elapsed = u128::from(now.saturating_sub(self.start));
        let n = elapsed * u128::from(self.recording.rate_hz()) / u128::from(self.counter_hz) + 1;
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

impl FrontEnd for Replay {
    fn rate_hz(&self) -> u32 {
        self.recording.rate_hz()
    }

    fn poll(&mut self, now: u64) -> Poll {
        let due = self.due(now);
        if due <= self.next {
            return Poll::Idle { until: self.due_at(self.next) };
        }
        let behind = due - self.next;
        if behind > BUFFERED {
            let lost = behind - BUFFERED;
            self.next += lost;
            return Poll::Lost(lost);
        }
        let len = self.recording.len().max(1) as u64;
        let sample = self.recording.sample((self.next % len) as usize);
        self.next += 1;
        Poll::Ready(sample)
    }
}

//! The signal-quality index: whether the ECG can be trusted, 0 (unusable) to 100, per
//! beat and per second, with flags saying why.
//!
//! * Leads off: the front end says so ([`Sample::LeadsOff`](crate::Sample)), or the
//!   signal sits at the converter's rails (saturation). Quality 0.
//! * Noise: the high-frequency residual (muscle noise, mains) against the QRS
//!   amplitude, and the noise peaks the detector sees in its own band against its
//!   signal peaks; and more QRS detections than any heart makes (over 5 a second).
//! * Flat: under 50 µV peak to peak over a second. Flagged, but a flat signal from
//!   connected electrodes is what asystole looks like: it stays usable, so that
//!   asystole is alarmed (a missed asystole is the worse error).

/// Flags, per second.
pub const FLAG_LEADS_OFF: u8 = 1 << 0;
pub const FLAG_SATURATED: u8 = 1 << 1;
pub const FLAG_NOISE: u8 = 1 << 2;
pub const FLAG_FLAT: u8 = 1 << 3;
/// The detector is (re)learning its thresholds: no beats yet.
pub const FLAG_LEARNING: u8 = 1 << 4;

/// Below this quality the signal is not used for physiological alarms.
pub const USABLE: u8 = 40;
/// Peak to peak under this over a second is flagged flat (µV).
pub const FLAT_UV: i32 = 50;
/// More detections than this in [`DENSITY_WINDOW_MS`] is noise.
pub const DENSITY_MAX_BEATS: usize = 10;
pub const DENSITY_WINDOW_MS: u32 = 2000;

/// The residual-to-amplitude ratio (in %) at which quality starts falling, and where it
/// reaches 0.
const HF_GOOD_PCT: i64 = 15;
const HF_BAD_PCT: i64 = 80;
/// The same for the detector's noise peaks against its signal peaks (integrated
/// signal: amplitude squared).
const BAND_GOOD_PCT: i64 = 8;
const BAND_BAD_PCT: i64 = 45;

/// A linear ramp from 100 at `good` down to 0 at `bad`.
fn ramp(ratio_pct: i64, good: i64, bad: i64) -> u8 {
    if ratio_pct <= good {
        100
    } else if ratio_pct >= bad {
        0
    } else {
        (100 - (ratio_pct - good) * 100 / (bad - good)) as u8
    }
}

/// The quality tracker.
#[derive(Clone, Debug)]
pub struct Quality {
    full_scale_uv: i32,
    /// Mean |residual| × 16, an exponential average over about half a second.
    hf16: i64,
    hf_shift: u32,
    /// The QRS amplitude, a running average of the last beats (µV).
    amp: i32,
    /// The last detections' sample indices, for the density check.
    beats: [u64; DENSITY_MAX_BEATS + 1],
    beat_pos: usize,
    density_window: u64,
    /// This second so far.
    min: i32,
    max: i32,
    flags: u8,
    worst: u8,
}

impl Quality {
    pub fn new(rate_hz: u32) -> Self {
        // 2^shift samples ~ half a second.
        let hf_shift = (rate_hz / 2).max(2).ilog2();
        Self {
            full_scale_uv: i16::MAX as i32,
            hf16: 0,
            hf_shift,
            amp: 0,
            beats: [u64::MAX; DENSITY_MAX_BEATS + 1],
            beat_pos: 0,
            density_window: crate::filter::samples(rate_hz, DENSITY_WINDOW_MS, 1000) as u64,
            min: i32::MAX,
            max: i32::MIN,
            flags: 0,
            worst: 100,
        }
    }

    /// Where the front end's converter saturates, in µV (default: ±32767 µV, an `i16`
    /// at 1 µV per LSB).
    pub fn set_full_scale_uv(&mut self, uv: u32) {
        self.full_scale_uv = uv.min(i32::MAX as u32) as i32;
    }

    /// Whether a sample sits at the rails.
    pub fn saturated(&self, uv: i32) -> bool {
        let margin = self.full_scale_uv / 64;
        uv.saturating_abs() >= self.full_scale_uv - margin
    }

    /// Leads off (or back on): forget the amplitude and noise estimates.
    pub fn reset(&mut self) {
        self.hf16 = 0;
        self.amp = 0;
        self.beats = [u64::MAX; DENSITY_MAX_BEATS + 1];
    }

    /// One connected sample: its value and the filter's residual.
    pub fn sample(&mut self, uv: i32, hf: i32) {
        self.min = self.min.min(uv);
        self.max = self.max.max(uv);
        let x = (hf.saturating_abs() as i64) << 4;
        self.hf16 += (x - self.hf16) >> self.hf_shift;
    }

    /// Marks the current second.
    pub fn flag(&mut self, flags: u8) {
        self.flags |= flags;
    }

    /// A detection at sample `r` with band-pass amplitude `amp`.
    pub fn beat(&mut self, r: u64, amp: i32) {
        self.amp = if self.amp == 0 { amp } else { (3 * self.amp + amp) / 4 };
        self.beats[self.beat_pos] = r;
        self.beat_pos = (self.beat_pos + 1) % self.beats.len();
    }

    /// Whether the last detections are denser than any heart (at sample `now`).
    fn too_dense(&self, now: u64) -> bool {
        // The oldest kept detection is the one about to be overwritten.
        let oldest = self.beats[self.beat_pos];
        oldest != u64::MAX && now.saturating_sub(oldest) < self.density_window
    }

    /// The quality now (0..=100) given the detector's signal and noise peak levels.
    pub fn now(&self, now: u64, spk: i64, npk: i64) -> u8 {
        if self.too_dense(now) {
            return 0;
        }
        let hf = self.hf16 >> 4;
        // Before the first beat, judge the residual against a typical 1 mV QRS.
        let amp = if self.amp > 0 { self.amp as i64 } else { 1000 };
        let q_hf = ramp(hf * 100 / amp.max(1), HF_GOOD_PCT, HF_BAD_PCT);
        let q_band = if spk > 0 { ramp(npk * 100 / spk, BAND_GOOD_PCT, BAND_BAD_PCT) } else { 100 };
        q_hf.min(q_band)
    }

    /// Folds the quality at a sample into the second's worst.
    pub fn observe(&mut self, q: u8) {
        self.worst = self.worst.min(q);
    }

    /// Ends a second: its quality and flags, and starts the next.
    pub fn end_second(&mut self) -> (u8, u8) {
        let mut flags = self.flags;
        let mut q = self.worst;
        if flags & (FLAG_LEADS_OFF | FLAG_SATURATED) != 0 {
            q = 0;
        }
        if self.max >= self.min && self.max.saturating_sub(self.min) < FLAT_UV {
            flags |= FLAG_FLAT;
        }
        if q < USABLE && flags & (FLAG_LEADS_OFF | FLAG_SATURATED | FLAG_LEARNING) == 0 {
            flags |= FLAG_NOISE;
        }
        self.flags = 0;
        self.worst = 100;
        self.min = i32::MAX;
        self.max = i32::MIN;
        (q, flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_and_density() {
        assert_eq!(ramp(5, 8, 40), 100);
        assert_eq!(ramp(24, 8, 40), 50);
        assert_eq!(ramp(50, 8, 40), 0);
        let mut q = Quality::new(250);
        for i in 0..DENSITY_MAX_BEATS as u64 {
            q.beat(i * 40, 1000);
        }
        assert_eq!(q.now(400, 1000, 10), 100);
        q.beat(400, 1000);
        assert_eq!(q.now(400, 1000, 10), 0, "11 beats in 1.6 s is noise");
        assert!(q.saturated(32767) && q.saturated(-32500) && !q.saturated(30000));
    }
}

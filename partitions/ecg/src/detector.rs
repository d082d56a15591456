//! QRS detection on the filter chain's output, after Pan and Tompkins (1985):
//!
//! * A peak of the integrated signal (`mwi`) is a local maximum that nothing larger
//!   follows for [`CONFIRM_MS`]; after it, the next search starts once the signal has
//!   fallen to half the peak or the refractory period has passed.
//! * Each peak is located on the band-pass signal: the R peak is the largest deflection
//!   (either sign) in the integration window before the peak, and the steepest slope
//!   there is the QRS's slope.
//! * Adaptive thresholds: running levels of signal peaks (`spk`) and noise peaks
//!   (`npk`), learnt over the first 2 s; a peak above `thr1 = npk + (spk - npk) / 4` is
//!   a QRS, anything else a noise peak.
//! * Refractory period: no QRS within 200 ms of the last. T-wave discrimination (the
//!   tall T waves IEC 60601-2-27 201.7.9.2.9.101 b) 2) tests): a
//!   peak within 360 ms whose slope is under half the last QRS's is a T wave.
//! * Search-back: when no QRS has come for 1.66 average RR intervals, the largest
//!   noise peak above `thr2 = thr1 / 2` since the last QRS is taken as one.
//!
//! Latency: the detector decides a QRS [`Detector::latency`] samples after its R peak
//! at most (the band-pass delay, the integration window and [`CONFIRM_MS`]), except
//! beats found by search-back, which come when the search-back runs (at most 1.66
//! average RR intervals later, bounded by the RR clamp). Everything per sample is a
//! fixed amount of work; locating a peak scans a fixed window of the band-pass history.

use crate::filter::{samples, Filter, Filtered, BP_HISTORY};

/// A peak is confirmed when nothing larger follows for this long.
pub const CONFIRM_MS: u32 = 100;
/// No QRS closer than this to the last.
pub const REFRACTORY_MS: u32 = 200;
/// A peak this close to the last QRS must have at least half its slope.
pub const TWAVE_MS: u32 = 360;
/// The thresholds are learnt over this long after a (re)start.
pub const LEARN_MS: u32 = 2000;
/// Search-back after this many average RR intervals, in 1/100.
pub const SEARCHBACK_RR_PCT: u64 = 166;
/// The RR average used for search-back is held within these bounds (ms).
pub const RR_AVG_MIN_MS: u32 = 250;
pub const RR_AVG_MAX_MS: u32 = 2000;
/// RR intervals averaged for search-back.
const RR_N: usize = 8;
/// The smallest `thr1` (µV², the integrated signal's unit): a QRS must be at least
/// about 0.1 mV tall, so the baseline noise of a flat (asystolic) trace is never taken
/// for beats however long it lasts.
pub const MIN_THR1: i64 = 150;

/// A detected QRS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qrs {
    /// The R peak's sample index (input samples since the monitor started).
    pub r: u64,
    /// The largest band-pass deflection, µV (magnitude).
    pub amplitude: i32,
    /// The steepest band-pass slope, µV per derivative span.
    pub slope: i32,
    /// Found by search-back.
    pub searchback: bool,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    r: u64,
    peak: i64,
    amplitude: i32,
    slope: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Learning the thresholds until this input index.
    Learning {
        until: u64,
        max: i64,
        sum: i64,
        count: u32,
    },
    Detecting,
}

/// The detector's state.
#[derive(Clone, Debug)]
pub struct Detector {
    confirm: u64,
    refractory: u64,
    twave: u64,
    learn: u64,
    rr_min: u64,
    rr_max: u64,
    phase: Phase,
    /// The running maximum of the integrated signal, and where (input index).
    cand: i64,
    cand_at: u64,
    /// After a peak: waiting for the signal to fall to this, or until `falling_until`.
    falling: Option<(i64, u64)>,
    spk: i64,
    npk: i64,
    last: Option<Qrs>,
    rr: [u32; RR_N],
    rr_count: usize,
    rr_pos: usize,
    best: Option<Candidate>,
    rate_hz: u32,
}

impl Detector {
    pub fn new(rate_hz: u32) -> Self {
        Self {
            confirm: samples(rate_hz, CONFIRM_MS, 1000) as u64,
            refractory: samples(rate_hz, REFRACTORY_MS, 1000) as u64,
            twave: samples(rate_hz, TWAVE_MS, 1000) as u64,
            learn: samples(rate_hz, LEARN_MS, 1000) as u64,
            rr_min: samples(rate_hz, RR_AVG_MIN_MS, 1000) as u64,
            rr_max: samples(rate_hz, RR_AVG_MAX_MS, 1000) as u64,
            phase: Phase::Learning { until: 0, max: 0, sum: 0, count: 0 },
            cand: 0,
            cand_at: 0,
            falling: None,
            spk: 0,
            npk: 0,
            last: None,
            rr: [0; RR_N],
            rr_count: 0,
            rr_pos: 0,
            best: None,
            rate_hz,
        }
    }

    /// The largest delay, in samples, from an R peak to the push that reports it
    /// (normal detections).
    pub fn latency(&self, f: &Filter) -> u64 {
        f.bp_delay() as u64 + f.mwi_len() as u64 + self.confirm + samples(self.rate_hz, 60, 1000) as u64
    }

    /// Starts over: learning again from input index `now` (start, leads back on).
    pub fn restart(&mut self, now: u64, settle: u64) {
        let rate = self.rate_hz;
        *self = Self::new(rate);
        self.phase = Phase::Learning { until: now + settle + self.learn, max: 0, sum: 0, count: 0 };
    }

    /// Whether the thresholds are still being learnt.
    pub fn learning(&self) -> bool {
        matches!(self.phase, Phase::Learning { .. })
    }

    /// The last QRS detected.
    pub fn last(&self) -> Option<Qrs> {
        self.last
    }

    /// The signal and noise peak levels (µV²).
    pub fn levels(&self) -> (i64, i64) {
        (self.spk, self.npk)
    }

    fn thr1(&self) -> i64 {
        (self.npk + (self.spk - self.npk) / 4).max(MIN_THR1)
    }

    fn rr_avg(&self) -> Option<u64> {
        if self.rr_count == 0 {
            return None;
        }
        let n = self.rr_count.min(RR_N);
        let sum: u64 = self.rr[..n].iter().map(|&r| r as u64).sum();
        Some((sum / n as u64).clamp(self.rr_min, self.rr_max))
    }

    /// One filtered sample; `now` is the input index of the sample just filtered.
    pub fn push(&mut self, now: u64, y: &Filtered, f: &Filter) -> Option<Qrs> {
        if let Phase::Learning { until, max, sum, count } = &mut self.phase {
            if now + self.learn >= *until {
                *max = (*max).max(y.mwi);
                *sum += y.mwi;
                *count += 1;
            }
            if now >= *until {
                self.spk = (*max / 3).max(MIN_THR1 * 2);
                self.npk = *sum / (*count).max(1) as i64 / 2;
                self.phase = Phase::Detecting;
                // Start the peak search afresh: a peak straddling the end is skipped.
                self.falling = Some((0, now + self.refractory));
            }
            return None;
        }
        let mut found = None;
        match self.falling {
            Some((level, until)) => {
                if y.mwi < level || now >= until {
                    self.falling = None;
                    self.cand = y.mwi;
                    self.cand_at = now;
                }
            }
            None => {
                if y.mwi > self.cand {
                    self.cand = y.mwi;
                    self.cand_at = now;
                } else if now - self.cand_at >= self.confirm {
                    let c = self.locate(now, f);
                    self.falling = Some((self.cand / 2, self.cand_at + self.refractory));
                    found = self.classify(c);
                    self.cand = 0;
                }
            }
        }
        if found.is_none() {
            found = self.search_back(now, f);
        }
        if let Some(q) = found {
            if let Some(last) = self.last {
                let rr = (q.r - last.r).min(u32::MAX as u64) as u32;
                self.rr[self.rr_pos] = rr;
                self.rr_pos = (self.rr_pos + 1) % RR_N;
                self.rr_count += 1;
            }
            self.last = Some(q);
            self.best = None;
        }
        found
    }

    /// The R peak, amplitude and slope of the candidate at `cand_at`: a fixed-length
    /// scan of the band-pass history over the integration window before it.
    fn locate(&self, now: u64, f: &Filter) -> Candidate {
        let back = (now - self.cand_at) as usize;
        let span = f.mwi_len() + f.mwi_len() / 4 + samples(self.rate_hz, 1, 125);
        let first = back;
        let last = (back + span).min(BP_HISTORY - 10);
        let (mut best_d, mut amp, mut slope) = (first, 0i32, 0i32);
        let k = samples(self.rate_hz, 1, 125).min(8);
        for d in first..=last {
            let v = f.bp_ago(d);
            if v.abs() > amp {
                amp = v.abs();
                best_d = d;
            }
            slope = slope.max((v - f.bp_ago(d + k)).abs());
        }
        // `bp_ago(d)` is the band-pass value of input index `now - d`, which lags the
        // input by `bp_delay`.
        let r = now.saturating_sub((best_d + f.bp_delay()) as u64);
        Candidate { r, peak: self.cand, amplitude: amp, slope }
    }

    /// Whether `c` may be a QRS by its timing: after the refractory period, and, within
    /// the T-wave window, at least half as steep as the last QRS.
    fn plausible(&self, c: &Candidate, min_gap: u64) -> bool {
        match self.last {
            None => true,
            Some(last) => {
                let gap = c.r.saturating_sub(last.r);
                c.r > last.r && gap >= min_gap && (gap >= self.twave || c.slope * 2 >= last.slope)
            }
        }
    }

    fn classify(&mut self, c: Candidate) -> Option<Qrs> {
        if let Some(last) = self.last {
            if c.r <= last.r || c.r - last.r < self.refractory {
                return None;
            }
        }
        let thr1 = self.thr1();
        if c.peak > thr1 && self.plausible(&c, self.refractory) {
            self.spk = (c.peak + 7 * self.spk) / 8;
            return Some(Qrs { r: c.r, amplitude: c.amplitude, slope: c.slope, searchback: false });
        }
        self.npk = (c.peak + 7 * self.npk) / 8;
        if c.peak > thr1 / 2 && self.plausible(&c, self.twave) && self.best.is_none_or(|b| c.peak > b.peak) {
            self.best = Some(c);
        }
        None
    }

    fn search_back(&mut self, now: u64, f: &Filter) -> Option<Qrs> {
        let (last, avg) = (self.last?, self.rr_avg()?);
        let best = self.best?;
        // Every peak up to here has been decided.
        let horizon = now.saturating_sub(f.bp_delay() as u64 + f.mwi_len() as u64 + self.confirm);
        if horizon.saturating_sub(last.r) * 100 <= avg * SEARCHBACK_RR_PCT {
            return None;
        }
        self.best = None;
        self.spk = (best.peak + 3 * self.spk) / 4;
        Some(Qrs { r: best.r, amplitude: best.amplitude, slope: best.slope, searchback: true })
    }
}

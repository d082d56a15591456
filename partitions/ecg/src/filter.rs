//! The filter chain in front of the QRS detector, after Pan and Tompkins (1985), in
//! integer arithmetic with every length derived from the sampling rate:
//!
//! 1. Low-pass: two cascaded moving averages, one 20 ms long (a zero at 50 Hz and its
//!    harmonics) and one 1/60 s long (60 Hz): mains interference is removed whichever
//!    country the monitor is in, and the QRS's 5-15 Hz pass.
//! 2. High-pass: the low-passed signal, delayed to the middle of a 160 ms moving
//!    average, minus that average: baseline wander and P/T energy below about 5 Hz go.
//!    Together: the band-pass signal `bp` the R peak is located on.
//! 3. Derivative over about 8 ms, squared, and averaged over a 150 ms moving window
//!    (`mwi`): one smooth hump per QRS, whose size grows with the QRS's slopes.
//!
//! Each stage is a running sum over a ring buffer sized for 1000 Hz: a fixed number of
//! operations per sample, whatever the signal.
//!
//! Also a noise probe for the quality index: what the low-pass removed (the input
//! minus its low-passed self, aligned), through the combs `(1 - z^-L50)(1 - z^-L60)`,
//! which null mains and its harmonics: muscle noise remains, which the detector's
//! band also gets, while mains is no threat to detection and is not counted.

/// A moving sum over the last `len` values (`len <= N`).
#[derive(Clone, Debug)]
pub struct Boxcar<const N: usize> {
    buf: [i32; N],
    len: usize,
    pos: usize,
    sum: i64,
}

impl<const N: usize> Boxcar<N> {
    pub fn new(len: usize) -> Self {
        Self { buf: [0; N], len: len.clamp(1, N), pos: 0, sum: 0 }
    }

    /// Adds `x`, drops the value `len` samples old, and returns the sum.
    pub fn push(&mut self, x: i32) -> i64 {
        let old = self.buf[self.pos];
        self.buf[self.pos] = x;
        self.pos = if self.pos + 1 == self.len { 0 } else { self.pos + 1 };
        self.sum += x as i64 - old as i64;
        self.sum
    }

    /// The moving average after the last push.
    pub fn mean(&self) -> i32 {
        (self.sum / self.len as i64) as i32
    }

    /// The value pushed `d` pushes ago (0: the last), `d < len`.
    pub fn delayed(&self, d: usize) -> i32 {
        let d = d.min(self.len - 1);
        let last = if self.pos == 0 { self.len - 1 } else { self.pos - 1 };
        let i = if last >= d { last - d } else { last + self.len - d };
        self.buf[i]
    }

    pub fn window(&self) -> usize {
        self.len
    }

    pub fn reset(&mut self) {
        self.buf = [0; N];
        self.pos = 0;
        self.sum = 0;
    }
}

/// Ring sizes, for the highest supported rate (1000 Hz).
const L50_MAX: usize = 20;
const L60_MAX: usize = 17;
const HP_MAX: usize = 161;
const MWI_MAX: usize = 150;
/// The band-pass history the detector looks back into (a power of two).
pub const BP_HISTORY: usize = 512;
/// The raw input the noise probe looks back into (a power of two over L50 + L60).
const RAW_HISTORY: usize = 64;

/// `round(rate * num / den)`, at least 1.
pub fn samples(rate_hz: u32, num: u32, den: u32) -> usize {
    (((rate_hz * num) + den / 2) / den).max(1) as usize
}

/// What the filter chain gives for one input sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// The band-pass signal, µV, delayed by [`Filter::bp_delay`] samples.
    pub bp: i32,
    /// The derivative of `bp` over the derivative span, µV.
    pub slope: i32,
    /// The moving-window integral of the squared slope (µV², mean over the window).
    pub mwi: i64,
    /// The noise probe (µV): muscle noise, not mains or wander.
    pub hf: i32,
}

/// The filter chain.
#[derive(Clone, Debug)]
pub struct Filter {
    lp50: Boxcar<L50_MAX>,
    lp60: Boxcar<L60_MAX>,
    hp: Boxcar<HP_MAX>,
    mwi: Boxcar<MWI_MAX>,
    bp: [i32; BP_HISTORY],
    raw: [i32; RAW_HISTORY],
    /// Samples pushed since the last reset.
    n: u64,
    lp_delay: usize,
    deriv_span: usize,
    l50: usize,
    l60: usize,
}

impl Filter {
    pub fn new(rate_hz: u32) -> Self {
        let l50 = samples(rate_hz, 1, 50).min(L50_MAX);
        let l60 = samples(rate_hz, 1, 60).min(L60_MAX);
        // Odd, so the delayed sample sits exactly in the middle of the average.
        let hp = (samples(rate_hz, 16, 100) | 1).min(HP_MAX);
        let mwi = samples(rate_hz, 15, 100).min(MWI_MAX);
        Self {
            lp50: Boxcar::new(l50),
            lp60: Boxcar::new(l60),
            hp: Boxcar::new(hp),
            mwi: Boxcar::new(mwi),
            bp: [0; BP_HISTORY],
            raw: [0; RAW_HISTORY],
            n: 0,
            l50,
            l60,
            lp_delay: (l50 - 1 + l60 - 1) / 2,
            deriv_span: samples(rate_hz, 1, 125).min(8),
        }
    }

    /// How many samples `bp` lags the input.
    pub fn bp_delay(&self) -> usize {
        self.lp_delay + (self.hp.window() - 1) / 2
    }

    /// The moving-window integration's length in samples.
    pub fn mwi_len(&self) -> usize {
        self.mwi.window()
    }

    /// Forgets everything (leads off: the next samples start the filters afresh).
    pub fn reset(&mut self) {
        self.lp50.reset();
        self.lp60.reset();
        self.hp.reset();
        self.mwi.reset();
        self.bp = [0; BP_HISTORY];
        self.raw = [0; RAW_HISTORY];
        self.n = 0;
    }

    /// Samples since the last reset; the outputs settle after [`Filter::settle`].
    pub fn pushed(&self) -> u64 {
        self.n
    }

    /// Samples until every stage has seen only real input.
    pub fn settle(&self) -> u64 {
        (self.lp50.window() + self.lp60.window() + self.hp.window() + self.mwi.window() + self.deriv_span) as u64
    }

    /// `bp` as it was `d` samples ago (`d < BP_HISTORY`).
    pub fn bp_ago(&self, d: usize) -> i32 {
        self.bp[((self.n as usize).wrapping_sub(1).wrapping_sub(d)) & (BP_HISTORY - 1)]
    }

    pub fn push(&mut self, x: i32) -> Filtered {
        // Clamp: a front end cannot give more than tens of mV; the sums stay far
        // from overflow whatever arrives.
        let x = x.clamp(-(1 << 20), 1 << 20);
        self.lp50.push(x);
        let a = self.lp50.mean();
        self.lp60.push(a);
        let lp = self.lp60.mean();
        // What the low-pass took away: muscle noise, mains, a little of the QRS's
        // edges; then the combs take mains away.
        let r = self.lp50.delayed(self.lp_delay) - lp;
        let old = |d: usize| self.raw[(self.n as usize).wrapping_sub(d) & (RAW_HISTORY - 1)];
        let hf = r - old(self.l50) - old(self.l60) + old(self.l50 + self.l60);
        self.raw[self.n as usize & (RAW_HISTORY - 1)] = r;
        self.hp.push(lp);
        let bp = self.hp.delayed((self.hp.window() - 1) / 2) - self.hp.mean();
        let at = self.n as usize & (BP_HISTORY - 1);
        self.bp[at] = bp;
        self.n += 1;
        let slope = bp - self.bp_ago(self.deriv_span);
        let s = slope.clamp(-(1 << 15), 1 << 15) as i64;
        // Squares of at most 2^30 fit the ring's i32 after halving.
        let sq = ((s * s) >> 1) as i32;
        let sum = self.mwi.push(sq);
        Filtered { bp, slope, mwi: (sum << 1) / self.mwi.window() as i64, hf }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxcar_sums_and_delays() {
        let mut b = Boxcar::<8>::new(3);
        for x in 1..=5 {
            b.push(x);
        }
        assert_eq!(b.mean(), 4);
        assert_eq!(b.delayed(0), 5);
        assert_eq!(b.delayed(2), 3);
    }

    fn tone(rate: u32, hz: f64, n: usize, amp: f64) -> impl Iterator<Item = i32> {
        (0..n).map(move |i| (amp * (2.0 * core::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i32)
    }

    fn bp_peak(rate: u32, hz: f64) -> i32 {
        let mut f = Filter::new(rate);
        let n = rate as usize * 4;
        tone(rate, hz, n, 1000.0)
            .enumerate()
            .map(|(i, x)| (i, f.push(x).bp))
            .filter(|(i, _)| *i > n / 2)
            .map(|(_, b)| b.abs())
            .max()
            .unwrap()
    }

    /// The band-pass keeps the QRS band and removes mains and baseline wander, at
    /// every supported rate.
    #[test]
    fn band_pass_keeps_qrs_band_and_removes_mains_and_wander() {
        for rate in [100, 250, 360, 500, 1000] {
            let qrs = bp_peak(rate, 10.0);
            assert!(qrs > 500, "{rate} Hz: 10 Hz passes at {qrs}");
            assert!(bp_peak(rate, 0.3) < 60, "{rate} Hz: wander {}", bp_peak(rate, 0.3));
            if rate >= 250 {
                assert!(bp_peak(rate, 50.0) < 120, "{rate} Hz: 50 Hz {}", bp_peak(rate, 50.0));
                assert!(bp_peak(rate, 60.0) < 120, "{rate} Hz: 60 Hz {}", bp_peak(rate, 60.0));
            }
        }
    }
}

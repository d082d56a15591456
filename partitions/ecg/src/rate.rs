//! RR intervals and the heart rate shown, after the averaging manufacturers disclose
//! under IEC 60601-2-27:2011 201.7.9.2.9.101 b) 3): the mean of the middle eight of the
//! last 12 RR intervals (the two shortest and the two longest left out); when the last
//! three are all longer than 1.2 s (a slow rhythm), the mean of the last four, so a
//! bradycardia shows within a few beats.
//!
//! Two out at each end, not one: an ectopic beat makes a short interval and a long
//! compensatory pause, and a window of 12 often holds a pause whose short partner has
//! already left it; dropping one at each end then kept that pause and showed the rate
//! 2-3 bpm low (measured on `default.ecg`, whose PVCs come every ninth beat).

/// RR intervals kept.
pub const RR_KEPT: usize = 12;
/// Above this, the last intervals are averaged on their own (ms).
pub const SLOW_RR_MS: u32 = 1200;

/// The recent RR intervals (ms).
#[derive(Clone, Debug, Default)]
pub struct HeartRate {
    rr: [u32; RR_KEPT],
    count: usize,
    pos: usize,
}

impl HeartRate {
    /// Forgets every interval (leads off: the next beat starts afresh).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn push(&mut self, rr_ms: u32) {
        self.rr[self.pos] = rr_ms;
        self.pos = (self.pos + 1) % RR_KEPT;
        self.count = (self.count + 1).min(RR_KEPT);
    }

    /// The `i`th most recent interval (0: the last).
    fn recent(&self, i: usize) -> u32 {
        self.rr[(self.pos + RR_KEPT - 1 - i) % RR_KEPT]
    }

    /// The averaged RR interval (ms), once there are two intervals.
    pub fn average_rr_ms(&self) -> Option<u32> {
        let n = self.count;
        if n < 2 {
            return None;
        }
        if n >= 3 && (0..3).all(|i| self.recent(i) > SLOW_RR_MS) {
            let k = n.min(4);
            return Some(((0..k).map(|i| self.recent(i) as u64).sum::<u64>() / k as u64) as u32);
        }
        // Sorted copy of the (at most 12) intervals: a fixed, small amount of work.
        let mut sorted = [0u32; RR_KEPT];
        for (i, slot) in sorted.iter_mut().enumerate().take(n) {
            *slot = self.recent(i);
        }
        let sorted = &mut sorted[..n];
        sorted.sort_unstable();
        let trim = match n {
            0..=3 => 0,
            4..=7 => 1,
            _ => 2,
        };
        let kept = &sorted[trim..n - trim];
        Some((kept.iter().map(|&r| r as u64).sum::<u64>() / kept.len() as u64) as u32)
    }

    /// The heart rate in tenths of a beat per minute.
    pub fn decibpm(&self) -> Option<u16> {
        let rr = self.average_rr_ms()?.max(1);
        Some(((600_000 + rr / 2) / rr).min(u16::MAX as u32) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_outliers_and_follows_slow_rhythms() {
        let mut h = HeartRate::default();
        h.push(800);
        assert_eq!(h.decibpm(), None);
        for _ in 0..10 {
            h.push(800);
        }
        h.push(400); // a premature beat
        assert_eq!(h.decibpm(), Some(750));
        h.push(1200); // and its compensatory pause
        assert_eq!(h.decibpm(), Some(750));
        for _ in 0..3 {
            h.push(1500);
        }
        // The last four: the pause and three slow ones.
        assert_eq!(h.average_rr_ms(), Some(1425));
        h.push(1500);
        assert_eq!(h.decibpm(), Some(400));
    }

    /// A pause whose premature partner has left the window does not pull the rate.
    #[test]
    fn a_lone_compensatory_pause_does_not_pull_the_rate() {
        let mut h = HeartRate::default();
        for rr in [1640, 800, 800, 820, 780, 800, 800, 810, 790, 800, 400, 1200] {
            h.push(rr);
        }
        // Without 400, 780 and 1640, 1200: the middle eight average 802.5 ms.
        assert_eq!(h.average_rr_ms(), Some(802));
    }
}

//! RR intervals and the heart rate shown, after the averaging manufacturers disclose
//! under IEC 60601-2-27:2011 201.7.9.2.9.101 b) 3): the mean of the last 12 RR
//! intervals without the longest and the shortest; when the last three are all
//! longer than 1.2 s (a slow rhythm), the mean of the last four, so a bradycardia shows
//! within a few beats.

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
        let (mut sum, mut lo, mut hi) = (0u64, u32::MAX, 0u32);
        for i in 0..n {
            let r = self.recent(i);
            sum += r as u64;
            lo = lo.min(r);
            hi = hi.max(r);
        }
        if n >= 4 {
            Some(((sum - lo as u64 - hi as u64) / (n as u64 - 2)) as u32)
        } else {
            Some((sum / n as u64) as u32)
        }
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
        for _ in 0..3 {
            h.push(1500);
        }
        // The last four: 400 and three slow ones.
        assert_eq!(h.average_rr_ms(), Some(1225));
        h.push(1500);
        assert_eq!(h.decibpm(), Some(400));
    }
}

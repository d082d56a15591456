//! Alarm limits and the alarm conditions: asystole, bradycardia, tachycardia
//! (physiological) and leads off, unusable signal (technical).
//!
//! Where the numbers come from (IEC 60601-2-27:2011, ECG monitoring equipment, and
//! IEC 60601-1-8, alarm systems; clause numbers as manufacturers' disclosures cite
//! them, checked against public sources, not against the purchased text):
//!
//! * Time to alarm: the standard has manufacturers disclose, and tests, the time from a
//!   rate change to the displayed rate (201.7.9.2.9.101 b) 5)) and to the tachycardia
//!   alarm (b) 6)); cardiac standstill (asystole) must be alarmed within 10 s (the
//!   requirement the standard took over from AAMI EC13). Here: asystole after 4 s
//!   without a QRS plus the detector's latency (under 5 s in all); heart-rate alarms
//!   2 s after the averaged rate crosses its limit (under 10 s from a rate step in the
//!   bench).
//! * Limits: adjustable, with manufacturer-chosen and disclosed defaults; 50 and 120
//!   bpm are what adult monitors commonly ship.
//! * Priorities (IEC 60601-1-8 6.1.2, by urgency): asystole high; bradycardia and
//!   tachycardia medium; leads off and unusable signal technical, low. This partition
//!   reports conditions; priorities drive the alarm signals where they are shown.
//!
//! Technical conditions gate the physiological ones: no physiological alarm is raised
//! from a signal that is not usable (leads off, saturated, noisy, or the detector
//! still learning), and asystole is the absence of QRS complexes in a usable
//! signal, so noise or a lost electrode raise their technical alarm, never asystole.
//!
//! Latching: nothing here is silenced or acknowledged (the partition accepts no such
//! command, MED-006). Asystole latches until the rhythm is back (three beats in a
//! usable signal); the others clear when their condition has been absent for
//! [`CLEAR_MS`], so a brief recovery does not make an alarm flicker. Acknowledging a
//! latched alarm signal (IEC 60601-1-8 6.2) belongs to where the alarm is shown.

use core::fmt;

use septum_vitals::AlarmKind;

/// A condition must be absent this long before its alarm clears (non-latching alarms).
pub const CLEAR_MS: u32 = 2000;
/// Beats in a usable signal that end a latched asystole alarm.
pub const ASYSTOLE_RECOVERY_BEATS: u32 = 3;

/// The alarm limits and delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bradycardia below this heart rate (bpm).
    pub brady_bpm: u16,
    /// Tachycardia above this heart rate (bpm).
    pub tachy_bpm: u16,
    /// Asystole: no QRS in a usable signal for this long (ms).
    pub asystole_ms: u32,
    /// A heart rate beyond a limit must last this long before its alarm (ms).
    pub onset_delay_ms: u32,
    /// A technical condition (leads off, unusable signal) must last this long (ms).
    pub technical_delay_ms: u32,
}

impl Default for Limits {
    /// Adult defaults (see the module's documentation for where each comes from):
    /// brady 50 bpm, tachy 120 bpm, asystole 4 s, heart-rate alarms 2 s beyond the
    /// limit, technical alarms 1 s.
    fn default() -> Self {
        Self { brady_bpm: 50, tachy_bpm: 120, asystole_ms: 4000, onset_delay_ms: 2000, technical_delay_ms: 1000 }
    }
}

/// The ranges [`Limits::validate`] accepts.
pub const BRADY_BPM: core::ops::RangeInclusive<u16> = 15..=150;
pub const TACHY_BPM: core::ops::RangeInclusive<u16> = 50..=300;
/// Up to 6 s, so that with the detector's latency asystole is alarmed within 10 s.
pub const ASYSTOLE_MS: core::ops::RangeInclusive<u32> = 2000..=6000;
/// Up to 5 s, so that a rate step still alarms within about 10 s.
pub const ONSET_DELAY_MS: core::ops::RangeInclusive<u32> = 0..=5000;
pub const TECHNICAL_DELAY_MS: core::ops::RangeInclusive<u32> = 0..=5000;

/// Which limit is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    BradyBpm(u16),
    TachyBpm(u16),
    /// The bradycardia limit is not below the tachycardia limit.
    BradyNotBelowTachy {
        brady_bpm: u16,
        tachy_bpm: u16,
    },
    AsystoleMs(u32),
    OnsetDelayMs(u32),
    TechnicalDelayMs(u32),
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BradyBpm(v) => write!(f, "brady_bpm {v} outside {}..={}", BRADY_BPM.start(), BRADY_BPM.end()),
            Self::TachyBpm(v) => write!(f, "tachy_bpm {v} outside {}..={}", TACHY_BPM.start(), TACHY_BPM.end()),
            Self::BradyNotBelowTachy { brady_bpm, tachy_bpm } => {
                write!(f, "brady_bpm {brady_bpm} is not below tachy_bpm {tachy_bpm}")
            }
            Self::AsystoleMs(v) => {
                write!(f, "asystole_ms {v} outside {}..={}", ASYSTOLE_MS.start(), ASYSTOLE_MS.end())
            }
            Self::OnsetDelayMs(v) => {
                write!(f, "onset_delay_ms {v} outside {}..={}", ONSET_DELAY_MS.start(), ONSET_DELAY_MS.end())
            }
            Self::TechnicalDelayMs(v) => write!(
                f,
                "technical_delay_ms {v} outside {}..={}",
                TECHNICAL_DELAY_MS.start(),
                TECHNICAL_DELAY_MS.end()
            ),
        }
    }
}

/// A name [`Limits::set`] does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownLimit;

impl fmt::Display for UnknownLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a limit (brady_bpm, tachy_bpm, asystole_ms, onset_delay_ms, technical_delay_ms)")
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, value) in self.fields() {
            write!(f, "{}{name}={value}", if first { "" } else { " " })?;
            first = false;
        }
        Ok(())
    }
}

impl Limits {
    /// Every limit by the name a system description and the device tree give it.
    pub fn fields(&self) -> [(&'static str, u32); 5] {
        [
            ("brady_bpm", self.brady_bpm.into()),
            ("tachy_bpm", self.tachy_bpm.into()),
            ("asystole_ms", self.asystole_ms),
            ("onset_delay_ms", self.onset_delay_ms),
            ("technical_delay_ms", self.technical_delay_ms),
        ]
    }

    /// Sets the limit named `name` (as [`Limits::fields`] names it); a heart rate that
    /// does not fit a `u16` is kept out of range for [`Limits::validate`] to refuse.
    pub fn set(&mut self, name: &str, value: u32) -> Result<(), UnknownLimit> {
        let bpm = u16::try_from(value).unwrap_or(u16::MAX);
        match name {
            "brady_bpm" => self.brady_bpm = bpm,
            "tachy_bpm" => self.tachy_bpm = bpm,
            "asystole_ms" => self.asystole_ms = value,
            "onset_delay_ms" => self.onset_delay_ms = value,
            "technical_delay_ms" => self.technical_delay_ms = value,
            _ => return Err(UnknownLimit),
        }
        Ok(())
    }

    /// Checks every field against its range and the heart-rate limits against each other.
    pub fn validate(&self) -> Result<(), LimitError> {
        if !BRADY_BPM.contains(&self.brady_bpm) {
            return Err(LimitError::BradyBpm(self.brady_bpm));
        }
        if !TACHY_BPM.contains(&self.tachy_bpm) {
            return Err(LimitError::TachyBpm(self.tachy_bpm));
        }
        if self.brady_bpm >= self.tachy_bpm {
            return Err(LimitError::BradyNotBelowTachy { brady_bpm: self.brady_bpm, tachy_bpm: self.tachy_bpm });
        }
        if !ASYSTOLE_MS.contains(&self.asystole_ms) {
            return Err(LimitError::AsystoleMs(self.asystole_ms));
        }
        if !ONSET_DELAY_MS.contains(&self.onset_delay_ms) {
            return Err(LimitError::OnsetDelayMs(self.onset_delay_ms));
        }
        if !TECHNICAL_DELAY_MS.contains(&self.technical_delay_ms) {
            return Err(LimitError::TechnicalDelayMs(self.technical_delay_ms));
        }
        Ok(())
    }
}

/// An alarm raised or cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmChange {
    pub kind: AlarmKind,
    pub raised: bool,
    /// Bradycardia, tachycardia: the heart rate (tenths of bpm). Asystole: the pause
    /// (ms). Leads off: how long the signal has been lost (ms; 0 when cleared).
    /// Unusable: the signal quality (0..=100).
    pub value: u32,
    /// The limit in the same unit: tenths of bpm, the asystole time (ms), the technical
    /// delay (ms), the usable quality.
    pub limit: u32,
}

/// The order changes are reported in when several happen at once: technical first, so
/// a receiver knows why a physiological alarm could not be judged.
const ORDER: [AlarmKind; 5] =
    [AlarmKind::LeadsOff, AlarmKind::Unusable, AlarmKind::Asystole, AlarmKind::Tachycardia, AlarmKind::Bradycardia];

/// What the monitor knows at one sample, for the alarm conditions.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    /// The sample index.
    pub now: u64,
    /// The leads are off or the signal railed at this sample.
    pub off: bool,
    /// Connected, and the quality says noise (detector not learning).
    pub noisy: bool,
    /// The current quality, 0..=100.
    pub quality: u8,
    /// The signal has been usable for physiological alarms since this sample, and no
    /// QRS has been found since (the pause so far, judged at the detector's horizon).
    pub pause_from: Option<u64>,
    /// The averaged heart rate (tenths of bpm), if known in a usable signal.
    pub hr_decibpm: Option<u16>,
    /// A QRS was reported at this sample, in a usable signal.
    pub beat: bool,
}

/// The alarm conditions' state.
#[derive(Clone, Debug)]
pub struct Alarms {
    limits: Limits,
    rate_hz: u32,
    /// Where each condition started to hold (`Some`) or to be absent while active.
    since: [Option<u64>; 5],
    active: u32,
    reported: u32,
    recovery_beats: u32,
    values: [(u32, u32); 5],
    /// Where the current stretch of lost signal started.
    off_since: Option<u64>,
}

impl Alarms {
    pub fn new(rate_hz: u32, limits: Limits) -> Self {
        Self {
            limits,
            rate_hz,
            since: [None; 5],
            active: 0,
            reported: 0,
            recovery_beats: 0,
            values: [(0, 0); 5],
            off_since: None,
        }
    }

    fn ms(&self, samples: u64) -> u64 {
        samples * 1000 / self.rate_hz as u64
    }

    /// The alarms reported so far (a mask of [`bit`]s).
    pub fn reported(&self) -> u32 {
        self.reported
    }

    pub fn active(&self, kind: AlarmKind) -> bool {
        self.active & kind.bit() != 0
    }

    /// A non-latching alarm: raised when `cond` has held for `delay_ms`, cleared when
    /// it has been absent for [`CLEAR_MS`].
    fn timed(&mut self, kind: AlarmKind, cond: bool, delay_ms: u32, now: u64) {
        let k = kind as usize;
        let active = self.active(kind);
        if cond != active {
            let since = *self.since[k].get_or_insert(now);
            let wait = if active { CLEAR_MS } else { delay_ms };
            if self.ms(now - since) >= wait as u64 {
                self.active ^= kind.bit();
                self.since[k] = None;
            }
        } else {
            self.since[k] = None;
        }
    }

    /// Updates every condition with what the monitor knows at this sample.
    pub fn update(&mut self, i: &Inputs) {
        let l = self.limits;
        self.timed(AlarmKind::LeadsOff, i.off, l.technical_delay_ms, i.now);
        let off_since = *self.off_since.get_or_insert(i.now);
        if !i.off {
            self.off_since = None;
        }
        let off_ms = if i.off { self.ms(i.now - off_since) as u32 } else { 0 };
        self.values[AlarmKind::LeadsOff as usize] = (off_ms, l.technical_delay_ms);
        self.timed(AlarmKind::Unusable, i.noisy, l.technical_delay_ms, i.now);
        self.values[AlarmKind::Unusable as usize] = (i.quality as u32, crate::quality::USABLE as u32);
        let technical = self.active & (AlarmKind::LeadsOff.bit() | AlarmKind::Unusable.bit()) != 0;

        // Asystole (high priority): latched until the rhythm is back.
        let pause_ms = i.pause_from.map_or(0, |p| self.ms(i.now.saturating_sub(p)));
        if self.active(AlarmKind::Asystole) {
            if i.beat {
                self.recovery_beats += 1;
                if self.recovery_beats >= ASYSTOLE_RECOVERY_BEATS {
                    self.active &= !AlarmKind::Asystole.bit();
                }
            }
        } else if !technical && pause_ms >= l.asystole_ms as u64 {
            self.active |= AlarmKind::Asystole.bit();
            self.recovery_beats = 0;
            self.values[AlarmKind::Asystole as usize] = (pause_ms as u32, l.asystole_ms);
        }
        let asystole = self.active(AlarmKind::Asystole);

        // Heart-rate limits (medium priority), judged only on a usable signal with a
        // rate, and not while asystole (which supersedes a falling rate) is active.
        let hr = if technical || asystole { None } else { i.hr_decibpm };
        let brady = hr.is_some_and(|h| h < l.brady_bpm * 10);
        let tachy = hr.is_some_and(|h| h > l.tachy_bpm * 10);
        self.timed(AlarmKind::Bradycardia, brady, l.onset_delay_ms, i.now);
        self.timed(AlarmKind::Tachycardia, tachy, l.onset_delay_ms, i.now);
        if let Some(h) = hr {
            self.values[AlarmKind::Bradycardia as usize] = (h as u32, l.brady_bpm as u32 * 10);
            self.values[AlarmKind::Tachycardia as usize] = (h as u32, l.tachy_bpm as u32 * 10);
        }
        if asystole {
            // Asystole supersedes bradycardia at once.
            self.active &= !AlarmKind::Bradycardia.bit();
        }
    }

    /// The next change to report, at most one per sample (technical first): what the
    /// receiver is told always follows the conditions within a few samples.
    pub fn next_change(&mut self) -> Option<AlarmChange> {
        let diff = self.active ^ self.reported;
        let kind = ORDER.into_iter().find(|k| diff & k.bit() != 0)?;
        self.reported ^= kind.bit();
        let (value, limit) = self.values[kind as usize];
        Some(AlarmChange { kind, raised: self.reported & kind.bit() != 0, value, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MED-013: the limits are checked, each error naming its field.
    #[test]
    fn limits_are_validated_naming_the_field() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let bad = Limits { brady_bpm: 130, tachy_bpm: 120, ..Limits::default() };
        let e = bad.validate().unwrap_err();
        assert_eq!(e, LimitError::BradyNotBelowTachy { brady_bpm: 130, tachy_bpm: 120 });
        assert!(std::format!("{e}").contains("brady_bpm 130"));
        let e = Limits { asystole_ms: 12_000, ..Limits::default() }.validate().unwrap_err();
        assert!(std::format!("{e}").starts_with("asystole_ms 12000"));
        assert!(Limits { tachy_bpm: 400, ..Limits::default() }.validate().is_err());
        assert!(Limits { brady_bpm: 10, ..Limits::default() }.validate().is_err());
        assert!(Limits { onset_delay_ms: 9000, ..Limits::default() }.validate().is_err());
        assert!(Limits { technical_delay_ms: 9000, ..Limits::default() }.validate().is_err());
    }
}

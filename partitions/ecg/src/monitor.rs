//! The monitor: one sample in, what it means out. Ties the filter chain, the QRS
//! detector, the heart rate, the quality index and the alarm conditions together.

use core::fmt;

use crate::alarm::{AlarmChange, Alarms, Inputs, LimitError, Limits};
use crate::detector::Detector;
use crate::filter::Filter;
use crate::quality::{self, Quality};
use crate::rate::HeartRate;
use crate::recording::{MAX_RATE_HZ, MIN_RATE_HZ};
use crate::sample::Sample;

/// A railed input is held this long before it counts as a lost signal.
pub const RAIL_HOLD_MS: u32 = 100;

/// Why a monitor cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A sampling rate outside 100..=1000 Hz.
    Rate(u32),
    Limits(LimitError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate(r) => write!(f, "sampling rate {r} Hz outside {MIN_RATE_HZ}..={MAX_RATE_HZ}"),
            Self::Limits(e) => write!(f, "alarm limits: {e}"),
        }
    }
}

/// A detected beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeatEvent {
    /// The R peak's sample index (samples since the monitor started).
    pub sample: u64,
    /// The interval from the previous beat; `None` for the first beat after a start or a
    /// leads-off gap.
    pub rr_ms: Option<u32>,
    /// Signal quality at the beat, 0..=100.
    pub quality: u8,
}

/// Once per second of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondSummary {
    /// The second that just ended, from 0.
    pub second: u64,
    /// The heart rate as displayed (tenths of bpm): `None` when unknown (leads off,
    /// unusable signal, fewer than three beats), 0 during asystole.
    pub hr_decibpm: Option<u16>,
    /// The second's quality, 0..=100 (its worst moment).
    pub quality: u8,
    /// The quality flags (`quality::FLAG_*`).
    pub flags: u8,
    /// The alarms active at the end of the second, `1 << AlarmKind`.
    pub active_alarms: u32,
}

/// What one sample caused; usually nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub beat: Option<BeatEvent>,
    pub second: Option<SecondSummary>,
    /// At most one alarm change per sample; simultaneous changes follow on the next
    /// samples, technical alarms first.
    pub alarm: Option<AlarmChange>,
}

/// The ECG monitor: fixed size, no allocation, bounded work per sample.
#[derive(Clone, Debug)]
pub struct Monitor {
    rate_hz: u32,
    limits: Limits,
    /// The index of the next sample.
    n: u64,
    connected: bool,
    filter: Filter,
    detector: Detector,
    quality: Quality,
    hr: HeartRate,
    alarms: Alarms,
    /// The last beat's R index, since the leads were last connected.
    last_r: Option<u64>,
    /// The first sample of the current stretch of usable signal.
    usable_from: Option<u64>,
    /// Detection latency in samples: the pause is judged this far back.
    horizon: u64,
    /// Consecutive samples at the rails, the longest run held, and the value held.
    railed_run: u64,
    rail_hold: u64,
    last_good: i32,
}

impl Monitor {
    pub fn new(rate_hz: u32, limits: Limits) -> Result<Monitor, ConfigError> {
        if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
            return Err(ConfigError::Rate(rate_hz));
        }
        limits.validate().map_err(ConfigError::Limits)?;
        let filter = Filter::new(rate_hz);
        let detector = Detector::new(rate_hz);
        let horizon = detector.latency(&filter);
        Ok(Monitor {
            rate_hz,
            limits,
            n: 0,
            connected: false,
            filter,
            detector,
            quality: Quality::new(rate_hz),
            hr: HeartRate::default(),
            alarms: Alarms::new(rate_hz, limits),
            last_r: None,
            usable_from: None,
            horizon,
            railed_run: 0,
            rail_hold: crate::filter::samples(rate_hz, RAIL_HOLD_MS, 1000) as u64,
            last_good: 0,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    /// The index the next sample will have.
    pub fn index(&self) -> u64 {
        self.n
    }

    /// The most samples between an R peak and the push that reports its beat (except
    /// beats found by search-back, later).
    pub fn latency_samples(&self) -> u64 {
        self.horizon
    }

    /// Where the front end's converter saturates (µV): samples within 1/64 of it count
    /// as railed (leads-off alarm when it lasts). Default 32767 µV.
    pub fn set_full_scale_uv(&mut self, uv: u32) {
        self.quality.set_full_scale_uv(uv);
    }

    /// The active alarms (`1 << AlarmKind`), as reported so far.
    pub fn active_alarms(&self) -> u32 {
        self.alarms.reported()
    }

    fn ms(&self, samples: u64) -> u32 {
        (samples * 1000 / self.rate_hz as u64).min(u32::MAX as u64) as u32
    }

    /// One sample; bounded time. Sample indices count from 0 at the recording's rate,
    /// one per call.
    pub fn push(&mut self, s: Sample) -> Events {
        let now = self.n;
        self.n += 1;
        let mut ev = Events::default();
        // A railed sample is held at the last good value for a moment (a clipped
        // QRS peak); railing longer is a lost signal, like leads off.
        let input = match s {
            Sample::LeadsOff => {
                self.quality.flag(quality::FLAG_LEADS_OFF);
                None
            }
            Sample::Microvolts(uv) if self.quality.saturated(uv) => {
                self.quality.flag(quality::FLAG_SATURATED);
                self.railed_run += 1;
                (self.railed_run <= self.rail_hold).then_some(self.last_good)
            }
            Sample::Microvolts(uv) => {
                self.railed_run = 0;
                self.last_good = uv;
                Some(uv)
            }
        };
        let off = input.is_none() || self.railed_run > 0;
        let q = match input {
            None => {
                if self.connected {
                    // Nothing measured across the gap means anything: start afresh
                    // when the signal is back.
                    self.connected = false;
                    self.filter.reset();
                    self.quality.reset();
                    self.hr.reset();
                    self.last_r = None;
                }
                0
            }
            Some(uv) => {
                if !self.connected {
                    self.connected = true;
                    self.detector.restart(now, self.filter.settle());
                }
                let y = self.filter.push(uv);
                self.quality.sample(uv, y.hf);
                if self.detector.learning() {
                    self.quality.flag(quality::FLAG_LEARNING);
                }
                if let Some(qrs) = self.detector.push(now, &y, &self.filter) {
                    self.quality.beat(qrs.r, qrs.amplitude);
                    let (spk, npk) = self.detector.levels();
                    let q = self.quality.now(now, spk, npk);
                    let rr_ms = self.last_r.map(|l| self.ms(qrs.r - l));
                    if let Some(rr) = rr_ms {
                        self.hr.push(rr);
                    }
                    self.last_r = Some(qrs.r);
                    ev.beat = Some(BeatEvent { sample: qrs.r, rr_ms, quality: q });
                }
                let (spk, npk) = self.detector.levels();
                if off {
                    0
                } else {
                    self.quality.now(now, spk, npk)
                }
            }
        };
        self.quality.observe(q);
        let learning = !self.connected || self.detector.learning();
        let usable = !off && !learning && q >= quality::USABLE;
        if !usable {
            self.usable_from = None;
        } else if self.usable_from.is_none() {
            self.usable_from = Some(now);
        }
        // The pause: from the later of the last beat and the start of usable signal,
        // to the detector's horizon (every beat before it has been decided).
        let pause_from = self.usable_from.map(|u| u.max(self.last_r.unwrap_or(0)) + self.horizon);
        let hr = if usable { self.hr.decibpm() } else { None };
        self.alarms.update(&Inputs {
            now,
            off,
            noisy: self.connected && !off && !learning && q < quality::USABLE,
            quality: q,
            pause_from,
            hr_decibpm: hr,
            beat: ev.beat.is_some() && usable,
        });
        ev.alarm = self.alarms.next_change();
        if (now + 1).is_multiple_of(self.rate_hz as u64) {
            let (quality, flags) = self.quality.end_second();
            let asystole = self.alarms.active(septum_vitals::AlarmKind::Asystole);
            let hr_decibpm = if asystole {
                Some(0)
            } else if self.connected && quality >= quality::USABLE {
                self.hr.decibpm()
            } else {
                None
            };
            ev.second = Some(SecondSummary {
                second: now / self.rate_hz as u64,
                hr_decibpm,
                quality,
                flags,
                active_alarms: self.alarms.reported(),
            });
        }
        ev
    }
}

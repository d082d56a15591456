//! Runs the monitor over a recording and scores it against the recording's truth (host
//! only; `cargo xtask bench ecg` prints it, the tests assert on it).
//!
//! * Beats, after AAMI EC57: a detection matches a reference beat within
//!   [`MATCH_WINDOW_MS`]; unmatched references are false negatives, unmatched
//!   detections false positives. Not scored: the detector's learning time after the
//!   start and after leads come back ([`LEARNING_EXCLUDED_MS`]), the segments where
//!   the signal is lost or expected unusable (a monitor cannot count beats there and
//!   says so with a technical alarm), and the beats within the detector's latency of
//!   the signal's loss or of the recording's end (not yet decided when it stops).
//! * Alarms: each expected segment (`.events`) must raise its alarm within the
//!   delay the standard allows ([`delay_limit_ms`]), counted from the segment's start;
//!   any raise outside a segment of its kind is a false alarm, and an asystole raised
//!   during noise, leads off or an unusable signal is the worst of those.

use std::string::{String, ToString};
use std::time::{Duration, Instant};
use std::vec::Vec;

use septum_vitals::AlarmKind;

use crate::detector::LEARN_MS;
use crate::{Limits, Monitor, Recording};

/// AAMI EC57's beat-matching window.
pub const MATCH_WINDOW_MS: u64 = 150;
/// After the start and after leads come back: the detector learns its thresholds.
pub const LEARNING_EXCLUDED_MS: u64 = LEARN_MS as u64 + 1000;
/// A raise this long after its segment's end still belongs to it.
pub const SLACK_MS: u64 = 3000;

/// A segment of a recording's `.events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `asystole`, `bradycardia`, `tachycardia`, `leads-off`, `unusable` (an alarm is
    /// expected) or `noise` (none is).
    pub kind: String,
    pub start: u64,
    pub end: u64,
}

impl Segment {
    /// The alarm the segment expects.
    pub fn alarm(&self) -> Option<AlarmKind> {
        AlarmKind::ALL
            .into_iter()
            .find(|k| k.name() == self.kind || (self.kind == "unusable" && *k == AlarmKind::Unusable))
    }
}

/// How late an expected alarm may come (ms from the segment's start).
pub fn delay_limit_ms(kind: AlarmKind) -> u64 {
    match kind {
        // IEC 60601-2-27: cardiac standstill alarmed within 10 s (see alarm.rs).
        AlarmKind::Asystole => 10_000,
        // 201.7.9.2.9.101 b) 5)/6): rate changes shown, and tachycardia alarmed, within
        // about 10 s (manufacturers disclose under 11 s).
        AlarmKind::Bradycardia | AlarmKind::Tachycardia => 10_000,
        // Technical alarms: this monitor's own bound.
        AlarmKind::LeadsOff => 5_000,
        AlarmKind::Unusable => 10_000,
    }
}

pub fn parse_beats(text: &str) -> Result<Vec<(u64, char)>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            let at = w.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad beat line `{l}`"))?;
            let kind = w.next().and_then(|s| s.chars().next()).ok_or_else(|| format!("bad beat line `{l}`"))?;
            Ok((at, kind))
        })
        .collect()
}

pub fn parse_events(text: &str) -> Result<Vec<Segment>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                [kind, s, e] => Ok(Segment {
                    kind: kind.to_string(),
                    start: s.parse().map_err(|_| format!("bad start in `{l}`"))?,
                    end: e.parse().map_err(|_| format!("bad end in `{l}`"))?,
                }),
                _ => Err(format!("bad event line `{l}`")),
            }
        })
        .collect()
}

/// An expected alarm and when it came.
#[derive(Clone, Debug)]
pub struct AlarmCheck {
    pub kind: AlarmKind,
    pub start: u64,
    pub end: u64,
    /// The sample at which it was raised, if it was.
    pub raised_at: Option<u64>,
    pub delay_ms: Option<u64>,
    pub limit_ms: u64,
}

impl AlarmCheck {
    pub fn ok(&self) -> bool {
        self.delay_ms.is_some_and(|d| d <= self.limit_ms)
    }
}

/// An alarm raised where none was expected.
#[derive(Clone, Debug)]
pub struct FalseAlarm {
    pub kind: AlarmKind,
    pub at_ms: u64,
    /// During noise, leads off or an unusable signal.
    pub in_bad_signal: bool,
}

/// The figures for one recording.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub rate_hz: u32,
    pub samples: usize,
    /// Reference beats scored.
    pub beats: usize,
    pub tp: usize,
    pub fn_: usize,
    pub fp: usize,
    pub checks: Vec<AlarmCheck>,
    pub false_alarms: Vec<FalseAlarm>,
    /// Every alarm raised, and the sample it was raised at.
    pub raises: Vec<(AlarmKind, u64)>,
    /// Host time spent in `Monitor::push`.
    pub elapsed: Duration,
}

impl Outcome {
    /// Sensitivity, %.
    pub fn se(&self) -> f64 {
        100.0 * self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }

    /// Positive predictivity, %.
    pub fn ppv(&self) -> f64 {
        100.0 * self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }

    /// False asystole alarms during noise, leads off or an unusable signal.
    pub fn false_asystole_in_bad_signal(&self) -> usize {
        self.false_alarms.iter().filter(|f| f.kind == AlarmKind::Asystole && f.in_bad_signal).count()
    }

    pub fn false_physiological(&self) -> usize {
        self.false_alarms.iter().filter(|f| f.kind.physiological()).count()
    }
}

/// Runs a fresh monitor (default limits) over `ecg` and scores it.
pub fn evaluate(name: &str, ecg: &[u8], beats: &str, events: &str) -> Result<Outcome, String> {
    let rec = Recording::parse(ecg).map_err(|e| format!("{name}: {e}"))?;
    let refs = parse_beats(beats).map_err(|e| format!("{name}.beats: {e}"))?;
    let segments = parse_events(events).map_err(|e| format!("{name}.events: {e}"))?;
    let rate = rec.rate_hz() as u64;
    let ms = |s: u64| s * 1000 / rate;
    let samples_of = |ms: u64| ms * rate / 1000;

    let mut m = Monitor::new(rec.rate_hz(), Limits::default()).map_err(|e| format!("{name}: {e}"))?;
    m.set_full_scale_uv(rec.full_scale_uv());
    let mut detections = Vec::new();
    let mut raises: Vec<(AlarmKind, u64)> = Vec::new();
    let started = Instant::now();
    for i in 0..rec.len() {
        let ev = m.push(rec.sample(i));
        if let Some(b) = ev.beat {
            detections.push(b.sample);
        }
        if let Some(a) = ev.alarm {
            if a.raised {
                raises.push((a.kind, i as u64));
            }
        }
    }
    let elapsed = started.elapsed();

    // What is not scored: learning, the signal lost or unusable, and beats the
    // detector had no time to decide before the signal was lost or the recording ended.
    let latency = m.latency_samples();
    let len = rec.len() as u64;
    let mut excluded = std::vec![(0, samples_of(LEARNING_EXCLUDED_MS)), (len.saturating_sub(latency), len)];
    for s in &segments {
        match s.kind.as_str() {
            "leads-off" => excluded.push((s.start.saturating_sub(latency), s.end + samples_of(LEARNING_EXCLUDED_MS))),
            "unusable" => excluded.push((s.start, s.end + samples_of(1000))),
            _ => {}
        }
    }
    let scored = |at: u64| !excluded.iter().any(|&(a, b)| at >= a && at < b);
    let window = samples_of(MATCH_WINDOW_MS);
    let dets: Vec<u64> = detections.iter().copied().filter(|&d| scored(d)).collect();
    let mut used = std::vec![false; dets.len()];
    let (mut tp, mut fn_, mut n) = (0, 0, 0);
    for &(r, _) in refs.iter().filter(|(r, _)| scored(*r)) {
        n += 1;
        let best = dets
            .iter()
            .enumerate()
            .filter(|(i, d)| !used[*i] && d.abs_diff(r) <= window)
            .min_by_key(|(_, d)| d.abs_diff(r))
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                used[i] = true;
                tp += 1;
            }
            None => fn_ += 1,
        }
    }
    let fp = used.iter().filter(|u| !**u).count();

    let mut checks = Vec::new();
    for s in &segments {
        if let Some(kind) = s.alarm() {
            let raised_at =
                raises.iter().find(|(k, at)| *k == kind && *at >= s.start && *at <= s.end + samples_of(SLACK_MS));
            let raised_at = raised_at.map(|(_, at)| *at);
            checks.push(AlarmCheck {
                kind,
                start: s.start,
                end: s.end,
                raised_at,
                delay_ms: raised_at.map(|a| ms(a - s.start)),
                limit_ms: delay_limit_ms(kind),
            });
        }
    }
    let bad = |at: u64| {
        segments.iter().any(|s| {
            matches!(s.kind.as_str(), "noise" | "leads-off" | "unusable")
                && at >= s.start
                && at <= s.end + samples_of(SLACK_MS)
        })
    };
    let false_alarms = raises
        .iter()
        .filter(|(k, at)| {
            !segments.iter().any(|s| s.alarm() == Some(*k) && *at >= s.start && *at <= s.end + samples_of(SLACK_MS))
        })
        .map(|&(kind, at)| FalseAlarm { kind, at_ms: ms(at), in_bad_signal: bad(at) })
        .collect();

    Ok(Outcome {
        name: name.to_string(),
        rate_hz: rec.rate_hz(),
        samples: rec.len(),
        beats: n,
        tp,
        fn_,
        fp,
        checks,
        false_alarms,
        raises,
        elapsed,
    })
}

/// Evaluates every recording the generator makes (in memory).
pub fn suite() -> Result<Vec<Outcome>, String> {
    crate::synth::all().iter().map(|g| evaluate(g.name, &g.ecg, &g.beats, &g.events)).collect()
}

/// The suite's totals: (beats, tp, fn, fp).
pub fn totals(all: &[Outcome]) -> (usize, usize, usize, usize) {
    all.iter().fold((0, 0, 0, 0), |(b, t, f, p), o| (b + o.beats, t + o.tp, f + o.fn_, p + o.fp))
}

/// How far muscle noise can go: a sinus rhythm with 20 s of noise at rising levels,
/// at 250 and 360 Hz (`cargo test -p septum-ecg emg_sweep -- --ignored --nocapture`;
/// the figures are in docs/monitoring.md).
#[cfg(test)]
mod sweep {
    use super::*;
    use crate::synth::*;

    #[test]
    #[ignore]
    fn emg_sweep() {
        for uv in [50.0, 150.0, 300.0, 500.0, 800.0, 1200.0, 2000.0] {
            for (hz, rate) in [(50.0, 250), (60.0, 360)] {
                let s = Script {
                    name: "sweep",
                    rate_hz: rate,
                    seed: uv as u64,
                    rhythm: std::vec![Rhythm::Sinus { secs: 60.0, bpm: 72.0, pvc_every: 0 }],
                    disturbances: std::vec![
                        Disturbance::Emg { from: 20.0, to: 40.0, uv },
                        Disturbance::Mains { from: 0.0, to: 60.0, hz, uv: 20.0 }
                    ],
                    expect: std::vec![Expect { kind: "noise", from: 20.0, to: 40.0 }],
                };
                let g = render(&s);
                let o = evaluate("sweep", &g.ecg, &g.beats, &g.events).unwrap();
                std::println!(
                    "emg {uv:>4} @{rate}: se {:.1} ppv {:.1} false {:?}",
                    o.se(),
                    o.ppv(),
                    o.false_alarms.iter().map(|f| (f.kind.name(), f.at_ms)).collect::<Vec<_>>()
                );
            }
        }
    }
}

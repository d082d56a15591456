//! The synthetic recordings (host only): a sum-of-Gaussians P-QRS-T model per beat
//! with known R times, over a scripted rhythm (sinus at a rate with respiratory
//! variation, premature ventricular beats, asystole), with scripted disturbances
//! (muscle noise, mains at 50 or 60 Hz, baseline wander, amplitude changes, leads off,
//! a railed input).
//!
//! Reproducible bit for bit on any host: a seeded PRNG (SplitMix64), and `exp`/`sin`
//! computed here from IEEE-754 basic operations (the platform's libm may differ in the
//! last bit). `partitions/ecg/recordings/` holds what [`all`] makes; a test checks
//! they are equal, and `cargo run -p septum-ecg --features std --bin ecg-gen` writes
//! them again.

use std::format;
use std::string::String;
use std::vec::Vec;

use crate::recording::{self, LEADS_OFF};

/// One recording: its file name stem and the three files' contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub name: &'static str,
    pub ecg: Vec<u8>,
    /// One line per true beat: `sample_index N|V`.
    pub beats: String,
    /// One line per segment: `kind start_sample end_sample`.
    pub events: String,
}

// ---- Deterministic arithmetic ----

const LN2: f64 = core::f64::consts::LN_2;
const TAU: f64 = core::f64::consts::TAU;

/// `e^x` from basic operations: `x = k ln 2 + r`, a Taylor series for `e^r`, and the
/// exact power of two built from its bits.
pub fn exp(x: f64) -> f64 {
    if x < -700.0 {
        return 0.0;
    }
    let k = (x / LN2).round();
    let r = x - k * LN2;
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for i in 1..=14 {
        term = term * r / i as f64;
        sum += term;
    }
    sum * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// `sin x` from basic operations: reduced to [-π, π], then a Taylor series.
pub fn sin(x: f64) -> f64 {
    let r = x - (x / TAU).round() * TAU;
    let (mut term, mut sum) = (r, r);
    for i in 1..=12 {
        term = -term * r * r / ((2 * i) * (2 * i + 1)) as f64;
        sum += term;
    }
    sum
}

/// SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 52) as f64) - 1.0
    }

    /// About normal, unit variance (the sum of four uniforms).
    pub fn normal(&mut self) -> f64 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform()) * 0.866_025_403_784_438_6
    }
}

// ---- The model ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeatKind {
    /// A sinus beat.
    N,
    /// A premature ventricular beat: no P wave, wide QRS, discordant T.
    V,
}

/// One wave: offset from the R peak (s), amplitude (mV), width (s).
type Wave = (f64, f64, f64);

fn waves(kind: BeatKind, rr: f64) -> [Wave; 5] {
    // P and T move with the rate (QT shortens as the rate rises).
    let s = rr.clamp(0.3, 2.0).sqrt();
    match kind {
        BeatKind::N => [
            (-0.17 * s, 0.12, 0.022),
            (-0.025, -0.12, 0.008),
            (0.0, 1.1, 0.009),
            (0.027, -0.25, 0.009),
            (0.27 * s, 0.30, 0.045 * s),
        ],
        BeatKind::V => {
            [(0.0, 0.0, 0.02), (-0.04, -0.1, 0.015), (0.0, 1.5, 0.025), (0.07, -0.45, 0.028), (0.34 * s, -0.4, 0.06)]
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Beat {
    t: f64,
    kind: BeatKind,
    rr: f64,
}

/// A stretch of rhythm.
#[derive(Clone, Copy, Debug)]
pub enum Rhythm {
    /// Sinus rhythm at `bpm` for `secs`; every `pvc_every`-th beat (0: none) is a
    /// premature ventricular beat (coupling 0.6 RR, compensatory pause).
    Sinus { secs: f64, bpm: f64, pvc_every: u32 },
    /// No beats for `secs`.
    Asystole { secs: f64 },
    /// An irregular rhythm (atrial fibrillation-like) around `bpm`: each RR drawn
    /// uniformly within ±`spread` (fraction) of the mean, no P waves.
    Irregular { secs: f64, bpm: f64, spread: f64 },
}

/// A disturbance over `[from, to)` seconds.
#[derive(Clone, Copy, Debug)]
pub enum Disturbance {
    /// Muscle noise, µV rms (differentiated white noise: most energy high).
    Emg { from: f64, to: f64, uv: f64 },
    /// Mains interference.
    Mains { from: f64, to: f64, hz: f64, uv: f64 },
    /// Baseline wander (breathing, movement).
    Wander { from: f64, to: f64, hz: f64, uv: f64 },
    /// The ECG's amplitude times `gain`.
    Gain { from: f64, to: f64, gain: f64 },
    /// The front end flags leads off.
    LeadsOff { from: f64, to: f64 },
    /// The input sits at the converter's positive rail.
    Railed { from: f64, to: f64 },
    /// T waves times `gain` (tall T waves, the classic double-counting trap).
    TWave { from: f64, to: f64, gain: f64 },
    /// Fibrillatory baseline (atrial fibrillation's f waves), µV.
    Fibrillation { from: f64, to: f64, uv: f64 },
}

/// What alarm or condition a segment expects.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub kind: &'static str,
    pub from: f64,
    pub to: f64,
}

/// A recording's script.
#[derive(Clone, Debug)]
pub struct Script {
    pub name: &'static str,
    pub rate_hz: u32,
    pub seed: u64,
    pub rhythm: Vec<Rhythm>,
    pub disturbances: Vec<Disturbance>,
    pub expect: Vec<Expect>,
}

fn beats_of(script: &Script, rng: &mut Rng) -> Vec<Beat> {
    let mut beats = Vec::new();
    // The next sinus beat, and the last beat of any kind.
    let mut next = 0.6;
    let mut prev: Option<f64> = None;
    let mut start = 0.0;
    let mut phase = 0.0f64;
    for r in &script.rhythm {
        match *r {
            Rhythm::Sinus { secs, bpm, pvc_every } => {
                let end = start + secs;
                let mut count = 0u32;
                while next < end {
                    let base = 60.0 / bpm;
                    // Respiratory sinus arrhythmia (±4 % at 0.25 Hz) and a little jitter.
                    phase += base * 0.25 * TAU;
                    let rr = base * (1.0 + 0.04 * sin(phase) + 0.01 * rng.uniform());
                    count += 1;
                    if let (true, Some(p)) = (pvc_every > 0 && count.is_multiple_of(pvc_every), prev) {
                        // Premature (coupling 0.6 RR); the sinus node goes on undisturbed,
                        // so the next sinus beat comes after a compensatory pause.
                        let gap = next - p;
                        let v = p + 0.6 * gap;
                        beats.push(Beat { t: v, kind: BeatKind::V, rr: 0.6 * gap });
                        prev = Some(v);
                        next = p + 2.0 * gap;
                        continue;
                    }
                    beats.push(Beat { t: next, kind: BeatKind::N, rr: prev.map_or(rr, |p| next - p) });
                    prev = Some(next);
                    next += rr;
                }
                start = end;
            }
            Rhythm::Asystole { secs } => {
                start += secs;
                next = next.max(start);
            }
            Rhythm::Irregular { secs, bpm, spread } => {
                let end = start + secs;
                while next < end {
                    let rr = 60.0 / bpm * (1.0 + spread * rng.uniform());
                    beats.push(Beat { t: next, kind: BeatKind::N, rr: prev.map_or(rr, |p| next - p) });
                    prev = Some(next);
                    next += rr;
                }
                start = end;
            }
        }
    }
    beats
}

fn active(from: f64, to: f64, t: f64) -> bool {
    t >= from && t < to
}

/// Renders a script.
pub fn render(script: &Script) -> Generated {
    let fs = script.rate_hz as f64;
    let mut rng = Rng::new(script.seed);
    let beats = beats_of(script, &mut rng);
    let secs: f64 = script
        .rhythm
        .iter()
        .map(|r| match *r {
            Rhythm::Sinus { secs, .. } | Rhythm::Asystole { secs } | Rhythm::Irregular { secs, .. } => secs,
        })
        .sum();
    let n = (secs * fs) as usize;
    let mut samples = Vec::with_capacity(n);
    let mut first = 0usize;
    let mut prev_white = 0.0;
    // A small constant floor of noise everywhere, as any front end has.
    let floor_uv = 6.0;
    for i in 0..n {
        let t = i as f64 / fs;
        while first < beats.len() && beats[first].t < t - 1.0 {
            first += 1;
        }
        let mut gain = 1.0;
        for d in &script.disturbances {
            if let Disturbance::Gain { from, to, gain: g } = *d {
                if active(from, to, t) {
                    gain *= g;
                }
            }
        }
        let mut mv = 0.0;
        for b in beats[first..].iter().take_while(|b| b.t < t + 1.0) {
            let (mut t_gain, mut p_gain) = (1.0, 1.0);
            for d in &script.disturbances {
                match *d {
                    Disturbance::TWave { from, to, gain } if active(from, to, b.t) => t_gain *= gain,
                    Disturbance::Fibrillation { from, to, .. } if active(from, to, b.t) => p_gain = 0.0,
                    _ => {}
                }
            }
            for (w_i, (off, a, w)) in waves(b.kind, b.rr).into_iter().enumerate() {
                let x = t - b.t - off;
                let g = match w_i {
                    0 => p_gain,
                    4 => t_gain,
                    _ => 1.0,
                };
                mv += g * a * exp(-x * x / (2.0 * w * w));
            }
        }
        let mut uv = mv * 1000.0 * gain;
        let white = rng.normal();
        uv += floor_uv * white;
        let mut off = false;
        let mut railed = false;
        for d in &script.disturbances {
            match *d {
                Disturbance::Emg { from, to, uv: level } if active(from, to, t) => {
                    // Differentiated white noise has twice the variance: scale back.
                    uv += level * (white - prev_white) * core::f64::consts::FRAC_1_SQRT_2;
                }
                Disturbance::Mains { from, to, hz, uv: a } if active(from, to, t) => uv += a * sin(TAU * hz * t),
                Disturbance::Wander { from, to, hz, uv: a } if active(from, to, t) => {
                    uv += a * sin(TAU * hz * t) + 0.3 * a * sin(TAU * hz * 2.7 * t + 1.0)
                }
                Disturbance::Fibrillation { from, to, uv: a } if active(from, to, t) => {
                    // f waves: about 6 Hz, wandering in rate and size.
                    uv += a * (0.7 + 0.3 * sin(TAU * 0.13 * t)) * sin(TAU * 6.0 * t + 2.0 * sin(TAU * 0.4 * t))
                }
                Disturbance::LeadsOff { from, to } if active(from, to, t) => off = true,
                Disturbance::Railed { from, to } if active(from, to, t) => railed = true,
                _ => {}
            }
        }
        prev_white = white;
        let v = if off {
            LEADS_OFF
        } else if railed {
            i16::MAX
        } else {
            uv.round().clamp(-(i16::MAX as f64), i16::MAX as f64) as i16
        };
        samples.push(v);
    }
    let mut beat_text = String::new();
    for b in &beats {
        let at = (b.t * fs).round() as u64;
        let t = b.t;
        let lost = script.disturbances.iter().any(|d| {
            matches!(*d, Disturbance::LeadsOff { from, to } | Disturbance::Railed { from, to } if active(from, to, t))
        });
        if (at as usize) < n && !lost {
            beat_text += &format!("{at} {}\n", if b.kind == BeatKind::N { 'N' } else { 'V' });
        }
    }
    let mut events = String::new();
    for e in &script.expect {
        // Cardiac standstill starts at the last beat before the segment.
        let from = if e.kind == "asystole" {
            beats.iter().map(|b| b.t).filter(|&t| t <= e.from).fold(e.from, |_, t| t)
        } else {
            e.from
        };
        events += &format!("{} {} {}\n", e.kind, (from * fs).round() as u64, (e.to * fs).round() as u64);
    }
    Generated { name: script.name, ecg: recording::write(script.rate_hz, 1000, &samples), beats: beat_text, events }
}

fn sinus(secs: f64, bpm: f64) -> Rhythm {
    Rhythm::Sinus { secs, bpm, pvc_every: 0 }
}

/// Light disturbances every recording has: some muscle noise, mains and wander.
fn everyday(secs: f64, mains_hz: f64) -> Vec<Disturbance> {
    std::vec![
        Disturbance::Emg { from: 0.0, to: secs, uv: 8.0 },
        Disturbance::Mains { from: 0.0, to: secs, hz: mains_hz, uv: 20.0 },
        Disturbance::Wander { from: 0.0, to: secs, hz: 0.2, uv: 120.0 },
    ]
}

fn expect(kind: &'static str, from: f64, to: f64) -> Expect {
    Expect { kind, from, to }
}

/// Every committed recording's script.
pub fn scripts() -> Vec<Script> {
    use Disturbance::*;
    let with = |mut v: Vec<Disturbance>, more: &[Disturbance]| {
        v.extend_from_slice(more);
        v
    };
    std::vec![
        // The demo: sinus at 72 with PVCs, tachycardia, then a 10 s asystole near the
        // end and recovery.
        Script {
            name: "default",
            rate_hz: 250,
            seed: 1,
            rhythm: std::vec![
                Rhythm::Sinus { secs: 30.0, bpm: 72.0, pvc_every: 9 },
                Rhythm::Sinus { secs: 20.0, bpm: 140.0, pvc_every: 0 },
                Rhythm::Sinus { secs: 25.0, bpm: 72.0, pvc_every: 11 },
                Rhythm::Asystole { secs: 10.0 },
                sinus(15.0, 72.0),
            ],
            disturbances: everyday(100.0, 50.0),
            expect: std::vec![expect("tachycardia", 30.0, 50.0), expect("asystole", 75.0, 85.0)],
        },
        Script {
            name: "normal-360",
            rate_hz: 360,
            seed: 2,
            rhythm: std::vec![sinus(60.0, 68.0)],
            disturbances: with(
                everyday(60.0, 60.0),
                &[Gain { from: 20.0, to: 40.0, gain: 0.6 }, Wander { from: 0.0, to: 60.0, hz: 0.3, uv: 300.0 }],
            ),
            expect: std::vec![],
        },
        Script {
            name: "bradycardia",
            rate_hz: 250,
            seed: 3,
            rhythm: std::vec![sinus(20.0, 70.0), sinus(25.0, 40.0), sinus(15.0, 70.0)],
            disturbances: everyday(60.0, 50.0),
            expect: std::vec![expect("bradycardia", 20.0, 45.0)],
        },
        Script {
            name: "tachycardia",
            rate_hz: 250,
            seed: 4,
            rhythm: std::vec![sinus(20.0, 80.0), sinus(25.0, 150.0), sinus(15.0, 80.0)],
            disturbances: everyday(60.0, 60.0),
            expect: std::vec![expect("tachycardia", 20.0, 45.0)],
        },
        Script {
            name: "pvc",
            rate_hz: 250,
            seed: 5,
            rhythm: std::vec![
                Rhythm::Sinus { secs: 15.0, bpm: 75.0, pvc_every: 5 },
                Rhythm::Sinus { secs: 20.0, bpm: 75.0, pvc_every: 2 },
                Rhythm::Sinus { secs: 25.0, bpm: 75.0, pvc_every: 4 },
            ],
            disturbances: everyday(60.0, 50.0),
            expect: std::vec![],
        },
        Script {
            name: "noise",
            rate_hz: 250,
            seed: 6,
            rhythm: std::vec![sinus(60.0, 72.0)],
            disturbances: with(
                everyday(60.0, 50.0),
                &[
                    Emg { from: 10.0, to: 20.0, uv: 40.0 },
                    Emg { from: 30.0, to: 40.0, uv: 70.0 },
                    Mains { from: 45.0, to: 55.0, hz: 50.0, uv: 300.0 },
                ],
            ),
            expect: std::vec![expect("noise", 10.0, 20.0), expect("noise", 30.0, 40.0), expect("noise", 45.0, 55.0)],
        },
        Script {
            name: "wander-360",
            rate_hz: 360,
            seed: 7,
            rhythm: std::vec![sinus(60.0, 64.0)],
            disturbances: with(
                everyday(60.0, 60.0),
                &[
                    Wander { from: 10.0, to: 50.0, hz: 0.35, uv: 1200.0 },
                    Gain { from: 20.0, to: 35.0, gain: 0.45 },
                    Gain { from: 35.0, to: 50.0, gain: 1.8 },
                    Mains { from: 0.0, to: 30.0, hz: 60.0, uv: 200.0 },
                ],
            ),
            expect: std::vec![expect("noise", 10.0, 50.0)],
        },
        Script {
            name: "unusable",
            rate_hz: 250,
            seed: 8,
            rhythm: std::vec![sinus(60.0, 72.0)],
            disturbances: with(everyday(60.0, 50.0), &[Emg { from: 20.0, to: 35.0, uv: 600.0 }]),
            expect: std::vec![expect("unusable", 20.0, 35.0)],
        },
        Script {
            name: "leads-off",
            rate_hz: 250,
            seed: 9,
            rhythm: std::vec![sinus(60.0, 72.0)],
            disturbances: with(
                everyday(60.0, 50.0),
                &[LeadsOff { from: 15.0, to: 25.0 }, Railed { from: 40.0, to: 46.0 }],
            ),
            expect: std::vec![expect("leads-off", 15.0, 25.0), expect("leads-off", 40.0, 46.0)],
        },
        Script {
            name: "tall-t",
            rate_hz: 250,
            seed: 11,
            rhythm: std::vec![sinus(30.0, 60.0), sinus(30.0, 100.0)],
            disturbances: with(everyday(60.0, 50.0), &[TWave { from: 0.0, to: 60.0, gain: 2.6 }]),
            expect: std::vec![],
        },
        Script {
            name: "irregular-360",
            rate_hz: 360,
            seed: 12,
            rhythm: std::vec![sinus(10.0, 75.0), Rhythm::Irregular { secs: 50.0, bpm: 95.0, spread: 0.35 }],
            disturbances: with(
                everyday(60.0, 60.0),
                &[Fibrillation { from: 10.0, to: 60.0, uv: 60.0 }, Emg { from: 30.0, to: 45.0, uv: 60.0 }],
            ),
            expect: std::vec![expect("noise", 30.0, 45.0)],
        },
        Script {
            name: "low-amplitude",
            rate_hz: 250,
            seed: 13,
            rhythm: std::vec![Rhythm::Sinus { secs: 60.0, bpm: 80.0, pvc_every: 7 }],
            disturbances: with(
                everyday(60.0, 50.0),
                &[Gain { from: 0.0, to: 60.0, gain: 0.3 }, Emg { from: 20.0, to: 40.0, uv: 20.0 }],
            ),
            expect: std::vec![expect("noise", 20.0, 40.0)],
        },
        Script {
            name: "extreme-rates",
            rate_hz: 250,
            seed: 14,
            rhythm: std::vec![
                sinus(15.0, 75.0),
                sinus(20.0, 200.0),
                sinus(10.0, 75.0),
                sinus(25.0, 32.0),
                sinus(10.0, 75.0)
            ],
            disturbances: everyday(80.0, 60.0),
            expect: std::vec![expect("tachycardia", 15.0, 35.0), expect("bradycardia", 45.0, 70.0)],
        },
        Script {
            name: "asystole",
            rate_hz: 250,
            seed: 10,
            rhythm: std::vec![sinus(25.0, 72.0), Rhythm::Asystole { secs: 15.0 }, sinus(20.0, 72.0)],
            disturbances: everyday(60.0, 60.0),
            expect: std::vec![expect("asystole", 25.0, 40.0)],
        },
    ]
}

/// Every committed recording.
pub fn all() -> Vec<Generated> {
    scripts().iter().map(render).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_math_is_accurate() {
        for x in [-30.0, -5.5, -1.0, -0.1, 0.0, 0.7, 3.0] {
            assert!((exp(x) - f64::exp(x)).abs() <= 1e-12 * f64::exp(x), "exp({x})");
        }
        for x in [-100.0, -3.0, -1.0, 0.0, 0.5, 2.0, 7.0, 1000.0] {
            assert!((sin(x) - f64::sin(x)).abs() < 1e-9, "sin({x})");
        }
    }
}

//! The requirements' tests over the synthetic suite (MED-010..MED-016 in
//! `docs/requirements.md`): the figures `cargo xtask bench ecg` prints, asserted.

use std::path::PathBuf;
use std::vec::Vec;

use crate::eval::{evaluate, suite, totals, Outcome};
use crate::synth::{self, Disturbance, Rhythm, Script};
use crate::{AlarmKind, Limits, Monitor, Sample};

fn outcomes() -> Vec<Outcome> {
    suite().unwrap()
}

/// MED-011: over the whole synthetic suite, QRS detection reaches a sensitivity and a
/// positive predictivity of at least 99.5 % (AAMI EC57 matching, 150 ms window).
#[test]
fn med_011_qrs_detection_meets_the_targets_on_the_suite() {
    let all = outcomes();
    let (beats, tp, fn_, fp) = totals(&all);
    let se = 100.0 * tp as f64 / (tp + fn_) as f64;
    let ppv = 100.0 * tp as f64 / (tp + fp) as f64;
    assert!(beats > 500, "only {beats} beats scored");
    assert!(se >= 99.5 && ppv >= 99.5, "Se {se:.2} % +P {ppv:.2} % ({tp} TP, {fn_} FN, {fp} FP)");
    for o in &all {
        assert!(o.se() >= 98.0 && o.ppv() >= 98.0, "{}: Se {:.1} +P {:.1}", o.name, o.se(), o.ppv());
    }
}

/// MED-011: the same processing works at every supported rate: a sinus rhythm with
/// premature ventricular beats, muscle noise and mains at 100, 500 and 1000 Hz.
#[test]
fn med_011_detection_works_at_every_supported_rate() {
    for rate in [100, 500, 1000] {
        let s = Script {
            name: "rates",
            rate_hz: rate,
            seed: rate as u64,
            rhythm: std::vec![
                Rhythm::Sinus { secs: 20.0, bpm: 70.0, pvc_every: 6 },
                Rhythm::Sinus { secs: 15.0, bpm: 160.0, pvc_every: 0 }
            ],
            disturbances: std::vec![
                Disturbance::Emg { from: 0.0, to: 35.0, uv: 30.0 },
                Disturbance::Mains { from: 0.0, to: 35.0, hz: 50.0, uv: 100.0 },
                Disturbance::Wander { from: 0.0, to: 35.0, hz: 0.3, uv: 500.0 }
            ],
            expect: std::vec![synth::Expect { kind: "tachycardia", from: 20.0, to: 35.0 }],
        };
        let g = synth::render(&s);
        let o = evaluate("rates", &g.ecg, &g.beats, &g.events).unwrap();
        assert!(o.se() >= 99.5 && o.ppv() >= 99.5, "{rate} Hz: Se {:.1} +P {:.1}", o.se(), o.ppv());
        assert!(o.checks.iter().all(|c| c.ok()), "{rate} Hz: {:?}", o.checks);
        assert!(o.false_alarms.is_empty(), "{rate} Hz: {:?}", o.false_alarms);
    }
}

/// MED-011: the monitor is a small fixed-size value and never panics, whatever the
/// samples (extremes, leads-off bursts, random values).
#[test]
fn med_011_any_input_is_handled_in_a_small_fixed_size() {
    assert!(core::mem::size_of::<Monitor>() <= 8192, "Monitor is {} bytes", core::mem::size_of::<Monitor>());
    for rate in [100, 250, 1000] {
        let mut m = Monitor::new(rate, Limits::default()).unwrap();
        let mut rng = synth::Rng::new(rate as u64);
        for i in 0..rate as u64 * 60 {
            let r = rng.next_u64();
            let s = match (i / 500) % 4 {
                0 => Sample::Microvolts(r as i32),
                1 if r.is_multiple_of(7) => Sample::LeadsOff,
                1 => Sample::Microvolts([i32::MIN, i32::MAX, 0, -1][(r % 4) as usize]),
                2 => Sample::Microvolts(((r % 4001) as i32) - 2000),
                _ => Sample::Microvolts(32767),
            };
            let _ = m.push(s);
        }
    }
}

/// MED-014: every expected alarm of the suite (asystole, bradycardia, tachycardia,
/// leads off, unusable signal) is raised within its delay limit.
#[test]
fn med_014_alarms_come_within_their_delays() {
    for o in outcomes() {
        for c in &o.checks {
            assert!(c.ok(), "{}: {} raised after {:?} ms (limit {} ms)", o.name, c.kind.name(), c.delay_ms, c.limit_ms);
        }
    }
}

/// MED-015: no alarm is raised where none is expected; in particular no asystole during
/// noise, leads off or an unusable signal.
#[test]
fn med_015_no_false_alarm_and_no_asystole_on_noise() {
    for o in outcomes() {
        assert_eq!(o.false_asystole_in_bad_signal(), 0, "{}: {:?}", o.name, o.false_alarms);
        assert!(o.false_alarms.is_empty(), "{}: {:?}", o.name, o.false_alarms);
    }
}

/// MED-015: asystole during a signal too noisy to judge raises the technical alarm,
/// not asystole; asystole is raised once the signal is usable again and still flat.
#[test]
fn med_015_asystole_in_noise_is_a_technical_alarm_first() {
    let s = Script {
        name: "asystole-in-noise",
        rate_hz: 250,
        seed: 99,
        rhythm: std::vec![Rhythm::Sinus { secs: 20.0, bpm: 72.0, pvc_every: 0 }, Rhythm::Asystole { secs: 25.0 }],
        disturbances: std::vec![Disturbance::Emg { from: 18.0, to: 30.0, uv: 700.0 }],
        expect: std::vec![synth::Expect { kind: "unusable", from: 18.0, to: 30.0 }],
    };
    let g = synth::render(&s);
    let o = evaluate("asystole-in-noise", &g.ecg, &g.beats, &g.events).unwrap();
    assert!(o.checks.iter().all(|c| c.ok()), "{:?}", o.checks);
    let asystole: Vec<u64> = o.raises.iter().filter(|(k, _)| *k == AlarmKind::Asystole).map(|(_, at)| *at).collect();
    // Raised once, within 10 s of the noise's end (30 s), never during it.
    assert_eq!(asystole.len(), 1, "{:?}", o.raises);
    assert!((30 * 250..40 * 250).contains(&asystole[0]), "{:?}", o.raises);
}

/// MED-016: the committed recordings are exactly what the generator makes.
#[test]
fn med_016_committed_recordings_are_what_the_generator_makes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recordings");
    let mut total = 0;
    for g in synth::all() {
        for (ext, bytes) in [("ecg", g.ecg.as_slice()), ("beats", g.beats.as_bytes()), ("events", g.events.as_bytes())]
        {
            let path = dir.join(std::format!("{}.{ext}", g.name));
            let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                committed == bytes,
                "{} differs from the generator's: run `cargo run -p septum-ecg --features std --bin ecg-gen`",
                path.display()
            );
            total += committed.len();
        }
    }
    assert!(total < 2 << 20, "the recordings take {total} bytes");
    let default = std::fs::read(dir.join("default.ecg")).unwrap();
    let rec = crate::Recording::parse(&default).unwrap();
    assert!((60_000..=120_000).contains(&rec.duration_ms()));
}

/// MED-011: a beat is reported at most `latency_samples()` after its R peak (under
/// 0.5 s at every rate), so the alarms' timing rests on a known delay; only beats
/// found by search-back come later, and those within 1.66 of the longest average RR.
#[test]
fn med_011_beats_are_reported_within_the_documented_latency() {
    let (mut beats, mut late) = (0, 0);
    for g in synth::all() {
        let rec = crate::Recording::parse(&g.ecg).unwrap();
        let rate = rec.rate_hz() as u64;
        let mut m = Monitor::new(rec.rate_hz(), Limits::default()).unwrap();
        let bound = m.latency_samples();
        assert!(bound * 1000 / rate <= 500, "{}: {bound} samples", g.name);
        let searchback = bound + crate::detector::RR_AVG_MAX_MS as u64 * rate * 166 / 100 / 1000;
        for i in 0..rec.len() as u64 {
            if let Some(b) = m.push(rec.sample(i as usize)).beat {
                beats += 1;
                if i - b.sample > bound {
                    late += 1;
                    assert!(i - b.sample <= searchback, "{}: beat at {} reported at {i}", g.name, b.sample);
                }
            }
        }
    }
    assert!(late * 100 <= beats, "{late} of {beats} beats came late");
}

/// MED-011: detection does not depend on the lead's polarity: every recording with
/// its samples negated scores as well.
#[test]
fn med_011_detection_does_not_depend_on_polarity() {
    for g in synth::all() {
        let rec = crate::Recording::parse(&g.ecg).unwrap();
        let negated: Vec<i16> = (0..rec.len())
            .map(|i| match rec.raw(i).unwrap() {
                crate::recording::LEADS_OFF => crate::recording::LEADS_OFF,
                v => v.saturating_neg(),
            })
            .collect();
        let bytes = crate::recording::write(rec.rate_hz(), rec.nv_per_lsb(), &negated);
        let o = evaluate(g.name, &bytes, &g.beats, &g.events).unwrap();
        assert!(o.se() >= 99.5 && o.ppv() >= 99.5, "{} negated: Se {:.1} +P {:.1}", g.name, o.se(), o.ppv());
        assert!(o.false_alarms.is_empty() && o.checks.iter().all(|c| c.ok()), "{} negated: {:?}", g.name, o.checks);
    }
}

//! The ECG recordings' truth, for the tests that replay them: their annotated beats,
//! their segments, and the heart rate the annotations say a monitor should show.

use std::path::PathBuf;

pub fn recording(name: &str) -> PathBuf {
    xtask::build::root().join("partitions/ecg/recordings").join(name)
}

/// A recording's sampling rate, from its header (`septum_ecg::recording`).
pub fn rate_hz(ecg: &[u8]) -> u64 {
    septum_ecg::recording::Recording::parse(ecg).expect("a recording").rate_hz().into()
}

/// The segments of `<name>.events` of one kind, as sample ranges.
pub fn segments(name: &str, kind: &str) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(recording(&format!("{name}.events"))).expect("events file");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == kind).then_some(())?;
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

/// The annotated beats of `<name>.beats`: sample index, and whether normal (`N`).
pub fn reference_beats(name: &str) -> Vec<(u64, bool)> {
    let text = std::fs::read_to_string(recording(&format!("{name}.beats"))).expect("beats file");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next() == Some("N")))
        })
        .collect()
}

/// The heart rate (tenths of bpm) the annotations of recording `name` give at `at_ms`:
/// the mean of the normal-to-normal intervals (neither beat ectopic) among the last 12
/// annotated intervals before it (the monitor's own window). None where that is no fair
/// reference: in the first 8 s (the detector learns), in the 12 s after the start or
/// end of any annotated segment (the window still holds the other rhythm), or with
/// fewer than 6 normal-to-normal intervals.
pub fn reference_decibpm(name: &str, rate: u64, at_ms: u64) -> Option<u64> {
    let beats = reference_beats(name);
    let changes: Vec<u64> = ["tachycardia", "bradycardia", "asystole", "leads-off", "noise", "unusable"]
        .iter()
        .flat_map(|k| segments(name, k))
        .flat_map(|(a, b)| [a, b])
        .collect();
    let at_sample = at_ms * rate / 1000;
    if at_sample < 8 * rate || changes.iter().any(|&c| at_sample + rate > c && at_sample < c + 12 * rate) {
        return None;
    }
    let recent: Vec<(u64, bool)> = beats.into_iter().filter(|&(b, _)| b + rate / 2 <= at_sample).collect();
    let window = &recent[recent.len().saturating_sub(13)..];
    let nn: Vec<u64> = window.windows(2).filter(|w| w[0].1 && w[1].1).map(|w| w[1].0 - w[0].0).collect();
    (nn.len() >= 6).then(|| 600 * rate * nn.len() as u64 / nn.iter().sum::<u64>())
}

//! The ECG recordings' truth, for the tests that replay them: their rate, annotated
//! beats and segments (read with `septum_ecg::eval`, as the bench reads them), and the
//! heart rate the annotations say a monitor should show.

use std::path::PathBuf;

use septum_ecg::eval::{parse_beats, parse_events, Segment};

/// A committed recording's file, e.g. `recording("default.ecg")`.
pub fn recording(file: &str) -> PathBuf {
    xtask::build::root().join("partitions/ecg/recordings").join(file)
}

/// One recording and what is known to be in it.
pub struct Truth {
    /// Samples per second.
    pub rate: u64,
    /// Annotated beats: sample index and type (`N` normal, `V` ectopic).
    beats: Vec<(u64, char)>,
    segments: Vec<Segment>,
}

impl Truth {
    /// Reads `<name>.ecg`'s header, `<name>.beats` and `<name>.events`.
    pub fn load(name: &str) -> Truth {
        let read = |ext: &str| std::fs::read(recording(&format!("{name}.{ext}"))).expect("a committed recording file");
        let text = |ext: &str| String::from_utf8(read(ext)).expect("text");
        let ecg = read("ecg");
        let rate = septum_ecg::Recording::parse(&ecg).expect("a recording").rate_hz().into();
        Truth {
            rate,
            beats: parse_beats(&text("beats")).expect("beats"),
            segments: parse_events(&text("events")).expect("events"),
        }
    }

    /// The first segment of `kind`, in ms of the recording.
    pub fn first_ms(&self, kind: &str) -> Option<(u64, u64)> {
        let s = self.segments.iter().find(|s| s.kind == kind)?;
        Some((s.start * 1000 / self.rate, s.end * 1000 / self.rate))
    }

    /// The heart rate (tenths of bpm) the annotations give at `at_ms`: the mean of the
    /// normal-to-normal intervals (neither beat ectopic) among the last 12 annotated
    /// intervals before it (the monitor's own window). None where that is no fair
    /// reference: in the first 8 s (the detector learns), in the 12 s after the start or
    /// end of any annotated segment (the window still holds the other rhythm), or with
    /// fewer than 6 normal-to-normal intervals.
    pub fn reference_decibpm(&self, at_ms: u64) -> Option<u64> {
        let rate = self.rate;
        let at_sample = at_ms * rate / 1000;
        let near_a_change = self
            .segments
            .iter()
            .flat_map(|s| [s.start, s.end])
            .any(|c| at_sample + rate > c && at_sample < c + 12 * rate);
        if at_sample < 8 * rate || near_a_change {
            return None;
        }
        let before = self.beats.iter().take_while(|&&(b, _)| b + rate / 2 <= at_sample).count();
        let window = &self.beats[before.saturating_sub(13)..before];
        let nn: Vec<u64> =
            window.windows(2).filter(|w| w[0].1 == 'N' && w[1].1 == 'N').map(|w| w[1].0 - w[0].0).collect();
        (nn.len() >= 6).then(|| 600 * rate * nn.len() as u64 / nn.iter().sum::<u64>())
    }
}

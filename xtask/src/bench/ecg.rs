//! `cargo xtask bench ecg`: the critical monitor's ECG processing (septum-ecg, the same
//! code the partition runs) on the host over every committed recording, scored against
//! the recordings' truth by `septum_ecg::eval`: beats after AAMI EC57 (150 ms
//! window), alarm onset delays against the `.events` segments and the standard's
//! limits, false alarms. Figures are printed against their targets, not asserted
//! (the crate's tests assert them: MED-011, MED-014, MED-015).
//!
//! No public annotated recording (MIT-BIH) is used: no package registry distributes
//! one (PyPI's `wfdb` ships without its sample data), and the monitor's alarms need
//! scripted asystole, leads-off and noise segments that those records lack.

use std::path::{Path, PathBuf};

use std::time::Duration;

use septum_ecg::eval::{self, Outcome};

use crate::build::root;
use crate::qemu::{field, EcgReplay, Launch, Line, Machine};

/// The targets of the issue: Se and +P on the synthetic suite.
const TARGET_PCT: f64 = 99.5;

/// The recordings' directory.
pub fn recordings_dir() -> PathBuf {
    root().join("partitions/ecg/recordings")
}

/// Every `NAME.ecg` with its `NAME.beats` and `NAME.events`, in name order.
pub fn recordings(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ecg"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no .ecg recordings in {}", dir.display()));
    }
    Ok(names)
}

fn evaluate(name: &str, ecg: &Path) -> Result<Outcome, String> {
    let read = |ext: &str| {
        let p = ecg.with_extension(ext);
        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let bytes = std::fs::read(ecg).map_err(|e| format!("{}: {e}", ecg.display()))?;
    eval::evaluate(name, &bytes, &read("beats")?, &read("events")?)
}

/// Runs the suite and prints its figures.
pub fn ecg() -> Result<(), String> {
    let dir = recordings_dir();
    let mut all = Vec::new();
    for (name, path) in recordings(&dir)? {
        all.push(evaluate(&name, &path)?);
    }
    println!();
    println!("ECG processing on the host (septum-ecg over {}, AAMI EC57 matching: 150 ms)", dir.display());
    println!(
        "  {:<13} {:>5} {:>6} {:>6} {:>5} {:>5} {:>5} {:>8} {:>8}  alarms (onset delay / limit)",
        "recording", "Hz", "s", "beats", "TP", "FN", "FP", "Se %", "+P %"
    );
    for o in &all {
        let alarms: Vec<String> = o
            .checks
            .iter()
            .map(|c| match c.delay_ms {
                Some(d) => format!(
                    "{} {:.1}/{:.0} s{}",
                    c.kind.name(),
                    d as f64 / 1000.0,
                    c.limit_ms as f64 / 1000.0,
                    if c.ok() { "" } else { " LATE" }
                ),
                None => format!("{} NOT RAISED", c.kind.name()),
            })
            .collect();
        println!(
            "  {:<13} {:>5} {:>6.0} {:>6} {:>5} {:>5} {:>5} {:>8.2} {:>8.2}  {}",
            o.name,
            o.rate_hz,
            o.samples as f64 / o.rate_hz as f64,
            o.beats,
            o.tp,
            o.fn_,
            o.fp,
            o.se(),
            o.ppv(),
            if alarms.is_empty() { "-".to_string() } else { alarms.join(", ") }
        );
    }
    let (beats, tp, fn_, fp) = eval::totals(&all);
    let se = 100.0 * tp as f64 / (tp + fn_).max(1) as f64;
    let ppv = 100.0 * tp as f64 / (tp + fp).max(1) as f64;
    let mark = |v: f64| if v >= TARGET_PCT { "met" } else { "MISSED" };
    println!(
        "  {:<13} {:>5} {:>6} {:>6} {:>5} {:>5} {:>5} {:>8.2} {:>8.2}",
        "overall", "", "", beats, tp, fn_, fp, se, ppv
    );
    println!("  targets: Se >= {TARGET_PCT} % ({}), +P >= {TARGET_PCT} % ({})", mark(se), mark(ppv));

    let checks: Vec<_> = all.iter().flat_map(|o| o.checks.iter()).collect();
    let late = checks.iter().filter(|c| !c.ok()).count();
    println!("  expected alarms: {} of {} within the standard's delays", checks.len() - late, checks.len());
    let false_alarms: Vec<_> = all.iter().flat_map(|o| o.false_alarms.iter().map(move |f| (&o.name, f))).collect();
    let false_asystole: usize = all.iter().map(|o| o.false_asystole_in_bad_signal()).sum();
    println!(
        "  false alarms: {} ({} physiological); asystole during noise or lost signal: {}",
        false_alarms.len(),
        all.iter().map(|o| o.false_physiological()).sum::<usize>(),
        false_asystole
    );
    for (name, f) in &false_alarms {
        println!(
            "    {name}: {} at {:.1} s{}",
            f.kind.name(),
            f.at_ms as f64 / 1000.0,
            if f.in_bad_signal { " (bad signal)" } else { "" }
        );
    }
    let samples: usize = all.iter().map(|o| o.samples).sum();
    let nanos: u128 = all.iter().map(|o| o.elapsed.as_nanos()).sum();
    println!(
        "  host cost: {:.0} ns per sample over {samples} samples ({} build of septum-ecg)",
        nanos as f64 / samples.max(1) as f64,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    in_the_partition()?;
    println!();
    Ok(())
}

/// The monitoring test's system: the critical monitor with its ECG sensor.
const PARTITION_SYSTEM: &str = "tests/systems/monitor.toml";

/// The processing's cost in the critical partition: the default recording replayed
/// whole in QEMU under `-icount shift=4`, where a tick of virt's 62.5 MHz counter is
/// one instruction, and the monitor's own count of the ticks `Monitor::push` took
/// (its report's `cost_mean` and `cost_max`; the largest may include an interrupt
/// taken during a sample, or another vCPU's turn).
fn in_the_partition() -> Result<(), String> {
    let art = crate::build::system(&root().join(PARTITION_SYSTEM).to_string_lossy())?;
    let recording = root().join(crate::qemu::DEFAULT_ECG);
    let len = septum_ecg::Recording::parse(&std::fs::read(&recording).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", recording.display()))?
        .len() as u64;
    let launch = Launch { icount: Some(4), ecg: EcgReplay::File(recording), ..Launch::default() };
    let mut m = Machine::launch(&art, &launch)?;
    let report =
        |l: &[Line]| l.iter().rev().find(|x| x.text.contains("critical-monitor: ecg hr=")).map(|x| x.text.clone());
    let whole = |l: &[Line]| report(l).and_then(|r| field(&r, "samples")).is_some_and(|n| n >= len);
    m.wait_for("the default recording replayed whole", Duration::from_secs(600), whole)?;
    let last = report(&m.lines()).unwrap_or_default();
    let get = |k: &str| field(&last, k).ok_or_else(|| format!("no {k}= in the monitor's report: {last}"));
    println!(
        "  in the partition (QEMU virt, Cortex-A72, -icount shift=4, {} samples of default.ecg): {} instructions \
         per sample on average, {} at most; overruns {}",
        get("samples")?,
        get("cost_mean")?,
        get("cost_max")?,
        get("overruns")?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench finds every committed recording with its truth files.
    #[test]
    fn finds_the_recordings_with_their_truth() {
        let all = recordings(&recordings_dir()).unwrap();
        assert!(all.iter().any(|(n, _)| n == "default"));
        for (_, p) in all {
            assert!(p.with_extension("beats").exists() && p.with_extension("events").exists(), "{}", p.display());
        }
    }
}

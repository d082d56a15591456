//! Helpers for the system tests in `tests/tests/`: build a system once per test
//! process, boot it, and read the heartbeat lines the partitions print.
#![forbid(unsafe_code)]

pub mod ecg;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use xtask::build::{self, Artifacts};
use xtask::qemu::Line;
use xtask::trust::BundleParts;

/// Builds (once per process and system) and returns the artifacts of a system named by
/// `systems/<name>.toml` or a path relative to the workspace root.
pub fn artifacts(name: &str) -> Artifacts {
    static BUILT: Mutex<Option<HashMap<String, Artifacts>>> = Mutex::new(None);
    let mut guard = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(a) = map.get(name) {
        return a.clone();
    }
    let target = if name.ends_with(".toml") {
        build::root().join(name).to_string_lossy().into_owned()
    } else {
        name.to_string()
    };
    let art = build::system(&target).unwrap_or_else(|e| panic!("building {name}: {e}"));
    map.insert(name.to_string(), art.clone());
    art
}

/// A heartbeat line: `<who>: heartbeat n=<n> cntvct=<ticks>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beat {
    pub n: u64,
    pub cntvct: u64,
}

pub fn parse_beat(text: &str, who: &str) -> Option<Beat> {
    let rest = text.split(&format!("{who}: heartbeat n=")).nth(1)?;
    let (n, rest) = rest.split_once(' ')?;
    let cnt = rest.strip_prefix("cntvct=")?;
    Some(Beat { n: n.parse().ok()?, cntvct: cnt.trim().parse().ok()? })
}

/// The heartbeats `who` printed on any console (its UART or the hypervisor log).
pub fn beats(lines: &[Line], who: &str) -> Vec<Beat> {
    lines.iter().filter_map(|l| parse_beat(&l.text, who)).collect()
}

/// Heartbeat jitter: how far each interval between consecutive beats of one run is
/// from `period` ticks, as (median, worst), in ticks. Printed by tests, never asserted
/// beyond the stall bound (host scheduling moves it).
pub fn jitter(beats: &[Beat], period: u64) -> (u64, u64) {
    let mut d: Vec<u64> = beats
        .windows(2)
        .filter(|w| w[1].n == w[0].n + 1)
        .map(|w| w[1].cntvct.saturating_sub(w[0].cntvct).abs_diff(period))
        .collect();
    d.sort_unstable();
    (d.get(d.len() / 2).copied().unwrap_or(0), d.last().copied().unwrap_or(0))
}

/// The largest counter gap between consecutive beats of one run (n increasing by 1).
pub fn largest_gap(beats: &[Beat]) -> u64 {
    beats
        .windows(2)
        .filter(|w| w[1].n == w[0].n + 1)
        .map(|w| w[1].cntvct.saturating_sub(w[0].cntvct))
        .max()
        .unwrap_or(0)
}

/// The critical monitor's "timer interrupts=N" reports (every 25 beats), in order.
pub fn timer_interrupt_reports(lines: &[Line]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.text.split("critical-monitor: timer interrupts=").nth(1)?.trim().parse().ok())
        .collect()
}

/// Beats between two "timer interrupts=" reports of the critical monitor.
pub const TIMER_REPORT_EVERY: u64 = 25;

/// Lines containing `needle`.
pub fn count(lines: &[Line], needle: &str) -> usize {
    lines.iter().filter(|l| l.text.contains(needle)).count()
}

/// Writes `name`, in `art`'s directory, as a copy of its bundle that `edit` changed (the
/// bundle's own CRCs recomputed, so only what the edit breaks can be noticed).
pub fn rebundle(art: &Artifacts, name: &str, edit: impl FnOnce(&mut BundleParts)) -> PathBuf {
    let mut parts = BundleParts::parse(&std::fs::read(&art.bundle).expect("bundle")).expect("bundle parses");
    edit(&mut parts);
    let path = art.dir.join(name);
    std::fs::write(&path, parts.encode().expect("encodes")).expect("write");
    path
}

/// The critical monitor booted once and never went more than two heartbeat periods
/// without a beat; returns its largest gap in ticks, for the caller to report.
pub fn assert_critical_kept_its_period(lines: &[Line], t: &str) -> u64 {
    assert_eq!(count(lines, "critical-monitor: boot"), 1, "{t}");
    let gap = largest_gap(&beats(lines, "critical-monitor"));
    assert!(gap <= 2 * period_ticks(lines), "critical-monitor stalled: gap {gap} ticks\n{t}");
    gap
}

/// The critical monitor's heartbeat period in counter ticks, from its boot line
/// (`heartbeat every <ms> ms, timer <hz> Hz`): boards' counters run at their own rates
/// (QEMU virt and raspi4b 62.5 MHz, imx8mp-evk 8 MHz).
pub fn period_ticks(lines: &[Line]) -> u64 {
    let (ms, hz) = boot_timing(lines);
    hz / 1000 * ms
}

/// The guests' counter rate in Hz, from the critical monitor's boot line.
pub fn counter_hz(lines: &[Line]) -> u64 {
    boot_timing(lines).1
}

/// The critical monitor's heartbeat period (ms) and counter rate (Hz), from its boot line.
fn boot_timing(lines: &[Line]) -> (u64, u64) {
    lines
        .iter()
        .find_map(|l| {
            let rest = l.text.split("critical-monitor: boot ").nth(1)?;
            let ms: u64 = rest.split("heartbeat every ").nth(1)?.split(' ').next()?.parse().ok()?;
            let hz: u64 = rest.split("timer ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((ms, hz))
        })
        .expect("the critical monitor's boot line names its heartbeat period and timer rate")
}

/// Types `command` into the shell on console `console` followed by `echo <tag>-$((1))`,
/// and waits for the line `<tag>-1` (the typed line shows `$((1))`, so only the shell's
/// output matches). Returns the console lines the command printed.
pub fn shell(
    m: &mut xtask::qemu::Machine,
    console: &str,
    command: &str,
    tag: &str,
    timeout: std::time::Duration,
) -> Vec<String> {
    let before = m.console(console).len();
    m.send(console, &format!("{command}; echo {tag}-$((1))\n")).expect("typing");
    let done = format!("{tag}-1");
    m.wait_for(&format!("`{command}` to finish"), timeout, |l| {
        l.iter().filter(|x| x.console == console).skip(before).any(|x| x.text.trim_end() == done)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.console(console);
    let out: Vec<String> = lines[before..].to_vec();
    let end = out.iter().position(|x| x.trim_end() == done).unwrap_or(out.len());
    out[..end].to_vec()
}

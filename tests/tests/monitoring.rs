//! The monitoring function end to end in QEMU: a recording replays in the critical
//! monitor's sensor memory, the monitor detects beats and alarms on its own clock,
//! announces alarms on its own console, and only derived records reach connectivity.
//! Times are the recording's (sample index / rate), which the monitor prints: a slow
//! host stretches the test, not the figures.

use std::time::Duration;

use septum_system_tests::ecg::{recording, Truth};
use septum_system_tests::{artifacts, assert_critical_kept_its_period, count};
use xtask::qemu::{field, last_with, EcgReplay, Launch, Line, Machine};

/// `critical-monitor: ALARM <kind> raised at <s>.<ms> s ...`: the recording time, ms.
fn alarm_times(lines: &[Line], kind: &str, verb: &str) -> Vec<u64> {
    let needle = format!("critical-monitor: ALARM {kind} {verb} at ");
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.text.split(&needle).nth(1)?;
            let (s, ms) = rest.split(' ').next()?.split_once('.')?;
            Some(s.parse::<u64>().ok()? * 1000 + ms.parse::<u64>().ok()?)
        })
        .collect()
}

/// The monitor's reports: (recording time ms, heart rate in tenths of bpm if any).
fn reports(lines: &[Line], rate: u64) -> Vec<(u64, Option<u64>, String)> {
    lines
        .iter()
        .filter(|l| l.text.contains("critical-monitor: ecg hr="))
        .filter_map(|l| {
            let samples = field(&l.text, "samples")?;
            let hr = l.text.split("hr=").nth(1)?.split(' ').next()?;
            let deci = hr.split_once('.').and_then(|(a, b)| Some(a.parse::<u64>().ok()? * 10 + b.parse::<u64>().ok()?));
            Some((samples * 1000 / rate, deci, l.text.clone()))
        })
        .collect()
}

fn launch(system: &str, name: &str) -> Machine {
    let art = artifacts(system);
    // Time counted in instructions (-icount, shift 4: a counter tick per instruction),
    // so the monitor has its core as on a board: a busy host slows the test, and can
    // neither make a sample late nor stall a beat.
    let ecg = EcgReplay::File(recording(&format!("{name}.ecg")));
    Machine::launch(&art, &Launch { ecg, icount: Some(4), ..Launch::default() }).expect("QEMU starts")
}

/// MED-001, MED-003, MED-004, MED-012: the default recording replays in real time; the
/// asystole in it raises the alarm on the critical console within the standard's delay
/// and not before it starts; the heart rate the monitor reports on steady rhythm
/// matches the annotated beats within 2 bpm; no sample period is missed; connectivity
/// receives beat, summary and alarm records, numbered without gaps.
#[test]
fn a_recording_replays_and_its_asystole_raises_the_alarm_on_the_critical_console() {
    let name = "default";
    let truth = Truth::load(name);
    let rate = truth.rate;
    let (start_ms, end_ms) = truth.first_ms("asystole").expect("the default recording has an asystole");
    let mut m = launch("tests/systems/monitor.toml", name);
    let past = |l: &[Line]| reports(l, rate).last().is_some_and(|r| r.0 >= end_ms + 5000);
    m.wait_for("the replay past its asystole", Duration::from_secs(400), past).unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    let raised = alarm_times(&lines, "asystole", "raised");
    let onset = *raised.first().unwrap_or_else(|| panic!("no asystole alarm\n{t}"));
    println!("asystole from {start_ms} ms; alarm raised at {onset} ms ({} ms after)", onset.saturating_sub(start_ms));
    assert!(onset >= start_ms && onset <= start_ms + septum_ecg::Limits::default().asystole_ms as u64 + 10_000, "{t}");
    assert_eq!(raised.iter().filter(|&&r| r < start_ms).count(), 0, "an asystole alarm before the asystole\n{t}");
    // Heart rate where the annotations give a fair reference (Truth::reference_decibpm).
    let mut checked = Vec::new();
    for (at, hr, text) in reports(&lines, rate) {
        assert_eq!(field(&text, "overruns"), Some(0), "a sample period missed: {text}\n{t}");
        let Some(reference) = truth.reference_decibpm(at) else { continue };
        let Some(hr) = hr else { panic!("no heart rate on steady rhythm: {text}\n{t}") };
        assert!(hr.abs_diff(reference) <= 20, "heart rate {hr} vs {reference} (tenths of bpm): {text}\n{t}");
        checked.push(hr.abs_diff(reference));
    }
    let (checked, worst) = (checked.len(), checked.iter().max().copied().unwrap_or(0));
    println!("heart rate checked at {checked} reports: at most {worst} tenths of bpm from the annotations");
    assert!(checked >= 5, "only {checked} reports on steady rhythm\n{t}");
    let conn = last_with(&lines, "connectivity: vitals received=").expect("connectivity's report");
    for key in ["beats", "summaries", "alarms"] {
        assert!(field(&conn.text, key).unwrap_or(0) > 0, "no {key} reached connectivity: {}\n{t}", conn.text);
    }
    assert_eq!(field(&conn.text, "gaps"), Some(0), "{}\n{t}", conn.text);
    assert_eq!(field(&conn.text, "strips"), Some(0), "raw samples left without being configured to\n{t}");
    assert_critical_kept_its_period(&lines, &t);
}

/// MED-006: a connectivity partition that forges commands to silence alarms, change
/// limits and alter measurements gets each refused and counted; the asystole alarm
/// still sounds on the critical console, and the accepted Pings are still counted.
#[test]
fn forged_commands_are_refused_and_the_alarm_still_sounds() {
    let name = "asystole";
    let (start_ms, _) = Truth::load(name).first_ms("asystole").expect("an asystole");
    let mut m = launch("tests/systems/monitor-hostile.toml", name);
    m.wait_for("the asystole alarm", Duration::from_secs(400), |l| {
        count(l, "critical-monitor: ALARM asystole raised") >= 1
            && last_with(l, "critical-monitor: commands received=").is_some()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    let onset = alarm_times(&lines, "asystole", "raised")[0];
    assert!(onset >= start_ms, "{t}");
    let commands = last_with(&lines, "critical-monitor: commands received=").expect("report");
    let conn = last_with(&lines, "connectivity: vitals received=").expect("connectivity's report");
    println!("{}\n{}", commands.text, conn.text);
    assert!(field(&commands.text, "refused").unwrap_or(0) > 0, "{}\n{t}", commands.text);
    assert!(field(&commands.text, "accepted").unwrap_or(0) > 0, "{}\n{t}", commands.text);
    assert!(field(&conn.text, "forged").unwrap_or(0) > 0, "{t}");
    assert_critical_kept_its_period(&lines, &t);
}

/// MED-008, MED-004: with `rhythm_strip_s=4` on the critical monitor's signed command
/// line, each alarm raised sends the 4 s of raw samples before it (1,000 samples at
/// 250 Hz, 125 pieces of 8) behind the derived records, none lost; without it (the
/// other tests) no raw sample leaves.
#[test]
fn a_configured_rhythm_strip_follows_each_alarm() {
    let text = std::fs::read_to_string(xtask::build::root().join("tests/systems/monitor.toml")).expect("system");
    let on = text.replacen("bootargs = \"heartbeat_ms=50\"", "bootargs = \"heartbeat_ms=50 rhythm_strip_s=4\"", 1);
    assert_ne!(on, text, "the critical monitor's bootargs line");
    let dir = xtask::build::root().join("target/test-systems");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("monitor-strips.toml");
    std::fs::write(&path, on).expect("write");
    let art = artifacts(&path.to_string_lossy());
    let ecg = EcgReplay::File(recording("asystole.ecg"));
    let mut m = Machine::launch(&art, &Launch { ecg, icount: Some(4), ..Launch::default() }).expect("QEMU starts");
    let done = |l: &[Line]| {
        count(l, "critical-monitor: ALARM asystole raised") >= 1
            && last_with(l, "connectivity: vitals received=").and_then(|c| field(&c.text, "strips")).unwrap_or(0) >= 125
    };
    m.wait_for("the asystole's strip at connectivity", Duration::from_secs(300), done)
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    assert_eq!(count(&lines, "rhythm strips on: 1000 samples before each alarm"), 1, "{t}");
    let raised =
        lines.iter().filter(|l| l.text.contains("critical-monitor: ALARM") && l.text.contains(" raised ")).count();
    let conn = last_with(&lines, "connectivity: vitals received=").expect("report");
    println!("{} alarms raised; {}", raised, conn.text);
    assert_eq!(field(&conn.text, "strips"), Some(125 * raised as u64), "{t}");
    assert_eq!(field(&conn.text, "gaps"), Some(0), "{t}");
}

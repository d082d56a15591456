//! Health monitoring beyond restart: escalation to halt, and the system's safe state.

use std::time::Duration;

use septum_system_tests::{artifacts, beats, count};
use xtask::qemu::{Launch, Machine};

/// HM-004: a partition that keeps faulting is halted once restarts stop helping; the
/// critical monitor keeps running.
#[test]
fn repeated_faults_escalate_to_halt_and_critical_runs_on() {
    let art = artifacts("tests/systems/restart-limit.toml");
    let mut m = Machine::launch(&art, &Launch::default()).expect("QEMU starts");
    m.wait_for("the halt", Duration::from_secs(60), |l| count(l, "restarting is not helping; partition halted") == 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let halted_at = beats(&m.lines(), "critical-monitor").len();
    m.wait_for("50 more critical beats", Duration::from_secs(60), |l| {
        beats(l, "critical-monitor").len() >= halted_at + 50
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    assert_eq!(count(&lines, "connectivity: FAULT forbidden SMC"), 4, "{t}");
    assert_eq!(count(&lines, "connectivity: policy restart"), 3, "{t}");
    assert!(lines.iter().any(|l| l.text.contains("connectivity: 3 restarts within 60000 ms")), "{t}");
    let halt = lines.iter().position(|l| l.text.contains("partition halted")).expect("halt line");
    assert!(
        !lines[halt..].iter().any(|l| l.text.starts_with("connectivity: heartbeat")),
        "a halted partition ran\n{t}"
    );
    assert_eq!(count(&lines, "critical-monitor: boot"), 1, "{t}");
}

/// HM-003: a fault in the critical partition puts the whole system in its safe state:
/// the reason is logged and the board is powered off (QEMU exits).
#[test]
fn critical_fault_enters_the_safe_state() {
    let art = artifacts("tests/systems/critical-fault.toml");
    let mut m = Machine::launch(&art, &Launch::default()).expect("QEMU starts");
    m.wait_for("the safe state", Duration::from_secs(60), |l| count(l, "SAFE STATE: critical partition fault") == 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = m.wait_exit(Duration::from_secs(10));
    let lines = m.lines();
    let t = m.transcript();
    assert!(status.is_some(), "the board was not powered off\n{t}");
    assert!(
        lines
            .iter()
            .any(|l| l.text.contains("critical-monitor: FAULT access outside its memory map: read at IPA 0x10000000")),
        "{t}"
    );
    let crit = beats(&lines, "critical-monitor");
    assert_eq!(crit.last().map(|b| b.n), Some(25), "{t}");
    assert!(!lines.iter().any(|l| l.text.contains("did not power off")), "{t}");
}

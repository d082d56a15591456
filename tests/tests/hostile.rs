//! A hostile connectivity partition that races the hypervisor's power handling and
//! floods its log (`partitions/connectivity/src/races.rs`): a stopped or halted
//! partition never runs again on its own say-so, its memory is never written while it
//! runs, the log stays readable, the safe state is reached through the flood, and the
//! critical monitor keeps its period throughout.

use std::time::Duration;

use septum_system_tests::{artifacts, assert_critical_kept_its_period, count, counter_hz, period_ticks, Beat};
use xtask::qemu::{Launch, Line, Machine};

/// Three busy connectivity vCPUs beside the critical one are more busy QEMU threads
/// than a two-core host has: time is counted in instructions (`-icount`, one counter
/// tick per instruction), so the critical monitor's period is judged by what the
/// hypervisor does, not by how the host schedules QEMU's threads.
fn deterministic() -> Launch {
    Launch { icount: Some(4), ..Launch::default() }
}

/// The counts one partition's summaries report for `label`, summed.
fn summed(lines: &[Line], partition: &str, label: &str) -> u64 {
    let prefix = format!("{partition}: contained in the last");
    lines
        .iter()
        .filter(|l| l.console == "hypervisor" && l.text.contains(&prefix))
        .filter_map(|l| {
            let rest = l.text.split(&format!("{label} ")).nth(1)?;
            rest.split(' ').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// PSCI-002, HM-006: round after round, vCPU 1 calls CPU_ON in a tight loop while vCPU 0
/// faults and the partition is stopped and reloaded. Thousands of those calls arrive
/// from the stopped generation and are refused; none starts a vCPU (no `ESCAPED`), the
/// reloaded RAM is pristine every round (nothing wrote it while the hypervisor loaded
/// and verified it), and the critical monitor keeps its period.
#[test]
fn cpu_on_racing_a_stop_never_starts_a_vcpu_of_the_stopped_partition() {
    const ROUNDS: usize = 1000;
    let art = artifacts("tests/systems/race-cpu-on.toml");
    let mut m = Machine::launch(&art, &deterministic()).expect("QEMU starts");
    m.wait_for("every round of the race", Duration::from_secs(600), |l| count(l, "connectivity: race done") == 1)
        .unwrap_or_else(|e| panic!("{e}"));
    // The last round's calls are reported in the summary that follows.
    m.wait_for("the summary after the race", Duration::from_secs(30), |l| {
        let done = l.iter().position(|x| x.text.contains("race done")).unwrap_or(usize::MAX);
        l.iter().skip(done).any(|x| x.text.contains("connectivity: contained in the last"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    assert_eq!(count(&lines, "ESCAPED"), 0, "a vCPU of the stopped partition ran\n{t}");
    assert_eq!(count(&lines, "(pristine)"), ROUNDS + 1, "a reload was written while it ran\n{t}");
    assert_eq!(count(&lines, "NOT pristine"), 0, "{t}");
    let stale = summed(&lines, "connectivity", "power calls of a stopped partition refused");
    assert!(stale >= ROUNDS as u64 / 10, "the race was hardly run: {stale} stale calls in {ROUNDS} rounds\n{t}");
    let gap = assert_critical_kept_its_period(&lines, &t);
    println!(
        "{ROUNDS} rounds: {stale} CPU_ON calls from a stopped generation refused; critical largest gap {:.2} periods",
        gap as f64 / period_ticks(&lines) as f64
    );
}

/// PSCI-002, HM-004: the same race, escalated to halt at the fourth stop: the halted
/// partition starts nothing, whatever its other vCPU was calling, and stays silent.
#[test]
fn a_halted_partition_stays_halted_while_its_vcpus_race_cpu_on() {
    let art = artifacts("tests/systems/race-halt.toml");
    let mut m = Machine::launch(&art, &deterministic()).expect("QEMU starts");
    m.wait_for("the halt", Duration::from_secs(120), |l| count(l, "restarting is not helping; partition halted") == 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let halted_at = m.lines().len();
    m.wait_for("40 critical beats after the halt", Duration::from_secs(60), |l| {
        l[halted_at.min(l.len())..].iter().filter(|x| x.text.contains("critical-monitor: heartbeat")).count() >= 40
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    let after = &lines[halted_at..];
    assert!(!after.iter().any(|l| l.console == "connectivity"), "the halted partition ran\n{t}");
    assert_eq!(count(&lines, "ESCAPED"), 0, "{t}");
    assert!(!after.iter().any(|l| l.text.contains("connectivity: vCPU") && l.text.contains("starting")), "{t}");
    assert_eq!(count(&lines, "(pristine)"), 4, "boot and three restarts\n{t}");
    assert_critical_kept_its_period(&lines, &t);
}

/// LOG-004, HM-003: connectivity starts and stops a vCPU in a tight loop and leaves its
/// timer's interrupt with every list register full. The hypervisor writes its lines
/// within the partition's budget (20 a second, bursts of 60), counts the rest and
/// reports them in its summary; the timer's interrupt waits, active, for a list
/// register instead of firing again and again; and when the critical monitor faults,
/// the safe state is reached through the flood and the board powers off.
#[test]
fn a_flood_of_guest_caused_events_is_budgeted_and_the_safe_state_gets_through() {
    let art = artifacts("tests/systems/flood.toml");
    let mut m = Machine::launch(&art, &deterministic()).expect("QEMU starts");
    m.wait_for("the flood's first summary", Duration::from_secs(60), |l| {
        count(l, "connectivity: contained in the last") >= 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    m.wait_for("the safe state", Duration::from_secs(120), |l| count(l, "SAFE STATE: critical partition fault") == 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = m.wait_exit(Duration::from_secs(10));
    let lines = m.lines();
    let t = m.transcript();
    assert!(status.is_some(), "the board was not powered off\n{t}");

    let started = lines.iter().find(|l| l.text.contains("connectivity: flood started")).expect("flood").at;
    let safe = lines.iter().find(|l| l.text.contains("SAFE STATE")).expect("safe state").at;
    // The budget is kept over the counter, which under -icount runs with the
    // instructions executed, not with the host's clock: the window is the critical
    // monitor's beats during the flood, whose counter values give its length, and the
    // lines counted are those the host saw in it.
    let window: Vec<(std::time::Duration, Beat)> = lines
        .iter()
        .filter(|l| l.at >= started && l.at <= safe)
        .filter_map(|l| Some((l.at, septum_system_tests::parse_beat(&l.text, "critical-monitor")?)))
        .collect();
    let (Some(&(from, first)), Some(&(to, last))) = (window.first(), window.last()) else {
        panic!("no critical beats during the flood\n{t}")
    };
    let hz = counter_hz(&lines) as f64;
    let seconds = (last.cntvct - first.cntvct) as f64 / hz;
    let caused = lines
        .iter()
        .filter(|l| l.console == "hypervisor" && l.at >= from && l.at <= to)
        .filter(|l| l.text.contains("[septum] connectivity: vCPU"))
        .count();
    // Allow the burst, the rate over the window, and a second's slack for the lines of
    // two consoles reaching the host in a slightly different order than they were written.
    let budget = 60.0 + 20.0 * (seconds + 1.0);
    assert!((caused as f64) <= budget, "{caused} lines in {seconds:.1} s of guest time, budget {budget:.0}\n{t}");
    let starts = summed(&lines, "connectivity", "vCPU starts");
    let suppressed = summed(&lines, "connectivity", "log lines suppressed");
    assert!(starts >= 1000, "the flood was not a flood: {starts} vCPU starts\n{t}");
    assert!(suppressed > 0, "{t}");
    assert!(summed(&lines, "connectivity", "waits for a list register") >= 1, "{t}");
    assert_eq!(count(&lines, "no free list register"), 0, "{t}");
    assert!(count(&lines, "connectivity: flooding n=") >= 5, "vCPU 0 went on running\n{t}");
    assert_critical_kept_its_period(&lines, &t);
    println!(
        "flood: {starts} vCPU starts, {caused} lines written over {seconds:.1} s, {suppressed} suppressed; safe state reached"
    );
}

/// HM-001: a stage-2 permission fault (HPFAR_EL2 UNKNOWN) is logged with the IPA the
/// guest's own stage 1 gives its faulting address: a write to the channel region the
/// peer writes (read-only here) and a jump into the partition's UART page (never
/// executable), each at the address the guest says it aimed at; both contained.
#[test]
fn permission_faults_are_reported_at_the_ipa_the_guest_used() {
    let art = artifacts("tests/systems/permission-faults.toml");
    let mut m = Machine::launch(&art, &Launch::default()).expect("QEMU starts");
    m.wait_for("both faults and the boot after them", Duration::from_secs(90), |l| {
        count(l, "connectivity: boot (") >= 3
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    let aimed = |attack: &str| -> u64 {
        let line = lines.iter().find_map(|l| l.text.split(&format!("attack {attack} at 0x")).nth(1)).expect("aimed");
        u64::from_str_radix(line.trim(), 16).expect("hex")
    };
    let (write_at, exec_at) = (aimed("write-peer-region"), aimed("exec-uart"));
    let write = format!("connectivity: FAULT access outside its memory map: write at IPA {write_at:#x}");
    let fetch = format!("connectivity: FAULT instruction fetch outside its memory map: fetch at IPA {exec_at:#x}");
    assert_eq!(count(&lines, &write), 1, "no `{write}`\n{t}");
    assert_eq!(count(&lines, &fetch), 1, "no `{fetch}`\n{t}");
    assert_eq!(count(&lines, "permission fault"), 2, "both are permission faults\n{t}");
    assert_eq!(count(&lines, "IPA unknown"), 0, "{t}");
    assert_eq!(count(&lines, "NOT CONTAINED"), 0, "{t}");
    assert_eq!(count(&lines, "connectivity: policy restart"), 2, "{t}");
    assert_critical_kept_its_period(&lines, &t);
}

//! The channel between partitions, end to end in QEMU.

use std::time::Duration;

use septum_system_tests::{artifacts, assert_critical_kept_its_period, beats, count, largest_gap, period_ticks};
use xtask::qemu::{field, last_with, Entry, Launch, Line, Machine};

/// CH-008, IRQ-007 (the quirk stays off): at least 10,000 numbered, checksummed records from the critical monitor
/// reach connectivity with nothing lost, duplicated or reordered. (A consumer starts
/// at the producer's index when it attaches, so the stream may begin after record 0.)
#[test]
fn vitals_stream_arrives_complete_and_in_order() {
    stream("qemu-virt-bare");
}

/// CH-008, BOARD-001, BOOT-006 on the Raspberry Pi 4 (QEMU raspi4b; cores 2 and 3 are
/// taken off the firmware's spin table and parked).
#[test]
fn vitals_stream_arrives_complete_and_in_order_on_rpi4() {
    stream("rpi4-bare");
}

/// CH-008, BOARD-001, IRQ-007 on the i.MX 8M Plus EVK (QEMU imx8mp-evk), whose timer
/// and doorbell interrupts reach the guests only through quirk virq-unwired.
#[test]
fn vitals_stream_arrives_complete_and_in_order_on_imx8mp_evk() {
    stream("imx8mp-evk-bare");
}

/// BOOT-001, BOARD-002, BOOT-006: the same on the Raspberry Pi 4 model entered as an ELF
/// at EL3 on all four cores (the hypervisor drops to EL2 and holds cores 1-3 in its
/// pen; the two no partition uses it parks).
#[test]
fn vitals_stream_arrives_complete_and_in_order_on_rpi4_entered_at_el3() {
    stream_with("rpi4-bare", Entry::El3);
}

fn stream(system: &str) {
    stream_with(system, Entry::El2);
}

fn stream_with(system: &str, entry: Entry) {
    let art = artifacts(system);
    let mut m = Machine::launch(&art, &Launch { entry, ..Launch::default() }).expect("QEMU starts");
    m.wait_for("10,000 vitals records and 200 critical beats", Duration::from_secs(120), |l| {
        last_with(l, "connectivity: vitals received=").and_then(|x| field(&x.text, "received")).unwrap_or(0) >= 10_000
            && beats(l, "critical-monitor").len() >= 200
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    let reports: Vec<&Line> = lines.iter().filter(|l| l.text.contains("connectivity: vitals received=")).collect();
    for r in &reports {
        let received = field(&r.text, "received").expect("received");
        let first = field(&r.text, "first").expect("first");
        assert_eq!(field(&r.text, "last"), Some(first + received - 1), "a record lost or repeated: {}\n{t}", r.text);
        assert_eq!(field(&r.text, "gaps"), Some(0), "{}\n{t}", r.text);
        assert_eq!(field(&r.text, "out_of_order"), Some(0), "{}\n{t}", r.text);
    }
    let last = reports.last().map(|r| r.text.clone()).unwrap_or_default();
    println!("{system}: {last}");
    // IRQ-007: the quirk is on for QEMU's imx8mp-evk model only.
    let quirk = usize::from(art.system.board.name == "imx8mp-evk");
    assert_eq!(count(&lines, "quirk virq-unwired on"), quirk, "{t}");
    assert_eq!(count(&lines, "peer_corrupt=0"), count(&lines, "critical-monitor: vitals sent="), "{t}");
    // BOOT-006: the two cores no partition uses are taken off the Pi's spin table, or
    // out of the pen at EL3, into the hypervisor's WFI loop; PSCI cores stay off.
    let parked = if art.system.board.name == "rpi4" || entry == Entry::El3 { 2 } else { 0 };
    assert_eq!(count(&lines, "no partition uses it; parked"), parked, "{t}");
    let gap = assert_critical_kept_its_period(&lines, &t);
    println!(
        "{system}: critical-monitor: largest gap while streaming {gap} ticks ({:.2} periods)",
        gap as f64 / period_ticks(&lines) as f64
    );
}

/// CH-009: a hostile connectivity partition scribbles random bytes over every channel
/// region it can write, as fast as it can, and floods its doorbells. The critical
/// monitor rejects and counts everything, keeps its heartbeat period, and the
/// hypervisor holds the doorbells to their configured rate.
#[test]
fn hostile_scribbling_and_doorbell_floods_are_contained() {
    let art = artifacts("tests/systems/hostile-channel.toml");
    let mut m = Machine::launch(&art, &Launch::default()).expect("QEMU starts");
    m.wait_for("300 critical beats under attack", Duration::from_secs(120), |l| {
        beats(l, "critical-monitor").len() >= 300 && count(l, "doorbell 0x") >= 2
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    let crit = beats(&lines, "critical-monitor");
    assert!(crit.windows(2).all(|w| w[1].n == w[0].n + 1), "critical-monitor skipped a beat\n{t}");
    assert_eq!(count(&lines, "critical-monitor: boot"), 1, "{t}");
    assert_eq!(count(&lines, "FAULT"), 0, "scribbling its own channel memory is no fault\n{t}");
    let commands = last_with(&lines, "critical-monitor: commands received=").expect("commands report");
    let vitals = last_with(&lines, "critical-monitor: vitals sent=").expect("vitals report");
    let refused = field(&commands.text, "bad_index").unwrap_or(0) + field(&commands.text, "rejected").unwrap_or(0);
    assert!(refused > 0, "nothing rejected: {}\n{t}", commands.text);
    println!("{}\n{}", commands.text, vitals.text);
    let doorbell = last_with(&lines, "connectivity: doorbell 0x31").expect("doorbell report");
    println!("{}", doorbell.text);
    let gap = largest_gap(&crit);
    println!(
        "critical-monitor: largest gap under attack {gap} ticks ({:.2} periods)",
        gap as f64 / period_ticks(&lines) as f64
    );
    assert!(gap <= 2 * period_ticks(&lines), "critical-monitor stalled: {gap} ticks\n{t}");
}

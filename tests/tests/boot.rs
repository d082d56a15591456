//! Boot: two partitions come up and keep time; wrong entry levels and corrupted
//! configurations are refused. Requirement IDs are in docs/requirements.md.

use std::time::Duration;

use septum_abi::config::{self, PartitionDesc};
use septum_system_tests::{
    artifacts, beats, count, jitter, largest_gap, period_ticks, rebundle, timer_interrupt_reports,
};
use xtask::qemu::{Entry, Launch, Machine, HYPERVISOR};
use zerocopy::FromBytes;

/// BOOT-001, BOOT-004, ISO-006, LOG-001, IRQ-001, IRQ-003: both partitions boot at EL2 and
/// heartbeat 200 times, each on its own console; the critical monitor's largest gap
/// stays within twice its period. Between beats it streams vitals, and sleeps on its
/// virtual timer's interrupt whenever the queue is full.
#[test]
fn both_partitions_boot_and_heartbeat_200_times() {
    let art = artifacts("qemu-virt-bare");
    let mut m = Machine::launch(&art, &Launch::default()).expect("QEMU starts");
    m.wait_for("200 heartbeats from each partition", Duration::from_secs(90), |l| {
        beats(l, "critical-monitor").len() >= 200 && beats(l, "connectivity").len() >= 200
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    assert_eq!(count(&lines, "entered at EL2, running at EL2"), 1, "{}", m.transcript());
    assert_eq!(count(&lines, "configuration accepted: 2 partitions"), 1, "{}", m.transcript());
    // The hypervisor's log goes on after the partitions are set up (a boot stack that
    // ran into the log's state once silenced it; stacks now have guard pages).
    for who in ["critical-monitor", "connectivity"] {
        assert_eq!(count(&lines, &format!("[septum] {who}: vCPU 0 starting on MPIDR")), 1, "{}", m.transcript());
    }
    // Each partition speaks on its own UART, and only there.
    assert!(m.console("critical-monitor").iter().all(|t| t.starts_with("critical-monitor: ")), "{}", m.transcript());
    assert!(m.console("connectivity").iter().all(|t| t.starts_with("connectivity: ")), "{}", m.transcript());
    assert!(m.console(HYPERVISOR).iter().all(|t| t.starts_with("[septum] ")), "{}", m.transcript());
    let gap = largest_gap(&beats(&lines, "critical-monitor"));
    println!(
        "critical-monitor: largest gap between beats {gap} ticks ({:.2} periods)",
        gap as f64 / period_ticks(&lines) as f64
    );
    assert!(gap <= 2 * period_ticks(&lines), "critical-monitor stalled: gap {gap} ticks\n{}", m.transcript());
    let (median, worst) = jitter(&beats(&lines, "critical-monitor"), period_ticks(&lines));
    println!("critical-monitor: heartbeat jitter median {median} ticks, worst {worst} ticks");
    // IRQ-003: connectivity's own UART interrupt (SPI 8, INTID 40) reaches it, enabled
    // through the distributor the hypervisor emulates.
    assert_eq!(count(&lines, "connectivity: uart interrupt 40 taken (enabled=true)"), 1, "{}", m.transcript());
    let irqs = timer_interrupt_reports(&lines);
    println!("critical-monitor: timer interrupts at each report: {irqs:?}");
    assert!(irqs.last().is_some_and(|&n| n > 0), "no sleep ended by the timer\n{}", m.transcript());
}

/// LOG-002 on the boards as a user boots them, with no debugger: QEMU without
/// semihosting makes `HLT #0xF000` undefined, as the real board does. The hypervisor's
/// first log line finds semihosting absent and goes on; both partitions run (the
/// critical monitor keeps its period), nothing reaches the semihosting console, and
/// the whole log is in the hypervisor's RAM ring, where a debugger reads it.
fn runs_without_semihosting(system: &str) {
    let art = artifacts(system);
    let mut m = Machine::launch(&art, &Launch { semihosting: false, ..Launch::default() }).expect("QEMU starts");
    m.wait_for("50 critical beats and connectivity's vitals", Duration::from_secs(90), |l| {
        beats(l, "critical-monitor").len() >= 50 && count(l, "connectivity: vitals received=") >= 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    assert!(m.console(HYPERVISOR).is_empty(), "nothing can leave through semihosting\n{t}");
    let gap = largest_gap(&beats(&lines, "critical-monitor"));
    assert!(gap <= 2 * period_ticks(&lines), "critical-monitor stalled: gap {gap} ticks\n{t}");
    let log = m.ram_log(&art).expect("the RAM ring reads back");
    let board = art.system.board.name;
    for line in [
        format!("[septum] Septum 0.1.0 for {board}: entered at EL2"),
        "[septum] configuration accepted: 2 partitions".to_string(),
        "[septum] critical-monitor: vCPU 0 starting on MPIDR".to_string(),
        "[septum] connectivity: vCPU 0 starting on MPIDR".to_string(),
    ] {
        assert_eq!(log.matches(&line).count(), 1, "{line:?} in the RAM log:\n{log}\n{t}");
    }
    assert!(log.lines().all(|l| l.starts_with('[')), "whole lines only:\n{log}");
    println!("{system}: {} lines of hypervisor log in RAM, none on semihosting", log.lines().count());
}

#[test]
fn runs_without_semihosting_on_rpi4() {
    runs_without_semihosting("rpi4-bare");
}

#[test]
fn runs_without_semihosting_on_imx8mp_evk() {
    runs_without_semihosting("imx8mp-evk-bare");
}

/// BOOT-002: entered at EL1 the hypervisor refuses, says why, and starts nothing.
#[test]
fn entry_at_el1_is_refused() {
    let art = artifacts("qemu-virt-bare");
    let mut m = Machine::launch(&art, &Launch { entry: Entry::El1, ..Launch::default() }).expect("QEMU starts");
    m.wait_for("the refusal", Duration::from_secs(30), |l| count(l, "REFUSED: entered at EL1") >= 2)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    let lines = m.lines();
    assert_eq!(count(&lines, "heartbeat"), 0, "nothing may run after a refusal\n{}", m.transcript());
    assert!(m.console(HYPERVISOR).iter().any(|t| t.contains("must start at EL2 or EL3")), "{}", m.transcript());
}

/// Rebuilds the bundle of `art` with a different configuration, signed with the root
/// keys the system was built with, as its owner would sign it.
fn bundle_with_config(art: &xtask::build::Artifacts, config: &[u8], name: &str) -> std::path::PathBuf {
    rebundle(art, name, |parts| parts.config = xtask::trust::sign_config(&art.keys, config).expect("signs"))
}

fn expect_refusal(art: &xtask::build::Artifacts, bundle: std::path::PathBuf, reason: &str) {
    let mut m = Machine::launch(art, &Launch { bundle: Some(bundle), ..Launch::default() }).expect("QEMU starts");
    m.wait_for(reason, Duration::from_secs(30), |l| {
        count(l, "BOOT STOPPED: configuration refused") == 1 && count(l, reason) >= 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&m.lines(), "heartbeat"), 0, "no partition may start\n{}", m.transcript());
}

/// CFG-003: a configuration corrupted before it was signed is still refused at boot
/// (its own checksum), even though its signature is good.
#[test]
fn corrupted_configuration_is_refused_at_boot() {
    let art = artifacts("qemu-virt-bare");
    let mut config = art.system.encode();
    let at = config.len() / 2;
    config[at] ^= 0x20;
    let bundle = bundle_with_config(&art, &config, "bundle-corrupt-config.bin");
    expect_refusal(&art, bundle, "checksum mismatch");
}

/// The compiled configuration of `art` with `edit` applied to its partitions, encoded
/// (checksum and all) as a tool that skipped xtask's checks would write it.
fn edited_config(art: &xtask::build::Artifacts, edit: impl FnOnce(&mut [PartitionDesc])) -> Vec<u8> {
    let mut parts: Vec<PartitionDesc> = art.system.partitions.iter().map(|p| p.desc).collect();
    edit(&mut parts);
    let mut config = vec![0u8; config::encoded_len(parts.len())];
    let n = config::encode(art.system.board.id, &parts, &mut config).expect("encodes");
    assert!(PartitionDesc::ref_from_bytes(&config[n - size_of::<PartitionDesc>()..n]).is_ok());
    config.truncate(n);
    config
}

/// QEMU virt's device tree as the hypervisor reads it (QEMU 10.0.2, `gic-version=3`).
const VIRT_DTB: &[u8] = include_bytes!("../../hypervisor/core/tests/qemu-virt.dtb");

/// CFG-004, CFG-005, BOOT-005: the hypervisor re-checks the invariants it relies on, even
/// in a configuration whose checksum is right and whose signature is good: here
/// connectivity's RAM moved onto critical-monitor's; connectivity given the
/// hypervisor's flash bank, which a check against the board's device tree alone lets
/// through (QEMU's DTB calls it a plain `cfi-flash`), refused by the catalogue's kept
/// devices the hypervisor adds; and connectivity given critical-monitor's UART
/// interrupt. None of them starts a partition.
#[test]
fn configuration_breaking_isolation_is_refused_at_boot() {
    let art = artifacts("qemu-virt-bare");
    let overlap = edited_config(&art, |parts| parts[1].regions[0].pa = parts[0].regions[0].pa);
    let bundle = bundle_with_config(&art, &overlap, "bundle-overlap.bin");
    expect_refusal(&art, bundle, "partition #1 region #0 overlaps partition #0 region #0");

    let storage = art.system.board.storage.expect("qemu-virt has a flash bank");
    let mut flash_region = 0;
    let flash = edited_config(&art, |parts| {
        let p = &mut parts[1];
        flash_region = p.region_count as usize;
        p.regions[flash_region] = config::MemRegion::device(storage.base, storage.size);
        p.region_count += 1;
    });
    let dtb_alone = septum_core::board::read(VIRT_DTB).expect("reads").board;
    let careless = config::Config::parse(&flash, art.system.board.id, &dtb_alone, &|_| None);
    assert!(careless.is_ok(), "the DTB alone accepts the flash bank: {careless:?}");
    let bundle = bundle_with_config(&art, &flash, "bundle-flash-bank.bin");
    let kept =
        format!("partition #1 region #{flash_region} (0x4000000..0x8000000) reaches a device the hypervisor keeps");
    expect_refusal(&art, bundle, &kept);

    let foreign = edited_config(&art, |parts| {
        let critical_uart = parts[0].irqs[0];
        let p = &mut parts[1];
        p.irqs[p.irq_count as usize] = critical_uart;
        p.irq_count += 1;
    });
    let bundle = bundle_with_config(&art, &foreign, "bundle-foreign-irq.bin");
    expect_refusal(&art, bundle, "partition #1: interrupt 33 is also given to partition #0");
}

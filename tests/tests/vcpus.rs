//! Several vCPUs in one partition: PSCI CPU_ON starts the partition's own vCPUs only,
//! each on the core its description pins it to and with its own virtual timer; a
//! restart stops and restarts the partition as a whole. Requirement IDs are in
//! docs/requirements.md.

use std::time::Duration;

use septum_system_tests::{artifacts, assert_critical_kept_its_period, beats, count, jitter, period_ticks};
use xtask::qemu::{Launch, Line, Machine};

/// The "vcpu 1 beats=N sgis=M" reports of connectivity, in order, as (N, M).
fn vcpu1_reports(lines: &[Line]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.text.split("connectivity: vcpu 1 beats=").nth(1)?;
            let (beats, sgis) = rest.split_once(" sgis=")?;
            Some((beats.parse().ok()?, sgis.trim().parse().ok()?))
        })
        .collect()
}

/// PSCI-001, IRQ-001, IRQ-002, IRQ-004, HM-006: vCPU 1 starts on CPU_ON and beats on its own
/// timer interrupt; CPU_ON for anything outside the partition is refused; a fault of
/// vCPU 0 restarts both vCPUs from the pristine image; the critical monitor never
/// notices.
#[test]
fn second_vcpu_starts_beats_and_restarts_with_its_partition() {
    second_vcpu("tests/systems/smp.toml", true);
}

/// PSCI-001, IRQ-002, IRQ-005, IRQ-006, HM-006: the same on a GICv2 (QEMU virt,
/// gic-version=2): the SGIs go through the emulated `GICD_SGIR`, the timer and SGIs
/// reach the guest through the virtual CPU interface.
#[test]
fn second_vcpu_starts_beats_and_restarts_with_its_partition_on_gicv2() {
    second_vcpu("tests/systems/smp-gicv2.toml", false);
}

fn second_vcpu(system: &str, gicv3: bool) {
    let art = artifacts(system);
    let mut m = Machine::launch(&art, &Launch::default()).expect("QEMU starts");
    let done = |l: &[Line]| {
        let after = l.iter().skip_while(|x| !x.text.contains("policy restart: restart #1")).collect::<Vec<_>>();
        after.iter().any(|x| x.text.contains("connectivity: heartbeat n=50 "))
    };
    m.wait_for("the restart and 50 beats after it", Duration::from_secs(120), done).unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();

    // Each start (boot, restart) brings vCPU 1 up on its own core.
    assert_eq!(count(&lines, "connectivity: vCPU 1 started"), 2, "{t}");
    assert_eq!(count(&lines, "connectivity: vCPU 1 starting on MPIDR 0x2"), 2, "{t}");
    // IRQ-004: one redistributor per vCPU, numbered as the vCPUs, the last marked.
    if gicv3 {
        assert_eq!(count(&lines, "connectivity: redistributor 0: affinity 0x0 last=false"), 2, "{t}");
        assert_eq!(count(&lines, "connectivity: redistributor 1: affinity 0x1 last=true"), 2, "{t}");
    }
    // CPU_ON beyond the partition, into another cluster, or for itself: refused.
    assert_eq!(count(&lines, "connectivity: CPU_ON mpidr 0x2 -> -2"), 2, "{t}");
    assert_eq!(count(&lines, "connectivity: CPU_ON mpidr 0x100 -> -2"), 2, "{t}");
    assert_eq!(count(&lines, "connectivity: CPU_ON mpidr 0x0 -> -4"), 2, "{t}");

    // vCPU 1 beats between reports, before the restart and after it (from zero: its
    // counter is in the reloaded image's BSS).
    let restart_at = lines.iter().position(|l| l.text.contains("policy restart: restart #1")).expect("restart");
    let before = vcpu1_reports(&lines[..restart_at]);
    let after = vcpu1_reports(&lines[restart_at..]);
    println!("vcpu 1 (beats, sgis): before the restart {before:?}, after {after:?}");
    assert!(before.last().is_some_and(|&(n, _)| n > 0), "{t}");
    assert!(after.len() >= 2 && after.windows(2).all(|w| w[1].0 > w[0].0), "{t}");
    assert!(after[0].0 <= 25 + 1, "vCPU 1 restarted from zero: {after:?}\n{t}");

    // IRQ-002: vCPU 0's SGI each beat reaches vCPU 1 (a few may coalesce or land
    // before vCPU 1 runs); those aimed past the partition are dropped and reported.
    for &(beats, sgis) in before.iter().chain(&after) {
        assert!(sgis + 3 >= beats && sgis <= beats + 3, "vCPU 1 took {sgis} SGIs in {beats} beats\n{t}");
    }
    assert!(count(&lines, "connectivity: SGI to vCPUs outside the partition ignored") >= 1, "{t}");

    // The critical monitor: one boot, no stall.
    assert_critical_kept_its_period(&lines, &t);
    let (median, worst) = jitter(&beats(&lines, "critical-monitor"), period_ticks(&lines));
    println!(
        "critical-monitor: heartbeat jitter beside a 2-vCPU partition with SGIs: median {median}, worst {worst} ticks"
    );
    assert_eq!(count(&lines, "did not leave its guest"), 0, "{t}");
}

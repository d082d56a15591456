//! An unmodified Debian Linux kernel as the connectivity partition (systems/qemu-virt.toml):
//! it boots to a shell with its two vCPUs, its own interrupts and timer; its agent
//! talks to the critical monitor over the channel; what it does to itself (a crash, a
//! reboot, a power-off, a read of the critical monitor's RAM) ends in its partition's
//! policy and it boots again; the critical monitor keeps its period throughout.
//! Requirement IDs are in docs/requirements.md.

use std::time::Duration;

use septum_system_tests::{artifacts, assert_critical_kept_its_period, beats, count, jitter, period_ticks, Beat};
use xtask::qemu::{field, EcgReplay, Launch, Line, Machine};

const LINUX: &str = "connectivity";
/// What the initramfs prints once userspace runs, with the number of CPUs online.
const USERSPACE: &str = "septum-linux: userspace up, ";
/// Wall-clock bound for one Linux boot under emulation (about 10 s on two host cores).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The default system (GICv3) and the same on a GICv2.
const GICV3: &str = "qemu-virt";
const GICV2: &str = "qemu-virt-gicv2";

/// Boots `system` and waits for Linux's userspace, which must have `cpus` CPUs online.
fn boot(system: &str, cpus: usize) -> Machine {
    boot_with(system, cpus, &Launch::default())
}

fn boot_with(system: &str, cpus: usize, launch: &Launch) -> Machine {
    let art = artifacts(system);
    let mut m = Machine::launch(&art, launch).expect("QEMU starts");
    m.wait_for("Linux userspace", BOOT_TIMEOUT, |l| count(l, USERSPACE) >= 1).unwrap_or_else(|e| panic!("{e}"));
    let t = m.transcript();
    assert_eq!(count(&m.lines(), &userspace(cpus)), 1, "Linux came up without all {cpus} vCPUs\n{t}");
    m
}

fn userspace(cpus: usize) -> String {
    format!("{USERSPACE}{cpus} cpus online")
}

fn shell(m: &mut Machine, command: &str, tag: &str, timeout: Duration) -> Vec<String> {
    septum_system_tests::shell(m, LINUX, command, tag, timeout)
}

/// The critical monitor's beats between the first line containing `from` and the
/// first line after it that is exactly `to` (a marker the shell printed, not the
/// typed command that names it).
fn beats_between(lines: &[Line], from: &str, to: &str) -> Vec<Beat> {
    let start = lines.iter().position(|l| l.text.contains(from)).unwrap_or(0);
    let end = lines.iter().skip(start).position(|l| l.text.trim_end() == to).map_or(lines.len(), |k| start + k);
    beats(&lines[start..end], "critical-monitor")
}

/// `/proc/interrupts`' row for `name` (its last column): the per-CPU counts.
fn interrupt_counts(out: &[String], name: &str) -> Option<Vec<u64>> {
    let row = out.iter().find(|l| l.trim_end().ends_with(name))?;
    let fields: Vec<&str> = row.split_whitespace().collect();
    Some(fields.iter().skip(1).take(2).filter_map(|f| f.parse().ok()).collect())
}

/// LNX-001, IRQ-001, IRQ-002, IRQ-003, IRQ-004, IRQ-005, PSCI-001: Linux reaches its shell with both vCPUs
/// online, its timer and IPIs arriving on both, `sleep 1` lasting a second by its own
/// clock; the critical monitor keeps its period while Linux boots and while both
/// vCPUs spin and exchange IPIs (jitter printed).
#[test]
fn linux_boots_to_a_shell_with_two_vcpus_beside_the_critical_monitor() {
    boots_to_a_shell(GICV3, "GICv3");
}

/// LNX-001, IRQ-006: the same with a GICv2 (QEMU virt, gic-version=2).
#[test]
fn linux_boots_to_a_shell_with_two_vcpus_beside_the_critical_monitor_on_gicv2() {
    boots_to_a_shell(GICV2, "GIC-0");
}

/// `irq_chip`: the chip name Linux gives its GIC in `/proc/interrupts`.
fn boots_to_a_shell(system: &str, irq_chip: &str) {
    let mut m = boot(system, 2);
    let cpus = shell(&mut m, "echo CPUS=$(grep -c ^processor /proc/cpuinfo)", "CPUINFO", Duration::from_secs(60));
    let t = m.transcript();
    assert!(cpus.iter().any(|l| l.trim_end() == "CPUS=2"), "two processors in /proc/cpuinfo\n{t}");

    let irqs = shell(&mut m, "cat /proc/interrupts", "IRQS", Duration::from_secs(60));
    let t = m.transcript();
    println!("Linux /proc/interrupts:\n{}", irqs.join("\n"));
    let timer = interrupt_counts(&irqs, "arch_timer").unwrap_or_else(|| panic!("no arch_timer row\n{t}"));
    assert!(timer.len() == 2 && timer.iter().all(|&n| n > 0), "timer interrupts on both vCPUs: {timer:?}\n{t}");
    let resched = interrupt_counts(&irqs, "Rescheduling interrupts").unwrap_or_else(|| panic!("no IPI row\n{t}"));
    assert!(resched.iter().sum::<u64>() > 0, "IPIs (SGIs) arrive: {resched:?}\n{t}");
    assert!(irqs.iter().any(|l| l.contains(irq_chip) && l.contains("pl011")), "its UART's SPI: {irqs:?}\n{t}");

    let slept = shell(&mut m, "cat /proc/uptime; sleep 1; cat /proc/uptime", "SLEPT", Duration::from_secs(60));
    let t = m.transcript();
    let uptimes: Vec<f64> = slept.iter().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert!(uptimes.len() >= 2, "two uptimes: {slept:?}\n{t}");
    let took = uptimes[uptimes.len() - 1] - uptimes[uptimes.len() - 2];
    println!("Linux: `sleep 1` took {took:.2} s by the guest's clock");
    assert!((0.95..1.5).contains(&took), "sleep 1 took {took} s\n{t}");

    // Stress, for ten seconds of the guest's time: a busy loop per vCPU, a fork/exec
    // loop, and a task moved from vCPU to vCPU as fast as the shell can (each move is
    // a migration: rescheduling and function-call IPIs, i.e. SGIs).
    let stress = "for c in 0 1; do taskset -c $c sh -c 'while :; do :; done' & done; \
                  sh -c 'while :; do /bin/true; done' & sh -c 'while :; do :; done' & m=$!; \
                  sh -c \"while :; do taskset -p 1 $m; taskset -p 2 $m; done >/dev/null\" & \
                  echo STRESS-$((0)); sleep 10; kill $(jobs -p); wait 2>/dev/null; \
                  echo STRESS-$((9)); cat /proc/interrupts";
    let out = shell(&mut m, stress, "STRESSED", Duration::from_secs(240));
    let lines = m.lines();
    let t = m.transcript();
    assert!(out.iter().any(|l| l.trim_end() == "STRESS-9"), "{t}");
    let ipis = |out: &[String]| {
        ["Rescheduling interrupts", "Function call interrupts"]
            .iter()
            .map(|n| interrupt_counts(out, n).unwrap_or_default().iter().sum::<u64>())
            .sum::<u64>()
    };
    println!("Linux IPIs (rescheduling + function call): {} before the stress, {} after", ipis(&irqs), ipis(&out));
    assert!(ipis(&out) > ipis(&irqs) + 100, "the stress made IPIs\n{t}");
    assert_eq!(count(&lines, "Unexpected interrupt"), 0, "{t}");
    assert_critical_kept_its_period(&lines, &t);
    let booting = beats_between(&lines, "connectivity: vCPU 0 starting", &userspace(2));
    let stressed = beats_between(&lines, "STRESS-0", "STRESS-9");
    assert!(stressed.len() >= 100, "the monitor beat through the stress: {} beats\n{t}", stressed.len());
    for (what, b) in [("while Linux boots", &booting), ("under the Linux stress", &stressed)] {
        let (median, worst) = jitter(b, period_ticks(&lines));
        println!(
            "{system}: critical-monitor: heartbeat jitter {what}: median {median}, worst {worst} ticks ({} beats)",
            b.len()
        );
    }
}

/// The agent's first line when it reaches the channel through the `septum_channel`
/// module's devices (LNX-004).
const THROUGH_DEVICES: &str = "septum-agent: channels vitals=consumer commands=producer (mapped through /dev/septum)";

/// LNX-003, LNX-004: the agent, a Linux process mapping the channel through the
/// `septum_channel` module's devices, and the critical monitor exchange thousands of
/// messages each way with nothing lost, duplicated or reordered; the agent's doorbell
/// is a trapped MMIO write (made by the module), the monitor's an interrupt it sleeps
/// on.
#[test]
fn agent_and_critical_monitor_exchange_thousands_of_messages_each_way() {
    exchange(GICV3, 2);
}

/// LNX-003, IRQ-006: the same with a GICv2.
#[test]
fn agent_and_critical_monitor_exchange_thousands_of_messages_each_way_on_gicv2() {
    exchange(GICV2, 2);
}

fn exchange(system: &str, cpus: usize) -> Machine {
    // No recording: the critical monitor exercises the channel as fast as it goes.
    let mut m = boot_with(system, cpus, &Launch { ecg: EcgReplay::Absent, ..Launch::default() });
    let enough = |l: &[Line]| {
        let agent = l.iter().rev().find(|x| x.text.starts_with("septum-agent: vitals received="));
        let monitor = l.iter().rev().find(|x| x.text.contains("critical-monitor: commands received="));
        agent.and_then(|a| field(&a.text, "received")).is_some_and(|n| n >= 1000)
            && monitor.and_then(|c| field(&c.text, "received")).is_some_and(|n| n >= 1000)
    };
    m.wait_for("1,000 messages each way", Duration::from_secs(120), enough).unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    assert_eq!(count(&lines, THROUGH_DEVICES), 1, "{t}");
    let agent = lines.iter().rev().find(|x| x.text.starts_with("septum-agent: vitals received=")).expect("report");
    let monitor = lines.iter().rev().find(|x| x.text.contains("critical-monitor: commands received=")).expect("report");
    println!("{}\n{}", agent.text, monitor.text);
    for key in ["gaps", "out_of_order"] {
        assert_eq!(field(&agent.text, key), Some(0), "vitals {key}\n{t}");
        assert_eq!(field(&monitor.text, key), Some(0), "commands {key}\n{t}");
    }
    assert_eq!(field(&monitor.text, "rejected"), Some(0), "{t}");
    assert_eq!(field(&monitor.text, "peer_restarts"), Some(0), "{t}");
    // Each record the agent took has the monitor's numbering: first..=last, no gap.
    let (first, last, got) = (field(&agent.text, "first"), field(&agent.text, "last"), field(&agent.text, "received"));
    assert_eq!(last.zip(first).map(|(l, f)| l - f + 1), got, "{t}");
    assert_critical_kept_its_period(&lines, &t);
    m
}

/// One `SNAP` line of [`agent_sleeps_until_its_doorbell_interrupt`]: the guest's uptime
/// (s), the agent's user and system CPU time (ticks), its voluntary context switches
/// (each a sleep) and the vitals doorbell interrupts Linux has taken.
#[derive(Clone, Copy, Debug)]
struct Snap {
    uptime: f64,
    cpu_ticks: u64,
    sleeps: u64,
    doorbells: u64,
}

fn snaps(out: &[String]) -> Vec<Snap> {
    out.iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim_end().strip_prefix("SNAP ")?.split_whitespace().collect();
            let n = |i: usize| f.get(i)?.parse::<u64>().ok();
            (f.len() == 5).then_some(())?;
            Some(Snap { uptime: f[0].parse().ok()?, cpu_ticks: n(1)? + n(2)?, sleeps: n(3)?, doorbells: n(4)? })
        })
        .collect()
}

/// LNX-004: with the `septum_channel` module loaded, the agent uses its devices (its
/// first line says so; `/dev/septum/vitals` and `/dev/septum/commands` exist), the
/// vitals doorbell interrupt reaches Linux (its `/proc/interrupts` row rises), and the
/// agent sleeps between doorbells instead of polling: over 8 s of the guest's time, it
/// goes to sleep at most about twice per doorbell (a wake for the interrupt, and one
/// for a ring it held back) plus its reports, where back-off polling sleeps at least
/// 50 times a second whatever arrives; and it uses under half a CPU (a busy loop
/// would take all of one, whatever the host's speed); the module's claim keeps
/// `/dev/mem` away from the channel's memory (`STRICT_DEVMEM` with
/// `IO_STRICT_DEVMEM`). LNX-003: once the agent is
/// stopped and the module removed (`rmmod`: its unload path), a new agent falls back to
/// `/dev/mem` and takes records again, polling: it goes to sleep more often than the
/// agent woken by the doorbell (measured: 1,908 against 257 sleeps in 8 s).
#[test]
fn agent_sleeps_until_its_doorbell_interrupt() {
    let mut m = boot(GICV3, 2);
    m.wait_for("the agent's first report", Duration::from_secs(60), |l| {
        count(l, "septum-agent: vitals received=") >= 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let snap = "S() { echo \"SNAP $(cut -d' ' -f1 /proc/uptime) $(cut -d' ' -f14,15 /proc/$P/stat) \
                $(awk '/^voluntary_ctxt_switches/ {print $2}' /proc/$P/status) \
                $(awk '/septum-vitals/ {n = $2 + $3} END {print n + 0}' /proc/interrupts)\"; }";
    // Maps the vitals producer region (systems/qemu-virt.toml: ipa 0x7000_0000) through
    // /dev/mem and reads its first word (busybox `devmem`: mmap with O_SYNC).
    let devmem = "devmem 0x70000000 32 >/dev/null 2>&1; echo DEVMEM-$?";
    let command = format!("ls -1 /dev/septum; {devmem}; P=$(pidof septum-agent); {snap}; S; sleep 8; S");
    let out = shell(&mut m, &command, "SLEPT", Duration::from_secs(120));
    let lines = m.lines();
    let t = m.transcript();
    assert_eq!(count(&lines, THROUGH_DEVICES), 1, "{t}");
    assert!(out.iter().any(|l| l.trim_end() == "commands") && out.iter().any(|l| l.trim_end() == "vitals"), "{t}");
    let s = snaps(&out);
    assert_eq!(s.len(), 2, "two snapshots: {out:?}\n{t}");
    let (secs, cpu, sleeps, doorbells) = (
        s[1].uptime - s[0].uptime,
        s[1].cpu_ticks - s[0].cpu_ticks,
        s[1].sleeps - s[0].sleeps,
        s[1].doorbells - s[0].doorbells,
    );
    // USER_HZ: 100 ticks a second.
    let share = cpu as f64 / 100.0 / secs;
    println!(
        "septum-agent over {secs:.1} s: {doorbells} vitals doorbells, {sleeps} sleeps, CPU {:.1}% ({cpu} ticks)",
        share * 100.0
    );
    assert!(doorbells > 0, "the vitals doorbell interrupt reaches Linux\n{t}");
    assert!(out.iter().any(|l| l.trim_end() == "DEVMEM-1"), "the module's claim keeps /dev/mem out\n{t}");
    let bound = 2 * doorbells + (3.0 * secs) as u64 + 20;
    assert!(sleeps <= bound, "{sleeps} sleeps for {doorbells} doorbells in {secs:.1} s (at most {bound})\n{t}");
    assert!(share < 0.5, "the agent took {:.0}% of a CPU\n{t}", share * 100.0);

    // Without the module: /dev/mem and polling.
    let fallback = format!(
        "kill $P; while [ -d /proc/$P ]; do sleep 0.1; done; rmmod septum_channel && echo RMMOD-$((1)); {devmem}; \
         /bin/septum-agent >/dev/console 2>&1 & P=$!; sleep 3; S; sleep 8; S"
    );
    let out = shell(&mut m, &fallback, "POLLED", Duration::from_secs(120));
    let lines = m.lines();
    let t = m.transcript();
    assert!(out.iter().any(|l| l.trim_end() == "RMMOD-1"), "the module unloads\n{t}");
    assert!(out.iter().any(|l| l.trim_end() == "DEVMEM-0"), "released, the region is /dev/mem's again\n{t}");
    let polled =
        lines.iter().position(|l| l.text.contains("(mapped through /dev/mem)")).expect("the fallback's first line");
    let received = lines[polled..]
        .iter()
        .filter(|l| l.text.starts_with("septum-agent: vitals received="))
        .filter_map(|l| field(&l.text, "received"))
        .max();
    assert!(received.is_some_and(|n| n > 0), "the fallback takes records: {received:?}\n{t}");
    let s = snaps(&out);
    assert_eq!(s.len(), 2, "two snapshots: {out:?}\n{t}");
    let asleep = sleeps;
    let (secs, cpu, sleeps) = (s[1].uptime - s[0].uptime, s[1].cpu_ticks - s[0].cpu_ticks, s[1].sleeps - s[0].sleeps);
    println!(
        "septum-agent through /dev/mem over {secs:.1} s: {sleeps} sleeps, CPU {:.1}% ({cpu} ticks)",
        cpu as f64 / secs
    );
    // Back-off polling sleeps at most 20 ms at a time: 50 times a second or more.
    assert!(sleeps > asleep, "polling ({sleeps} sleeps) wakes more often than the doorbell ({asleep})\n{t}");
    assert_critical_kept_its_period(&lines, &t);
}

/// Types `command` into Linux's shell and waits until Linux is back in userspace after
/// its partition's policy restarted it; returns the lines, checking that the
/// hypervisor logged `cause` and a restart, and that the critical monitor kept its
/// period throughout.
fn contained(command: &str, cause: &str) {
    contained_on(boot(GICV3, 2), 2, command, cause);
}

fn contained_on(mut m: Machine, cpus: usize, command: &str, cause: &str) {
    m.send(LINUX, &format!("{command}\n")).expect("typing");
    m.wait_for("Linux to boot again", BOOT_TIMEOUT, |l| count(l, USERSPACE) >= 2).unwrap_or_else(|e| panic!("{e}"));
    // Its shell answers again.
    let again = shell(&mut m, "echo CPUS=$(grep -c ^processor /proc/cpuinfo)", "AGAIN", Duration::from_secs(60));
    let lines = m.lines();
    let t = m.transcript();
    assert!(again.iter().any(|l| l.trim_end() == format!("CPUS={cpus}")), "{t}");
    assert_eq!(count(&lines, &userspace(cpus)), 2, "{t}");
    let stop = lines.iter().position(|l| l.console == "hypervisor" && l.text.contains(cause));
    let stop = stop.unwrap_or_else(|| panic!("the hypervisor logged no \"{cause}\"\n{t}"));
    let restart = lines.iter().skip(stop).position(|l| l.text.contains("connectivity: policy restart: restart #1"));
    assert!(restart.is_some(), "restarted by its policy after \"{cause}\"\n{t}");
    assert_critical_kept_its_period(&lines, &t);
    let (median, worst) = jitter(&beats(&lines, "critical-monitor"), period_ticks(&lines));
    println!("`{command}`: contained; critical-monitor jitter median {median}, worst {worst} ticks");
}

/// LNX-002: a kernel crash (sysrq `c`; `panic=1` turns the panic into PSCI SYSTEM_RESET)
/// restarts the partition; Linux boots again; the critical monitor never stalls.
#[test]
fn linux_kernel_crash_restarts_the_partition() {
    contained("echo c > /proc/sysrq-trigger", "connectivity: asked for PSCI SYSTEM_RESET");
}

/// LNX-002: `reboot` (PSCI SYSTEM_RESET) restarts the partition, never the board.
#[test]
fn linux_reboot_restarts_the_partition_not_the_board() {
    contained("reboot", "connectivity: asked for PSCI SYSTEM_RESET");
}

/// LNX-002: `poweroff` (PSCI SYSTEM_OFF) goes to the partition's policy, never the board.
#[test]
fn linux_poweroff_goes_to_the_partition_policy_not_the_board() {
    contained("poweroff", "connectivity: asked for PSCI SYSTEM_OFF");
}

/// LNX-002, ISO-004: root reading the critical monitor's RAM through `/dev/mem` faults at
/// stage 2; the partition restarts; nothing of the monitor's is read.
#[test]
fn linux_root_reading_critical_ram_through_dev_mem_is_contained() {
    contained("devmem 0x50000000 32", "connectivity: FAULT");
}

/// BOARD-001, LNX-001, LNX-002, LNX-003 on `system`'s board: Linux reaches userspace
/// with its `cpus` vCPUs, its agent and the critical monitor exchange thousands of
/// messages, the critical monitor beats at least 200 times without a stall, and a
/// kernel crash restarts the partition only. Prints how long the board took.
fn board(system: &str, cpus: usize) {
    let started = std::time::Instant::now();
    let mut m = exchange(system, cpus);
    let booted = m.lines().iter().find(|l| l.text.contains(USERSPACE)).map(|l| l.at).unwrap_or_default();
    let shown = shell(&mut m, "echo CPUS=$(grep -c ^processor /proc/cpuinfo)", "CPUINFO", Duration::from_secs(60));
    let t = m.transcript();
    assert!(shown.iter().any(|l| l.trim_end() == format!("CPUS={cpus}")), "{cpus} processors in /proc/cpuinfo\n{t}");
    m.wait_for("200 critical beats", Duration::from_secs(120), |l| beats(l, "critical-monitor").len() >= 200)
        .unwrap_or_else(|e| panic!("{e}"));
    contained_on(m, cpus, "echo c > /proc/sysrq-trigger", "connectivity: asked for PSCI SYSTEM_RESET");
    println!(
        "{system}: Linux userspace {:.1} s after QEMU started; board test took {:.1} s",
        booted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// BOARD-001 on the Raspberry Pi 4 (QEMU raspi4b: firmware-style EL2 entry, cores 1
/// and 2 released from the spin table, GIC-400).
#[test]
fn linux_and_the_critical_monitor_on_rpi4() {
    board("rpi4", 3);
}

/// BOARD-001 on the i.MX 8M Plus EVK (QEMU imx8mp-evk: EL2 entry, PSCI CPU_ON, GICv3,
/// quirk virq-unwired).
#[test]
fn linux_and_the_critical_monitor_on_imx8mp_evk() {
    board("imx8mp-evk", 3);
}

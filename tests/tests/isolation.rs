//! Attack tests: the connectivity partition reads critical-monitor RAM, writes the
//! critical monitor's UART, enables the critical monitor's interrupt in the GIC
//! distributor it sees (ignored, then a reset request), sends an SGI to the critical
//! monitor's core (dropped, then a reset request), issues SMC and PSCI SYSTEM_RESET, writes a trapped register,
//! executes an undefined instruction and writes the hypervisor's flash bank. Each must be contained, logged
//! with a decoded reason and answered by its restart policy, with a pristine reload;
//! the critical monitor must keep its beat throughout.

use std::time::Duration;

use septum_system_tests::{
    artifacts, assert_critical_kept_its_period, beats, count, jitter, period_ticks, timer_interrupt_reports,
    TIMER_REPORT_EVERY,
};
use xtask::qemu::{Entry, Launch, Line, Machine};

const ATTACKS: usize = 9;

/// What the hypervisor log must say about each attack, in order, after the two whose
/// addresses depend on the board (the victim's RAM and UART).
const EXPECTED: [&str; ATTACKS - 2] = [
    // IRQ-003: the distributor it sees shows its own interrupts only.
    "connectivity: GIC distributor: write at offset 0x104 outside its interrupts ignored",
    // IRQ-002: SGIs can only reach the partition's own vCPUs.
    "connectivity: SGI to vCPUs outside the partition ignored",
    "connectivity: FAULT forbidden SMC: function 0x84000009",
    "connectivity: asked for PSCI SYSTEM_RESET; applying its policy",
    "trapped system register or instruction: MSR ACTLR_EL1 from",
    // UDF is taken at the guest's own EL1; with no vectors it then fetches from
    // VBAR_EL1 + 0x200 = IPA 0x200, which its stage 2 does not map.
    "connectivity: FAULT instruction fetch outside its memory map: fetch at IPA 0x200",
    // TRUST-007: the flash bank holding the counters and the audit log.
    "connectivity: FAULT access outside its memory map: write at IPA 0x4000000",
];

/// The attacks' victims: the critical monitor's RAM and UART, as the attack system's
/// `victim` and `victim_uart` name them.
struct Victim {
    ram: u64,
    uart: u64,
}

const QEMU_VIRT: Victim = Victim { ram: 0x5000_0000, uart: 0x0900_0000 };

fn judge(system: &str, entry: Entry, victim: Victim) {
    let art = artifacts(system);
    let expected: Vec<String> = [
        format!("connectivity: FAULT access outside its memory map: read at IPA {:#x}", victim.ram),
        format!("connectivity: FAULT access outside its memory map: write at IPA {:#x}", victim.uart),
    ]
    .into_iter()
    .chain(EXPECTED.iter().map(|s| s.to_string()))
    .collect();
    let mut m = Machine::launch(&art, &Launch { entry, ..Launch::default() }).expect("QEMU starts");
    let done = |l: &[Line]| {
        let after_last = l.iter().skip_while(|x| !x.text.contains(&format!("restarts {ATTACKS})"))).collect::<Vec<_>>();
        after_last.iter().any(|x| x.text.contains("connectivity: heartbeat n=20 "))
    };
    m.wait_for("all nine attacks and 20 beats after the last restart", Duration::from_secs(120), done)
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();

    // ISO-002..ISO-005, ISO-007, HM-001: each attack is contained and logged with its reason,
    // with the decoded syndrome for the faults.
    let mut last = 0;
    for (k, expected) in expected.iter().enumerate() {
        let at = last
            + lines[last..]
                .iter()
                .position(|l| l.text.contains(expected))
                .unwrap_or_else(|| panic!("attack {k}: no `{expected}` after the previous one\n{t}"));
        last = at + 1;
        let restart = format!("connectivity: policy restart: restart #{}", k + 1);
        assert!(lines[at..].iter().any(|l| l.text.contains(&restart)), "no `{restart}`\n{t}");
    }
    // The GIC, SGI and PSCI-reset steps are not faults; every other one carries its ESR.
    assert_eq!(count(&lines, "ESR 0x"), ATTACKS - 3, "each fault carries its decoded ESR\n{t}");
    assert!(count(&lines, "EC=0x24 data abort from the partition") >= 3, "{t}");
    assert!(count(&lines, "EC=0x17 SMC") == 1, "{t}");
    assert!(count(&lines, "MSR ICC_SGI1R_EL1") == 0, "an SGI write is emulated, never a fault\n{t}");
    assert_eq!(count(&lines, "asked for PSCI SYSTEM_RESET"), 3, "{t}");
    assert!(count(&lines, "EC=0x18 trapped system register or instruction: MSR ACTLR_EL1") == 1, "{t}");
    assert!(count(&lines, "EC=0x20 instruction abort from the partition") == 1, "{t}");
    assert_eq!(count(&lines, "NOT CONTAINED"), 0, "an attack went through\n{t}");
    // TRUST-007: this system does not grant connectivity the audit export.
    assert_eq!(count(&lines, "connectivity: audit export: not granted"), ATTACKS + 1, "{t}");

    // HM-002: restart is real: markers written before each fault are gone after it.
    assert_eq!(count(&lines, "connectivity: markers written"), ATTACKS, "{t}");
    assert_eq!(count(&lines, "connectivity: ram check"), ATTACKS + 1, "{t}");
    assert_eq!(count(&lines, "(pristine)"), ATTACKS + 1, "a restart left state behind\n{t}");
    assert_eq!(count(&lines, "data=0x5eb7da7a bss=0x0 free=0x0 (pristine)"), ATTACKS + 1, "{t}");

    // ISO-006: the critical monitor never noticed: one boot, no missing beat, no stall.
    assert_eq!(count(&lines, "SAFE STATE"), 0, "{t}");
    let crit = beats(&lines, "critical-monitor");
    assert!(crit.windows(2).all(|w| w[1].n == w[0].n + 1), "critical-monitor skipped a beat\n{t}");
    let gap = assert_critical_kept_its_period(&lines, &t);
    let period = period_ticks(&lines);
    println!(
        "{system} ({entry:?}): {} critical-monitor beats across {ATTACKS} attacks; largest gap {gap} ticks ({:.2} periods)",
        crit.len(),
        gap as f64 / period as f64
    );
    let (median, worst) = jitter(&crit, period);
    println!("{system} ({entry:?}): critical-monitor heartbeat jitter under attack: median {median} ticks, worst {worst} ticks");

    // IRQ-001: with no channel work, the critical monitor sleeps between beats and its
    // virtual timer's interrupt wakes it for each one, attacks or not.
    let irqs = timer_interrupt_reports(&lines);
    assert!(!irqs.is_empty(), "{t}");
    for (k, &n) in irqs.iter().enumerate() {
        let by = TIMER_REPORT_EVERY * (k as u64 + 1);
        assert!(n + 1 >= by, "only {n} of {by} beats woken by the timer interrupt\n{t}");
    }
}

/// ISO-002..ISO-007, HM-001, HM-002, IRQ-001, TRUST-007, entered at EL2.
#[test]
fn connectivity_attacks_are_contained_and_critical_keeps_time() {
    judge("tests/systems/attacks.toml", Entry::El2, QEMU_VIRT);
}

/// BOOT-001, BOOT-004 and the above, entered at EL3 (judged through the hypervisor log, where the
/// UART-less connectivity partition's lines appear).
#[test]
fn connectivity_attacks_are_contained_when_entered_at_el3() {
    judge("tests/systems/attacks-el3.toml", Entry::El3, QEMU_VIRT);
}

/// The same attacks on the Raspberry Pi 4 (QEMU raspi4b: GIC-400, spin-table start).
#[test]
fn connectivity_attacks_are_contained_on_rpi4() {
    judge("tests/systems/attacks-rpi4.toml", Entry::El2, Victim { ram: 0x1000_0000, uart: 0xFE21_5040 });
}

/// The same attacks on the i.MX 8M Plus EVK (QEMU imx8mp-evk: GICv3, quirk virq-unwired).
#[test]
fn connectivity_attacks_are_contained_on_imx8mp_evk() {
    judge("tests/systems/attacks-imx8mp-evk.toml", Entry::El2, Victim { ram: 0x5000_0000, uart: 0x3089_0000 });
}

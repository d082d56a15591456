//! Hostile modes that race the hypervisor's power handling (PSCI-002) or flood its log
//! (LOG-003), chosen by `race=` in the boot arguments. Both need three vCPUs.
//!
//! `race=cpu-on` `race_rounds=N`: one round per boot, until the partition has been
//! restarted N times. vCPU 0 starts vCPU 2, which sleeps, and vCPU 1, which calls PSCI
//! `CPU_ON` for vCPUs 0 and 2 in a tight loop, at [`escape_entry`], and then faults
//! itself: its policy stops the partition while vCPU 1 is likely inside EL2 with a
//! `CPU_ON`. Before PSCI-002 such a call could start a vCPU of the stopped partition:
//! during its reload (and so patch the image after its hash was checked), or after a
//! halt. An escaped vCPU writes a marker into the last word of the partition's RAM
//! (which the next boot's RAM check reports) and says `ESCAPED` in the hypervisor's
//! log.
//!
//! `race=flood`: vCPU 1 starts vCPU 2 again and again, and vCPU 2 turns itself off at
//! once ([`off_entry`]); vCPU 0 sends itself more SGIs than there are list registers,
//! never acknowledges them, arms its timer, and spins. Before LOG-003 every start and
//! every `CPU_OFF` wrote a log line, and the timer's interrupt, finding no free list
//! register, was dropped, fired again at once and logged an error each time.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use septum_abi::hypercall::psci;
use septum_guest::{counter, counter_hz, hvc, smp, Boot};

/// The last word of the partition's RAM, for the escape entry's marker.
static FREE_WORD: AtomicU64 = AtomicU64::new(0);
/// What the secondaries do (by vCPU: 1 races or floods, 2 sleeps).
static FLOOD: AtomicU64 = AtomicU64::new(0);
/// vCPU 2 has started (legitimately) and sleeps.
static SLEEPER_UP: AtomicU64 = AtomicU64::new(0);
/// vCPU 1 has started racing.
static RACER_UP: AtomicU64 = AtomicU64::new(0);

extern "C" {
    /// Where a `CPU_ON` of the racer lands: no stack, no statics (the partition's memory
    /// may be being reloaded). `x0`: the address of the marker word.
    fn escape_entry();
    /// Where the flood's `CPU_ON` lands: PSCI `CPU_OFF` at once.
    fn off_entry();
}

core::arch::global_asm!(
    r#"
.section .text
.global escape_entry
escape_entry:
    ldr     x1, ={marker}
    str     x1, [x0]
    ldr     x0, ={console_write}
    mov     x1, #9
    ldr     x2, ={escaped}
    mov     x3, #10
    hvc     #0
1:  wfi
    b       1b

.global off_entry
off_entry:
    ldr     x0, ={cpu_off}
    hvc     #0
2:  wfi
    b       2b
"#,
    marker = const ESCAPE_MARKER,
    console_write = const septum_abi::hypercall::CONSOLE_WRITE,
    escaped = const u64::from_le_bytes(*b"ESCAPED!"),
    cpu_off = const psci::CPU_OFF,
);

/// What an escaped vCPU leaves in the last word of RAM.
pub const ESCAPE_MARKER: u64 = 0xE5CA_9ED0_E5CA_9ED0;

/// Runs the mode `mode` (never returns), or returns at once if there is none.
pub fn run(boot: &mut Boot, mode: &str, free_word: u64) {
    FREE_WORD.store(free_word, Ordering::Relaxed);
    match mode {
        "cpu-on" => cpu_on_race(boot),
        "flood" => flood(boot),
        _ => {}
    }
}

fn cpu_on_race(boot: &mut Boot) {
    let rounds = boot.arg_u64("race_rounds").unwrap_or(1000);
    if boot.restarts >= rounds {
        let _ = writeln!(boot.console, "connectivity: race done after {} rounds", boot.restarts);
        return;
    }
    if boot.restarts.is_multiple_of(100) {
        let _ = writeln!(boot.console, "connectivity: race round {}", boot.restarts);
    }
    if smp::start(2, secondary).is_err() || !wait_for(&SLEEPER_UP) {
        let _ = writeln!(boot.console, "connectivity: race: vCPU 2 NOT started");
    }
    if smp::start(1, secondary).is_err() || !wait_for(&RACER_UP) {
        let _ = writeln!(boot.console, "connectivity: race: vCPU 1 NOT started");
    }
    // A few microseconds more or less each round, so the fault meets the racer's calls
    // at every point of their way through EL2.
    let spin = (counter() ^ boot.restarts.wrapping_mul(0x9E37_79B9)) % 4096;
    for _ in 0..spin {
        core::hint::spin_loop();
    }
    // SAFETY: a read outside our RAM: a stage-2 fault, which stops the partition.
    unsafe { core::ptr::read_volatile(boot.arg_u64("victim").unwrap_or(0x5000_0000) as *const u64) };
}

fn flood(boot: &mut Boot) -> ! {
    FLOOD.store(1, Ordering::Relaxed);
    if smp::start(1, secondary).is_err() {
        let _ = writeln!(boot.console, "connectivity: flood: vCPU 1 NOT started");
    }
    // More SGIs to itself than the list registers hold, never acknowledged (the guest
    // keeps IRQs masked and never reads its IAR); then its timer.
    for intid in 1..8 {
        smp::send_sgi(intid, 1, 0);
    }
    // SAFETY: programs this vCPU's own virtual timer to fire at once.
    unsafe {
        core::arch::asm!("msr cntv_cval_el0, {d}", "msr cntv_ctl_el0, {en}", "isb", d = in(reg) counter(), en = in(reg) 1u64)
    };
    let _ = writeln!(boot.console, "connectivity: flood started");
    let mut next = counter();
    let mut n = 0u64;
    loop {
        if counter() >= next {
            let _ = writeln!(boot.console, "connectivity: flooding n={n}");
            n += 1;
            next += counter_hz();
        }
        core::hint::spin_loop();
    }
}

/// Waits (bounded, 100 ms) for a secondary to say it is up.
fn wait_for(flag: &AtomicU64) -> bool {
    let deadline = counter() + counter_hz() / 10;
    while flag.load(Ordering::Acquire) == 0 {
        if counter() > deadline {
            return false;
        }
        // The secondary signals an event once its flag is set (and under an emulator's
        // round-robin scheduling, WFE lets it run).
        // SAFETY: waits for an event; no memory is touched.
        unsafe { core::arch::asm!("wfe", options(nostack)) };
    }
    true
}

/// Sets a secondary's "up" flag and signals the event vCPU 0 waits for.
fn up(flag: &AtomicU64) {
    flag.store(1, Ordering::Release);
    // SAFETY: makes the store visible, then signals an event; no memory is touched.
    unsafe { core::arch::asm!("dsb ish", "sev", options(nostack)) };
}

fn secondary(vcpu: usize) -> ! {
    let free_word = FREE_WORD.load(Ordering::Relaxed);
    let entry = |f: unsafe extern "C" fn()| f as *const () as u64;
    match (vcpu, FLOOD.load(Ordering::Relaxed) != 0) {
        (1, false) => {
            up(&RACER_UP);
            loop {
                for target in [0, 2] {
                    hvc(psci::CPU_ON_64, [target, entry(escape_entry), free_word, 0, 0, 0, 0]);
                }
            }
        }
        (1, true) => loop {
            hvc(psci::CPU_ON_64, [2, entry(off_entry), 0, 0, 0, 0, 0]);
        },
        _ => {
            up(&SLEEPER_UP);
            loop {
                // SAFETY: waits for an interrupt; nothing is enabled to deliver one.
                unsafe { core::arch::asm!("wfi", options(nostack)) };
            }
        }
    }
}

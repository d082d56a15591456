//! The connectivity partition's bare-metal stand-in. It heartbeats like the critical
//! monitor and, when its boot arguments say `attacks=a,b,...`, plays the hostile side:
//! after `attack_after` beats it performs attack number k, where k is how many times it
//! has been restarted, so each restart moves on to the next attack. Before each attack
//! it writes markers into its data, BSS and free RAM; after a restart it reports them,
//! proving the restart reloaded a pristine image into zeroed RAM.
//!
//! At each start it also reads the newest audit records through the hypervisor's
//! read-only export and checks them as the server it would upload them to does.
#![no_std]
#![no_main]

mod bench;
mod dma;
mod leftovers;
mod races;

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use septum_guest::channel::queuing::RecvError;
use septum_guest::channel::Shared;
use septum_guest::smp;
use septum_guest::{audit, counter, hvc, vtimer, Boot, Console, Heartbeat};
use septum_trust::audit::Record;

const DATA_PRISTINE: u64 = 0x5EB7_DA7A;
const MARKER: u64 = 0xDEAD_BEEF;
static DATA_MARKER: AtomicU64 = AtomicU64::new(DATA_PRISTINE);
static BSS_MARKER: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
fn partition_main(mut boot: Boot) -> ! {
    let period_ms = boot.arg_u64("heartbeat_ms").unwrap_or(20).max(1);
    let free_word = (boot.ram.0 + boot.ram.1 - 8) as *mut u64;
    // SAFETY: the last word of our RAM, above the image, stack and device tree.
    let free = unsafe { core::ptr::read_volatile(free_word) };
    let _ = writeln!(
        boot.console,
        "connectivity: boot ({:?}, restarts {}), heartbeat every {period_ms} ms",
        boot.start, boot.restarts
    );
    let _ = writeln!(
        boot.console,
        "connectivity: ram check data={:#x} bss={:#x} free={:#x} ({})",
        DATA_MARKER.load(Ordering::Relaxed),
        BSS_MARKER.load(Ordering::Relaxed),
        free,
        if DATA_MARKER.load(Ordering::Relaxed) == DATA_PRISTINE && BSS_MARKER.load(Ordering::Relaxed) == 0 && free == 0
        {
            "pristine"
        } else {
            "NOT pristine"
        }
    );
    if let Some(mode) = boot.arg("race") {
        races::run(&mut boot, mode, free_word as u64);
    }
    if boot.arg("bench") == Some("channel") {
        bench::channel(&mut boot);
    }
    if boot.arg("bench") == Some("1") {
        bench::run(&mut boot.console, boot.vcpus, boot.gicd);
    }
    start_secondaries(&mut boot.console, boot.vcpus, period_ms);
    uart_interrupt_check(&mut boot);
    if let Some(gicr) = boot.gicr {
        for k in 0..boot.vcpus {
            let (affinity, last) = septum_guest::gicd::redistributor_typer(gicr, k);
            let _ = writeln!(boot.console, "connectivity: redistributor {k}: affinity {affinity:#x} last={last}");
        }
    }
    let export_max = boot.arg_u64("audit_export").unwrap_or(32) as u32;
    export_audit(&mut boot.console, export_max);
    if boot.arg("attacks").is_some_and(|list| list.split(',').any(|a| a == "leftovers")) {
        leftovers::report(&mut boot.console);
    }
    let attack = boot.arg("attacks").and_then(|list| list.split(',').nth(boot.restarts as usize));
    let attack_after = boot.arg_u64("attack_after").unwrap_or(10);
    let victim = boot.arg_u64("victim").unwrap_or(0x5000_0000);
    // The critical monitor's UART (QEMU virt's UART0 unless the board puts it elsewhere).
    let victim_uart = boot.arg_u64("victim_uart").unwrap_or(0x0900_0000);
    let vitals_end = boot.channel("vitals");
    let commands_end = boot.channel("commands");
    let mut vitals = vitals_end.and_then(|c| c.consumer());
    let mut commands = commands_end.and_then(|c| c.producer());
    // Test hook: `hostile=scribble` makes this partition write random bytes over every
    // channel region it can write, as fast as it can, and flood its doorbells.
    let scribble = boot.arg("hostile") == Some("scribble");
    // Test hook: `hostile=forge` makes it also send, each beat, well-formed commands the
    // monitor must refuse (MED-006): to silence an alarm, change a limit, alter a
    // measurement (kinds no version defines), and an accepted kind with a bad argument.
    let forge = boot.arg("hostile") == Some("forge");
    let mut stream = Stream::default();
    let mut rng = counter() | 1;
    let mut buf = [0u8; 256];
    let mut beat = Heartbeat::new(period_ms);
    loop {
        let Some((n, cntvct)) = beat.poll() else {
            if scribble {
                for end in [vitals_end, commands_end].into_iter().flatten() {
                    if let Some(region) = end.own_region() {
                        rng = xorshift(rng);
                        let at = (rng as usize % region.size()) & !3;
                        region.write(at, &(rng >> 32).to_le_bytes()[..4]);
                    }
                    end.ring();
                }
            } else if let Some(rx) = vitals.as_mut() {
                let got = rx.recv(&mut buf);
                let empty = got == Err(RecvError::Empty);
                stream.take(got, &buf);
                if empty {
                    // Drained: idle until the producer's doorbell or the next beat.
                    beat.sleep();
                }
            } else {
                // Nothing to poll: idle until the next beat's timer interrupt.
                beat.sleep();
            }
            continue;
        };
        let _ = writeln!(boot.console, "connectivity: heartbeat n={n} cntvct={cntvct}");
        if boot.vcpus > 1 {
            // One SGI to every secondary each beat; and, each 25th, one aimed past the
            // partition (vCPUs it does not have, another cluster): the hypervisor drops it.
            let own = ((1u32 << boot.vcpus.min(16)) - 2) as u16;
            smp::send_sgi(BEAT_SGI, own, 0);
            if n.is_multiple_of(25) {
                smp::send_sgi(BEAT_SGI, !own & !1, 0);
                smp::send_sgi(BEAT_SGI, 1, 1);
            }
        }
        if boot.vcpus > 1 && n.is_multiple_of(25) {
            for (v, beats) in SECONDARY_BEATS.iter().enumerate().take(boot.vcpus).skip(1) {
                let sgis = SECONDARY_SGIS[v].load(Ordering::Relaxed);
                let _ = writeln!(
                    boot.console,
                    "connectivity: vcpu {v} beats={} sgis={sgis}",
                    beats.load(Ordering::Relaxed)
                );
            }
        }
        if vitals.is_some() && n.is_multiple_of(Stream::REPORT_EVERY) {
            stream.report(&mut boot.console);
        }
        if let (Some(tx), false) = (commands.as_mut(), scribble) {
            // A numbered `Ping`, the one command with no effect but a count.
            let ping = septum_vitals::Command::new(septum_vitals::CommandKind::Ping, 0, n);
            let _ = tx.send(zerocopy::IntoBytes::as_bytes(&ping));
            if forge {
                let mut forged = septum_vitals::Command::new(septum_vitals::CommandKind::UplinkState, 7, n);
                if let Some(kind) = FORGED_KINDS.get((n % 4) as usize) {
                    forged.kind = *kind;
                    forged.arg = 0.into();
                }
                if tx.send(zerocopy::IntoBytes::as_bytes(&forged)).is_ok() {
                    stream.forged += 1;
                }
            }
            if let Some(end) = commands_end {
                end.ring();
            }
        }
        if let Some(name) = attack.filter(|_| n == attack_after) {
            DATA_MARKER.store(MARKER, Ordering::Relaxed);
            BSS_MARKER.store(MARKER, Ordering::Relaxed);
            // SAFETY: as above, our own last word of RAM.
            unsafe { core::ptr::write_volatile(free_word, MARKER) };
            let _ = writeln!(boot.console, "connectivity: markers written; attack {name}");
            if name == "leftovers" {
                leftovers::dirty(&mut boot.console);
            }
            if let Some(at) =
                races::permission_fault_target(name, vitals_end.and_then(|c| c.peer), boot.arg_u64("own_uart"))
            {
                let _ = writeln!(boot.console, "connectivity: attack {name} at {at:#x}");
                races::permission_fault(name, at);
            }
            dma::attack(&mut boot, name);
            run_attack(name, victim, victim_uart);
            let _ = writeln!(boot.console, "connectivity: attack {name} returned: NOT CONTAINED");
        }
    }
}

/// Commands no version of `septum_vitals` defines, as a hostile connectivity would
/// forge them: silence an alarm, set a limit, overwrite a measurement.
const FORGED_KINDS: [u8; 3] = [0x10, 0x11, 0x12];

/// The receiving side of the vitals stream: checks that records arrive numbered one
/// after another; reported every [`Stream::REPORT_EVERY`] beats.
#[derive(Default)]
struct Stream {
    received: u64,
    first: Option<u64>,
    expected: Option<u64>,
    last: u64,
    gaps: u64,
    out_of_order: u64,
    /// Records by kind: beats, summaries, alarm events.
    beats: u64,
    summaries: u64,
    alarms: u64,
    /// Rhythm-strip pieces.
    strips: u64,
    /// Forged commands sent (`hostile=forge`).
    forged: u64,
}

impl Stream {
    const REPORT_EVERY: u64 = 50;

    fn take(&mut self, result: Result<usize, RecvError>, buf: &[u8]) {
        let Ok(len) = result else { return };
        // Any record the monitor sends (septum-vitals) carries its numbering.
        let Ok(record) = septum_vitals::Record::parse(buf.get(..len).unwrap_or(&[])) else { return };
        match record {
            septum_vitals::Record::Beat(_) => self.beats += 1,
            septum_vitals::Record::Summary(_) => self.summaries += 1,
            septum_vitals::Record::Alarm(_) => self.alarms += 1,
            septum_vitals::Record::Exercise(_) => {}
            septum_vitals::Record::Strip(_) => self.strips += 1,
        }
        let seq = record.header().seq.get();
        match self.expected {
            Some(e) if seq > e => self.gaps += seq - e,
            Some(e) if seq < e => self.out_of_order += 1,
            _ => {}
        }
        self.expected = Some(seq + 1);
        self.first.get_or_insert(seq);
        self.last = seq;
        self.received += 1;
    }

    fn report(&self, console: &mut Console) {
        let _ = writeln!(
            console,
            "connectivity: vitals received={} first={} last={} gaps={} out_of_order={} beats={} summaries={} \
             alarms={} strips={} forged={}",
            self.received,
            self.first.unwrap_or(0),
            self.last,
            self.gaps,
            self.out_of_order,
            self.beats,
            self.summaries,
            self.alarms,
            self.strips,
            self.forged
        );
    }
}

/// Shows its UART's interrupt reaching it through the emulated distributor: enables it
/// there, asks the UART to interrupt (its transmitter is always ready), sleeps until it
/// arrives, then quiets the UART.
fn uart_interrupt_check(boot: &mut Boot) {
    let (Some(gicd), Some(irq), Some(uart)) = (boot.gicd, boot.uart_irq, boot.console.uart()) else { return };
    septum_guest::gicd::enable(gicd, irq);
    let enabled = septum_guest::gicd::is_enabled(gicd, irq);
    uart.interrupt_when_writable();
    let mut taken = None;
    let deadline = counter() + septum_guest::counter_hz() / 10;
    while taken.is_none() && counter() < deadline {
        taken = vtimer::sleep_until(deadline).filter(|&i| i == irq);
    }
    uart.quiet();
    let _ = match taken {
        Some(i) => writeln!(boot.console, "connectivity: uart interrupt {i} taken (enabled={enabled})"),
        None => writeln!(boot.console, "connectivity: uart interrupt {irq} NOT taken (enabled={enabled})"),
    };
}

/// Beats each secondary vCPU counted (index: vCPU number).
static SECONDARY_BEATS: [AtomicU64; smp::MAX_SECONDARIES + 1] = [const { AtomicU64::new(0) }; smp::MAX_SECONDARIES + 1];
/// SGIs each secondary vCPU took.
static SECONDARY_SGIS: [AtomicU64; smp::MAX_SECONDARIES + 1] = [const { AtomicU64::new(0) }; smp::MAX_SECONDARIES + 1];
/// The SGI vCPU 0 sends its secondaries each beat.
const BEAT_SGI: u32 = 3;
/// The secondaries' heartbeat period.
static SECONDARY_PERIOD_MS: AtomicU64 = AtomicU64::new(50);

/// Starts every other vCPU of the partition (each counts beats of its own virtual
/// timer), and shows that CPU_ON cannot reach beyond the partition.
fn start_secondaries(console: &mut Console, vcpus: usize, period_ms: u64) {
    if vcpus < 2 {
        return;
    }
    SECONDARY_PERIOD_MS.store(period_ms, Ordering::Relaxed);
    for v in 1..vcpus.min(smp::MAX_SECONDARIES + 1) {
        match smp::start(v, secondary) {
            Ok(()) => writeln!(console, "connectivity: vCPU {v} started"),
            Err(e) => writeln!(console, "connectivity: vCPU {v} NOT started ({e})"),
        }
        .ok();
    }
    for target in [vcpus as u64, 0x100, 0] {
        let r = smp::cpu_on(target, 0).err().unwrap_or(0);
        let _ = writeln!(console, "connectivity: CPU_ON mpidr {target:#x} -> {r}");
    }
}

/// A secondary vCPU: beats on its own virtual timer, sleeping in between.
fn secondary(vcpu: usize) -> ! {
    let mut beat = Heartbeat::new(SECONDARY_PERIOD_MS.load(Ordering::Relaxed));
    loop {
        if beat.sleep() == Some(BEAT_SGI) {
            if let Some(s) = SECONDARY_SGIS.get(vcpu) {
                s.fetch_add(1, Ordering::Relaxed);
            }
        }
        if beat.poll().is_some() {
            if let Some(b) = SECONDARY_BEATS.get(vcpu) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads up to `max` of the newest audit log slots, newest first, and checks each
/// record's own hash and its link to the record before it: what an upload server does
/// with the copy. Reports one line, which says where the history begins when the copy
/// reaches record #0 (boot #1: a new or erased bank), and a boot count that falls (the
/// counters were reset: the history restarted).
fn export_audit(console: &mut Console, max: u32) {
    let Some(info) = audit::info() else {
        let _ = writeln!(console, "connectivity: audit export: not granted");
        return;
    };
    let (mut records, mut torn, mut broken, mut fell) = (0u32, 0u32, None, None);
    let (mut newest, mut oldest): (Option<Record>, Option<Record>) = (None, None);
    let mut slot = info.next_slot;
    for _ in 0..max.min(info.slots) {
        slot = slot.checked_sub(1).unwrap_or(info.slots - 1);
        let Some(bytes) = audit::read_slot(slot) else {
            broken = Some((slot, "refused"));
            break;
        };
        if bytes.iter().all(|&b| b == 0xFF) {
            break; // the log's start (or an erased block)
        }
        match Record::parse(&bytes) {
            Ok(r) => {
                if let Some(newer) = &oldest {
                    if newer.prev != r.self_hash || newer.seq != r.seq + 1 {
                        broken = Some((slot, "does not chain to the next record"));
                        break;
                    }
                    if newer.boot < r.boot {
                        fell = Some((newer.seq, r.boot, newer.boot));
                    }
                }
                records += 1;
                newest.get_or_insert(r);
                oldest = Some(r);
            }
            Err(_) => torn += 1,
        }
    }
    let (first, last) = (oldest.map_or(0, |r| r.seq), newest.map_or(0, |r| r.seq));
    let _ = write!(
        console,
        "connectivity: audit export: {records} records #{first}..=#{last} of {} written",
        info.next_seq
    );
    if let Some(first) = oldest.filter(|r| r.seq == 0) {
        let _ = write!(console, ", history begins at boot #{}", first.boot);
    }
    if let Some((seq, from, to)) = fell {
        let _ = write!(console, ", HISTORY RESTARTED at #{seq} (boot count fell from {from} to {to})");
    }
    match broken {
        None => writeln!(console, ", {torn} torn, chain intact"),
        Some((slot, why)) => writeln!(console, ", {torn} torn, BROKEN at slot {slot}: {why}"),
    }
    .ok();
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn run_attack(name: &str, victim: u64, victim_uart: u64) {
    // Each arm deliberately breaks a rule; the hypervisor must stop it. None of them can
    // harm this program's own memory: they touch only addresses outside its RAM.
    match name {
        // SAFETY: as read-critical, after `leftovers::dirty` left its marks on the core.
        "leftovers" => unsafe {
            core::ptr::read_volatile(victim as *const u64);
        },
        // SAFETY: a read outside our RAM (the victim's physical address).
        "read-critical" => unsafe {
            core::ptr::read_volatile(victim as *const u64);
        },
        // SAFETY: a write to the critical monitor's UART, a device we do not own.
        "write-uart0" => unsafe { core::ptr::write_volatile(victim_uart as *mut u32, u32::from(b'!')) },
        // INTID 33 (QEMU virt: the critical monitor's UART interrupt), enabled through the emulated
        // distributor: not ours, so ignored and reported; not a fault, so this step ends
        // with a reset request.
        "gic" => {
            if let Some(gicd) = septum_guest::gic_distributor() {
                septum_guest::gicd::write_raw(gicd, 0x104, 1 << 1);
            }
            hvc(septum_guest::psci_system_reset_fid(), [0; 7]);
        }
        // SAFETY: SMC (PSCI SYSTEM_RESET) straight to firmware, which partitions may not call.
        "smc" => unsafe {
            core::arch::asm!("smc #0", inout("x0") 0x8400_0009u64 => _, options(nostack));
        },
        "psci-reset" => {
            hvc(septum_guest::psci_system_reset_fid(), [0; 7]);
        }
        // SGIs aimed past the partition (vCPUs it does not have: physically, the other
        // partition's cores; another cluster). Trapped (HCR_EL2.IMO) and dropped; not a
        // fault, so this step ends with a reset request to move on to the next attack.
        "sgi" => {
            smp::send_sgi(1, 0xFFFE, 0);
            smp::send_sgi(1, 1, 1);
            hvc(septum_guest::psci_system_reset_fid(), [0; 7]);
        }
        // SAFETY: ACTLR_EL1 is implementation-defined and trapped by HCR_EL2.TACR.
        "trapped-sysreg" => unsafe { core::arch::asm!("msr actlr_el1, xzr", options(nostack)) },
        // SAFETY: a write to the hypervisor's flash bank (counters, audit log), which no
        // partition's stage 2 maps.
        "write-flash-bank" => unsafe { core::ptr::write_volatile(0x0400_0000 as *mut u32, 0) },
        // SAFETY: undefined at EL1 is the guest's own exception, taken to its VBAR_EL1.
        "undefined" => unsafe { core::arch::asm!("udf #0", options(nostack)) },
        _ => {}
    }
}

//! Running a partition's vCPUs: a core waits (WFI) for its vCPU's start, enters the
//! guest, leaves it when the partition is stopped, and carries out PSCI `CPU_ON` and
//! `CPU_OFF` as `septum_core::vcpu` decides.
//!
//! Stopping a partition as a whole (HM-006, PSCI-002): the stopping core moves the
//! partition to a new generation, kicks its other cores (a physical SGI routed to EL2,
//! which no guest can mask) and waits, without giving up, until none of them is in
//! its guest; only then may the partition's memory be touched. A core entering its
//! guest first says so ([`slots::set_in_guest`]), then checks under the power lock that
//! its generation is still current: either the stopper sees it in the guest and waits
//! for it (its kick arrives after the core readied its GIC, so it is not lost), or the
//! core sees the new generation and does not enter. A power call from a vCPU of an
//! older generation is refused, and a halted partition starts nothing.

use aarch64_cpu::registers::{Readable, Writeable, HCR_EL2, MIDR_EL1, VMPIDR_EL2, VTTBR_EL2};
use septum_abi::hypercall::SUCCESS;
use septum_core::events::Event;
use septum_core::vcpu::Start;

use super::{caused, caused_more, current, Runtime};
use crate::cpu;
use crate::entry::enter_guest;
use crate::frame::TrapFrame;
use crate::slots;

/// SPSR for a guest's first instruction: EL1h, interrupts masked.
const SPSR_EL1H_MASKED: u64 = 0x3C5;
/// After this long waiting for a core to leave its guest, say so (once per stop).
const STOP_WARN_MS: u64 = 100;

/// Waits on this core until vCPU `vcpu` of `part` is started, then enters it. Never
/// returns.
pub fn wait_for_start(part: &Runtime, vcpu: usize) -> ! {
    slots::set_in_guest(false);
    // A start is checked after the core is ready to be kicked, so none is missed.
    crate::gic::ready_to_sleep();
    loop {
        let started = part.power.lock().take_start(vcpu);
        if let Some((start, generation)) = started {
            slots::set_entered(generation);
            caused!(
                part,
                Event::VcpuStarted,
                info,
                "{}: vCPU {vcpu} starting on MPIDR {:#x}",
                part.desc.name(),
                cpu::mpidr()
            );
            enter(part, vcpu, start, generation);
            // Stopped again before it could enter: wait for the next start.
            slots::set_in_guest(false);
            crate::gic::ready_to_sleep();
            continue;
        }
        crate::gic::sleep_until_kicked(|irq| match irq {
            crate::gic::Irq::Summary => part.write_summary(),
            crate::gic::Irq::Ended(intid) => {
                super::dma::on_smmu_irq(intid);
            }
            _ => {}
        });
    }
}

/// Kicks the cores of `part`'s vCPUs other than this core's: one waiting takes the
/// start it has ([`wait_for_start`]); one running its guest leaves it if the partition
/// was stopped ([`on_kick`]), else takes the kick as a stale one.
pub fn wake_others(part: &Runtime) {
    let me = cpu::mpidr();
    for &mpidr in part.desc.vcpus().iter().filter(|&&m| m != me) {
        crate::gic::kick(mpidr);
    }
}

/// Sets up EL2 for `part` on this core and enters vCPU `vcpu` at `start`, unless the
/// partition was stopped since the start was taken in `generation`: then it returns.
fn enter(part: &Runtime, vcpu: usize, start: Start, generation: u64) {
    // Stage 2 on; physical IRQ/FIQ/SError to EL2; trap SMC, set/way maintenance, ACTLR,
    // implementation-defined registers, LORegions and RAS error records; synchronous
    // external aborts to EL2; EL1 is AArch64; pointer-auth keys stay the guest's.
    HCR_EL2.write(
        HCR_EL2::VM::SET
            + HCR_EL2::SWIO::SET
            + HCR_EL2::FMO::SET
            + HCR_EL2::IMO::SET
            + HCR_EL2::AMO::SET
            + HCR_EL2::TSC::SET
            + HCR_EL2::TIDCP::SET
            + HCR_EL2::TACR::SET
            + HCR_EL2::TSW::SET
            + HCR_EL2::RW::SET
            + HCR_EL2::TLOR::SET
            + HCR_EL2::TERR::SET
            + HCR_EL2::TEA::SET
            + HCR_EL2::APK::SET
            + HCR_EL2::API::SET,
    );
    crate::el1::own_core_debug_and_pmu();
    crate::stage2::set_vtcr();
    VTTBR_EL2.set(part.vttbr);
    // The guest sees the real CPU model and a virtual MPIDR numbered from 0.
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 only sets what the guest's MIDR_EL1 reads return.
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nostack, preserves_flags)) };
    // Bit 31 is RES1; Aff0 = the vCPU's number.
    VMPIDR_EL2.set(1 << 31 | vcpu as u64);
    crate::el1::reset();
    crate::gic::init_core();
    cpu::flush_guest_tlb();
    // In the guest from here on, as far as a stopping core is concerned; then the
    // last check (see the module's comment).
    slots::set_in_guest(true);
    if !part.power.lock().is_current(generation) {
        return;
    }
    let mut frame = TrapFrame::default();
    frame.x[0] = start.x0;
    frame.elr = start.entry;
    frame.spsr = SPSR_EL1H_MASKED;
    enter_guest(&frame)
}

/// The hypervisor's kick (a physical SGI) reached this core: if its partition was
/// stopped, leave the guest and wait for a start; otherwise place what was posted.
pub fn on_kick() {
    super::dma::stop_if_faulted();
    if let Some((part, vcpu)) = current() {
        if !part.power.lock().is_current(slots::entered()) {
            wait_for_start(part, vcpu)
        }
        crate::gic::place_pending();
    }
}

/// Stops every vCPU of `part` on behalf of this core's vCPU (a new generation, all
/// off; the caller decides what starts again) and waits until its other cores have
/// left their guest: after this, nothing runs the partition and its memory may be
/// reloaded. False if another core is already stopping the partition: then this core
/// only waits for the outcome ([`wait_for_start`]).
pub fn stop(part: &Runtime) -> bool {
    if !part.power.lock().stop(slots::entered()) {
        return false;
    }
    slots::set_in_guest(false);
    wake_others(part);
    // No deadline: a core in its guest always leaves on the kick, and one in EL2 for
    // its guest finishes that trap, returns, and takes the kick then.
    let mut warned = false;
    slots::wait_out(part.index, STOP_WARN_MS * (cpu::counter_hz() / 1000), || {
        if !core::mem::replace(&mut warned, true) {
            caused_more!(part, warn, "{}: a vCPU is slow to leave its guest; waiting", part.desc.name());
        }
    });
    true
}

/// PSCI `CPU_ON` from vCPU `vcpu`: the answer for its `x0`.
pub fn cpu_on(part: &Runtime, vcpu: usize, target: u64, entry: u64, context: u64) -> u64 {
    let result = part.power.lock().cpu_on(vcpu, slots::entered(), target, entry, context);
    match result {
        Ok(started) => {
            // Its core sleeps until kicked (`wait_for_start`).
            if let Some(&mpidr) = part.desc.vcpus().get(started) {
                crate::gic::kick(mpidr);
            }
            SUCCESS
        }
        Err(e) => {
            let stale = e == septum_abi::hypercall::psci::DENIED;
            part.note(if stale { Event::StalePowerCall } else { Event::CpuOnRefused }, false);
            i64::from(e) as u64
        }
    }
}

/// PSCI `CPU_OFF` from vCPU `vcpu`: it waits for its next start. (A vCPU of a stopped
/// generation changes nothing; it waits for the restart like the others.)
pub fn cpu_off(part: &Runtime, vcpu: usize) -> ! {
    if part.power.lock().cpu_off(vcpu, slots::entered()) {
        caused!(part, Event::VcpuOff, info, "{}: vCPU {vcpu} turned itself off (PSCI CPU_OFF)", part.desc.name());
    } else {
        part.note(Event::StalePowerCall, false);
    }
    wait_for_start(part, vcpu)
}

//! What happens to a partition that stopped (a fault, or a reset or power-off it asked
//! for): the health monitor decides (`septum_core::health`), this module carries it
//! out: restart from the pristine image with back-off, halt, or the system's safe
//! state.

use septum_abi::hypercall::StartCondition;
use septum_core::events::Event;
use septum_core::health::{Decision, HaltReason, StopCause};
use septum_core::traps::Violation;
use septum_trust::audit::EventKind;

use super::{caused, caused_more, load, power, Runtime, SYSTEM};
use crate::cpu;
use crate::frame::TrapFrame;

/// One log record per violation: partition, what it did, where, and the decoded ESR
/// (HM-001), within the partition's log budget; always in the audit log. A critical
/// partition's record waits for the audit store a bounded time only: it is on its way
/// to the safe state.
pub fn report(part: &Runtime, v: &Violation, frame: &TrapFrame) {
    let name = part.desc.name();
    let (index, esr) = (part.index as u8, v.esr().0);
    if part.desc.is_critical() {
        crate::trust::record_within(crate::safe_state::lock_budget_ticks(), EventKind::Fault, index, 1, esr);
    } else {
        crate::trust::record(EventKind::Fault, index, 1, esr, &[0; 64]);
    }
    if !part.note(Event::Stop, true) {
        return;
    }
    match *v {
        Violation::Stage2DataAbort { ipa, va, write, esr } => log::warn!(
            "{name}: FAULT {}: {} at IPA {} (VA {va:#x}), PC {:#x}; {esr}",
            v.summary(),
            if write { "write" } else { "read" },
            Ipa(ipa),
            frame.elr
        ),
        Violation::Stage2InstructionAbort { ipa, va, esr } => {
            log::warn!("{name}: FAULT {}: fetch at IPA {} (VA {va:#x}); {esr}", v.summary(), Ipa(ipa))
        }
        Violation::Smc { function, esr } => {
            log::warn!("{name}: FAULT {}: function {function:#010x}, PC {:#x}; {esr}", v.summary(), frame.elr)
        }
        _ => log::warn!("{name}: FAULT {}: PC {:#x}; {}", v.summary(), frame.elr, v.esr()),
    }
}

/// A fault IPA, or "unknown" where it could not be found (`traps::UNKNOWN_IPA`).
struct Ipa(u64);

impl core::fmt::Display for Ipa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == septum_core::traps::UNKNOWN_IPA {
            f.write_str("unknown")
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// The partition asked for a reset or power-off: logged (within its budget), then its
/// policy applies.
pub fn requested(part: &Runtime, vcpu: usize, cause: StopCause) -> ! {
    let what = match cause {
        StopCause::ResetRequest => "asked for PSCI SYSTEM_RESET",
        StopCause::OffRequest => "asked for PSCI SYSTEM_OFF",
        StopCause::Fault => "stopped",
    };
    caused!(part, Event::Stop, warn, "{}: {what}; applying its policy", part.desc.name());
    apply(part, vcpu, cause)
}

/// Stops the partition as a whole (once, whichever of its cores gets here first; the
/// others wait for the outcome) and carries out its policy.
pub fn apply(part: &Runtime, vcpu: usize, cause: StopCause) -> ! {
    let Some(sys) = SYSTEM.get() else { cpu::park() };
    let name = part.desc.name();
    if !power::stop(part) {
        power::wait_for_start(part, vcpu)
    }
    // Nothing runs the partition now (`power::stop`); its devices are silenced before
    // anything else (`dma`, DMA-004), and it is halted rather than reloaded if they
    // cannot be.
    let silenced = {
        let _mapped = crate::stage1::load_view(part.index);
        super::dma::quiesce(part)
    };
    let decision = part.state.lock().health.on_stop(cause, cpu::counter());
    if let (Err(e), Decision::Restart { .. }) = (silenced, decision) {
        log::error!("{name}: its devices cannot be silenced ({e}); halting it instead of reloading its memory");
        halt(part, vcpu, None)
    }
    match decision {
        Decision::Restart { delay_ticks, restart } => {
            caused_more!(
                part,
                warn,
                "{name}: policy restart: restart #{restart} after {} ms back-off",
                delay_ticks / sys.ticks_per_ms
            );
            cpu::wait_until(cpu::counter() + delay_ticks);
            crate::trust::record(EventKind::Restart, part.index as u8, 0, u64::from(restart), &[0; 64]);
            let reloaded = {
                // Its memory is mapped in EL2 for the reload only, on this core (ISO-010).
                let _mapped = crate::stage1::load_view(part.index);
                load::load_and_verify(part.desc, part.index, &sys.bundle, &sys.root, &sys.config_hash)
            };
            if let Err(e) = reloaded {
                if let load::LoadError::Refused(r) = &e {
                    crate::trust::refused(part.index, r);
                }
                if part.desc.is_critical() {
                    log::error!("{name}: REFUSED at reload: {e}");
                    crate::safe_state::safe_state("critical partition refused at reload")
                }
                log::error!("{name}: cannot reload its image ({e}); halting it");
                halt(part, vcpu, None)
            }
            if let Err(e) = super::dma::resume(part) {
                log::error!("{name}: its devices cannot be given back their memory ({e}); halting it");
                halt(part, vcpu, None)
            }
            {
                let mut st = part.state.lock();
                st.console.clear();
                st.start = match cause {
                    StopCause::Fault => StartCondition::HmPartitionRestart,
                    _ => StartCondition::PartitionRestart,
                };
            }
            part.reset_interrupts();
            caused_more!(part, info, "{name}: restarted from its pristine image (RAM zeroed)");
            part.power.lock().start_boot(load::boot_start(part.desc));
            power::wake_others(part);
            power::wait_for_start(part, vcpu)
        }
        Decision::Halt { reason } => halt(part, vcpu, Some(reason)),
        Decision::SafeState => crate::safe_state::safe_state("critical partition fault"),
    }
}

/// Halts the stopped partition for good: its interrupts released, nothing starts it
/// again (`VcpuPower::halt`), its cores sleep.
fn halt(part: &Runtime, vcpu: usize, reason: Option<HaltReason>) -> ! {
    part.power.lock().halt();
    part.reset_interrupts();
    crate::trust::record(EventKind::Halt, part.index as u8, 0, 0, &[0; 64]);
    let name = part.desc.name();
    match reason {
        Some(HaltReason::Policy) => log::warn!("{name}: policy halt: partition stopped"),
        Some(HaltReason::RestartLimit { max, window_ms }) => {
            log::error!("{name}: {max} restarts within {window_ms} ms: restarting is not helping; partition halted")
        }
        None => log::error!("{name}: partition halted"),
    }
    power::wait_for_start(part, vcpu)
}

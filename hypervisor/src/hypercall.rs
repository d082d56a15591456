//! The hypercall table: a partition's `HVC #0` answered as `septum_core::hypercall`
//! decides, or carried out (PSCI power calls, the console, the audit export, a stop).

use septum_abi::hypercall::{INVALID_PARAMETERS, NOT_SUPPORTED, SUCCESS};
use septum_core::console::Admit;
use septum_core::events::Event;
use septum_core::hypercall::{answer, Answer, Caller};

use crate::cpu;
use crate::frame::TrapFrame;
use crate::partition::{self, policy, power, Runtime};

/// A hypercall from the guest this core runs ([`crate::trap`] takes the common exit
/// straight here).
pub fn on_hypercall(frame: &mut TrapFrame, function: u32, args: [u64; 7]) {
    let Some((part, vcpu)) = partition::current() else {
        log::error!("hypercall from a core with no partition");
        cpu::park()
    };
    hypercall(part, vcpu, frame, function, args)
}

/// Answers hypercall `function` of vCPU `vcpu` of `part`, or carries out what it asks.
/// (HVC's preferred return address is already the next instruction.)
fn hypercall(part: &Runtime, vcpu: usize, frame: &mut TrapFrame, function: u32, args: [u64; 7]) {
    // Only PARTITION_STATUS reads these: other calls do not take the lock.
    let (start, restarts) = if function == septum_abi::hypercall::PARTITION_STATUS {
        let st = part.state.lock();
        (st.start, st.health.restarts())
    } else {
        (septum_abi::hypercall::StartCondition::NormalStart, 0)
    };
    let caller = Caller {
        vcpu,
        vcpu_count: part.desc.vcpus().len(),
        start,
        restarts,
        audit_reader: part.desc.is_audit_reader(),
        workarounds: crate::speculation::answers(),
    };
    match answer(function, args, &caller) {
        Answer::Return(regs) => frame.x[..4].copy_from_slice(&regs),
        Answer::Unknown => {
            part.note(Event::UnknownHypercall, false);
            frame.x[..4].copy_from_slice(&[NOT_SUPPORTED, 0, 0, 0]);
        }
        Answer::ConsoleWrite { bytes, len } => {
            console_write(part, &bytes[..len]);
            frame.x[0] = SUCCESS;
        }
        Answer::AuditInfo => {
            frame.x[..4].copy_from_slice(&match crate::trust::audit_info() {
                Some((slots, next_slot, next_seq)) => [SUCCESS, u64::from(slots), u64::from(next_slot), next_seq],
                None => [NOT_SUPPORTED, 0, 0, 0],
            });
        }
        Answer::AuditRead { slot, half } => match crate::trust::audit_read(slot, half) {
            Some(words) => {
                frame.x[0] = SUCCESS;
                frame.x[1..17].copy_from_slice(&words);
            }
            None => frame.x[0] = INVALID_PARAMETERS,
        },
        Answer::CpuOff => power::cpu_off(part, vcpu),
        Answer::CpuOn { target, entry, context } => frame.x[0] = power::cpu_on(part, vcpu, target, entry, context),
        Answer::AffinityInfo { target, level } => {
            frame.x[0] = part.power.lock().affinity_info(target, level) as u64;
        }
        Answer::Stop(cause) => policy::requested(part, vcpu, cause),
    }
}

/// `CONSOLE_WRITE`: the bytes join the partition's line; whole lines go to the log
/// under the partition's name, within its console rate (LOG-002).
fn console_write(part: &Runtime, bytes: &[u8]) {
    let name = part.desc.name();
    let now = cpu::counter();
    let mut dropped_now = 0;
    {
        let mut st = part.state.lock();
        let partition::State { console, limit, .. } = &mut *st;
        console.push(bytes, |l| match limit.admit(now) {
            Admit::Write { dropped } => {
                if dropped > 0 {
                    log::warn!("{name}: {dropped} console lines dropped (rate limit)");
                }
                crate::console::line(name, format_args!("{l}"));
            }
            Admit::Drop => dropped_now += 1,
        });
    }
    for _ in 0..dropped_now {
        part.note(Event::ConsoleDropped, false);
    }
}

//! What the hypervisor does with a partition's synchronous exception, once
//! `septum_core::traps::classify` has said what it means: an emulated access (the GIC,
//! a doorbell), an SGI, set/way maintenance done as a no-op, or a violation the
//! partition's policy answers.

use septum_core::events::Event;
use septum_core::health::StopCause;
use septum_core::traps::{Exit, TrapInfo, Violation};
use septum_core::vgicd;
use septum_core::vgicd2;
use septum_core::vgicr;
use septum_platform::catalog::GicVersion;

use crate::cpu;
use crate::frame::TrapFrame;
use crate::hypercall;
use crate::partition::{self, policy, Runtime};
use crate::vgic_glue;

/// Carries out what the trap `info` of the partition on this core means.
pub fn on_exit(frame: &mut TrapFrame, exit: Exit, info: &TrapInfo) {
    let Some((part, vcpu)) = partition::current() else {
        log::error!("trap from a core with no partition: {}", septum_core::esr::Esr(info.esr));
        cpu::park()
    };
    match exit {
        Exit::Hypercall { function, args } => hypercall::on_hypercall(frame, function, args),
        Exit::SetWayMaintenance => {
            part.note(Event::SetWayNoOp, false);
            frame.skip(info.esr);
        }
        Exit::Sgi { reg } => {
            vgic_glue::send_sgi(part, vcpu, frame.reg(reg));
            frame.skip(info.esr);
        }
        Exit::Violation(v) => {
            if let Violation::Stage2DataAbort { ipa, esr, .. } = v {
                if emulate(part, vcpu, ipa, esr, frame) {
                    frame.skip(info.esr);
                    return;
                }
            }
            policy::report(part, &v, frame);
            policy::apply(part, vcpu, StopCause::Fault)
        }
    }
}

/// Emulates a stage-2 data abort at `ipa` if it is an access the hypervisor emulates
/// for the partition (its distributor, redistributors, a doorbell); false otherwise.
fn emulate(part: &Runtime, vcpu: usize, ipa: u64, esr: septum_core::esr::Esr, frame: &mut TrapFrame) -> bool {
    let gic = crate::this_board().gic;
    if gic.version == GicVersion::V2 {
        if let Some(access) = vgicd2::decode(gic.distributor, ipa, esr) {
            vgic_glue::distributor_v2(part, vcpu, access, frame);
            return true;
        }
    } else {
        if let Some(access) = vgicd::decode(gic.distributor, ipa, esr) {
            vgic_glue::distributor(part, access, frame);
            return true;
        }
        let vcpus = part.desc.vcpus().len();
        if let Some((target, access)) = vgicr::decode(gic.redistributors, vcpus, ipa, esr) {
            vgic_glue::redistributor(part, target, access, frame);
            return true;
        }
    }
    if let Some(access) = septum_core::doorbell::decode(part.desc, ipa, esr) {
        vgic_glue::ring(part, access, ipa, frame);
        return true;
    }
    false
}

//! Trapped GIC and doorbell accesses carried out for a partition: the distributor and
//! redistributors it sees are emulated (`septum_core::vgicd`, `vgicd2`, `vgicr`), what a
//! write changes of its own SPIs is carried out on the physical distributor, SGIs reach
//! its own vCPUs only, and a doorbell ring becomes the peer's virtual interrupt within
//! the doorbell's rate. Whatever a partition does outside its interrupts is counted and
//! reported within its log budget.

use septum_core::console::Admit;
use septum_core::doorbell::DoorbellAccess;
use septum_core::events::Event;
use septum_core::vgic::SgiRequest;
use septum_core::vgicd::{self, Outcome};
use septum_core::vgicd2;

use crate::cpu;
use crate::frame::TrapFrame;
use crate::partition::{deliver, part, Runtime};

/// A doorbell access: a write rings (within the configured rate; the excess is counted
/// and reported, never delivered), a read returns zero. A ring reaches the peer as the
/// channel's doorbell interrupt, so a flood can interrupt it at most at that rate.
pub fn ring(part: &Runtime, access: DoorbellAccess, ipa: u64, frame: &mut TrapFrame) {
    if !access.write {
        frame.set_reg(access.reg, 0);
        return;
    }
    let now = cpu::counter();
    let (admitted, report) = {
        let mut st = part.state.lock();
        let Some(Some(db)) = st.doorbells.get_mut(access.region) else { return };
        db.rings += 1;
        let admitted = db.limit.admit(now) != Admit::Drop;
        let mut report = None;
        if !admitted {
            db.dropped += 1;
            if now.saturating_sub(db.reported) >= cpu::counter_hz() {
                db.reported = now;
                report = Some((db.rings, db.dropped));
            }
        }
        (admitted, report)
    };
    if !admitted {
        part.note(Event::DoorbellDropped, false);
    }
    if let Some((rings, dropped)) = report {
        log::warn!(
            "{}: doorbell {ipa:#x} rung {rings} times, {dropped} over its {} per second dropped",
            part.desc.name(),
            access.rate
        );
    }
    if let Some(region) = part.desc.regions().get(access.region).filter(|_| admitted) {
        signal(region.signal_partition as usize, region.signal_intid);
    }
}

/// A ring admitted by its rate limit: the doorbell's virtual interrupt for the peer,
/// delivered to the vCPU its router names if the peer has it enabled, else held pending
/// in its distributor (a stopped peer has nothing to wake).
fn signal(peer: usize, intid: u32) {
    if let Some(p) = part(peer) {
        let target = p.vgicd.lock().raise(intid);
        if let Some(vcpu) = target {
            deliver(p, vcpu, intid);
        }
    }
}

/// An access to the distributor the partition sees: emulated ([`vgicd`]); what it
/// changes of the partition's own SPIs is carried out on the physical distributor, and
/// an access outside its interrupts is counted and reported.
pub fn distributor(part: &Runtime, access: vgicd::Access, frame: &mut TrapFrame) {
    let outcome = {
        let mut d = part.vgicd.lock();
        if access.write {
            let (effect, outcome) = d.write(access.offset, access.width, frame.reg(access.reg));
            crate::gic::apply(effect, part.desc.vcpus(), |intid| d.vcpu_of(intid));
            outcome
        } else {
            let (value, outcome) = d.read(access.offset, access.width);
            frame.set_reg(access.reg, value);
            outcome
        }
    };
    if outcome == Outcome::Outside {
        report_outside_distributor(part, access);
    }
    if access.write {
        deliver_released_doorbells(part);
    }
}

/// An access to the distributor outside the partition's interrupts: counted, and
/// reported within the partition's log budget.
fn report_outside_distributor(part: &Runtime, access: vgicd::Access) {
    if let Some(n) = part.note_sparse(Event::DistributorOutside) {
        log::warn!(
            "{}: GIC distributor: {} at offset {:#x} outside its interrupts ignored ({n} so far)",
            part.desc.name(),
            if access.write { "write" } else { "read" },
            access.offset
        );
    }
}

/// Delivers the SGIs of vCPU `vcpu` that a write to its (banked or redistributor)
/// registers enabled while they were pending.
fn deliver_released_sgis(part: &Runtime, vcpu: usize) {
    let ready = part.vgicr.lock().take_ready(vcpu);
    for intid in (0..16).filter(|k| ready & (1 << k) != 0) {
        deliver(part, vcpu, intid);
    }
}

/// Delivers the doorbells a write to the distributor enabled while they were latched.
fn deliver_released_doorbells(part: &Runtime) {
    while let Some((intid, vcpu)) = part.vgicd.lock().take_ready() {
        deliver(part, vcpu, intid);
    }
}

/// An access to the GICv2 distributor the partition sees ([`vgicd2`]): SPIs and
/// doorbells as on a GICv3, the banked SGI/PPI registers of the accessing vCPU, and
/// `GICD_SGIR`, whose SGIs go to the partition's own vCPUs only.
pub fn distributor_v2(part: &Runtime, vcpu: usize, access: vgicd::Access, frame: &mut TrapFrame) {
    let (outcome, sgi) = {
        let mut d = part.vgicd.lock();
        let mut r = part.vgicr.lock();
        if access.write {
            let w = vgicd2::write(&mut d, &mut r, vcpu, access.offset, access.width, frame.reg(access.reg));
            crate::gic::apply(w.effect, part.desc.vcpus(), |intid| d.vcpu_of(intid));
            (w.outcome, w.sgi)
        } else {
            let (value, outcome) = vgicd2::read(&mut d, &mut r, vcpu, access.offset, access.width);
            frame.set_reg(access.reg, value);
            (outcome, None)
        }
    };
    if outcome == Outcome::Outside {
        report_outside_distributor(part, access);
    }
    if !access.write {
        return;
    }
    deliver_released_doorbells(part);
    if let Some(req) = sgi {
        deliver_sgi(part, req);
    }
    deliver_released_sgis(part, vcpu);
}

/// An access to one of the partition's redistributors (any vCPU may reach any of its
/// partition's, as on hardware): emulated ([`septum_core::vgicr`]); the rest counted
/// and reported.
pub fn redistributor(part: &Runtime, target: usize, access: vgicd::Access, frame: &mut TrapFrame) {
    let outcome = {
        let mut r = part.vgicr.lock();
        if access.write {
            r.write(target, access.offset, access.width, frame.reg(access.reg))
        } else {
            let (value, outcome) = r.read(target, access.offset, access.width);
            frame.set_reg(access.reg, value);
            outcome
        }
    };
    if access.write {
        deliver_released_sgis(part, target);
    }
    if outcome == Outcome::Outside {
        if let Some(n) = part.note_sparse(Event::RedistributorOutside) {
            log::warn!(
                "{}: GIC redistributor {target}: {} at offset {:#x} not emulated, ignored ({n} so far)",
                part.desc.name(),
                if access.write { "write" } else { "read" },
                access.offset
            );
        }
    }
}

/// A vCPU wrote an SGI generation register: the SGI goes to the named vCPUs of its own
/// partition that are running; names outside the partition are ignored and reported.
pub fn send_sgi(part: &Runtime, vcpu: usize, value: u64) {
    deliver_sgi(part, septum_core::vgic::sgi_targets(value, vcpu, part.desc.vcpus().len()));
}

/// Delivers a decoded SGI (GICv3 `ICC_SGI1R_EL1` or GICv2 `GICD_SGIR`) to the named
/// vCPUs of `part`; names outside the partition are ignored and reported.
fn deliver_sgi(part: &Runtime, req: SgiRequest) {
    if req.outside {
        if let Some(n) = part.note_sparse(Event::SgiOutside) {
            log::warn!("{}: SGI to vCPUs outside the partition ignored ({n} so far)", part.desc.name());
        }
    }
    for target in (0..16).filter(|k| req.targets & (1 << k) != 0) {
        // Delivered if the target's redistributor has it enabled, else held pending there.
        if part.vgicr.lock().raise_sgi(target, req.intid) {
            deliver(part, target, req.intid);
        }
    }
}

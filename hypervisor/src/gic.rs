//! The physical GIC, owned by the hypervisor, and each core's virtual CPU interface.
//! Decisions (what to forward, which list register) are `septum_core::vgic`'s; this
//! module programs the distributor and, on a GICv3, this core's redistributor and the
//! `ICC_*`/`ICH_*` system registers; on a GICv2, the banked distributor registers and
//! the memory-mapped CPU interface (GICC) and hypervisor interface (GICH). List
//! registers are decided in the GICv3 encoding and translated for a GICv2 at the
//! register (`vgic::lr_to_v2`, `vgic::lr_from_v2`).
//!
//! EL2 splits priority drop from deactivation (EOImode = 1): it drops the priority of
//! an interrupt it forwards at once, and the guest's end of interrupt deactivates it
//! through the hardware-linked list register.
//!
//! Quirk `virq-unwired` (IRQ-007; [`set_virq_quirk`], decisions in
//! `septum_core::virq_unwired`): on a machine whose GIC does not drive the cores'
//! virtual IRQ input (QEMU 10.0.2's `imx8mp-evk`), EL2 sets `HCR_EL2.VI` itself from the
//! list registers each time it returns to the guest ([`update_virq_line`]), with the
//! maintenance interrupts that tell it when the guest changed the answer.

use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};

use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, CNTHP_CTL_EL2, CNTV_CTL_EL0, HCR_EL2, ICC_CTLR_EL1, ICC_SRE_EL2, ICH_AP1R0_EL2,
    ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};
use septum_core::vgic::{self, ListRegister, Physical, Placement};
use septum_core::vgicd;
use septum_core::virq_unwired;
use septum_platform::catalog::GicVersion;
use septum_platform::gicv2;
use septum_platform::gicv3::{Distributor, Redistributor};

use crate::cpu;

/// `ICC_CTLR_EL1.EOImode` (bit 1; aarch64-cpu only reads the register): priority drop
/// and deactivation are separate writes.
const EOI_MODE: u64 = 1 << 1;
/// List registers this driver uses (every GICv3 implements at least four).
const LIST_REGISTERS: usize = 4;
/// Virtual interrupts waiting for each core slot's vCPU, posted by any core, placed in
/// list registers by the slot's own core: SGIs (bit n: SGI n) and channel doorbells
/// (bit k: INTID `DOORBELL_INTIDS.start + k`).
struct Pending {
    sgis: AtomicU16,
    doorbells: AtomicU64,
}

static PENDING: [Pending; crate::slots::MAX_CPUS] =
    [const { Pending { sgis: AtomicU16::new(0), doorbells: AtomicU64::new(0) } }; crate::slots::MAX_CPUS];
const DOORBELL_BASE: u32 = septum_abi::config::DOORBELL_INTIDS.start;

/// Forwarded physical interrupts that found no free list register, per core slot, as
/// the list register value that will carry them (0: none): acknowledged and left
/// active, so they cannot fire again, until [`place_pending`] finds room. Only the
/// slot's own core touches its row.
const HELD_MAX: usize = 4;
static HELD: [[AtomicU64; HELD_MAX]; crate::slots::MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; HELD_MAX] }; crate::slots::MAX_CPUS];

/// Each core slot's GICv2 CPU interface mask, learnt when the core readies itself
/// (0: not yet; SPI targets and kicks then assume interface number = Aff0, as on the
/// boards Septum supports).
static CPU_MASK: [(AtomicU64, AtomicU16); crate::slots::MAX_CPUS] =
    [const { (AtomicU64::new(u64::MAX), AtomicU16::new(0)) }; crate::slots::MAX_CPUS];

/// The board's GIC is a GICv2 (the board is chosen once at boot, before any GIC call).
fn v2() -> bool {
    crate::this_board().gic.version == GicVersion::V2
}

/// Quirk `virq-unwired` is on: read on every return to a guest, so kept apart (set once
/// at boot, [`set_virq_quirk`]). Off, nothing of the quirk runs and `HCR_EL2.VI` is
/// never set.
static VIRQ_UNWIRED: AtomicBool = AtomicBool::new(false);

/// Turns quirk `virq-unwired` (IRQ-007) on or off: on, EL2 signals virtual interrupts
/// with `HCR_EL2.VI` because the machine's GIC does not drive the cores' virtual IRQ
/// input (QEMU 10.0.2's `imx8mp-evk`). Off by default. Call once, on the boot core,
/// after the board is chosen and before any partition runs. A GICv2 keeps it off (its
/// list registers are wired on every board Septum supports).
pub fn set_virq_quirk(on: bool) {
    if on && v2() {
        log::warn!("GIC: quirk virq-unwired is for a GICv3; left off");
    }
    VIRQ_UNWIRED.store(on && !v2(), Ordering::Release);
}

fn virq_unwired() -> bool {
    VIRQ_UNWIRED.load(Ordering::Relaxed)
}

/// Quirk `virq-unwired`: signals this core's pending virtual interrupts with
/// `HCR_EL2.VI`, and asks for the maintenance interrupts that tell when the guest
/// changed that (`septum_core::virq_unwired::line`). Called on every return to the
/// guest from an exception ([`crate::trap`]); a vCPU's first entry has empty list
/// registers and VI clear (`partition::enter`, [`init_core`]). With the quirk off, one
/// flag test and nothing else.
#[inline]
pub fn update_virq_line() {
    if virq_unwired() {
        drive_virq_line();
    }
}

fn drive_virq_line() {
    let lrs: [u64; LIST_REGISTERS] = core::array::from_fn(read_lr);
    let pri_bits = ICH_VTR_EL2.read(ICH_VTR_EL2::PRIbits) as u32;
    let line = virq_unwired::line(&lrs[..implemented_list_registers()], ICH_VMCR_EL2.get(), pri_bits);
    let ich_hcr = ICH_HCR_EL2.get();
    if line.ich_hcr_el2(ich_hcr) != ich_hcr {
        ICH_HCR_EL2.set(line.ich_hcr_el2(ich_hcr));
    }
    let hcr = HCR_EL2.get();
    if line.hcr_el2(hcr) != hcr {
        HCR_EL2.set(line.hcr_el2(hcr));
    }
    // The exception return that follows synchronizes both writes.
}

/// Turns the distributor on (boot core, once). The redistributors and CPU interfaces
/// are per core ([`init_core`]).
pub fn init_distributor() {
    if v2() {
        distributor_v2().enable();
        return;
    }
    let gicd = distributor();
    if !gicd.single_security_state() {
        log::warn!("GIC: two security states (GICD_CTLR.DS = 0): interrupts may not reach EL2");
    }
    gicd.enable();
}

fn distributor() -> Distributor {
    // SAFETY: the board's distributor is in `hypervisor_devices` (stage 1 Device memory,
    // never given to a partition).
    unsafe { Distributor::new(crate::this_board().gic.distributor as usize) }
}

fn distributor_v2() -> gicv2::Distributor {
    // SAFETY: as in `distributor`.
    unsafe { gicv2::Distributor::new(crate::this_board().gic.distributor as usize) }
}

fn cpu_interface_v2() -> gicv2::CpuInterface {
    // SAFETY: the physical CPU interface is in `hypervisor_devices`; each core reaches
    // its own banked copy.
    unsafe { gicv2::CpuInterface::new(crate::this_board().gic.cpu_interface as usize) }
}

fn hyp_interface_v2() -> gicv2::HypInterface {
    // SAFETY: the hypervisor control interface is in `hypervisor_devices`; each core
    // reaches its own banked copy.
    unsafe { gicv2::HypInterface::new(crate::this_board().gic.hyp_interface as usize) }
}

/// The GICv2 CPU interface mask of the core with affinity `mpidr`.
fn cpu_mask(mpidr: u64) -> u8 {
    CPU_MASK
        .iter()
        .find(|(m, _)| m.load(Ordering::Acquire) == mpidr)
        .map(|(_, mask)| mask.load(Ordering::Acquire) as u8)
        .filter(|&m| m != 0)
        .unwrap_or(1 << (mpidr & 7))
}

/// Carries out on the physical distributor what a partition did to its own SPIs
/// through its emulated one (`vcpus`: the partition's vCPU cores; `vcpu_of`: the vCPU
/// each of its SPIs is routed to).
pub fn apply(effect: vgicd::Effect, vcpus: &[u64], vcpu_of: impl Fn(u32) -> Option<usize>) {
    let core_of = |intid: u32| vcpu_of(intid).and_then(|v| vcpus.get(v).copied());
    match effect {
        vgicd::Effect::Enable { first, mask, on } => {
            for intid in (0..32).filter(|i| mask & (1 << i) != 0).map(|i| first + i) {
                if on {
                    if let Some(core) = core_of(intid) {
                        configure_spi(intid, core);
                    }
                }
                enable_spi(intid, on);
            }
        }
        vgicd::Effect::Route { intid, vcpu, enabled } => {
            if let Some(&core) = vcpus.get(vcpu) {
                // Configuring leaves it disabled: it stays as the guest had it.
                configure_spi(intid, core);
                enable_spi(intid, enabled);
            }
        }
        // The guest's priority orders its virtual interrupts; physically every
        // forwarded interrupt has the same one.
        vgicd::Effect::Priority { .. } | vgicd::Effect::None => {}
    }
}

/// Takes shared peripheral interrupt `intid` for the hypervisor itself (the SMMU's):
/// edge-triggered or level-sensitive as `edge` says, at the kick's priority, routed to
/// the core with affinity `core`, enabled. It reaches EL2 there while that core runs its
/// guest or sleeps, and is ended by EL2 ([`Irq::Ended`]).
pub fn own_spi(intid: u32, core: u64, edge: bool) {
    if v2() {
        let gicd = distributor_v2();
        gicd.configure_spi(intid, vgic::KICK_PRIORITY, cpu_mask(core));
        gicd.set_edge(intid, edge);
    } else {
        let gicd = distributor();
        gicd.configure_spi(intid, vgic::KICK_PRIORITY, core);
        gicd.set_edge(intid, edge);
    }
    enable_spi(intid, true);
}

/// Group 1, the forwarding priority, routed to the core with affinity `core`; disabled.
fn configure_spi(intid: u32, core: u64) {
    if v2() {
        distributor_v2().configure_spi(intid, vgic::FORWARD_PRIORITY, cpu_mask(core));
    } else {
        distributor().configure_spi(intid, vgic::FORWARD_PRIORITY, core);
    }
}

fn enable_spi(intid: u32, on: bool) {
    if v2() {
        distributor_v2().enable_spi(intid, on);
    } else {
        distributor().enable_spi(intid, on);
    }
}

/// Disables and deactivates SPI `intid` (its partition stops or restarts).
pub fn release_spi(intid: u32) {
    if v2() {
        let gicd = distributor_v2();
        gicd.enable_spi(intid, false);
        gicd.deactivate_spi(intid);
        return;
    }
    let gicd = distributor();
    gicd.enable_spi(intid, false);
    gicd.deactivate_spi(intid);
}

fn redistributor() -> Option<Redistributor> {
    let mpidr = cpu::mpidr();
    let aff = ((mpidr >> 8) & 0xFF_0000) as u32 | (mpidr & 0xFF_FFFF) as u32;
    let gic = crate::this_board().gic;
    // SAFETY: the board's redistributor region is in `hypervisor_devices`, with at least
    // `redistributor_frames` frames or a last one marked.
    unsafe { Redistributor::find(gic.redistributors as usize, aff, gic.redistributor_frames) }
}

/// Readies this core for a partition's vCPU: its redistributor forwards the virtual
/// timer's PPI to EL2, EL2's CPU interface takes group-1 interrupts, and the virtual
/// CPU interface starts empty (what a restarted partition must find too). A private
/// interrupt the previous run left active (the timer's, linked to a list register) is
/// deactivated with the rest by `reset_private`; the partition's SPIs were released
/// when it stopped (`partition::reset_interrupts`).
pub fn init_core() {
    if let Some(p) = PENDING.get(crate::cpu_slot()) {
        p.sgis.store(0, Ordering::Release);
        p.doorbells.store(0, Ordering::Release);
    }
    // A held interrupt is still active: nobody is left to end it.
    for word in HELD.get(crate::cpu_slot()).into_iter().flatten() {
        if let Some(pintid) = ListRegister(word.swap(0, Ordering::AcqRel)).pintid() {
            deactivate(pintid);
        }
    }
    if v2() {
        return init_core_v2();
    }
    let Some(gicr) = redistributor() else {
        log::error!("GIC: no redistributor for MPIDR {:#x}: no virtual timer interrupt", cpu::mpidr());
        return;
    };
    gicr.wake();
    gicr.reset_private();
    gicr.enable_private(vgic::VTIMER_PPI, vgic::FORWARD_PRIORITY);
    gicr.enable_private(vgic::KICK_SGI, vgic::KICK_PRIORITY);
    gicr.enable_private(vgic::MAINTENANCE_PPI, vgic::KICK_PRIORITY);
    gicr.enable_private(vgic::HYP_TIMER_PPI, vgic::KICK_PRIORITY);

    // System-register interface at EL2 and for EL1 (Enable: EL1 may use ICC_SRE_EL1).
    ICC_SRE_EL2.write(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    write_ctlr(ICC_CTLR_EL1.get() | EOI_MODE);
    write_pmr(0xFF);
    write_igrpen1(1);

    for n in 0..LIST_REGISTERS {
        write_lr(n, 0);
    }
    ICH_AP1R0_EL2.set(0);
    ICH_VMCR_EL2.set(0);
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// GICv2 [`init_core`]: this core's banked distributor registers take the place of a
/// redistributor, and GICC/GICH of the system registers.
fn init_core_v2() {
    let gicd = distributor_v2();
    gicd.reset_private();
    gicd.enable_private(vgic::VTIMER_PPI, vgic::FORWARD_PRIORITY);
    gicd.enable_private(vgic::KICK_SGI, vgic::KICK_PRIORITY);
    gicd.enable_private(vgic::MAINTENANCE_PPI, vgic::KICK_PRIORITY);
    gicd.enable_private(vgic::HYP_TIMER_PPI, vgic::KICK_PRIORITY);
    if let Some((mpidr, mask)) = CPU_MASK.get(crate::cpu_slot()) {
        mask.store(u16::from(gicd.own_cpu_mask()), Ordering::Release);
        mpidr.store(cpu::mpidr(), Ordering::Release);
    }
    cpu_interface_v2().init_split_eoi();
    let gich = hyp_interface_v2();
    for n in 0..LIST_REGISTERS {
        gich.set_lr(n, 0);
    }
    gich.clear_active_priorities();
    gich.set_vmcr(0);
    gich.set_hcr(true, false);
}

/// Readies this core to wait for a vCPU start in [`sleep_until_kicked`]: its CPU
/// interface empty and signalling only what EL2 enabled ([`init_core`]), the last
/// guest's timer off and, under quirk `virq-unwired`, `HCR_EL2.VI` clear, so nothing
/// left over from a guest wakes the core again and again.
pub fn ready_to_sleep() {
    init_core();
    CNTV_CTL_EL0.set(0);
    HCR_EL2.modify(HCR_EL2::VI::CLEAR);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Sleeps in WFI until an interrupt is pending for this core (the hypervisor's kick,
/// [`kick`]), then acknowledges and retires whatever woke it: a waiting core has no
/// guest to forward to. WFI, not WFE: an emulator runs WFE as a busy loop, and on
/// hardware WFI is the deeper sleep. Interrupts stay masked at EL2; the caller checks
/// what it waits for before each call. The summary timer (disarmed here) and the
/// hypervisor's own SPIs are handed to `also` (after they are ended), which does their
/// work.
pub fn sleep_until_kicked(mut also: impl FnMut(Irq)) {
    aarch64_cpu::asm::wfi();
    // Bounded: each pass retires one interrupt; what is left wakes the next WFI.
    for _ in 0..LIST_REGISTERS * 4 {
        let (ack, intid) = acknowledge();
        let work = match vgic::classify(intid) {
            Physical::Spurious => break,
            Physical::HypTimer => {
                disarm_summary_timer();
                Some(Irq::Summary)
            }
            Physical::Spi(i) => Some(Irq::Ended(i)),
            _ => None,
        };
        end(ack);
        deactivate(ack);
        if let Some(w) = work {
            also(w);
        }
    }
}

/// What a physical IRQ taken from a partition was, beyond what this module did with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irq {
    /// Forwarded, placed or disposed of; nothing more to do.
    Done,
    /// The hypervisor's kick: see whether the partition was stopped.
    Kick,
    /// The summary timer fired (now disarmed): the partition writes its summary.
    Summary,
    /// No list register was free: the interrupt waits, active, for one (the guest
    /// left them all full).
    Held,
    /// Ended by EL2, not forwarded: one of the hypervisor's own SPIs (the SMMU's), or one
    /// it did not expect.
    Ended(u32),
}

/// A physical IRQ taken from a partition: forward it or dispose of it. `owns_spi`: the
/// partition on this core owns the SPI.
pub fn on_irq(owns_spi: impl Fn(u32) -> bool) -> Irq {
    let (ack, intid) = acknowledge();
    match vgic::classify(intid) {
        Physical::Spurious => Irq::Done,
        Physical::Forward(lr) => forward(ack, lr),
        Physical::Kick => {
            end(ack);
            deactivate(ack);
            Irq::Kick
        }
        Physical::HypTimer => {
            disarm_summary_timer();
            end(ack);
            deactivate(ack);
            Irq::Summary
        }
        Physical::Maintenance => {
            end(ack);
            deactivate(ack);
            set_underflow_interrupt(false);
            if virq_unwired() {
                clear_ended_list_registers();
            }
            place_pending();
            Irq::Done
        }
        Physical::Spi(i) if owns_spi(i) => forward(ack, ListRegister::hw_pending(i, i, vgic::FORWARD_PRIORITY)),
        Physical::Spi(i) | Physical::Unexpected(i) => {
            end(ack);
            deactivate(ack);
            Irq::Ended(i)
        }
    }
}

/// Forwards the physical interrupt acknowledged as `ack` (its INTID: `lr`'s physical
/// one) as the hardware-linked `lr`: its priority drops now, the guest's end of
/// interrupt deactivates it. Without a free list register it stays active (so it
/// cannot fire again and again: a level-triggered timer or device would) and waits in
/// this core's held list for the underflow maintenance interrupt ([`place_pending`]),
/// as the virtual interrupts posted for the vCPU wait. Only if that list is full too is
/// it deactivated and dropped (a level-triggered source asks again later).
fn forward(ack: u32, lr: ListRegister) -> Irq {
    end(ack);
    if let Some(n) = vgic::free_list_register(read_elrsr(), implemented_list_registers()) {
        write_lr(n, lr.0);
        return Irq::Done;
    }
    let held = HELD.get(crate::cpu_slot()).and_then(|h| h.iter().find(|w| w.load(Ordering::Acquire) == 0));
    match held {
        Some(word) => word.store(lr.0, Ordering::Release),
        None => deactivate(ack),
    }
    set_underflow_interrupt(true);
    Irq::Held
}

/// List registers this core has, up to the ones this driver uses.
fn implemented_list_registers() -> usize {
    let n =
        if v2() { hyp_interface_v2().list_registers() } else { ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1 };
    n.min(LIST_REGISTERS)
}

/// Turns the virtual CPU interface's underflow maintenance interrupt on or off (the
/// interface stays enabled; on a GICv3, the quirk's maintenance requests stay too).
fn set_underflow_interrupt(on: bool) {
    if v2() {
        hyp_interface_v2().set_hcr(true, on);
    } else if on {
        ICH_HCR_EL2.modify(ICH_HCR_EL2::En::SET + ICH_HCR_EL2::UIE::SET);
    } else {
        ICH_HCR_EL2.modify(ICH_HCR_EL2::En::SET + ICH_HCR_EL2::UIE::CLEAR);
    }
}

/// Quirk `virq-unwired`: empties the list registers whose end-of-interrupt maintenance
/// interrupt fired (software entries the guest ended while the same interrupt waited,
/// [`Placement::AfterEnd`]): until then they are neither valid nor free.
fn clear_ended_list_registers() {
    let lrs: [u64; LIST_REGISTERS] = core::array::from_fn(read_lr);
    let ended = virq_unwired::ended(&lrs[..implemented_list_registers()]);
    for n in (0..LIST_REGISTERS).filter(|n| ended & (1 << n) != 0) {
        write_lr(n, 0);
    }
}

/// Posts virtual interrupt `intid` (an SGI, or a channel doorbell's INTID) for the vCPU
/// of core slot `slot`. The caller places it ([`place_pending`]) if that is its own
/// slot, or kicks the slot's core.
pub fn post(slot: usize, intid: u32) {
    let Some(p) = PENDING.get(slot) else { return };
    if intid < 16 {
        p.sgis.fetch_or(1 << intid, Ordering::AcqRel);
    } else if let Some(k) = intid.checked_sub(DOORBELL_BASE).filter(|&k| k < 64) {
        p.doorbells.fetch_or(1 << k, Ordering::AcqRel);
    }
}

/// Moves the virtual interrupts posted for this core's vCPU into its list registers;
/// what does not fit waits for the underflow maintenance interrupt (and, under quirk
/// `virq-unwired`, what is still active waits for the guest's end of it).
pub fn place_pending() {
    let Some(p) = PENDING.get(crate::cpu_slot()) else { return };
    let held_left = place_held();
    let sgis = u64::from(p.sgis.swap(0, Ordering::AcqRel));
    let doorbells = p.doorbells.swap(0, Ordering::AcqRel);
    let (left_sgis, sgis_full) = place_bits(sgis, 0);
    let (left_doorbells, doorbells_full) = place_bits(doorbells, DOORBELL_BASE);
    if left_sgis != 0 || left_doorbells != 0 {
        p.sgis.fetch_or(left_sgis as u16, Ordering::AcqRel);
        p.doorbells.fetch_or(left_doorbells, Ordering::AcqRel);
    }
    if sgis_full || doorbells_full || held_left {
        set_underflow_interrupt(true);
    }
}

/// Places this core's held physical interrupts ([`forward`]) in free list registers;
/// true if some still wait.
fn place_held() -> bool {
    let mut left = false;
    for word in HELD.get(crate::cpu_slot()).into_iter().flatten() {
        let lr = word.load(Ordering::Acquire);
        if lr == 0 {
            continue;
        }
        match vgic::free_list_register(read_elrsr(), implemented_list_registers()) {
            Some(n) => {
                write_lr(n, lr);
                word.store(0, Ordering::Release);
            }
            None => left = true,
        }
    }
    left
}

/// Arms this core's EL2 physical timer (PPI 26) to fire at counter value `deadline`:
/// the partition on this core then writes its summary ([`Irq::Summary`]).
pub fn arm_summary_timer(deadline: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is EL2's own timer's compare value; aarch64-cpu does not
    // name it.
    unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) deadline, options(nostack, preserves_flags)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

fn disarm_summary_timer() {
    CNTHP_CTL_EL2.set(0);
}

/// Places INTIDs `base + bit` for each set bit; returns the bits left waiting, and
/// whether some wait for room (the rest wait for the guest's end of interrupt).
fn place_bits(mut bits: u64, base: u32) -> (u64, bool) {
    let implemented = implemented_list_registers();
    let quirk = virq_unwired();
    let mut waiting = 0;
    while bits != 0 {
        let bit = bits.trailing_zeros();
        let lrs: [u64; LIST_REGISTERS] = core::array::from_fn(read_lr);
        let (lrs, elrsr) = (&lrs[..implemented], read_elrsr());
        let placement = if quirk {
            virq_unwired::place(lrs, elrsr, base + bit, vgic::FORWARD_PRIORITY)
        } else {
            vgic::place(lrs, elrsr, base + bit, vgic::FORWARD_PRIORITY)
        };
        match placement {
            Placement::Coalesced => {}
            Placement::Write(n, v) => write_lr(n, v),
            Placement::AfterEnd(n, v) => {
                write_lr(n, v);
                waiting |= 1 << bit;
            }
            Placement::Full => return (waiting | bits, true),
        }
        bits &= !(1 << bit);
    }
    (waiting, false)
}

/// Kicks the core with affinity `mpidr` (a physical SGI to EL2 there).
pub fn kick(mpidr: u64) {
    // What the kicked core is to find (a start, a posted interrupt) is visible before
    // the SGI can reach it.
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
    if v2() {
        distributor_v2().send_sgi(vgic::KICK_SGI, cpu_mask(mpidr));
        return;
    }
    let v = vgic::sgi1r(vgic::KICK_SGI, mpidr);
    // SAFETY: generates an SGI from EL2; only the hypervisor's own handler receives it.
    unsafe { core::arch::asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) v, options(nostack)) };
}

// The GIC CPU interface registers aarch64-cpu does not name.

/// Acknowledges the highest-priority pending interrupt: its whole acknowledge value
/// (on a GICv2 an SGI's carries its source CPU, and the end and deactivation writes
/// must repeat it), and the interrupt ID in it.
fn acknowledge() -> (u32, u32) {
    if v2() {
        let ack = cpu_interface_v2().iar();
        (ack, gicv2::intid_of(ack))
    } else {
        let ack = read_iar1();
        (ack, ack)
    }
}

/// Drops the running priority of the interrupt acknowledged as `ack`.
fn end(ack: u32) {
    if v2() {
        cpu_interface_v2().eoi(ack);
    } else {
        write_eoir1(ack);
    }
}

/// Deactivates the interrupt acknowledged as `ack` (EOImode = 1).
fn deactivate(ack: u32) {
    if v2() {
        cpu_interface_v2().deactivate(ack);
    } else {
        write_dir(ack);
    }
}

fn read_iar1() -> u32 {
    let v: u64;
    // SAFETY: acknowledging the highest-priority pending interrupt is EL2's to do here.
    unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nostack)) };
    v as u32
}

fn write_eoir1(intid: u32) {
    // SAFETY: drops the running priority of an interrupt this core acknowledged.
    unsafe { core::arch::asm!("msr icc_eoir1_el1, {}", in(reg) u64::from(intid), options(nostack)) };
}

fn write_dir(intid: u32) {
    // SAFETY: deactivates an interrupt this core acknowledged (EOImode = 1).
    unsafe { core::arch::asm!("msr icc_dir_el1, {}", in(reg) u64::from(intid), options(nostack)) };
}

fn write_ctlr(v: u64) {
    // SAFETY: EL2's own CPU interface control (only EOImode changes).
    unsafe { core::arch::asm!("msr icc_ctlr_el1, {}", in(reg) v, options(nostack)) };
}

fn write_pmr(v: u64) {
    // SAFETY: EL2's own priority mask.
    unsafe { core::arch::asm!("msr icc_pmr_el1, {}", in(reg) v, options(nostack)) };
}

fn write_igrpen1(v: u64) {
    // SAFETY: enables group-1 interrupts at EL2's physical CPU interface.
    unsafe { core::arch::asm!("msr icc_igrpen1_el1, {}", in(reg) v, options(nostack)) };
}

fn read_elrsr() -> u64 {
    if v2() {
        return hyp_interface_v2().elrsr();
    }
    let v: u64;
    // SAFETY: reads which list registers are empty; no side effect.
    unsafe { core::arch::asm!("mrs {}, ich_elrsr_el2", out(reg) v, options(nostack, nomem)) };
    v
}

fn read_lr(n: usize) -> u64 {
    if v2() {
        return vgic::lr_from_v2(hyp_interface_v2().lr(n)).0;
    }
    match n {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        _ => 0,
    }
}

fn write_lr(n: usize, v: u64) {
    if v2() {
        // A GICv2 guest without security extensions enables group 0 only (GICV_CTLR bit
        // 0): its virtual interrupts are group 0, as its distributor shows them.
        return hyp_interface_v2().set_lr(n, vgic::lr_to_v2(ListRegister(v)) & !vgic::GICH_LR_GRP1);
    }
    match n {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        3 => ICH_LR3_EL2.set(v),
        _ => {}
    }
}

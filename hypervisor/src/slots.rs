//! Core slots: each core the hypervisor drives has one (its stack and per-core state;
//! slot 0 is the boot core), pinned at boot to one vCPU of one partition. What each
//! slot runs, the partition generation its vCPU entered in, and whether it is in its
//! guest. Each slot's generation and "in guest" flag are written by its own core only;
//! any core reads them.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, TPIDR_EL2};

/// Cores the hypervisor can drive (stack slots in the linker script).
pub const MAX_CPUS: usize = 8;
/// A slot with no partition.
pub const NONE: usize = usize::MAX;

/// The partition each core slot runs.
static PARTITION: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(NONE) }; MAX_CPUS];
/// The vCPU of that partition each core slot runs.
static VCPU: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// The partition generation the slot's vCPU entered in (`septum_core::vcpu`).
static GENERATION: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The slot's core runs its guest, or is in EL2 on its guest's behalf (a trap): it
/// must leave before the partition's memory may be touched (`partition::power`).
static IN_GUEST: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The slot (stack, per-core state) of the core running this code.
pub fn cpu_slot() -> usize {
    TPIDR_EL2.get() as usize
}

/// Pins core slot `slot` to vCPU `vcpu` of partition `partition` (boot core, at boot).
pub fn assign(slot: usize, partition: usize, vcpu: usize) {
    if let (Some(p), Some(v)) = (PARTITION.get(slot), VCPU.get(slot)) {
        v.store(vcpu, Ordering::Release);
        p.store(partition, Ordering::Release);
    }
}

/// The partition and vCPU this core's slot runs ([`NONE`]: none).
pub fn this_vcpu() -> (usize, usize) {
    let slot = cpu_slot();
    let p = PARTITION.get(slot).map_or(NONE, |p| p.load(Ordering::Acquire));
    (p, VCPU.get(slot).map_or(0, |v| v.load(Ordering::Acquire)))
}

/// The core slot running vCPU `vcpu` of partition `partition`.
pub fn slot_of(partition: usize, vcpu: usize) -> Option<usize> {
    (0..MAX_CPUS)
        .find(|&s| PARTITION[s].load(Ordering::Acquire) == partition && VCPU[s].load(Ordering::Acquire) == vcpu)
}

/// The slots of partition `partition` other than this core's.
pub fn others_of(partition: usize) -> impl Iterator<Item = usize> {
    let me = cpu_slot();
    (0..MAX_CPUS).filter(move |&s| s != me && PARTITION[s].load(Ordering::Acquire) == partition)
}

/// Records the generation this core's vCPU entered in.
pub fn set_entered(generation: u64) {
    if let Some(g) = GENERATION.get(cpu_slot()) {
        g.store(generation, Ordering::Release);
    }
}

/// The generation this core's vCPU entered in.
pub fn entered() -> u64 {
    GENERATION.get(cpu_slot()).map_or(0, |g| g.load(Ordering::Acquire))
}

/// This core is now in its guest (true) or back in EL2 for good (false). Sequentially
/// consistent: a core stopping the partition bumps the generation, then reads these
/// flags; an entering core sets its flag, then checks the generation. Leaving, it
/// signals an event: a stopping core waits for these flags in WFE ([`wait_out`]).
pub fn set_in_guest(on: bool) {
    if let Some(f) = IN_GUEST.get(cpu_slot()) {
        f.store(on, Ordering::SeqCst);
    }
    if !on {
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
        aarch64_cpu::asm::sev();
    }
}

/// Waits until no core of partition `partition` but this one is in its guest; `slow`
/// is called once each time the wait has lasted another `warn_ticks`. In WFE: a
/// leaving core signals an event ([`set_in_guest`]), and the event register keeps a
/// signal sent between the check and the WFE, so none is missed (under an emulator's
/// round-robin scheduling WFE also lets the other cores run).
pub fn wait_out(partition: usize, warn_ticks: u64, mut slow: impl FnMut()) {
    let mut next = crate::cpu::counter().saturating_add(warn_ticks);
    while others_of(partition).any(in_guest) {
        if crate::cpu::counter() > next {
            slow();
            next = crate::cpu::counter().saturating_add(warn_ticks);
        }
        aarch64_cpu::asm::wfe();
    }
}

/// Whether slot `slot`'s core is in its guest (or in EL2 on its behalf).
pub fn in_guest(slot: usize) -> bool {
    IN_GUEST.get(slot).is_some_and(|f| f.load(Ordering::SeqCst))
}

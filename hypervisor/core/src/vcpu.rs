//! The power state of a partition's vCPUs, as PSCI 1.1 (Arm DEN 0022) describes it to
//! the guest: `CPU_ON` starts one of the partition's *own* vCPUs (each pinned to the
//! core its system description names), `CPU_OFF` stops the caller, `AFFINITY_INFO`
//! reports. A partition is started, restarted or halted as a whole. Pure logic; the EL2
//! binary holds one [`VcpuPower`] per partition and moves the cores.
//!
//! Generations (PSCI-002): every stop of the partition as a whole (restart, halt) starts
//! a new generation, and a vCPU carries the generation it entered in. A power call from
//! a vCPU of an older generation (one already in EL2 when another core stopped the
//! partition) is refused, so it can neither start a vCPU of the stopped partition nor
//! turn off the boot vCPU a restart is starting. A halted partition refuses every start.

use septum_abi::config::MAX_VCPUS;
use septum_abi::hypercall::psci;

/// Where and with what a vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// Guest PC (an IPA).
    pub entry: u64,
    /// `x0` at entry: the device tree for the boot vCPU, `CPU_ON`'s context otherwise.
    pub x0: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Off,
    /// Asked to start; its core has not taken the start yet.
    OnPending(Start),
    On,
}

/// PSCI `AFFINITY_INFO` answers.
pub mod affinity {
    pub const ON: i64 = 0;
    pub const OFF: i64 = 1;
    pub const ON_PENDING: i64 = 2;
}

/// The vCPUs of one partition.
#[derive(Clone, Copy, Debug)]
pub struct VcpuPower {
    states: [Power; MAX_VCPUS],
    count: usize,
    /// Bumped each time the partition is stopped as a whole (restart, halt): a core
    /// running an older generation must leave its guest, and its power calls are void.
    generation: u64,
    /// Halted for good: nothing starts again.
    halted: bool,
}

impl VcpuPower {
    /// `count` vCPUs (1..=MAX_VCPUS), all off.
    pub fn new(count: usize) -> Self {
        Self { states: [Power::Off; MAX_VCPUS], count: count.clamp(1, MAX_VCPUS), generation: 0, halted: false }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_halted(&self) -> bool {
        self.halted
    }

    pub fn state(&self, vcpu: usize) -> Option<Power> {
        self.states.get(vcpu).copied().filter(|_| vcpu < self.count)
    }

    /// Whether a vCPU that entered in generation `entered` still belongs to the
    /// running partition (no stop since).
    pub fn is_current(&self, entered: u64) -> bool {
        entered == self.generation && !self.halted
    }

    /// Stops every vCPU, on behalf of a vCPU that entered in generation `entered`: a
    /// new generation, all off, nothing pending. False (and nothing changes) if the
    /// partition was already stopped since that vCPU entered: another core stops it.
    pub fn stop(&mut self, entered: u64) -> bool {
        if entered != self.generation {
            return false;
        }
        self.generation += 1;
        self.states = [Power::Off; MAX_VCPUS];
        true
    }

    /// The boot vCPU is to start at `boot` (first boot, or a restart after [`stop`]).
    /// Refused once the partition is halted.
    ///
    /// [`stop`]: VcpuPower::stop
    pub fn start_boot(&mut self, boot: Start) -> bool {
        if self.halted {
            return false;
        }
        self.states[0] = Power::OnPending(boot);
        true
    }

    /// The partition is halted for good: every vCPU off, nothing starts again, and any
    /// core still running an older generation must leave its guest.
    pub fn halt(&mut self) {
        self.halted = true;
        self.generation += 1;
        self.states = [Power::Off; MAX_VCPUS];
    }

    /// PSCI `CPU_ON` from vCPU `caller` (entered in generation `entered`) for the vCPU
    /// whose (virtual) MPIDR is `target`: the target vCPU's index, whose core must now
    /// be woken, or a PSCI error. A caller of an older generation, or of a halted
    /// partition, is `DENIED`.
    pub fn cpu_on(&mut self, caller: usize, entered: u64, target: u64, entry: u64, context: u64) -> Result<usize, i32> {
        if !self.is_current(entered) {
            return Err(psci::DENIED);
        }
        let Some(vcpu) = vcpu_of(target).filter(|&v| v < self.count) else {
            return Err(psci::INVALID_PARAMETERS);
        };
        if vcpu == caller {
            return Err(psci::ALREADY_ON);
        }
        match self.states[vcpu] {
            Power::On => Err(psci::ALREADY_ON),
            Power::OnPending(_) => Err(psci::ON_PENDING),
            Power::Off => {
                self.states[vcpu] = Power::OnPending(Start { entry, x0: context });
                Ok(vcpu)
            }
        }
    }

    /// PSCI `AFFINITY_INFO` for `target` at affinity level 0.
    pub fn affinity_info(&self, target: u64, level: u64) -> i64 {
        if level != 0 {
            return i64::from(psci::INVALID_PARAMETERS);
        }
        match vcpu_of(target).and_then(|v| self.state(v)) {
            Some(Power::On) => affinity::ON,
            Some(Power::OnPending(_)) => affinity::ON_PENDING,
            Some(Power::Off) => affinity::OFF,
            None => i64::from(psci::INVALID_PARAMETERS),
        }
    }

    /// The caller (entered in generation `entered`) turned itself off (PSCI
    /// `CPU_OFF`). False if it is of an older generation: then nothing changes (its
    /// vCPU may already be starting again in the new one).
    pub fn cpu_off(&mut self, vcpu: usize, entered: u64) -> bool {
        if !self.is_current(entered) || vcpu >= self.count {
            return false;
        }
        self.states[vcpu] = Power::Off;
        true
    }

    /// The start waiting for `vcpu`, if any, with the generation it belongs to; the
    /// vCPU is then on. Nothing starts in a halted partition.
    pub fn take_start(&mut self, vcpu: usize) -> Option<(Start, u64)> {
        match self.state(vcpu)? {
            Power::OnPending(start) if !self.halted => {
                self.states[vcpu] = Power::On;
                Some((start, self.generation))
            }
            _ => None,
        }
    }
}

/// The vCPU index a guest's MPIDR value names: vCPUs are numbered from 0 in Aff0, with
/// every other affinity field zero.
pub fn vcpu_of(mpidr: u64) -> Option<usize> {
    let affinity = mpidr & 0xFF_00FF_FFFF;
    (affinity < MAX_VCPUS as u64).then_some(affinity as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Start = Start { entry: 0x4000_1000, x0: 0x4800_0000 };

    /// A partition whose boot vCPU runs; its generation.
    fn booted(count: usize) -> (VcpuPower, u64) {
        let mut p = VcpuPower::new(count);
        assert!(p.start_boot(START));
        let (start, g) = p.take_start(0).expect("boot vCPU starts");
        assert_eq!(start, START);
        (p, g)
    }

    /// PSCI-001
    #[test]
    fn cpu_on_starts_only_the_partitions_own_vcpus() {
        let (mut p, g) = booted(2);
        assert_eq!(p.cpu_on(0, g, 0, 1, 2), Err(psci::ALREADY_ON), "itself");
        assert_eq!(p.cpu_on(0, g, 2, 1, 2), Err(psci::INVALID_PARAMETERS), "beyond the partition");
        assert_eq!(p.cpu_on(0, g, 0x100, 1, 2), Err(psci::INVALID_PARAMETERS), "another cluster");
        assert_eq!(p.cpu_on(0, g, 1 << 32, 1, 2), Err(psci::INVALID_PARAMETERS), "Aff3");
        assert_eq!(p.affinity_info(1, 0), affinity::OFF);
        assert_eq!(p.cpu_on(0, g, 1, 0x4000_2000, 7), Ok(1));
        assert_eq!(p.affinity_info(1, 0), affinity::ON_PENDING);
        assert_eq!(p.cpu_on(0, g, 1, 0x4000_2000, 7), Err(psci::ON_PENDING));
        assert_eq!(p.take_start(1), Some((Start { entry: 0x4000_2000, x0: 7 }, g)));
        assert_eq!(p.take_start(1), None, "taken once");
        assert_eq!(p.affinity_info(1, 0), affinity::ON);
        assert_eq!(p.cpu_on(0, g, 1, 0, 0), Err(psci::ALREADY_ON));
        assert_eq!(p.affinity_info(1, 1), i64::from(psci::INVALID_PARAMETERS));
        assert_eq!(p.affinity_info(5, 0), i64::from(psci::INVALID_PARAMETERS));
    }

    #[test]
    fn cpu_off_then_on_again() {
        let (mut p, g) = booted(3);
        assert_eq!(p.cpu_on(0, g, 2, 9, 9), Ok(2));
        p.take_start(2);
        assert!(p.cpu_off(2, g));
        assert_eq!(p.affinity_info(2, 0), affinity::OFF);
        assert_eq!(p.cpu_on(1, g, 2, 9, 9), Ok(2), "any vCPU of the partition may start it");
        assert!(!p.cpu_off(99, g));
    }

    /// HM-006
    #[test]
    fn a_restart_stops_every_vcpu_and_starts_only_the_boot_vcpu() {
        let (mut p, g) = booted(2);
        p.cpu_on(0, g, 1, 9, 9).unwrap();
        p.take_start(1);
        assert!(p.stop(g));
        assert_eq!(p.generation(), g + 1);
        assert!(!p.stop(g), "stopped once: a second core of the old generation only waits");
        assert_eq!(p.state(1), Some(Power::Off));
        assert_eq!((p.take_start(0), p.take_start(1)), (None, None), "nothing starts until the reload is done");
        assert!(p.start_boot(START));
        assert_eq!(p.take_start(1), None);
        assert_eq!(p.take_start(0), Some((START, g + 1)));
    }

    /// PSCI-002: a power call from a vCPU that entered before the partition was stopped
    /// (it was already in EL2 when another core stopped the partition) is refused: it
    /// can start no vCPU while the partition reloads, nor turn off the boot vCPU the
    /// restart starts.
    #[test]
    fn power_calls_of_a_stopped_generation_are_refused() {
        let (mut p, old) = booted(3);
        assert!(p.stop(old));
        assert_eq!(p.cpu_on(1, old, 2, 0xBAD, 0), Err(psci::DENIED), "CPU_ON racing the stop");
        assert_eq!(p.take_start(2), None, "so nothing starts during the reload");
        assert!(p.start_boot(START));
        assert!(!p.cpu_off(0, old), "a stale CPU_OFF of the boot vCPU");
        assert_eq!(p.state(0), Some(Power::OnPending(START)), "the restart's start is kept");
        assert_eq!(p.cpu_on(1, old, 2, 0xBAD, 0), Err(psci::DENIED), "still stale after the restart");
        let (_, new) = p.take_start(0).unwrap();
        assert_eq!(p.cpu_on(0, new, 2, 0x4000_2000, 0), Ok(2), "the new generation may");
    }

    /// PSCI-002: a halted partition refuses every start, whoever asks.
    #[test]
    fn a_halted_partition_refuses_every_start() {
        let (mut p, g) = booted(2);
        p.halt();
        assert!(p.is_halted());
        assert!(!p.is_current(g));
        assert_eq!(p.cpu_on(0, g, 1, 0xBAD, 0), Err(psci::DENIED));
        assert_eq!(p.cpu_on(0, p.generation(), 1, 0xBAD, 0), Err(psci::DENIED), "even of the current generation");
        assert!(!p.start_boot(START), "no restart after a halt");
        assert_eq!((p.take_start(0), p.take_start(1)), (None, None));
    }

    #[test]
    fn vcpus_are_numbered_from_zero_in_aff0() {
        assert_eq!(vcpu_of(0), Some(0));
        assert_eq!(vcpu_of(7), Some(7));
        assert_eq!(vcpu_of(8), None);
        assert_eq!(vcpu_of(0x8000_0001), Some(1), "MPIDR bit 31 (RES1) and U/MT bits are ignored");
        assert_eq!(vcpu_of(0x1_0000), None);
    }
}

//! The power state of a partition's vCPUs, as PSCI 1.1 (Arm DEN 0022) describes it to
//! the guest: `CPU_ON` starts one of the partition's *own* vCPUs (each pinned to the
//! core its system description names), `CPU_OFF` stops the caller, `AFFINITY_INFO`
//! reports. A partition is started, restarted or halted as a whole. Pure logic; the EL2
//! binary holds one [`VcpuPower`] per partition and moves the cores.

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
    /// running an older generation must leave its guest.
    generation: u64,
}

impl VcpuPower {
    /// `count` vCPUs (1..=MAX_VCPUS), all off.
    pub fn new(count: usize) -> Self {
        Self { states: [Power::Off; MAX_VCPUS], count: count.clamp(1, MAX_VCPUS), generation: 0 }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn state(&self, vcpu: usize) -> Option<Power> {
        self.states.get(vcpu).copied().filter(|_| vcpu < self.count)
    }

    /// Stops every vCPU (the partition is restarted or halted): a new generation, all
    /// off. With `boot`, vCPU 0 is then to start at it (a restart).
    pub fn stop_all(&mut self, boot: Option<Start>) {
        self.generation += 1;
        self.states = [Power::Off; MAX_VCPUS];
        if let Some(start) = boot {
            self.states[0] = Power::OnPending(start);
        }
    }

    /// PSCI `CPU_ON` from vCPU `caller` for the vCPU whose (virtual) MPIDR is `target`:
    /// the target vCPU's index, whose core must now be woken, or a PSCI error.
    pub fn cpu_on(&mut self, caller: usize, target: u64, entry: u64, context: u64) -> Result<usize, i32> {
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

    /// The caller turned itself off (PSCI `CPU_OFF`).
    pub fn cpu_off(&mut self, vcpu: usize) {
        if vcpu < self.count {
            self.states[vcpu] = Power::Off;
        }
    }

    /// The start waiting for `vcpu`, if any; it is then on.
    pub fn take_start(&mut self, vcpu: usize) -> Option<Start> {
        match self.state(vcpu)? {
            Power::OnPending(start) => {
                self.states[vcpu] = Power::On;
                Some(start)
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

    fn booted(count: usize) -> VcpuPower {
        let mut p = VcpuPower::new(count);
        p.stop_all(Some(START));
        assert_eq!(p.take_start(0), Some(START));
        p
    }

    #[test]
    fn cpu_on_starts_only_the_partitions_own_vcpus() {
        let mut p = booted(2);
        assert_eq!(p.cpu_on(0, 0, 1, 2), Err(psci::ALREADY_ON), "itself");
        assert_eq!(p.cpu_on(0, 2, 1, 2), Err(psci::INVALID_PARAMETERS), "beyond the partition");
        assert_eq!(p.cpu_on(0, 0x100, 1, 2), Err(psci::INVALID_PARAMETERS), "another cluster");
        assert_eq!(p.cpu_on(0, 1 << 32, 1, 2), Err(psci::INVALID_PARAMETERS), "Aff3");
        assert_eq!(p.affinity_info(1, 0), affinity::OFF);
        assert_eq!(p.cpu_on(0, 1, 0x4000_2000, 7), Ok(1));
        assert_eq!(p.affinity_info(1, 0), affinity::ON_PENDING);
        assert_eq!(p.cpu_on(0, 1, 0x4000_2000, 7), Err(psci::ON_PENDING));
        assert_eq!(p.take_start(1), Some(Start { entry: 0x4000_2000, x0: 7 }));
        assert_eq!(p.take_start(1), None, "taken once");
        assert_eq!(p.affinity_info(1, 0), affinity::ON);
        assert_eq!(p.cpu_on(0, 1, 0, 0), Err(psci::ALREADY_ON));
        assert_eq!(p.affinity_info(1, 1), i64::from(psci::INVALID_PARAMETERS));
        assert_eq!(p.affinity_info(5, 0), i64::from(psci::INVALID_PARAMETERS));
    }

    #[test]
    fn cpu_off_then_on_again() {
        let mut p = booted(3);
        assert_eq!(p.cpu_on(0, 2, 9, 9), Ok(2));
        p.take_start(2);
        p.cpu_off(2);
        assert_eq!(p.affinity_info(2, 0), affinity::OFF);
        assert_eq!(p.cpu_on(1, 2, 9, 9), Ok(2), "any vCPU of the partition may start it");
        p.cpu_off(99);
    }

    #[test]
    fn a_restart_stops_every_vcpu_and_starts_only_the_boot_vcpu() {
        let mut p = booted(2);
        p.cpu_on(0, 1, 9, 9).unwrap();
        p.take_start(1);
        let g = p.generation();
        p.stop_all(Some(START));
        assert_eq!(p.generation(), g + 1);
        assert_eq!(p.state(1), Some(Power::Off));
        assert_eq!(p.take_start(1), None);
        assert_eq!(p.take_start(0), Some(START));
        // A halt: nothing starts.
        p.stop_all(None);
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

//! The GICv3 redistributors a partition sees (Arm IHI 0069, 12.10 and 12.11): one per
//! vCPU, at the board's redistributor base, numbered as the vCPUs are (frame k: vCPU k,
//! affinity 0.0.0.k; the last frame says so). Emulated, since the physical ones are the
//! hypervisor's: they keep the SGI and PPI settings a guest makes (group, enable,
//! priority, configuration) for it to read back, and count everything else. An SGI
//! reaches a vCPU only while its redistributor has it enabled; one sent while disabled
//! stays pending until enabled or cleared. The timer PPI is forwarded whatever the
//! enable bit says: its own gate is `CNTV_CTL_EL0` (ENABLE, IMASK), which the guest
//! owns. Pure logic, like [`crate::vgicd`].

use crate::vgicd::{Access, Outcome};
use septum_abi::config::MAX_VCPUS;

/// Offsets within one redistributor.
pub mod reg {
    pub const CTLR: u64 = 0x0000;
    pub const IIDR: u64 = 0x0004;
    pub const TYPER: u64 = 0x0008;
    pub const WAKER: u64 = 0x0014;
    pub const PIDR2: u64 = 0xFFE8;
    /// The SGI_base frame follows RD_base.
    pub const SGI_BASE: u64 = 0x1_0000;
    pub const IGROUPR0: u64 = SGI_BASE + 0x0080;
    pub const ISENABLER0: u64 = SGI_BASE + 0x0100;
    pub const ICENABLER0: u64 = SGI_BASE + 0x0180;
    pub const ISPENDR0: u64 = SGI_BASE + 0x0200;
    pub const ICPENDR0: u64 = SGI_BASE + 0x0280;
    pub const ISACTIVER0: u64 = SGI_BASE + 0x0300;
    pub const ICACTIVER0: u64 = SGI_BASE + 0x0380;
    pub const IPRIORITYR: u64 = SGI_BASE + 0x0400;
    pub const ICFGR0: u64 = SGI_BASE + 0x0C00;
    pub const ICFGR1: u64 = SGI_BASE + 0x0C04;
    /// One redistributor: RD_base and SGI_base, 64 KiB each.
    pub const FRAME: u64 = 0x2_0000;
}

const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// SGIs are always edge-triggered: ICFGR0 reads as all 0b10.
const ICFGR0_SGIS: u32 = 0xAAAA_AAAA;
/// The SGI bits of a 32-bit SGI/PPI register.
const SGIS: u32 = 0xFFFF;

#[derive(Clone, Copy, Debug)]
struct Frame {
    enabled: u32,
    priority: [u8; 32],
    /// ICFGR1 (PPIs 16..32).
    ppi_config: u32,
    /// SGIs sent while disabled (bit n: SGI n).
    pending: u32,
    asleep: bool,
}

impl Frame {
    const RESET: Self = Self { enabled: 0, priority: [0; 32], ppi_config: 0, pending: 0, asleep: true };
}

/// A partition's redistributors.
#[derive(Clone, Debug)]
pub struct VirtualRedistributors {
    vcpus: usize,
    frames: [Frame; MAX_VCPUS],
    /// Accesses the emulation does not describe (read as zero, ignored).
    pub outside: u64,
}

/// Whether a stage-2 data abort at `ipa` is an ISV-described access to one of the
/// `vcpus` redistributor frames at `base`: which vCPU's, and the access within it.
pub fn decode(base: u64, vcpus: usize, ipa: u64, esr: crate::esr::Esr) -> Option<(usize, Access)> {
    let rel = ipa.checked_sub(base)?;
    let vcpu = usize::try_from(rel / reg::FRAME).ok().filter(|&v| v < vcpus.min(MAX_VCPUS))?;
    let da = esr.data_abort();
    da.valid.then_some((vcpu, Access { offset: rel % reg::FRAME, width: da.size, write: da.write, reg: da.reg }))
}

impl VirtualRedistributors {
    pub fn new(vcpus: usize) -> Self {
        Self { vcpus: vcpus.clamp(1, MAX_VCPUS), frames: [Frame::RESET; MAX_VCPUS], outside: 0 }
    }

    fn outside_access(&mut self) -> (u64, Outcome) {
        self.outside += 1;
        (0, Outcome::Outside)
    }

    /// SGI `intid` is sent to `vcpu`: whether to deliver it now (its redistributor has
    /// it enabled); if not, it stays pending there ([`Self::take_ready`]).
    pub fn raise_sgi(&mut self, vcpu: usize, intid: u32) -> bool {
        let Some(f) = self.frames.get_mut(vcpu).filter(|_| vcpu < self.vcpus && intid < 16) else { return false };
        if f.enabled & (1 << intid) != 0 {
            true
        } else {
            f.pending |= 1 << intid;
            false
        }
    }

    /// The pending SGIs of `vcpu` that are now enabled (bit n: SGI n), cleared here for
    /// delivery. Called after every write to its redistributor.
    pub fn take_ready(&mut self, vcpu: usize) -> u32 {
        let Some(f) = self.frames.get_mut(vcpu) else { return 0 };
        let ready = f.pending & f.enabled;
        f.pending &= !ready;
        ready
    }

    /// A read of `width` bytes at `offset` in vCPU `vcpu`'s redistributor.
    pub fn read(&mut self, vcpu: usize, offset: u64, width: u8) -> (u64, Outcome) {
        let last = vcpu.checked_add(1) == Some(self.vcpus);
        let Some(f) = self.frames.get(vcpu).filter(|_| vcpu < self.vcpus) else {
            return self.outside_access();
        };
        let v = match (offset, width) {
            (reg::CTLR, 4) => 0,
            (reg::IIDR, 4) => 0x43B,
            // Affinity 0.0.0.vcpu, Processor_Number = vcpu, Last; no physical LPIs.
            (reg::TYPER, 8) => ((vcpu as u64) << 32) | ((vcpu as u64) << 8) | (u64::from(last) << 4),
            (reg::TYPER, 4) => ((vcpu as u64) << 8) | (u64::from(last) << 4),
            (o, 4) if o == reg::TYPER + 4 => vcpu as u64,
            (reg::WAKER, 4) => {
                if f.asleep {
                    u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
                } else {
                    0
                }
            }
            (reg::PIDR2, 4) => 0x30,
            (reg::IGROUPR0, 4) => u64::from(u32::MAX),
            (reg::ISENABLER0 | reg::ICENABLER0, 4) => u64::from(f.enabled),
            (reg::ISPENDR0 | reg::ICPENDR0, 4) => u64::from(f.pending),
            (reg::ISACTIVER0 | reg::ICACTIVER0, 4) => 0,
            (reg::ICFGR0, 4) => u64::from(ICFGR0_SGIS),
            (reg::ICFGR1, 4) => u64::from(f.ppi_config),
            (o, 1) if (reg::IPRIORITYR..reg::IPRIORITYR + 32).contains(&o) => {
                u64::from(f.priority[(o - reg::IPRIORITYR) as usize])
            }
            (o, 4) if (reg::IPRIORITYR..reg::IPRIORITYR + 32).contains(&o) && o.is_multiple_of(4) => {
                let i = (o - reg::IPRIORITYR) as usize;
                u64::from(u32::from_le_bytes([f.priority[i], f.priority[i + 1], f.priority[i + 2], f.priority[i + 3]]))
            }
            _ => return self.outside_access(),
        };
        (v, Outcome::Done)
    }

    /// A write of `value` (`width` bytes) at `offset` in vCPU `vcpu`'s redistributor.
    pub fn write(&mut self, vcpu: usize, offset: u64, width: u8, value: u64) -> Outcome {
        let Some(f) = self.frames.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return self.outside_access().1;
        };
        let v = value as u32;
        match (offset, width) {
            (reg::CTLR, 4) | (reg::IGROUPR0, 4) | (reg::ICFGR0, 4) => {}
            (reg::ISPENDR0, 4) => f.pending |= v & SGIS,
            (reg::ICPENDR0, 4) => f.pending &= !v,
            (reg::ISACTIVER0 | reg::ICACTIVER0, 4) => {}
            (reg::WAKER, 4) => f.asleep = v & WAKER_PROCESSOR_SLEEP != 0,
            (reg::ISENABLER0, 4) => f.enabled |= v,
            (reg::ICENABLER0, 4) => f.enabled &= !v,
            (reg::ICFGR1, 4) => f.ppi_config = v,
            (o, 1) if (reg::IPRIORITYR..reg::IPRIORITYR + 32).contains(&o) => {
                f.priority[(o - reg::IPRIORITYR) as usize] = v as u8;
            }
            (o, 4) if (reg::IPRIORITYR..reg::IPRIORITYR + 32).contains(&o) && o.is_multiple_of(4) => {
                let i = (o - reg::IPRIORITYR) as usize;
                f.priority[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => return self.outside_access().1,
        }
        Outcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esr::Esr;

    /// IRQ-005: an SGI sent while its redistributor has it disabled waits, pending,
    /// until the guest enables it; a cleared one is never delivered.
    #[test]
    fn a_disabled_sgi_is_latched_until_enabled() {
        let mut r = VirtualRedistributors::new(2);
        assert!(!r.raise_sgi(1, 3), "disabled at reset");
        assert!(!r.raise_sgi(1, 5));
        assert_eq!(r.read(1, reg::ISPENDR0, 4).0, (1 << 3) | (1 << 5));
        assert_eq!(r.read(0, reg::ISPENDR0, 4).0, 0, "vCPU 0 untouched");
        assert_eq!(r.write(1, reg::ICPENDR0, 4, 1 << 5), Outcome::Done);
        assert_eq!(r.write(1, reg::ISENABLER0, 4, 0xFFFF), Outcome::Done);
        assert_eq!(r.take_ready(1), 1 << 3);
        assert_eq!(r.take_ready(1), 0);
        assert!(r.raise_sgi(1, 5), "enabled: delivered at once");
        assert!(!r.raise_sgi(2, 5), "no vCPU 2");
        assert!(!r.raise_sgi(0, 16), "not an SGI");
    }

    /// IRQ-004: one redistributor per vCPU, numbered as the vCPUs, the last one marked.
    #[test]
    fn frames_follow_the_vcpus() {
        let mut r = VirtualRedistributors::new(2);
        assert_eq!(r.read(0, reg::TYPER, 8), (0, Outcome::Done));
        assert_eq!(r.read(1, reg::TYPER, 8), ((1 << 32) | (1 << 8) | (1 << 4), Outcome::Done));
        assert_eq!(r.read(1, reg::TYPER + 4, 4).0, 1);
        assert_eq!(r.read(2, reg::TYPER, 8), (0, Outcome::Outside), "no third vCPU");
        assert_eq!(r.read(0, reg::PIDR2, 4).0, 0x30);
        // A ldr of str of a 32-bit access: ESR with ISV, SAS = 2, Xt = 3.
        let esr = Esr((0x24 << 26) | (1 << 25) | (1 << 24) | (0b10 << 22) | (3 << 16) | 0x07);
        let base = 0x080A_0000;
        let (vcpu, a) = decode(base, 2, base + reg::FRAME + reg::WAKER, esr).unwrap();
        assert_eq!((vcpu, a.offset, a.width, a.reg), (1, reg::WAKER, 4, 3));
        assert_eq!(decode(base, 2, base + 2 * reg::FRAME, esr), None, "beyond its vCPUs");
        assert_eq!(decode(base, 2, base - 4, esr), None);
    }

    #[test]
    fn a_guest_wakes_it_and_sets_up_its_private_interrupts() {
        let mut r = VirtualRedistributors::new(1);
        assert_eq!(r.read(0, reg::WAKER, 4).0, 0b110, "asleep at reset");
        assert_eq!(r.write(0, reg::WAKER, 4, 0), Outcome::Done);
        assert_eq!(r.read(0, reg::WAKER, 4).0, 0);
        r.write(0, reg::ISENABLER0, 4, (1 << 27) | 1);
        r.write(0, reg::ICENABLER0, 4, 1);
        assert_eq!(r.read(0, reg::ISENABLER0, 4).0, 1 << 27);
        r.write(0, reg::IPRIORITYR + 27, 1, 0xA0);
        assert_eq!(r.read(0, reg::IPRIORITYR + 24, 4).0, 0xA0 << 24);
        r.write(0, reg::ICFGR1, 4, 0x55);
        assert_eq!(r.read(0, reg::ICFGR1, 4).0, 0x55);
        assert_eq!(r.read(0, reg::ICFGR0, 4).0, u64::from(ICFGR0_SGIS));
        assert_eq!(r.read(0, reg::IGROUPR0, 4).0, u64::from(u32::MAX));
        assert_eq!(r.outside, 0);
    }

    #[test]
    fn never_panics_on_any_offset_or_width() {
        let mut r = VirtualRedistributors::new(2);
        for vcpu in [0, 1, 2, usize::MAX] {
            for offset in (0..reg::FRAME).step_by(4).chain([1, 3, reg::IPRIORITYR + 31, u64::MAX]) {
                for width in [0u8, 1, 2, 4, 8] {
                    r.read(vcpu, offset, width);
                    r.write(vcpu, offset, width, u64::MAX);
                }
            }
        }
    }
}

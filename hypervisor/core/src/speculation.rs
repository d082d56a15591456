//! What the hypervisor does against branch-predictor attacks from a partition, per
//! core, decided from the core's identity (MIDR) and ID registers as Arm's security
//! advisories describe each core, and from what the board firmware offers:
//!
//! * Spectre-v2 (CVE-2017-5715): a partition trains the branch target predictor so
//!   EL2 speculatively runs a gadget of its choosing. Cores with `CSV2` or on Arm's
//!   unaffected list need nothing; affected Cortex-A57/A72/A73/A75 have no EL2-local
//!   remedy, only the firmware call `SMCCC_ARCH_WORKAROUND_1`, made on every entry
//!   from a partition when the firmware offers it.
//! * Spectre-BHB (CVE-2022-23960): the branch *history* a partition leaves steers
//!   EL2's indirect branches. Cores with `ECBHB` (or `CSV2_3`) or on the unaffected list
//!   need nothing; `CLRBHB` clears the history where implemented; otherwise the loop of
//!   taken branches Arm gives per core (8 on Cortex-A57/A72); failing that, the
//!   firmware call `SMCCC_ARCH_WORKAROUND_3` (which also covers Spectre-v2).
//!
//! [`Plan::answers`] is what `SMCCC_ARCH_FEATURES` tells a partition (Arm DEN 0028):
//! a workaround is reported implemented only where the hypervisor really applies it on
//! every entry from the partition, so the call itself (an `HVC`) has nothing left to
//! do; reported not required only where the core is unaffected.

use crate::hypercall::Workarounds;

/// The ID registers the decision reads, as this core reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreIds {
    pub midr: u64,
    pub pfr0: u64,
    pub pfr1: u64,
    pub mmfr1: u64,
    pub isar2: u64,
}

/// What the board firmware answered to `SMCCC_ARCH_FEATURES` for each workaround
/// ([`NOT_SUPPORTED`] where there is no SMCCC 1.1 firmware to ask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Firmware {
    pub wa1: i32,
    pub wa2: i32,
    pub wa3: i32,
}

/// SMCCC return values.
pub const NOT_SUPPORTED: i32 = -1;
pub const NOT_REQUIRED: i32 = -2;
/// `SMCCC_ARCH_FEATURES` of a workaround: implemented, call it.
pub const IMPLEMENTED: i32 = 0;
/// `SMCCC_ARCH_FEATURES` of `WORKAROUND_1`/`_3`: this core does not need it.
pub const UNAFFECTED: i32 = 1;

impl Firmware {
    /// No firmware that speaks SMCCC 1.1 (or none reachable from EL2).
    pub const NONE: Firmware = Firmware { wa1: NOT_SUPPORTED, wa2: NOT_SUPPORTED, wa3: NOT_SUPPORTED };
}

/// Spectre-v2 on this core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V2 {
    Unaffected,
    /// `SMCCC_ARCH_WORKAROUND_1` (or `_3`, see [`Bhb::Firmware`]) on every entry.
    Firmware,
    /// Affected and nothing to apply: reported, not hidden.
    Exposed,
}

/// Spectre-BHB on this core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bhb {
    Unaffected,
    /// `k` taken branches, then a barrier, on every entry.
    Loop(u8),
    /// The `CLRBHB` instruction, then a barrier, on every entry.
    ClearBhb,
    /// `SMCCC_ARCH_WORKAROUND_3` on every entry (covers Spectre-v2 too).
    Firmware,
    Exposed,
}

/// Spectre-v4 (speculative store bypass, CVE-2018-3639): only reported. Septum keeps
/// no dynamic mitigation to toggle for a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ssb {
    /// Unaffected, or the core lets software set `PSTATE.SSBS` itself, or the
    /// firmware keeps the mitigation permanently on.
    NotRequired,
    Exposed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub v2: V2,
    pub bhb: Bhb,
    pub ssb: Ssb,
}

const ARM: u64 = 0x41;

/// Arm cores by part number: the name, and the BHB loop count Arm's advisory gives
/// (0: not affected by Spectre-BHB or no loop given), whether Spectre-v2 and
/// speculative store bypass affect it.
struct Known {
    part: u64,
    name: &'static str,
    v2: bool,
    bhb_loop: u8,
    /// Affected by BHB with no loop: only the firmware call helps.
    bhb_firmware_only: bool,
    ssb: bool,
}

const fn core(part: u64, name: &'static str, v2: bool, bhb_loop: u8, bhb_firmware_only: bool, ssb: bool) -> Known {
    Known { part, name, v2, bhb_loop, bhb_firmware_only, ssb }
}

/// From Arm's speculative-processor-vulnerability advisory. Cores not listed fall back
/// to the ID registers and the firmware's word.
const KNOWN: &[Known] = &[
    core(0xD03, "Cortex-A53", false, 0, false, false),
    core(0xD04, "Cortex-A35", false, 0, false, false),
    core(0xD05, "Cortex-A55", false, 0, false, false),
    core(0xD07, "Cortex-A57", true, 8, false, true),
    core(0xD08, "Cortex-A72", true, 8, false, true),
    core(0xD09, "Cortex-A73", true, 0, true, true),
    core(0xD0A, "Cortex-A75", true, 0, true, true),
    core(0xD0B, "Cortex-A76", false, 24, false, true),
    core(0xD0C, "Neoverse N1", false, 24, false, true),
    core(0xD0D, "Cortex-A77", false, 24, false, true),
    core(0xD40, "Neoverse V1", false, 32, false, false),
    core(0xD41, "Cortex-A78", false, 32, false, false),
    core(0xD42, "Cortex-A78AE", false, 32, false, false),
    core(0xD44, "Cortex-X1", false, 32, false, false),
    core(0xD47, "Cortex-A710", false, 32, false, false),
    core(0xD48, "Cortex-X2", false, 32, false, false),
    core(0xD49, "Neoverse N2", false, 32, false, false),
    core(0xD4B, "Cortex-A78C", false, 32, false, false),
    core(0xD4D, "Cortex-A715", false, 38, false, false),
    core(0xD4E, "Cortex-X3", false, 132, false, false),
    core(0xD4F, "Neoverse V2", false, 132, false, false),
];

fn known(midr: u64) -> Option<&'static Known> {
    let implementer = (midr >> 24) & 0xFF;
    let part = (midr >> 4) & 0xFFF;
    KNOWN.iter().find(|k| implementer == ARM && k.part == part)
}

/// The core's name for the log ("Cortex-A72"), if Septum knows it.
pub fn core_name(midr: u64) -> Option<&'static str> {
    known(midr).map(|k| k.name)
}

fn field(reg: u64, shift: u32) -> u64 {
    (reg >> shift) & 0xF
}

/// Decides what this core needs on entry from a partition.
pub fn plan(ids: &CoreIds, fw: &Firmware) -> Plan {
    let k = known(ids.midr);
    let csv2 = field(ids.pfr0, 56);
    let ecbhb = field(ids.mmfr1, 60) != 0;
    let clrbhb = field(ids.isar2, 28) != 0;
    let ssbs = field(ids.pfr1, 4) != 0;

    let v2_unaffected = csv2 != 0 || k.is_some_and(|k| !k.v2) || fw.wa1 == UNAFFECTED;
    let bhb_unaffected = ecbhb || csv2 >= 3 || k.is_some_and(|k| k.bhb_loop == 0 && !k.bhb_firmware_only);
    let bhb = if bhb_unaffected {
        Bhb::Unaffected
    } else if clrbhb {
        Bhb::ClearBhb
    } else if let Some(n) = k.map(|k| k.bhb_loop).filter(|&n| n > 0) {
        Bhb::Loop(n)
    } else if fw.wa3 == IMPLEMENTED {
        Bhb::Firmware
    } else {
        Bhb::Exposed
    };
    let v2 = if v2_unaffected {
        V2::Unaffected
    } else if fw.wa1 == IMPLEMENTED || bhb == Bhb::Firmware {
        V2::Firmware
    } else {
        V2::Exposed
    };
    let ssb_unaffected = k.is_some_and(|k| !k.ssb) || ssbs || matches!(fw.wa2, NOT_REQUIRED | UNAFFECTED);
    let ssb = if ssb_unaffected { Ssb::NotRequired } else { Ssb::Exposed };
    Plan { v2, bhb, ssb }
}

/// The firmware function the vectors call on entry from a partition, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareCall {
    Workaround1,
    Workaround3,
}

impl Plan {
    /// Whether the entry from a partition needs any work at all.
    pub fn hardened(&self) -> bool {
        self.firmware_call().is_some() || !matches!(self.bhb, Bhb::Unaffected | Bhb::Exposed)
    }

    pub fn firmware_call(&self) -> Option<FirmwareCall> {
        match (self.bhb, self.v2) {
            (Bhb::Firmware, _) => Some(FirmwareCall::Workaround3),
            (_, V2::Firmware) => Some(FirmwareCall::Workaround1),
            _ => None,
        }
    }

    /// The word the hardened vectors read for this core: bits 7:0 the BHB loop count,
    /// bit 8 `CLRBHB`, bit 9 call `SMCCC_ARCH_WORKAROUND_1`, bit 10 `_3`.
    pub fn entry_word(&self) -> u64 {
        let count = match self.bhb {
            Bhb::Loop(n) => u64::from(n),
            _ => 0,
        };
        let clear = u64::from(self.bhb == Bhb::ClearBhb) << ENTRY_CLRBHB_BIT;
        let fw = match self.firmware_call() {
            Some(FirmwareCall::Workaround1) => 1 << ENTRY_WA1_BIT,
            Some(FirmwareCall::Workaround3) => 1 << ENTRY_WA3_BIT,
            None => 0,
        };
        count | clear | fw
    }

    /// `SMCCC_ARCH_FEATURES` for the three workarounds, as a partition on this core is
    /// told (DEN 0028): 0 where every entry already applies it (so an `HVC` of it has
    /// done its work by the time EL2 looks at it), 1 (`_1`, `_3`) or NOT_REQUIRED
    /// (`_2`) where the core does not need it, NOT_SUPPORTED otherwise.
    pub fn answers(&self) -> Workarounds {
        let wa1 = match self.v2 {
            V2::Unaffected => UNAFFECTED,
            V2::Firmware => IMPLEMENTED,
            V2::Exposed => NOT_SUPPORTED,
        };
        let bhb_done = !matches!(self.bhb, Bhb::Exposed);
        // `_3` stands in for `_1` too: it may only be offered where both are handled.
        let wa3 = match (self.v2, self.bhb) {
            (V2::Unaffected, Bhb::Unaffected) => UNAFFECTED,
            (V2::Exposed, _) => NOT_SUPPORTED,
            _ if bhb_done => IMPLEMENTED,
            _ => NOT_SUPPORTED,
        };
        let wa2 = match self.ssb {
            Ssb::NotRequired => NOT_REQUIRED,
            Ssb::Exposed => NOT_SUPPORTED,
        };
        Workarounds { wa1, wa2, wa3 }
    }
}

/// Bits of [`Plan::entry_word`], named for the vectors' assembly.
pub const ENTRY_CLRBHB_BIT: u32 = 8;
pub const ENTRY_WA1_BIT: u32 = 9;
pub const ENTRY_WA3_BIT: u32 = 10;

impl core::fmt::Display for Plan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.bhb {
            Bhb::Unaffected => write!(f, "Spectre-BHB: not affected")?,
            Bhb::Loop(n) => write!(f, "Spectre-BHB: {n}-branch loop on every entry")?,
            Bhb::ClearBhb => write!(f, "Spectre-BHB: CLRBHB on every entry")?,
            Bhb::Firmware => write!(f, "Spectre-BHB: firmware WORKAROUND_3 on every entry")?,
            Bhb::Exposed => write!(f, "Spectre-BHB: EXPOSED (no mitigation known)")?,
        }
        match self.v2 {
            V2::Unaffected => write!(f, "; Spectre-v2: not affected")?,
            V2::Firmware => write!(f, "; Spectre-v2: firmware WORKAROUND_1 on every entry")?,
            V2::Exposed => write!(f, "; Spectre-v2: EXPOSED (no firmware WORKAROUND_1)")?,
        }
        match self.ssb {
            Ssb::NotRequired => write!(f, "; SSB: not affected"),
            Ssb::Exposed => write!(f, "; SSB: no dynamic mitigation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's and the Pi 4's Cortex-A72 r0p3, and the i.MX 8M Plus's Cortex-A53 r0p4.
    const A72: CoreIds = CoreIds { midr: 0x410F_D083, pfr0: 0x0000_0000_0000_2222, pfr1: 0, mmfr1: 0, isar2: 0 };
    const A53: CoreIds = CoreIds { midr: 0x410F_D034, pfr0: 0x0000_0000_0000_2222, pfr1: 0, mmfr1: 0, isar2: 0 };
    const FW_WA1: Firmware = Firmware { wa1: IMPLEMENTED, ..Firmware::NONE };

    /// ISO-009: the Cortex-A72 clears the branch history on every entry (Arm's 8-branch
    /// loop) and, where the firmware offers it, calls SMCCC_ARCH_WORKAROUND_1; a guest
    /// is told only what is really done.
    #[test]
    fn cortex_a72_loops_and_calls_the_firmware_when_it_can() {
        let p = plan(&A72, &FW_WA1);
        assert_eq!(p, Plan { v2: V2::Firmware, bhb: Bhb::Loop(8), ssb: Ssb::Exposed });
        assert_eq!(p.entry_word(), 8 | 1 << ENTRY_WA1_BIT);
        assert_eq!(p.answers(), Workarounds { wa1: 0, wa2: -1, wa3: 0 });

        // No firmware (QEMU, the Pi's own stub): the loop still runs; Spectre-v2 is
        // exposed and said to be, and WORKAROUND_3 (which implies _1) is not offered.
        let p = plan(&A72, &Firmware::NONE);
        assert_eq!(p, Plan { v2: V2::Exposed, bhb: Bhb::Loop(8), ssb: Ssb::Exposed });
        assert!(p.hardened());
        assert_eq!(p.entry_word(), 8);
        assert_eq!(p.answers(), Workarounds { wa1: -1, wa2: -1, wa3: -1 });
    }

    /// ISO-009: the Cortex-A53 is on Arm's unaffected list: no work on entry, and a
    /// guest is told it needs no workaround.
    #[test]
    fn cortex_a53_needs_nothing() {
        let p = plan(&A53, &Firmware::NONE);
        assert_eq!(p, Plan { v2: V2::Unaffected, bhb: Bhb::Unaffected, ssb: Ssb::NotRequired });
        assert!(!p.hardened());
        assert_eq!(p.entry_word(), 0);
        assert_eq!(p.answers(), Workarounds { wa1: 1, wa2: -2, wa3: 1 });
    }

    /// The ID registers override the list: CSV2 clears Spectre-v2, ECBHB and CSV2_3
    /// clear BHB, CLRBHB replaces the loop, SSBS makes WORKAROUND_2 unneeded.
    #[test]
    fn id_registers_tell_a_core_is_safe_or_how_to_clear() {
        let csv2 = CoreIds { pfr0: 1 << 56, ..A72 };
        assert_eq!(plan(&csv2, &Firmware::NONE).v2, V2::Unaffected);
        assert_eq!(plan(&csv2, &Firmware::NONE).bhb, Bhb::Loop(8), "CSV2 alone says nothing of BHB");
        assert_eq!(plan(&CoreIds { pfr0: 3 << 56, ..A72 }, &Firmware::NONE).bhb, Bhb::Unaffected);
        assert_eq!(plan(&CoreIds { mmfr1: 1 << 60, ..A72 }, &Firmware::NONE).bhb, Bhb::Unaffected);
        let clr = plan(&CoreIds { isar2: 1 << 28, ..A72 }, &Firmware::NONE);
        assert_eq!(clr.bhb, Bhb::ClearBhb);
        assert_eq!(clr.entry_word(), 1 << ENTRY_CLRBHB_BIT);
        assert_eq!(plan(&CoreIds { pfr1: 1 << 4, ..A72 }, &Firmware::NONE).ssb, Ssb::NotRequired);
    }

    /// A core Septum does not know, with nothing in its ID registers: only the
    /// firmware can help; WORKAROUND_3 then serves both.
    #[test]
    fn unknown_cores_rely_on_the_firmware_or_are_exposed() {
        let other = CoreIds { midr: 0x5100_0000, ..Default::default() };
        let p = plan(&other, &Firmware::NONE);
        assert_eq!((p.v2, p.bhb, p.hardened()), (V2::Exposed, Bhb::Exposed, false));
        assert_eq!(p.answers(), Workarounds { wa1: -1, wa2: -1, wa3: -1 });
        let fw3 = Firmware { wa1: IMPLEMENTED, wa2: NOT_REQUIRED, wa3: IMPLEMENTED };
        let p = plan(&other, &fw3);
        assert_eq!((p.v2, p.bhb, p.firmware_call()), (V2::Firmware, Bhb::Firmware, Some(FirmwareCall::Workaround3)));
        assert_eq!(p.entry_word(), 1 << ENTRY_WA3_BIT);
        assert_eq!(p.answers(), Workarounds { wa1: 0, wa2: -2, wa3: 0 });
        // The firmware says this core needs no WORKAROUND_1.
        let p = plan(&other, &Firmware { wa1: UNAFFECTED, ..Firmware::NONE });
        assert_eq!(p.v2, V2::Unaffected);
    }

    #[test]
    fn names_known_cores() {
        assert_eq!(core_name(A72.midr), Some("Cortex-A72"));
        assert_eq!(core_name(A53.midr), Some("Cortex-A53"));
        assert_eq!(core_name(0x5100_0000), None);
    }
}

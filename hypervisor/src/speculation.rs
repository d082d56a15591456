//! Branch-predictor hardening of the entry from a partition (ISO-009), per core: reads
//! the core's ID registers and asks the board firmware which SMCCC workarounds it has,
//! lets [`septum_core::speculation::plan`] decide, and installs the result: the word
//! the hardened exception vectors read for this core ([`crate::trap`]) and the vectors
//! themselves. What `SMCCC_ARCH_FEATURES` then tells this core's partition follows from
//! the same plan ([`answers`]).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, MIDR_EL1, VBAR_EL2};
use septum_abi::hypercall::{psci, smccc};
use septum_core::board::Conduit;
use septum_core::hypercall::Workarounds;
use septum_core::speculation::{core_name, plan, CoreIds, Firmware, Plan};

use crate::slots::{cpu_slot, MAX_CPUS};

/// Per core slot: [`Plan::entry_word`], read by the hardened vectors on every entry
/// from a partition (a `u64` each: `AtomicU64` has the same layout).
#[no_mangle]
static SEPTUM_ENTRY_HARDENING: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Per core slot: the plan's `SMCCC_ARCH_FEATURES` answers, packed by [`pack`].
static ANSWERS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(UNSET) }; MAX_CPUS];
const UNSET: u64 = u64::MAX;

/// The board firmware can be called with SMC (the board DTB names PSCI over SMC).
static FIRMWARE_BY_SMC: AtomicBool = AtomicBool::new(false);

extern "C" {
    static el2_vectors_hardened: u8;
}

pub fn set_firmware(conduit: Option<Conduit>) {
    FIRMWARE_BY_SMC.store(conduit == Some(Conduit::Smc), Ordering::Release);
}

fn core_ids() -> CoreIds {
    let id = crate::cpu::id_registers();
    CoreIds { midr: MIDR_EL1.get(), pfr0: id.pfr0, pfr1: id.pfr1, mmfr1: id.mmfr1, isar2: id.isar2 }
}

/// Asks the firmware (Arm DEN 0028's discovery: PSCI 1.0 or later, which knows
/// SMCCC_VERSION, which is 1.1 or later) what `SMCCC_ARCH_FEATURES` says of each
/// workaround on this core.
fn ask_firmware() -> Firmware {
    if !FIRMWARE_BY_SMC.load(Ordering::Acquire) {
        return Firmware::NONE;
    }
    let call = |f: u32, a: u64| crate::cpu::smccc(f, a, 0, 0);
    if call(psci::VERSION, 0) < 0x1_0000 || call(psci::FEATURES, u64::from(smccc::VERSION)) != 0 {
        return Firmware::NONE;
    }
    let version = call(smccc::VERSION, 0);
    if version < i64::from(smccc::VERSION_1_1) {
        return Firmware::NONE;
    }
    let feature = |wa: u32| call(smccc::ARCH_FEATURES, u64::from(wa)) as i32;
    Firmware {
        wa1: feature(smccc::ARCH_WORKAROUND_1),
        wa2: feature(smccc::ARCH_WORKAROUND_2),
        wa3: feature(smccc::ARCH_WORKAROUND_3),
    }
}

/// Decides and installs this core's hardening. Runs on every core before its first
/// guest entry; logs the decision.
pub fn harden_this_core() {
    let ids = core_ids();
    let firmware = ask_firmware();
    let p: Plan = plan(&ids, &firmware);
    let slot = cpu_slot();
    if let (Some(word), Some(answers)) = (SEPTUM_ENTRY_HARDENING.get(slot), ANSWERS.get(slot)) {
        word.store(p.entry_word(), Ordering::Release);
        answers.store(pack(&p.answers()), Ordering::Release);
    }
    if p.hardened() {
        let table = core::ptr::addr_of!(el2_vectors_hardened) as u64;
        VBAR_EL2.set(table);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }
    log::info!(
        "speculation: MPIDR {:#x}, {} (MIDR {:#x}), firmware workarounds {}/{}/{}: {p}",
        crate::cpu::mpidr(),
        core_name(ids.midr).unwrap_or("unknown core"),
        ids.midr,
        firmware.wa1,
        firmware.wa2,
        firmware.wa3
    );
}

fn pack(w: &Workarounds) -> u64 {
    let byte = |v: i32| u64::from(v as i8 as u8);
    byte(w.wa1) | byte(w.wa2) << 8 | byte(w.wa3) << 16
}

/// What `SMCCC_ARCH_FEATURES` tells the partition on this core about the workarounds
/// (unsupported, if the core was never hardened: nothing is claimed that is not done).
pub fn answers() -> Workarounds {
    let packed = ANSWERS.get(cpu_slot()).map_or(UNSET, |a| a.load(Ordering::Acquire));
    if packed == UNSET {
        return Workarounds::NONE;
    }
    let byte = |shift: u32| i32::from((packed >> shift) as u8 as i8);
    Workarounds { wa1: byte(0), wa2: byte(8), wa3: byte(16) }
}

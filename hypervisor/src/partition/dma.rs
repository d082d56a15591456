//! The devices a partition owns that master the bus (DMA-003, DMA-004): which SMMU
//! streams are its, what their faults lead to, and the order in which a stopped
//! partition's devices are silenced before its memory is touched.
//!
//! A restart (or halt) goes: 1. every vCPU of the partition leaves its guest
//! (`power::stop`); 2. bus mastering is turned off in every function of its PCIe host
//! bridge (the command register's BME, through the ECAM window) and 3. its streams abort
//! in the SMMU, its cached translations dropped ([`quiesce`]); 4. its memory is zeroed,
//! reloaded and verified; 5. its streams translate again ([`resume`]); 6. it starts.
//! Between 2 and the partition's own driver turning bus mastering on again, no device
//! of it can write its memory: not the image the hypervisor just verified, not with
//! descriptors its previous run left behind.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use septum_abi::config::{device_flags, PartitionDesc, Range, RegionKind, MAX_PARTITIONS};
use septum_core::events::Event;
use septum_core::health::StopCause;
use septum_core::smmu::{self, PCI_COMMAND, PCI_COMMAND_BUS_MASTER, PCI_VENDOR_ID};
use septum_platform::catalog::{Dma, Streams};
use septum_trust::audit::EventKind;

use super::{caused, current, policy, Runtime, PARTS};
use crate::smmu::SmmuError;

/// The SMMU streams partition `desc`'s devices use, if any (the catalogue says which).
pub fn streams_of(desc: &PartitionDesc) -> Option<Streams> {
    let board = crate::this_board();
    desc.regions().iter().filter(|r| r.kind() == Some(RegionKind::Device)).find_map(|r| {
        match board.device_at(&Range::new(r.pa, r.size))?.dma {
            Dma::Iommu { streams } => Some(streams),
            _ => None,
        }
    })
}

/// Brings up the board's SMMU, if the machine has it (`smmu_base`, from its DTB), with
/// each partition's streams translating through that partition's stage 2 and every
/// other stream aborting. Its interrupts go to the boot core of the first partition
/// with streams (which pays for handling its devices' faults), else to this core.
/// Boot core, after the partitions' stage 2 is built, before any of them runs.
pub fn init(smmu_base: Option<u64>) -> Result<(), SmmuError> {
    let (Some(iommu), Some(base)) = (crate::this_board().iommu, smmu_base) else { return Ok(()) };
    if base != iommu.base {
        return Ok(());
    }
    let owners = || PARTS.iter().filter_map(|p| p.get()).filter_map(|p| Some((p, streams_of(p.desc)?)));
    let irq_core = owners().next().and_then(|(p, _)| p.desc.vcpus().first().copied()).unwrap_or_else(crate::cpu::mpidr);
    crate::smmu::init(base, iommu.event_irq, iommu.gerror_irq, irq_core)?;
    for (p, streams) in owners() {
        resume(p)?;
        log::info!(
            "{}: SMMU streams {:#x}..{:#x} translate with its stage 2 (VMID {})",
            p.desc.name(),
            streams.first,
            streams.first + streams.count,
            p.desc.vmid
        );
    }
    log::info!("SMMU at {base:#x}: on; every other stream aborts");
    Ok(())
}

/// The VMID and stage-2 root of a partition.
fn stage2(p: &Runtime) -> (u16, u64) {
    ((p.vttbr >> 48) as u16, p.vttbr & 0xFFFF_FFFF_FFFF)
}

/// Steps 2 and 3 of a stop (see the module): call with the partition stopped and its
/// load view installed (which maps its ECAM window). An error means its devices may
/// still reach memory: the caller must not reload it.
pub fn quiesce(p: &Runtime) -> Result<(), SmmuError> {
    let Some(streams) = streams_of(p.desc) else { return Ok(()) };
    if let Some(live) = LIVE.get(p.index) {
        live.store(false, Ordering::Release);
    }
    for ecam in p.desc.regions().iter().filter(|r| r.param & device_flags::PCI_ECAM != 0) {
        bus_mastering_off(ecam.pa);
    }
    crate::smmu::abort(streams, stage2(p).0)?;
    // What its devices did before they were silenced belongs to the run that ended:
    // counted, never held against the next one.
    drain_events();
    if let Some(f) = FAULTED.get(p.index) {
        f.store(0, Ordering::Release);
    }
    Ok(())
}

/// Step 5 of a restart: its streams translate with its (rebuilt) memory again.
pub fn resume(p: &Runtime) -> Result<(), SmmuError> {
    let Some(streams) = streams_of(p.desc) else { return Ok(()) };
    let (vmid, root) = stage2(p);
    crate::smmu::translate(streams, vmid, root)?;
    if let Some(live) = LIVE.get(p.index) {
        live.store(true, Ordering::Release);
    }
    Ok(())
}

/// Clears Bus Master Enable in every function on bus 0 of the ECAM window at `ecam`.
fn bus_mastering_off(ecam: u64) {
    for dev in 0..32 {
        for func in 0..8 {
            let at = smmu::ecam_function(ecam, dev, func);
            // SAFETY: `at` is a function's configuration space in the partition's own
            // ECAM window (flagged PCI_ECAM, checked against the board's PCIe host bridge
            // at boot), mapped as Device memory in this core's load view; the partition
            // is stopped, so nothing else touches it. An absent function reads all ones.
            unsafe {
                if core::ptr::read_volatile((at + PCI_VENDOR_ID) as *const u16) == 0xFFFF {
                    continue;
                }
                let cmd = (at + PCI_COMMAND) as *mut u16;
                let value = core::ptr::read_volatile(cmd);
                core::ptr::write_volatile(cmd, value & !PCI_COMMAND_BUS_MASTER);
            }
        }
    }
}

/// Per partition: a DMA fault waiting for its policy, as the generation it happened in
/// plus one (0: none), so a fault drained after the partition was already stopped
/// stops nothing of its next run.
static FAULTED: [AtomicU64; MAX_PARTITIONS] = [const { AtomicU64::new(0) }; MAX_PARTITIONS];
/// Per partition: its streams translate (between [`resume`] and [`quiesce`]).
static LIVE: [AtomicBool; MAX_PARTITIONS] = [const { AtomicBool::new(false) }; MAX_PARTITIONS];
/// Events of streams no partition owns (reported at powers of two).
static STRAY: AtomicU64 = AtomicU64::new(0);
/// Times the event queue overflowed (reported at powers of two).
static LOST: AtomicU64 = AtomicU64::new(0);

/// The SMMU's interrupt reached this core: every event is logged (within its
/// partition's budget), counted and recorded, and a partition whose device's
/// transaction was stopped is marked for its fault policy ([`stop_if_faulted`]; its
/// boot core is kicked if it is another's). False if `intid` is not the SMMU's.
pub fn on_smmu_irq(intid: u32) -> bool {
    if !crate::smmu::owns_irq(intid) {
        return false;
    }
    drain_events();
    for (index, p) in PARTS.iter().enumerate().filter_map(|(i, p)| Some((i, p.get()?))) {
        if FAULTED[index].load(Ordering::Acquire) != 0 && current().is_none_or(|(c, _)| c.index != index) {
            if let Some(&mpidr) = p.desc.vcpus().first() {
                crate::gic::kick(mpidr);
            }
        }
    }
    true
}

/// Takes every event the SMMU recorded (bounded), as [`on_smmu_irq`] says.
fn drain_events() {
    let drained = crate::smmu::drain(|e| {
        let owner =
            PARTS.iter().filter_map(|p| p.get()).find(|p| streams_of(p.desc).is_some_and(|s| s.contains(e.sid)));
        match owner {
            Some(p) => fault_of(p, e),
            None => {
                let n = STRAY.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    log::warn!("SMMU: {e} ({n} of streams of no partition so far)");
                }
            }
        }
    });
    if drained.overflowed || drained.gerror & crate::smmu::GERROR_EVENTQ_FULL != 0 {
        let n = LOST.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            log::warn!(
                "SMMU: event queue full, events lost ({n} times so far): a device faulted faster than its events \
                 were read; the first stopped its partition"
            );
        }
    }
    let other = drained.gerror & !crate::smmu::GERROR_EVENTQ_FULL;
    if other != 0 {
        log::error!("SMMU: global error {other:#x}");
    }
}

/// One event of partition `p`'s streams, counted and logged within the partition's
/// budget: the first transaction fault of a running partition is logged, recorded in
/// the audit log and marks it for its policy; the rest are logged at powers of two.
fn fault_of(p: &Runtime, e: smmu::Event) {
    let live = LIVE.get(p.index).is_some_and(|l| l.load(Ordering::Acquire));
    let first = FAULTED.get(p.index).filter(|f| live && e.is_transaction_fault() && f.load(Ordering::Acquire) == 0);
    let Some(f) = first else {
        // A device faulting once faults for every word it moves: the rest of a run's
        // events are logged at powers of two.
        if let Some(n) = p.note_sparse(Event::DmaFault) {
            log::warn!("{}: DMA FAULT {e} ({n} so far)", p.desc.name());
        }
        return;
    };
    caused!(p, Event::DmaFault, warn, "{}: DMA FAULT {e}; applying its policy", p.desc.name());
    crate::trust::record(EventKind::Fault, p.index as u8, 2, u64::from(e.kind) | u64::from(e.sid) << 32, &[0; 64]);
    let generation = p.power.lock().generation();
    f.store(generation + 1, Ordering::Release);
}

/// If the partition on this core has a DMA fault waiting, its policy applies now (never
/// returns then). Called where the core left its guest for the hypervisor's interrupt
/// or kick.
pub fn stop_if_faulted() {
    let Some((p, vcpu)) = current() else { return };
    let Some(f) = FAULTED.get(p.index) else { return };
    if f.load(Ordering::Acquire) == 0 {
        return;
    }
    let faulted = f.swap(0, Ordering::AcqRel);
    if faulted == crate::slots::entered() + 1 {
        policy::apply(p, vcpu, StopCause::Fault)
    }
}

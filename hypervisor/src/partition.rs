//! Partitions at run time: loading a pristine image, entering a vCPU, and carrying out
//! what a trap means: answering a hypercall, or applying the health monitor's decision
//! (restart with back-off, halt, safe state) after a violation.
//!
//! Each vCPU is pinned to its own core. A core whose vCPU is off waits here (WFE) for
//! a start: the boot vCPU's at boot and after each restart, the others' from the
//! guest's PSCI `CPU_ON`. A partition stops as a whole: the core that decides a restart
//! or halt moves the partition to a new generation and kicks its other cores (a
//! physical SGI), which leave their guest before its memory is reloaded.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, HCR_EL2, MIDR_EL1, VMPIDR_EL2, VTTBR_EL2};
use septum_abi::bundle::{Bundle, EntryKind};
use septum_abi::config::{Config, MemRegion, PartitionDesc, RegionKind, DTB_MAX, MAX_PARTITIONS, MAX_REGIONS};
use septum_abi::hypercall::{StartCondition, INVALID_PARAMETERS, NOT_SUPPORTED, SUCCESS};
use septum_core::board::Conduit;
use septum_core::console::{Admit, LineBuffer, RateLimit};
use septum_core::health::{Decision, HaltReason, Health, StopCause};
use septum_core::hypercall::{answer, Answer, Caller};
use septum_core::traps::{Exit, TrapInfo, Violation};
use septum_core::vcpu::{Start, VcpuPower};
use septum_core::vgicd::{self, Outcome, VirtualDistributor};
use septum_core::vgicd2;
use septum_core::vgicr::{self, VirtualRedistributors};
use septum_platform::catalog::GicVersion;
use septum_trust::audit::EventKind;
use septum_trust::format::RootBody;
use septum_trust::hash::Hash;
use septum_trust::verify::TrustError;
use spin::{Mutex, Once};

use crate::cpu;
use crate::entry::enter_guest;
use crate::trap::TrapFrame;

/// Cores the hypervisor can drive (stack slots in the linker script).
pub const MAX_CPUS: usize = 8;
const NONE: usize = usize::MAX;

/// SPSR for a guest's first instruction: EL1h, interrupts masked.
const SPSR_EL1H_MASKED: u64 = 0x3C5;

struct Runtime {
    desc: &'static PartitionDesc,
    index: usize,
    vttbr: u64,
    state: Mutex<State>,
    power: Mutex<VcpuPower>,
    /// The distributor it sees (its own SPIs and doorbell interrupts only).
    vgicd: Mutex<VirtualDistributor>,
    /// The redistributors it sees, one per vCPU.
    vgicr: Mutex<VirtualRedistributors>,
    /// The doorbell INTIDs it receives (rings of its channels' peers).
    doorbells_in: [u32; MAX_REGIONS],
}

struct State {
    health: Health,
    console: LineBuffer,
    limit: RateLimit,
    /// Per doorbell region (by region index).
    doorbells: [Option<Doorbell>; MAX_REGIONS],
    start: StartCondition,
    /// SGIs that named vCPUs outside the partition (ignored).
    sgis_outside: u64,
}

pub struct System {
    bundle: Bundle<'static>,
    /// The root in force and the signed configuration's hash: a restart verifies the
    /// reloaded image again, against them.
    root: RootBody,
    config_hash: Hash,
    ticks_per_ms: u64,
}

/// Each accepted partition's run-time state, by its index in the configuration.
static PARTS: [Once<Runtime>; MAX_PARTITIONS] = [const { Once::new() }; MAX_PARTITIONS];

/// Partition `index`, if it was accepted.
fn part(index: usize) -> Option<&'static Runtime> {
    PARTS.get(index)?.get()
}

static SYSTEM: Once<System> = Once::new();
/// The partition each core slot runs (slot 0 is the boot core).
static SLOT_PARTITION: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(NONE) }; MAX_CPUS];
/// The vCPU of that partition each core slot runs.
static SLOT_VCPU: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// The partition generation the slot's vCPU entered in (see [`VcpuPower::generation`]).
static SLOT_GENERATION: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The slot's core is running its guest (not waiting for a start).
static SLOT_RUNNING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// How long a stopping partition waits for its other cores to leave their guest.
const STOP_WAIT_MS: u64 = 100;

#[derive(Clone, Copy, Debug)]
pub enum LoadError {
    Bundle(septum_abi::bundle::BundleError),
    Stage2(septum_core::pagetable::MapError),
    /// The image or device tree does not fit where the configuration puts it.
    TooLarge(&'static str),
    /// The image in its RAM is not what its signed manifest names.
    Refused(TrustError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Bundle(e) => write!(f, "{e}"),
            LoadError::Stage2(e) => write!(f, "stage-2 tables: {e:?}"),
            LoadError::TooLarge(what) => write!(f, "its {what} does not fit where the configuration puts it"),
            LoadError::Refused(e) => write!(f, "image refused: {e}"),
        }
    }
}

/// Loads every partition's pristine image and device tree, verifies the image as it
/// lies in the partition's RAM against its signed manifest, and only then builds the
/// stage 2 that maps it. A refused critical partition puts the system in its safe
/// state; any other refused partition is not started and the rest run.
pub fn init(
    config: Config<'static>,
    bundle: Bundle<'static>,
    root: RootBody,
    config_hash: Hash,
) -> Result<&'static System, (usize, LoadError)> {
    let ticks_per_ms = (cpu::counter_hz() / 1000).max(1);
    let mut accepted: [(&str, u64); MAX_PARTITIONS] = [("", 0); MAX_PARTITIONS];
    let mut n_accepted = 0;
    for (i, desc) in config.partitions.iter().enumerate() {
        // Its memory is mapped in EL2 for this iteration only, on this core (ISO-010).
        let _mapped = crate::stage1::load_view(i);
        match load(desc, i, &bundle).and_then(|()| verify_loaded(desc, i, &bundle, &root, &config_hash)) {
            Ok(counter) => {
                accepted[n_accepted] = (desc.name(), counter);
                n_accepted += 1;
            }
            Err(LoadError::Refused(e)) if !desc.is_critical() => {
                // A warning, not a stop: the system goes on without this partition.
                log::warn!("{}: image not accepted: {e}; partition not started, the others run", desc.name());
                crate::trust::record(EventKind::PartitionRefused, i as u8, e.code(), 0, &[0; 64]);
                // Leave nothing unverified behind in its memory.
                for r in desc.regions().iter().filter(|r| matches!(r.kind(), Some(RegionKind::Ram))) {
                    // SAFETY: this partition's validated RAM; it never runs.
                    unsafe { crate::physmem::zero(r.pa, r.size) };
                }
                continue;
            }
            Err(LoadError::Refused(e)) => {
                log::error!("{}: REFUSED: {e}", desc.name());
                safe_state("critical partition image refused by the chain of trust")
            }
            Err(e) => return Err((i, e)),
        }
        let root = crate::stage2::build(desc).map_err(|e| (i, LoadError::Stage2(e)))?;
        // Built in its static: a partition's run-time state is kilobytes, and the boot
        // stack must not hold all of them at once.
        let Some(slot) = PARTS.get(i) else { return Err((i, LoadError::TooLarge("partition table"))) };
        let part = slot.call_once(|| Runtime {
            desc,
            index: i,
            vttbr: (u64::from(desc.vmid) << 48) | root,
            state: Mutex::new(State {
                health: Health::new(desc, ticks_per_ms),
                console: LineBuffer::default(),
                limit: RateLimit::console(cpu::counter_hz(), cpu::counter()),
                doorbells: doorbell_limits(desc),
                start: StartCondition::NormalStart,
                sgis_outside: 0,
            }),
            power: Mutex::new({
                let mut power = VcpuPower::new(desc.vcpus().len());
                power.stop_all(Some(boot_start(desc)));
                power
            }),
            vgicd: Mutex::new(VirtualDistributor::new(0, &[], &[])),
            vgicr: Mutex::new(VirtualRedistributors::new(desc.vcpus().len())),
            doorbells_in: doorbells_received(&config, i),
        });
        *part.vgicd.lock() = fresh_distributor(part);
    }
    crate::trust::accept(&root, &accepted[..n_accepted]);
    Ok(SYSTEM.call_once(|| System { bundle, root, config_hash, ticks_per_ms }))
}

/// The doorbell INTIDs partition `index` receives: those of the doorbells of other
/// partitions that signal it.
fn doorbells_received(config: &Config<'_>, index: usize) -> [u32; MAX_REGIONS] {
    let mut out = [0; MAX_REGIONS];
    let ins = config
        .partitions
        .iter()
        .flat_map(|p| p.regions())
        .filter(|r| r.kind() == Some(RegionKind::Doorbell) && r.signal_partition as usize == index);
    for (slot, r) in out.iter_mut().zip(ins) {
        *slot = r.signal_intid;
    }
    out
}

/// The distributor a partition sees at (re)start: its SPIs and doorbells, all disabled.
fn fresh_distributor(part: &Runtime) -> VirtualDistributor {
    let n = part.doorbells_in.iter().position(|&d| d == 0).unwrap_or(MAX_REGIONS);
    VirtualDistributor::new(part.desc.vcpus().len(), part.desc.irqs(), &part.doorbells_in[..n])
}

/// Verifies partition `index`'s image where `load` put it; the result is its manifest's
/// security counter.
fn verify_loaded(
    desc: &PartitionDesc,
    index: usize,
    bundle: &Bundle<'_>,
    root: &RootBody,
    config_hash: &Hash,
) -> Result<u64, LoadError> {
    let len = bundle.payload_len(EntryKind::Image, index as u32).unwrap_or(0) as usize;
    let pa = desc.ram_ipa_to_pa(desc.image_ipa).ok_or(LoadError::TooLarge("image"))?;
    // SAFETY: `load` just copied the image to `[pa, pa+len)`, inside this partition's
    // validated RAM; the partition is not running and the view ends with this call.
    let in_ram = unsafe { crate::physmem::partition_bytes(pa, len) };
    crate::trust::verify_partition(root, bundle, index, desc.name(), config_hash, in_ram)
        .map(|m| m.security_counter)
        .map_err(LoadError::Refused)
}

/// Zeroes the partition's RAM and copies in its image and device tree from the bundle
/// (CRC-checked on every load), then cleans them to the point of coherency.
fn load(desc: &PartitionDesc, index: usize, bundle: &Bundle<'_>) -> Result<(), LoadError> {
    let image = bundle.payload(EntryKind::Image, index as u32).map_err(LoadError::Bundle)?;
    let dtb = bundle.payload(EntryKind::DeviceTree, index as u32).map_err(LoadError::Bundle)?;
    // Its RAM and the channel memory it writes start from zero; channel memory it only
    // reads belongs to the peer and is left alone.
    let own = |r: &&MemRegion| matches!(r.kind(), Some(RegionKind::Ram | RegionKind::SharedRw));
    for r in desc.regions().iter().filter(own) {
        // SAFETY: validated memory of this partition only (channel regions it writes are
        // shared solely with readers), and the partition is not running while it loads;
        // a reading peer sees zeros, which the channel protocol treats as any other bytes.
        unsafe { crate::physmem::zero(r.pa, r.size) };
    }
    // Validation put the image inside the partition's RAM and reserved DTB_MAX bytes for
    // the device tree; check the actual sizes against that, translate, then copy.
    if dtb.len() as u64 > DTB_MAX {
        return Err(LoadError::TooLarge("device tree"));
    }
    for (what, ipa, data) in [("image", desc.image_ipa, image), ("device tree", desc.dtb_ipa, dtb)] {
        let pa = desc.ram_ipa_to_pa(ipa).filter(|_| desc.ram_contains(ipa, data.len() as u64));
        let Some(pa) = pa else { return Err(LoadError::TooLarge(what)) };
        // SAFETY: inside this partition's validated RAM; the bundle is elsewhere
        // (reserved memory), so the ranges do not overlap.
        unsafe { crate::physmem::copy_in(pa, data) };
    }
    for r in desc.regions().iter().filter(own) {
        cpu::clean_dcache_range(r.pa, r.size);
    }
    cpu::invalidate_icache();
    Ok(())
}

/// A doorbell's rate limit and counters.
#[derive(Clone, Copy)]
struct Doorbell {
    limit: RateLimit,
    rings: u64,
    dropped: u64,
    /// When drops were last reported (at most once a second).
    reported: u64,
}

fn doorbell_limits(desc: &PartitionDesc) -> [Option<Doorbell>; MAX_REGIONS] {
    let mut out = [None; MAX_REGIONS];
    let (hz, now) = (cpu::counter_hz(), cpu::counter());
    for (i, r) in desc.regions().iter().enumerate() {
        if r.kind() == Some(RegionKind::Doorbell) {
            let rate = u64::from(r.param.max(1));
            let limit = RateLimit::new(rate, rate.div_ceil(10).max(1), hz, now);
            out[i] = Some(Doorbell { limit, rings: 0, dropped: 0, reported: now });
        }
    }
    out
}

/// Assigns a core slot to vCPU `vcpu` of a partition.
pub fn assign(slot: usize, partition: usize, vcpu: usize) {
    if let (Some(s), Some(v)) = (SLOT_PARTITION.get(slot), SLOT_VCPU.get(slot)) {
        v.store(vcpu, Ordering::Release);
        s.store(partition, Ordering::Release);
    }
}

/// The boot vCPU's start: the image's entry, its device tree in `x0`.
fn boot_start(desc: &PartitionDesc) -> Start {
    Start { entry: desc.entry_ipa, x0: desc.dtb_ipa }
}

impl System {
    /// The partitions that were accepted, with their index in the configuration.
    pub fn partitions(&self) -> impl Iterator<Item = (usize, &'static PartitionDesc)> + '_ {
        PARTS.iter().filter_map(Once::get).map(|p| (p.index, p.desc))
    }
}

/// Runs the vCPU assigned to this core's slot, once it is started. Never returns.
pub fn run(slot: usize) -> ! {
    if SYSTEM.get().is_none() {
        cpu::park()
    }
    let index = SLOT_PARTITION.get(slot).map_or(NONE, |s| s.load(Ordering::Acquire));
    let Some(part) = part(index) else {
        log::info!("cpu slot {slot} (MPIDR {:#x}) has no partition: parked", cpu::mpidr());
        cpu::park()
    };
    let vcpu = SLOT_VCPU.get(slot).map_or(0, |v| v.load(Ordering::Acquire));
    wait_for_start(part, vcpu)
}

/// Waits on this core until vCPU `vcpu` of `part` is started, then enters it.
fn wait_for_start(part: &Runtime, vcpu: usize) -> ! {
    let slot = crate::cpu_slot();
    if let Some(r) = SLOT_RUNNING.get(slot) {
        r.store(false, Ordering::Release);
    }
    // A start is checked after the core is ready to be kicked, so none is missed.
    crate::gic::ready_to_sleep();
    loop {
        let started = {
            let mut power = part.power.lock();
            power.take_start(vcpu).map(|s| (s, power.generation()))
        };
        if let Some((start, generation)) = started {
            if let Some(g) = SLOT_GENERATION.get(slot) {
                g.store(generation, Ordering::Release);
            }
            log::info!("{}: vCPU {vcpu} starting on MPIDR {:#x}", part.desc.name(), cpu::mpidr());
            enter(part, vcpu, start)
        }
        crate::gic::sleep_until_kicked();
    }
}

/// Kicks the cores of `part`'s vCPUs other than this core's: one waiting takes the
/// start it has ([`wait_for_start`]); one running its guest leaves it if the partition
/// was stopped ([`on_kick`]), else takes the kick as a stale one.
fn wake_others(part: &Runtime) {
    let me = cpu::mpidr();
    for &mpidr in part.desc.vcpus().iter().filter(|&&m| m != me) {
        crate::gic::kick(mpidr);
    }
}

/// Sets up EL2 for `part` on this core and enters vCPU `vcpu` at `start`.
fn enter(part: &Runtime, vcpu: usize, start: Start) -> ! {
    // Stage 2 on; physical IRQ/FIQ/SError to EL2; trap SMC, set/way maintenance, ACTLR,
    // implementation-defined registers, LORegions and RAS error records; synchronous
    // external aborts to EL2; EL1 is AArch64; pointer-auth keys stay the guest's.
    HCR_EL2.write(
        HCR_EL2::VM::SET
            + HCR_EL2::SWIO::SET
            + HCR_EL2::FMO::SET
            + HCR_EL2::IMO::SET
            + HCR_EL2::AMO::SET
            + HCR_EL2::TSC::SET
            + HCR_EL2::TIDCP::SET
            + HCR_EL2::TACR::SET
            + HCR_EL2::TSW::SET
            + HCR_EL2::RW::SET
            + HCR_EL2::TLOR::SET
            + HCR_EL2::TERR::SET
            + HCR_EL2::TEA::SET
            + HCR_EL2::APK::SET
            + HCR_EL2::API::SET,
    );
    crate::el1::own_core_debug_and_pmu();
    crate::stage2::set_vtcr();
    VTTBR_EL2.set(part.vttbr);
    // The guest sees the real CPU model and a virtual MPIDR numbered from 0.
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 only sets what the guest's MIDR_EL1 reads return.
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nostack, preserves_flags)) };
    // Bit 31 is RES1; Aff0 = the vCPU's number.
    VMPIDR_EL2.set(1 << 31 | vcpu as u64);
    crate::el1::reset();
    crate::gic::init_core();
    cpu::flush_guest_tlb();
    if let Some(r) = SLOT_RUNNING.get(crate::cpu_slot()) {
        r.store(true, Ordering::Release);
    }
    let mut frame = TrapFrame::default();
    frame.x[0] = start.x0;
    frame.elr = start.entry;
    frame.spsr = SPSR_EL1H_MASKED;
    enter_guest(&frame)
}

/// The partition and vCPU this core runs.
fn current() -> Option<(&'static Runtime, usize)> {
    let slot = crate::cpu_slot();
    let index = SLOT_PARTITION.get(slot)?.load(Ordering::Acquire);
    let vcpu = SLOT_VCPU.get(slot)?.load(Ordering::Acquire);
    SYSTEM.get()?;
    Some((part(index)?, vcpu))
}

/// The partition generation this core's vCPU entered in.
fn entered_generation() -> u64 {
    SLOT_GENERATION.get(crate::cpu_slot()).map_or(0, |g| g.load(Ordering::Acquire))
}

/// Whether the partition was stopped as a whole since this core's vCPU entered it.
fn stopped_since_entry(part: &Runtime) -> bool {
    part.power.lock().generation() != entered_generation()
}

/// The hypervisor's kick (a physical SGI) reached this core: if its partition is being
/// stopped, leave the guest and wait for a start; otherwise it was a stale kick.
pub fn on_kick() {
    if let Some((part, vcpu)) = current() {
        if stopped_since_entry(part) {
            wait_for_start(part, vcpu)
        }
        crate::gic::place_pending();
    }
}

/// The core slot running vCPU `vcpu` of partition `index`.
fn slot_of(index: usize, vcpu: usize) -> Option<usize> {
    (0..MAX_CPUS)
        .find(|&s| SLOT_PARTITION[s].load(Ordering::Acquire) == index && SLOT_VCPU[s].load(Ordering::Acquire) == vcpu)
}

/// A vCPU wrote an SGI generation register: the SGI goes to the named vCPUs of its own
/// partition that are running; names outside the partition are ignored and reported.
fn send_sgi(part: &Runtime, vcpu: usize, value: u64) {
    deliver_sgi(part, septum_core::vgic::sgi_targets(value, vcpu, part.desc.vcpus().len()));
}

/// Delivers a decoded SGI (GICv3 `ICC_SGI1R_EL1` or GICv2 `GICD_SGIR`) to the named
/// vCPUs of `part`; names outside the partition are ignored and reported.
fn deliver_sgi(part: &Runtime, req: septum_core::vgic::SgiRequest) {
    if req.outside {
        let n = {
            let mut st = part.state.lock();
            st.sgis_outside += 1;
            st.sgis_outside
        };
        if n.is_power_of_two() {
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

/// Makes virtual interrupt `intid` pending for vCPU `vcpu` of `part`, if that vCPU
/// runs: placed at once when it is this core's, else its core is kicked to place it.
fn deliver(part: &Runtime, vcpu: usize, intid: u32) {
    let Some(slot) = slot_of(part.index, vcpu) else { return };
    if !SLOT_RUNNING[slot].load(Ordering::Acquire) {
        return;
    }
    crate::gic::post(slot, intid);
    if slot == crate::cpu_slot() {
        crate::gic::place_pending();
    } else if let Some(&mpidr) = part.desc.vcpus().get(vcpu) {
        crate::gic::kick(mpidr);
    }
}

/// Stops every vCPU of `part` (a new generation, all off; the caller decides what
/// starts again) and waits, bounded, until its other cores have left their guest.
/// False if another core is already stopping the partition.
fn stop_partition(part: &Runtime, me: usize) -> bool {
    {
        let mut power = part.power.lock();
        if power.generation() != entered_generation() {
            return false;
        }
        power.stop_all(None);
    }
    let others = || {
        (0..MAX_CPUS).filter(move |&s| {
            s != crate::cpu_slot()
                && SLOT_PARTITION[s].load(Ordering::Acquire) == part.index
                && SLOT_VCPU[s].load(Ordering::Acquire) != me
        })
    };
    wake_others(part);
    let deadline = cpu::counter() + STOP_WAIT_MS * (cpu::counter_hz() / 1000);
    while others().any(|s| SLOT_RUNNING[s].load(Ordering::Acquire)) {
        if cpu::counter() > deadline {
            log::error!("{}: a vCPU did not leave its guest within {STOP_WAIT_MS} ms", part.desc.name());
            break;
        }
        core::hint::spin_loop();
    }
    true
}

/// A hypercall from the guest this core runs (the common exit: [`crate::trap`] takes it
/// straight here, without building the full [`TrapInfo`]).
pub fn on_hypercall(frame: &mut TrapFrame, function: u32, args: [u64; 7]) {
    let Some((part, vcpu)) = current() else {
        log::error!("hypercall from a core with no partition");
        cpu::park()
    };
    hypercall(part, vcpu, frame, function, args)
}

/// Answers hypercall `function` of vCPU `vcpu` of `part`, or carries out what it asks.
fn hypercall(part: &Runtime, vcpu: usize, frame: &mut TrapFrame, function: u32, args: [u64; 7]) {
    // Only PARTITION_STATUS reads these: other calls do not take the lock.
    let (start, restarts) = if function == septum_abi::hypercall::PARTITION_STATUS {
        let st = part.state.lock();
        (st.start, st.health.restarts())
    } else {
        (StartCondition::NormalStart, 0)
    };
    let caller = Caller {
        vcpu,
        vcpu_count: part.desc.vcpus().len(),
        start,
        restarts,
        audit_reader: part.desc.is_audit_reader(),
        workarounds: crate::speculation::answers(),
    };
    match answer(function, args, &caller) {
        Answer::Return(regs) => frame.x[..4].copy_from_slice(&regs),
        Answer::ConsoleWrite { bytes, len } => {
            let name = part.desc.name();
            let now = cpu::counter();
            let mut st = part.state.lock();
            let State { console, limit, .. } = &mut *st;
            console.push(&bytes[..len], |l| match limit.admit(now) {
                Admit::Write { dropped } => {
                    if dropped > 0 {
                        log::warn!("{name}: {dropped} console lines dropped (rate limit)");
                    }
                    crate::console::line(name, format_args!("{l}"));
                }
                Admit::Drop => {}
            });
            frame.x[0] = SUCCESS;
        }
        Answer::AuditInfo => {
            frame.x[..4].copy_from_slice(&match crate::trust::audit_info() {
                Some((slots, next_slot, next_seq)) => [SUCCESS, u64::from(slots), u64::from(next_slot), next_seq],
                None => [NOT_SUPPORTED, 0, 0, 0],
            });
        }
        Answer::AuditRead { slot, half } => match crate::trust::audit_read(slot, half) {
            Some(words) => {
                frame.x[0] = SUCCESS;
                frame.x[1..17].copy_from_slice(&words);
            }
            None => frame.x[0] = INVALID_PARAMETERS,
        },
        Answer::CpuOff => {
            log::info!("{}: vCPU {vcpu} turned itself off (PSCI CPU_OFF)", part.desc.name());
            part.power.lock().cpu_off(vcpu);
            wait_for_start(part, vcpu)
        }
        Answer::CpuOn { target, entry, context } => {
            let result = part.power.lock().cpu_on(vcpu, target, entry, context);
            frame.x[0] = match result {
                Ok(started) => {
                    // Its core sleeps until kicked (`wait_for_start`).
                    if let Some(&mpidr) = part.desc.vcpus().get(started) {
                        crate::gic::kick(mpidr);
                    }
                    SUCCESS
                }
                Err(e) => i64::from(e) as u64,
            };
        }
        Answer::AffinityInfo { target, level } => {
            frame.x[0] = part.power.lock().affinity_info(target, level) as u64;
        }
        Answer::Stop(cause) => {
            let what = match cause {
                StopCause::ResetRequest => "asked for PSCI SYSTEM_RESET",
                StopCause::OffRequest => "asked for PSCI SYSTEM_OFF",
                StopCause::Fault => "stopped",
            };
            log::warn!("{}: {what}; applying its policy", part.desc.name());
            apply_policy(part, vcpu, cause)
        }
    }
    // HVC's preferred return address is already the next instruction.
}

/// Carries out what a partition's trap means.
pub fn on_exit(frame: &mut TrapFrame, exit: Exit, info: &TrapInfo) {
    let Some((part, vcpu)) = current() else {
        log::error!("trap from a core with no partition: {}", septum_core::esr::Esr(info.esr));
        cpu::park()
    };
    match exit {
        Exit::Hypercall { function, args } => hypercall(part, vcpu, frame, function, args),
        Exit::SetWayMaintenance => frame.elr += 4,
        Exit::Sgi { reg } => {
            send_sgi(part, vcpu, frame.reg(reg));
            frame.elr += 4;
        }
        Exit::Violation(v) => {
            if let Violation::Stage2DataAbort { ipa, esr, .. } = v {
                let gic = crate::this_board().gic;
                if gic.version == GicVersion::V2 {
                    if let Some(access) = vgicd2::decode(gic.distributor, ipa, esr) {
                        emulate_distributor_v2(part, vcpu, access, frame);
                        frame.elr += 4;
                        return;
                    }
                } else {
                    if let Some(access) = vgicd::decode(gic.distributor, ipa, esr) {
                        emulate_distributor(part, access, frame);
                        frame.elr += 4;
                        return;
                    }
                    let vcpus = part.desc.vcpus().len();
                    if let Some((target, access)) = vgicr::decode(gic.redistributors, vcpus, ipa, esr) {
                        emulate_redistributor(part, target, access, frame);
                        frame.elr += 4;
                        return;
                    }
                }
                if let Some(access) = septum_core::doorbell::decode(part.desc, ipa, esr) {
                    ring(part, access, ipa, frame);
                    frame.elr += 4;
                    return;
                }
            }
            report(part, &v, frame);
            apply_policy(part, vcpu, StopCause::Fault)
        }
    }
}

/// A doorbell access: a write rings (within the configured rate; the excess is counted
/// and reported, never delivered), a read returns zero. A ring reaches the peer as the
/// channel's doorbell interrupt, so a flood can interrupt it at most at that rate.
fn ring(part: &Runtime, access: septum_core::doorbell::DoorbellAccess, ipa: u64, frame: &mut TrapFrame) {
    if !access.write {
        frame.set_reg(access.reg, 0);
        return;
    }
    let now = cpu::counter();
    let admitted = {
        let mut st = part.state.lock();
        let Some(Some(db)) = st.doorbells.get_mut(access.region) else { return };
        db.rings += 1;
        let admitted = db.limit.admit(now) != Admit::Drop;
        if !admitted {
            db.dropped += 1;
            if now.saturating_sub(db.reported) >= cpu::counter_hz() {
                db.reported = now;
                log::warn!(
                    "{}: doorbell {ipa:#x} rung {} times, {} over its {} per second dropped",
                    part.desc.name(),
                    db.rings,
                    db.dropped,
                    access.rate
                );
            }
        }
        admitted
    };
    if let Some(region) = part.desc.regions().get(access.region).filter(|_| admitted) {
        signal(region.signal_partition as usize, region.signal_intid);
    }
}

/// An access to the distributor the partition sees: emulated ([`vgicd`]); what it
/// changes of the partition's own SPIs is carried out on the physical distributor, and
/// an access outside its interrupts is counted and reported (at powers of two).
fn emulate_distributor(part: &Runtime, access: vgicd::Access, frame: &mut TrapFrame) {
    let (outcome, effect, outside) = {
        let mut d = part.vgicd.lock();
        let (outcome, effect) = if access.write {
            let (effect, outcome) = d.write(access.offset, access.width, frame.reg(access.reg));
            (outcome, effect)
        } else {
            let (value, outcome) = d.read(access.offset, access.width);
            frame.set_reg(access.reg, value);
            (outcome, vgicd::Effect::None)
        };
        (outcome, effect, d.outside)
    };
    if outcome == Outcome::Outside {
        report_outside_distributor(part, access, outside);
    }
    if access.write {
        after_distributor_write(part, effect);
    }
}

/// An access to the distributor outside the partition's interrupts (`outside` so far),
/// reported at powers of two.
fn report_outside_distributor(part: &Runtime, access: vgicd::Access, outside: u64) {
    if outside.is_power_of_two() {
        log::warn!(
            "{}: GIC distributor: {} at offset {:#x} outside its interrupts ignored ({outside} so far)",
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

/// What a write to the distributor changes: the physical distributor follows the
/// partition's own SPIs, and doorbells the write enabled while latched are delivered.
fn after_distributor_write(part: &Runtime, effect: vgicd::Effect) {
    match effect {
        vgicd::Effect::None => {}
        physical => crate::gic::apply(physical, part.desc.vcpus()),
    }
    while let Some((intid, vcpu)) = part.vgicd.lock().take_ready() {
        deliver(part, vcpu, intid);
    }
}

/// An access to the GICv2 distributor the partition sees ([`vgicd2`]): SPIs and
/// doorbells as on a GICv3, the banked SGI/PPI registers of the accessing vCPU, and
/// `GICD_SGIR`, whose SGIs go to the partition's own vCPUs only.
fn emulate_distributor_v2(part: &Runtime, vcpu: usize, access: vgicd::Access, frame: &mut TrapFrame) {
    let (outcome, effect, sgi, outside) = {
        let mut d = part.vgicd.lock();
        let mut r = part.vgicr.lock();
        if access.write {
            let w = vgicd2::write(&mut d, &mut r, vcpu, access.offset, access.width, frame.reg(access.reg));
            (w.outcome, w.effect, w.sgi, d.outside)
        } else {
            let (value, outcome) = vgicd2::read(&mut d, &mut r, vcpu, access.offset, access.width);
            frame.set_reg(access.reg, value);
            (outcome, vgicd::Effect::None, None, d.outside)
        }
    };
    if outcome == Outcome::Outside {
        report_outside_distributor(part, access, outside);
    }
    if !access.write {
        return;
    }
    after_distributor_write(part, effect);
    if let Some(req) = sgi {
        deliver_sgi(part, req);
    }
    deliver_released_sgis(part, vcpu);
}

/// An access to one of the partition's redistributors (any vCPU may reach any of its
/// partition's, as on hardware): emulated ([`vgicr`]); the rest counted and reported.
fn emulate_redistributor(part: &Runtime, target: usize, access: vgicd::Access, frame: &mut TrapFrame) {
    let (outcome, outside) = {
        let mut r = part.vgicr.lock();
        let outcome = if access.write {
            r.write(target, access.offset, access.width, frame.reg(access.reg))
        } else {
            let (value, outcome) = r.read(target, access.offset, access.width);
            frame.set_reg(access.reg, value);
            outcome
        };
        (outcome, r.outside)
    };
    if access.write {
        deliver_released_sgis(part, target);
    }
    if outcome == Outcome::Outside && outside.is_power_of_two() {
        log::warn!(
            "{}: GIC redistributor {target}: {} at offset {:#x} not emulated, ignored ({outside} so far)",
            part.desc.name(),
            if access.write { "write" } else { "read" },
            access.offset
        );
    }
}

/// Whether SPI `intid` is one of the partition's on this core (to forward it).
pub fn owns_spi(intid: u32) -> bool {
    current().is_some_and(|(part, _)| part.desc.irqs().contains(&intid))
}

/// Returns the partition's SPIs and distributor to their state at boot: disabled,
/// inactive (a restarted or halted partition must not keep a device interrupting).
fn reset_interrupts(part: &Runtime) {
    for &intid in part.desc.irqs() {
        crate::gic::release_spi(intid);
    }
    *part.vgicd.lock() = fresh_distributor(part);
    *part.vgicr.lock() = VirtualRedistributors::new(part.desc.vcpus().len());
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

/// One log record per violation: partition, what it did, where, and the decoded ESR.
fn report(part: &Runtime, v: &Violation, frame: &TrapFrame) {
    let name = part.desc.name();
    crate::trust::record(EventKind::Fault, part.index as u8, 1, v.esr().0, &[0; 64]);
    match *v {
        Violation::Stage2DataAbort { ipa, va, write, esr } => log::warn!(
            "{name}: FAULT {}: {} at IPA {ipa:#x} (VA {va:#x}), PC {:#x}; {esr}",
            v.summary(),
            if write { "write" } else { "read" },
            frame.elr
        ),
        Violation::Stage2InstructionAbort { ipa, va, esr } => {
            log::warn!("{name}: FAULT {}: fetch at IPA {ipa:#x} (VA {va:#x}); {esr}", v.summary())
        }
        Violation::Smc { function, esr } => {
            log::warn!("{name}: FAULT {}: function {function:#010x}, PC {:#x}; {esr}", v.summary(), frame.elr)
        }
        _ => log::warn!("{name}: FAULT {}: PC {:#x}; {}", v.summary(), frame.elr, v.esr()),
    }
}

fn apply_policy(part: &Runtime, vcpu: usize, cause: StopCause) -> ! {
    let Some(sys) = SYSTEM.get() else { cpu::park() };
    let name = part.desc.name();
    // The partition stops as a whole, once: a vCPU stopping while another core already
    // stops it just waits for the restart.
    if !stop_partition(part, vcpu) {
        wait_for_start(part, vcpu)
    }
    let decision = part.state.lock().health.on_stop(cause, cpu::counter());
    match decision {
        Decision::Restart { delay_ticks, restart } => {
            log::warn!(
                "{name}: policy restart: restart #{restart} after {} ms back-off",
                delay_ticks / sys.ticks_per_ms
            );
            cpu::wait_until(cpu::counter() + delay_ticks);
            crate::trust::record(EventKind::Restart, part.index as u8, 0, u64::from(restart), &[0; 64]);
            let mapped = crate::stage1::load_view(part.index);
            let reloaded = load(part.desc, part.index, &sys.bundle)
                .and_then(|()| verify_loaded(part.desc, part.index, &sys.bundle, &sys.root, &sys.config_hash));
            drop(mapped);
            if let Err(e) = reloaded {
                log::error!("{name}: cannot reload its image ({e}); halting it");
                cpu::park()
            }
            {
                let mut st = part.state.lock();
                st.console.clear();
                st.start = match cause {
                    StopCause::Fault => StartCondition::HmPartitionRestart,
                    _ => StartCondition::PartitionRestart,
                };
            }
            reset_interrupts(part);
            log::info!("{name}: restarted from its pristine image (RAM zeroed)");
            part.power.lock().stop_all(Some(boot_start(part.desc)));
            wake_others(part);
            wait_for_start(part, vcpu)
        }
        Decision::Halt { reason } => {
            reset_interrupts(part);
            crate::trust::record(EventKind::Halt, part.index as u8, 0, 0, &[0; 64]);
            match reason {
                HaltReason::Policy => log::warn!("{name}: policy halt: partition stopped"),
                HaltReason::RestartLimit { max, window_ms } => log::error!(
                    "{name}: {max} restarts within {window_ms} ms: restarting is not helping; partition halted"
                ),
            }
            wait_for_start(part, vcpu)
        }
        Decision::SafeState => safe_state("critical partition fault"),
    }
}

/// Whether PSCI SYSTEM_OFF can be asked of firmware (over SMC): known from the board
/// DTB before any partition exists, so even a refusal at boot can power off.
static POWER_OFF_BY_SMC: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn set_firmware(conduit: Option<Conduit>) {
    POWER_OFF_BY_SMC.store(conduit == Some(Conduit::Smc), Ordering::Release);
}

/// The system's safe state: every partition stops. Septum logs the reason and asks the
/// board firmware to power the system off (PSCI SYSTEM_OFF), which stops every core
/// and de-energises outputs; if the firmware refuses, this core parks.
pub fn safe_state(reason: &str) -> ! {
    log::error!("SAFE STATE: {reason}; stopping every partition (PSCI SYSTEM_OFF)");
    crate::trust::record(EventKind::SafeState, crate::trust::NO_PARTITION, 1, 0, &[0; 64]);
    if POWER_OFF_BY_SMC.load(Ordering::Acquire) {
        cpu::psci(septum_abi::hypercall::psci::SYSTEM_OFF, 0, 0, 0);
    }
    log::error!("SAFE STATE: firmware did not power off; core parked");
    cpu::park()
}

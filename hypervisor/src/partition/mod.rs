//! Partitions at run time: the table of accepted partitions and their state, and what
//! every part of the hypervisor asks of a partition (which one this core runs, making
//! a virtual interrupt pending for one of its vCPUs, noting what it caused). The rest
//! is one concept a file:
//!
//! * [`load`]: the pristine image and device tree, verified after copy, at boot and on
//!   every restart.
//! * [`power`]: entering a vCPU, PSCI `CPU_ON`/`CPU_OFF`, stopping the partition as a
//!   whole (generations; nothing touches its memory while any of its cores may run it).
//! * [`policy`]: what a stop leads to (restart, halt, safe state), as the health
//!   monitor decides.
//! * [`dma`]: its devices' SMMU streams, their faults, and silencing them before its
//!   memory is touched.
//!
//! Each vCPU is pinned to its own core ([`crate::slots`]).

pub mod dma;
pub mod load;
pub mod policy;
pub mod power;

use septum_abi::bundle::Bundle;
use septum_abi::config::{Config, PartitionDesc, RegionKind, MAX_PARTITIONS, MAX_REGIONS};
use septum_abi::hypercall::StartCondition;
use septum_core::console::{LineBuffer, RateLimit};
use septum_core::events::{Chatter, Event, SUMMARY_SECONDS};
use septum_core::health::Health;
use septum_core::vcpu::VcpuPower;
use septum_core::vgicd::VirtualDistributor;
use septum_core::vgicr::VirtualRedistributors;
use septum_trust::format::RootBody;
use septum_trust::hash::Hash;
use spin::{Mutex, Once};

use crate::cpu;
use crate::slots;
use load::LoadError;

/// One accepted partition at run time.
pub struct Runtime {
    pub desc: &'static PartitionDesc,
    pub index: usize,
    vttbr: u64,
    pub state: Mutex<State>,
    pub power: Mutex<VcpuPower>,
    /// The distributor it sees (its own SPIs and doorbell interrupts only).
    pub vgicd: Mutex<VirtualDistributor>,
    /// The redistributors it sees, one per vCPU.
    pub vgicr: Mutex<VirtualRedistributors>,
    /// What it caused: counts, and the budget for its log lines.
    chatter: Mutex<Chatter>,
    /// The doorbell INTIDs it receives (rings of its channels' peers).
    doorbells_in: [u32; MAX_REGIONS],
}

pub struct State {
    pub health: Health,
    pub console: LineBuffer,
    pub limit: RateLimit,
    /// Per doorbell region (by region index).
    pub doorbells: [Option<Doorbell>; MAX_REGIONS],
    pub start: StartCondition,
}

/// A doorbell's rate limit and counters.
#[derive(Clone, Copy)]
pub struct Doorbell {
    pub limit: RateLimit,
    pub rings: u64,
    pub dropped: u64,
    /// When drops were last reported (at most once a second).
    pub reported: u64,
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
static SYSTEM: Once<System> = Once::new();

/// Partition `index`, if it was accepted.
pub fn part(index: usize) -> Option<&'static Runtime> {
    PARTS.get(index)?.get()
}

/// The partition and vCPU this core runs.
pub fn current() -> Option<(&'static Runtime, usize)> {
    let (index, vcpu) = slots::this_vcpu();
    SYSTEM.get()?;
    Some((part(index)?, vcpu))
}

/// Loads every partition's pristine image and device tree, verifies both as they lie
/// in the partition's RAM against its signed manifest, and only then builds the stage 2
/// that maps them. A refused critical partition puts the system in its safe state; any
/// other refused partition (its payloads or the chain of trust) is not started and the
/// rest run. Each refusal is in the audit log.
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
        match load::load_and_verify(desc, i, &bundle, &root, &config_hash) {
            Ok(counter) => {
                accepted[n_accepted] = (desc.name(), counter);
                n_accepted += 1;
            }
            Err(LoadError::Refused(r)) if !desc.is_critical() => {
                // A warning, not a stop: the system goes on without this partition.
                log::warn!("{}: not accepted: {r}; partition not started, the others run", desc.name());
                crate::trust::refused(i, &r);
                load::scrub(desc);
                continue;
            }
            Err(LoadError::Refused(r)) => {
                log::error!("{}: REFUSED: {r}", desc.name());
                crate::trust::refused(i, &r);
                crate::safe_state::safe_state("critical partition refused at load")
            }
            Err(e) => return Err((i, e)),
        }
        let root = crate::stage2::build(desc).map_err(|e| (i, LoadError::Stage2(e)))?;
        // Built in its static: a partition's run-time state is kilobytes, and the boot
        // stack must not hold all of them at once.
        let Some(slot) = PARTS.get(i) else { return Err((i, LoadError::NoSlot)) };
        let (hz, now) = (cpu::counter_hz(), cpu::counter());
        let part = slot.call_once(|| Runtime {
            desc,
            index: i,
            vttbr: (u64::from(desc.vmid) << 48) | root,
            state: Mutex::new(State {
                health: Health::new(desc, ticks_per_ms),
                console: LineBuffer::default(),
                limit: RateLimit::console(hz, now),
                doorbells: doorbell_limits(desc),
                start: StartCondition::NormalStart,
            }),
            power: Mutex::new({
                let mut power = VcpuPower::new(desc.vcpus().len());
                power.start_boot(load::boot_start(desc));
                power
            }),
            vgicd: Mutex::new(VirtualDistributor::new(0, &[], &[])),
            vgicr: Mutex::new(VirtualRedistributors::new(desc.vcpus().len())),
            chatter: Mutex::new(Chatter::new(hz, now)),
            doorbells_in: doorbells_received(&config, i),
        });
        *part.vgicd.lock() = part.fresh_distributor();
    }
    crate::trust::accept(&root, &accepted[..n_accepted]);
    Ok(SYSTEM.call_once(|| System { bundle, root, config_hash, ticks_per_ms }))
}

impl System {
    /// The partitions that were accepted, with their index in the configuration.
    pub fn partitions(&self) -> impl Iterator<Item = (usize, &'static PartitionDesc)> + '_ {
        PARTS.iter().filter_map(Once::get).map(|p| (p.index, p.desc))
    }
}

/// Runs the vCPU pinned to this core's slot, once it is started. Never returns.
pub fn run() -> ! {
    if SYSTEM.get().is_none() {
        cpu::park()
    }
    let Some((part, vcpu)) = current() else {
        log::info!("cpu slot {} (MPIDR {:#x}) has no partition: parked", slots::cpu_slot(), cpu::mpidr());
        cpu::park()
    };
    power::wait_for_start(part, vcpu)
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

impl Runtime {
    /// The distributor it sees at (re)start: its SPIs and doorbells, all disabled.
    fn fresh_distributor(&self) -> VirtualDistributor {
        let n = self.doorbells_in.iter().position(|&d| d == 0).unwrap_or(MAX_REGIONS);
        VirtualDistributor::new(self.desc.vcpus().len(), self.desc.irqs(), &self.doorbells_in[..n])
    }

    /// Returns its SPIs and distributor to their state at boot: disabled, inactive (a
    /// restarted or halted partition must not keep a device interrupting).
    pub fn reset_interrupts(&self) {
        for &intid in self.desc.irqs() {
            crate::gic::release_spi(intid);
        }
        *self.vgicd.lock() = self.fresh_distributor();
        *self.vgicr.lock() = VirtualRedistributors::new(self.desc.vcpus().len());
    }

    /// Whether SPI `intid` is one of its own.
    pub fn owns_spi(&self, intid: u32) -> bool {
        self.desc.irqs().contains(&intid)
    }

    /// Counts `event`, which it caused (LOG-004). With `line`, the caller has a log
    /// line for it: true if it may write it (within the partition's budget). The first
    /// event since the last summary arms this core's summary timer.
    pub fn note(&self, event: Event, line: bool) -> bool {
        let n = self.chatter.lock().note(event, cpu::counter(), line);
        if n.arm {
            crate::gic::arm_summary_timer(cpu::counter() + SUMMARY_SECONDS * cpu::counter_hz());
        }
        n.write
    }

    /// Counts `event`, whose line is written at powers of two of its count (within the
    /// budget): `Some(count)` if the caller is to write it.
    pub fn note_sparse(&self, event: Event) -> Option<u64> {
        let (n, count) = self.chatter.lock().note_sparse(event, cpu::counter());
        if n.arm {
            crate::gic::arm_summary_timer(cpu::counter() + SUMMARY_SECONDS * cpu::counter_hz());
        }
        n.write.then_some(count)
    }

    /// A log line that belongs to an event already noted: true if within the budget.
    pub fn admit_line(&self) -> bool {
        let (write, arm) = {
            let mut c = self.chatter.lock();
            let was_armed = c.armed();
            (c.admit_line(cpu::counter()), !was_armed && c.armed())
        };
        if arm {
            crate::gic::arm_summary_timer(cpu::counter() + SUMMARY_SECONDS * cpu::counter_hz());
        }
        write
    }

    /// Writes what it caused since the last summary (the summary timer fired).
    pub fn write_summary(&self) {
        let summary = self.chatter.lock().take_summary();
        for line in summary.iter().flat_map(|s| s.lines(3)) {
            log::info!("{}: contained in the last {SUMMARY_SECONDS} s or less: {line}", self.desc.name());
        }
    }
}

/// Writes a log line the partition `$part` caused, counting `$event`, if within its
/// budget (LOG-004): `caused!(part, Event::X, warn, "...", args)`.
macro_rules! caused {
    ($part:expr, $event:expr, $level:ident, $($arg:tt)+) => {
        if $part.note($event, true) {
            log::$level!($($arg)+);
        }
    };
}
pub(crate) use caused;

/// A log line that belongs to an event of `$part` already noted (a second line of a
/// restart, say), if within its budget.
macro_rules! caused_more {
    ($part:expr, $level:ident, $($arg:tt)+) => {
        if $part.admit_line() {
            log::$level!($($arg)+);
        }
    };
}
pub(crate) use caused_more;

/// Makes virtual interrupt `intid` pending for vCPU `vcpu` of `part`, if that vCPU
/// runs: placed at once when it is this core's, else its core is kicked to place it.
pub fn deliver(part: &Runtime, vcpu: usize, intid: u32) {
    let Some(slot) = slots::slot_of(part.index, vcpu) else { return };
    if !slots::in_guest(slot) {
        return;
    }
    crate::gic::post(slot, intid);
    if slot == slots::cpu_slot() {
        crate::gic::place_pending();
    } else if let Some(&mpidr) = part.desc.vcpus().get(vcpu) {
        crate::gic::kick(mpidr);
    }
}

/// The summary timer fired on this core: the partition it runs writes its summary.
pub fn on_summary_timer() {
    if let Some((part, _)) = current() {
        part.write_summary();
    }
}

//! Septum, a separation-kernel hypervisor for aarch64. The boot path, top to bottom:
//!
//! 1. `entry`: arm64 `Image` header; EL3 drops to EL2, EL1 is refused; stack, BSS.
//! 2. [`primary_main`]: read the board DTB (RAM, CPUs, devices, PSCI conduit, bundle).
//! 3. `stage1`: the hypervisor's own MMU on (boot view), caches on; `speculation`:
//!    this core's branch-predictor hardening on entry from a partition.
//! 4. `trust`: open the flash bank (anti-rollback counters, audit log), so that every
//!    refusal from here on is recorded. Find the boot bundle (a bundle refused as a
//!    whole stops the boot, recorded); verify the root chain against the built-in
//!    anchor and the configuration's signature; copy out the configuration and check it
//!    against the board; move to the run view, which maps no partition memory.
//! 5. `partition::init`: per partition, load the pristine image and device tree, verify
//!    both in the partition's RAM against its signed manifest, and only then build the
//!    stage 2 that maps them; raise the counters to what was accepted.
//! 6. Start each partition's core (PSCI `CPU_ON`), then run this core's partition.
//!
//! After that the hypervisor only runs when a partition traps (`trap`).
#![no_std]
#![no_main]

mod chosen;
mod console;
mod cpu;
mod debug_pmu;
mod el1;
mod entry;
mod exit;
mod frame;
mod gic;
mod hypercall;
mod partition;
mod pflash;
mod physmem;
mod safe_state;
mod slots;
mod smmu;
mod speculation;
mod stage1;
mod stage2;
mod trap;
mod trust;
mod vgic_glue;

use entry::PenExit;
use septum_abi::bundle::{Bundle, BundleError, EntryKind};
use septum_abi::config::{BoardFacts, Config, Range, RegionKind};
use septum_core::board::{self, BootFacts, Conduit, CpuStart};
use septum_platform::catalog;

/// FDT header magic, big-endian.
const FDT_MAGIC: u32 = 0xD00D_FEED;
/// Largest board DTB or bundle the hypervisor will look at.
const DTB_MAX: u32 = 2 << 20;
const BUNDLE_MAX: u64 = 128 << 20;
/// Room for the largest configuration ([`septum_abi::config::encoded_len`] of 8).
const CONFIG_MAX: usize = 8192;

pub use chosen::this_board;
pub use slots::cpu_slot;

#[no_mangle]
extern "C" fn refuse_el1(_dtb: u64) -> ! {
    console::early_line(format_args!(
        "REFUSED: entered at EL1. Septum is a hypervisor and must start at EL2 or EL3 \
         (QEMU: -M virt,virtualization=on). Stopping."
    ));
    // Also on the board's first UART: at EL1 nobody else owns it yet.
    // SAFETY: with the MMU off every access is Device memory; UART0 is this board's
    // PL011 and no partition exists yet.
    let mut uart = unsafe { septum_platform::pl011::Pl011::new(septum_platform::qemu_virt::UART0 as usize) };
    let _ = core::fmt::Write::write_str(
        &mut uart,
        "septum: REFUSED: entered at EL1; a hypervisor needs EL2 (QEMU: -M virt,virtualization=on)\n",
    );
    cpu::park()
}

#[no_mangle]
extern "C" fn primary_main(x0: u64, entered_el: u64) -> ! {
    // 2. Board DTB: x0 under the Linux boot protocol, the board's default for ELF boots.
    // An ELF boot passes none: look where each board's loader puts it.
    let defaults = || catalog::BOARDS.iter().map(|b| b.default_dtb);
    let Some(dtb_pa) = core::iter::once(x0).filter(|&a| a != 0).chain(defaults()).find(|&a| is_fdt(a)) else {
        fatal_early(format_args!("no device tree at x0 ({x0:#x}) or at any board's default address"));
    };
    // SAFETY: an FDT header was found at dtb_pa; its size is read from it and bounded.
    let dtb_len = unsafe { physmem::read_be32(dtb_pa + 4) }.min(DTB_MAX);
    // SAFETY: the DTB lies in RAM that no partition is given (checked below against the
    // configuration as a reserved range) and nothing writes it.
    let firmware_dtb = unsafe { physmem::slice(dtb_pa, dtb_len as usize) };
    // Read from a copy without the NOPs that firmware's in-place edits leave.
    // SAFETY: the only call, on the boot core, before any other core runs.
    let copy = unsafe { physmem::dtb_copy() };
    let dtb = match board::without_nops(firmware_dtb, copy) {
        Ok(n) => &copy[..n],
        Err(e) => fatal_early(format_args!("board device tree at {dtb_pa:#x} unusable: {e}")),
    };
    let facts = match board::read(dtb) {
        Ok(f) => f,
        Err(e) => fatal_early(format_args!("board device tree at {dtb_pa:#x} unusable: {e}")),
    };
    let Some(board) = catalog::board_for(board::root_compatible(dtb), facts.gic_v2) else {
        fatal_early(format_args!(
            "board device tree at {dtb_pa:#x} names no supported board (root compatible {:?}, GICv{})",
            DtNames(dtb),
            if facts.gic_v2 { 2 } else { 3 }
        ));
    };
    chosen::choose(board);
    // Quirk virq-unwired: only on QEMU's model of a board known to need it, unless the
    // hypervisor's command line says otherwise.
    let virq_quirk = facts.virq_quirk.unwrap_or(board.qemu_virq_unwired && facts.qemu_psci);
    gic::set_virq_quirk(virq_quirk);

    // 3. MMU and caches on.
    if let Err(e) = stage1::init(facts.board.ram.iter()) {
        fatal_early(format_args!("cannot build the hypervisor's page tables: {e:?}"));
    }
    console::init();
    log::info!(
        "Septum {} for {}: entered at EL{entered_el}{}, running at EL2 on MPIDR {:#x}",
        env!("CARGO_PKG_VERSION"),
        this_board().name,
        if entered_el == 3 { " (dropped to non-secure EL2)" } else { "" },
        cpu::mpidr()
    );
    log::info!(
        "board: {} CPUs, RAM {}, PSCI {:?}, DTB at {dtb_pa:#x}",
        facts.board.cpus.len(),
        RangeList(&facts),
        facts.psci
    );

    if virq_quirk {
        log::warn!("quirk virq-unwired on: virtual interrupts are signalled with HCR_EL2.VI (QEMU's model does not wire the GIC's virtual IRQ line)");
    }
    if facts.psci == Some(Conduit::Hvc) {
        log::warn!("board DTB names PSCI over HVC, which a hypervisor at EL2 cannot call: no PSCI");
    }

    // 4. Storage first, so that a refusal of the bundle is recorded; then the bundle and
    // the configuration.
    safe_state::set_firmware(facts.psci);
    speculation::set_firmware(facts.psci);
    speculation::harden_this_core();
    trust::open_storage(facts.power_cut_after);
    let bundle = match find_bundle(&facts) {
        Ok(b) => b,
        Err((base, e)) => {
            trust::bundle_refused(&e);
            stop(format_args!("boot bundle at {base:#x} refused: {e}"))
        }
    };
    // Spin-table release words belong to firmware and the hypervisor, never to a partition.
    let mut spin_pages = [Range::new(0, 0); 4];
    let mut n_spin = 0;
    for mpidr in facts.board.cpus.iter() {
        if let CpuStart::SpinTable { release } = facts.start_method(mpidr) {
            let page = Range::new(release & !0xFFF, 0x1000);
            if !spin_pages[..n_spin].contains(&page) {
                let Some(slot) = spin_pages.get_mut(n_spin) else { stop(format_args!("too many spin-table pages")) };
                (*slot, n_spin) = (page, n_spin + 1);
            }
        }
    }
    let checked = checked_facts(&facts, dtb_pa, dtb_len, &bundle, &spin_pages[..n_spin]);
    let root = match trust::verify_root(&bundle) {
        Ok(r) => r,
        Err(e) => refuse_system(format_args!("root of trust: {e}")),
    };
    let signed_config = match trust::verify_config(&root, &bundle) {
        Ok(c) => c,
        Err(e) => refuse_system(format_args!("configuration signature: {e}")),
    };
    let config_hash = septum_trust::hash::sha512(signed_config);
    let config = load_config(signed_config, &bundle, &checked);
    for p in config.partitions {
        log::info!(
            "partition {}: VMID {}, CPUs {:x?}, {} regions, policy {:?}, entry {:#x}",
            p.name(),
            p.vmid,
            p.vcpus(),
            p.regions().len(),
            p.policy(),
            p.entry_ipa
        );
        // DMA-002: the description's opt-out, said at every boot.
        let flag = septum_abi::config::device_flags::DMA_UNPROTECTED;
        for r in p.regions().iter().filter(|r| r.kind() == Some(RegionKind::Device) && r.param & flag != 0) {
            log::warn!(
                "WARNING {}: the device at {} masters the bus with NO IOMMU containing it (dma = \"unprotected\" in \
                 its description): it can read and write any memory, other partitions' and the hypervisor's included",
                p.name(),
                Range::new(r.pa, r.size)
            );
        }
    }

    // EL2 keeps no partition memory mapped from here on (ISO-010).
    let bundle_range = Range::new(bundle_base(&bundle), bundle.len() as u64);
    if let Err(e) = stage1::build_views(&config, bundle_range, &spin_pages[..n_spin]) {
        stop(format_args!("the hypervisor's run-time page tables: {e}"));
    }

    // 5. Stage 2 and pristine images.
    let system = match partition::init(config, bundle, root, config_hash) {
        Ok(s) => s,
        Err((i, e)) => stop(format_args!("partition #{i} cannot be set up: {e}")),
    };
    // DMA-003: before any partition runs, the SMMU contains its devices.
    if let Err(e) = partition::dma::init(facts.smmu_v3) {
        let needed = system.partitions().any(|(_, p)| partition::dma::streams_of(p).is_some());
        if needed {
            stop(format_args!("the SMMU cannot contain the partitions' devices: {e}"));
        }
        log::warn!("SMMU: {e}; no partition has a device behind it");
    }

    // 6. Interrupts, then cores.
    gic::init_distributor();
    let me = cpu::mpidr();
    let mut next_slot = 1;
    for (i, p) in system.partitions() {
        for (vcpu, &mpidr) in p.vcpus().iter().enumerate() {
            if mpidr == me {
                slots::assign(0, i, vcpu);
                continue;
            }
            if next_slot >= slots::MAX_CPUS {
                stop(format_args!("more cores than the hypervisor has stacks for"));
            }
            slots::assign(next_slot, i, vcpu);
            start_core(&facts, mpidr, next_slot, p.name());
            next_slot += 1;
        }
    }
    for mpidr in facts.board.cpus.iter() {
        if mpidr != me && !system.partitions().any(|(_, p)| p.vcpus().contains(&mpidr)) {
            park_core(&facts, mpidr);
        }
    }
    partition::run()
}

#[no_mangle]
extern "C" fn secondary_main(slot: u64) -> ! {
    let _ = slot; // already in TPIDR_EL2 (`slots::cpu_slot`)
    stage1::enable_on_this_core();
    speculation::harden_this_core();
    partition::run()
}

/// Starts a core the board's way, as its DTB `enable-method` says: PSCI `CPU_ON`, a
/// firmware spin table, or (no method: every core entered with us) the holding pen.
fn start_core(facts: &BootFacts, mpidr: u64, slot: usize, name: &str) {
    if by_psci(facts, mpidr) {
        let entry = entry::secondary_entry as *const () as u64;
        let r = cpu::psci(septum_abi::hypercall::psci::CPU_ON_64, mpidr, entry, slot as u64);
        if r != 0 {
            stop(format_args!("PSCI CPU_ON of core {mpidr:#x} for {name} failed ({r})"));
        }
    } else if !release_core(facts, mpidr, PenExit::Slot(slot)) {
        stop(format_args!("core {mpidr:#x} for {name} cannot be released from its spin table or the pen"));
    }
}

/// Takes a core no partition uses from the firmware spin table or holding pen it waits
/// in to the hypervisor's WFI loop, so it runs no firmware code and (under an emulator,
/// where WFE is a busy loop) takes no host time. A PSCI core is simply never turned on.
fn park_core(facts: &BootFacts, mpidr: u64) {
    if by_psci(facts, mpidr) {
        return;
    }
    if release_core(facts, mpidr, PenExit::Park) {
        log::info!("core {mpidr:#x}: no partition uses it; parked");
    } else {
        log::warn!("core {mpidr:#x}: no partition uses it, and it cannot be parked");
    }
}

/// The core is started with PSCI `CPU_ON` (it is off until then).
fn by_psci(facts: &BootFacts, mpidr: u64) -> bool {
    facts.start_method(mpidr) == CpuStart::Psci && facts.psci == Some(Conduit::Smc)
}

/// Releases a core that waits in firmware's spin table or, with no method (or "psci"
/// with no PSCI to call: QEMU virt with secure=on and no firmware says so, and every
/// core entered with us), in the holding pen.
fn release_core(facts: &BootFacts, mpidr: u64, exit: PenExit) -> bool {
    let aff0 = (mpidr & 0xFF) as usize;
    match facts.start_method(mpidr) {
        CpuStart::SpinTable { release } => entry::release_from_spin_table(aff0, exit, release),
        CpuStart::Unnamed | CpuStart::Psci => entry::release_from_pen(aff0, exit),
    }
}

fn is_fdt(pa: u64) -> bool {
    // SAFETY: pa is x0 from the bootloader (RAM), or a board's default DTB address,
    // probed only when no x0 was passed: an ELF boot, which only QEMU virt and raspi4b
    // do, where every board's default lies in RAM or flash. The MMU is off: a plain read.
    pa.is_multiple_of(4) && unsafe { physmem::read_be32(pa) } == FDT_MAGIC
}

/// The boot bundle, framed (header, entry table, bounds; each payload's CRC is checked
/// when it is used), or its address and why it was refused.
fn find_bundle(facts: &BootFacts) -> Result<Bundle<'static>, (u64, BundleError)> {
    let base = facts.initrd.map_or(this_board().default_bundle, |r| r.base);
    let Some(ram) = facts.board.ram.iter().find(|r| r.base <= base && base < r.end()) else {
        return Err((base, BundleError::NotInRam { base }));
    };
    // Bounded by the initrd the bootloader reported, else by the RAM it lies in.
    let limit = facts.initrd.map_or(BUNDLE_MAX, |r| r.size.min(BUNDLE_MAX));
    let available = (ram.end() - base).min(limit);
    // SAFETY: `[base, base+available)` is RAM; the bundle is never mapped to a partition
    // (its range joins the reserved ranges the configuration is checked against).
    let head = unsafe { physmem::slice(base, available as usize) };
    let len = match Bundle::claimed_len(head) {
        Ok(l) if l <= available => l,
        // Truncated, or a header claiming more than the bootloader loaded.
        Ok(total_len) => return Err((base, BundleError::BadLength { total_len, available })),
        Err(e) => return Err((base, e)),
    };
    let bundle = Bundle::parse(&head[..len as usize]).map_err(|e| (base, e))?;
    log::info!("boot bundle at {base:#x}, {len} bytes");
    Ok(bundle)
}

/// What the configuration is checked against: the DTB's facts `board` (its reserved
/// memory included), plus the devices the board catalogue says the hypervisor keeps (as
/// not assignable, overlapping whatever the DTB calls them), and the hypervisor image,
/// the DTB, the bundle and the spin-table pages as reserved.
fn checked_facts(
    facts: &BootFacts,
    dtb_pa: u64,
    dtb_len: u32,
    bundle: &Bundle<'static>,
    spin_pages: &[Range],
) -> BoardFacts {
    let mut checked = facts.board;
    let iommu = this_board().iommu_at(facts.smmu_v3);
    if !this_board().keep_devices(&mut checked) || !this_board().add_shown_devices(&mut checked, iommu) {
        stop(format_args!("too many devices for the hypervisor's table"));
    }
    let ours = [
        stage1::image_range(),
        Range::new(dtb_pa, u64::from(dtb_len)),
        Range::new(bundle_base(bundle), bundle.len() as u64),
    ];
    for range in ours.into_iter().chain(spin_pages.iter().copied()) {
        if !checked.reserved.iter().any(|r| r.contains(&range)) && !checked.reserved.push(range) {
            stop(format_args!("too many reserved ranges"));
        }
    }
    checked
}

fn bundle_base(b: &Bundle<'static>) -> u64 {
    // The bundle's bytes are a view of physical memory; their address is where it is.
    b.bytes().as_ptr() as u64
}

/// Copies the configuration out of the bundle (into aligned hypervisor memory the
/// partitions cannot reach) and checks it against the board.
fn load_config(raw: &[u8], bundle: &Bundle<'static>, facts: &BoardFacts) -> Config<'static> {
    static STORE: spin::Once<([u64; CONFIG_MAX / 8], usize)> = spin::Once::new();
    if raw.len() > CONFIG_MAX {
        stop(format_args!("configuration of {} bytes is larger than {CONFIG_MAX}", raw.len()));
    }
    let (words, len) = STORE.call_once(|| {
        let mut words = [0u64; CONFIG_MAX / 8];
        zerocopy::IntoBytes::as_mut_bytes(&mut words[..])[..raw.len()].copy_from_slice(raw);
        (words, raw.len())
    });
    let bytes = &zerocopy::IntoBytes::as_bytes(&words[..])[..*len];
    let image_len = |p: usize| bundle.payload_len(EntryKind::Image, p as u32);
    match Config::parse(bytes, this_board().id, facts, &image_len) {
        Ok(c) => {
            log::info!("configuration accepted: {} partitions", c.partitions.len());
            c
        }
        Err(e) => stop(format_args!("configuration refused: {e}")),
    }
}

/// The chain of trust refused the system as a whole: no partition can be trusted, so
/// none runs (the safe state). The refusal is already in the audit log.
fn refuse_system(args: core::fmt::Arguments<'_>) -> ! {
    log::error!("REFUSED: {args}");
    safe_state::safe_state("the system's signed documents were refused")
}

/// Refuses to go on: logs why and parks the boot core. Nothing has been started.
fn stop(args: core::fmt::Arguments<'_>) -> ! {
    log::error!("BOOT STOPPED: {args}");
    cpu::park()
}

fn fatal_early(args: core::fmt::Arguments<'_>) -> ! {
    console::early_line(format_args!("ERROR BOOT STOPPED: {args}"));
    cpu::park()
}

/// A DTB's root `compatible` list, for the log.
struct DtNames<'a>(&'a [u8]);

impl core::fmt::Debug for DtNames<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(board::root_compatible(self.0)).finish()
    }
}

struct RangeList<'a>(&'a BootFacts);

impl core::fmt::Display for RangeList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, r) in self.0.board.ram.iter().enumerate() {
            write!(f, "{}{r}", if i > 0 { ", " } else { "" })?;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Not reachable from anything a guest does; a hypervisor bug stops the system.
    log::error!("hypervisor panic: {info}");
    safe_state::safe_state("hypervisor panic")
}

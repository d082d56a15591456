//! The chain of trust at boot, wired to this machine: the root anchor built into the
//! image, the flash bank holding the anti-rollback counters and the audit log, and the
//! checks of the bundle's signed documents. The logic is `septum_trust`'s (host-tested);
//! this module only feeds it bytes and records what it decided.

use septum_abi::bundle::{Bundle, BundleError, EntryKind};
use septum_trust::audit::{AuditLog, Event, EventKind};
use septum_trust::boot::{self, InRam, Payload, PayloadFault, Refusal};
use septum_trust::counters::{CounterStore, Floors};
use septum_trust::flash::CutAfter;
use septum_trust::format::{Manifest, RootBody};
use septum_trust::hash::Hash;
use septum_trust::verify::{self, Expected, Placement, TrustError};
use spin::Mutex;

use crate::cpu;
use crate::pflash::Pflash;

/// SHA-512 of the genesis root document, put in by `cargo xtask build` (hex).
const ANCHOR_HEX: Option<&str> = option_env!("SEPTUM_ROOT_ANCHOR");
/// "1" in production builds: development-signed roots are refused.
const PRODUCTION: Option<&str> = option_env!("SEPTUM_PRODUCTION");
/// Root documents a bundle may chain (genesis, then each rotation).
const MAX_ROOT_CHAIN: u32 = 16;
/// Audit `partition` value for the hypervisor itself.
pub use septum_trust::audit::NO_PARTITION;

struct Store {
    /// The bank, behind the power-cut test hook (which, unarmed, only counts writes).
    flash: CutAfter<Pflash>,
    counters: CounterStore,
    log: AuditLog,
}

static STORE: Mutex<Option<Store>> = Mutex::new(None);
/// The floors in force for this boot (`None`: none read yet, the defaults hold); kept
/// apart from the store, which may be absent.
static FLOORS: Mutex<Option<Floors>> = Mutex::new(None);

fn floors() -> Floors {
    FLOORS.lock().unwrap_or_default()
}

pub fn production() -> bool {
    PRODUCTION == Some("1")
}

/// Opens the flash bank: counters (counting this boot) and the audit log. Without a
/// usable bank the system still boots, but says loudly that nothing is persistent.
///
/// `power_cut`: the `septum.power_cut=N` test hook from the bootloader. A development
/// build honours it: the bank loses power in the middle of its N-th write step (erase
/// or program), and the hypervisor stops as a board losing power would, leaving the
/// bank for the next boot to recover. A production build ignores it.
pub fn open_storage(power_cut: Option<u32>) {
    let Some(storage) = crate::this_board().storage else {
        log::warn!("trust: this board has no hypervisor storage: counters and audit log are not persistent");
        return;
    };
    // SAFETY: the board's storage bank is in `hypervisor_devices`: mapped by stage 1 as
    // Device memory and never given to a partition (configuration validation).
    let pflash = unsafe { Pflash::new(storage) };
    let mut flash = match power_cut {
        Some(n) if !production() => {
            log::warn!("trust: TEST HOOK: the flash bank loses power at write step {n}");
            CutAfter::new(pflash, n)
        }
        Some(_) => {
            log::warn!("trust: septum.power_cut ignored: production build");
            CutAfter::never(pflash)
        }
        None => CutAfter::never(pflash),
    };
    let (mut counters, creport) = match CounterStore::open(&flash) {
        Ok(c) => c,
        Err(e) => {
            log::error!("trust: flash bank unreadable ({e}): counters and audit log are not persistent");
            return;
        }
    };
    let mut floors = *counters.floors();
    floors.boot_count = floors.boot_count.wrapping_add(1);
    if let Err(e) = counters.store(&mut flash, &floors) {
        stop_if_cut(&flash);
        log::error!("trust: cannot store the boot count ({e})");
    }
    let (log, lreport) = match AuditLog::open(&flash, floors.boot_count) {
        Ok(l) => l,
        Err(e) => {
            log::error!("trust: audit log unreadable ({e})");
            return;
        }
    };
    log::info!("trust: boot #{}, counters {creport}, audit log {lreport}", floors.boot_count);
    *FLOORS.lock() = Some(floors);
    *STORE.lock() = Some(Store { flash, counters, log });
    // A torn last record (`lreport.torn`) is named by the log itself, in a TornRecord
    // ahead of the next append.
    record(EventKind::Boot, NO_PARTITION, 0, u64::from(floors.boot_count), &[0; 64]);
    if creport.torn() {
        record(EventKind::CountersTorn, NO_PARTITION, 1, 0, &[0; 64]);
    }
    // Both copies invalid on a bank that is not blank: the floors are gone (the boot
    // count restarts too, which `audit-verify` reports as a restarted history).
    if creport.lost() {
        log::error!("trust: the anti-rollback counters are LOST (no valid copy); defaults in force");
        record(EventKind::CountersLost, NO_PARTITION, 1, 0, &[0; 64]);
    }
}

/// Appends an event to the audit log (when there is one).
pub fn record(kind: EventKind, partition: u8, result: u8, detail: u64, subject: &Hash) {
    record_event(Event { kind, partition, result, ticks: 0, detail, subject: *subject });
}

/// Appends `event`, stamped with the generic timer, to the audit log (when there is one).
fn record_event(event: Event) {
    append(&mut STORE.lock(), event);
}

/// Appends an event with no subject, waiting at most `ticks` counter ticks for the
/// store (a partition's own records may hold it through a flash erase): for the way to
/// the safe state, and for the critical partition's faults on it. False if the store
/// stayed busy and nothing was written.
pub fn record_within(ticks: u64, kind: EventKind, partition: u8, result: u8, detail: u64) -> bool {
    let deadline = cpu::counter().saturating_add(ticks);
    loop {
        if let Some(mut guard) = STORE.try_lock() {
            append(&mut guard, Event { kind, partition, result, ticks: 0, detail, subject: [0; 64] });
            return true;
        }
        if cpu::counter() >= deadline {
            return false;
        }
        core::hint::spin_loop();
    }
}

fn append(store: &mut Option<Store>, event: Event) {
    let Some(store) = store.as_mut() else { return };
    let event = Event { ticks: cpu::counter(), ..event };
    if let Err(e) = store.log.append(&mut store.flash, &event) {
        stop_if_cut(&store.flash);
        log::error!("trust: audit record {} not written ({e})", event.kind);
    }
}

/// The audit log's shape for the read-only export: (slots, next slot, next sequence
/// number); `None` without a log.
pub fn audit_info() -> Option<(u32, u32, u64)> {
    let guard = STORE.lock();
    let log = &guard.as_ref()?.log;
    Some((log.slots(), log.next_slot(), log.next_seq()))
}

/// Half `half` of log slot `slot` as it lies in flash, for the read-only export, as
/// the sixteen little-endian words `AUDIT_READ` returns; `None`: no log, or the slot
/// or half is outside it.
pub fn audit_read(slot: u64, half: u8) -> Option<[u64; 16]> {
    const HALF: usize = septum_abi::hypercall::AUDIT_READ_BYTES;
    let guard = STORE.lock();
    let store = guard.as_ref()?;
    let mut bytes = [0u8; HALF];
    let slot = u32::try_from(slot).ok()?;
    if let Err(e) = store.log.read_slot(&store.flash, slot, usize::from(half) * HALF, &mut bytes)? {
        log::error!("trust: audit log slot {slot} unreadable ({e})");
        return None;
    }
    let mut words = [0u64; 16];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    Some(words)
}

/// The power-cut test hook fired: nothing more reaches the bank, and the system stops
/// where it is, as a board losing power would (the test kills QEMU and boots again).
fn stop_if_cut(flash: &CutAfter<Pflash>) {
    if flash.is_cut() {
        log::error!("POWER CUT (test hook) in flash write step {}: stopped", flash.steps());
        cpu::park()
    }
}

fn anchor() -> Option<Hash> {
    let hex = ANCHOR_HEX?.as_bytes();
    if hex.len() != 128 {
        return None;
    }
    let mut out = [0u8; 64];
    for (i, b) in out.iter_mut().enumerate() {
        let nib = |c: u8| (c as char).to_digit(16);
        *b = (nib(hex[2 * i])? << 4 | nib(hex[2 * i + 1])?) as u8;
    }
    Some(out)
}

/// Verifies the root chain in the bundle against the built-in anchor and the stored
/// floors; the result is the root in force. Each check below is `septum_trust::boot`'s,
/// which also chooses the audit record of its outcome (host-tested); this module only
/// times it, logs it and appends the record.
pub fn verify_root(bundle: &Bundle<'_>) -> Result<RootBody, TrustError> {
    let Some(anchor) = anchor() else {
        record(EventKind::VerificationFailed, NO_PARTITION, TrustError::NoAnchor.code(), 0, &[0; 64]);
        return Err(TrustError::NoAnchor);
    };
    let chain = (0..MAX_ROOT_CHAIN).map_while(|i| bundle.payload(EntryKind::Root, i).ok());
    let start = cpu::counter();
    let checked = boot::root_chain(&anchor, chain, &floors(), production());
    let ticks = cpu::counter().wrapping_sub(start);
    if let Ok(root) = &checked.result {
        log::info!("trust: root chain verified (version {}) in {ticks} ticks", root.version);
    }
    record_event(checked.event);
    checked.result
}

/// Verifies the configuration's signature; the result is its body.
pub fn verify_config<'a>(root: &RootBody, bundle: &Bundle<'a>) -> Result<&'a [u8], TrustError> {
    let envelope = bundle.payload(EntryKind::Config, 0).ok();
    let start = cpu::counter();
    let checked = boot::config(root, envelope, &floors());
    let ticks = cpu::counter().wrapping_sub(start);
    if checked.result.is_ok() {
        log::info!("trust: configuration signature verified in {ticks} ticks");
    }
    record_event(checked.event);
    checked.result
}

/// Partition `index`'s `what` from the bundle, CRC-checked (on every load, restarts
/// included), or why it cannot be used: missing, or corrupted.
pub fn payload<'a>(bundle: &Bundle<'a>, what: Payload, index: usize) -> Result<&'a [u8], Refusal> {
    let kind = match what {
        Payload::Image => EntryKind::Image,
        Payload::DeviceTree => EntryKind::DeviceTree,
        Payload::Manifest => EntryKind::Manifest,
    };
    bundle.payload(kind, index as u32).map_err(|e| {
        let fault = match e {
            BundleError::Missing { .. } => PayloadFault::Missing,
            _ => PayloadFault::Corrupted,
        };
        Refusal::Payload(what, fault)
    })
}

/// Verifies partition `index`'s manifest, then its image and device tree as they lie
/// in its RAM (`in_ram`, after the copy) against it, placed where the configuration
/// loads them (`placement`).
pub fn verify_partition(
    root: &RootBody,
    bundle: &Bundle<'_>,
    index: usize,
    name: &str,
    config_hash: &Hash,
    placement: Placement,
    in_ram: InRam<'_>,
) -> Result<Manifest, Refusal> {
    let expected = Expected { partition: name, board_id: crate::this_board().name, config_hash, placement };
    let manifest = payload(bundle, Payload::Manifest, index)?;
    let (checked, split) =
        boot::partition(root, Some(manifest), &expected, &floors(), index as u8, in_ram, cpu::counter);
    if checked.result.is_ok() {
        // `cargo xtask bench` reads this line (under icount, a tick is an instruction).
        log::info!(
            "trust: {name}: manifest verified in {} ticks, {} image and {} device tree bytes verified in {} ticks",
            split.manifest,
            in_ram.image.len(),
            in_ram.dtb.len(),
            split.image
        );
    }
    record_event(checked.event);
    checked.result.map_err(Refusal::Trust)
}

/// Records that partition `index` is not started, and why.
pub fn refused(index: usize, refusal: &Refusal) {
    record_event(boot::refused(index as u8, refusal));
}

/// Records that the boot bundle was refused as a whole.
pub fn bundle_refused(e: &BundleError) {
    record_event(boot::bundle_refused(e.code(), e.detail()));
}

/// Raises the stored floors to what this boot accepted (never lowering any).
pub fn accept(root: &RootBody, accepted: &[(&str, u64)]) {
    let Some(new) = verify::raise_floors(&floors(), root, accepted) else { return };
    *FLOORS.lock() = Some(new);
    let mut guard = STORE.lock();
    let Some(store) = guard.as_mut() else { return };
    if let Err(e) = store.counters.store(&mut store.flash, &new) {
        stop_if_cut(&store.flash);
        log::error!("trust: counters not raised ({e})");
        return;
    }
    drop(guard);
    log::info!("trust: anti-rollback counters raised (root version {})", new.root_version);
    record(EventKind::CounterRaised, NO_PARTITION, 0, u64::from(new.root_version), &[0; 64]);
}

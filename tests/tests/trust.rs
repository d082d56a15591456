//! Chain of trust at boot: tampered images and device trees are refused by policy, a
//! damaged payload costs only its partition, a refused bundle is recorded, and the audit
//! log in the hypervisor's flash survives a restart, shows any edit and any restart of
//! its history. Requirement IDs are in docs/requirements.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use septum_abi::bundle::{Bundle, BundleError, EntryKind};
use septum_system_tests::{artifacts, beats, count, rebundle};
use septum_trust::audit;
use septum_trust::boot::{Payload, PayloadFault, Refusal};
use septum_trust::counters::{CounterStore, Floors};
use septum_trust::flash::{RamFlash, BLOCK_SIZE, LOG_FIRST_BLOCK};
use septum_trust::format;
use septum_trust::hash;
use septum_trust::history;
use septum_trust::verify::{Role, TrustError};
use xtask::build::Artifacts;
use xtask::qemu::{Launch, Machine};
use xtask::trust::{resign_manifest, BundleParts};

/// A copy of the system's bundle with one byte of partition `index`'s image flipped:
/// only the signatures can notice.
fn bundle_with_tampered_image(art: &Artifacts, index: usize, name: &str) -> PathBuf {
    rebundle(art, name, |parts| {
        let image = &mut parts.images[index];
        let at = image.len() / 2;
        image[at] ^= 0x01;
    })
}

/// The audit records in a flash bank file, in log order; the log must verify.
fn audit_records(storage: &Path) -> Vec<audit::Record> {
    let bank = std::fs::read(storage).expect("flash bank");
    let report = audit::verify_bank(&bank);
    assert!(report.is_intact(), "{report}");
    let log = &bank[LOG_FIRST_BLOCK as usize * BLOCK_SIZE as usize..];
    audit::records(log).filter_map(|(_, r)| r.ok()).collect()
}

/// The one PartitionRefused record of `records` is `partition`'s, for `refusal`.
fn assert_partition_refused(records: &[audit::Record], partition: u8, refusal: Refusal) {
    let refused: Vec<_> =
        records.iter().filter(|r| r.event_kind() == Some(audit::EventKind::PartitionRefused)).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let detail = match refusal {
        Refusal::Trust(_) => 0,
        Refusal::Payload(what, _) => what as u64,
    };
    assert_eq!((refused[0].partition, refused[0].result, refused[0].detail), (partition, refusal.code(), detail));
}

/// The one VerificationFailed record of `records`, for `partition`, with `error`'s code.
fn assert_refusal_logged(records: &[audit::Record], partition: u8, error: TrustError, subject: &[u8; 64]) {
    let failed: Vec<_> =
        records.iter().filter(|r| r.event_kind() == Some(audit::EventKind::VerificationFailed)).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let r = failed[0];
    assert_eq!((r.partition, r.result), (partition, error.code()), "{r}");
    assert_eq!(&r.subject, subject, "{r}: subject is the hash of what was refused");
}

/// TRUST-003, TRUST-004, TRUST-006: a connectivity image changed after signing is
/// refused, and the refusal is in the audit log; the critical monitor boots and keeps
/// its heartbeat.
#[test]
fn tampered_connectivity_image_is_refused_and_critical_runs() {
    let art = artifacts("qemu-virt-bare");
    let bundle = bundle_with_tampered_image(&art, 1, "bundle-tampered-connectivity.bin");
    let reason = "the image's SHA-512 does not match its manifest";
    let records = connectivity_refused(&art, &bundle, "storage-tampered-connectivity.bin", reason);
    let parts = BundleParts::parse(&std::fs::read(&bundle).expect("bundle")).expect("parses");
    assert_refusal_logged(&records, 1, TrustError::ImageHash, &hash::sha512(&parts.images[1]));
    assert_partition_refused(&records, 1, Refusal::Trust(TrustError::ImageHash));
}

/// TRUST-003, TRUST-004, TRUST-006: a critical-monitor image changed after signing puts
/// the system in its safe state, with the reason on the console and in the audit log,
/// and nothing runs.
#[test]
fn tampered_critical_image_puts_the_system_in_safe_state() {
    let art = artifacts("qemu-virt-bare");
    let bundle = bundle_with_tampered_image(&art, 0, "bundle-tampered-critical.bin");
    let reason = "the image's SHA-512 does not match its manifest";
    let records = critical_refused(&art, &bundle, "storage-tampered-critical.bin", reason);
    let parts = BundleParts::parse(&std::fs::read(&bundle).expect("bundle")).expect("parses");
    assert_refusal_logged(&records, 0, TrustError::ImageHash, &hash::sha512(&parts.images[0]));
    assert_partition_refused(&records, 0, Refusal::Trust(TrustError::ImageHash));
}

/// TRUST-002, TRUST-006: a configuration changed after signing is refused as a whole,
/// and the refusal is in the audit log.
#[test]
fn tampered_configuration_puts_the_system_in_safe_state() {
    let art = artifacts("qemu-virt-bare");
    let path = rebundle(&art, "bundle-tampered-config.bin", |parts| {
        let at = parts.config.len() / 2;
        parts.config[at] ^= 0x20;
    });
    let storage = art.dir.join("storage-tampered-config.bin");
    let _ = std::fs::remove_file(&storage);
    let opts = Launch { bundle: Some(path.clone()), storage: Some(storage.clone()), ..Launch::default() };
    let mut m = Machine::launch(&art, &opts).expect("QEMU starts");
    m.wait_for("the refusal", Duration::from_secs(60), |l| count(l, "SAFE STATE") >= 1)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    let lines = m.lines();
    assert_eq!(count(&lines, "REFUSED: configuration signature"), 1, "{}", m.transcript());
    assert_eq!(count(&lines, "heartbeat"), 0, "nothing may run\n{}", m.transcript());
    drop(m);
    let parts = BundleParts::parse(&std::fs::read(&path).expect("bundle")).expect("parses");
    let records = audit_records(&storage);
    let threshold = TrustError::Threshold { role: Role::Root { version: 1 }, valid: 0, needed: 0 };
    assert_refusal_logged(&records, audit::NO_PARTITION, threshold, &hash::sha512(&parts.config));
}

/// Boots with the flash bank kept in `storage` until `beats` critical heartbeats.
fn boot_with_storage(art: &Artifacts, storage: &Path, beats_wanted: usize) -> Machine {
    let opts = Launch { storage: Some(storage.to_path_buf()), ..Launch::default() };
    let mut m = Machine::launch(art, &opts).expect("QEMU starts");
    m.wait_for("critical heartbeats", Duration::from_secs(60), |l| beats(l, "critical-monitor").len() >= beats_wanted)
        .unwrap_or_else(|e| panic!("{e}"));
    m
}

/// TRUST-005, TRUST-006: the audit log and counters persist across a QEMU restart (the
/// boot count goes on), the log verifies, and a one-byte edit of a record is reported
/// at that record.
#[test]
fn audit_log_survives_a_restart_and_verifies() {
    let art = artifacts("qemu-virt-bare");
    let storage = art.dir.join("storage-audit-test.bin");
    let _ = std::fs::remove_file(&storage);
    let first = boot_with_storage(&art, &storage, 5);
    assert_eq!(count(&first.lines(), "trust: boot #1,"), 1, "{}", first.transcript());
    drop(first);
    let second = boot_with_storage(&art, &storage, 5);
    assert_eq!(count(&second.lines(), "trust: boot #2,"), 1, "{}", second.transcript());
    drop(second);

    let bank = std::fs::read(&storage).expect("flash bank");
    let report = audit::verify_bank(&bank);
    println!("{report}");
    assert!(report.is_intact(), "{report}");
    // Each boot logs at least: boot, root, configuration, two images, counters.
    assert!(report.records >= 10, "{report}");
    // What an operator runs on a dump: `cargo xtask audit-verify FILE`.
    let file = storage.to_string_lossy().into_owned();
    xtask::trust::cli::audit_verify(std::slice::from_ref(&file)).expect("audit-verify accepts the log");

    // Edit one byte of the third record: reported at exactly that record.
    let log = LOG_FIRST_BLOCK as usize * BLOCK_SIZE as usize;
    let mut edited = bank.clone();
    edited[log + 2 * audit::RECORD_LEN + 40] ^= 0x04;
    let report = audit::verify_bank(&edited);
    let broken = report.broken.as_ref().unwrap_or_else(|| panic!("edit not detected: {report}"));
    assert_eq!(broken.slot, 2, "{report}");
    let edited_file = art.dir.join("storage-audit-test-edited.bin");
    std::fs::write(&edited_file, &edited).expect("write");
    let err = xtask::trust::cli::audit_verify(&[edited_file.to_string_lossy().into_owned()]).expect_err("refused");
    assert!(err.contains("broken"), "{err}");
}

/// The anti-rollback floors stored in a flash bank file.
fn stored_floors(bank: &[u8]) -> Floors {
    let mut copy = bank.to_vec();
    let flash = RamFlash::new(&mut copy, BLOCK_SIZE).expect("bank geometry");
    let (store, _) = CounterStore::open(&flash).expect("counters readable");
    *store.floors()
}

fn security_counter(f: &Floors, partition: &str) -> u64 {
    f.partitions.iter().find(|p| format::field_str(&p.name) == partition).map_or(0, |p| p.security_counter)
}

/// TRUST-005, TRUST-006: the flash loses power in the middle of each write step of a
/// boot that raises a counter (`septum.power_cut=N`, for N = 1, 2, ... until a boot
/// completes). After every cut the stored floors are the old or the new ones, never
/// lower, and once the hypervisor has said the raise is stored it is never lost; the
/// next boot opens the bank, names any torn record, and leaves a log that verifies.
#[test]
fn power_cut_at_every_flash_write_step_loses_nothing() {
    let art = artifacts("qemu-virt-bare");
    // The accepted state: one complete boot of the system as built.
    let accepted = art.dir.join("storage-power-cut-accepted.bin");
    let _ = std::fs::remove_file(&accepted);
    drop(boot_with_storage(&art, &accepted, 2));
    let before = stored_floors(&std::fs::read(&accepted).expect("bank"));
    assert_eq!(before.boot_count, 1);
    let old_counter = security_counter(&before, "connectivity");

    // A newer connectivity release: its acceptance raises the stored counter.
    let raised = rebundle(&art, "bundle-raised-counter.bin", |parts| {
        parts.manifests[1] =
            resign_manifest(&art.keys, &parts.manifests[1], |m| m.security_counter += 1).expect("re-signs");
    });
    let new_counter = old_counter + 1;

    let bank = art.dir.join("storage-power-cut.bin");
    let mut completed = false;
    let mut torn_logs = 0;
    for n in 1..=64u32 {
        std::fs::copy(&accepted, &bank).expect("copy bank");
        let opts = Launch {
            bundle: Some(raised.clone()),
            storage: Some(bank.clone()),
            bootargs: Some(format!("septum.power_cut={n}")),
            ..Launch::default()
        };
        let mut m = Machine::launch(&art, &opts).expect("QEMU starts");
        let outcome = m.wait_for("a power cut or a running system", Duration::from_secs(60), |l| {
            count(l, "POWER CUT") >= 1 || beats(l, "critical-monitor").len() >= 2
        });
        outcome.unwrap_or_else(|e| panic!("step {n}: {e}"));
        let lines = m.lines();
        let told_raised = count(&lines, "anti-rollback counters raised") >= 1;
        let cut = count(&lines, &format!("POWER CUT (test hook) in flash write step {n}")) == 1;
        drop(m);
        if !cut {
            assert!(told_raised, "step {n}: the boot completed without raising the counter");
            completed = true;
            println!("power cut: a boot makes {} write steps; each was cut once", n - 1);
            assert!(torn_logs > 0, "no cut left a torn audit record to name");
            break;
        }

        // What the cut left: never below the accepted floors.
        let after = stored_floors(&std::fs::read(&bank).expect("bank"));
        let counter = security_counter(&after, "connectivity");
        assert!(counter == old_counter || counter == new_counter, "step {n}: counter {counter}");
        assert!(after.boot_count == 1 || after.boot_count == 2, "step {n}: boot count {}", after.boot_count);
        assert!(after.root_version >= before.root_version, "step {n}");
        if told_raised {
            assert_eq!(counter, new_counter, "step {n}: a stored raise was lost");
        }

        // The next boot recovers: it runs, and the log (torn record named) verifies.
        let opts = Launch { bundle: Some(raised.clone()), storage: Some(bank.clone()), ..Launch::default() };
        let mut m = Machine::launch(&art, &opts).expect("QEMU starts");
        m.wait_for("critical heartbeats", Duration::from_secs(60), |l| beats(l, "critical-monitor").len() >= 2)
            .unwrap_or_else(|e| panic!("reboot after step {n}: {e}"));
        drop(m);
        let bank_bytes = std::fs::read(&bank).expect("bank");
        let report = audit::verify_bank(&bank_bytes);
        assert!(report.is_intact(), "after step {n}: {report}");
        assert!(report.torn_at_end.is_none(), "after step {n}: torn record left unnamed: {report}");
        torn_logs += usize::from(report.torn > 0);
        let recovered = stored_floors(&bank_bytes);
        assert_eq!(security_counter(&recovered, "connectivity"), new_counter, "after step {n}");
        assert!(recovered.boot_count > after.boot_count.max(1), "after step {n}");
    }
    assert!(completed, "more than 64 write steps in one boot");
}

/// TRUST-007: connectivity, granted `audit_reader`, reads the newest audit records
/// through the read-only export; they are the records in the flash bank, their chain
/// checks out in the partition, and the log in the bank still verifies.
#[test]
fn audit_log_is_exported_read_only_to_connectivity() {
    let art = artifacts("qemu-virt-bare");
    let storage = art.dir.join("storage-export-test.bin");
    let _ = std::fs::remove_file(&storage);
    drop(boot_with_storage(&art, &storage, 3));
    let m = boot_with_storage(&art, &storage, 3);
    let lines = m.lines();
    let t = m.transcript();
    drop(m);
    let export = lines
        .iter()
        .find_map(|l| l.text.split("connectivity: audit export: ").nth(1).map(str::to_string))
        .unwrap_or_else(|| panic!("no export line\n{t}"));
    assert!(export.ends_with(", 0 torn, chain intact"), "{export}\n{t}");
    // "<n> records #<first>..=#<last> of <next> written, ..."
    let numbers: Vec<u64> = export
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(4)
        .map(|s| s.parse().expect("number"))
        .collect();
    let [n, first, last, written] = numbers[..] else { panic!("{export}") };
    assert_eq!(n, last - first + 1, "{export}");
    assert_eq!(last + 1, written, "the newest record is exported: {export}");
    // The second boot logged at least its boot, root, configuration and images before
    // connectivity started; the first boot's records are older.
    assert!(n >= 10, "{export}");

    let bank = std::fs::read(&storage).expect("bank");
    let report = audit::verify_bank(&bank);
    assert!(report.is_intact(), "{report}");
    let log = &bank[LOG_FIRST_BLOCK as usize * BLOCK_SIZE as usize..];
    let stored: Vec<u64> = audit::records(log).filter_map(|(_, r)| r.ok()).map(|r| r.seq).collect();
    for seq in first..=last {
        assert!(stored.contains(&seq), "exported record #{seq} is not in the bank");
    }
}

/// Waits for the safe state (or the refusal that precedes it) and lets the last lines
/// arrive.
fn wait_for_safe_state(m: &mut Machine) {
    m.wait_for("the safe state", Duration::from_secs(30), |l| count(l, "SAFE STATE") >= 1 || count(l, "REFUSED") >= 1)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
}

/// A copy of the system's bundle whose partition `index` has its device tree generated
/// again with `from` replaced by `to` in its bootargs, the bundle's CRCs recomputed:
/// the edit anyone with the bundle can make. Returns the path and the edited tree.
fn bundle_with_edited_bootargs(art: &Artifacts, index: usize, from: &str, to: &str, name: &str) -> (PathBuf, Vec<u8>) {
    let mut sys = art.system.clone();
    let p = &mut sys.partitions[index];
    assert!(p.bootargs.contains(from), "{}: bootargs {:?}", p.name, p.bootargs);
    p.bootargs = p.bootargs.replace(from, to);
    let dtb = xtask::devicetree::generate(&sys, &sys.partitions[index]).expect("a device tree");
    let edited = dtb.clone();
    (rebundle(art, name, move |parts| parts.device_trees[index] = edited), dtb)
}

/// A copy of the system's bundle with one byte of partition `index`'s `kind` payload
/// flipped and its CRC left as it was: damage only the CRC can notice.
fn bundle_with_corrupted_payload(art: &Artifacts, kind: EntryKind, index: u32, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(&art.bundle).expect("bundle");
    let at = {
        let b = Bundle::parse(&bytes).expect("parses");
        let e = b.entries().iter().find(|e| e.kind == kind as u32 && e.partition == index).expect("the entry");
        (e.offset + e.len / 2) as usize
    };
    bytes[at] ^= 0x01;
    let path = art.dir.join(name);
    std::fs::write(&path, &bytes).expect("write");
    path
}

/// Boots `bundle` on a fresh flash bank (`storage`, in the build directory) until 30
/// critical heartbeats: the console names connectivity's refusal for `reason` once,
/// connectivity never beats, and only the critical monitor was verified. Returns the
/// audit records read back from the bank.
fn connectivity_refused(art: &Artifacts, bundle: &Path, storage: &str, reason: &str) -> Vec<audit::Record> {
    let storage = fresh_storage(art, storage);
    let opts = Launch { bundle: Some(bundle.to_path_buf()), storage: Some(storage.clone()), ..Launch::default() };
    let mut m = Machine::launch(art, &opts).expect("QEMU starts");
    m.wait_for("30 critical heartbeats", Duration::from_secs(60), |l| beats(l, "critical-monitor").len() >= 30)
        .unwrap_or_else(|e| panic!("{e}"));
    let (lines, t) = (m.lines(), m.transcript());
    drop(m);
    assert_eq!(count(&lines, &format!("connectivity: not accepted: {reason}")), 1, "{t}");
    assert!(beats(&lines, "connectivity").is_empty(), "refused partition ran\n{t}");
    let records = audit_records(&storage);
    let verified = records.iter().filter(|r| r.event_kind() == Some(audit::EventKind::ImageVerified));
    assert_eq!(verified.map(|r| r.partition).collect::<Vec<_>>(), [0], "only critical-monitor verified");
    records
}

/// Boots `bundle` on a fresh flash bank (`storage`) until the safe state: the console
/// names the critical monitor's refusal for `reason` once, nothing beats, and the audit
/// log, read back from the bank and returned, ends with the safe state.
fn critical_refused(art: &Artifacts, bundle: &Path, storage: &str, reason: &str) -> Vec<audit::Record> {
    let storage = fresh_storage(art, storage);
    let opts = Launch { bundle: Some(bundle.to_path_buf()), storage: Some(storage.clone()), ..Launch::default() };
    let mut m = Machine::launch(art, &opts).expect("QEMU starts");
    wait_for_safe_state(&mut m);
    let (lines, t) = (m.lines(), m.transcript());
    drop(m);
    assert_eq!(count(&lines, &format!("critical-monitor: REFUSED: {reason}")), 1, "{t}");
    assert!(count(&lines, "SAFE STATE") >= 1, "{t}");
    assert_eq!(count(&lines, "heartbeat"), 0, "nothing may run\n{t}");
    let records = audit_records(&storage);
    assert_eq!(records.last().and_then(|r| r.event_kind()), Some(audit::EventKind::SafeState));
    records
}

/// A fresh flash bank file for one test.
fn fresh_storage(art: &Artifacts, name: &str) -> PathBuf {
    let storage = art.dir.join(name);
    let _ = std::fs::remove_file(&storage);
    storage
}

/// TRUST-008, TRUST-004, TRUST-009: the critical monitor's bootargs changed in a built
/// bundle (`heartbeat_ms=50` to `heartbeat_ms=10000`, which would slow its heartbeat 200
/// times), CRCs recomputed: its device tree is not the one signed, so the critical
/// partition is refused and the system goes to its safe state with the reason on the
/// console; the refusal is in the audit log, read back from the flash bank.
#[test]
fn critical_bootargs_edited_in_the_bundle_put_the_system_in_safe_state() {
    let art = artifacts("qemu-virt-bare");
    let (bundle, dtb) =
        bundle_with_edited_bootargs(&art, 0, "heartbeat_ms=50", "heartbeat_ms=10000", "bundle-critical-bootargs.bin");
    // 19 bytes of bootargs where 16 were: the tree grew by one 4-byte cell.
    let records = critical_refused(&art, &bundle, "storage-critical-bootargs.bin", "the device tree is");
    let error = TrustError::DeviceTreeLength { expected: 0, found: 0 };
    let failed = records.iter().find(|r| r.event_kind() == Some(audit::EventKind::VerificationFailed));
    let failed = failed.unwrap_or_else(|| panic!("no refusal in the audit log: {records:?}"));
    assert_eq!((failed.partition, failed.result), (0, error.code()), "{failed}");
    assert_eq!(failed.subject, hash::sha512(&dtb), "{failed}: subject is the refused device tree");
    assert_partition_refused(&records, 0, Refusal::Trust(error));
}

/// TRUST-008, TRUST-004, TRUST-009: connectivity's bootargs changed in a built bundle,
/// CRCs recomputed: connectivity is refused (not started, recorded), the critical
/// monitor boots and keeps its heartbeat.
#[test]
fn connectivity_bootargs_edited_in_the_bundle_refuse_only_connectivity() {
    let art = artifacts("qemu-virt-bare");
    let (bundle, dtb) =
        bundle_with_edited_bootargs(&art, 1, "heartbeat_ms=50", "heartbeat_ms=90", "bundle-connectivity-bootargs.bin");
    // Same length: only the hash tells.
    let reason = "the device tree's SHA-512 does not match its manifest";
    let records = connectivity_refused(&art, &bundle, "storage-connectivity-bootargs.bin", reason);
    assert_refusal_logged(&records, 1, TrustError::DeviceTreeHash, &hash::sha512(&dtb));
    assert_partition_refused(&records, 1, Refusal::Trust(TrustError::DeviceTreeHash));
}

/// BOOT-003, TRUST-004, TRUST-009: one byte of connectivity's image flipped in the
/// bundle, its CRC not fixed: connectivity alone is refused (before any signature is
/// looked at), with the code in the audit log; the critical monitor runs.
#[test]
fn corrupted_connectivity_image_refuses_only_connectivity() {
    let art = artifacts("qemu-virt-bare");
    let bundle = bundle_with_corrupted_payload(&art, EntryKind::Image, 1, "bundle-corrupted-connectivity.bin");
    let reason = "its image in the bundle fails its CRC-32: corrupted";
    let records = connectivity_refused(&art, &bundle, "storage-corrupted-connectivity.bin", reason);
    assert_partition_refused(&records, 1, Refusal::Payload(Payload::Image, PayloadFault::Corrupted));
    let failed = records.iter().filter(|r| r.event_kind() == Some(audit::EventKind::VerificationFailed));
    assert_eq!(failed.count(), 0, "refused before any signature is checked");
}

/// BOOT-003, TRUST-004, TRUST-009: one byte of the critical monitor's device tree
/// flipped in the bundle, its CRC not fixed: the safe state, recorded.
#[test]
fn corrupted_critical_device_tree_puts_the_system_in_safe_state() {
    let art = artifacts("qemu-virt-bare");
    let bundle = bundle_with_corrupted_payload(&art, EntryKind::DeviceTree, 0, "bundle-corrupted-critical.bin");
    let reason = "its device tree in the bundle fails its CRC-32: corrupted";
    let records = critical_refused(&art, &bundle, "storage-corrupted-critical.bin", reason);
    assert_partition_refused(&records, 0, Refusal::Payload(Payload::DeviceTree, PayloadFault::Corrupted));
}

/// BOOT-003, TRUST-009: a truncated bundle is refused as a whole and the boot stops,
/// and the refusal is in the audit log: the flash bank is open before the bundle is read.
#[test]
fn truncated_bundle_is_refused_and_recorded() {
    let art = artifacts("qemu-virt-bare");
    let bytes = std::fs::read(&art.bundle).expect("bundle");
    let total = bytes.len() as u64;
    let path = art.dir.join("bundle-truncated.bin");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    let storage = fresh_storage(&art, "storage-truncated.bin");
    let opts = Launch { bundle: Some(path), storage: Some(storage.clone()), ..Launch::default() };
    let mut m = Machine::launch(&art, &opts).expect("QEMU starts");
    m.wait_for("the refusal", Duration::from_secs(30), |l| count(l, "BOOT STOPPED") >= 1)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    let lines = m.lines();
    let t = m.transcript();
    drop(m);
    assert_eq!(count(&lines, &format!("refused: bundle says {total} bytes")), 1, "{t}");
    assert_eq!(count(&lines, "heartbeat"), 0, "nothing may run\n{t}");
    let records = audit_records(&storage);
    let kinds: Vec<_> = records.iter().filter_map(|r| r.event_kind()).collect();
    assert_eq!(kinds, [audit::EventKind::Boot, audit::EventKind::BundleRefused], "{records:?}");
    let refused = &records[1];
    let code = BundleError::BadLength { total_len: 0, available: 0 }.code();
    assert_eq!((refused.partition, refused.result, refused.detail), (audit::NO_PARTITION, code, total), "{refused}");
}

/// TRUST-010: boots on a flash bank, then the bank erased and the system booted again:
/// the new log's chain is intact, but `audit-verify` says its history begins at boot
/// #1, and against the dump taken before the erase it fails with "history restarted"
/// (the boot count fell from 3 to 1). Without the erase, the later dump continues the
/// earlier one.
#[test]
fn erased_flash_bank_is_reported_as_a_restarted_history() {
    let art = artifacts("qemu-virt-bare");
    let storage = fresh_storage(&art, "storage-history.bin");
    for _ in 0..2 {
        drop(boot_with_storage(&art, &storage, 2));
    }
    let earlier = art.dir.join("storage-history-earlier.bin");
    std::fs::copy(&storage, &earlier).expect("copy");
    drop(boot_with_storage(&art, &storage, 2));
    let later = art.dir.join("storage-history-later.bin");
    std::fs::copy(&storage, &later).expect("copy");
    let file = |p: &Path| p.to_string_lossy().into_owned();
    xtask::trust::cli::audit_verify(&[file(&later), "--previous".into(), file(&earlier)]).expect("continues");

    // The bank erased (a fresh file), and the device booted again.
    std::fs::remove_file(&storage).expect("remove");
    let m = boot_with_storage(&art, &storage, 2);
    assert_eq!(count(&m.lines(), "trust: boot #1,"), 1, "{}", m.transcript());
    drop(m);
    let bank = std::fs::read(&storage).expect("bank");
    assert!(audit::verify_bank(&bank).is_intact(), "the chain alone is intact");
    assert_eq!(history::of_bank(&bank).origin, history::Origin::Start { boot: 1 });
    xtask::trust::cli::audit_verify(&[file(&storage)]).expect("alone, it is a new bank");
    let err = xtask::trust::cli::audit_verify(&[file(&storage), "--previous".into(), file(&later)]).unwrap_err();
    assert!(err.contains("history restarted") && err.contains("boot count fell from 3 to 1"), "{err}");
}

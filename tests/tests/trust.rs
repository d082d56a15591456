//! Chain of trust at boot: tampered images are refused by policy, and the audit log in
//! the hypervisor's flash survives a restart and shows any edit. Requirement IDs are in
//! docs/requirements.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use septum_system_tests::{artifacts, beats, count, rebundle};
use septum_trust::audit;
use septum_trust::flash::{BLOCK_SIZE, LOG_FIRST_BLOCK};
use xtask::build::Artifacts;
use xtask::qemu::{Launch, Machine};

/// A copy of the system's bundle with one byte of partition `index`'s image flipped:
/// only the signatures can notice.
fn bundle_with_tampered_image(art: &Artifacts, index: usize, name: &str) -> PathBuf {
    rebundle(art, name, |parts| {
        let image = &mut parts.images[index];
        let at = image.len() / 2;
        image[at] ^= 0x01;
    })
}

/// TRUST-003, TRUST-004: a connectivity image changed after signing is refused; the
/// critical monitor boots and keeps its heartbeat.
#[test]
fn tampered_connectivity_image_is_refused_and_critical_runs() {
    let art = artifacts("qemu-virt");
    let bundle = bundle_with_tampered_image(&art, 1, "bundle-tampered-connectivity.bin");
    let mut m = Machine::launch(&art, &Launch { bundle: Some(bundle), ..Launch::default() }).expect("QEMU starts");
    m.wait_for("30 critical heartbeats", Duration::from_secs(60), |l| beats(l, "critical-monitor").len() >= 30)
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    assert_eq!(
        count(&lines, "connectivity: image not accepted: the image's SHA-512 does not match its manifest"),
        1,
        "{}",
        m.transcript()
    );
    assert!(beats(&lines, "connectivity").is_empty(), "refused image ran\n{}", m.transcript());
}

/// TRUST-003, TRUST-004: a critical-monitor image changed after signing puts the system
/// in its safe state, with the reason on the console, and nothing runs.
#[test]
fn tampered_critical_image_puts_the_system_in_safe_state() {
    let art = artifacts("qemu-virt");
    let bundle = bundle_with_tampered_image(&art, 0, "bundle-tampered-critical.bin");
    let mut m = Machine::launch(&art, &Launch { bundle: Some(bundle), ..Launch::default() }).expect("QEMU starts");
    m.wait_for("the safe state", Duration::from_secs(30), |l| count(l, "SAFE STATE") >= 1)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    let lines = m.lines();
    assert_eq!(
        count(&lines, "critical-monitor: REFUSED: the image's SHA-512 does not match its manifest"),
        1,
        "{}",
        m.transcript()
    );
    assert_eq!(count(&lines, "heartbeat"), 0, "nothing may run\n{}", m.transcript());
}

/// TRUST-002: a configuration changed after signing is refused as a whole.
#[test]
fn tampered_configuration_puts_the_system_in_safe_state() {
    let art = artifacts("qemu-virt");
    let path = rebundle(&art, "bundle-tampered-config.bin", |parts| {
        let at = parts.config.len() / 2;
        parts.config[at] ^= 0x20;
    });
    let mut m = Machine::launch(&art, &Launch { bundle: Some(path), ..Launch::default() }).expect("QEMU starts");
    m.wait_for("the refusal", Duration::from_secs(30), |l| count(l, "SAFE STATE") >= 1)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    let lines = m.lines();
    assert_eq!(count(&lines, "REFUSED: configuration signature"), 1, "{}", m.transcript());
    assert_eq!(count(&lines, "heartbeat"), 0, "nothing may run\n{}", m.transcript());
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
    let art = artifacts("qemu-virt");
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

    // Edit one byte of the third record: reported at exactly that record.
    let log = LOG_FIRST_BLOCK as usize * BLOCK_SIZE as usize;
    let mut edited = bank.clone();
    edited[log + 2 * audit::RECORD_LEN + 40] ^= 0x04;
    let report = audit::verify_bank(&edited);
    let broken = report.broken.as_ref().unwrap_or_else(|| panic!("edit not detected: {report}"));
    assert_eq!(broken.slot, 2, "{report}");
}

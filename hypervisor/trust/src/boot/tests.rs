//! Each refusal of the acceptance list, run through the boot checks and appended to a
//! real audit log on a RAM flash bank, then read back from the bank's bytes.

use std::collections::BTreeMap;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

use zerocopy::IntoBytes;

use super::*;
use crate::audit::{self, AuditLog, Record};
use crate::flash::{RamFlash, LOG_FIRST_BLOCK};
use crate::format::{name_field, Kind};
use crate::verify::tests::{
    anchor, chain_of, config_hash, dtb, envelope, expected, floors_with, genesis, image, key, manifest,
    manifest_envelope, release_roles, role, root, root_envelope, rotated, CONFIG, CONNECTIVITY, CRITICAL, LOGGER,
};
use crate::verify::Role;

/// Small erase blocks (4 slots each), so that the longer tests wrap the ring too.
const BS: u32 = 1024;
const LOG_BLOCKS: u32 = 8;
const LOG_AREA: usize = (LOG_FIRST_BLOCK * BS) as usize;

/// Configuration indices of the partitions in these tests.
const CRITICAL_INDEX: u8 = 0;
const CONNECTIVITY_INDEX: u8 = 1;
const LOGGER_INDEX: u8 = 2;

/// An audit log on a RAM bank, appended to as the hypervisor does.
struct Log {
    mem: Vec<u8>,
    log: AuditLog,
    /// The stand-in for the hypervisor's clock.
    now: u64,
}

impl Log {
    /// A fresh bank, opened for boot 1, with the Boot record the hypervisor writes first.
    fn new() -> Self {
        let mut mem = vec![0xFF; ((LOG_FIRST_BLOCK + LOG_BLOCKS) * BS) as usize];
        let (log, _) = AuditLog::open(&RamFlash::new(&mut mem, BS).unwrap(), 1).unwrap();
        let mut log = Self { mem, log, now: 0 };
        log.append(Event { detail: 1, ..Event::new(EventKind::Boot) });
        log
    }

    /// Stamps `event` and appends it, then reads the log back from the bank's bytes: it
    /// must verify intact and end with this record, which is returned.
    fn append(&mut self, event: Event) -> Record {
        assert_eq!(event.ticks, 0, "the caller stamps the clock");
        self.now += 1000;
        let mut ram = RamFlash::new(&mut self.mem, BS).unwrap();
        let seq = self.log.append(&mut ram, &Event { ticks: self.now, ..event }).unwrap();
        let area = &self.mem[LOG_AREA..];
        let report = audit::verify_blocks(area, BS);
        assert!(report.is_intact() && report.last_seq == Some(seq), "{report}");
        let (_, last) = audit::records_blocks(area, BS).last().expect("a record");
        let last = last.expect("the newest record is valid");
        assert_eq!((last.seq, last.boot, last.ticks), (seq, 1, self.now));
        last
    }

    /// The kinds of the records in the log, oldest first.
    fn kinds(&self) -> Vec<EventKind> {
        audit::records_blocks(&self.mem[LOG_AREA..], BS).map(|(_, r)| r.unwrap().event_kind().unwrap()).collect()
    }
}

/// Appends `checked`'s event and asserts that the check refused with `error` and that
/// the log's newest record says so: VerificationFailed, for `partition`, with the
/// error's code, about `subject`.
fn assert_logged_refusal<T: core::fmt::Debug>(
    log: &mut Log,
    checked: Checked<T>,
    error: TrustError,
    partition: u8,
    subject: &Hash,
) {
    match checked.result {
        Err(e) => assert_eq!(e, error),
        Ok(accepted) => panic!("accepted, expected {error:?}: {accepted:?}"),
    }
    let r = log.append(checked.event);
    assert_eq!(
        (r.event_kind(), r.partition, r.result, r.detail),
        (Some(EventKind::VerificationFailed), partition, error.code(), 0),
        "{error:?}"
    );
    assert!(r.subject == *subject, "{error:?}: subject");
}

/// Appends `checked`'s event and asserts that the log's newest record says `kind`
/// succeeded for `partition` with `detail` about `subject`.
fn assert_logged_success<T: core::fmt::Debug>(
    log: &mut Log,
    checked: &Checked<T>,
    kind: EventKind,
    partition: u8,
    detail: u64,
    subject: &Hash,
) {
    assert!(checked.result.is_ok(), "{kind}: {:?}", checked.result);
    let r = log.append(checked.event);
    assert_eq!((r.event_kind(), r.partition, r.result, r.detail), (Some(kind), partition, 0, detail));
    assert!(r.subject == *subject, "{kind}: subject");
}

/// A clock that reads `readings` in turn, and panics if read once more.
fn clock(readings: &[u64]) -> impl FnMut() -> u64 + '_ {
    let mut readings = readings.iter();
    move || *readings.next().expect("the clock is read no more often than documented")
}

/// [`partition`] of `name` (index `index`) on this board and configuration, with the
/// device tree as signed, its time split dropped.
fn check_partition(
    root: &RootBody,
    manifest: Option<&[u8]>,
    name: &str,
    index: u8,
    floors: &Floors,
    image_in_ram: &[u8],
) -> Checked<Manifest> {
    check_loaded(root, manifest, name, index, floors, InRam { image: image_in_ram, dtb: &dtb() })
}

/// [`partition`] of `name` (index `index`) with `in_ram`, its time split dropped.
fn check_loaded(
    root: &RootBody,
    manifest: Option<&[u8]>,
    name: &str,
    index: u8,
    floors: &Floors,
    in_ram: InRam<'_>,
) -> Checked<Manifest> {
    let config_hash = config_hash();
    partition(root, manifest, &expected(name, &config_hash), floors, index, in_ram, || 0).0
}

fn release(name: &str) -> Role {
    Role::Release { name: name_field(name).unwrap() }
}

/// TRUST-001, TRUST-002, TRUST-003, TRUST-006: a valid system (a rotated root chain,
/// its configuration, three partitions) leaves RootVerified, ConfigVerified and one
/// ImageVerified per partition in the audit log, with the root version, the body length
/// and the security counters; the manifest and image steps are timed apart.
#[test]
fn valid_system_logs_each_verification() {
    let (g, r2) = (genesis(), rotated());
    let docs = [root_envelope(&g, &[1, 2]), root_envelope(&r2, &[1, 2, 4, 5])];
    let mut log = Log::new();
    let floors = Floors::default();

    let checked = root_chain(&anchor(&g), chain_of(&docs), &floors, true);
    assert_logged_success(&mut log, &checked, EventKind::RootVerified, audit::NO_PARTITION, 2, &anchor(&g));
    let root = checked.result.unwrap();
    assert_eq!(root.as_bytes(), r2.as_bytes());

    let config_env = envelope(Kind::Config, CONFIG, &[4, 6]);
    let checked = config(&root, Some(&config_env), &floors);
    assert_logged_success(
        &mut log,
        &checked,
        EventKind::ConfigVerified,
        audit::NO_PARTITION,
        CONFIG.len() as u64,
        &hash::sha512(CONFIG),
    );
    assert_eq!(checked.result.unwrap(), CONFIG);

    let (image, dtb) = (image(), dtb());
    let in_ram = InRam { image: &image, dtb: &dtb };
    let config_hash = config_hash();
    for (name, index, signers) in [
        (CRITICAL, CRITICAL_INDEX, &[10, 11][..]),
        (CONNECTIVITY, CONNECTIVITY_INDEX, &[21, 20]),
        (LOGGER, LOGGER_INDEX, &[31]),
    ] {
        let m = manifest(name);
        let env = manifest_envelope(&m, signers);
        let expected = expected(name, &config_hash);
        let (checked, split) = partition(&root, Some(&env), &expected, &floors, index, in_ram, clock(&[100, 130, 180]));
        assert_eq!(split, Split { manifest: 30, image: 50 });
        assert_logged_success(&mut log, &checked, EventKind::ImageVerified, index, 5, &m.image_hash);
        assert_eq!(checked.result.unwrap().as_bytes(), m.as_bytes());
    }
    use EventKind::*;
    assert_eq!(log.kinds(), [Boot, RootVerified, ConfigVerified, ImageVerified, ImageVerified, ImageVerified]);
}

/// TRUST-001, TRUST-006: a root rotation signed only by the old keys or only by the
/// new keys (or one short on either side, or older than the accepted root) is refused,
/// and the refusal is in the audit log, about the anchor.
#[test]
fn refused_root_rotation_is_logged() {
    let (g, r2) = (genesis(), rotated());
    let a = anchor(&g);
    let genesis_env = root_envelope(&g, &[1, 2]);
    let mut log = Log::new();
    let threshold = |role, valid| TrustError::Threshold { role, valid, needed: 2 };
    let cases = [
        (&[1, 2, 3][..], Floors::default(), threshold(Role::Root { version: 2 }, 0)),
        (&[4, 5, 6], Floors::default(), threshold(Role::PreviousRoot { version: 2 }, 0)),
        (&[1, 4, 5], Floors::default(), threshold(Role::PreviousRoot { version: 2 }, 1)),
        (&[1, 2, 4], Floors::default(), threshold(Role::Root { version: 2 }, 1)),
        (
            &[1, 2, 4, 5],
            Floors { root_version: 3, ..Floors::default() },
            TrustError::RootRolledBack { found: 2, floor: 3 },
        ),
    ];
    for (signers, floors, error) in cases {
        let docs = [genesis_env.clone(), root_envelope(&r2, signers)];
        let checked = root_chain(&a, chain_of(&docs), &floors, false);
        assert_logged_refusal(&mut log, checked, error, audit::NO_PARTITION, &a);
    }
    // With both thresholds the same rotation is accepted, and logged as such.
    let docs = [genesis_env, root_envelope(&r2, &[1, 2, 4, 5])];
    let checked = root_chain(&a, chain_of(&docs), &Floors::default(), false);
    assert_logged_success(&mut log, &checked, EventKind::RootVerified, audit::NO_PARTITION, 2, &a);
}

/// TRUST-002, TRUST-006: a configuration one signer short, or missing, is refused and
/// logged, about the refused envelope (zeros when there is none).
#[test]
fn refused_configuration_is_logged() {
    let root = genesis();
    let floors = Floors::default();
    let mut log = Log::new();
    let short = envelope(Kind::Config, CONFIG, &[1, 10]);
    let error = TrustError::Threshold { role: Role::Root { version: 1 }, valid: 1, needed: 2 };
    assert_logged_refusal(
        &mut log,
        config(&root, Some(&short), &floors),
        error,
        audit::NO_PARTITION,
        &hash::sha512(&short),
    );
    assert_logged_refusal(&mut log, config(&root, None, &floors), TrustError::Missing, audit::NO_PARTITION, &[0; 64]);
}

/// TRUST-003, TRUST-006: an image truncated at each of a sample of positions, extended
/// by one byte, or changed at the same length, is refused and logged for its partition,
/// about the bytes that were in RAM.
#[test]
fn refused_image_is_logged() {
    let root = genesis();
    let floors = Floors::default();
    let env = manifest_envelope(&manifest(CONNECTIVITY), &[20, 21]);
    let image = image();
    let len = image.len();
    let mut log = Log::new();
    let mut cases: Vec<(Vec<u8>, TrustError)> = Vec::new();
    for cut in [0, 1, 8, 64, len / 2, len - 8, len - 1] {
        cases.push((image[..cut].to_vec(), TrustError::ImageLength { expected: len as u64, found: cut as u64 }));
    }
    let mut longer = image.clone();
    longer.push(0);
    cases.push((longer, TrustError::ImageLength { expected: len as u64, found: len as u64 + 1 }));
    for at in [0, len / 2, len - 1] {
        let mut altered = image.clone();
        altered[at] ^= 0x01;
        cases.push((altered, TrustError::ImageHash));
    }
    for (in_ram, error) in cases {
        let checked = check_partition(&root, Some(&env), CONNECTIVITY, CONNECTIVITY_INDEX, &floors, &in_ram);
        assert_logged_refusal(&mut log, checked, error, CONNECTIVITY_INDEX, &hash::sha512(&in_ram));
    }
    // The image step was reached, and timed.
    let config_hash = config_hash();
    let in_ram = InRam { image: &image[1..], dtb: &dtb() };
    let (checked, split) = partition(
        &root,
        Some(&env),
        &expected(CONNECTIVITY, &config_hash),
        &floors,
        CONNECTIVITY_INDEX,
        in_ram,
        clock(&[5, 7, 20]),
    );
    assert!(matches!(checked.result, Err(TrustError::ImageLength { .. })));
    assert_eq!(split, Split { manifest: 2, image: 13 });
}

/// TRUST-003, TRUST-006: a manifest signed by an unknown key, by a key revoked (by the
/// root document or by the stored floor), one signer short of the threshold, or with
/// one key counted twice; for another board, another configuration or another
/// partition; with a lower security counter; or missing: each is refused and logged
/// for its partition, about the image in RAM.
#[test]
fn refused_manifest_is_logged() {
    let g = genesis();
    let floors = Floors::default();
    let m = manifest(CRITICAL);
    let image = image();
    let subject = hash::sha512(&image);
    let mut log = Log::new();
    let threshold = |valid| TrustError::Threshold { role: release(CRITICAL), valid, needed: 2 };

    // The root document itself revokes key 10 of critical-monitor (version 1 < 2).
    let mut roles = release_roles();
    roles[0] = role(CRITICAL, 2, 2, &[key(10, 1), key(11, 2), key(12, 2)]);
    let revoking = root(1, 2, 0, &[key(1, 1), key(2, 1), key(3, 1)], &roles);

    let board = Manifest { board_id: name_field("other-board").unwrap(), ..m };
    let other_config = Manifest { config_hash: hash::sha512(b"another configuration"), ..m };
    let cases = [
        (g, manifest_envelope(&m, &[10, 99]), floors, threshold(1)),
        (g, manifest_envelope(&m, &[99]), floors, threshold(0)),
        (revoking, manifest_envelope(&m, &[10, 11]), floors, threshold(1)),
        (g, manifest_envelope(&m, &[10, 11]), floors_with(CRITICAL, 2, 0), threshold(1)),
        (g, manifest_envelope(&m, &[11]), floors, threshold(1)),
        (g, manifest_envelope(&m, &[10, 10]), floors, threshold(1)),
        (g, manifest_envelope(&m, &[11, 11, 11]), floors, threshold(1)),
        (g, manifest_envelope(&board, &[10, 11]), floors, TrustError::WrongBoard { found: board.board_id }),
        (g, manifest_envelope(&other_config, &[10, 11]), floors, TrustError::WrongConfig),
        (
            g,
            manifest_envelope(&manifest(CONNECTIVITY), &[20, 21]),
            floors,
            TrustError::WrongPartition { found: name_field(CONNECTIVITY).unwrap() },
        ),
        (
            g,
            manifest_envelope(&m, &[10, 11]),
            floors_with(CRITICAL, 0, 6),
            TrustError::CounterRolledBack { found: 5, floor: 6 },
        ),
    ];
    for (root, env, floors, error) in cases {
        let checked = check_partition(&root, Some(&env), CRITICAL, CRITICAL_INDEX, &floors, &image);
        assert_logged_refusal(&mut log, checked, error, CRITICAL_INDEX, &subject);
    }
    // The logger's threshold of 1: another role's keys give it none.
    let checked = check_partition(
        &g,
        Some(&manifest_envelope(&manifest(LOGGER), &[10, 11])),
        LOGGER,
        LOGGER_INDEX,
        &floors,
        &image,
    );
    let error = TrustError::Threshold { role: release(LOGGER), valid: 0, needed: 1 };
    assert_logged_refusal(&mut log, checked, error, LOGGER_INDEX, &subject);

    // No manifest: the image step is not reached (the clock is read twice).
    let config_hash = config_hash();
    let in_ram = InRam { image: &image, dtb: &dtb() };
    let (checked, split) =
        partition(&g, None, &expected(CRITICAL, &config_hash), &floors, CRITICAL_INDEX, in_ram, clock(&[40, 41]));
    assert_eq!(split, Split { manifest: 1, image: 0 });
    assert_logged_refusal(&mut log, checked, TrustError::Missing, CRITICAL_INDEX, &subject);

    // At (not below) the stored counter, and with key 10 unrevoked, the same manifest passes.
    let checked = check_partition(
        &g,
        Some(&manifest_envelope(&m, &[10, 11])),
        CRITICAL,
        CRITICAL_INDEX,
        &floors_with(CRITICAL, 1, 5),
        &image,
    );
    assert_logged_success(&mut log, &checked, EventKind::ImageVerified, CRITICAL_INDEX, 5, &m.image_hash);
}

/// TRUST-003, TRUST-006: every single-bit flip of a manifest envelope is refused and
/// logged, with the code of the refusal, for its partition, about the image in RAM.
/// The envelope carries exactly the threshold of signatures (a surplus one could
/// change harmlessly). Spread over threads, one log each; each log wraps its ring many
/// times.
#[test]
fn every_bit_flip_of_a_manifest_is_refused_and_logged() {
    let root = genesis();
    let floors = Floors::default();
    let env = manifest_envelope(&manifest(CRITICAL), &[10, 11]);
    let image = image();
    let subject = hash::sha512(&image);
    assert!(check_partition(&root, Some(&env), CRITICAL, CRITICAL_INDEX, &floors, &image).result.is_ok());
    let bits = env.len() * 8;
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).min(16);
    // The codes logged, and how often: every flip is refused, by one check or another.
    let codes: BTreeMap<u8, usize> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (root, env, image, subject) = (&root, &env, &image, &subject);
                s.spawn(move || {
                    let mut log = Log::new();
                    let mut flipped = env.clone();
                    let mut codes = BTreeMap::new();
                    for bit in (t..bits).step_by(threads) {
                        flipped[bit / 8] ^= 1 << (bit % 8);
                        let checked = check_partition(root, Some(&flipped), CRITICAL, CRITICAL_INDEX, &floors, image);
                        let Err(error) = checked.result else {
                            panic!("flip of bit {} of byte {} accepted", bit % 8, bit / 8)
                        };
                        assert_logged_refusal(&mut log, checked, error, CRITICAL_INDEX, subject);
                        flipped[bit / 8] ^= 1 << (bit % 8);
                        *codes.entry(error.code()).or_insert(0) += 1;
                    }
                    codes
                })
            })
            .collect();
        let mut all = BTreeMap::new();
        for worker in workers {
            for (code, n) in worker.join().unwrap() {
                *all.entry(code).or_insert(0) += n;
            }
        }
        all
    });
    assert_eq!(codes.values().sum::<usize>(), bits);
    // Framing (header) flips; body fields read before the signatures are checked (magic,
    // version, reserved; the partition name, which picks the role); all the others
    // (signed body, signatures) fail the threshold.
    let expected = [
        TrustError::Format(crate::format::FormatError::BadMagic),
        TrustError::WrongKind { expected: Kind::Manifest, found: Kind::Root },
        TrustError::Threshold { role: release(CRITICAL), valid: 0, needed: 2 },
        TrustError::BadManifest(""),
        TrustError::UnknownPartition { name: [0; crate::NAME_LEN] },
    ]
    .map(|e| e.code());
    assert!(codes.keys().copied().eq(expected), "{codes:?}");
}

/// TRUST-008, TRUST-006: a device tree truncated, extended, or edited (the command line
/// of the critical monitor changed, the whole tree taken from another partition) is
/// refused and logged for its partition, about the device tree that was in RAM; the
/// image beside it was fine.
#[test]
fn refused_device_tree_is_logged() {
    let root = genesis();
    let floors = Floors::default();
    let env = manifest_envelope(&manifest(CRITICAL), &[10, 11]);
    let (image, dtb) = (image(), dtb());
    let len = dtb.len() as u64;
    let mut log = Log::new();
    let mut edited = dtb.clone();
    edited[40..55].copy_from_slice(b"fault_after=30 ");
    let mut longer = dtb.clone();
    longer.extend_from_slice(b"\0\0\0\x09");
    let cases = [
        (dtb[..dtb.len() - 4].to_vec(), TrustError::DeviceTreeLength { expected: len, found: len - 4 }),
        (longer, TrustError::DeviceTreeLength { expected: len, found: len + 4 }),
        (edited, TrustError::DeviceTreeHash),
        (dtb.iter().map(|b| !b).collect(), TrustError::DeviceTreeHash),
    ];
    for (in_ram, error) in cases {
        let checked =
            check_loaded(&root, Some(&env), CRITICAL, CRITICAL_INDEX, &floors, InRam { image: &image, dtb: &in_ram });
        assert_logged_refusal(&mut log, checked, error, CRITICAL_INDEX, &hash::sha512(&in_ram));
    }
    // Both as signed: accepted.
    let checked =
        check_loaded(&root, Some(&env), CRITICAL, CRITICAL_INDEX, &floors, InRam { image: &image, dtb: &dtb });
    assert!(checked.result.is_ok(), "{:?}", checked.result);
}

/// TRUST-009, TRUST-004: a partition not started, for a trust refusal or for a payload
/// missing, corrupted or too large, leaves a PartitionRefused record with a distinct
/// code and the payload at fault; a bundle refused as a whole leaves a BundleRefused
/// record. Each is read back from the bank.
#[test]
fn every_refusal_is_recorded_with_its_code() {
    let mut log = Log::new();
    let mut codes = std::collections::BTreeSet::new();
    let trust = Refusal::Trust(TrustError::DeviceTreeHash);
    let mut refusals = vec![(trust, 0)];
    for what in [Payload::Image, Payload::DeviceTree, Payload::Manifest] {
        for fault in [PayloadFault::Missing, PayloadFault::Corrupted, PayloadFault::TooLarge] {
            refusals.push((Refusal::Payload(what, fault), what as u64));
        }
    }
    for (refusal, detail) in refusals {
        let r = log.append(refused(CONNECTIVITY_INDEX, &refusal));
        assert_eq!(
            (r.event_kind(), r.partition, r.result, r.detail),
            (Some(EventKind::PartitionRefused), CONNECTIVITY_INDEX, refusal.code(), detail),
            "{refusal}"
        );
        codes.insert((refusal.code(), detail));
        let text = refusal.to_string();
        assert!(!text.is_empty() && !text.contains('\n'), "{text}");
    }
    assert_eq!(codes.len(), 10, "each refusal tells itself apart: {codes:?}");
    assert_eq!(refused(0, &trust).result, TrustError::DeviceTreeHash.code());
    assert_eq!(
        Refusal::Payload(Payload::Image, PayloadFault::Corrupted).to_string(),
        "its image in the bundle fails its CRC-32: corrupted"
    );

    let r = log.append(bundle_refused(5, 1234));
    assert_eq!(
        (r.event_kind(), r.partition, r.result, r.detail),
        (Some(EventKind::BundleRefused), audit::NO_PARTITION, 5, 1234)
    );
    use EventKind::*;
    assert_eq!(log.kinds().first(), Some(&Boot));
    assert_eq!(log.kinds().last(), Some(&BundleRefused));
}

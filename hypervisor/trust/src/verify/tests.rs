//! Fixed-seed keys (`SigningKey::from_bytes(&[n; 32])`): 1..=3 genesis root keys,
//! 4..=6 and 7..=9 rotated root keys, 10..=12 critical-monitor, 20..=21 connectivity,
//! 30..=31 logger, 99 listed nowhere.

use std::string::ToString;
use std::sync::OnceLock;
use std::vec;
use std::vec::Vec;

use ed25519_dalek::{Signer, SigningKey};
use zerocopy::{FromZeros, IntoBytes};

use super::*;
use crate::format::{envelope_len, name_field, statement, write_envelope};

pub(crate) const CRITICAL: &str = "critical-monitor";
pub(crate) const CONNECTIVITY: &str = "connectivity";
pub(crate) const LOGGER: &str = "logger";
pub(crate) const BOARD: &str = "qemu-virt";
/// 43 bytes: not a multiple of 8, so its envelope has padding.
pub(crate) const CONFIG: &[u8] = b"compiled configuration (not a multiple of 8";

/// Key derivation is a scalar multiplication, slow in debug builds: each key once.
fn signing(n: u8) -> &'static SigningKey {
    static KEYS: [OnceLock<SigningKey>; 100] = [const { OnceLock::new() }; 100];
    KEYS[usize::from(n)].get_or_init(|| SigningKey::from_bytes(&[n; 32]))
}

fn public(n: u8) -> [u8; 32] {
    signing(n).verifying_key().to_bytes()
}

pub(crate) fn key(n: u8, key_version: u32) -> KeyEntry {
    KeyEntry { public: public(n), key_version, _reserved: 0 }
}

fn sig(n: u8, kind: Kind, body: &[u8]) -> Signature {
    Signature { key: public(n), signature: signing(n).sign(&statement(kind, body)).to_bytes() }
}

fn envelope_with(kind: Kind, body: &[u8], sigs: &[Signature]) -> Vec<u8> {
    let mut out = vec![0u8; envelope_len(body.len(), sigs.len())];
    let len = write_envelope(kind, body, sigs, &mut out).expect("envelope fits");
    assert_eq!(len, out.len());
    out
}

pub(crate) fn envelope(kind: Kind, body: &[u8], signers: &[u8]) -> Vec<u8> {
    let sigs: Vec<Signature> = signers.iter().map(|&n| sig(n, kind, body)).collect();
    envelope_with(kind, body, &sigs)
}

pub(crate) fn role(name: &str, threshold: u32, min_key_version: u32, keys: &[KeyEntry]) -> RoleEntry {
    let mut r = RoleEntry {
        name: name_field(name).unwrap(),
        threshold,
        key_count: keys.len() as u32,
        min_key_version,
        ..RoleEntry::default()
    };
    r.keys[..keys.len()].copy_from_slice(keys);
    r
}

pub(crate) fn root(
    version: u32,
    threshold: u32,
    min_key_version: u32,
    keys: &[KeyEntry],
    roles: &[RoleEntry],
) -> RootBody {
    let mut r = RootBody::new_zeroed();
    r.magic = ROOT_MAGIC;
    r.format_version = FORMAT_VERSION;
    r.version = version;
    r.threshold = threshold;
    r.key_count = keys.len() as u32;
    r.min_key_version = min_key_version;
    r.keys[..keys.len()].copy_from_slice(keys);
    r.role_count = roles.len() as u32;
    r.roles[..roles.len()].copy_from_slice(roles);
    r
}

pub(crate) fn release_roles() -> [RoleEntry; 3] {
    [
        role(CRITICAL, 2, 1, &[key(10, 1), key(11, 2)]),
        role(CONNECTIVITY, 2, 0, &[key(20, 0), key(21, 0)]),
        role(LOGGER, 1, 0, &[key(30, 0), key(31, 0)]),
    ]
}

/// Root keys 1, 2, 3 (threshold 2); critical-monitor and connectivity 2 keys,
/// threshold 2; logger 2 keys, threshold 1.
pub(crate) fn genesis() -> RootBody {
    root(1, 2, 0, &[key(1, 1), key(2, 1), key(3, 1)], &release_roles())
}

/// The rotation of [`genesis`] to keys 4, 5, 6 (version 2, revoking version 1).
pub(crate) fn rotated() -> RootBody {
    root(2, 2, 2, &[key(4, 2), key(5, 2), key(6, 2)], &release_roles())
}

pub(crate) fn root_envelope(body: &RootBody, signers: &[u8]) -> Vec<u8> {
    envelope(Kind::Root, body.as_bytes(), signers)
}

pub(crate) fn anchor(body: &RootBody) -> Hash {
    hash::sha512(body.as_bytes())
}

pub(crate) fn chain_of(docs: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    docs.iter().map(Vec::as_slice)
}

pub(crate) fn image() -> Vec<u8> {
    (0..1000u32).map(|i| (i.wrapping_mul(7) ^ (i >> 3)) as u8).collect()
}

/// A partition's device tree stand-in: 333 bytes, not a multiple of 8.
pub(crate) fn dtb() -> Vec<u8> {
    (0..333u32).map(|i| (i.wrapping_mul(13) ^ 0x5a) as u8).collect()
}

/// Where the configuration loads the partitions of these tests.
pub(crate) const PLACEMENT: Placement =
    Placement { load_ipa: 0x4000_0000, entry_ipa: 0x4000_0000, dtb_ipa: 0x40f0_0000 };

/// What a manifest for `partition` must be, on [`BOARD`] with `config_hash` ([`CONFIG`]'s).
pub(crate) fn expected<'a>(partition: &'a str, config_hash: &'a Hash) -> Expected<'a> {
    Expected { partition, board_id: BOARD, config_hash, placement: PLACEMENT }
}

pub(crate) fn config_hash() -> Hash {
    hash::sha512(CONFIG)
}

pub(crate) fn manifest(partition: &str) -> Manifest {
    let image = image();
    let mut m = Manifest::new_zeroed();
    m.magic = MANIFEST_MAGIC;
    m.format_version = MANIFEST_VERSION;
    m.partition = name_field(partition).unwrap();
    m.board_id = name_field(BOARD).unwrap();
    m.version_major = 1;
    m.version_minor = 2;
    m.version_patch = 3;
    m.security_counter = 5;
    m.image_len = image.len() as u64;
    m.image_hash = hash::sha512(&image);
    m.load_ipa = PLACEMENT.load_ipa;
    m.entry_ipa = PLACEMENT.entry_ipa;
    m.dtb_len = dtb().len() as u64;
    m.dtb_hash = hash::sha512(&dtb());
    m.dtb_ipa = PLACEMENT.dtb_ipa;
    m.config_hash = config_hash();
    m
}

pub(crate) fn manifest_envelope(m: &Manifest, signers: &[u8]) -> Vec<u8> {
    envelope(Kind::Manifest, m.as_bytes(), signers)
}

/// Verifies `envelope` as `partition`'s manifest on [`BOARD`] with [`CONFIG`] (the
/// documents have no `PartialEq`: results are compared without them).
fn check_manifest(root: &RootBody, envelope: &[u8], partition: &str, floors: &Floors) -> Result<(), TrustError> {
    let config_hash = config_hash();
    verify_manifest(root, envelope, &expected(partition, &config_hash), floors).map(|_| ())
}

/// [`verify_root_chain`], reduced to the version of the root in force.
fn chain_version<'a>(
    anchor: &Hash,
    chain: impl Iterator<Item = &'a [u8]>,
    floors: &Floors,
    production: bool,
) -> Result<u32, TrustError> {
    verify_root_chain(anchor, chain, floors, production).map(|r| r.version)
}

fn threshold(role: Role, valid: usize, needed: u32) -> Result<(), TrustError> {
    Err(TrustError::Threshold { role, valid, needed })
}

fn critical() -> Role {
    Role::Release { name: name_field(CRITICAL).unwrap() }
}

pub(crate) fn floors_with(partition: &str, min_key_version: u32, security_counter: u64) -> Floors {
    let mut floors = Floors::default();
    floors.partitions[0] =
        PartitionFloor { name: name_field(partition).unwrap(), min_key_version, _reserved: 0, security_counter };
    floors
}

// ---------------------------------------------------------------- the whole chain

#[test]
fn valid_chain_config_manifests_and_images_verify() {
    let g = genesis();
    check_root_body(&g).unwrap();
    let docs = [root_envelope(&g, &[1, 2])];
    let floors = Floors::default();
    let root = verify_root_chain(&anchor(&g), chain_of(&docs), &floors, true).unwrap();
    assert_eq!(root.as_bytes(), g.as_bytes());

    let config = envelope(Kind::Config, CONFIG, &[2, 3]);
    assert_eq!(verify_config(&root, &config, &floors).unwrap(), CONFIG);

    let image = image();
    let config_hash = config_hash();
    for (partition, signers) in [(CRITICAL, &[10, 11][..]), (CONNECTIVITY, &[21, 20]), (LOGGER, &[31])] {
        let m = manifest(partition);
        let accepted =
            verify_manifest(&root, &manifest_envelope(&m, signers), &expected(partition, &config_hash), &floors)
                .unwrap();
        assert_eq!(accepted.as_bytes(), m.as_bytes());
        verify_image(&accepted, &image).unwrap();
        verify_device_tree(&accepted, &dtb()).unwrap();
    }

    // Surplus signatures, including bad and unknown ones, do not hurt.
    let mut sigs = vec![sig(99, Kind::Manifest, manifest(CRITICAL).as_bytes()), sig(10, Kind::Manifest, &[0; 320])];
    sigs.extend([10, 11].map(|n| sig(n, Kind::Manifest, manifest(CRITICAL).as_bytes())));
    let env = envelope_with(Kind::Manifest, manifest(CRITICAL).as_bytes(), &sigs);
    check_manifest(&root, &env, CRITICAL, &floors).unwrap();
}

#[test]
fn rotation_verifies_and_survives_its_own_floors() {
    let (g, r2) = (genesis(), rotated());
    let r3 = root(3, 2, 3, &[key(7, 3), key(8, 3), key(9, 3)], &release_roles());
    let docs = [root_envelope(&g, &[1, 2]), root_envelope(&r2, &[3, 1, 6, 4]), root_envelope(&r3, &[5, 6, 8, 9])];
    let a = anchor(&g);

    let floors = Floors::default();
    let root = verify_root_chain(&a, chain_of(&docs[..2]), &floors, true).unwrap();
    assert_eq!(root.version, 2);
    let root = verify_root_chain(&a, chain_of(&docs), &floors, true).unwrap();
    assert_eq!(root.version, 3);

    // After accepting r3 the floors revoke key versions below 3, which covers every key
    // of g and r2: the chain through them must still verify (they are history).
    let floors = raise_floors(&floors, &root, &[]).unwrap();
    assert_eq!((floors.root_version, floors.root_min_key_version), (3, 3));
    assert_eq!(chain_version(&a, chain_of(&docs), &floors, true).unwrap(), 3);
    // ... but r2 as the root in force may not come back.
    assert_eq!(
        chain_version(&a, chain_of(&docs[..2]), &floors, true),
        Err(TrustError::Threshold { role: Role::Root { version: 2 }, valid: 0, needed: 2 })
    );
    let version_only = Floors { root_version: 3, ..Floors::default() };
    assert_eq!(
        chain_version(&a, chain_of(&docs[..2]), &version_only, true),
        Err(TrustError::RootRolledBack { found: 2, floor: 3 })
    );

    // The configuration is signed by the keys in force, not the superseded ones.
    assert!(verify_config(&root, &envelope(Kind::Config, CONFIG, &[7, 9]), &floors).is_ok());
    assert_eq!(
        verify_config(&root, &envelope(Kind::Config, CONFIG, &[1, 2, 4, 5]), &floors),
        Err(TrustError::Threshold { role: Role::Root { version: 3 }, valid: 0, needed: 2 })
    );
}

// ---------------------------------------------------------------- root chain refusals

#[test]
fn rotation_signed_by_only_old_or_only_new_keys_or_not_newer_is_refused() {
    let (g, r2) = (genesis(), rotated());
    let a = anchor(&g);
    let floors = Floors::default();
    let genesis_env = root_envelope(&g, &[1, 2]);
    let verify = |second: Vec<u8>| chain_version(&a, chain_of(&[genesis_env.clone(), second]), &floors, false);

    assert_eq!(
        verify(root_envelope(&r2, &[1, 2, 3])),
        Err(TrustError::Threshold { role: Role::Root { version: 2 }, valid: 0, needed: 2 })
    );
    assert_eq!(
        verify(root_envelope(&r2, &[4, 5, 6])),
        Err(TrustError::Threshold { role: Role::PreviousRoot { version: 2 }, valid: 0, needed: 2 })
    );
    // One short on either side.
    assert_eq!(
        verify(root_envelope(&r2, &[1, 4, 5])),
        Err(TrustError::Threshold { role: Role::PreviousRoot { version: 2 }, valid: 1, needed: 2 })
    );
    assert_eq!(
        verify(root_envelope(&r2, &[1, 2, 4])),
        Err(TrustError::Threshold { role: Role::Root { version: 2 }, valid: 1, needed: 2 })
    );
    for version in [0, 1] {
        let stale = RootBody { version, ..r2 };
        assert_eq!(
            verify(root_envelope(&stale, &[1, 2, 4, 5])),
            Err(TrustError::RootNotNewer { previous: 1, found: version })
        );
    }
    assert_eq!(verify(root_envelope(&r2, &[1, 2, 4, 5])).unwrap(), 2);
}

#[test]
fn old_root_keys_count_with_the_old_documents_minimum() {
    // g revokes its own key 3 (version 1 < 2): it may not authorise the rotation.
    let g = root(1, 2, 2, &[key(1, 2), key(2, 2), key(3, 1)], &release_roles());
    let r2 = rotated();
    let a = anchor(&g);
    let docs = [root_envelope(&g, &[1, 2]), root_envelope(&r2, &[1, 3, 4, 5])];
    assert_eq!(
        chain_version(&a, chain_of(&docs), &Floors::default(), false),
        Err(TrustError::Threshold { role: Role::PreviousRoot { version: 2 }, valid: 1, needed: 2 })
    );
    // A new document's keys below its own minimum do not count either.
    let r2 = root(2, 2, 3, &[key(4, 3), key(5, 2), key(6, 3)], &release_roles());
    let docs = [root_envelope(&g, &[1, 2]), root_envelope(&r2, &[1, 2, 4, 5])];
    assert_eq!(
        chain_version(&a, chain_of(&docs), &Floors::default(), false),
        Err(TrustError::Threshold { role: Role::Root { version: 2 }, valid: 1, needed: 2 })
    );
}

#[test]
fn genesis_must_match_the_anchor_and_be_self_signed() {
    let g = genesis();
    let floors = Floors::default();
    let docs = [root_envelope(&g, &[1, 2])];
    assert_eq!(chain_version(&anchor(&rotated()), chain_of(&docs), &floors, false), Err(TrustError::AnchorMismatch));
    let mut wrong = anchor(&g);
    wrong[63] ^= 1;
    assert_eq!(chain_version(&wrong, chain_of(&docs), &floors, false), Err(TrustError::AnchorMismatch));
    // Anchored, but not signed by a threshold of its own keys.
    let docs = [root_envelope(&g, &[1, 4, 5])];
    assert_eq!(
        chain_version(&anchor(&g), chain_of(&docs), &floors, false),
        Err(TrustError::Threshold { role: Role::Root { version: 1 }, valid: 1, needed: 2 })
    );
    assert_eq!(chain_version(&anchor(&g), chain_of(&[]), &floors, false), Err(TrustError::EmptyChain));
    // A configuration is not a root.
    let docs = [envelope(Kind::Config, g.as_bytes(), &[1, 2])];
    assert_eq!(
        chain_version(&anchor(&g), chain_of(&docs), &floors, false),
        Err(TrustError::WrongKind { expected: Kind::Root, found: Kind::Config })
    );
}

#[test]
fn root_version_below_the_floor_is_refused() {
    let g = genesis();
    let docs = [root_envelope(&g, &[1, 2])];
    let floors = Floors { root_version: 2, ..Floors::default() };
    assert_eq!(
        chain_version(&anchor(&g), chain_of(&docs), &floors, false),
        Err(TrustError::RootRolledBack { found: 1, floor: 2 })
    );
    let floors = Floors { root_version: 1, ..Floors::default() };
    assert!(chain_version(&anchor(&g), chain_of(&docs), &floors, false).is_ok());
}

#[test]
fn root_key_floor_revokes_keys_of_the_root_in_force() {
    let g = genesis();
    let docs = [root_envelope(&g, &[1, 2, 3])];
    let floors = Floors { root_min_key_version: 2, ..Floors::default() };
    assert_eq!(
        chain_version(&anchor(&g), chain_of(&docs), &floors, false),
        Err(TrustError::Threshold { role: Role::Root { version: 1 }, valid: 0, needed: 2 })
    );
    // And the configuration signed by such keys.
    let mixed = root(1, 2, 0, &[key(1, 1), key(2, 2), key(3, 2)], &release_roles());
    let config = envelope(Kind::Config, CONFIG, &[1, 2]);
    assert_eq!(
        verify_config(&mixed, &config, &floors),
        Err(TrustError::Threshold { role: Role::Root { version: 1 }, valid: 1, needed: 2 })
    );
    assert!(verify_config(&mixed, &envelope(Kind::Config, CONFIG, &[2, 3]), &floors).is_ok());
}

#[test]
fn development_root_is_refused_in_production_anywhere_in_the_chain() {
    let dev = RootBody { flags: format::root_flags::DEVELOPMENT, ..genesis() };
    let docs = [root_envelope(&dev, &[1, 2])];
    let floors = Floors::default();
    assert_eq!(
        chain_version(&anchor(&dev), chain_of(&docs), &floors, true),
        Err(TrustError::DevelopmentRootInProduction)
    );
    assert!(chain_version(&anchor(&dev), chain_of(&docs), &floors, false).is_ok());
    // A production root rotated from a development one: its predecessor's keys are public.
    let docs = [root_envelope(&dev, &[1, 2]), root_envelope(&rotated(), &[1, 2, 4, 5])];
    assert_eq!(
        chain_version(&anchor(&dev), chain_of(&docs), &floors, true),
        Err(TrustError::DevelopmentRootInProduction)
    );
    assert_eq!(chain_version(&anchor(&dev), chain_of(&docs), &floors, false).unwrap(), 2);
}

#[test]
fn root_structure_is_checked() {
    let ok = genesis();
    check_root_body(&ok).unwrap();
    check_root_body(&rotated()).unwrap();
    let bad_role = |r: RootBody, role: Option<u8>| match check_root_body(&r) {
        Err(TrustError::BadRootDocument { role: found, reason }) => {
            assert_eq!(found, role, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected BadRootDocument for role {role:?}, got {other:?}"),
    };
    // Small y-coordinates: some are not on the curve; some are points of large order,
    // which y + p (p = 2^255 - 19) also encodes, non-canonically.
    let small_y = |y: u8| {
        let mut p = [0u8; 32];
        p[0] = y;
        p
    };
    let not_a_point = (2..19).map(small_y).find(|p| VerifyingKey::from_bytes(p).is_err()).unwrap();
    let non_canonical = {
        let y = (2..19).find(|&y| VerifyingKey::from_bytes(&small_y(y)).is_ok_and(|k| !k.is_weak())).unwrap();
        let mut p = [0xffu8; 32];
        p[0] = 0xed + y;
        p[31] = 0x7f;
        assert!(VerifyingKey::from_bytes(&p).is_ok(), "decodes, only non-canonically");
        p
    };
    let identity = small_y(1);

    bad_role(RootBody { magic: *b"SEPTMNFT", ..ok }, None);
    bad_role(RootBody { format_version: 2, ..ok }, None);
    bad_role(RootBody { flags: 1 << 5, ..ok }, None);
    bad_role(RootBody { _reserved: 1, ..ok }, None);
    bad_role(RootBody { threshold: 0, ..ok }, None);
    bad_role(RootBody { threshold: 4, ..ok }, None);
    bad_role(RootBody { key_count: 0, threshold: 0, ..ok }, None);
    bad_role(RootBody { key_count: MAX_KEYS as u32 + 1, ..ok }, None);
    bad_role(RootBody { role_count: MAX_ROLES as u32 + 1, ..ok }, None);
    bad_role(RootBody { role_count: 2, ..ok }, None); // the third role is then a nonzero unused slot
    bad_role(RootBody { min_key_version: 2, ..ok }, None); // no unrevoked root key left
    let mut r = ok;
    r.keys[3] = key(4, 1); // beyond key_count
    bad_role(r, None);
    let mut r = ok;
    r.keys[2] = key(1, 7);
    bad_role(r, None);
    for public in [not_a_point, non_canonical, identity] {
        let mut r = ok;
        r.keys[1].public = public;
        bad_role(r, None);
    }
    let mut r = ok;
    r.keys[0]._reserved = 1;
    bad_role(r, None);

    let names: [&[u8]; 5] = [b"", b"a\0b", &[0xff, 0xfe], b"\0critical", b"123456789012345678901234"];
    for name in names {
        let mut r = ok;
        r.roles[1].name = [0; NAME_LEN];
        r.roles[1].name[..name.len()].copy_from_slice(name);
        bad_role(r, Some(1));
    }
    let mut r = ok;
    r.roles[2].name = r.roles[0].name;
    bad_role(r, Some(2));
    let mut r = ok;
    r.roles[0].threshold = 3;
    bad_role(r, Some(0));
    let mut r = ok;
    r.roles[2].threshold = 0;
    bad_role(r, Some(2));
    let mut r = ok;
    r.roles[1].keys[1] = r.roles[1].keys[0];
    bad_role(r, Some(1));
    let mut r = ok;
    r.roles[0].min_key_version = 2; // critical-monitor has only one key of version 2, threshold 2
    bad_role(r, Some(0));
    let mut r = ok;
    r.roles[1]._reserved = 1;
    bad_role(r, Some(1));
    let mut r = ok;
    r.roles[1].key_count = 5;
    bad_role(r, Some(1));

    // Allowed: no release role at all; a name of 23 bytes; a key in two roles.
    check_root_body(&root(1, 1, 0, &[key(1, 0)], &[])).unwrap();
    let mut r = ok;
    r.roles[2].name = name_field("12345678901234567890123").unwrap();
    r.roles[2].keys[0] = key(10, 0);
    check_root_body(&r).unwrap();
}

// ---------------------------------------------------------------- configuration

#[test]
fn configuration_needs_a_threshold_of_root_keys_and_zero_padding() {
    let root = genesis();
    let floors = Floors::default();
    let config = envelope(Kind::Config, CONFIG, &[1, 3]);
    assert_eq!(verify_config(&root, &config, &floors), Ok(CONFIG));
    for signers in [&[1][..], &[1, 1], &[1, 10, 99]] {
        assert_eq!(
            verify_config(&root, &envelope(Kind::Config, CONFIG, signers), &floors),
            Err(TrustError::Threshold { role: Role::Root { version: 1 }, valid: 1, needed: 2 })
        );
    }
    let manifest_env = manifest_envelope(&manifest(CRITICAL), &[1, 2]);
    assert_eq!(
        verify_config(&root, &manifest_env, &floors),
        Err(TrustError::WrongKind { expected: Kind::Config, found: Kind::Manifest })
    );
    // The padding after a 43-byte body is 5 bytes the signatures do not cover.
    let pad_at = size_of::<EnvelopeHeader>() + CONFIG.len();
    for i in pad_at..pad_at + 5 {
        let mut bad = config.clone();
        bad[i] = 0x80;
        assert_eq!(verify_config(&root, &bad, &floors), Err(TrustError::NonZeroPadding));
    }
}

#[test]
fn every_bit_flip_of_a_configuration_envelope_is_refused() {
    let root = genesis();
    let floors = Floors::default();
    let config = envelope(Kind::Config, CONFIG, &[1, 2]);
    assert!(verify_config(&root, &config, &floors).is_ok());
    for_each_bit_flip(&config, |flipped| verify_config(&root, flipped, &floors).map(|_| ()));
}

// ---------------------------------------------------------------- manifests

#[test]
fn every_bit_flip_of_a_manifest_envelope_is_refused() {
    let root = genesis();
    let floors = Floors::default();
    let env = manifest_envelope(&manifest(CRITICAL), &[10, 11]);
    assert!(check_manifest(&root, &env, CRITICAL, &floors).is_ok());
    for_each_bit_flip(&env, |flipped| check_manifest(&root, flipped, CRITICAL, &floors).map(|_| ()));
}

/// Runs `verify` on every single-bit flip of `bytes` (spread over threads: ed25519 is
/// slow in debug builds) and asserts that each is refused.
fn for_each_bit_flip(bytes: &[u8], verify: impl Fn(&[u8]) -> Result<(), TrustError> + Sync) {
    let bits = bytes.len() * 8;
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).min(16);
    std::thread::scope(|s| {
        for t in 0..threads {
            let verify = &verify;
            s.spawn(move || {
                let mut flipped = bytes.to_vec();
                for bit in (t..bits).step_by(threads) {
                    flipped[bit / 8] ^= 1 << (bit % 8);
                    let result = verify(&flipped);
                    assert!(result.is_err(), "flip of bit {} of byte {} accepted", bit % 8, bit / 8);
                    flipped[bit / 8] ^= 1 << (bit % 8);
                }
            });
        }
    });
}

#[test]
fn manifest_signed_by_unknown_or_other_roles_keys_is_refused() {
    let root = genesis();
    let m = manifest(CRITICAL);
    let floors = Floors::default();
    for signers in [&[10, 99][..], &[99, 11], &[10, 20], &[10, 1, 2, 3]] {
        assert_eq!(
            check_manifest(&root, &manifest_envelope(&m, signers), CRITICAL, &floors),
            threshold(critical(), 1, 2)
        );
    }
    for signers in [&[][..], &[20, 21], &[99]] {
        assert_eq!(
            check_manifest(&root, &manifest_envelope(&m, signers), CRITICAL, &floors),
            threshold(critical(), 0, 2)
        );
    }
    // A listed key's name on another key's signature.
    let mut forged = sig(99, Kind::Manifest, m.as_bytes());
    forged.key = public(11);
    let env = envelope_with(Kind::Manifest, m.as_bytes(), &[sig(10, Kind::Manifest, m.as_bytes()), forged]);
    assert_eq!(check_manifest(&root, &env, CRITICAL, &floors), threshold(critical(), 1, 2));
    // A valid signature of another document.
    let other = manifest(CONNECTIVITY);
    let env = envelope_with(
        Kind::Manifest,
        m.as_bytes(),
        &[sig(10, Kind::Manifest, m.as_bytes()), sig(11, Kind::Manifest, other.as_bytes())],
    );
    assert_eq!(check_manifest(&root, &env, CRITICAL, &floors), threshold(critical(), 1, 2));
    // The right body signed as another kind of document.
    let env = envelope_with(
        Kind::Manifest,
        m.as_bytes(),
        &[sig(10, Kind::Manifest, m.as_bytes()), sig(11, Kind::Config, m.as_bytes())],
    );
    assert_eq!(check_manifest(&root, &env, CRITICAL, &floors), threshold(critical(), 1, 2));
}

#[test]
fn manifest_one_short_or_with_a_repeated_signer_is_refused() {
    let root = genesis();
    let m = manifest(CRITICAL);
    let floors = Floors::default();
    assert_eq!(check_manifest(&root, &manifest_envelope(&m, &[10]), CRITICAL, &floors), threshold(critical(), 1, 2));
    assert_eq!(check_manifest(&root, &manifest_envelope(&m, &[11]), CRITICAL, &floors), threshold(critical(), 1, 2));
    for signers in [&[10, 10][..], &[11, 11, 11, 11, 11, 11, 11, 11]] {
        assert_eq!(
            check_manifest(&root, &manifest_envelope(&m, signers), CRITICAL, &floors),
            threshold(critical(), 1, 2)
        );
    }
    // The threshold-1 role needs just one.
    let logger = manifest(LOGGER);
    assert!(check_manifest(&root, &manifest_envelope(&logger, &[30]), LOGGER, &floors).is_ok());
    assert_eq!(
        check_manifest(&root, &manifest_envelope(&logger, &[10, 11]), LOGGER, &floors),
        threshold(Role::Release { name: name_field(LOGGER).unwrap() }, 0, 1)
    );
}

#[test]
fn manifest_signed_by_a_revoked_key_is_refused() {
    let m = manifest(CRITICAL);
    let env = manifest_envelope(&m, &[10, 11]);
    // Revoked by the root document: critical-monitor's minimum 2 leaves keys 11 and 12.
    let mut roles = release_roles();
    roles[0] = role(CRITICAL, 2, 2, &[key(10, 1), key(11, 2), key(12, 2)]);
    let g = root(1, 2, 0, &[key(1, 1), key(2, 1), key(3, 1)], &roles);
    let docs = [root_envelope(&g, &[1, 2])];
    let root = verify_root_chain(&anchor(&g), chain_of(&docs), &Floors::default(), true).unwrap();
    assert_eq!(check_manifest(&root, &env, CRITICAL, &Floors::default()), threshold(critical(), 1, 2));
    assert!(check_manifest(&root, &manifest_envelope(&m, &[12, 11]), CRITICAL, &Floors::default()).is_ok());

    // Revoked by the stored floor: the root still allows key 10 (version 1, minimum 1).
    let root = genesis();
    assert!(check_manifest(&root, &env, CRITICAL, &floors_with(CRITICAL, 1, 0)).is_ok());
    assert_eq!(check_manifest(&root, &env, CRITICAL, &floors_with(CRITICAL, 2, 0)), threshold(critical(), 1, 2));
    // A floor for another partition does not apply.
    assert!(check_manifest(&root, &env, CRITICAL, &floors_with(CONNECTIVITY, 9, 99)).is_ok());
}

#[test]
fn manifest_for_another_partition_board_or_configuration_is_refused() {
    let root = genesis();
    let floors = Floors::default();
    let connectivity = manifest_envelope(&manifest(CONNECTIVITY), &[20, 21]);
    assert_eq!(
        check_manifest(&root, &connectivity, CRITICAL, &floors),
        Err(TrustError::WrongPartition { found: name_field(CONNECTIVITY).unwrap() })
    );
    assert_eq!(
        check_manifest(&root, &connectivity, "no such partition name is this long", &floors),
        Err(TrustError::WrongPartition { found: name_field(CONNECTIVITY).unwrap() })
    );

    let unknown = Manifest { partition: name_field("unknown").unwrap(), ..manifest(CRITICAL) };
    assert_eq!(
        check_manifest(&root, &manifest_envelope(&unknown, &[10, 11]), CRITICAL, &floors),
        Err(TrustError::UnknownPartition { name: unknown.partition })
    );

    let board = Manifest { board_id: name_field("other-board").unwrap(), ..manifest(CRITICAL) };
    assert_eq!(
        check_manifest(&root, &manifest_envelope(&board, &[10, 11]), CRITICAL, &floors),
        Err(TrustError::WrongBoard { found: board.board_id })
    );
    // Board names match whole, not by prefix.
    let prefix = Manifest { board_id: name_field("qemu-virt2").unwrap(), ..manifest(CRITICAL) };
    assert!(matches!(
        check_manifest(&root, &manifest_envelope(&prefix, &[10, 11]), CRITICAL, &floors),
        Err(TrustError::WrongBoard { .. })
    ));

    let config = Manifest { config_hash: hash::sha512(b"another configuration"), ..manifest(CRITICAL) };
    assert_eq!(
        check_manifest(&root, &manifest_envelope(&config, &[10, 11]), CRITICAL, &floors),
        Err(TrustError::WrongConfig)
    );
}

#[test]
fn manifest_security_counter_below_the_floor_is_refused() {
    let root = genesis();
    let env = manifest_envelope(&manifest(CRITICAL), &[10, 11]);
    assert_eq!(
        check_manifest(&root, &env, CRITICAL, &floors_with(CRITICAL, 0, 6)),
        Err(TrustError::CounterRolledBack { found: 5, floor: 6 })
    );
    assert!(check_manifest(&root, &env, CRITICAL, &floors_with(CRITICAL, 0, 5)).is_ok());
}

#[test]
fn manifest_own_fields_are_checked() {
    let root = genesis();
    let floors = Floors::default();
    let cases = [
        Manifest { magic: ROOT_MAGIC, ..manifest(CRITICAL) },
        Manifest { _reserved: 1, ..manifest(CRITICAL) },
        Manifest { _reserved2: 1, ..manifest(CRITICAL) },
    ];
    for m in cases {
        assert!(matches!(
            check_manifest(&root, &manifest_envelope(&m, &[10, 11]), CRITICAL, &floors),
            Err(TrustError::BadManifest(_))
        ));
    }
    let root_env = root_envelope(&root, &[1, 2]);
    assert_eq!(
        check_manifest(&root, &root_env, CRITICAL, &floors),
        Err(TrustError::WrongKind { expected: Kind::Manifest, found: Kind::Root })
    );
}

#[test]
fn unchecked_root_with_zero_threshold_or_bad_counts_fails_closed() {
    let m = manifest(CRITICAL);
    let env = manifest_envelope(&m, &[]);
    let mut r = genesis();
    r.roles[0].threshold = 0;
    assert_eq!(check_manifest(&r, &env, CRITICAL, &Floors::default()), threshold(critical(), 0, 0));
    let mut r = genesis();
    r.roles[0].key_count = 99;
    assert!(check_manifest(&r, &manifest_envelope(&m, &[10, 11]), CRITICAL, &Floors::default()).is_err());
    let r = RootBody { threshold: 0, ..genesis() };
    assert!(verify_config(&r, &envelope(Kind::Config, CONFIG, &[]), &Floors::default()).is_err());
    let r = RootBody { key_count: 99, ..genesis() };
    assert!(verify_config(&r, &envelope(Kind::Config, CONFIG, &[1, 2]), &Floors::default()).is_err());
    let r = RootBody { role_count: 99, ..genesis() };
    assert!(check_manifest(&r, &manifest_envelope(&m, &[10, 11]), CRITICAL, &Floors::default()).is_err());
}

#[test]
fn count_valid_counts_each_listed_key_once() {
    let body = b"statement body";
    let st = statement(Kind::Config, body);
    let s = |n| sig(n, Kind::Config, body);
    let keys = [key(1, 1), key(2, 1), key(1, 1)];
    assert_eq!(count_valid(&st, [s(1), s(2)].into_iter(), &keys, 0), 2);
    assert_eq!(count_valid(&st, [s(1), s(1), s(1)].into_iter(), &keys, 0), 1);
    assert_eq!(count_valid(&st, [s(1), s(2), s(3)].into_iter(), &keys[..2], 0), 2);
    assert_eq!(count_valid(&st, [s(1), s(2)].into_iter(), &keys, 2), 0);
    assert_eq!(count_valid(&st, [s(1), s(2)].into_iter(), &[], 0), 0);
    // Listed twice with different versions: revoked if either listing is.
    assert_eq!(count_valid(&st, [s(1)].into_iter(), &[key(1, 5), key(1, 1)], 2), 0);
    // A bad signature does not use up the key's one count.
    let mut bad = s(1);
    bad.signature[0] ^= 1;
    assert_eq!(count_valid(&st, [bad, s(1)].into_iter(), &keys, 0), 1);
    assert_eq!(count_valid(b"another statement", [s(1), s(2)].into_iter(), &keys, 0), 0);
}

/// TRUST-008: a manifest of format version 1 (240 bytes, no device tree) is refused by
/// name, before its signatures are looked at, and so is any other version; the
/// refusal says what to do.
#[test]
fn manifest_of_another_format_version_is_refused_by_name() {
    let root = genesis();
    let floors = Floors::default();
    // Version 1's layout: the version 2 fields before the device tree's, then the
    // configuration hash.
    let v2 = manifest(CRITICAL);
    let mut v1 = v2.as_bytes()[..core::mem::offset_of!(Manifest, dtb_len)].to_vec();
    v1.extend_from_slice(&v2.config_hash);
    assert_eq!(v1.len(), 240);
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    let env = envelope(Kind::Manifest, &v1, &[10, 11]);
    let refused = check_manifest(&root, &env, CRITICAL, &floors);
    assert_eq!(refused, Err(TrustError::Format(FormatError::ManifestVersion { found: 1 })));
    let text = refused.unwrap_err().to_string();
    assert!(text.contains("version 1") && text.contains("sign the release again"), "{text}");
    for found in [0, 3, u32::MAX] {
        let m = Manifest { format_version: found, ..manifest(CRITICAL) };
        assert_eq!(
            check_manifest(&root, &manifest_envelope(&m, &[10, 11]), CRITICAL, &floors),
            Err(TrustError::Format(FormatError::ManifestVersion { found }))
        );
    }
}

/// TRUST-008: a manifest that places the image, its entry point or the device tree
/// anywhere but where the configuration loads them is refused, naming which.
#[test]
fn manifest_placing_a_payload_elsewhere_is_refused() {
    let root = genesis();
    let floors = Floors::default();
    let base = manifest(CRITICAL);
    let cases = [
        (Manifest { load_ipa: 0x4100_0000, ..base }, Placed::Image, 0x4100_0000, PLACEMENT.load_ipa),
        (Manifest { entry_ipa: 0x4000_1000, ..base }, Placed::Entry, 0x4000_1000, PLACEMENT.entry_ipa),
        (Manifest { dtb_ipa: 0x4000_0000, ..base }, Placed::DeviceTree, 0x4000_0000, PLACEMENT.dtb_ipa),
    ];
    for (m, what, signed, configured) in cases {
        let refused = check_manifest(&root, &manifest_envelope(&m, &[10, 11]), CRITICAL, &floors);
        assert_eq!(refused, Err(TrustError::WrongPlacement { what, signed, configured }));
    }
}

// ---------------------------------------------------------------- images

#[test]
fn image_truncated_extended_or_altered_is_refused() {
    let m = manifest(CRITICAL);
    let image = image();
    verify_image(&m, &image).unwrap();
    let len = image.len();
    for cut in [0, 1, len / 2, len - 1] {
        assert_eq!(
            verify_image(&m, &image[..cut]),
            Err(TrustError::ImageLength { expected: len as u64, found: cut as u64 })
        );
    }
    let mut longer = image.clone();
    longer.push(0);
    assert_eq!(verify_image(&m, &longer), Err(TrustError::ImageLength { expected: len as u64, found: len as u64 + 1 }));
    for at in [0, len / 2, len - 1] {
        let mut altered = image.clone();
        altered[at] ^= 0x10;
        assert_eq!(verify_image(&m, &altered), Err(TrustError::ImageHash));
    }
}

/// TRUST-008: every single-bit flip of a device tree is refused.
#[test]
fn every_bit_flip_of_a_device_tree_is_refused() {
    let m = manifest(CRITICAL);
    let mut dtb = dtb();
    verify_device_tree(&m, &dtb).unwrap();
    for bit in 0..dtb.len() * 8 {
        dtb[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(verify_device_tree(&m, &dtb), Err(TrustError::DeviceTreeHash), "bit {bit}");
        dtb[bit / 8] ^= 1 << (bit % 8);
    }
}

/// TRUST-008: a device tree truncated, extended, or taken from another partition or
/// another build (another command line, same length or not) is refused; the image
/// cannot stand in for it.
#[test]
fn device_tree_truncated_extended_or_swapped_is_refused() {
    let m = manifest(CRITICAL);
    let dtb = dtb();
    let len = dtb.len() as u64;
    for cut in [0, 1, dtb.len() / 2, dtb.len() - 1] {
        assert_eq!(
            verify_device_tree(&m, &dtb[..cut]),
            Err(TrustError::DeviceTreeLength { expected: len, found: cut as u64 })
        );
    }
    let mut longer = dtb.clone();
    longer.push(0);
    assert_eq!(verify_device_tree(&m, &longer), Err(TrustError::DeviceTreeLength { expected: len, found: len + 1 }));
    // Another partition's, or the same partition's from a build with other bootargs.
    let other: Vec<u8> = dtb.iter().map(|b| b.rotate_left(3)).collect();
    assert_eq!(verify_device_tree(&m, &other), Err(TrustError::DeviceTreeHash));
    let mut edited = dtb.clone();
    edited[100..115].copy_from_slice(b"heartbeat_ms=99");
    assert_eq!(verify_device_tree(&m, &edited), Err(TrustError::DeviceTreeHash));
    assert_eq!(verify_device_tree(&m, &image()), Err(TrustError::DeviceTreeLength { expected: len, found: 1000 }));
    // A manifest signed for another device tree refuses this one.
    let theirs = Manifest { dtb_hash: hash::sha512(&other), ..m };
    assert_eq!(verify_device_tree(&theirs, &dtb), Err(TrustError::DeviceTreeHash));
    verify_device_tree(&theirs, &other).unwrap();
}

// ---------------------------------------------------------------- floors

#[test]
fn raise_floors_raises_and_never_lowers() {
    let g = genesis();
    let start = Floors { boot_count: 7, ..Floors::default() };
    let raised = raise_floors(&start, &g, &[(CRITICAL, 5), (CONNECTIVITY, 3), ("unknown", 9), ("", 9)]).unwrap();
    assert_eq!((raised.root_version, raised.root_min_key_version, raised.boot_count), (1, 0, 7));
    let entry = |f: &Floors, i: usize| {
        let p = f.partitions[i];
        (format::field_str(&p.name).to_string(), p.min_key_version, p.security_counter)
    };
    assert_eq!(entry(&raised, 0), (CRITICAL.to_string(), 1, 5));
    assert_eq!(entry(&raised, 1), (CONNECTIVITY.to_string(), 0, 3));
    assert_eq!(entry(&raised, 2), (LOGGER.to_string(), 0, 0));
    assert!(raised.partitions[3..].iter().all(|p| *p == PartitionFloor::default()));

    // Nothing new, or only lower values: nothing changes.
    assert_eq!(raise_floors(&raised, &g, &[(CRITICAL, 5), (CONNECTIVITY, 2)]), None);
    assert_eq!(raise_floors(&raised, &g, &[]), None);
    // A counter rises; the rotated root raises the version and the root minimum.
    let again = raise_floors(&raised, &rotated(), &[(LOGGER, 1), (LOGGER, 4), (LOGGER, 2)]).unwrap();
    assert_eq!((again.root_version, again.root_min_key_version), (2, 2));
    assert_eq!(entry(&again, 2), (LOGGER.to_string(), 0, 4));
    assert_eq!(entry(&again, 0), (CRITICAL.to_string(), 1, 5));
    // An older root lowers nothing.
    assert_eq!(raise_floors(&again, &g, &[(CRITICAL, 1)]), None);

    // The raised floors are what verification then enforces.
    let root = genesis();
    let env = |counter| manifest_envelope(&Manifest { security_counter: counter, ..manifest(CRITICAL) }, &[10, 11]);
    assert!(check_manifest(&root, &env(5), CRITICAL, &raised).is_ok());
    assert_eq!(
        check_manifest(&root, &env(4), CRITICAL, &raised),
        Err(TrustError::CounterRolledBack { found: 4, floor: 5 })
    );
}

#[test]
fn raise_floors_places_new_partitions_in_free_then_stale_entries() {
    let g = genesis();
    // An existing entry is kept in place; new names take the first free entries.
    let mut floors = floors_with(CONNECTIVITY, 0, 8);
    floors.partitions[0] = PartitionFloor::default();
    floors.partitions[4] =
        PartitionFloor { name: name_field(CONNECTIVITY).unwrap(), security_counter: 8, ..floors.partitions[4] };
    let raised = raise_floors(&floors, &g, &[(CRITICAL, 2)]).unwrap();
    let names: Vec<&str> = raised.partitions.iter().map(|p| format::field_str(&p.name)).collect();
    assert_eq!(names, [CRITICAL, LOGGER, "", "", CONNECTIVITY, "", "", ""]);
    assert_eq!(raised.partitions[4].security_counter, 8);

    // Full of partitions this root has no role for: those entries give way.
    let mut full = Floors::default();
    for (i, p) in full.partitions.iter_mut().enumerate() {
        let name = std::format!("old-{i}");
        *p = PartitionFloor { name: name_field(&name).unwrap(), min_key_version: 3, _reserved: 0, security_counter: 9 };
    }
    full.partitions[5].name = name_field(LOGGER).unwrap();
    let raised = raise_floors(&full, &g, &[(CONNECTIVITY, 1)]).unwrap();
    let names: Vec<&str> = raised.partitions.iter().map(|p| format::field_str(&p.name)).collect();
    assert_eq!(names, [CRITICAL, CONNECTIVITY, "old-2", "old-3", "old-4", LOGGER, "old-6", "old-7"]);
    assert_eq!((raised.partitions[0].min_key_version, raised.partitions[0].security_counter), (1, 0));
    assert_eq!((raised.partitions[1].min_key_version, raised.partitions[1].security_counter), (0, 1));
    // The logger's floors, already higher than the root's, stay.
    assert_eq!((raised.partitions[5].min_key_version, raised.partitions[5].security_counter), (3, 9));
}

// ---------------------------------------------------------------- robustness

#[test]
fn truncated_envelopes_are_refused_without_panicking() {
    let g = genesis();
    let root_env = root_envelope(&g, &[1, 2]);
    let config = envelope(Kind::Config, CONFIG, &[1, 2]);
    let m = manifest_envelope(&manifest(CRITICAL), &[10, 11]);
    let floors = Floors::default();
    let a = anchor(&g);
    for cut in 0..root_env.len() {
        assert!(chain_version(&a, [&root_env[..cut]].into_iter(), &floors, false).is_err());
    }
    for cut in 0..config.len() {
        assert!(verify_config(&g, &config[..cut], &floors).is_err());
    }
    for cut in 0..m.len() {
        assert!(check_manifest(&g, &m[..cut], CRITICAL, &floors).is_err());
    }
    let mut longer = m.clone();
    longer.push(0);
    assert!(matches!(check_manifest(&g, &longer, CRITICAL, &floors), Err(TrustError::Format(_))));
}

#[test]
fn errors_display_on_one_line_with_distinct_codes() {
    let name = name_field::<NAME_LEN>("bad\nname").unwrap();
    let board = name_field::<BOARD_ID_LEN>("other-board").unwrap();
    let all = [
        TrustError::NoAnchor,
        TrustError::Missing,
        TrustError::Format(FormatError::BadMagic),
        TrustError::WrongKind { expected: Kind::Root, found: Kind::Config },
        TrustError::NonZeroPadding,
        TrustError::EmptyChain,
        TrustError::AnchorMismatch,
        TrustError::BadRootDocument { role: Some(1), reason: "duplicate role name" },
        TrustError::RootNotNewer { previous: 2, found: 2 },
        TrustError::RootRolledBack { found: 1, floor: 2 },
        TrustError::Threshold { role: Role::Release { name }, valid: 1, needed: 2 },
        TrustError::DevelopmentRootInProduction,
        TrustError::BadManifest("magic"),
        TrustError::UnknownPartition { name },
        TrustError::WrongPartition { found: name },
        TrustError::WrongBoard { found: board },
        TrustError::WrongConfig,
        TrustError::CounterRolledBack { found: 1, floor: 2 },
        TrustError::ImageLength { expected: 2, found: 1 },
        TrustError::ImageHash,
        TrustError::DeviceTreeLength { expected: 2, found: 1 },
        TrustError::DeviceTreeHash,
        TrustError::WrongPlacement { what: Placed::DeviceTree, signed: 1, configured: 2 },
    ];
    let mut codes = std::collections::BTreeSet::new();
    for e in all {
        let text = e.to_string();
        assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        assert!(e.code() != 0 && codes.insert(e.code()), "{e:?}");
        // Above them the audit log's payload fault codes begin (`boot::PayloadFault`).
        assert!(e.code() < 64, "{e:?}");
    }
    let old = TrustError::Format(FormatError::ManifestVersion { found: 1 }).to_string();
    assert!(!old.contains('\n') && old.contains("does not sign the device tree"), "{old}");
    assert_eq!(
        TrustError::Threshold { role: Role::PreviousRoot { version: 3 }, valid: 1, needed: 2 }.to_string(),
        "1 valid signature(s) by the previous root keys (rotation to version 3), 2 needed"
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Arbitrary bytes, and arbitrary bytes behind a plausible header, never panic.
        #[test]
        fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..700), kind in 1u32..4) {
            let g = genesis();
            let floors = Floors::default();
            let mut framed = envelope(Kind::from_u32(kind).unwrap(), &[], &[]);
            framed.extend_from_slice(&bytes);
            for input in [&bytes[..], &framed[..]] {
                prop_assert!(chain_version(&anchor(&g), [input].into_iter(), &floors, false).is_err());
                // A config envelope with no signatures and an empty body is framed right; it must still be refused.
                prop_assert!(verify_config(&g, input, &floors).is_err());
                prop_assert!(check_manifest(&g, input, CRITICAL, &floors).is_err());
            }
        }

        /// Overwriting a few bytes of a valid manifest envelope is refused unless it changed nothing.
        #[test]
        fn overwritten_manifest_is_refused(edits in proptest::collection::vec((0usize..536, any::<u8>()), 1..4)) {
            static ORIGINAL: OnceLock<Vec<u8>> = OnceLock::new();
            let original = ORIGINAL.get_or_init(|| manifest_envelope(&manifest(CRITICAL), &[10, 11]));
            let g = genesis();
            let floors = Floors::default();
            prop_assert_eq!(original.len(), 536);
            let mut edited = original.clone();
            for (at, value) in edits {
                edited[at] = value;
            }
            let result = check_manifest(&g, &edited, CRITICAL, &floors);
            prop_assert_eq!(result.is_ok(), edited == *original);
        }
    }
}

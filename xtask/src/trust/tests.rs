use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicU32, Ordering};

use septum_abi::bundle::{Bundle, EntryKind};

use super::cli::generate_keys;
use super::*;
use crate::system;

fn qemu_virt() -> System {
    system::load(&crate::build::root().join("systems/qemu-virt.toml")).expect("valid description")
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("septum-xtask-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Fake images, the real device trees and configuration of `sys`, signed with `keys`,
/// as a bundle.
fn signed_bundle(keys: &Keys, sys: &System) -> (BundleParts, Vec<u8>) {
    let config = sys.encode();
    let images: Vec<Vec<u8>> = (0..sys.partitions.len()).map(|i| vec![i as u8 + 1; 4096 + i]).collect();
    let dtbs: Vec<Vec<u8>> =
        sys.partitions.iter().map(|p| crate::devicetree::generate(sys, p).expect("a device tree")).collect();
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let dtb_refs: Vec<&[u8]> = dtbs.iter().map(Vec::as_slice).collect();
    let signed = sign_system(keys, sys, &refs, &dtb_refs, &config).expect("signs");
    let parts = BundleParts {
        roots: signed.chain,
        config: signed.config,
        images,
        device_trees: dtbs,
        manifests: signed.manifests,
    };
    (parts.clone(), parts.encode().expect("fits"))
}

fn statement_verifies(env: &Envelope<'_>, sig: &format::Signature) -> bool {
    let key = VerifyingKey::from_bytes(&sig.key).expect("a key");
    let sig = ed25519_dalek::Signature::from_bytes(&sig.signature);
    key.verify_strict(&format::statement(env.kind, env.body), &sig).is_ok()
}

#[test]
fn development_keys_follow_the_published_derivation() {
    // SHA-512("septum development key v1/root/1"), first 32 bytes, as any tool computes it.
    assert_eq!(hex(&dev_seed("root", 1)), "5cdf13fd536028ff1918d4fccf29dfef4409cb350276b4435f264f65663aa40c");
    assert_eq!(
        hex(&dev_seed("critical-monitor", 2)),
        "49799113143966a9446395bd736ac4f9fcde6c42034a806789410916cbe36972"
    );
    let sys = qemu_virt();
    let (a, b) = (dev_keys(&sys), dev_keys(&sys));
    assert_eq!(a.chain, b.chain, "same keys, same signed genesis");
    assert_eq!(a.anchor(), b.anchor());
    assert!(a.development);
    assert_eq!((a.root.threshold, a.root.public.len()), (DEV_ROOT_THRESHOLD, DEV_ROOT_KEYS as usize));
    let names: Vec<&str> = a.releases.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["critical-monitor", "connectivity"]);
    assert!(a.releases.iter().all(|r| r.threshold == 2 && r.public.len() == 2));
    let genesis = check_chain(&a.chain).expect("the hypervisor's checks accept it");
    assert_eq!((genesis.version, genesis.flags), (1, root_flags::DEVELOPMENT));
    assert!(is_dev_key("connectivity", dev_key("connectivity", 1).verifying_key().as_bytes()));
    assert!(!is_dev_key("connectivity", dev_key("critical-monitor", 1).verifying_key().as_bytes()));
}

#[test]
fn keygen_writes_private_keys_0600_and_never_overwrites() {
    let dir = scratch("keygen");
    let written = generate_keys(&dir, &[("root".into(), 3), ("connectivity".into(), 2)]).expect("writes");
    assert_eq!(written.len(), 10);
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    for n in 1..=3 {
        let key = dir.join(format!("root-{n}.key"));
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        let public = dir.join(format!("root-{n}.pub"));
        assert_eq!(mode(&public) & !0o644, 0, "{}", public.display());
        assert_eq!(read_key(&key).expect("reads").verifying_key().to_bytes(), read_public(&public).expect("reads"));
    }
    assert_eq!(mode(&dir), 0o700);
    assert_ne!(
        read_key(&dir.join("root-1.key")).unwrap().to_bytes(),
        read_key(&dir.join("root-2.key")).unwrap().to_bytes()
    );
    let before = std::fs::read(dir.join("root-1.key")).expect("reads");
    let err = generate_keys(&dir, &[("root".into(), 1)]).expect_err("refuses");
    assert!(err.contains("root-1.key") && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(dir.join("root-1.key")).expect("reads"), before, "untouched");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sign_then_add_signatures_round_trip() {
    let (k1, k2, k3) = (dev_key("t", 1), dev_key("t", 2), dev_key("t", 3));
    let body = b"any configuration bytes";
    let one = sign_envelope(Kind::Config, body, &[&k1]).expect("signs");
    let three = add_signatures(&one, &[&k1, &k2, &k3]).expect("adds");
    let env = Envelope::parse(&three).expect("parses");
    assert_eq!((env.kind, env.body), (Kind::Config, &body[..]));
    let sigs: Vec<_> = env.signatures().collect();
    let signers: Vec<[u8; 32]> = sigs.iter().map(|s| s.key).collect();
    assert_eq!(signers, [&k1, &k2, &k3].map(|k| k.verifying_key().to_bytes()), "k1 is not added twice");
    assert!(sigs.iter().all(|s| statement_verifies(&env, s)));
    let listed: Vec<KeyEntry> = [&k1, &k2].iter().map(|k| key_entry(k.verifying_key().to_bytes())).collect();
    assert_eq!(approvals(&env, &listed, 1), 2, "k3 is not listed");
    // The kind is signed: the same signature does not vouch for the body as another kind.
    let other = format::statement(Kind::Root, body);
    let sig = ed25519_dalek::Signature::from_bytes(&sigs[0].signature);
    assert!(k1.verifying_key().verify_strict(&other, &sig).is_err());
    // A root or manifest body must be exactly its size.
    assert!(sign_envelope(Kind::Manifest, body, &[&k1]).unwrap_err().contains("Manifest"));
}

#[test]
fn inspect_shows_every_manifest_field_and_checks_signatures() {
    let sys = qemu_virt();
    let keys = dev_keys(&sys);
    let config = sys.encode();
    let m = manifest(&sys, 0, b"image", b"device tree", &config).expect("manifest");
    let envelope = sign_manifest(&keys, &m).expect("signs");
    let report = inspect::inspect(&envelope, None);
    let dtb_at = sys.partitions[0].desc.dtb_ipa;
    for needle in [
        "Manifest envelope: body 320 bytes, 2 signatures",
        "partition: critical-monitor",
        "board: qemu-virt",
        &format!("version: {}", env!("CARGO_PKG_VERSION")),
        "security counter: 1",
        "image: 5 bytes, load 0x40000000, entry 0x40000000",
        &format!("image SHA-512: {}", hex(&hash::sha512(b"image"))),
        &format!("device tree: 11 bytes, load {dtb_at:#x}"),
        &format!("device tree SHA-512: {}", hex(&hash::sha512(b"device tree"))),
        &format!("config SHA-512: {}", hex(&hash::sha512(&config))),
        &format!("signature by {}: OK", hex(&dev_key("critical-monitor", 1).verifying_key().as_bytes()[..8])),
    ] {
        assert!(report.text.contains(needle), "{needle:?} missing from\n{}", report.text);
    }
    assert_eq!(report.failures, 0, "{}", report.text);
    let mut broken = envelope.clone();
    let last = broken.len() - 1;
    broken[last] ^= 1;
    let report = inspect::inspect(&broken, None);
    assert_eq!(report.failures, 1, "{}", report.text);
    assert!(report.text.contains(": FAILED (invalid signature)"), "{}", report.text);

    let root = inspect::inspect(&keys.chain[0], None);
    assert!(root.text.contains("flags DEVELOPMENT") && root.text.contains("!!! DEVELOPMENT ROOT"), "{}", root.text);
    assert!(root.text.contains("release role connectivity: threshold 2 of 2"), "{}", root.text);
    assert_eq!(root.failures, 0, "{}", root.text);
}

#[test]
fn signed_bundle_carries_root_config_and_manifests_and_verifies() {
    let sys = qemu_virt();
    let keys = dev_keys(&sys);
    let (parts, bytes) = signed_bundle(&keys, &sys);
    let b = Bundle::parse(&bytes).expect("parses");
    let kinds: Vec<(Option<EntryKind>, u32)> =
        b.entries().iter().map(|e| (EntryKind::from_u32(e.kind), e.partition)).collect();
    use EntryKind::*;
    assert_eq!(
        kinds,
        [Root, Config, Image, DeviceTree, Manifest, Image, DeviceTree, Manifest]
            .iter()
            .zip([0, 0, 0, 0, 0, 1, 1, 1])
            .map(|(k, p)| (Some(*k), p))
            .collect::<Vec<_>>()
    );
    let config = Envelope::parse(b.payload(Config, 0).expect("config")).expect("an envelope");
    assert_eq!((config.kind, config.body), (Kind::Config, sys.encode().as_slice()));
    let m = Envelope::parse(b.payload(Manifest, 1).expect("manifest")).expect("an envelope").manifest().expect("one");
    assert_eq!(format::field_str(&m.partition), "connectivity");
    assert_eq!(BundleParts::parse(&bytes).expect("splits"), parts);
    verify_bundle(&bytes, &keys.anchor(), false).expect("verifies as at boot");
    assert!(verify_bundle(&bytes, &keys.anchor(), true).unwrap_err().contains("development"));
    let report = inspect::inspect(&bytes, Some(&keys.anchor()));
    assert_eq!(report.failures, 0, "{}", report.text);
    assert!(report.text.contains("verified as at boot"), "{}", report.text);

    // A changed image is caught, re-signed or not by another key set.
    let mut tampered = parts.clone();
    tampered.images[1][7] ^= 1;
    let err = verify_bundle(&tampered.encode().expect("fits"), &keys.anchor(), false).unwrap_err();
    assert!(err.contains("connectivity") && err.contains("SHA-512"), "{err}");
    let report = inspect::inspect(&tampered.encode().expect("fits"), None);
    assert!(report.text.contains("image #1 matches (length and SHA-512): FAILED"), "{}", report.text);
    // Re-signing the manifest with the right role makes it whole again.
    let new = manifest(&sys, 1, &tampered.images[1], &tampered.device_trees[1], &sys.encode()).expect("manifest");
    tampered.manifests[1] = sign_manifest(&keys, &new).expect("signs");
    verify_bundle(&tampered.encode().expect("fits"), &keys.anchor(), false).expect("re-signed");
    // Signed by the other partition's role: refused.
    tampered.manifests[1] = sign_envelope(Kind::Manifest, new.as_bytes(), &keys.releases[0].signers()).expect("signs");
    let err = verify_bundle(&tampered.encode().expect("fits"), &keys.anchor(), false).unwrap_err();
    assert!(err.contains("connectivity") && err.contains("valid signature"), "{err}");
}

/// TRUST-008: a bundle whose device tree was changed after signing (the critical
/// monitor's bootargs, with the bundle's CRC recomputed), or swapped with the other
/// partition's, fails the checks `build` and `inspect` make, as it fails at boot; a
/// manifest of format version 1 is refused by name.
#[test]
fn a_device_tree_changed_after_signing_is_refused() {
    let sys = qemu_virt();
    let keys = dev_keys(&sys);
    let (parts, bytes) = signed_bundle(&keys, &sys);
    verify_bundle(&bytes, &keys.anchor(), false).expect("as signed");
    let report = inspect::inspect(&bytes, None);
    assert!(report.text.contains("device tree #0 matches (length and SHA-512): OK"), "{}", report.text);
    assert!(report.text.contains("addresses are the configuration's: OK"), "{}", report.text);

    let mut edited_sys = sys.clone();
    edited_sys.partitions[0].bootargs = edited_sys.partitions[0].bootargs.replace("heartbeat_ms=50", "fault_after=30");
    assert_ne!(edited_sys.partitions[0].bootargs, sys.partitions[0].bootargs, "qemu-virt's bootargs changed");
    let mut edited = parts.clone();
    edited.device_trees[0] = crate::devicetree::generate(&edited_sys, &edited_sys.partitions[0]).expect("a tree");
    let edited = edited.encode().expect("fits");
    let err = verify_bundle(&edited, &keys.anchor(), false).unwrap_err();
    assert!(err.contains("critical-monitor") && err.contains("device tree"), "{err}");
    let report = inspect::inspect(&edited, None);
    assert!(report.text.contains("device tree #0 matches (length and SHA-512): FAILED"), "{}", report.text);

    let mut swapped = parts.clone();
    swapped.device_trees.swap(0, 1);
    let err = verify_bundle(&swapped.encode().expect("fits"), &keys.anchor(), false).unwrap_err();
    assert!(err.contains("critical-monitor") && err.contains("device tree"), "{err}");

    let mut old = parts.clone();
    let env = Envelope::parse(&parts.manifests[1]).expect("an envelope");
    let mut v1 = env.body[..core::mem::offset_of!(Manifest, dtb_len)].to_vec();
    v1.extend_from_slice(&env.manifest().expect("a manifest").config_hash);
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    // Unsigned: the version is refused before any signature is looked at.
    let mut v1_envelope = vec![0u8; format::envelope_len(v1.len(), 0)];
    format::write_envelope(Kind::Manifest, &v1, &[], &mut v1_envelope).expect("fits");
    old.manifests[1] = v1_envelope;
    let err = verify_bundle(&old.encode().expect("fits"), &keys.anchor(), false).unwrap_err();
    assert!(err.contains("connectivity") && err.contains("sign the release again"), "{err}");
}

#[test]
fn key_directory_builds_a_production_chain_and_rotates() {
    let sys = qemu_virt();
    let old = scratch("old-keys");
    let roles = [("root".to_string(), 3), ("critical-monitor".into(), 2), ("connectivity".into(), 2)];
    generate_keys(&old, &roles).expect("keys");
    let keys = load_keys(&old, &sys).expect("loads");
    assert!(!keys.development);
    assert_ne!(keys.anchor(), dev_keys(&sys).anchor());
    let genesis = check_chain(&keys.chain).expect("valid");
    assert_eq!((genesis.version, genesis.flags, genesis.threshold), (1, 0, 2));
    let (_, bytes) = signed_bundle(&keys, &sys);
    verify_bundle(&bytes, &keys.anchor(), true).expect("a production bundle");

    // Rotation: new keys; the new root is signed by them and by the old root's keys.
    let new = scratch("new-keys");
    generate_keys(&new, &roles).expect("keys");
    let (v2, missing) = rotate_root(&new, 2, Some(&keys.chain[0]), None).expect("rotates");
    assert_eq!(missing, 2, "the old keys have not signed yet");
    let old_keys: Vec<SigningKey> =
        (1..=2).map(|n| read_key(&old.join(format!("root-{n}.key"))).expect("key")).collect();
    let v2 = add_signatures(&v2, &old_keys.iter().collect::<Vec<_>>()).expect("adds");
    let (v2_at_once, none) = rotate_root(&new, 2, Some(&keys.chain[0]), Some(&old)).expect("rotates");
    assert_eq!(none, 0);
    assert_eq!(Envelope::parse(&v2_at_once).expect("parses").signature_count(), 4);
    std::fs::write(new.join("root-1.envelope"), &keys.chain[0]).expect("writes");
    std::fs::write(new.join("root-2.envelope"), &v2).expect("writes");
    let rotated = load_keys(&new, &sys).expect("loads the chain");
    assert_eq!(rotated.chain.len(), 2);
    assert_eq!(rotated.anchor(), keys.anchor(), "the anchor stays the genesis'");
    let (_, bytes) = signed_bundle(&rotated, &sys);
    verify_bundle(&bytes, &keys.anchor(), true).expect("the rotated bundle boots the old hypervisor");
    assert!(rotate_root(&new, 1, Some(&keys.chain[0]), None).unwrap_err().contains("above"));

    // Development keys in a directory are development keys.
    let dev = scratch("dev-keys");
    std::fs::create_dir_all(&dev).expect("dir");
    for (role, count) in &roles {
        for n in 1..=*count {
            std::fs::write(dev.join(format!("{role}-{n}.key")), hex(&dev_seed(role, n))).expect("writes");
        }
    }
    assert!(load_keys(&dev, &sys).expect("loads").development);
    // A role short of private keys for its threshold cannot sign.
    std::fs::remove_file(old.join("connectivity-2.key")).expect("removes");
    let err = load_keys(&old, &sys).unwrap_err();
    assert!(err.contains("connectivity") && err.contains("needs 2 signatures"), "{err}");
    for d in [old, new, dev] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn audit_verify_accepts_an_intact_log_and_refuses_an_edited_record() {
    use septum_trust::audit::{AuditLog, Event, EventKind, RECORD_LEN};
    use septum_trust::flash::{RamFlash, BLOCK_SIZE, LOG_FIRST_BLOCK};

    let mut bank = vec![0xFF; 4 * BLOCK_SIZE as usize];
    let mut flash = RamFlash::new(&mut bank, BLOCK_SIZE).expect("whole blocks");
    let (mut log, _) = AuditLog::open(&flash, 1).expect("opens");
    for kind in [EventKind::Boot, EventKind::RootVerified, EventKind::ConfigVerified] {
        log.append(&mut flash, &Event::new(kind)).expect("appends");
    }
    let dir = scratch("audit");
    std::fs::create_dir_all(&dir).expect("dir");
    let dump = dir.join("flash.bin");
    std::fs::write(&dump, &bank).expect("writes");
    let args = |extra: &[&str]| -> Vec<String> {
        std::iter::once(dump.to_string_lossy().into_owned()).chain(extra.iter().map(|s| s.to_string())).collect()
    };
    cli::audit_verify(&args(&["--records"])).expect("intact");
    // One edited byte in the second record (its `detail`) breaks the chain.
    bank[LOG_FIRST_BLOCK as usize * BLOCK_SIZE as usize + RECORD_LEN + 32] ^= 1;
    std::fs::write(&dump, &bank).expect("writes");
    let err = cli::audit_verify(&args(&[])).unwrap_err();
    assert!(err.contains("flash.bin") && err.contains("broken"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// TRUST-010: `audit-verify` on a bank erased after five boots and booted once: the
/// chain alone is intact, and the dump says its history begins at boot #1; against the
/// earlier dump (`--previous`) or its noted head (`--after SEQ:HASH`) it fails with
/// "history restarted"; a dump that did continue the earlier one passes both.
#[test]
fn audit_verify_reports_a_restarted_history() {
    use septum_trust::audit::{AuditLog, Event, EventKind};
    use septum_trust::flash::{RamFlash, BLOCK_SIZE};
    use septum_trust::history;

    let boot = |bank: &mut Vec<u8>, n: u32| {
        let mut flash = RamFlash::new(bank, BLOCK_SIZE).expect("whole blocks");
        let (mut log, _) = AuditLog::open(&flash, n).expect("opens");
        log.append(&mut flash, &Event { detail: u64::from(n), ..Event::new(EventKind::Boot) }).expect("appends");
        log.append(&mut flash, &Event::new(EventKind::ImageVerified)).expect("appends");
    };
    let blank = || vec![0xFF; 4 * BLOCK_SIZE as usize];
    let mut bank = blank();
    for n in 1..=5 {
        boot(&mut bank, n);
    }
    let dir = scratch("audit-history");
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("writes");
        path.to_string_lossy().into_owned()
    };
    let earlier = write("earlier.bin", &bank);
    let head = history::of_bank(&bank).head.expect("a head");
    let noted = format!("{}:{}", head.seq, hex(&head.hash));
    assert_eq!(cli::parse_head(&noted).expect("parses"), history::Head { boot: None, ..head });
    assert_eq!(cli::parse_head(&format!("#{noted}")).expect("parses").seq, head.seq);
    for bad in ["9", "x:00", &format!("{}:{}", head.seq, hex(&head.hash[..63]))] {
        assert!(cli::parse_head(bad).unwrap_err().contains("SEQ:HASH"), "{bad}");
    }

    let mut erased = blank();
    boot(&mut erased, 1);
    let erased = write("erased.bin", &erased);
    cli::audit_verify(std::slice::from_ref(&erased)).expect("alone, a new bank is a new bank");
    let err = cli::audit_verify(&[erased.clone(), "--previous".into(), earlier.clone()]).unwrap_err();
    assert!(err.contains("history restarted") && err.contains("boot count fell from 5 to 1"), "{err}");
    let err = cli::audit_verify(&[erased.clone(), "--after".into(), noted.clone()]).unwrap_err();
    assert!(err.contains("history restarted") && err.contains("before the earlier head"), "{err}");

    boot(&mut bank, 6);
    let later = write("later.bin", &bank);
    cli::audit_verify(&[later.clone(), "--previous".into(), earlier.clone()]).expect("continues");
    cli::audit_verify(&[later.clone(), "--after".into(), noted.clone()]).expect("continues");
    let both = cli::audit_verify(&[later, "--previous".into(), earlier.clone(), "--after".into(), noted]);
    assert!(both.unwrap_err().contains("cannot be used with"));
    let _ = std::fs::remove_dir_all(&dir);
}

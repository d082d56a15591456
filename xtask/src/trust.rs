//! The chain of trust on the build side: keys, signing, and the signed documents a boot
//! bundle carries (formats in `septum_trust::format`, design in `docs/trust.md`).
//!
//! * Keys: the **development keys** are derived from a published recipe
//!   ([`dev_seed`]), so no secret lives in the repository and anyone can tell (and
//!   forge) them; production keys are made by `cargo xtask keygen` and read from a
//!   directory ([`load_keys`]).
//! * Roles: the root role (its keys sign root documents and the configuration) and one
//!   release role per partition, named as the partition (its keys sign that partition's
//!   manifests). Each role needs `threshold` signatures.
//! * Documents: the root chain (genesis first: the hypervisor is built with the SHA-512
//!   of its body, [`Keys::anchor`]), the configuration envelope, one manifest per
//!   partition. [`sign_system`] makes them for a packed system; [`BundleParts`] takes a
//!   bundle apart and puts it back together, so a test can tamper with one piece and
//!   re-sign it (or not) with [`sign_envelope`], [`sign_manifest`], [`sign_config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use septum_abi::bundle::{self, Bundle, EntryKind};
use septum_abi::config::{BoardId, ConfigHeader, PartitionDesc};
use septum_trust::counters::Floors;
use septum_trust::format::{
    self, name_field, root_flags, Envelope, KeyEntry, Kind, Manifest, RoleEntry, RootBody, FORMAT_VERSION,
    MANIFEST_MAGIC, MANIFEST_VERSION, ROOT_MAGIC,
};
use septum_trust::hash::{self, Hash};
use septum_trust::verify::{self, Expected, Placement};
use septum_trust::{MAX_KEYS, MAX_ROLES, MAX_SIGNATURES};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::system::System;

pub mod cli;
pub mod inspect;

#[cfg(test)]
mod tests;

/// The published prefix of development key seeds (see [`dev_seed`]).
pub const DEV_SEED_PREFIX: &str = "septum development key v1/";
/// Development root keys, and how many of them must sign.
pub const DEV_ROOT_KEYS: u32 = 3;
pub const DEV_ROOT_THRESHOLD: u32 = 2;
/// Development keys per release role, and how many of them must sign.
pub const DEV_RELEASE_KEYS: u32 = 2;
pub const DEV_RELEASE_THRESHOLD: u32 = 2;
/// The root role's name, in key file names (`root-1.key`).
pub const ROOT_ROLE: &str = "root";

/// The seed of development key `index` (from 1) of `role`: the first 32 bytes of
/// SHA-512(`"septum development key v1/" + role + "/" + index`). Published on purpose:
/// anyone can sign with these keys, which is what makes them development keys.
pub fn dev_seed(role: &str, index: u32) -> [u8; 32] {
    let digest = hash::sha512(format!("{DEV_SEED_PREFIX}{role}/{index}").as_bytes());
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&digest[..32]);
    seed
}

/// Development key `index` (from 1) of `role`.
pub fn dev_key(role: &str, index: u32) -> SigningKey {
    SigningKey::from_bytes(&dev_seed(role, index))
}

/// Whether `public` is one of the first [`MAX_KEYS`] development keys of `role`.
pub fn is_dev_key(role: &str, public: &[u8; 32]) -> bool {
    (1..=MAX_KEYS as u32).any(|i| dev_key(role, i).verifying_key().as_bytes() == public)
}

/// A fresh key from the operating system's random source.
pub fn random_key() -> Result<SigningKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// One role: the keys a root document lists for it, and the private keys at hand.
#[derive(Clone, Debug)]
pub struct Role {
    pub name: String,
    /// Valid signatures by distinct listed keys needed.
    pub threshold: u32,
    /// Keys with a lower `key_version` are revoked.
    pub min_key_version: u32,
    /// The listed keys, in order.
    pub public: Vec<KeyEntry>,
    /// Private keys of listed keys available for signing.
    pub signing: Vec<SigningKey>,
}

impl Role {
    /// A role whose every key is at hand, at key version 1.
    pub fn from_signing(name: &str, threshold: u32, signing: Vec<SigningKey>) -> Self {
        let public = signing.iter().map(|k| key_entry(k.verifying_key().to_bytes())).collect();
        Self { name: name.into(), threshold, min_key_version: 1, public, signing }
    }

    /// The keys a document of this role is signed with: the first `threshold` at hand.
    pub fn signers(&self) -> Vec<&SigningKey> {
        self.signing.iter().take(self.threshold as usize).collect()
    }

    fn entry(&self) -> Result<RoleEntry, String> {
        let mut e = RoleEntry::new_zeroed();
        e.name = name_field(&self.name).ok_or_else(|| format!("role name \"{}\" is too long", self.name))?;
        e.threshold = self.threshold;
        e.min_key_version = self.min_key_version;
        e.key_count = self.key_table(&mut e.keys)?;
        Ok(e)
    }

    fn key_table(&self, out: &mut [KeyEntry; MAX_KEYS]) -> Result<u32, String> {
        if self.public.is_empty() || self.public.len() > MAX_KEYS {
            return Err(format!("role {} has {} keys; a role has 1 to {MAX_KEYS}", self.name, self.public.len()));
        }
        if self.threshold == 0 || self.threshold as usize > self.public.len() {
            return Err(format!("role {}: threshold {} of {} keys", self.name, self.threshold, self.public.len()));
        }
        out[..self.public.len()].copy_from_slice(&self.public);
        Ok(self.public.len() as u32)
    }
}

fn key_entry(public: [u8; 32]) -> KeyEntry {
    KeyEntry { public, key_version: 1, _reserved: 0 }
}

/// The keys a system is signed with, and its root chain.
#[derive(Clone, Debug)]
pub struct Keys {
    /// Development keys (published seeds): never accepted by a production build.
    pub development: bool,
    pub root: Role,
    /// One release role per partition, named as the partition.
    pub releases: Vec<Role>,
    /// Root documents (signed envelopes), genesis first; the last one is in force.
    pub chain: Vec<Vec<u8>>,
}

impl Keys {
    /// The release role of a partition.
    pub fn release(&self, partition: &str) -> Option<&Role> {
        self.releases.iter().find(|r| r.name == partition)
    }

    /// SHA-512 of the genesis root document's body: what the hypervisor is built to trust.
    pub fn anchor(&self) -> Hash {
        self.chain
            .first()
            .and_then(|g| Envelope::parse(g).ok())
            .map_or_else(|| hash::sha512(&[]), |e| hash::sha512(e.body))
    }
}

/// The development keys of a system: 3 root keys (threshold 2) and 2 keys (threshold 2)
/// for each partition's release role, with a genesis root document of version 1 flagged
/// [`root_flags::DEVELOPMENT`].
pub fn dev_keys(sys: &System) -> Keys {
    let root_keys = (1..=DEV_ROOT_KEYS).map(|i| dev_key(ROOT_ROLE, i)).collect();
    let releases = sys
        .partitions
        .iter()
        .map(|p| {
            let keys = (1..=DEV_RELEASE_KEYS).map(|i| dev_key(&p.name, i)).collect();
            Role::from_signing(&p.name, DEV_RELEASE_THRESHOLD, keys)
        })
        .collect();
    let mut keys = Keys {
        development: true,
        root: Role::from_signing(ROOT_ROLE, DEV_ROOT_THRESHOLD, root_keys),
        releases,
        chain: Vec::new(),
    };
    // A checked system has at most MAX_ROLES partitions with names that fit.
    keys.chain = vec![genesis_root(&keys).expect("a checked system fits a root document")];
    keys
}

/// The root document body of `version` listing `root` and `releases`.
pub fn root_body(version: u32, flags: u32, root: &Role, releases: &[Role]) -> Result<RootBody, String> {
    if releases.len() > MAX_ROLES {
        return Err(format!("{} release roles; a root document lists at most {MAX_ROLES}", releases.len()));
    }
    let mut body = RootBody::new_zeroed();
    body.magic = ROOT_MAGIC;
    body.format_version = FORMAT_VERSION;
    body.version = version;
    body.flags = flags;
    body.threshold = root.threshold;
    body.min_key_version = root.min_key_version;
    body.key_count = root.key_table(&mut body.keys)?;
    body.role_count = releases.len() as u32;
    for (slot, role) in body.roles.iter_mut().zip(releases) {
        *slot = role.entry()?;
    }
    Ok(body)
}

/// A fresh genesis root document (version 1; flagged DEVELOPMENT for development keys)
/// listing `keys`' roles, signed by a threshold of its root keys.
pub fn genesis_root(keys: &Keys) -> Result<Vec<u8>, String> {
    let flags = if keys.development { root_flags::DEVELOPMENT } else { 0 };
    let body = root_body(1, flags, &keys.root, &keys.releases)?;
    sign_envelope(Kind::Root, body.as_bytes(), &keys.root.signers())
}

/// An envelope of `kind` around `body`, signed by each of `signers` (over
/// [`format::statement`]).
pub fn sign_envelope(kind: Kind, body: &[u8], signers: &[&SigningKey]) -> Result<Vec<u8>, String> {
    let sigs: Vec<format::Signature> = signers.iter().map(|k| signature(kind, body, k)).collect();
    let mut out = vec![0u8; format::envelope_len(body.len(), sigs.len())];
    let n = format::write_envelope(kind, body, &sigs, &mut out).ok_or_else(|| {
        format!(
            "cannot make a {kind:?} envelope: body of {} bytes (at most {}) or {} signatures (at most {MAX_SIGNATURES})",
            body.len(),
            format::MAX_BODY,
            sigs.len()
        )
    })?;
    out.truncate(n);
    // The format checks each kind's body size; refuse what a verifier would refuse.
    Envelope::parse(&out).map_err(|e| format!("cannot make a {kind:?} envelope: {e}"))?;
    Ok(out)
}

fn signature(kind: Kind, body: &[u8], key: &SigningKey) -> format::Signature {
    use ed25519_dalek::Signer;
    let sig = key.sign(&format::statement(kind, body));
    format::Signature { key: key.verifying_key().to_bytes(), signature: sig.to_bytes() }
}

/// `envelope` with signatures by `signers` added; a key that already signed is skipped.
pub fn add_signatures(envelope: &[u8], signers: &[&SigningKey]) -> Result<Vec<u8>, String> {
    let env = Envelope::parse(envelope).map_err(|e| e.to_string())?;
    let mut sigs: Vec<format::Signature> = env.signatures().collect();
    for k in signers {
        if !sigs.iter().any(|s| s.key == k.verifying_key().to_bytes()) {
            sigs.push(signature(env.kind, env.body, k));
        }
    }
    let mut out = vec![0u8; format::envelope_len(env.body.len(), sigs.len())];
    let n = format::write_envelope(env.kind, env.body, &sigs, &mut out)
        .ok_or_else(|| format!("{} signatures; an envelope carries at most {MAX_SIGNATURES}", sigs.len()))?;
    out.truncate(n);
    Ok(out)
}

/// Whether `sig` is a valid (strict ed25519) signature by its own key over `env`.
pub fn signature_valid(env: &Envelope<'_>, sig: &format::Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&sig.key) else { return false };
    let statement = format::statement(env.kind, env.body);
    key.verify_strict(&statement, &ed25519_dalek::Signature::from_bytes(&sig.signature)).is_ok()
}

/// How many distinct keys of `keys` (not revoked by `min_key_version`) validly signed
/// `env`, counted by the hypervisor's own rule.
pub fn approvals(env: &Envelope<'_>, keys: &[KeyEntry], min_key_version: u32) -> usize {
    verify::count_valid(&format::statement(env.kind, env.body), env.signatures(), keys, min_key_version)
}

/// The keys a root document lists for itself.
pub fn root_keys(root: &RootBody) -> &[KeyEntry] {
    &root.keys[..(root.key_count as usize).min(MAX_KEYS)]
}

/// The release role a root document lists for `partition`.
pub fn listed_role<'a>(root: &'a RootBody, partition: &str) -> Option<&'a RoleEntry> {
    root.roles[..(root.role_count as usize).min(MAX_ROLES)].iter().find(|r| format::field_str(&r.name) == partition)
}

/// The keys a role entry lists.
pub fn role_keys(role: &RoleEntry) -> &[KeyEntry] {
    &role.keys[..(role.key_count as usize).min(MAX_KEYS)]
}

/// Checks a root chain as the hypervisor will (`verify_root_chain`, with fresh
/// anti-rollback counters), trusting its own genesis. Returns the root in force.
pub fn check_chain(chain: &[Vec<u8>]) -> Result<RootBody, String> {
    let genesis = chain.first().ok_or("empty root chain")?;
    let anchor = hash::sha512(Envelope::parse(genesis).map_err(|e| format!("genesis: {e}"))?.body);
    verify::verify_root_chain(&anchor, chain.iter().map(Vec::as_slice), &Floors::default(), false)
        .map_err(|e| e.to_string())
}

/// Verifies a bundle as the hypervisor does at boot, with fresh anti-rollback counters:
/// the root chain from `anchor`, the configuration, then each partition the
/// configuration lists: its manifest (for that partition, the configuration's board,
/// the configuration's hash and its placement), its image and its device tree.
pub fn verify_bundle(bytes: &[u8], anchor: &Hash, production: bool) -> Result<(), String> {
    let b = Bundle::parse(bytes).map_err(|e| e.to_string())?;
    let floors = Floors::default();
    let chain = (0..).map_while(|i| b.payload(EntryKind::Root, i).ok());
    let root = verify::verify_root_chain(anchor, chain, &floors, production).map_err(|e| format!("root chain: {e}"))?;
    let envelope = b.payload(EntryKind::Config, 0).map_err(|e| e.to_string())?;
    let config = verify::verify_config(&root, envelope, &floors).map_err(|e| format!("configuration: {e}"))?;
    let config_hash = hash::sha512(config);
    let board = ConfigHeader::read_from_prefix(config)
        .ok()
        .and_then(|(h, _)| BoardId::from_u32(h.board))
        .ok_or("configuration: unknown board")?;
    for (i, p) in config_partitions(config).iter().enumerate() {
        let name = septum_abi::name_str(&p.name);
        let expected =
            Expected { partition: name, board_id: board.name(), config_hash: &config_hash, placement: placement(p) };
        let payload = |kind| b.payload(kind, i as u32).map_err(|e| format!("partition {name}: {e}"));
        let m = verify::verify_manifest(&root, payload(EntryKind::Manifest)?, &expected, &floors)
            .map_err(|e| format!("partition {name}: manifest: {e}"))?;
        verify::verify_image(&m, payload(EntryKind::Image)?).map_err(|e| format!("partition {name}: {e}"))?;
        verify::verify_device_tree(&m, payload(EntryKind::DeviceTree)?)
            .map_err(|e| format!("partition {name}: {e}"))?;
    }
    Ok(())
}

/// Where a configuration loads a partition: what its manifest must say.
pub fn placement(p: &PartitionDesc) -> Placement {
    Placement { load_ipa: p.image_ipa, entry_ipa: p.entry_ipa, dtb_ipa: p.dtb_ipa }
}

/// The partition descriptions of a configuration body (copied: the body need not be
/// aligned), as far as they can be read.
pub fn config_partitions(config: &[u8]) -> Vec<PartitionDesc> {
    let Ok((h, mut rest)) = ConfigHeader::read_from_prefix(config) else { return Vec::new() };
    let mut out = Vec::new();
    for _ in 0..h.partition_count.min(septum_abi::config::MAX_PARTITIONS as u32) {
        let Ok((p, next)) = PartitionDesc::read_from_prefix(rest) else { break };
        out.push(p);
        rest = next;
    }
    out
}

/// A configuration envelope: `config` signed by a threshold of the root role.
pub fn sign_config(keys: &Keys, config: &[u8]) -> Result<Vec<u8>, String> {
    sign_envelope(Kind::Config, config, &keys.root.signers())
}

/// The manifest of partition `index` of `sys` for exactly `image` and `dtb` (the bytes
/// placed in the bundle) and the configuration body `config`: version and security
/// counter from the description, image, entry and device tree addresses as placed.
pub fn manifest(sys: &System, index: usize, image: &[u8], dtb: &[u8], config: &[u8]) -> Result<Manifest, String> {
    let p = sys.partitions.get(index).ok_or_else(|| format!("{} has no partition #{index}", sys.name))?;
    let mut m = Manifest::new_zeroed();
    m.magic = MANIFEST_MAGIC;
    m.format_version = MANIFEST_VERSION;
    m.partition = name_field(&p.name).ok_or_else(|| format!("partition name {} is too long", p.name))?;
    m.board_id = name_field(sys.board.name).ok_or_else(|| format!("board name {} is too long", sys.board.name))?;
    [m.version_major, m.version_minor, m.version_patch] = p.version;
    m.security_counter = p.security_counter;
    m.image_len = image.len() as u64;
    m.image_hash = hash::sha512(image);
    m.load_ipa = p.desc.image_ipa;
    m.entry_ipa = p.desc.entry_ipa;
    m.dtb_len = dtb.len() as u64;
    m.dtb_hash = hash::sha512(dtb);
    m.dtb_ipa = p.desc.dtb_ipa;
    m.config_hash = hash::sha512(config);
    Ok(m)
}

/// A manifest envelope signed by a threshold of the release role named in `m`.
pub fn sign_manifest(keys: &Keys, m: &Manifest) -> Result<Vec<u8>, String> {
    let name = format::field_str(&m.partition);
    let role = keys.release(name).ok_or_else(|| format!("no release role for partition {name}"))?;
    sign_envelope(Kind::Manifest, m.as_bytes(), &role.signers())
}

/// `envelope`'s manifest, changed by `edit` and signed again by `keys`' release role
/// (tests and benchmarks that need a different, yet validly signed, manifest).
pub fn resign_manifest(keys: &Keys, envelope: &[u8], edit: impl FnOnce(&mut Manifest)) -> Result<Vec<u8>, String> {
    let env = Envelope::parse(envelope).map_err(|e| format!("manifest envelope: {e}"))?;
    let mut m = env.manifest().ok_or("not a manifest envelope")?;
    edit(&mut m);
    sign_manifest(keys, &m)
}

/// The signed documents of one packed system.
#[derive(Clone, Debug)]
pub struct Signed {
    /// Root envelopes, genesis first.
    pub chain: Vec<Vec<u8>>,
    /// The configuration envelope.
    pub config: Vec<u8>,
    /// A manifest envelope per partition, in partition order.
    pub manifests: Vec<Vec<u8>>,
}

/// Signs a packed system: `images[i]` and `dtbs[i]` are partition `i`'s image and
/// device tree exactly as bundled, and `config` the configuration body.
pub fn sign_system(
    keys: &Keys,
    sys: &System,
    images: &[&[u8]],
    dtbs: &[&[u8]],
    config: &[u8],
) -> Result<Signed, String> {
    if images.len() != dtbs.len() {
        return Err(format!("{} images but {} device trees", images.len(), dtbs.len()));
    }
    let manifests = images
        .iter()
        .zip(dtbs)
        .enumerate()
        .map(|(i, (img, dtb))| manifest(sys, i, img, dtb, config).and_then(|m| sign_manifest(keys, &m)))
        .collect::<Result<_, _>>()?;
    Ok(Signed { chain: keys.chain.clone(), config: sign_config(keys, config)?, manifests })
}

/// A bundle taken apart: what a test changes before putting it back together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleParts {
    /// Root envelopes ([`EntryKind::Root`]), genesis first.
    pub roots: Vec<Vec<u8>>,
    /// The configuration envelope ([`EntryKind::Config`]).
    pub config: Vec<u8>,
    /// Per partition, in partition order.
    pub images: Vec<Vec<u8>>,
    pub device_trees: Vec<Vec<u8>>,
    pub manifests: Vec<Vec<u8>>,
}

impl BundleParts {
    /// Reads every entry of a bundle (CRCs checked); partitions must be numbered 0..n.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let b = Bundle::parse(bytes).map_err(|e| e.to_string())?;
        let mut parts = Self::default();
        let count = |kind: EntryKind| b.entries().iter().filter(|e| e.kind == kind as u32).count() as u32;
        let all = |kind: EntryKind| -> Result<Vec<Vec<u8>>, String> {
            (0..count(kind)).map(|i| b.payload(kind, i).map(<[u8]>::to_vec).map_err(|e| e.to_string())).collect()
        };
        parts.roots = all(EntryKind::Root)?;
        parts.config = b.payload(EntryKind::Config, 0).map_err(|e| e.to_string())?.to_vec();
        parts.images = all(EntryKind::Image)?;
        parts.device_trees = all(EntryKind::DeviceTree)?;
        parts.manifests = all(EntryKind::Manifest)?;
        Ok(parts)
    }

    /// The bundle: roots, configuration, then each partition's image, device tree and
    /// manifest.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut items: Vec<(EntryKind, u32, &[u8])> = Vec::new();
        items.extend(self.roots.iter().enumerate().map(|(i, r)| (EntryKind::Root, i as u32, r.as_slice())));
        items.push((EntryKind::Config, 0, &self.config));
        for (i, img) in self.images.iter().enumerate() {
            items.push((EntryKind::Image, i as u32, img));
            if let Some(dtb) = self.device_trees.get(i) {
                items.push((EntryKind::DeviceTree, i as u32, dtb));
            }
            if let Some(m) = self.manifests.get(i) {
                items.push((EntryKind::Manifest, i as u32, m));
            }
        }
        if items.len() > bundle::MAX_ENTRIES {
            return Err(format!("the bundle would have {} entries; at most {}", items.len(), bundle::MAX_ENTRIES));
        }
        let capacity = 4096 + items.iter().map(|(_, _, d)| d.len() + 16).sum::<usize>();
        let mut out = vec![0u8; capacity];
        let n = bundle::encode(&items, &mut out).ok_or("bundle does not fit")?;
        out.truncate(n);
        Ok(out)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex (whitespace around it ignored).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let t = text.trim().as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    t.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect()
}

/// Reads a private key file (hex of the 32-byte seed).
pub fn read_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let seed: [u8; 32] = unhex(&text)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{}: not a key file (64 hex digits of an ed25519 seed)", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a public key file (hex of the 32-byte key).
pub fn read_public(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    unhex(&text)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{}: not a public key file (64 hex digits)", path.display()))
}

/// One `<role>-<n>` of a key directory.
#[derive(Debug)]
struct KeyFile {
    public: [u8; 32],
    signing: Option<SigningKey>,
}

/// What a key directory holds: keys by role and index, and root envelopes by number.
#[derive(Debug, Default)]
struct KeyDir {
    roles: BTreeMap<String, BTreeMap<u32, KeyFile>>,
    chain: BTreeMap<u32, PathBuf>,
}

/// `name-<n>.ext` → (name, n, ext).
fn split_name(file: &str) -> Option<(&str, u32, &str)> {
    let (stem, ext) = file.rsplit_once('.')?;
    let (name, n) = stem.rsplit_once('-')?;
    let n = n.parse().ok().filter(|&n| n > 0)?;
    (!name.is_empty()).then_some((name, n, ext))
}

fn scan(dir: &Path) -> Result<KeyDir, String> {
    let mut out = KeyDir::default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut pubs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let Some((name, n, ext)) = path.file_name().and_then(|f| f.to_str()).and_then(split_name) else { continue };
        let name = name.to_string();
        match ext {
            "envelope" if name == ROOT_ROLE => {
                out.chain.insert(n, path);
            }
            "key" => {
                let key = read_key(&path)?;
                let slot = out.roles.entry(name).or_default();
                slot.insert(n, KeyFile { public: key.verifying_key().to_bytes(), signing: Some(key) });
            }
            "pub" => pubs.push((name, n, path)),
            _ => {}
        }
    }
    // Public files only add keys held elsewhere, and must agree with private ones.
    for (name, n, path) in pubs {
        let public = read_public(&path)?;
        let slot = out.roles.entry(name).or_default();
        match slot.get(&n) {
            Some(k) if k.public != public => {
                return Err(format!("{}: does not match the private key next to it", path.display()));
            }
            Some(_) => {}
            None => {
                slot.insert(n, KeyFile { public, signing: None });
            }
        }
    }
    Ok(out)
}

/// A majority of `n` keys: 2 of 3, 2 of 2, 1 of 1, 3 of 4.
pub fn majority(n: usize) -> u32 {
    (n / 2 + 1) as u32
}

impl KeyDir {
    /// A role from the files `<name>-<n>.key|pub`, threshold a majority.
    fn role(&self, name: &str) -> Option<Role> {
        let files = self.roles.get(name)?;
        let public = files.values().map(|f| key_entry(f.public)).collect::<Vec<_>>();
        let signing = files.values().filter_map(|f| f.signing.clone()).collect();
        Some(Role { name: name.into(), threshold: majority(public.len()), min_key_version: 1, public, signing })
    }

    /// The private keys at hand for the listed keys of a role.
    fn signing_for(&self, name: &str, listed: &[KeyEntry]) -> Vec<SigningKey> {
        let files = self.roles.get(name).into_iter().flat_map(BTreeMap::values);
        files.filter(|f| listed.iter().any(|k| k.public == f.public)).filter_map(|f| f.signing.clone()).collect()
    }

    fn development(&self) -> bool {
        self.roles.iter().any(|(role, files)| files.values().any(|f| is_dev_key(role, &f.public)))
    }
}

/// Keys for `sys` from a directory written by `cargo xtask keygen`: `root-<n>.key` and
/// `<partition>-<n>.key` (or `.pub` for keys held elsewhere). With root documents
/// `root-<n>.envelope` there (in order of n: genesis, then rotations) the chain is
/// those, and the roles are the ones the last document lists; without, a genesis root
/// is made from the files, each role's threshold a majority of its keys.
pub fn load_keys(dir: &Path, sys: &System) -> Result<Keys, String> {
    let files = scan(dir)?;
    let d = dir.display();
    let mut development = files.development();
    let mut keys = if files.chain.is_empty() {
        let root = files
            .role(ROOT_ROLE)
            .ok_or_else(|| format!("{d}: no root-1.key: make keys with `cargo xtask keygen --out {d}`"))?;
        let releases = sys
            .partitions
            .iter()
            .map(|p| {
                if p.name == ROOT_ROLE {
                    return Err(format!("{d}: a partition named \"root\" would share the root role's key files"));
                }
                files
                    .role(&p.name)
                    .ok_or_else(|| format!("{d}: no {}-1.key for partition {}'s release role", p.name, p.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Keys { development, root, releases, chain: Vec::new() }
    } else {
        let mut chain = Vec::new();
        for path in files.chain.values() {
            chain.push(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        let last = files.chain.values().last().map_or(d.to_string(), |p| p.display().to_string());
        let root = check_chain(&chain).map_err(|e| format!("{d}: root chain (root-<n>.envelope): {e}"))?;
        development |= chain
            .iter()
            .filter_map(|c| Envelope::parse(c).ok().and_then(|e| e.root()))
            .any(|r| r.flags & root_flags::DEVELOPMENT != 0);
        let listed = root_keys(&root).to_vec();
        let root_role = Role {
            name: ROOT_ROLE.into(),
            threshold: root.threshold,
            min_key_version: root.min_key_version,
            signing: files.signing_for(ROOT_ROLE, &listed),
            public: listed,
        };
        let releases = sys
            .partitions
            .iter()
            .map(|p| {
                let entry = listed_role(&root, &p.name)
                    .ok_or_else(|| format!("{last}: lists no release role for partition {}", p.name))?;
                let listed = role_keys(entry).to_vec();
                Ok(Role {
                    name: p.name.clone(),
                    threshold: entry.threshold,
                    min_key_version: entry.min_key_version,
                    signing: files.signing_for(&p.name, &listed),
                    public: listed,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Keys { development, root: root_role, releases, chain }
    };
    for role in std::iter::once(&keys.root).chain(&keys.releases) {
        if role.signing.len() < role.threshold as usize {
            return Err(format!(
                "{d}: role {} needs {} signatures but holds {} of its private keys ({}-<n>.key)",
                role.name,
                role.threshold,
                role.signing.len(),
                role.name
            ));
        }
    }
    if keys.chain.is_empty() {
        keys.chain = vec![genesis_root(&keys).map_err(|e| format!("{d}: {e}"))?];
    }
    Ok(keys)
}

/// A root document of `version` for rotation (or a first genesis), listing the roles of
/// the key files in `dir` (root and every other role found there, thresholds a
/// majority), signed by a threshold of `dir`'s root keys and, with a `previous`
/// document, by a threshold of its keys found in `old_keys`. Returns the envelope and
/// how many more signatures by the previous root's keys it still needs (holders add
/// them with `cargo xtask sign --add`).
pub fn rotate_root(
    dir: &Path,
    version: u32,
    previous: Option<&[u8]>,
    old_keys: Option<&Path>,
) -> Result<(Vec<u8>, usize), String> {
    let files = scan(dir)?;
    let d = dir.display();
    let root = files.role(ROOT_ROLE).ok_or_else(|| format!("{d}: no root-<n>.key or .pub"))?;
    let releases: Vec<Role> =
        files.roles.keys().filter(|n| n.as_str() != ROOT_ROLE).filter_map(|n| files.role(n)).collect();
    if root.signing.len() < root.threshold as usize {
        return Err(format!(
            "{d}: the root role needs {} signatures, holds {} private keys",
            root.threshold,
            root.signing.len()
        ));
    }
    let prev = match previous {
        None => None,
        Some(bytes) => {
            let env = Envelope::parse(bytes).map_err(|e| format!("previous root: {e}"))?;
            Some(env.root().ok_or("previous root: not a root document")?)
        }
    };
    if let Some(p) = &prev {
        if version <= p.version {
            return Err(format!("version {version} must be above the previous root's {}", p.version));
        }
    }
    let flags = if files.development() { root_flags::DEVELOPMENT } else { 0 };
    let body = root_body(version, flags, &root, &releases)?;
    verify::check_root_body(&body).map_err(|e| format!("{d}: {e}"))?;
    let mut signers: Vec<SigningKey> = root.signers().into_iter().cloned().collect();
    if let (Some(p), Some(old)) = (&prev, old_keys) {
        let old_files = scan(old)?;
        let mut held = old_files.signing_for(ROOT_ROLE, root_keys(p));
        held.truncate(p.threshold as usize);
        signers.extend(held);
    }
    let refs: Vec<&SigningKey> = signers.iter().collect();
    let envelope = add_signatures(&sign_envelope(Kind::Root, body.as_bytes(), &[])?, &refs)?;
    let missing = match &prev {
        None => 0,
        Some(p) => {
            let env = Envelope::parse(&envelope).map_err(|e| e.to_string())?;
            (p.threshold as usize).saturating_sub(approvals(&env, root_keys(p), p.min_key_version))
        }
    };
    Ok((envelope, missing))
}

//! Verification of the chain of trust (TUF/Uptane-style roles):
//!
//! * the **root** documents: the genesis document is pinned by the anchor (the SHA-512
//!   of its body, built into the hypervisor); each later one (a rotation) must be
//!   signed by a threshold of the previous document's keys and of its own;
//! * the **configuration**, signed by a threshold of the root keys;
//! * each partition's **manifest**, signed by a threshold of its release role's keys,
//!   bound to the board, the configuration and an anti-rollback counter;
//! * the **image** and the **device tree**, which must be exactly what the manifest
//!   names, where the configuration puts them.
//!
//! Keys are revoked by version: a key whose `key_version` is below the role's minimum
//! (the larger of the root document's and the stored floor) does not count. Every check
//! returns a typed [`TrustError`]; nothing here panics on input.

use core::fmt;

use ed25519_dalek::VerifyingKey;

use crate::counters::{Floors, PartitionFloor};
use crate::format::{
    self, root_flags, Envelope, EnvelopeHeader, FormatError, KeyEntry, Kind, Manifest, RoleEntry, RootBody, Signature,
    FORMAT_VERSION, MANIFEST_MAGIC, MANIFEST_VERSION, ROOT_MAGIC,
};
use crate::hash::{self, Hash};
use crate::{BOARD_ID_LEN, MAX_KEYS, MAX_ROLES, NAME_LEN};

// Crate-visible: the boot checks' tests reuse its fixtures.
#[cfg(test)]
pub(crate) mod tests;

/// Whose signatures fell short of a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The root keys of document `version`: its own signatures (genesis or rotation),
    /// or, when it is the root in force, the configuration's.
    Root { version: u32 },
    /// The previous root document's keys, authorising the rotation to `version`.
    PreviousRoot { version: u32 },
    /// A partition's release role (its name in the root document).
    Release { name: [u8; NAME_LEN] },
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root { version } => write!(f, "root keys of root version {version}"),
            Self::PreviousRoot { version } => write!(f, "previous root keys (rotation to version {version})"),
            // Debug formatting escapes control characters: names are printed to a console.
            Self::Release { name } => write!(f, "release role {:?}", format::field_str(name)),
        }
    }
}

/// Why a document or an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustError {
    /// The image has no trust anchor built in (the caller's to report).
    NoAnchor,
    /// A document the bundle must carry is absent (the caller's to report).
    Missing,
    /// The envelope is malformed.
    Format(FormatError),
    /// The envelope holds another kind of document.
    WrongKind { expected: Kind, found: Kind },
    /// The bytes between the body and the signatures are not zero.
    NonZeroPadding,
    /// No root document at all.
    EmptyChain,
    /// The genesis root document is not the one the anchor pins.
    AnchorMismatch,
    /// A root document is structurally invalid; `role` is the index of the offending
    /// release role (`None`: the root's own fields).
    BadRootDocument { role: Option<u8>, reason: &'static str },
    /// A rotation does not raise the root version.
    RootNotNewer { previous: u32, found: u32 },
    /// The root in force is older than one already accepted.
    RootRolledBack { found: u32, floor: u32 },
    /// Too few valid, distinct, unrevoked signatures.
    Threshold { role: Role, valid: usize, needed: u32 },
    /// A development root (published keys) offered to a production build.
    DevelopmentRootInProduction,
    /// A manifest's own fields are invalid.
    BadManifest(&'static str),
    /// The root document has no release role for the manifest's partition.
    UnknownPartition { name: [u8; NAME_LEN] },
    /// The manifest is validly signed, but for another partition.
    WrongPartition { found: [u8; NAME_LEN] },
    /// The manifest is for another board.
    WrongBoard { found: [u8; BOARD_ID_LEN] },
    /// The manifest was built for another configuration.
    WrongConfig,
    /// The manifest's security counter is below the one already accepted.
    CounterRolledBack { found: u64, floor: u64 },
    /// The image is not as long as its manifest says.
    ImageLength { expected: u64, found: u64 },
    /// The image's SHA-512 is not its manifest's.
    ImageHash,
    /// The device tree is not as long as its manifest says.
    DeviceTreeLength { expected: u64, found: u64 },
    /// The device tree's SHA-512 is not its manifest's.
    DeviceTreeHash,
    /// The manifest places the image, its entry or the device tree elsewhere than the
    /// configuration does.
    WrongPlacement { what: Placed, signed: u64, configured: u64 },
}

/// What a manifest places at an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    Image,
    Entry,
    DeviceTree,
}

impl fmt::Display for Placed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image => "the image",
            Self::Entry => "the entry point",
            Self::DeviceTree => "the device tree",
        })
    }
}

impl TrustError {
    /// A stable, nonzero one-byte code for the audit log (0 there means success).
    pub fn code(&self) -> u8 {
        match self {
            Self::NoAnchor => 1,
            Self::Missing => 2,
            Self::Format(_) => 3,
            Self::WrongKind { .. } => 4,
            Self::NonZeroPadding => 5,
            Self::EmptyChain => 6,
            Self::AnchorMismatch => 7,
            Self::BadRootDocument { .. } => 8,
            Self::RootNotNewer { .. } => 9,
            Self::RootRolledBack { .. } => 10,
            Self::Threshold { .. } => 11,
            Self::DevelopmentRootInProduction => 12,
            Self::BadManifest(_) => 13,
            Self::UnknownPartition { .. } => 14,
            Self::WrongPartition { .. } => 15,
            Self::WrongBoard { .. } => 16,
            Self::WrongConfig => 17,
            Self::CounterRolledBack { .. } => 18,
            Self::ImageLength { .. } => 19,
            Self::ImageHash => 20,
            Self::DeviceTreeLength { .. } => 21,
            Self::DeviceTreeHash => 22,
            Self::WrongPlacement { .. } => 23,
        }
    }
}

impl From<FormatError> for TrustError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAnchor => write!(f, "no root trust anchor is built in"),
            Self::Missing => write!(f, "a signed document is missing from the bundle"),
            Self::Format(e) => write!(f, "malformed envelope: {e}"),
            Self::WrongKind { expected, found } => write!(f, "expected a {expected:?} document, found a {found:?}"),
            Self::NonZeroPadding => write!(f, "envelope padding after the body is not zero"),
            Self::EmptyChain => write!(f, "no root document"),
            Self::AnchorMismatch => write!(f, "the genesis root document does not match the trust anchor"),
            Self::BadRootDocument { role: None, reason } => write!(f, "invalid root document: {reason}"),
            Self::BadRootDocument { role: Some(i), reason } => write!(f, "invalid root document, role {i}: {reason}"),
            Self::RootNotNewer { previous, found } => {
                write!(f, "root version {found} does not rotate from version {previous} (must be higher)")
            }
            Self::RootRolledBack { found, floor } => {
                write!(f, "root version {found} is below the accepted root version {floor}")
            }
            Self::Threshold { role, valid, needed } => {
                write!(f, "{valid} valid signature(s) by the {role}, {needed} needed")
            }
            Self::DevelopmentRootInProduction => write!(f, "a development root document is refused in production"),
            Self::BadManifest(reason) => write!(f, "invalid manifest: {reason}"),
            Self::UnknownPartition { name } => {
                write!(f, "the root has no release role for partition {:?}", format::field_str(name))
            }
            Self::WrongPartition { found } => {
                write!(f, "the manifest is for partition {:?}, not this one", format::field_str(found))
            }
            Self::WrongBoard { found } => write!(f, "the manifest is for board {:?}", format::field_str(found)),
            Self::WrongConfig => write!(f, "the manifest was built for another configuration"),
            Self::CounterRolledBack { found, floor } => {
                write!(f, "security counter {found} is below the accepted counter {floor}")
            }
            Self::ImageLength { expected, found } => {
                write!(f, "the image is {found} bytes, its manifest says {expected}")
            }
            Self::ImageHash => write!(f, "the image's SHA-512 does not match its manifest"),
            Self::DeviceTreeLength { expected, found } => {
                write!(f, "the device tree is {found} bytes, its manifest says {expected}")
            }
            Self::DeviceTreeHash => write!(f, "the device tree's SHA-512 does not match its manifest"),
            Self::WrongPlacement { what, signed, configured } => {
                write!(f, "the manifest puts {what} at {signed:#x}, the configuration at {configured:#x}")
            }
        }
    }
}

/// What a manifest must be for, besides being validly signed.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The partition's name in the configuration (its release role's name).
    pub partition: &'a str,
    /// This board's identifier.
    pub board_id: &'a str,
    /// SHA-512 of the signed configuration body in force.
    pub config_hash: &'a Hash,
    /// Where that configuration loads the partition.
    pub placement: Placement,
}

/// Where the configuration loads a partition: the manifest must say the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub load_ipa: u64,
    pub entry_ipa: u64,
    pub dtb_ipa: u64,
}

/// Checks a root document's structure: magic and version, known flags, for the root
/// keys and each release role `1 <= threshold <= key_count <= MAX_KEYS`, canonical,
/// usable and distinct public keys, at least `threshold` keys not revoked by the
/// document's own minimum, unique valid role names, and zero reserved fields and
/// unused slots (so that the document has one encoding and hides nothing).
pub fn check_root_body(root: &RootBody) -> Result<(), TrustError> {
    let bad = |role, reason| Err(TrustError::BadRootDocument { role, reason });
    if root.magic != ROOT_MAGIC {
        return bad(None, "not a root document (magic)");
    }
    if root.format_version != FORMAT_VERSION {
        return bad(None, "unsupported format version");
    }
    // An unknown flag may be a restriction this verifier would silently ignore.
    if root.flags & !root_flags::DEVELOPMENT != 0 {
        return bad(None, "unknown flags");
    }
    if root._reserved != 0 {
        return bad(None, "reserved field not zero");
    }
    if let Err(reason) = check_keys(&root.keys, root.key_count, root.threshold, root.min_key_version) {
        return bad(None, reason);
    }
    let Some((roles, unused)) = root.roles.split_at_checked(root.role_count as usize) else {
        return bad(None, "too many roles");
    };
    if unused.iter().any(|r| !zeroed(r)) {
        return bad(None, "unused role slot not zero");
    }
    for (i, role) in roles.iter().enumerate() {
        // i < MAX_ROLES (8), so the index fits.
        let at = Some(i as u8);
        if !valid_name(&role.name) {
            return bad(at, "name must be 1 to 23 bytes of UTF-8, NUL-padded");
        }
        if roles.iter().take(i).any(|other| other.name == role.name) {
            return bad(at, "duplicate role name");
        }
        if role._reserved != 0 {
            return bad(at, "reserved field not zero");
        }
        if let Err(reason) = check_keys(&role.keys, role.key_count, role.threshold, role.min_key_version) {
            return bad(at, reason);
        }
    }
    Ok(())
}

fn check_keys(
    keys: &[KeyEntry; MAX_KEYS],
    key_count: u32,
    threshold: u32,
    min_key_version: u32,
) -> Result<(), &'static str> {
    let Some((listed, unused)) = keys.split_at_checked(key_count as usize) else {
        return Err("more keys than a role may list");
    };
    if listed.is_empty() {
        return Err("no keys");
    }
    if threshold == 0 || threshold > key_count {
        return Err("threshold must be between 1 and the key count");
    }
    if unused.iter().any(|k| *k != KeyEntry::default()) {
        return Err("unused key slot not zero");
    }
    for (i, key) in listed.iter().enumerate() {
        if key._reserved != 0 {
            return Err("reserved field of a key not zero");
        }
        if !usable_key(&key.public) {
            return Err("public key is not a canonical ed25519 point of large order");
        }
        if listed.iter().take(i).any(|other| other.public == key.public) {
            return Err("duplicate public key");
        }
    }
    // Otherwise the role could never sign anything: surely a mistake.
    if listed.iter().filter(|k| k.key_version >= min_key_version).count() < threshold as usize {
        return Err("fewer unrevoked keys than the threshold");
    }
    Ok(())
}

/// A key that can verify, in its one canonical encoding: then equal bytes mean equal
/// keys, which the duplicate checks rely on.
fn usable_key(public: &[u8; 32]) -> bool {
    match VerifyingKey::from_bytes(public) {
        Ok(key) => !key.is_weak() && key.to_edwards().compress().to_bytes() == *public,
        Err(_) => false,
    }
}

/// The configuration's rule for names: 1 to `NAME_LEN - 1` bytes of UTF-8, then NULs.
fn valid_name(field: &[u8; NAME_LEN]) -> bool {
    let len = field.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    match field.split_at_checked(len) {
        Some((name, pad)) => {
            !name.is_empty() && !pad.is_empty() && core::str::from_utf8(name).is_ok() && pad.iter().all(|&b| b == 0)
        }
        None => false,
    }
}

fn zeroed(role: &RoleEntry) -> bool {
    use zerocopy::IntoBytes;
    role.as_bytes().iter().all(|&b| b == 0)
}

/// Counts the valid signatures over `statement` by keys in `keys`. Each distinct
/// listed key counts at most once, however often it is listed or signs. A signature
/// counts zero when its key is not listed, is revoked (`key_version <
/// min_key_version` in any of its listings), or `verify_strict` refuses it.
pub fn count_valid(
    statement: &[u8],
    sigs: impl Iterator<Item = Signature>,
    keys: &[KeyEntry],
    min_key_version: u32,
) -> usize {
    let mut counted: u64 = 0;
    for sig in sigs {
        // The first listing stands for the key, so a key listed twice has one bit.
        let Some(index) = keys.iter().position(|k| k.public == sig.key) else { continue };
        // Roles list at most MAX_KEYS; beyond the mask's 64 a key simply does not count.
        if index >= 64 {
            continue;
        }
        let bit = 1u64 << index;
        if counted & bit != 0 {
            continue;
        }
        if keys.iter().any(|k| k.public == sig.key && k.key_version < min_key_version) {
            continue;
        }
        let Ok(key) = VerifyingKey::from_bytes(&sig.key) else { continue };
        let signature = ed25519_dalek::Signature::from_bytes(&sig.signature);
        if key.verify_strict(statement, &signature).is_ok() {
            counted |= bit;
        }
    }
    counted.count_ones() as usize
}

/// Verifies a chain of root documents (signed envelopes of kind Root, genesis first)
/// and returns the last, the root in force.
///
/// The genesis body's SHA-512 must equal `anchor`. Each document must be structurally
/// valid ([`check_root_body`]) and signed by a threshold of its own keys; each later one
/// must also have a higher version and be signed by a threshold of the previous
/// document's keys (with that document's own minimum key version). The floor
/// `floors.root_min_key_version` applies to the last document's own keys only: it was
/// raised by accepting that (or a later) document, and superseded documents' keys may
/// since have been revoked, as rotations intend. The last version must be at least
/// `floors.root_version`. A production build refuses any development document in the
/// chain: its keys are published, so anyone could sign its successor.
pub fn verify_root_chain<'a>(
    anchor: &Hash,
    chain: impl Iterator<Item = &'a [u8]>,
    floors: &Floors,
    production: bool,
) -> Result<RootBody, TrustError> {
    let mut chain = chain.peekable();
    let genesis = open(chain.next().ok_or(TrustError::EmptyChain)?, Kind::Root)?;
    // The anchor pins the signed body; nothing else of the genesis document is trusted before this.
    if !hash::equal(&hash::sha512(genesis.body), anchor) {
        return Err(TrustError::AnchorMismatch);
    }
    let mut current = root_document(&genesis, production)?;
    let statement = format::statement(Kind::Root, genesis.body);
    self_signed(&statement, &genesis, &current, floors, chain.peek().is_none())?;
    while let Some(bytes) = chain.next() {
        let envelope = open(bytes, Kind::Root)?;
        let next = root_document(&envelope, production)?;
        if next.version <= current.version {
            return Err(TrustError::RootNotNewer { previous: current.version, found: next.version });
        }
        let statement = format::statement(Kind::Root, envelope.body);
        let valid = count_valid(&statement, envelope.signatures(), listed_keys(&current), current.min_key_version);
        require(Role::PreviousRoot { version: next.version }, valid, current.threshold)?;
        self_signed(&statement, &envelope, &next, floors, chain.peek().is_none())?;
        current = next;
    }
    if current.version < floors.root_version {
        return Err(TrustError::RootRolledBack { found: current.version, floor: floors.root_version });
    }
    Ok(current)
}

fn root_document(envelope: &Envelope<'_>, production: bool) -> Result<RootBody, TrustError> {
    // `open` has checked the kind and `parse` the size, so this cannot fail; stay typed anyway.
    let root =
        envelope.root().ok_or(TrustError::BadRootDocument { role: None, reason: "body is not a root document" })?;
    check_root_body(&root)?;
    if production && root.flags & root_flags::DEVELOPMENT != 0 {
        return Err(TrustError::DevelopmentRootInProduction);
    }
    Ok(root)
}

fn self_signed(
    statement: &[u8],
    envelope: &Envelope<'_>,
    root: &RootBody,
    floors: &Floors,
    last: bool,
) -> Result<(), TrustError> {
    let min = if last { root.min_key_version.max(floors.root_min_key_version) } else { root.min_key_version };
    let valid = count_valid(statement, envelope.signatures(), listed_keys(root), min);
    require(Role::Root { version: root.version }, valid, root.threshold)
}

/// Verifies the configuration envelope: kind Config, signed by a threshold of the root
/// keys (minimum key version: the root's and the stored floor, whichever is higher).
/// Returns the body, the compiled configuration. `root` must come from
/// [`verify_root_chain`].
pub fn verify_config<'a>(root: &RootBody, envelope: &'a [u8], floors: &Floors) -> Result<&'a [u8], TrustError> {
    let envelope = open(envelope, Kind::Config)?;
    let statement = format::statement(Kind::Config, envelope.body);
    let min = root.min_key_version.max(floors.root_min_key_version);
    let valid = count_valid(&statement, envelope.signatures(), listed_keys(root), min);
    require(Role::Root { version: root.version }, valid, root.threshold)?;
    Ok(envelope.body)
}

/// Verifies a partition's manifest envelope and returns the manifest.
///
/// Kind Manifest, magic, format version and zero reserved fields; signed by a
/// threshold of the release role named by the manifest (minimum key version: the
/// role's and the stored floor for that partition, whichever is higher); then, now
/// that the manifest is known to be authentic: for `expected.partition`, for
/// `expected.board_id`, for the configuration `expected.config_hash`, placing image,
/// entry and device tree where `expected.placement` does, and with a security counter
/// not below the stored floor. Every field comes from the body,
/// which the signatures cover whole. `root` must come from [`verify_root_chain`].
pub fn verify_manifest(
    root: &RootBody,
    envelope: &[u8],
    expected: &Expected<'_>,
    floors: &Floors,
) -> Result<Manifest, TrustError> {
    let envelope = open(envelope, Kind::Manifest)?;
    let manifest = envelope.manifest().ok_or(TrustError::BadManifest("body is not a manifest"))?;
    if manifest.magic != MANIFEST_MAGIC {
        return Err(TrustError::BadManifest("not a manifest (magic)"));
    }
    // `Envelope::parse` has refused other versions by name; stay closed anyway.
    if manifest.format_version != MANIFEST_VERSION {
        return Err(TrustError::BadManifest("unsupported format version"));
    }
    if manifest._reserved != 0 || manifest._reserved2 != 0 {
        return Err(TrustError::BadManifest("reserved field not zero"));
    }
    let role = roles(root)
        .iter()
        .find(|r| r.name == manifest.partition)
        .ok_or(TrustError::UnknownPartition { name: manifest.partition })?;
    let floor = partition_floor(floors, &manifest.partition);
    let min = role.min_key_version.max(floor.min_key_version);
    let statement = format::statement(Kind::Manifest, envelope.body);
    let keys = role.keys.get(..role.key_count as usize).unwrap_or(&[]);
    let valid = count_valid(&statement, envelope.signatures(), keys, min);
    require(Role::Release { name: role.name }, valid, role.threshold)?;

    if format::name_field::<NAME_LEN>(expected.partition) != Some(manifest.partition) {
        return Err(TrustError::WrongPartition { found: manifest.partition });
    }
    if format::name_field::<BOARD_ID_LEN>(expected.board_id) != Some(manifest.board_id) {
        return Err(TrustError::WrongBoard { found: manifest.board_id });
    }
    if !hash::equal(&manifest.config_hash, expected.config_hash) {
        return Err(TrustError::WrongConfig);
    }
    let p = expected.placement;
    for (what, signed, configured) in [
        (Placed::Image, manifest.load_ipa, p.load_ipa),
        (Placed::Entry, manifest.entry_ipa, p.entry_ipa),
        (Placed::DeviceTree, manifest.dtb_ipa, p.dtb_ipa),
    ] {
        if signed != configured {
            return Err(TrustError::WrongPlacement { what, signed, configured });
        }
    }
    if manifest.security_counter < floor.security_counter {
        return Err(TrustError::CounterRolledBack { found: manifest.security_counter, floor: floor.security_counter });
    }
    Ok(manifest)
}

/// Checks an image against its (verified) manifest: exact length, then SHA-512
/// compared in constant time.
pub fn verify_image(manifest: &Manifest, image: &[u8]) -> Result<(), TrustError> {
    let expected = manifest.image_len;
    exactly(
        image,
        expected,
        &manifest.image_hash,
        |found| TrustError::ImageLength { expected, found },
        TrustError::ImageHash,
    )
}

/// Checks a device tree against its (verified) manifest: exact length, then SHA-512
/// compared in constant time.
pub fn verify_device_tree(manifest: &Manifest, dtb: &[u8]) -> Result<(), TrustError> {
    let expected = manifest.dtb_len;
    let length = |found| TrustError::DeviceTreeLength { expected, found };
    exactly(dtb, expected, &manifest.dtb_hash, length, TrustError::DeviceTreeHash)
}

/// `bytes` are `len` bytes long (else `length(found)`) with the SHA-512 `digest` (else
/// `mismatch`): the length first, so a hash is only computed over the signed extent.
fn exactly(
    bytes: &[u8],
    len: u64,
    digest: &Hash,
    length: impl FnOnce(u64) -> TrustError,
    mismatch: TrustError,
) -> Result<(), TrustError> {
    let found = bytes.len() as u64;
    if found != len {
        return Err(length(found));
    }
    if !hash::equal(&hash::sha512(bytes), digest) {
        return Err(mismatch);
    }
    Ok(())
}

/// The floors after accepting `root` and the manifests `accepted` (partition name,
/// security counter), or `None` when nothing rises. Raised: the root version, the root
/// minimum key version, each release role's minimum key version and each accepted
/// partition's security counter; nothing is ever lowered.
///
/// Every role of `root` gets an entry: a new name takes the first unused (all-zero
/// name) entry or, when none is left, the entry of a partition `root` no longer has a
/// role for (it cannot be verified under this root any more). An accepted name that is
/// not a role of `root` cannot have been verified under it and is ignored.
pub fn raise_floors(floors: &Floors, root: &RootBody, accepted: &[(&str, u64)]) -> Option<Floors> {
    let mut new = *floors;
    new.root_version = new.root_version.max(root.version);
    new.root_min_key_version = new.root_min_key_version.max(root.min_key_version);
    let roles = roles(root);
    for role in roles {
        if let Some(entry) = floor_entry(&mut new, &role.name, roles) {
            entry.min_key_version = entry.min_key_version.max(role.min_key_version);
        }
    }
    for &(name, counter) in accepted {
        let Some(name) = format::name_field::<NAME_LEN>(name) else { continue };
        if !roles.iter().any(|r| r.name == name) {
            continue;
        }
        if let Some(entry) = floor_entry(&mut new, &name, roles) {
            entry.security_counter = entry.security_counter.max(counter);
        }
    }
    (new != *floors).then_some(new)
}

fn floor_entry<'f>(
    floors: &'f mut Floors,
    name: &[u8; NAME_LEN],
    roles: &[RoleEntry],
) -> Option<&'f mut PartitionFloor> {
    const UNUSED: [u8; NAME_LEN] = [0; NAME_LEN];
    if *name == UNUSED {
        return None;
    }
    let entries = &mut floors.partitions;
    let index = entries
        .iter()
        .position(|p| p.name == *name)
        .or_else(|| entries.iter().position(|p| p.name == UNUSED))
        .or_else(|| entries.iter().position(|p| !roles.iter().any(|r| r.name == p.name)))?;
    let entry = entries.get_mut(index)?;
    if entry.name != *name {
        // A fresh entry: nothing of an unused or stale entry carries over.
        *entry = PartitionFloor { name: *name, ..PartitionFloor::default() };
    }
    Some(entry)
}

/// Frames `bytes` as an envelope of `kind`, with zero padding: the padding is outside
/// the signed statement, so requiring zero leaves no byte of an accepted envelope
/// (other than surplus signatures) free to change.
fn open(bytes: &[u8], kind: Kind) -> Result<Envelope<'_>, TrustError> {
    let envelope = Envelope::parse(bytes)?;
    if envelope.kind != kind {
        return Err(TrustError::WrongKind { expected: kind, found: envelope.kind });
    }
    let body_end = size_of::<EnvelopeHeader>() + envelope.body.len();
    let padded_end = size_of::<EnvelopeHeader>() + envelope.body.len().div_ceil(8) * 8;
    match bytes.get(body_end..padded_end) {
        Some(padding) if padding.iter().all(|&b| b == 0) => Ok(envelope),
        _ => Err(TrustError::NonZeroPadding),
    }
}

/// The root's listed keys; none if the count is out of range (fail closed for a
/// document that did not pass [`check_root_body`]).
fn listed_keys(root: &RootBody) -> &[KeyEntry] {
    root.keys.get(..root.key_count as usize).unwrap_or(&[])
}

/// The root's release roles; none if the count is out of range (fail closed).
fn roles(root: &RootBody) -> &[RoleEntry] {
    root.roles.get(..root.role_count as usize).unwrap_or(&[])
}

/// The stored floor for partition `name`, all zero if there is none.
fn partition_floor(floors: &Floors, name: &[u8; NAME_LEN]) -> PartitionFloor {
    floors.partitions.iter().find(|p| p.name == *name && p.name != [0; NAME_LEN]).copied().unwrap_or_default()
}

fn require(role: Role, valid: usize, needed: u32) -> Result<(), TrustError> {
    // A zero threshold (only in a document that skipped check_root_body) must not mean
    // "no signature needed".
    if needed >= 1 && valid >= needed as usize {
        Ok(())
    } else {
        Err(TrustError::Threshold { role, valid, needed })
    }
}

const _: () = assert!(MAX_KEYS <= 64 && MAX_ROLES <= u8::MAX as usize);

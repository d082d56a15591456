//! Wire layout of signed documents. Every multi-byte field is little-endian at a fixed
//! offset given by these `#[repr(C)]` structs; nothing is variable-length except an
//! envelope's body and signature list, whose lengths are bounded.
//!
//! A **signed envelope** is
//! `EnvelopeHeader | body (body_len bytes, zero-padded to 8) | Signature * sig_count`.
//! Each signature is an ed25519 signature by `key` over the [`statement`]: a domain
//! tag, the document kind, the body length and the SHA-512 of the body. So every byte
//! of the body is signed; the header's `magic`, `body_len` and `sig_count` only frame
//! it, and `kind` and `body_len` are signed through the statement.
//!
//! Bodies: [`RootBody`] (kind [`Kind::Root`]), the compiled configuration as is
//! ([`Kind::Config`]), [`Manifest`] ([`Kind::Manifest`]).
//!
//! Every format is versioned: the envelope and the root document by [`FORMAT_VERSION`],
//! the manifest by its own [`MANIFEST_VERSION`]. A verifier reads exactly its versions
//! and refuses others by name ([`FormatError::UnsupportedVersion`],
//! [`FormatError::ManifestVersion`]), never by guessing at their layout.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::hash::{self, Hash};
use crate::{BOARD_ID_LEN, HASH_LEN, MAX_KEYS, MAX_ROLES, MAX_SIGNATURES, NAME_LEN};

pub const ENVELOPE_MAGIC: [u8; 8] = *b"SEPTSIGN";
pub const ROOT_MAGIC: [u8; 8] = *b"SEPTROOT";
pub const MANIFEST_MAGIC: [u8; 8] = *b"SEPTMNFT";
/// Version of the envelope and of the root document.
pub const FORMAT_VERSION: u32 = 1;
/// Version of the [`Manifest`]. Version 2 signs the partition's device tree (length,
/// SHA-512, load address) beside its image; version 1 did not, so a version 1 manifest
/// left the device tree, and with it the partition's command line, unsigned: refused.
pub const MANIFEST_VERSION: u32 = 2;
/// Domain tag at the head of every signed statement.
pub const STATEMENT_TAG: [u8; 16] = *b"SEPTUM-SIGNED-V1";
/// Largest body an envelope may carry (a configuration of 8 partitions fits).
pub const MAX_BODY: usize = 16 * 1024;

/// What an envelope's body is.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Root = 1,
    Config = 2,
    Manifest = 3,
}

impl Kind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Root),
            2 => Some(Self::Config),
            3 => Some(Self::Manifest),
            _ => None,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct EnvelopeHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    /// [`Kind`].
    pub kind: u32,
    pub body_len: u32,
    pub sig_count: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Signature {
    /// The signer's ed25519 public key; it must be one of the signing role's keys.
    pub key: [u8; 32],
    pub signature: [u8; 64],
}

/// One key of a role.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct KeyEntry {
    pub public: [u8; 32],
    /// Revocation: a key whose version is below the role's minimum (the larger of the
    /// root document's and the one stored with the counters) does not count.
    pub key_version: u32,
    pub _reserved: u32,
}

/// The keys allowed to sign one partition's manifests.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RoleEntry {
    /// The partition's name, as in the configuration.
    pub name: [u8; NAME_LEN],
    pub threshold: u32,
    pub key_count: u32,
    pub min_key_version: u32,
    pub _reserved: u32,
    pub keys: [KeyEntry; MAX_KEYS],
}

/// Flags of a root document.
pub mod root_flags {
    /// Development keys (published seeds): a production build refuses such a root.
    pub const DEVELOPMENT: u32 = 1 << 0;
}

/// The root role's document: its own keys and threshold, and each release role.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RootBody {
    pub magic: [u8; 8],
    pub format_version: u32,
    /// Strictly increases with every rotation; kept as an anti-rollback counter.
    pub version: u32,
    /// [`root_flags`].
    pub flags: u32,
    pub threshold: u32,
    pub key_count: u32,
    pub min_key_version: u32,
    pub keys: [KeyEntry; MAX_KEYS],
    pub role_count: u32,
    pub _reserved: u32,
    pub roles: [RoleEntry; MAX_ROLES],
}

/// What a partition's release role signs for one release: every byte the partition is
/// given at its start, that is its image (which carries an initrd, if any, in the same
/// load image) and its device tree, with the addresses they are loaded at.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Manifest {
    pub magic: [u8; 8],
    /// [`MANIFEST_VERSION`].
    pub format_version: u32,
    pub _reserved: u32,
    pub partition: [u8; NAME_LEN],
    pub board_id: [u8; BOARD_ID_LEN],
    pub version_major: u16,
    pub version_minor: u16,
    pub version_patch: u16,
    pub _reserved2: u16,
    /// Anti-rollback: refused when below the counter stored for the partition.
    pub security_counter: u64,
    pub image_len: u64,
    pub image_hash: [u8; HASH_LEN],
    /// Where the image is loaded, and its entry point (the configuration's).
    pub load_ipa: u64,
    pub entry_ipa: u64,
    /// The partition's flattened device tree: exact length and SHA-512.
    pub dtb_len: u64,
    pub dtb_hash: [u8; HASH_LEN],
    /// Where the device tree is loaded (the configuration's; the boot vCPU's `x0`).
    pub dtb_ipa: u64,
    /// SHA-512 of the signed configuration body this release was built for.
    pub config_hash: [u8; HASH_LEN],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    TooShort,
    BadMagic,
    UnsupportedVersion {
        found: u32,
    },
    /// A manifest of another [`MANIFEST_VERSION`] (its size differs too).
    ManifestVersion {
        found: u32,
    },
    UnknownKind {
        found: u32,
    },
    BodyTooLarge {
        len: u32,
    },
    TooManySignatures {
        count: u32,
    },
    /// The envelope's length is not exactly header + padded body + signatures.
    BadLength {
        expected: usize,
        found: usize,
    },
    /// The body is not the size its kind has.
    BodySize {
        kind: Kind,
        expected: usize,
        found: usize,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => write!(f, "shorter than an envelope header"),
            Self::BadMagic => write!(f, "not a signed envelope (magic)"),
            Self::UnsupportedVersion { found } => write!(f, "format version {found}, expected {FORMAT_VERSION}"),
            Self::ManifestVersion { found: 1 } => write!(
                f,
                "manifest format version 1, which does not sign the device tree; this verifier reads version \
                 {MANIFEST_VERSION} only: sign the release again"
            ),
            Self::ManifestVersion { found } => {
                write!(f, "manifest format version {found}; this verifier reads version {MANIFEST_VERSION} only")
            }
            Self::UnknownKind { found } => write!(f, "unknown document kind {found}"),
            Self::BodyTooLarge { len } => write!(f, "body of {len} bytes exceeds {MAX_BODY}"),
            Self::TooManySignatures { count } => write!(f, "{count} signatures exceed {MAX_SIGNATURES}"),
            Self::BadLength { expected, found } => write!(f, "envelope is {found} bytes, its header says {expected}"),
            Self::BodySize { kind, expected, found } => {
                write!(f, "{kind:?} body is {found} bytes, expected {expected}")
            }
        }
    }
}

/// Bytes of an envelope with a body of `body_len` bytes and `sig_count` signatures.
pub const fn envelope_len(body_len: usize, sig_count: usize) -> usize {
    size_of::<EnvelopeHeader>() + body_len.div_ceil(8) * 8 + sig_count * size_of::<Signature>()
}

/// A parsed (framed, not yet verified) envelope.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    pub kind: Kind,
    pub body: &'a [u8],
    signatures: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Frames `bytes` as exactly one envelope. Checks structure only.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (h, _) = EnvelopeHeader::read_from_prefix(bytes).map_err(|_| FormatError::TooShort)?;
        if h.magic != ENVELOPE_MAGIC {
            return Err(FormatError::BadMagic);
        }
        if h.format_version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: h.format_version });
        }
        let kind = Kind::from_u32(h.kind).ok_or(FormatError::UnknownKind { found: h.kind })?;
        if h.body_len as usize > MAX_BODY {
            return Err(FormatError::BodyTooLarge { len: h.body_len });
        }
        if h.sig_count as usize > MAX_SIGNATURES {
            return Err(FormatError::TooManySignatures { count: h.sig_count });
        }
        let expected = envelope_len(h.body_len as usize, h.sig_count as usize);
        if bytes.len() != expected {
            return Err(FormatError::BadLength { expected, found: bytes.len() });
        }
        let body_at = size_of::<EnvelopeHeader>();
        let body = &bytes[body_at..body_at + h.body_len as usize];
        let padded_end = body_at + (h.body_len as usize).div_ceil(8) * 8;
        if kind == Kind::Manifest {
            // Named before the size check, which another version fails too.
            if let Some(found) = manifest_version(body).filter(|&v| v != MANIFEST_VERSION) {
                return Err(FormatError::ManifestVersion { found });
            }
        }
        let expected_body = match kind {
            Kind::Root => Some(size_of::<RootBody>()),
            Kind::Manifest => Some(size_of::<Manifest>()),
            Kind::Config => None,
        };
        if let Some(expected) = expected_body {
            if body.len() != expected {
                return Err(FormatError::BodySize { kind, expected, found: body.len() });
            }
        }
        Ok(Self { kind, body, signatures: &bytes[padded_end..] })
    }

    pub fn signatures(&self) -> impl Iterator<Item = Signature> + 'a {
        self.signatures.chunks_exact(size_of::<Signature>()).filter_map(|c| Signature::read_from_bytes(c).ok())
    }

    pub fn signature_count(&self) -> usize {
        self.signatures.len() / size_of::<Signature>()
    }

    /// The body as a root document, if it is one.
    pub fn root(&self) -> Option<RootBody> {
        (self.kind == Kind::Root).then(|| RootBody::read_from_bytes(self.body).ok()).flatten()
    }

    /// The body as a manifest, if it is one.
    pub fn manifest(&self) -> Option<Manifest> {
        (self.kind == Kind::Manifest).then(|| Manifest::read_from_bytes(self.body).ok()).flatten()
    }
}

/// The `format_version` of a body that starts like a manifest (its magic), of any
/// version: every version begins with the magic and the version.
fn manifest_version(body: &[u8]) -> Option<u32> {
    let magic = body.get(..8)?;
    let version = body.get(8..12)?;
    (magic == MANIFEST_MAGIC).then(|| u32::from_le_bytes([version[0], version[1], version[2], version[3]]))
}

/// Bytes of a [`statement`].
pub const STATEMENT_LEN: usize = STATEMENT_TAG.len() + 4 + 4 + HASH_LEN;

/// What a signature signs: tag, kind, body length, SHA-512 of the body.
pub fn statement(kind: Kind, body: &[u8]) -> [u8; STATEMENT_LEN] {
    let mut s = [0u8; STATEMENT_LEN];
    let digest: Hash = hash::sha512(body);
    s[..16].copy_from_slice(&STATEMENT_TAG);
    s[16..20].copy_from_slice(&(kind as u32).to_le_bytes());
    s[20..24].copy_from_slice(&(body.len() as u32).to_le_bytes());
    s[24..].copy_from_slice(&digest);
    s
}

/// Writes an envelope into `out` and returns its length; `None` if `out` is too small
/// or the body or signature count exceeds the format's bounds.
pub fn write_envelope(kind: Kind, body: &[u8], signatures: &[Signature], out: &mut [u8]) -> Option<usize> {
    if body.len() > MAX_BODY || signatures.len() > MAX_SIGNATURES {
        return None;
    }
    let len = envelope_len(body.len(), signatures.len());
    let out = out.get_mut(..len)?;
    out.fill(0);
    let header = EnvelopeHeader {
        magic: ENVELOPE_MAGIC,
        format_version: FORMAT_VERSION,
        kind: kind as u32,
        body_len: body.len() as u32,
        sig_count: signatures.len() as u32,
    };
    let body_at = size_of::<EnvelopeHeader>();
    out[..body_at].copy_from_slice(header.as_bytes());
    out[body_at..body_at + body.len()].copy_from_slice(body);
    let sigs_at = body_at + body.len().div_ceil(8) * 8;
    for (chunk, s) in out[sigs_at..].chunks_exact_mut(size_of::<Signature>()).zip(signatures) {
        chunk.copy_from_slice(s.as_bytes());
    }
    Some(len)
}

/// A NUL-padded name field from a string; `None` if it does not fit with a NUL.
pub fn name_field<const N: usize>(name: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if name.len() >= N || name.bytes().any(|b| b == 0) {
        return None;
    }
    out[..name.len()].copy_from_slice(name.as_bytes());
    Some(out)
}

/// The text of a NUL-padded name field (up to the first NUL; `"?"` if not UTF-8).
pub fn field_str(field: &[u8]) -> &str {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    core::str::from_utf8(&field[..len]).unwrap_or("?")
}

const _: () = {
    assert!(size_of::<EnvelopeHeader>() == 24);
    assert!(size_of::<Signature>() == 96);
    assert!(size_of::<KeyEntry>() == 40);
    assert!(size_of::<RoleEntry>() == 200);
    assert!(size_of::<RootBody>() == 1800);
    assert!(size_of::<Manifest>() == 320);
};

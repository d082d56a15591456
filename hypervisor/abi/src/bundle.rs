//! The boot bundle: one blob that carries the configuration, each partition's image and
//! each partition's device tree. A bootloader places it in memory next to the hypervisor
//! (as an "initrd": QEMU `-initrd`, U-Boot `booti`, the Raspberry Pi firmware's
//! `initramfs`), which names its address in the board DTB's `/chosen` node.
//!
//! Layout: [`BundleHeader`], then `entry_count` [`BundleEntry`]s, then payloads, each
//! 16-byte aligned. The header's CRC covers header and entry table; each entry's CRC
//! covers its payload. [`Bundle::parse`] checks the frame (header, table, bounds) only;
//! a payload's CRC is checked each time it is taken ([`Bundle::payload`]), so one
//! damaged payload costs the partition it belongs to, not the whole bundle. The CRCs
//! catch corruption only: authenticity comes from the signed envelopes
//! (`septum_trust::format`) the bundle carries:
//!
//! * [`EntryKind::Root`]: the root chain, one entry per root document, genesis first
//!   (its body's SHA-512 is the anchor built into the hypervisor), then each rotation.
//! * [`EntryKind::Config`]: the configuration, as the body of an envelope signed by the
//!   root role. The body starts 24 bytes into the payload, so it stays 8-byte aligned.
//! * [`EntryKind::Manifest`]: per partition, an envelope signed by the partition's
//!   release role, naming the length and hash of its image and of its device tree, and
//!   the configuration's hash.
//!
//! Images and device trees are carried as is: the manifest vouches for both.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const BUNDLE_MAGIC: [u8; 8] = *b"SEPTBNDL";
pub const BUNDLE_VERSION: u32 = 1;
pub const MAX_ENTRIES: usize = 32;
/// Payload alignment inside the bundle.
pub const PAYLOAD_ALIGN: u64 = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct BundleHeader {
    pub magic: [u8; 8],
    pub version: u32,
    pub entry_count: u32,
    /// Bytes of the whole bundle.
    pub total_len: u64,
    /// CRC-32 of header and entry table, with this field zero.
    pub crc32: u32,
    pub _reserved: u32,
}

/// What an entry carries.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A signed envelope of kind Config whose body is the compiled system configuration
    /// (see [`crate::config`]). One per bundle; its `partition` field is unused (0).
    Config = 1,
    /// A partition's image, copied to its `image_ipa`.
    Image = 2,
    /// A partition's flattened device tree, copied to its `dtb_ipa`.
    DeviceTree = 3,
    /// A signed envelope of kind Manifest for the partition at `partition` (its index
    /// in the configuration).
    Manifest = 4,
    /// A signed envelope of kind Root; `partition` is its position in the root chain,
    /// 0 being the genesis document.
    Root = 5,
}

impl EntryKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Config),
            2 => Some(Self::Image),
            3 => Some(Self::DeviceTree),
            4 => Some(Self::Manifest),
            5 => Some(Self::Root),
            _ => None,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct BundleEntry {
    /// [`EntryKind`].
    pub kind: u32,
    /// Partition index in the configuration (unused for [`EntryKind::Config`]); for
    /// [`EntryKind::Root`], the position in the root chain.
    pub partition: u32,
    /// Offset of the payload from the start of the bundle.
    pub offset: u64,
    pub len: u64,
    /// CRC-32 of the payload.
    pub crc32: u32,
    pub _reserved: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    TooShort,
    BadMagic,
    UnsupportedVersion {
        found: u32,
    },
    TooManyEntries {
        count: u32,
    },
    BadLength {
        total_len: u64,
        available: u64,
    },
    HeaderChecksum,
    EntryOutOfBounds {
        entry: usize,
    },
    PayloadChecksum {
        entry: usize,
    },
    Missing {
        kind: EntryKind,
        partition: u32,
    },
    /// Reported by the loader, before any parsing: the bootloader put the bundle at an
    /// address outside RAM.
    NotInRam {
        base: u64,
    },
}

impl BundleError {
    /// A stable, nonzero one-byte code for the audit log (the `result` of its
    /// `BundleRefused` record).
    pub fn code(&self) -> u8 {
        match self {
            Self::TooShort => 1,
            Self::BadMagic => 2,
            Self::UnsupportedVersion { .. } => 3,
            Self::TooManyEntries { .. } => 4,
            Self::BadLength { .. } => 5,
            Self::HeaderChecksum => 6,
            Self::EntryOutOfBounds { .. } => 7,
            Self::PayloadChecksum { .. } => 8,
            Self::Missing { .. } => 9,
            Self::NotInRam { .. } => 10,
        }
    }

    /// A number that goes with the code in the audit record: the entry at fault, the
    /// length the header claims, the version or count found, the address.
    pub fn detail(&self) -> u64 {
        match *self {
            Self::TooShort | Self::BadMagic | Self::HeaderChecksum => 0,
            Self::UnsupportedVersion { found } => u64::from(found),
            Self::TooManyEntries { count } => u64::from(count),
            Self::BadLength { total_len, .. } => total_len,
            Self::EntryOutOfBounds { entry } | Self::PayloadChecksum { entry } => entry as u64,
            Self::Missing { kind, .. } => kind as u64,
            Self::NotInRam { base } => base,
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => write!(f, "bundle shorter than its header"),
            Self::BadMagic => write!(f, "no bundle here (magic is not SEPTBNDL)"),
            Self::UnsupportedVersion { found } => {
                write!(f, "bundle format version {found}, this hypervisor reads {BUNDLE_VERSION}")
            }
            Self::TooManyEntries { count } => {
                write!(f, "bundle has {count} entries, at most {MAX_ENTRIES}")
            }
            Self::BadLength { total_len, available } => {
                write!(f, "bundle says {total_len} bytes, {available} available")
            }
            Self::HeaderChecksum => write!(f, "bundle header checksum mismatch: corrupted"),
            Self::EntryOutOfBounds { entry } => {
                write!(f, "bundle entry #{entry} points outside the bundle")
            }
            Self::PayloadChecksum { entry } => write!(f, "bundle entry #{entry} payload checksum mismatch: corrupted"),
            Self::Missing { kind, partition } => {
                write!(f, "bundle has no {kind:?} for partition #{partition}")
            }
            Self::NotInRam { base } => write!(f, "boot bundle address {base:#x} is not in RAM"),
        }
    }
}

/// A bundle whose header and entry table have been checked; payload CRCs are checked
/// on access, so a payload copied again later (a restart) is checked again.
#[derive(Clone, Copy, Debug)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    entries: &'a [BundleEntry],
}

impl<'a> Bundle<'a> {
    /// Reads the header's claimed length from a bundle's first bytes, so a caller that
    /// only has a pointer knows how much memory to look at (bounded by `available`).
    pub fn claimed_len(prefix: &[u8]) -> Result<u64, BundleError> {
        let (h, _) = BundleHeader::ref_from_prefix(prefix).map_err(|_| BundleError::TooShort)?;
        if h.magic != BUNDLE_MAGIC {
            return Err(BundleError::BadMagic);
        }
        Ok(h.total_len)
    }

    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError> {
        let (h, rest) = BundleHeader::ref_from_prefix(bytes).map_err(|_| BundleError::TooShort)?;
        if h.magic != BUNDLE_MAGIC {
            return Err(BundleError::BadMagic);
        }
        if h.version != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion { found: h.version });
        }
        if h.entry_count as usize > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries { count: h.entry_count });
        }
        if h.total_len > bytes.len() as u64 {
            return Err(BundleError::BadLength { total_len: h.total_len, available: bytes.len() as u64 });
        }
        let bytes = &bytes[..h.total_len as usize];
        let (entries, _) = <[BundleEntry]>::ref_from_prefix_with_elems(rest, h.entry_count as usize)
            .map_err(|_| BundleError::TooShort)?;
        let table_end = size_of::<BundleHeader>() + entries.as_bytes().len();
        if header_checksum(&bytes[..table_end]) != h.crc32 {
            return Err(BundleError::HeaderChecksum);
        }
        for (i, e) in entries.iter().enumerate() {
            let end = e.offset.checked_add(e.len);
            if end.is_none_or(|end| end > h.total_len) || e.offset < table_end as u64 {
                return Err(BundleError::EntryOutOfBounds { entry: i });
            }
        }
        Ok(Self { bytes, entries })
    }

    /// The payload of the entry of `kind` for `partition`, CRC-checked.
    pub fn payload(&self, kind: EntryKind, partition: u32) -> Result<&'a [u8], BundleError> {
        let i = self
            .entries
            .iter()
            .position(|e| e.kind == kind as u32 && (kind == EntryKind::Config || e.partition == partition))
            .ok_or(BundleError::Missing { kind, partition })?;
        self.entry_payload(i)
    }

    /// The length of an entry's payload, without checking its CRC.
    pub fn payload_len(&self, kind: EntryKind, partition: u32) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.kind == kind as u32 && (kind == EntryKind::Config || e.partition == partition))
            .map(|e| e.len)
    }

    /// The entry table, in bundle order (for tools that list a bundle).
    pub fn entries(&self) -> &'a [BundleEntry] {
        self.entries
    }

    /// The payload of entry `index` of [`Self::entries`], CRC-checked.
    pub fn entry_payload(&self, index: usize) -> Result<&'a [u8], BundleError> {
        let e = self.entries.get(index).ok_or(BundleError::EntryOutOfBounds { entry: index })?;
        // Bounds were checked in `parse`.
        let data = &self.bytes[e.offset as usize..(e.offset + e.len) as usize];
        if crc32fast::hash(data) != e.crc32 {
            return Err(BundleError::PayloadChecksum { entry: index });
        }
        Ok(data)
    }

    /// The whole bundle.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// CRC-32 of a header plus entry table, with the header's CRC field taken as zero.
pub fn header_checksum(header_and_table: &[u8]) -> u32 {
    let at = core::mem::offset_of!(BundleHeader, crc32);
    let mut h = crc32fast::Hasher::new();
    h.update(&header_and_table[..at]);
    h.update(&[0; 4]);
    h.update(&header_and_table[at + 4..]);
    h.finalize()
}

/// Lays out a bundle: `items` are (kind, partition, payload). Returns the bytes written
/// into `out`, or `None` if it does not fit.
pub fn encode(items: &[(EntryKind, u32, &[u8])], out: &mut [u8]) -> Option<usize> {
    if items.len() > MAX_ENTRIES {
        return None;
    }
    let table_end = size_of::<BundleHeader>() + items.len() * size_of::<BundleEntry>();
    let mut offset = align_up(table_end as u64, PAYLOAD_ALIGN);
    let mut entries = [BundleEntry { kind: 0, partition: 0, offset: 0, len: 0, crc32: 0, _reserved: 0 }; MAX_ENTRIES];
    for (i, (kind, partition, data)) in items.iter().enumerate() {
        let end = offset.checked_add(data.len() as u64)?;
        out.get_mut(offset as usize..end as usize)?.copy_from_slice(data);
        entries[i] = BundleEntry {
            kind: *kind as u32,
            partition: *partition,
            offset,
            len: data.len() as u64,
            crc32: crc32fast::hash(data),
            _reserved: 0,
        };
        offset = align_up(end, PAYLOAD_ALIGN);
    }
    let header = BundleHeader {
        magic: BUNDLE_MAGIC,
        version: BUNDLE_VERSION,
        entry_count: items.len() as u32,
        total_len: offset,
        crc32: 0,
        _reserved: 0,
    };
    out.get_mut(..size_of::<BundleHeader>())?.copy_from_slice(header.as_bytes());
    out.get_mut(size_of::<BundleHeader>()..table_end)?.copy_from_slice(entries[..items.len()].as_bytes());
    let crc = header_checksum(&out[..table_end]);
    let at = core::mem::offset_of!(BundleHeader, crc32);
    out[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    Some(offset as usize)
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: [(EntryKind, u32, &[u8]); 7] = [
        (EntryKind::Root, 0, b"genesis"),
        (EntryKind::Root, 1, b"rotated"),
        (EntryKind::Config, 0, b"cfg"),
        (EntryKind::Image, 0, b"image-zero"),
        (EntryKind::Manifest, 0, b"manifest-zero"),
        (EntryKind::Image, 1, b"one"),
        (EntryKind::Manifest, 1, b"manifest-one"),
    ];

    fn sample(out: &mut [u8]) -> usize {
        encode(&SAMPLE, out).unwrap()
    }

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 1024];
        let n = sample(&mut buf);
        let b = Bundle::parse(&buf[..n]).unwrap();
        assert_eq!(b.payload(EntryKind::Image, 0).unwrap(), b"image-zero");
        assert_eq!(b.payload(EntryKind::Image, 1).unwrap(), b"one");
        assert_eq!(b.payload(EntryKind::Config, 9).unwrap(), b"cfg");
        assert_eq!(b.payload(EntryKind::Root, 0).unwrap(), b"genesis");
        assert_eq!(b.payload(EntryKind::Root, 1).unwrap(), b"rotated");
        assert_eq!(b.payload(EntryKind::Manifest, 1).unwrap(), b"manifest-one");
        assert_eq!(b.payload(EntryKind::Root, 2), Err(BundleError::Missing { kind: EntryKind::Root, partition: 2 }));
        for (i, (kind, partition, data)) in SAMPLE.iter().enumerate() {
            let e = b.entries()[i];
            assert_eq!((EntryKind::from_u32(e.kind), e.partition), (Some(*kind), *partition));
            assert_eq!(b.entry_payload(i).unwrap(), *data);
        }
        assert_eq!(EntryKind::from_u32(6), None);
        assert_eq!(
            b.payload(EntryKind::DeviceTree, 0),
            Err(BundleError::Missing { kind: EntryKind::DeviceTree, partition: 0 })
        );
    }

    /// BOOT-003: any corrupted byte is refused at parse or at payload access.
    #[test]
    fn every_corrupted_byte_is_detected() {
        let mut buf = [0u8; 1024];
        let n = sample(&mut buf);
        for i in 0..n {
            let mut copy = buf;
            copy[i] ^= 0x40;
            let ok = Bundle::parse(&copy[..n])
                .and_then(|b| (0..SAMPLE.len()).try_for_each(|e| b.entry_payload(e).map(drop)));
            // Padding between payloads is not covered; everything else is.
            let padding = Bundle::parse(&buf[..n])
                .unwrap()
                .entries
                .iter()
                .all(|e| !(e.offset as usize..(e.offset + e.len) as usize).contains(&i))
                && i >= size_of::<BundleHeader>() + SAMPLE.len() * size_of::<BundleEntry>();
            assert!(ok.is_err() || padding, "corruption at {i} not detected");
        }
    }

    /// BOOT-003: a payload that fails its CRC is refused when taken, and only it: the
    /// bundle still parses and every other payload is served.
    #[test]
    fn a_corrupted_payload_costs_only_itself() {
        let mut buf = [0u8; 1024];
        let n = sample(&mut buf);
        let entries = Bundle::parse(&buf[..n]).unwrap().entries;
        let image_one = entries.iter().position(|e| e.kind == EntryKind::Image as u32 && e.partition == 1).unwrap();
        let at = entries[image_one].offset as usize + 1;
        let mut copy = buf;
        copy[at] ^= 0x01;
        let b = Bundle::parse(&copy[..n]).expect("the frame is intact");
        assert_eq!(b.payload(EntryKind::Image, 1), Err(BundleError::PayloadChecksum { entry: image_one }));
        for (i, (kind, partition, data)) in SAMPLE.iter().enumerate().filter(|(i, _)| *i != image_one) {
            assert_eq!(b.payload(*kind, *partition), Ok(*data), "entry {i}");
        }
    }

    #[test]
    fn error_codes_are_distinct_and_nonzero() {
        let all = [
            BundleError::TooShort,
            BundleError::BadMagic,
            BundleError::UnsupportedVersion { found: 2 },
            BundleError::TooManyEntries { count: 33 },
            BundleError::BadLength { total_len: 9, available: 8 },
            BundleError::HeaderChecksum,
            BundleError::EntryOutOfBounds { entry: 3 },
            BundleError::PayloadChecksum { entry: 3 },
            BundleError::Missing { kind: EntryKind::Image, partition: 1 },
            BundleError::NotInRam { base: 0x1000 },
        ];
        for (i, e) in all.iter().enumerate() {
            assert!(e.code() != 0 && all[..i].iter().all(|o| o.code() != e.code()), "{e:?}");
        }
        assert_eq!(BundleError::BadLength { total_len: 9, available: 8 }.detail(), 9);
    }

    #[test]
    fn truncation_is_refused() {
        let mut buf = [0u8; 1024];
        let n = sample(&mut buf);
        for cut in [0, 8, 40, n - 1] {
            assert!(Bundle::parse(&buf[..cut]).is_err());
        }
    }
}

//! The audit log: append-only, hash-chained records in the flash bank's log area
//! (blocks [`LOG_FIRST_BLOCK`] to the end, see [`crate::flash`]).
//!
//! # Records
//!
//! The area is cut into slots of [`RECORD_LEN`] bytes (256; an erase block holds a
//! whole number of them). A slot is *blank* (all `0xFF`), *valid* (a [`Record`] whose
//! self-check holds) or *invalid* (anything else). Records are written to consecutive
//! slots, each with a global sequence number one higher than the previous record's, and
//! `prev` = the previous record's `self_hash`, the SHA-512 of its first 192 bytes; that
//! hash is also its self-check, placed LAST, so a record whose programming was cut short
//! (a *torn* record) fails it. Only the fixed fields exist: the kind of event, the
//! partition index, a result code, a counter value, the generic timer, and a SHA-512 of
//! the subject (image, manifest, configuration): there is no room for free text or
//! anyone's data.
//!
//! # Ring
//!
//! Entering a block that is not blank (the log area is full: the block holds the oldest
//! records) erases it first, then writes a [`EventKind::LogWrapped`] record whose
//! `detail` is the sequence number of the oldest record that survives. So a settled log
//! always begins with the record the last `LogWrapped` names, and [`verify`] checks that.
//!
//! # Torn records
//!
//! A power cut while a record is programmed leaves an invalid slot after the newest valid
//! record. [`AuditLog::open`] reports it ([`OpenReport::torn`]); the next append goes
//! after it, and the first record written is a [`EventKind::TornRecord`] naming it
//! ([`torn_detail`]: the slot, plus, if the TornRecord itself was cut in turn by a second
//! power cut, how many consecutive slots are torn). [`AuditLog::append`] writes that
//! record itself before the caller's event if the caller has not (and likewise a pending
//! `LogWrapped`). A torn record does not consume a sequence number and is skipped by the
//! chain: the record after it continues from the last valid one.
//!
//! # What the verifier can tell, and its limit
//!
//! Any change to a record's bytes -- one byte is enough -- makes its self-check fail. A
//! torn record fails it too; the two are told apart by what follows: a torn record is
//! the last thing written before a power cut, so it is either immediately followed by the
//! `TornRecord` event (of the next boot) that names it, or it is the very end of the log.
//! An invalid record followed by anything else is reported as broken AT that record (not
//! at the one after, whose `prev` no longer matches). A record that is still valid but
//! does not follow its predecessor (sequence number, `prev`) is broken at itself as well.
//!
//! The limits: an edit of the newest record, or garbage written just after it, looks
//! exactly like a torn last record (the next boot then acknowledges it). And the chain
//! is unkeyed: it shows partial edits, but whoever can rewrite the whole tail
//! consistently (recomputing every hash) or erase the oldest records together with the
//! `LogWrapped` record can forge a history. That party is out of scope: the bank is the
//! hypervisor's alone, no partition's stage 2 maps it, so only code at EL2 or physical
//! access to the flash could do it. Likewise a dump taken right after a cut inside a
//! real (not simulated) erase may show a block of garbage; the next boot erases it.

use core::convert::Infallible;
use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::flash::{Flash, FlashError, BLOCK_SIZE, LOG_FIRST_BLOCK, READBACK_MISMATCH};
use crate::hash::{self, Hash};
use crate::HASH_LEN;

pub const LOG_MAGIC: [u8; 4] = *b"SLOG";
/// Version of [`Record`].
pub const LOG_FORMAT_VERSION: u16 = 1;
/// Bytes of a record (and of a slot).
pub const RECORD_LEN: usize = 256;
/// Bytes covered by a record's `self_hash`.
pub const CHECKED_LEN: usize = RECORD_LEN - HASH_LEN;
/// `partition` of an event that concerns no partition (the hypervisor itself).
pub const NO_PARTITION: u8 = 0xFF;
/// The log needs erase blocks of at least this many slots ...
pub const MIN_SLOTS_PER_BLOCK: u32 = 4;
/// ... and at least this many blocks (a ring must not erase the block it writes).
pub const MIN_LOG_BLOCKS: u32 = 2;

const ZERO_HASH: Hash = [0; HASH_LEN];
const BLANK: [u8; RECORD_LEN] = [0xFF; RECORD_LEN];

/// What a record reports. Codes are stable (they are stored).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The hypervisor started; `detail` = the boot count.
    Boot = 1,
    /// The root document chain was verified; `detail` = its version; subject = the anchor.
    RootVerified = 2,
    /// The configuration's signature was verified; subject = SHA-512 of its body.
    ConfigVerified = 3,
    /// A manifest was verified; `detail` = its security counter.
    ManifestVerified = 4,
    /// A partition image matched its manifest; subject = the image hash.
    ImageVerified = 5,
    /// A verification failed; `result` = the error code.
    VerificationFailed = 6,
    /// A partition was not started.
    PartitionRefused = 7,
    /// A partition was started.
    PartitionStarted = 8,
    /// A partition faulted; `detail` = the ESR.
    Fault = 9,
    /// A partition was restarted; `detail` = its restart count.
    Restart = 10,
    /// A partition was halted.
    Halt = 11,
    /// The system entered its safe state.
    SafeState = 12,
    /// The system was shut down in an orderly way.
    Shutdown = 13,
    /// The anti-rollback counters were raised.
    CounterRaised = 14,
    /// A copy of the counters was found invalid (a store was cut).
    CountersTorn = 15,
    /// No copy of the counters was valid although the bank was not blank.
    CountersLost = 16,
    /// Torn slots precede this record; `detail` = [`torn_detail`].
    TornRecord = 17,
    /// The oldest block was erased; `detail` = sequence number of the oldest survivor.
    LogWrapped = 18,
    /// The boot bundle was refused as a whole (nothing started); `result` = its error code.
    BundleRefused = 19,
}

impl EventKind {
    pub const ALL: [Self; 19] = [
        Self::Boot,
        Self::RootVerified,
        Self::ConfigVerified,
        Self::ManifestVerified,
        Self::ImageVerified,
        Self::VerificationFailed,
        Self::PartitionRefused,
        Self::PartitionStarted,
        Self::Fault,
        Self::Restart,
        Self::Halt,
        Self::SafeState,
        Self::Shutdown,
        Self::CounterRaised,
        Self::CountersTorn,
        Self::CountersLost,
        Self::TornRecord,
        Self::LogWrapped,
        Self::BundleRefused,
    ];

    pub fn from_u16(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u16 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::RootVerified => "root-verified",
            Self::ConfigVerified => "config-verified",
            Self::ManifestVerified => "manifest-verified",
            Self::ImageVerified => "image-verified",
            Self::VerificationFailed => "verification-failed",
            Self::PartitionRefused => "partition-refused",
            Self::PartitionStarted => "partition-started",
            Self::Fault => "fault",
            Self::Restart => "restart",
            Self::Halt => "halt",
            Self::SafeState => "safe-state",
            Self::Shutdown => "shutdown",
            Self::CounterRaised => "counter-raised",
            Self::CountersTorn => "counters-torn",
            Self::CountersLost => "counters-lost",
            Self::TornRecord => "torn-record",
            Self::LogWrapped => "log-wrapped",
            Self::BundleRefused => "bundle-refused",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `detail` of a [`EventKind::TornRecord`]: the first torn slot in the low 32 bits and
/// the number of further consecutive torn slots in the high 32 bits (0 for a single
/// torn record, so usually `detail` is just the slot).
pub fn torn_detail(first_slot: u32, count: u32) -> u64 {
    u64::from(first_slot) | (u64::from(count.saturating_sub(1)) << 32)
}

/// The `(first slot, count)` a TornRecord's `detail` names.
pub fn torn_slots(detail: u64) -> (u32, u32) {
    (detail as u32, ((detail >> 32) as u32).saturating_add(1))
}

/// What the caller records; the log adds the sequence number, boot and chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// Index of the partition in the configuration, [`NO_PARTITION`] for none.
    pub partition: u8,
    /// 0 for success, else a small error code.
    pub result: u8,
    /// The generic timer's count.
    pub ticks: u64,
    /// A number whose meaning depends on `kind` (see [`EventKind`]).
    pub detail: u64,
    /// SHA-512 of the subject (image, manifest, configuration), zeros if none.
    pub subject: [u8; HASH_LEN],
}

impl Event {
    /// An event of the hypervisor's, with no result code, detail or subject.
    pub const fn new(kind: EventKind) -> Self {
        Self { kind, partition: NO_PARTITION, result: 0, ticks: 0, detail: 0, subject: [0; HASH_LEN] }
    }
}

/// A record as it lies in its slot.
///
/// | offset | bytes | field |
/// |--------|-------|-------|
/// | 0   | 4  | `magic` = `SLOG` |
/// | 4   | 2  | `format_version` = 1 |
/// | 6   | 2  | `kind` ([`EventKind`] code) |
/// | 8   | 8  | `seq`: global, from 0, +1 per record |
/// | 16  | 4  | `boot`: the boot count |
/// | 20  | 1  | `partition` (0xFF: none) |
/// | 21  | 1  | `result` (0: ok) |
/// | 22  | 2  | `_reserved` (0) |
/// | 24  | 8  | `ticks` |
/// | 32  | 8  | `detail` |
/// | 40  | 64 | `subject`: SHA-512 of the subject, or zeros |
/// | 104 | 64 | `prev`: `self_hash` of the previous valid record (zeros for seq 0) |
/// | 168 | 24 | `_reserved2` (0) |
/// | 192 | 64 | `self_hash`: SHA-512 of bytes 0..192 -- the self-check and the chain link |
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Record {
    pub magic: [u8; 4],
    pub format_version: u16,
    pub kind: u16,
    pub seq: u64,
    pub boot: u32,
    pub partition: u8,
    pub result: u8,
    pub _reserved: u16,
    pub ticks: u64,
    pub detail: u64,
    pub subject: [u8; HASH_LEN],
    pub prev: [u8; HASH_LEN],
    pub _reserved2: [u8; 24],
    pub self_hash: [u8; HASH_LEN],
}

const _: () = assert!(size_of::<Record>() == RECORD_LEN && RECORD_LEN.is_multiple_of(8) && CHECKED_LEN == 192);

/// Why a non-blank slot is not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    BadMagic,
    UnsupportedVersion {
        found: u16,
    },
    /// The self-check (`self_hash`) does not match: torn or altered.
    BadCheck,
    /// Self-check fine, but a kind this version does not define.
    UnknownKind {
        found: u16,
    },
    /// Self-check fine, but reserved bytes are not zero.
    Reserved,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a record (magic)"),
            Self::UnsupportedVersion { found } => write!(f, "record format version {found}"),
            Self::BadCheck => write!(f, "self-check fails (torn or altered)"),
            Self::UnknownKind { found } => write!(f, "unknown event kind {found}"),
            Self::Reserved => write!(f, "reserved bytes not zero"),
        }
    }
}

impl Record {
    fn sealed(event: &Event, seq: u64, boot: u32, prev: &Hash) -> Self {
        let mut r = Self {
            magic: LOG_MAGIC,
            format_version: LOG_FORMAT_VERSION,
            kind: event.kind as u16,
            seq,
            boot,
            partition: event.partition,
            result: event.result,
            _reserved: 0,
            ticks: event.ticks,
            detail: event.detail,
            subject: event.subject,
            prev: *prev,
            _reserved2: [0; 24],
            self_hash: [0; HASH_LEN],
        };
        r.self_hash = hash::sha512(&r.as_bytes()[..CHECKED_LEN]);
        r
    }

    /// A slot's bytes as a valid record. Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8; RECORD_LEN]) -> Result<Self, RecordError> {
        let r = Self::read_from_bytes(bytes).map_err(|_| RecordError::BadMagic)?;
        if r.magic != LOG_MAGIC {
            return Err(RecordError::BadMagic);
        }
        if r.format_version != LOG_FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion { found: r.format_version });
        }
        if !hash::equal(&r.self_hash, &hash::sha512(&bytes[..CHECKED_LEN])) {
            return Err(RecordError::BadCheck);
        }
        if EventKind::from_u16(r.kind).is_none() {
            return Err(RecordError::UnknownKind { found: r.kind });
        }
        if r._reserved != 0 || r._reserved2 != [0; 24] {
            return Err(RecordError::Reserved);
        }
        Ok(r)
    }

    /// The event kind (always `Some` for a record that [`Record::parse`] accepted).
    pub fn event_kind(&self) -> Option<EventKind> {
        EventKind::from_u16(self.kind)
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_kind() {
            Some(k) => write!(f, "#{} boot {} {k}", self.seq, self.boot)?,
            None => write!(f, "#{} boot {} kind {}", self.seq, self.boot, self.kind)?,
        }
        if self.partition != NO_PARTITION {
            write!(f, " partition {}", self.partition)?;
        }
        write!(f, " result {} detail {:#x} ticks {}", self.result, self.detail, self.ticks)?;
        if self.subject != ZERO_HASH {
            write!(f, " subject ")?;
            for b in &self.subject[..8] {
                write!(f, "{b:02x}")?;
            }
            write!(f, "..")?;
        }
        Ok(())
    }
}

/// What a slot holds. (Records live on the stack: no allocator to box them.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
enum Slot {
    Blank,
    Valid(Record),
    Invalid(RecordError),
}

fn classify(bytes: &[u8; RECORD_LEN]) -> Slot {
    if *bytes == BLANK {
        return Slot::Blank;
    }
    match Record::parse(bytes) {
        Ok(r) => Slot::Valid(r),
        Err(e) => Slot::Invalid(e),
    }
}

/// The log area's shape: `blocks` erase blocks of `per_block` slots each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    per_block: u32,
    blocks: u32,
}

impl Geometry {
    /// For an area of `area_len` bytes in blocks of `block_size`; `None` unless the
    /// blocks hold whole slots, the area whole blocks, and both minimums are met.
    fn new(area_len: u64, block_size: u32) -> Option<Self> {
        let rec = RECORD_LEN as u32;
        if block_size == 0 || !block_size.is_multiple_of(rec) || !area_len.is_multiple_of(u64::from(block_size)) {
            return None;
        }
        let per_block = block_size / rec;
        let blocks = u32::try_from(area_len / u64::from(block_size)).ok()?;
        let ok =
            per_block >= MIN_SLOTS_PER_BLOCK && blocks >= MIN_LOG_BLOCKS && per_block.checked_mul(blocks).is_some();
        ok.then_some(Self { per_block, blocks })
    }

    fn slots(&self) -> u32 {
        self.per_block * self.blocks
    }

    /// `slot + k`, around the ring (`slot < slots()`, `k <= slots()`).
    fn add(&self, slot: u32, k: u32) -> u32 {
        ((u64::from(slot) + u64::from(k)) % u64::from(self.slots())) as u32
    }

    fn next(&self, slot: u32) -> u32 {
        self.add(slot, 1)
    }

    fn prev(&self, slot: u32) -> u32 {
        self.add(slot, self.slots() - 1)
    }

    fn block_of(&self, slot: u32) -> u32 {
        slot / self.per_block
    }

    fn first_slot(&self, block: u32) -> u32 {
        (block % self.blocks) * self.per_block
    }

    fn is_block_start(&self, slot: u32) -> bool {
        slot.is_multiple_of(self.per_block)
    }

    fn is_block_end(&self, slot: u32) -> bool {
        slot % self.per_block == self.per_block - 1
    }
}

/// Slots to read: the flash (for `open` and `append`) or a dump (for `verify`).
trait Area {
    type Error;
    fn geo(&self) -> Geometry;
    fn bytes(&self, slot: u32, buf: &mut [u8; RECORD_LEN]) -> Result<(), Self::Error>;

    fn slot(&self, slot: u32) -> Result<Slot, Self::Error> {
        let mut buf = [0u8; RECORD_LEN];
        self.bytes(slot, &mut buf)?;
        Ok(classify(&buf))
    }

    fn is_blank(&self, slot: u32) -> Result<bool, Self::Error> {
        let mut buf = [0u8; RECORD_LEN];
        self.bytes(slot, &mut buf)?;
        Ok(buf == BLANK)
    }

    fn block_is_blank(&self, block: u32) -> Result<bool, Self::Error> {
        let first = self.geo().first_slot(block);
        for s in first..first + self.geo().per_block {
            if !self.is_blank(s)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn first_valid_in_block(&self, block: u32) -> Result<Option<Record>, Self::Error> {
        let g = self.geo();
        let first = g.first_slot(block);
        let last = first + g.per_block - 1;
        match self.slot(first)? {
            Slot::Valid(r) => return Ok(Some(r)),
            // Erased; a half-erased block keeps its second half, so its last slot.
            Slot::Blank if self.is_blank(last)? => return Ok(None),
            _ => {}
        }
        for s in first + 1..=last {
            if let Slot::Valid(r) = self.slot(s)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// The oldest valid record: the first one in ring order from block `from` on.
    fn oldest_from(&self, from: u32) -> Result<Option<Record>, Self::Error> {
        let g = self.geo();
        for k in 0..g.blocks {
            if let Some(r) = self.first_valid_in_block((from + k) % g.blocks)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// The torn run after the newest valid record (`head`; `None`: there is none, the
    /// run then starts at slot 0): `(first slot, count)`. Consecutive invalid slots,
    /// not crossing into a block that holds valid records (a block of older records
    /// not yet erased, whose invalid slots are old).
    fn torn_run_after(&self, head: Option<u32>) -> Result<(u32, u32), Self::Error> {
        let g = self.geo();
        let start = head.map_or(0, |h| g.next(h));
        let (mut s, mut count) = (start, 0);
        while count < g.slots() - 1 {
            if !matches!(self.slot(s)?, Slot::Invalid(_)) {
                break;
            }
            if g.is_block_start(s) && self.first_valid_in_block(g.block_of(s))?.is_some() {
                break;
            }
            count += 1;
            s = g.next(s);
        }
        Ok((start, count))
    }
}

struct FlashArea<'f, F: ?Sized> {
    flash: &'f F,
    base: u32,
    geo: Geometry,
}

impl<F: Flash + ?Sized> Area for FlashArea<'_, F> {
    type Error = FlashError;
    fn geo(&self) -> Geometry {
        self.geo
    }
    fn bytes(&self, slot: u32, buf: &mut [u8; RECORD_LEN]) -> Result<(), FlashError> {
        self.flash.read(self.base + slot * RECORD_LEN as u32, buf)
    }
}

struct SliceArea<'a> {
    bytes: &'a [u8],
    geo: Geometry,
}

impl Area for SliceArea<'_> {
    type Error = Infallible;
    fn geo(&self) -> Geometry {
        self.geo
    }
    fn bytes(&self, slot: u32, buf: &mut [u8; RECORD_LEN]) -> Result<(), Infallible> {
        let at = slot as usize * RECORD_LEN;
        match self.bytes.get(at..at + RECORD_LEN) {
            Some(b) => buf.copy_from_slice(b),
            None => buf.fill(0xFF),
        }
        Ok(())
    }
}

fn ok<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => match e {},
    }
}

/// Where the log area is in `flash`, and its geometry.
fn flash_area<F: Flash + ?Sized>(flash: &F) -> Result<FlashArea<'_, F>, FlashError> {
    let block = flash.block_size();
    let blocks = flash.size().checked_div(block).ok_or(FlashError::OutOfRange)?;
    let log_blocks = blocks.checked_sub(LOG_FIRST_BLOCK).ok_or(FlashError::OutOfRange)?;
    let geo = Geometry::new(u64::from(log_blocks) * u64::from(block), block).ok_or(FlashError::OutOfRange)?;
    Ok(FlashArea { flash, base: LOG_FIRST_BLOCK * block, geo })
}

/// What [`AuditLog::open`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// Sequence number of the newest valid record; `None` for an empty log.
    pub last_seq: Option<u64>,
    /// The slot the next record goes to (before any erase or skip).
    pub next_slot: u32,
    /// First slot of a torn run after the newest record: the next boot's first record
    /// is a [`EventKind::TornRecord`] naming it.
    pub torn: Option<u32>,
    /// Consecutive torn slots from `torn` (more than 1 after repeated power cuts).
    pub torn_count: u32,
    /// The oldest block was erased but the `LogWrapped` record was not written (a cut);
    /// the next append writes it.
    pub wrap_unlogged: bool,
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_seq {
            Some(s) => write!(f, "last record #{s}, next slot {}", self.next_slot)?,
            None => write!(f, "empty")?,
        }
        if let Some(t) = self.torn {
            write!(f, ", TORN record at slot {t}")?;
            if self.torn_count > 1 {
                write!(f, " (+{} after it)", self.torn_count - 1)?;
            }
        }
        if self.wrap_unlogged {
            write!(f, ", interrupted wrap")?;
        }
        Ok(())
    }
}

/// The audit log, open for appending.
#[derive(Clone, Debug)]
pub struct AuditLog {
    geo: Geometry,
    /// Byte offset of the log area in the bank.
    base: u32,
    boot: u32,
    next_slot: u32,
    next_seq: u64,
    /// `self_hash` of the newest valid record, zeros before the first.
    head_hash: Hash,
    /// A torn run `(first, count)` still to be named by a TornRecord.
    torn_pending: Option<(u32, u32)>,
    /// A LogWrapped record is still to be written.
    wrap_pending: bool,
}

impl AuditLog {
    /// Finds the end of the log: the newest valid record and any torn run after it.
    /// Records appended from now on carry `boot`. Reads the first slot of every block,
    /// and every slot only of the newest block and of blocks that start invalid.
    pub fn open(flash: &impl Flash, boot: u32) -> Result<(Self, OpenReport), FlashError> {
        let area = flash_area(flash)?;
        let g = area.geo;
        // The newest block: the one whose first record is the newest.
        let mut newest_block: Option<(u32, u64)> = None;
        for b in 0..g.blocks {
            if let Slot::Valid(r) = area.slot(g.first_slot(b))? {
                if newest_block.is_none_or(|(_, seq)| r.seq > seq) {
                    newest_block = Some((b, r.seq));
                }
            }
        }
        // The newest record is in that block or in one that starts with a torn slot
        // (a cut just after entering it); half-erased blocks are read too.
        let mut head: Option<(u32, Record)> = None;
        let mut last_wrap: Option<(u64, u64)> = None;
        for b in 0..g.blocks {
            let first = g.first_slot(b);
            let scan = newest_block.is_some_and(|(nb, _)| nb == b)
                || match area.slot(first)? {
                    Slot::Valid(_) => false,
                    Slot::Invalid(_) => true,
                    Slot::Blank => !area.is_blank(first + g.per_block - 1)?,
                };
            if !scan {
                continue;
            }
            for s in first..first + g.per_block {
                if let Slot::Valid(r) = area.slot(s)? {
                    if head.as_ref().is_none_or(|(_, h)| r.seq > h.seq) {
                        head = Some((s, r));
                    }
                    if r.kind == EventKind::LogWrapped as u16 && last_wrap.is_none_or(|(seq, _)| r.seq > seq) {
                        last_wrap = Some((r.seq, r.detail));
                    }
                }
            }
        }
        let (run_first, run_len) = area.torn_run_after(head.as_ref().map(|(s, _)| *s))?;
        let torn_pending = (run_len > 0).then_some((run_first, run_len));
        let next_slot = g.add(run_first, run_len);
        let (next_seq, head_hash, wrap_pending) = match &head {
            None => (0, ZERO_HASH, false),
            Some((h, r)) => {
                let oldest = area.oldest_from(g.block_of(*h) + 1)?.map_or(0, |o| o.seq);
                let unlogged = oldest > 0 && last_wrap.map(|(_, detail)| detail) != Some(oldest);
                (r.seq.wrapping_add(1), r.self_hash, unlogged)
            }
        };
        let report = OpenReport {
            last_seq: head.as_ref().map(|(_, r)| r.seq),
            next_slot,
            torn: torn_pending.map(|(f, _)| f),
            torn_count: run_len,
            wrap_unlogged: wrap_pending,
        };
        let log = Self { geo: g, base: area.base, boot, next_slot, next_seq, head_hash, torn_pending, wrap_pending };
        Ok((log, report))
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The slot the next record goes to.
    pub fn next_slot(&self) -> u32 {
        self.next_slot
    }

    pub fn boot(&self) -> u32 {
        self.boot
    }

    /// Slots in the log's ring.
    pub fn slots(&self) -> u32 {
        self.geo.slots()
    }

    /// Reads `buf.len()` bytes of slot `slot` from byte `offset` in it, as they lie in
    /// flash, for the read-only export (the reader checks what it gets). `None`: outside
    /// the slot or the ring.
    pub fn read_slot(
        &self,
        flash: &impl Flash,
        slot: u32,
        offset: usize,
        buf: &mut [u8],
    ) -> Option<Result<(), FlashError>> {
        let end = offset.checked_add(buf.len())?;
        if slot >= self.geo.slots() || end > RECORD_LEN {
            return None;
        }
        Some(flash.read(self.base + slot * RECORD_LEN as u32 + offset as u32, buf))
    }

    /// Appends `event` and returns its sequence number. Before it, if due, writes the
    /// [`EventKind::TornRecord`] naming a torn run (unless `event` is that record) and
    /// the [`EventKind::LogWrapped`] record of an erase. Every record is read back; a
    /// failed or partial write leaves the slot behind as torn (named by the next record)
    /// and returns the error.
    pub fn append(&mut self, flash: &mut impl Flash, event: &Event) -> Result<u64, FlashError> {
        // The event, a TornRecord, a LogWrapped, and (slots per block >= 4) at most one
        // more LogWrapped if those fill a block: the bound only guards against a bug.
        for _ in 0..6 {
            self.prepare(flash)?;
            let (record, callers) = if let Some((first, count)) = self.torn_pending {
                let detail = torn_detail(first, count);
                if event.kind == EventKind::TornRecord && event.detail == detail {
                    (*event, true)
                } else {
                    let torn = Event { result: 1, ticks: event.ticks, detail, ..Event::new(EventKind::TornRecord) };
                    (torn, false)
                }
            } else if self.wrap_pending {
                let area = FlashArea { flash: &*flash, base: self.base, geo: self.geo };
                let from = self.geo.block_of(self.next_slot) + 1;
                let oldest = area.oldest_from(from)?.map_or(self.next_seq, |r| r.seq);
                (Event { ticks: event.ticks, detail: oldest, ..Event::new(EventKind::LogWrapped) }, false)
            } else {
                (*event, true)
            };
            let seq = self.write(flash, &record)?;
            match record.kind {
                EventKind::TornRecord if self.torn_pending.is_some() => self.torn_pending = None,
                EventKind::LogWrapped if !callers => self.wrap_pending = false,
                _ => {}
            }
            if callers {
                return Ok(seq);
            }
        }
        Err(FlashError::OutOfRange)
    }

    fn offset(&self, slot: u32) -> u32 {
        self.base + slot * RECORD_LEN as u32
    }

    /// Makes the next slot writable: entering a block that is not blank erases it (the
    /// ring); a non-blank slot inside a block (damage) is never programmed over: the
    /// log moves on to the next block.
    fn prepare(&mut self, flash: &mut impl Flash) -> Result<(), FlashError> {
        for _ in 0..=self.geo.blocks {
            let slot = self.next_slot;
            let area = FlashArea { flash: &*flash, base: self.base, geo: self.geo };
            if self.geo.is_block_start(slot) {
                let block = self.geo.block_of(slot);
                if !area.block_is_blank(block)? {
                    flash.erase(LOG_FIRST_BLOCK + block)?;
                    self.wrap_pending = true;
                }
                return Ok(());
            }
            if area.is_blank(slot)? {
                return Ok(());
            }
            self.next_slot = self.geo.first_slot(self.geo.block_of(slot) + 1);
        }
        Err(FlashError::OutOfRange)
    }

    /// Programs one record at the next slot and reads it back.
    fn write(&mut self, flash: &mut impl Flash, event: &Event) -> Result<u64, FlashError> {
        let slot = self.next_slot;
        let seq = self.next_seq;
        let record = Record::sealed(event, seq, self.boot, &self.head_hash);
        let offset = self.offset(slot);
        let programmed = flash.program(offset, record.as_bytes());
        let mut back = [0u8; RECORD_LEN];
        let read = flash.read(offset, &mut back);
        match read {
            Ok(()) if back == record.as_bytes() => {
                self.next_slot = self.geo.next(slot);
                self.next_seq = seq.wrapping_add(1);
                self.head_hash = record.self_hash;
                // In flash as it should be: written, whatever the driver said.
                Ok(seq)
            }
            // Nothing written: the slot stays usable.
            Ok(()) if back == BLANK => Err(programmed.err().unwrap_or(FlashError::Device(READBACK_MISMATCH))),
            // Partly written, or unknown: never program this slot again.
            _ => {
                self.torn_pending = match self.torn_pending {
                    Some((first, count)) if self.geo.add(first, count) == slot => Some((first, count + 1)),
                    _ => Some((slot, 1)),
                };
                self.next_slot = self.geo.next(slot);
                Err(programmed.err().or(read.err()).unwrap_or(FlashError::Device(READBACK_MISMATCH)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Verification of a dump
// ---------------------------------------------------------------------------------------

/// Why a log is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokenReason {
    /// The dump is not a whole number of erase blocks holding whole records (or is
    /// smaller than the minimum log).
    Geometry,
    /// Not a valid record, and not a torn one: neither named by the TornRecord event
    /// right after it nor at the end of the log. One edited byte gives this.
    Damaged(RecordError),
    /// Valid, but its sequence number is not the previous record's plus one.
    Sequence { expected: u64, found: u64 },
    /// Valid, but its `prev` is not the previous valid record's hash.
    Chain,
    /// The first record ever (seq 0) has a non-zero `prev`.
    FirstPrev,
    /// Data after the end of the log.
    AfterEnd,
    /// The oldest records are gone and no LogWrapped record accounts for it.
    Truncated { logged_oldest: Option<u64> },
    /// Records older than the last LogWrapped record's oldest survivor are present.
    WrapMismatch { logged_oldest: u64 },
}

impl fmt::Display for BrokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Geometry => write!(f, "not a log area (size is not whole blocks of whole records)"),
            Self::Damaged(e) => write!(f, "altered or damaged record ({e}), not a torn write"),
            Self::Sequence { expected, found } => write!(f, "sequence number {found}, expected {expected}"),
            Self::Chain => write!(f, "does not chain to the previous record (prev hash)"),
            Self::FirstPrev => write!(f, "first record has a non-zero prev hash"),
            Self::AfterEnd => write!(f, "data after the end of the log"),
            Self::Truncated { logged_oldest: Some(s) } => {
                write!(f, "oldest records missing (last log-wrapped kept #{s} and after)")
            }
            Self::Truncated { logged_oldest: None } => write!(f, "oldest records missing (no log-wrapped record)"),
            Self::WrapMismatch { logged_oldest } => {
                write!(f, "record older than #{logged_oldest}, which the last log-wrapped says is the oldest")
            }
        }
    }
}

/// Where a log is broken: the slot of the offending record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken {
    /// Slot in the log area.
    pub slot: u32,
    /// The record's sequence number, if the slot holds a valid record.
    pub seq: Option<u64>,
    pub reason: BrokenReason,
}

/// The result of [`verify`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Slots in the area.
    pub slots: u32,
    /// Valid records in the log (up to a break).
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Slot of the oldest and of the newest valid record.
    pub first_slot: Option<u32>,
    pub last_slot: Option<u32>,
    /// Boot counts of the oldest and the newest record.
    pub first_boot: Option<u32>,
    pub last_boot: Option<u32>,
    /// Torn slots, acknowledged or not, and the first of them.
    pub torn: u32,
    pub first_torn: Option<u32>,
    /// A torn run at the end of the log, not yet named by a TornRecord `(first, count)`.
    pub torn_at_end: Option<(u32, u32)>,
    /// LogWrapped records in the log.
    pub wraps: u32,
    /// The oldest block was erased by a wrap whose LogWrapped record was cut (the end
    /// of the log; the next boot writes it).
    pub wrap_unlogged: bool,
    pub broken: Option<Broken>,
}

impl Report {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.broken.is_some_and(|b| b.reason == BrokenReason::Geometry) {
            return write!(f, "audit log BROKEN: {}", BrokenReason::Geometry);
        }
        match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => write!(f, "{} records #{a}..=#{b}", self.records)?,
            _ => write!(f, "no records")?,
        }
        write!(f, " in {} slots", self.slots)?;
        if let (Some(a), Some(b)) = (self.first_boot, self.last_boot) {
            write!(f, ", boots {a}..={b}")?;
        }
        if self.first_seq.is_some_and(|s| s > 0) {
            write!(f, ", older records discarded by the ring")?;
        }
        if self.wraps > 0 {
            write!(f, ", {} wrap(s)", self.wraps)?;
        }
        if let Some(t) = self.first_torn {
            write!(f, ", {} torn slot(s) (first: {t})", self.torn)?;
        }
        if let Some((s, n)) = self.torn_at_end {
            write!(f, ", ends with {n} torn slot(s) at {s} (a power cut; the next boot names it)")?;
        }
        if self.wrap_unlogged {
            write!(f, ", ends with an interrupted wrap (the next boot logs it)")?;
        }
        match self.broken {
            None => write!(f, ": chain intact"),
            Some(b) => {
                write!(f, ": BROKEN at slot {}", b.slot)?;
                if let Some(seq) = b.seq {
                    write!(f, " (record #{seq})")?;
                }
                write!(f, ": {}", b.reason)
            }
        }
    }
}

/// Verifies a dump of the log area in QEMU virt's erase blocks ([`BLOCK_SIZE`]).
pub fn verify(log_area: &[u8]) -> Report {
    verify_blocks(log_area, BLOCK_SIZE)
}

/// Verifies a dump of the whole bank (skips the counter blocks), in QEMU virt's blocks.
pub fn verify_bank(bank: &[u8]) -> Report {
    verify_bank_blocks(bank, BLOCK_SIZE)
}

/// [`verify_bank`] for erase blocks of `block_size` bytes.
pub fn verify_bank_blocks(bank: &[u8], block_size: u32) -> Report {
    let skip = LOG_FIRST_BLOCK as usize * block_size as usize;
    verify_blocks(bank.get(skip..).unwrap_or(&[]), block_size)
}

/// Verifies a dump of the log area in erase blocks of `block_size` bytes: every record's
/// self-check, sequence numbers one apart, each `prev` the previous valid record's hash,
/// torn slots only where a power cut can leave them, the ring's LogWrapped accounting,
/// nothing after the end. The first problem in log order is reported, at its slot.
pub fn verify_blocks(log_area: &[u8], block_size: u32) -> Report {
    let mut report = Report::default();
    let Some(geo) = Geometry::new(log_area.len() as u64, block_size) else {
        report.broken = Some(Broken { slot: 0, seq: None, reason: BrokenReason::Geometry });
        return report;
    };
    report.slots = geo.slots();
    let area = SliceArea { bytes: log_area, geo };
    let n = geo.slots();
    let Bounds { run: (run_first, run_len), start, len } = bounds(&area);
    if run_len > 0 {
        report.torn_at_end = Some((run_first, run_len));
    }
    if len > 0 {
        if let Err(b) = walk(&area, start, len, run_len, &mut report) {
            report.broken = Some(b);
            return report;
        }
    }
    if run_len > 0 {
        report.torn += run_len;
        report.first_torn.get_or_insert(run_first);
    }
    // Between the torn run (or the newest record) and the oldest: blank.
    let gap_start = geo.add(run_first, run_len);
    for k in 0..n - run_len - len {
        let s = geo.add(gap_start, k);
        if !ok(area.is_blank(s)) {
            let seq = match ok(area.slot(s)) {
                Slot::Valid(r) => Some(r.seq),
                _ => None,
            };
            report.broken = Some(Broken { slot: s, seq, reason: BrokenReason::AfterEnd });
            break;
        }
    }
    report
}

/// Where the log lies in a dump.
struct Bounds {
    /// The torn run after the newest record (from slot 0 when there is no valid record).
    run: (u32, u32),
    /// The log: `len` slots from `start`, the newest valid record last (0 if none).
    start: u32,
    len: u32,
}

fn bounds(area: &SliceArea<'_>) -> Bounds {
    let g = area.geo;
    let n = g.slots();
    let mut head: Option<(u32, u64)> = None;
    for s in 0..n {
        if let Slot::Valid(r) = ok(area.slot(s)) {
            if head.is_none_or(|(_, seq)| r.seq > seq) {
                head = Some((s, r.seq));
            }
        }
    }
    let run = ok(area.torn_run_after(head.map(|(s, _)| s)));
    let Some((h, _)) = head else { return Bounds { run, start: 0, len: 0 } };
    // Back from the newest record to a blank slot (or to the torn run after it).
    let (mut start, mut len) = (h, 1);
    while len < n - run.1 && !ok(area.is_blank(g.prev(start))) {
        start = g.prev(start);
        len += 1;
    }
    Bounds { run, start, len }
}

/// Checks the log's `len` slots from `start` (the newest record is the last one), then
/// the ring accounting; `tail` torn slots follow the newest record.
fn walk(area: &SliceArea<'_>, start: u32, len: u32, tail: u32, report: &mut Report) -> Result<(), Broken> {
    let g = area.geo;
    let damaged = |slot: u32, e: RecordError| Broken { slot, seq: None, reason: BrokenReason::Damaged(e) };
    let mut last: Option<(u64, Hash)> = None;
    // The current run of invalid slots: first, count, first's and last's error.
    let mut run: Option<(u32, u32, RecordError, RecordError)> = None;
    let mut last_wrap: Option<u64> = None;
    // The newest record that is not a TornRecord.
    let mut last_event_slot: Option<u32> = None;
    let mut s = start;
    for _ in 0..len {
        let r = match ok(area.slot(s)) {
            Slot::Valid(r) => r,
            other => {
                // (Blank is not in the walk, by construction.)
                let e = if let Slot::Invalid(e) = other { e } else { RecordError::BadMagic };
                run = Some(match run {
                    Some((f, c, fe, _)) => (f, c + 1, fe, e),
                    None => (s, 1, e, e),
                });
                s = g.next(s);
                continue;
            }
        };
        if let Some((f, c, fe, le)) = run.take() {
            let named = (r.kind == EventKind::TornRecord as u16).then(|| torn_slots(r.detail));
            match named {
                Some(n) if n == (f, c) => {
                    report.torn += c;
                    report.first_torn.get_or_insert(f);
                }
                // At the start of the log, the ring may have erased the run's beginning.
                Some((nf, nc)) if f == start && nc >= c && g.add(nf, nc) == g.add(f, c) => {
                    report.torn += c;
                    report.first_torn.get_or_insert(f);
                }
                // Names the end of the run only: what comes before it is not torn.
                Some((nf, nc)) if nc < c && g.add(f, c - nc) == nf => return Err(damaged(f, fe)),
                _ => return Err(damaged(g.add(f, c - 1), le)),
            }
        }
        let at = |reason| Broken { slot: s, seq: Some(r.seq), reason };
        match last {
            None if r.seq == 0 && r.prev != ZERO_HASH => return Err(at(BrokenReason::FirstPrev)),
            None => {}
            Some((seq, h)) => {
                let expected = seq.wrapping_add(1);
                if r.seq != expected {
                    return Err(at(BrokenReason::Sequence { expected, found: r.seq }));
                }
                if !hash::equal(&r.prev, &h) {
                    return Err(at(BrokenReason::Chain));
                }
            }
        }
        report.records += 1;
        report.first_seq.get_or_insert(r.seq);
        report.first_slot.get_or_insert(s);
        report.first_boot.get_or_insert(r.boot);
        report.last_seq = Some(r.seq);
        report.last_slot = Some(s);
        report.last_boot = Some(r.boot);
        if r.kind == EventKind::LogWrapped as u16 {
            report.wraps += 1;
            last_wrap = Some(r.detail);
        }
        if r.kind != EventKind::TornRecord as u16 {
            last_event_slot = Some(s);
        }
        last = Some((r.seq, r.self_hash));
        s = g.next(s);
    }
    // The ring: the oldest record must be the one the last LogWrapped names.
    let (Some(first), Some(first_slot)) = (report.first_seq, report.first_slot) else { return Ok(()) };
    let wrong = |reason| Broken { slot: first_slot, seq: Some(first), reason };
    match last_wrap {
        Some(w) if first == w => Ok(()),
        Some(w) if first < w => Err(wrong(BrokenReason::WrapMismatch { logged_oldest: w })),
        None if first == 0 => Ok(()),
        _ => {
            // A wrap cut before its LogWrapped record: acceptable only if nothing but
            // TornRecords was written since the last event, and the log has reached
            // the end of that event's block (where the erase happens).
            let end = g.add(start, len + tail - 1);
            if last_event_slot.is_some_and(|x| g.block_of(x) != g.block_of(end) || g.is_block_end(end)) {
                report.wrap_unlogged = true;
                Ok(())
            } else {
                Err(wrong(BrokenReason::Truncated { logged_oldest: last_wrap }))
            }
        }
    }
}

/// The records of a dump of the log area ([`BLOCK_SIZE`] blocks), in log order (oldest
/// first), with their slots; invalid slots as errors, blank slots skipped.
pub fn records(log_area: &[u8]) -> Records<'_> {
    records_blocks(log_area, BLOCK_SIZE)
}

/// [`records`] for erase blocks of `block_size` bytes. With a geometry [`verify`]
/// refuses, the slots come in address order.
pub fn records_blocks(log_area: &[u8], block_size: u32) -> Records<'_> {
    let slots = (log_area.len() / RECORD_LEN) as u32;
    let start = match Geometry::new(log_area.len() as u64, block_size) {
        Some(geo) => bounds(&SliceArea { bytes: log_area, geo }).start,
        None => 0,
    };
    Records { bytes: log_area, slots, start, done: 0 }
}

/// Iterator of [`records`].
pub struct Records<'a> {
    bytes: &'a [u8],
    slots: u32,
    start: u32,
    done: u32,
}

impl Iterator for Records<'_> {
    type Item = (u32, Result<Record, RecordError>);

    fn next(&mut self) -> Option<Self::Item> {
        while self.done < self.slots {
            let slot = ((u64::from(self.start) + u64::from(self.done)) % u64::from(self.slots)) as u32;
            self.done += 1;
            let at = slot as usize * RECORD_LEN;
            let Some(bytes) = self.bytes.get(at..at + RECORD_LEN).and_then(|b| <&[u8; RECORD_LEN]>::try_from(b).ok())
            else {
                continue;
            };
            match classify(bytes) {
                Slot::Blank => {}
                Slot::Valid(r) => return Some((slot, Ok(r))),
                Slot::Invalid(e) => return Some((slot, Err(e))),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::{CutAfter, RamFlash};
    use std::format;
    use std::vec;
    use std::vec::Vec;

    /// Small blocks: 4 slots each, so that block boundaries and the ring come quickly.
    const BS: u32 = 1024;
    const AREA: usize = 2 * BS as usize;

    fn bank(log_blocks: u32) -> Vec<u8> {
        vec![0xFF; ((LOG_FIRST_BLOCK + log_blocks) * BS) as usize]
    }

    fn event(i: u64) -> Event {
        Event {
            kind: EventKind::Fault,
            partition: (i % 3) as u8,
            result: (i % 2) as u8,
            ticks: 1000 + i,
            detail: i,
            subject: [i as u8; 64],
        }
    }

    fn check(mem: &[u8]) -> Report {
        verify_bank_blocks(mem, BS)
    }

    fn assert_intact(mem: &[u8], what: &str) -> Report {
        let r = check(mem);
        assert!(r.is_intact(), "{what}: {r}");
        r
    }

    /// The valid records in log order.
    fn valid_records(mem: &[u8]) -> Vec<(u32, Record)> {
        records_blocks(&mem[AREA..], BS).filter_map(|(s, r)| r.ok().map(|r| (s, r))).collect()
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn record_layout_and_kinds() {
        use core::mem::offset_of;
        let offsets = [
            offset_of!(Record, format_version),
            offset_of!(Record, kind),
            offset_of!(Record, seq),
            offset_of!(Record, boot),
            offset_of!(Record, partition),
            offset_of!(Record, result),
            offset_of!(Record, ticks),
            offset_of!(Record, detail),
            offset_of!(Record, subject),
            offset_of!(Record, prev),
            offset_of!(Record, _reserved2),
            offset_of!(Record, self_hash),
        ];
        assert_eq!(offsets, [4, 6, 8, 16, 20, 21, 24, 32, 40, 104, 168, 192]);
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(EventKind::from_u16(*k as u16), Some(*k));
            assert!(EventKind::ALL[..i].iter().all(|o| o.name() != k.name()));
        }
        assert_eq!(EventKind::from_u16(0), None);
        assert_eq!(format!("{}", EventKind::TornRecord), "torn-record");
        assert_eq!(torn_slots(torn_detail(17, 1)), (17, 1));
        assert_eq!(torn_detail(17, 1), 17);
        assert_eq!(torn_slots(torn_detail(u32::MAX, 3)), (u32::MAX, 3));
    }

    /// TRUST-007: the export reads a slot exactly as it lies in flash, and nothing
    /// outside the log's ring.
    #[test]
    fn read_slot_exports_records_as_stored() {
        let mut mem = bank(4);
        let mut ram = RamFlash::new(&mut mem, BS).unwrap();
        let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
        for i in 0..3 {
            log.append(&mut ram, &event(i)).unwrap();
        }
        assert_eq!((log.slots(), log.next_slot()), (16, 3));
        let mut slot = [0u8; RECORD_LEN];
        let (first, second) = slot.split_at_mut(RECORD_LEN / 2);
        log.read_slot(&ram, 2, 0, first).unwrap().unwrap();
        log.read_slot(&ram, 2, RECORD_LEN / 2, second).unwrap().unwrap();
        let at = (LOG_FIRST_BLOCK * BS) as usize + 2 * RECORD_LEN;
        assert_eq!(&slot[..], &ram.bytes()[at..at + RECORD_LEN]);
        assert_eq!(Record::parse(&slot).unwrap().seq, 2);
        let mut b = [0u8; 8];
        assert!(log.read_slot(&ram, 16, 0, &mut b).is_none());
        assert!(log.read_slot(&ram, u32::MAX, 0, &mut b).is_none());
        assert!(log.read_slot(&ram, 0, RECORD_LEN - 7, &mut b).is_none());
        assert!(log.read_slot(&ram, 0, usize::MAX, &mut b).is_none());
    }

    #[test]
    fn append_and_reopen_continue_the_chain() {
        let mut mem = bank(8);
        for boot in 1..=3u32 {
            let mut ram = RamFlash::new(&mut mem, BS).unwrap();
            let (mut log, report) = AuditLog::open(&ram, boot).unwrap();
            let before = u64::from(boot - 1) * 5;
            assert_eq!(report.last_seq, before.checked_sub(1));
            assert_eq!((report.next_slot, report.torn, report.wrap_unlogged), (before as u32, None, false));
            for i in 0..5 {
                assert_eq!(log.append(&mut ram, &event(before + i)).unwrap(), before + i);
            }
        }
        let r = assert_intact(&mem, "three boots");
        assert_eq!(
            (r.records, r.first_seq, r.last_seq, r.first_boot, r.last_boot),
            (15, Some(0), Some(14), Some(1), Some(3))
        );
        assert_eq!((r.torn, r.wraps, r.torn_at_end, r.wrap_unlogged), (0, 0, None, false));
        assert!(format!("{r}").ends_with("chain intact"), "{r}");
        let records = valid_records(&mem);
        assert_eq!(records.len(), 15);
        let mut prev = [0; 64];
        for (i, (slot, rec)) in records.iter().enumerate() {
            let e = event(i as u64);
            assert_eq!((*slot, rec.seq, rec.boot), (i as u32, i as u64, i as u32 / 5 + 1));
            assert_eq!((rec.event_kind(), rec.partition, rec.result), (Some(e.kind), e.partition, e.result));
            assert_eq!((rec.ticks, rec.detail, rec.subject, rec.prev), (e.ticks, e.detail, e.subject, prev));
            prev = rec.self_hash;
        }
        // The whole bank in QEMU's geometry, through the default entry points.
        let mut big = vec![0xFF; 4 * BLOCK_SIZE as usize];
        let mut ram = RamFlash::new(&mut big, BLOCK_SIZE).unwrap();
        let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
        for i in 0..3 {
            log.append(&mut ram, &event(i)).unwrap();
        }
        let r = verify_bank(ram.bytes());
        assert!(r.is_intact() && r.records == 3 && r.slots == 2048, "{r}");
        assert_eq!(verify(&ram.bytes()[2 * BLOCK_SIZE as usize..]), r);
        assert_eq!(super::records(&ram.bytes()[2 * BLOCK_SIZE as usize..]).count(), 3);
    }

    #[test]
    fn the_ring_erases_the_oldest_block_and_says_so() {
        let mut mem = bank(3); // 12 slots
        let mut appended = 0u64;
        for boot in 1..=8u32 {
            let mut ram = RamFlash::new(&mut mem, BS).unwrap();
            let (mut log, report) = AuditLog::open(&ram, boot).unwrap();
            assert!(report.torn.is_none() && !report.wrap_unlogged, "boot {boot}: {report}");
            for _ in 0..7 {
                let seq = log.append(&mut ram, &event(appended)).unwrap();
                appended += 1;
                assert_eq!(log.next_seq(), seq + 1);
            }
            let r = assert_intact(ram.bytes(), "ring");
            assert!(r.records <= 12);
        }
        let r = check(&mem);
        assert!(r.wraps > 0 && r.first_seq.unwrap() > 0, "{r}");
        let records = valid_records(&mem);
        // Log order, consecutive, the oldest being the one the last LogWrapped names.
        for w in records.windows(2) {
            assert_eq!(w[1].1.seq, w[0].1.seq + 1);
            assert_eq!(w[1].1.prev, w[0].1.self_hash);
        }
        let last_wrap = records.iter().rev().find(|(_, r)| r.event_kind() == Some(EventKind::LogWrapped)).unwrap();
        assert_eq!(records[0].1.seq, last_wrap.1.detail);
        // Every caller event is there, in order, after the ring's own records.
        let events: Vec<u64> =
            records.iter().filter(|(_, r)| r.kind == EventKind::Fault as u16).map(|(_, r)| r.detail).collect();
        assert_eq!(*events.last().unwrap(), appended - 1);
        assert!(events.windows(2).all(|w| w[1] == w[0] + 1));
    }

    /// A cut at every step of an append, at every position (block boundaries and the
    /// ring included): the dump verifies right after the cut (torn record at the end),
    /// the next boot sees the torn record, appends after it, and the log verifies.
    #[test]
    fn torn_record_at_every_cut_point_of_an_append() {
        for base in 0..30u64 {
            let mut start = bank(3);
            {
                let mut ram = RamFlash::new(&mut start, BS).unwrap();
                let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
                for i in 0..base {
                    log.append(&mut ram, &event(i)).unwrap();
                }
            }
            let steps = {
                let mut mem = start.clone();
                let ram = RamFlash::new(&mut mem, BS).unwrap();
                let (mut log, _) = AuditLog::open(&ram, 2).unwrap();
                let mut counting = CutAfter::never(ram);
                log.append(&mut counting, &event(base)).unwrap();
                counting.steps()
            };
            for n in 1..=steps {
                let what = format!("{base} records, cut at step {n} of {steps}");
                let mut mem = start.clone();
                let mut ram = RamFlash::new(&mut mem, BS).unwrap();
                let (mut log, _) = AuditLog::open(&ram, 2).unwrap();
                let last_before = log.next_seq().checked_sub(1);
                assert_eq!(log.append(&mut CutAfter::new(&mut ram, n), &event(base)), Err(FlashError::PowerCut));
                let after_cut = assert_intact(ram.bytes(), &what);
                let (mut log, report) = AuditLog::open(&ram, 3).unwrap();
                assert!(report.last_seq >= last_before, "{what}: nothing written before is lost");
                if let Some(t) = report.torn {
                    assert_eq!(after_cut.torn_at_end, Some((t, report.torn_count)), "{what}");
                    assert_eq!(report.next_slot, (t + report.torn_count) % 12, "{what}: next append after it");
                }
                let seq = log.append(&mut ram, &Event::new(EventKind::Boot)).unwrap();
                let r = assert_intact(ram.bytes(), &what);
                assert_eq!((r.torn_at_end, r.wrap_unlogged, r.last_seq), (None, false, Some(seq)), "{what}");
                if let Some(t) = report.torn {
                    assert_eq!((r.first_torn, r.torn), (Some(t), 1), "{what}");
                    let named = log_named_torn(ram.bytes());
                    assert_eq!(named, vec![torn_detail(t, 1)], "{what}: one TornRecord, naming it");
                }
            }
        }
    }

    fn log_named_torn(mem: &[u8]) -> Vec<u64> {
        valid_records(mem)
            .iter()
            .filter(|(_, r)| r.event_kind() == Some(EventKind::TornRecord))
            .map(|(_, r)| r.detail)
            .collect()
    }

    #[test]
    fn the_callers_torn_record_is_used_and_an_interrupted_wrap_is_logged() {
        // A torn record acknowledged by the caller's own TornRecord event.
        let mut mem = bank(3);
        let mut ram = RamFlash::new(&mut mem, BS).unwrap();
        let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
        for i in 0..2 {
            log.append(&mut ram, &event(i)).unwrap();
        }
        assert!(log.append(&mut CutAfter::new(&mut ram, 1), &event(2)).is_err());
        let (mut log, report) = AuditLog::open(&ram, 2).unwrap();
        assert_eq!((report.torn, report.torn_count, report.next_slot), (Some(2), 1, 3));
        assert!(format!("{report}").contains("TORN record at slot 2"));
        let torn = Event { detail: 2, result: 1, ..Event::new(EventKind::TornRecord) };
        assert_eq!(log.append(&mut ram, &torn).unwrap(), 2, "the caller's record, not a second one");
        assert_eq!(log.append(&mut ram, &event(3)).unwrap(), 3);
        assert_eq!(log_named_torn(ram.bytes()), vec![2]);
        assert_intact(ram.bytes(), "acknowledged by the caller");

        // Fill the ring to a block end, then cut the erase of the next block: half erased.
        let mut mem = bank(3);
        let mut ram = RamFlash::new(&mut mem, BS).unwrap();
        let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
        for i in 0..12 {
            log.append(&mut ram, &event(i)).unwrap();
        }
        assert_eq!(log.append(&mut CutAfter::new(&mut ram, 1), &event(12)), Err(FlashError::PowerCut));
        assert_eq!(&ram.bytes()[AREA..AREA + 512], &[0xFF; 512][..], "first half of block 0 erased");
        let r = assert_intact(ram.bytes(), "half-erased oldest block");
        assert!(r.wrap_unlogged && r.first_seq == Some(2), "{r}");
        assert!(format!("{r}").contains("interrupted wrap"));
        let (mut log, report) = AuditLog::open(&ram, 2).unwrap();
        assert!(report.wrap_unlogged && report.torn.is_none(), "{report}");
        log.append(&mut ram, &event(12)).unwrap();
        let r = assert_intact(ram.bytes(), "after the next boot");
        assert!(!r.wrap_unlogged && r.first_seq == Some(4) && r.wraps == 1, "{r}");
    }

    /// Several boots, each with a few appends and often a power cut at a random step
    /// (cuts during erases, during the TornRecord and LogWrapped records themselves,
    /// repeatedly): after every boot the dump verifies, nothing acknowledged is lost,
    /// and the chain goes on.
    #[test]
    fn repeated_power_cuts_across_many_boots() {
        for seed in 1..=24u64 {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
            let mut mem = bank(3);
            let mut last_ok: Option<(u64, u64)> = None; // (seq, detail) of the last acknowledged event
            let mut detail = 0u64;
            for boot in 1..=150u32 {
                let what = format!("seed {seed} boot {boot}");
                let mut ram = RamFlash::new(&mut mem, BS).unwrap();
                let (mut log, report) = AuditLog::open(&ram, boot).unwrap();
                if let Some((seq, _)) = last_ok {
                    assert!(report.last_seq >= Some(seq), "{what}");
                }
                let cut = (rng.below(2) == 0).then(|| 1 + rng.below(6) as u32);
                let mut flash = match cut {
                    Some(n) => CutAfter::new(&mut ram, n),
                    None => CutAfter::never(&mut ram),
                };
                for _ in 0..rng.below(6) {
                    detail += 1;
                    match log.append(&mut flash, &event(detail)) {
                        Ok(seq) => {
                            assert!(last_ok.is_none_or(|(s, _)| seq > s), "{what}");
                            last_ok = Some((seq, detail));
                        }
                        Err(FlashError::PowerCut) => break,
                        Err(e) => panic!("{what}: {e}"),
                    }
                }
                let r = assert_intact(flash.inner().bytes(), &what);
                let (seq, d) = last_ok.unwrap_or((0, 0));
                if last_ok.is_some() {
                    assert!(r.last_seq >= Some(seq), "{what}: {r}");
                }
                // Unless the ring has discarded it since (boots writing only TornRecord
                // and LogWrapped records can fill the small ring).
                if last_ok.is_some() && r.first_seq <= Some(seq) {
                    let recs = valid_records(flash.inner().bytes());
                    let found = recs.iter().find(|(_, r)| r.seq == seq).map(|(_, r)| r.detail);
                    assert_eq!(found, Some(d), "{what}: the last acknowledged event is in the log");
                }
            }
        }
    }

    /// One changed byte anywhere in a record (first, middle, a TornRecord, the record
    /// before a torn slot, in a wrapped ring) is reported at exactly that record.
    #[test]
    fn one_byte_edit_is_reported_at_the_edited_record() {
        // Log A: 10 records from slot 0, a torn record at slot 4 named at slot 5.
        let mut a = bank(4);
        {
            let mut ram = RamFlash::new(&mut a, BS).unwrap();
            let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
            for i in 0..4 {
                log.append(&mut ram, &event(i)).unwrap();
            }
            assert!(log.append(&mut CutAfter::new(&mut ram, 1), &event(4)).is_err());
            let (mut log, _) = AuditLog::open(&ram, 2).unwrap();
            for i in 5..10 {
                log.append(&mut ram, &event(i)).unwrap();
            }
        }
        let r = assert_intact(&a, "log A");
        assert_eq!((r.torn, r.first_torn, r.records, r.last_slot), (1, Some(4), 10, Some(10)));
        // Log B: a wrapped ring (the oldest record is not in slot 0).
        let mut b = bank(3);
        {
            let mut ram = RamFlash::new(&mut b, BS).unwrap();
            let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
            for i in 0..17 {
                log.append(&mut ram, &event(i)).unwrap();
            }
        }
        let rb = assert_intact(&b, "log B");
        assert!(rb.first_slot != Some(0) && rb.wraps > 0, "{rb}");
        let oldest = rb.first_slot.unwrap();
        let newest = rb.last_slot.unwrap();
        let cases: [(&[u8], Vec<u32>); 2] = [
            // first, middle, the one before the torn slot, the TornRecord, second to last
            (&a, vec![0, 2, 3, 5, 7, 9]),
            (&b, vec![oldest, (oldest + 1) % 12, (oldest + 5) % 12, (newest + 11) % 12]),
        ];
        let mut tried = 0;
        for (log_bytes, slots) in cases {
            for slot in slots {
                for offset in 0..RECORD_LEN {
                    for flip in [0x01u8, 0x80, 0xFF] {
                        let mut edited = log_bytes.to_vec();
                        edited[AREA + slot as usize * RECORD_LEN + offset] ^= flip;
                        let r = check(&edited);
                        let broken = r.broken.unwrap_or_else(|| panic!("slot {slot} byte {offset}: not detected: {r}"));
                        assert_eq!(broken.slot, slot, "slot {slot} byte {offset} ^{flip:#x}: {r}");
                        assert!(matches!(broken.reason, BrokenReason::Damaged(_)), "{r}");
                        assert!(format!("{r}").contains(&format!("BROKEN at slot {slot}")));
                        tried += 1;
                    }
                }
            }
        }
        assert_eq!(tried, 10 * 256 * 3);
    }

    #[test]
    fn removed_reordered_or_stray_records_are_reported() {
        let mut mem = bank(4);
        {
            let mut ram = RamFlash::new(&mut mem, BS).unwrap();
            let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
            for i in 0..10 {
                log.append(&mut ram, &event(i)).unwrap();
            }
        }
        let at = |s: usize| AREA + s * RECORD_LEN;
        // A middle record erased: the log now seems to start after it, without a wrap.
        let mut m = mem.clone();
        m[at(4)..at(5)].fill(0xFF);
        let r = check(&m);
        assert_eq!(
            r.broken.map(|b| (b.slot, b.reason)),
            Some((5, BrokenReason::Truncated { logged_oldest: None })),
            "{r}"
        );
        // Two records swapped: valid each, but out of sequence.
        let mut m = mem.clone();
        let (r3, r4) = (mem[at(3)..at(4)].to_vec(), mem[at(4)..at(5)].to_vec());
        m[at(3)..at(4)].copy_from_slice(&r4);
        m[at(4)..at(5)].copy_from_slice(&r3);
        let r = check(&m);
        assert_eq!(r.broken.map(|b| (b.slot, b.reason)), Some((3, BrokenReason::Sequence { expected: 3, found: 4 })));
        // A record copied to after the end.
        let mut m = mem.clone();
        m[at(13)..at(14)].copy_from_slice(&r3);
        let r = check(&m);
        assert_eq!(r.broken.map(|b| (b.slot, b.reason)), Some((13, BrokenReason::AfterEnd)), "{r}");
        // A valid record whose prev is wrong (resealed): broken at itself.
        let mut m = mem.clone();
        let mut rec = Record::read_from_bytes(&mem[at(6)..at(7)]).unwrap();
        rec.prev[0] ^= 1;
        rec.self_hash = hash::sha512(&rec.as_bytes()[..CHECKED_LEN]);
        m[at(6)..at(7)].copy_from_slice(rec.as_bytes());
        assert_eq!(check(&m).broken.map(|b| (b.slot, b.reason)), Some((6, BrokenReason::Chain)));
        // Two invalid records in a row: the later one is reported.
        let mut m = mem.clone();
        m[at(6) + 50] ^= 1;
        m[at(7) + 50] ^= 1;
        assert_eq!(check(&m).broken.map(|b| b.slot), Some(7));
        // The last record edited looks like a torn write (the documented limit).
        let mut m = mem.clone();
        m[at(9) + 50] ^= 1;
        let r = check(&m);
        assert!(r.is_intact() && r.torn_at_end == Some((9, 1)), "{r}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(42);
        let mut valid = bank(3);
        {
            let mut ram = RamFlash::new(&mut valid, BS).unwrap();
            let (mut log, _) = AuditLog::open(&ram, 1).unwrap();
            for i in 0..20 {
                log.append(&mut ram, &event(i)).unwrap();
            }
        }
        for round in 0..400 {
            let mut mem = valid.clone();
            match round % 4 {
                // Random bytes everywhere.
                0 => mem[AREA..].iter_mut().for_each(|b| *b = rng.next() as u8),
                // Random records copied around, bytes changed.
                1 => {
                    for _ in 0..4 {
                        let (from, to) = (rng.below(12) as usize, rng.below(12) as usize);
                        let rec = mem[AREA + from * RECORD_LEN..][..RECORD_LEN].to_vec();
                        mem[AREA + to * RECORD_LEN..][..RECORD_LEN].copy_from_slice(&rec);
                        let i = AREA + rng.below(AREA as u64) as usize;
                        mem[i] = rng.next() as u8;
                    }
                }
                // Valid records with wild fields (sealed, so they pass the self-check).
                2 => {
                    for s in 0..12 {
                        if rng.below(3) == 0 {
                            let at = AREA + s * RECORD_LEN;
                            let mut rec = Record::read_from_bytes(&mem[at..at + RECORD_LEN]).unwrap();
                            rec.seq = [u64::MAX, 0, rng.next()][rng.below(3) as usize];
                            rec.detail = rng.next();
                            rec.kind = [EventKind::TornRecord, EventKind::LogWrapped, EventKind::Boot]
                                [rng.below(3) as usize] as u16;
                            rec.magic = LOG_MAGIC;
                            rec.format_version = LOG_FORMAT_VERSION;
                            rec._reserved = 0;
                            rec._reserved2 = [0; 24];
                            rec.self_hash = hash::sha512(&rec.as_bytes()[..CHECKED_LEN]);
                            mem[at..at + RECORD_LEN].copy_from_slice(rec.as_bytes());
                        }
                    }
                }
                // Whole blocks of garbage or blank.
                _ => {
                    let b = rng.below(3) as usize;
                    let fill = if rng.below(2) == 0 { 0xFF } else { rng.next() as u8 };
                    mem[AREA + b * BS as usize..][..BS as usize].fill(fill);
                }
            }
            let _ = format!("{}", check(&mem));
            let _ = records_blocks(&mem[AREA..], BS).count();
            let mut ram = RamFlash::new(&mut mem, BS).unwrap();
            let (mut log, report) = AuditLog::open(&ram, 9).unwrap();
            let _ = format!("{report}");
            for i in 0..6 {
                let _ = log.append(&mut ram, &event(i));
            }
            let _ = check(ram.bytes());
        }
        // Odd sizes.
        for len in [0usize, 1, 255, 256, 1024, 1025, 2048, 4096 + 256] {
            let v = vec![0u8; len];
            assert_eq!(check(&v).broken.map(|b| b.reason), Some(BrokenReason::Geometry), "{len}");
            let _ = records(&v).count();
            let _ = format!("{}", verify(&v));
        }
    }

    #[test]
    fn geometry_is_checked() {
        let mut mem = vec![0xFF; 3 * BS as usize]; // one log block: no ring possible
        let ram = RamFlash::new(&mut mem, BS).unwrap();
        assert_eq!(AuditLog::open(&ram, 1).err(), Some(FlashError::OutOfRange));
        let mut mem = vec![0xFF; 8 * 512]; // blocks of two slots
        let ram = RamFlash::new(&mut mem, 512).unwrap();
        assert_eq!(AuditLog::open(&ram, 1).err(), Some(FlashError::OutOfRange));
        let mut mem = vec![0xFF; 8 * 1000]; // blocks not a whole number of slots
        let ram = RamFlash::new(&mut mem, 1000).unwrap();
        assert_eq!(AuditLog::open(&ram, 1).err(), Some(FlashError::OutOfRange));
    }
}

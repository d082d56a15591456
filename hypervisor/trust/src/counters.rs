//! Anti-rollback counters: the values the hypervisor has accepted and will never go
//! below. [`Floors`] is the data; storing it in flash (two copies, sequence number,
//! checksum) is below.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{MAX_ROLES, NAME_LEN};

/// One partition's floors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct PartitionFloor {
    /// The partition (release role) name; all zero for an unused entry.
    pub name: [u8; NAME_LEN],
    /// Keys of this role with a lower `key_version` are revoked.
    pub min_key_version: u32,
    pub _reserved: u32,
    /// Manifests with a lower security counter are refused.
    pub security_counter: u64,
}

/// Everything the hypervisor must never forget across resets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Floors {
    /// Highest root document version accepted.
    pub root_version: u32,
    /// Root keys with a lower `key_version` are revoked.
    pub root_min_key_version: u32,
    /// Boots so far (the audit log stamps records with it).
    pub boot_count: u32,
    pub _reserved: u32,
    pub partitions: [PartitionFloor; MAX_ROLES],
}

const _: () = assert!(size_of::<PartitionFloor>() == 40 && size_of::<Floors>() == 16 + 40 * MAX_ROLES);

// ---------------------------------------------------------------------------------------
// Storage: two copies in flash blocks 0 and 1 (crate::flash::COUNTER_BLOCKS).
//
// Each copy is one `CounterRecord` at the start of its block. `store` always writes the
// copy that does NOT hold the newest value: erase that block, then program the record
// with the sequence number one higher. The newest copy is never touched, so a power cut
// at any step leaves it readable: the copy being written is then erased, half erased or
// partly programmed, and its checksum (SHA-512 of everything before it, placed last)
// does not match. `open` takes the valid copy with the higher sequence number. So after
// a cut, `open` finds either the old value (the new copy is incomplete) or the new one
// (it is complete) -- never anything lower than the old value.
//
// A power cut can leave at most one copy invalid. Two invalid copies mean tampering or a
// failing device; `OpenReport::lost` tells that apart from a first boot so the
// hypervisor can refuse to treat it as one.
// ---------------------------------------------------------------------------------------

use core::fmt;

use crate::flash::{Flash, FlashError, COUNTER_BLOCKS, READBACK_MISMATCH};
use crate::hash;

pub const COUNTER_MAGIC: [u8; 8] = *b"SEPTCNTR";
/// Version of [`CounterRecord`].
pub const COUNTER_FORMAT_VERSION: u32 = 1;
/// Bytes of the checksum (SHA-512 truncated).
pub const COUNTER_CHECKSUM_LEN: usize = 32;

/// One copy of the counters as it lies in flash, at offset 0 of its block.
///
/// | offset | bytes | field |
/// |--------|-------|-------|
/// | 0      | 8     | `magic` = `SEPTCNTR` |
/// | 8      | 4     | `format_version` = 1 |
/// | 12     | 4     | `_reserved` (0) |
/// | 16     | 8     | `seq` |
/// | 24     | 336   | `floors` ([`Floors`]) |
/// | 360    | 32    | `checksum`: SHA-512 of bytes 0..360, first 32 bytes |
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct CounterRecord {
    pub magic: [u8; 8],
    pub format_version: u32,
    pub _reserved: u32,
    /// Incremented by every store; the valid copy with the higher one is the newest.
    pub seq: u64,
    pub floors: Floors,
    /// Placed last, so that a partly programmed record cannot look valid.
    pub checksum: [u8; COUNTER_CHECKSUM_LEN],
}

const COUNTER_RECORD_LEN: usize = size_of::<CounterRecord>();
const COUNTER_CHECKED_LEN: usize = COUNTER_RECORD_LEN - COUNTER_CHECKSUM_LEN;
const _: () = assert!(COUNTER_RECORD_LEN == 392 && COUNTER_RECORD_LEN.is_multiple_of(8) && COUNTER_CHECKED_LEN == 360);

impl CounterRecord {
    /// A complete record (checksum computed).
    pub fn new(seq: u64, floors: &Floors) -> Self {
        let mut r = Self {
            magic: COUNTER_MAGIC,
            format_version: COUNTER_FORMAT_VERSION,
            _reserved: 0,
            seq,
            floors: *floors,
            checksum: [0; COUNTER_CHECKSUM_LEN],
        };
        r.checksum = r.expected_checksum();
        r
    }

    fn expected_checksum(&self) -> [u8; COUNTER_CHECKSUM_LEN] {
        let full = hash::sha512(&self.as_bytes()[..COUNTER_CHECKED_LEN]);
        let mut out = [0; COUNTER_CHECKSUM_LEN];
        out.copy_from_slice(&full[..COUNTER_CHECKSUM_LEN]);
        out
    }

    /// What a copy's bytes are.
    pub fn classify(bytes: &[u8; COUNTER_RECORD_LEN]) -> (CopyState, Option<Self>) {
        if bytes.iter().all(|&b| b == 0xFF) {
            return (CopyState::Empty, None);
        }
        let Ok(r) = Self::read_from_bytes(bytes) else { return (CopyState::Invalid, None) };
        let sum_ok = r.checksum == r.expected_checksum();
        if r.magic != COUNTER_MAGIC || r.format_version != COUNTER_FORMAT_VERSION || r._reserved != 0 || !sum_ok {
            return (CopyState::Invalid, None);
        }
        (CopyState::Valid { seq: r.seq }, Some(r))
    }
}

/// What `open` found in one copy's block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyState {
    /// Erased (all `0xFF`): never written, or erased by a store that was cut.
    Empty,
    /// A complete record with a good checksum.
    Valid { seq: u64 },
    /// Anything else: a torn (partly programmed or half-erased) record, or damage.
    Invalid,
}

/// What [`CounterStore::open`] found, for the hypervisor to print and log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The state of copy 0 and copy 1.
    pub copies: [CopyState; 2],
    /// The copy in use, `None` when no copy is valid.
    pub current: Option<u8>,
}

impl OpenReport {
    /// No valid copy: the floors are the defaults (zero).
    pub fn first_boot(&self) -> bool {
        self.current.is_none()
    }

    /// Both blocks erased: a genuinely new bank.
    pub fn blank(&self) -> bool {
        self.copies == [CopyState::Empty; 2]
    }

    /// Both copies invalid: the counters are lost (tampering or a failing device; no
    /// power cut can cause it). One invalid copy next to an erased one, with no valid
    /// copy, is what a cut during the very first store leaves: a first boot.
    pub fn lost(&self) -> bool {
        self.copies == [CopyState::Invalid; 2]
    }

    /// Some copy is invalid (a store was cut, or damage): worth an audit record.
    pub fn torn(&self) -> bool {
        self.copies.contains(&CopyState::Invalid)
    }
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.blank() {
            return write!(f, "blank (first boot)");
        }
        match self.current {
            Some(c) => write!(f, "copy {c}")?,
            None if self.lost() => write!(f, "LOST (no valid copy, defaults used)")?,
            None => write!(f, "first boot (no valid copy)")?,
        }
        for (i, s) in self.copies.iter().enumerate() {
            match s {
                CopyState::Empty => write!(f, ", copy {i} erased")?,
                CopyState::Valid { seq } => write!(f, ", copy {i} seq {seq}")?,
                CopyState::Invalid => write!(f, ", copy {i} INVALID (torn)")?,
            }
        }
        Ok(())
    }
}

/// The anti-rollback counters in flash (two copies).
#[derive(Clone, Debug)]
pub struct CounterStore {
    current: Floors,
    seq: u64,
    /// Which copy holds the newest value (the next store writes the other one).
    copy: u8,
}

impl CounterStore {
    /// Reads both copies and takes the newest valid one; with no valid copy, the
    /// defaults (first boot), the report saying whether the bank was blank.
    pub fn open(flash: &impl Flash) -> Result<(Self, OpenReport), FlashError> {
        check_geometry(flash)?;
        let mut copies = [CopyState::Empty; 2];
        let mut best: Option<(u8, CounterRecord)> = None;
        for (i, &block) in COUNTER_BLOCKS.iter().enumerate() {
            let mut bytes = [0u8; COUNTER_RECORD_LEN];
            flash.read(block * flash.block_size(), &mut bytes)?;
            let (state, record) = CounterRecord::classify(&bytes);
            copies[i] = state;
            if let Some(r) = record {
                if best.as_ref().is_none_or(|(_, b)| r.seq > b.seq) {
                    best = Some((i as u8, r));
                }
            }
        }
        let report = OpenReport { copies, current: best.as_ref().map(|(i, _)| *i) };
        let store = match best {
            Some((copy, r)) => Self { current: r.floors, seq: r.seq, copy },
            // The first store then goes to copy 0, with sequence number 1.
            None => Self { current: Floors::default(), seq: 0, copy: 1 },
        };
        Ok((store, report))
    }

    /// The floors in force.
    pub fn floors(&self) -> &Floors {
        &self.current
    }

    /// The sequence number of the newest copy (0 before the first store).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Writes `new` into the other copy (erase, program, read back); on success it is
    /// the current one. On error nothing changes here, and flash still holds the
    /// previous value (see the module's storage notes). It stores what it is given:
    /// never lowering a floor is the caller's rule (`verify::raise_floors`).
    pub fn store(&mut self, flash: &mut impl Flash, new: &Floors) -> Result<(), FlashError> {
        check_geometry(flash)?;
        // 2^64 stores cannot happen (NOR endures ~10^5 erases); refuse rather than wrap.
        let seq = self.seq.checked_add(1).ok_or(FlashError::OutOfRange)?;
        let target = 1 - (self.copy & 1);
        let block = COUNTER_BLOCKS[target as usize];
        let record = CounterRecord::new(seq, new);
        flash.erase(block)?;
        let offset = block * flash.block_size();
        flash.program(offset, record.as_bytes())?;
        let mut back = [0u8; COUNTER_RECORD_LEN];
        flash.read(offset, &mut back)?;
        if back != record.as_bytes() {
            return Err(FlashError::Device(READBACK_MISMATCH));
        }
        *self = Self { current: *new, seq, copy: target };
        Ok(())
    }
}

/// The bank must hold the two counter blocks, each big enough for a record.
fn check_geometry(flash: &impl Flash) -> Result<(), FlashError> {
    let block = flash.block_size();
    let blocks = flash.size().checked_div(block).unwrap_or(0);
    if (block as usize) < COUNTER_RECORD_LEN || blocks < COUNTER_BLOCKS.len() as u32 {
        return Err(FlashError::OutOfRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::{CutAfter, RamFlash};
    use std::vec;
    use std::vec::Vec;

    const BS: u32 = 1024;

    fn floors(n: u32) -> Floors {
        let mut f = Floors { root_version: n, root_min_key_version: n / 2, boot_count: n, ..Floors::default() };
        f.partitions[0].name[..4].copy_from_slice(b"crit");
        f.partitions[0].security_counter = u64::from(n) * 10;
        f.partitions[7].min_key_version = n;
        f
    }

    fn blank_bank() -> Vec<u8> {
        vec![0xFF; 4 * BS as usize]
    }

    #[test]
    fn record_layout() {
        assert_eq!(core::mem::offset_of!(CounterRecord, seq), 16);
        assert_eq!(core::mem::offset_of!(CounterRecord, floors), 24);
        assert_eq!(core::mem::offset_of!(CounterRecord, checksum), 360);
        let r = CounterRecord::new(7, &floors(3));
        assert_eq!(&r.as_bytes()[..8], b"SEPTCNTR");
        assert_eq!(CounterRecord::classify(r.as_bytes().try_into().unwrap()), (CopyState::Valid { seq: 7 }, Some(r)));
    }

    #[test]
    fn first_boot_on_a_blank_bank() {
        let mut mem = blank_bank();
        let ram = RamFlash::new(&mut mem, BS).unwrap();
        let (store, report) = CounterStore::open(&ram).unwrap();
        assert_eq!(store.floors(), &Floors::default());
        assert_eq!(store.seq(), 0);
        assert!(report.first_boot() && report.blank() && !report.lost() && !report.torn());
        assert_eq!(std::format!("{report}"), "blank (first boot)");
    }

    #[test]
    fn store_and_open_round_trip_alternating_copies() {
        let mut mem = blank_bank();
        let mut ram = RamFlash::new(&mut mem, BS).unwrap();
        let (mut store, _) = CounterStore::open(&ram).unwrap();
        for n in 1..=6u32 {
            store.store(&mut ram, &floors(n)).unwrap();
            assert_eq!(store.floors(), &floors(n));
            let (reopened, report) = CounterStore::open(&ram).unwrap();
            assert_eq!((reopened.floors(), reopened.seq()), (&floors(n), u64::from(n)));
            // The first store goes to copy 0, then they alternate.
            let copy = ((n - 1) % 2) as u8;
            assert_eq!(report.current, Some(copy));
            assert_eq!(report.copies[copy as usize], CopyState::Valid { seq: u64::from(n) });
            if n > 1 {
                assert_eq!(report.copies[1 - copy as usize], CopyState::Valid { seq: u64::from(n - 1) });
            }
            assert!(!report.first_boot() && !report.torn());
            store = reopened;
        }
        // Beyond the record, the blocks stay erased; block 2.. is untouched.
        assert!(ram.bytes()[COUNTER_RECORD_LEN..BS as usize].iter().all(|&b| b == 0xFF));
        assert!(ram.bytes()[2 * BS as usize..].iter().all(|&b| b == 0xFF));
    }

    /// A cut at every step of a store, from every starting state (blank bank, one copy,
    /// two copies): open() gives the old or the new floors, never an error or less.
    #[test]
    fn power_cut_at_every_step_of_a_store() {
        for before in 0..4u32 {
            let mut base = blank_bank();
            {
                let mut ram = RamFlash::new(&mut base, BS).unwrap();
                let (mut store, _) = CounterStore::open(&ram).unwrap();
                for n in 1..=before {
                    store.store(&mut ram, &floors(n)).unwrap();
                }
            }
            let old = if before == 0 { Floors::default() } else { floors(before) };
            let new = floors(before + 1);
            let steps = {
                let mut mem = base.clone();
                let ram = RamFlash::new(&mut mem, BS).unwrap();
                let (mut store, _) = CounterStore::open(&ram).unwrap();
                let mut counting = CutAfter::never(ram);
                store.store(&mut counting, &new).unwrap();
                counting.steps()
            };
            assert_eq!(steps, 2, "erase, program");
            for n in 1..=steps + 1 {
                let mut mem = base.clone();
                let mut ram = RamFlash::new(&mut mem, BS).unwrap();
                let (mut store, _) = CounterStore::open(&ram).unwrap();
                let result = store.store(&mut CutAfter::new(&mut ram, n), &new);
                if n <= steps {
                    assert_eq!(result, Err(FlashError::PowerCut));
                    assert_eq!(store.floors(), &old, "a failed store changes nothing");
                } else {
                    result.unwrap();
                }
                let (reopened, report) = CounterStore::open(&ram).unwrap();
                let got = *reopened.floors();
                assert!(got == old || got == new, "before {before}, cut {n}: {got:?}");
                if n > steps {
                    assert_eq!(got, new);
                }
                assert!(!report.lost(), "a power cut never loses both copies");
                assert!(report.copies.iter().filter(|c| **c == CopyState::Invalid).count() <= 1);
                // The next store works and wins.
                let mut store = reopened;
                store.store(&mut ram, &floors(100)).unwrap();
                assert_eq!(CounterStore::open(&ram).unwrap().0.floors(), &floors(100));
            }
        }
    }

    #[test]
    fn damaged_copies_are_ignored_and_reported() {
        let mut mem = blank_bank();
        let mut ram = RamFlash::new(&mut mem, BS).unwrap();
        let (mut store, _) = CounterStore::open(&ram).unwrap();
        store.store(&mut ram, &floors(1)).unwrap();
        store.store(&mut ram, &floors(2)).unwrap(); // copy 1 is the newest
        for at in [0usize, 9, 16, 100, 359, 360, 391] {
            let mut damaged = ram.bytes().to_vec();
            damaged[BS as usize + at] ^= 0x01;
            let f = RamFlash::new(&mut damaged, BS).unwrap();
            let (s, report) = CounterStore::open(&f).unwrap();
            assert_eq!(s.floors(), &floors(1), "byte {at}: falls back to the older copy");
            assert_eq!(report.copies, [CopyState::Valid { seq: 1 }, CopyState::Invalid]);
            assert!(report.torn() && !report.lost());
        }
        // Both damaged: lost, defaults, and said so.
        let mut damaged = ram.bytes().to_vec();
        damaged[3] ^= 0x80;
        damaged[BS as usize + 200] ^= 0x80;
        let f = RamFlash::new(&mut damaged, BS).unwrap();
        let (s, report) = CounterStore::open(&f).unwrap();
        assert_eq!(s.floors(), &Floors::default());
        assert!(report.lost() && report.first_boot() && !report.blank());
        assert!(std::format!("{report}").contains("LOST"));
        // Garbage anywhere never panics.
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..200 {
            let mut g = blank_bank();
            for b in g[..2 * BS as usize].iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let f = RamFlash::new(&mut g, BS).unwrap();
            let (s, _) = CounterStore::open(&f).unwrap();
            assert_eq!(s.floors(), &Floors::default());
        }
    }

    #[test]
    fn too_small_a_bank_is_refused() {
        let mut mem = vec![0xFF; BS as usize];
        let mut ram = RamFlash::new(&mut mem, BS).unwrap();
        assert_eq!(CounterStore::open(&ram).err(), Some(FlashError::OutOfRange));
        let mut store = CounterStore { current: Floors::default(), seq: 0, copy: 1 };
        assert_eq!(store.store(&mut ram, &floors(1)), Err(FlashError::OutOfRange));
        let mut tiny = vec![0xFF; 4 * 256];
        let ram = RamFlash::new(&mut tiny, 256).unwrap();
        assert_eq!(CounterStore::open(&ram).err(), Some(FlashError::OutOfRange), "record does not fit a block");
    }
}

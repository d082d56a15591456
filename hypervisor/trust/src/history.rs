//! Where an audit log's history begins, and whether a later dump of the log continues an
//! earlier one.
//!
//! The hash chain ([`crate::audit::verify`]) shows any record edited or removed from
//! inside the log; it cannot show a log that was wiped and started again. Erase the bank
//! and the next boot writes record #0 of boot #1 afresh, a chain as intact as any, and
//! with the counters gone an old release passes the anti-rollback check. Only storage
//! the attacker cannot rewrite (RPMB, OTP fuses, a TPM's NV counters) prevents that; on
//! plain flash it can at least be made visible:
//!
//! * by the dump alone ([`of_log`]): its [`Origin`] (a log that starts at record #0 of
//!   boot #1 is a new or erased bank, and is said so), and a boot count that falls from
//!   one record to the next ([`BootFell`]: the counters were lost or erased while the
//!   log was kept);
//! * against an earlier dump, or the [`Head`] noted from one ([`continuity`]): a later
//!   log continues it only if it holds the same record at the same sequence number.
//!
//! The limit: once the ring has discarded the earlier head, the link can no longer be
//! checked ([`Continuity::Discarded`]), and whoever erased the bank could boot it often
//! enough to get there (some 260 000 records on QEMU virt's bank). Comparing dumps often
//! enough, or storage that cannot be rolled back, closes that.

use core::fmt;

use crate::audit::{records_blocks, Record};
use crate::flash::{BLOCK_SIZE, LOG_FIRST_BLOCK};
use crate::hash::{self, Hash};

/// A log's newest record, as noted from a dump: what a later dump must still hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    /// Its `self_hash`, which every later record's chain runs through.
    pub hash: Hash,
    /// Its boot count, if known (a dump gives it; a noted `SEQ:HASH` does not).
    pub boot: Option<u32>,
}

impl From<&Record> for Head {
    fn from(r: &Record) -> Self {
        Self { seq: r.seq, hash: r.self_hash, boot: Some(r.boot) }
    }
}

/// Where the history a log holds begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// No records.
    Empty,
    /// The first record ever written to this log (#0), in boot `boot`: boot 1 on a new
    /// or erased bank; a later boot when earlier boots left no record (cut short before
    /// their first record, or the log area erased while the counters were kept).
    Start { boot: u32 },
    /// Older records were discarded by the ring; the oldest kept is #`oldest`.
    Wrapped { oldest: u64, boot: u32 },
}

/// A boot count lower than the record's before it: the counters (and with them the
/// anti-rollback floors) were lost or erased, while the log was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootFell {
    /// The first record with the lower boot count.
    pub seq: u64,
    pub from: u32,
    pub to: u32,
}

/// What one dump shows of its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    pub origin: Origin,
    /// The newest valid record; `None` for an empty log.
    pub head: Option<Head>,
    /// The first place the boot count fell, if it did.
    pub boot_fell: Option<BootFell>,
}

impl History {
    /// The history restarted within the dump itself.
    pub fn restarted(&self) -> bool {
        self.boot_fell.is_some()
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Empty => write!(f, "no history: the log is empty (a new or erased bank)")?,
            Origin::Start { boot: 1 } => {
                write!(f, "history begins at boot #1 on this bank (record #0), when it was new or erased")?
            }
            Origin::Start { boot } => write!(
                f,
                "history begins at boot #{boot} on this bank (record #0): earlier boots left no record \
                 (cut short, or the log erased while the counters were kept)"
            )?,
            Origin::Wrapped { oldest, boot } => write!(
                f,
                "history kept from record #{oldest} (boot #{boot}); older records were discarded by the ring"
            )?,
        }
        if let Some(b) = self.boot_fell {
            write!(
                f,
                "; HISTORY RESTARTED at record #{}: the boot count fell from {} to {} (the counters were \
                 reset, and with them the anti-rollback floors)",
                b.seq, b.from, b.to
            )?;
        }
        Ok(())
    }
}

/// The history a dump of the log area shows (erase blocks of `block_size` bytes).
/// Reads valid records only: whether the chain holds is [`crate::audit::verify`]'s to say.
pub fn of_log(log_area: &[u8], block_size: u32) -> History {
    let mut out = History { origin: Origin::Empty, head: None, boot_fell: None };
    let mut previous: Option<Record> = None;
    for (_, r) in records_blocks(log_area, block_size) {
        let Ok(r) = r else { continue };
        match &previous {
            None => {
                out.origin = if r.seq == 0 {
                    Origin::Start { boot: r.boot }
                } else {
                    Origin::Wrapped { oldest: r.seq, boot: r.boot }
                };
            }
            Some(p) if r.boot < p.boot && out.boot_fell.is_none() => {
                out.boot_fell = Some(BootFell { seq: r.seq, from: p.boot, to: r.boot });
            }
            Some(_) => {}
        }
        previous = Some(r);
    }
    out.head = previous.as_ref().map(Head::from);
    out
}

/// [`of_log`] for a dump of the whole bank in QEMU virt's erase blocks.
pub fn of_bank(bank: &[u8]) -> History {
    of_log(log_area(bank, BLOCK_SIZE), BLOCK_SIZE)
}

/// The log area of a bank dump with erase blocks of `block_size` bytes.
pub fn log_area(bank: &[u8], block_size: u32) -> &[u8] {
    bank.get(LOG_FIRST_BLOCK as usize * block_size as usize..).unwrap_or(&[])
}

/// How a later log relates to an earlier head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Continuity {
    /// The later log holds the earlier head, same hash: it extends it by `newer` records.
    Extends { newer: u64 },
    /// The earlier head is older than the later log's oldest record (#`oldest`): the ring
    /// discarded it, so the link cannot be checked. Nothing contradicts it.
    Discarded { oldest: u64 },
    /// The later log does not continue the earlier one.
    Restarted(Restart),
}

/// Why a later log does not continue an earlier head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// The later log has no records at all.
    Empty,
    /// The later log ends before the earlier head's sequence number.
    SeqFell { head: u64, last: u64 },
    /// The record at the earlier head's sequence number is another record.
    Diverged { seq: u64 },
    /// The sequence number is within the later log, but no valid record has it.
    Missing { seq: u64 },
    /// The later log's newest boot count is below the earlier head's.
    BootFell { was: u32, now: u32 },
}

impl fmt::Display for Continuity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Extends { newer } => write!(f, "continues the earlier log ({newer} newer records)"),
            Self::Discarded { oldest } => write!(
                f,
                "the earlier head is no longer in the log (its oldest record is #{oldest}: the ring discarded \
                 it), so continuity cannot be checked"
            ),
            Self::Restarted(r) => write!(f, "HISTORY RESTARTED: {r}"),
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "the log is empty; the earlier one was not"),
            Self::SeqFell { head, last } => {
                write!(f, "the log ends at record #{last}, before the earlier head #{head}")
            }
            Self::Diverged { seq } => {
                write!(f, "record #{seq} is not the earlier head #{seq}: another history was written")
            }
            Self::Missing { seq } => write!(f, "no valid record #{seq}, the earlier head"),
            Self::BootFell { was, now } => write!(f, "the boot count fell from {was} to {now}"),
        }
    }
}

impl Continuity {
    pub fn restarted(&self) -> bool {
        matches!(self, Self::Restarted(_))
    }
}

/// Whether the log in `later_area` (blocks of `block_size`) continues `earlier`.
pub fn continuity(earlier: &Head, later_area: &[u8], block_size: u32) -> Continuity {
    let later = of_log(later_area, block_size);
    let Some(head) = later.head else { return Continuity::Restarted(Restart::Empty) };
    if let (Some(was), Some(now)) = (earlier.boot, head.boot) {
        if now < was {
            return Continuity::Restarted(Restart::BootFell { was, now });
        }
    }
    if head.seq < earlier.seq {
        return Continuity::Restarted(Restart::SeqFell { head: earlier.seq, last: head.seq });
    }
    let oldest = match later.origin {
        Origin::Wrapped { oldest, .. } => oldest,
        _ => 0,
    };
    if earlier.seq < oldest {
        return Continuity::Discarded { oldest };
    }
    let found = records_blocks(later_area, block_size).find_map(|(_, r)| r.ok().filter(|r| r.seq == earlier.seq));
    match found {
        Some(r) if hash::equal(&r.self_hash, &earlier.hash) => Continuity::Extends { newer: head.seq - earlier.seq },
        Some(_) => Continuity::Restarted(Restart::Diverged { seq: earlier.seq }),
        None => Continuity::Restarted(Restart::Missing { seq: earlier.seq }),
    }
}

#[cfg(test)]
mod tests;

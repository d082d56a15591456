//! Boots simulated on a RAM bank as the hypervisor makes them (a Boot record with the
//! boot count, then events), with the bank erased, the counters reset, or the ring
//! wrapped in between.

use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::audit::{self, AuditLog, Event, EventKind};
use crate::flash::RamFlash;

/// Small erase blocks (4 slots each), so that the ring wraps quickly.
const BS: u32 = 1024;
const LOG_BLOCKS: u32 = 4;

fn bank() -> Vec<u8> {
    vec![0xFF; ((LOG_FIRST_BLOCK + LOG_BLOCKS) * BS) as usize]
}

/// One boot numbered `boot` (as the counters say): its Boot record and `events` more.
fn boot(mem: &mut [u8], boot: u32, events: u64) {
    let mut ram = RamFlash::new(mem, BS).unwrap();
    let (mut log, _) = AuditLog::open(&ram, boot).unwrap();
    log.append(&mut ram, &Event { detail: u64::from(boot), ..Event::new(EventKind::Boot) }).unwrap();
    for i in 0..events {
        log.append(&mut ram, &Event { detail: i, ..Event::new(EventKind::ImageVerified) }).unwrap();
    }
}

fn history(mem: &[u8]) -> History {
    of_log(log_area(mem, BS), BS)
}

fn continues(earlier: &[u8], later: &[u8]) -> Continuity {
    let head = history(earlier).head.expect("the earlier log has records");
    continuity(&head, log_area(later, BS), BS)
}

/// TRUST-010: a new bank's log says its history begins at record #0 of boot #1, and
/// its head is its newest record.
#[test]
fn a_new_bank_says_its_history_begins_at_boot_1() {
    let mut mem = bank();
    assert_eq!(history(&mem), History { origin: Origin::Empty, head: None, boot_fell: None });
    assert!(history(&mem).to_string().contains("empty"));
    boot(&mut mem, 1, 2);
    let h = history(&mem);
    assert_eq!(h.origin, Origin::Start { boot: 1 });
    let newest = audit::records_blocks(log_area(&mem, BS), BS).last().unwrap().1.unwrap();
    assert_eq!(h.head, Some(Head { seq: 2, hash: newest.self_hash, boot: Some(1) }));
    assert!(!h.restarted());
    assert_eq!(h.to_string(), "history begins at boot #1 on this bank (record #0), when it was new or erased");
}

/// TRUST-010: later boots on the same bank extend the earlier log; the same dump
/// continues itself with no newer records.
#[test]
fn later_boots_continue_the_earlier_log() {
    let mut mem = bank();
    for n in 1..=2 {
        boot(&mut mem, n, 1);
    }
    let earlier = mem.clone();
    boot(&mut mem, 3, 1);
    assert_eq!(continues(&earlier, &mem), Continuity::Extends { newer: 2 });
    assert_eq!(continues(&earlier, &earlier), Continuity::Extends { newer: 0 });
    assert!(!continues(&earlier, &mem).restarted());
    assert_eq!(history(&mem).origin, Origin::Start { boot: 1 });
}

/// TRUST-010: after five boots the bank is erased and the device boots again: the new
/// log verifies intact, says its history begins at boot #1, and against the earlier
/// dump it is a restart: the boot count fell; with only `SEQ:HASH` noted (no boot
/// count), the sequence fell; once enough boots pass the old head, another record
/// stands at its number.
#[test]
fn an_erased_bank_is_a_restarted_history() {
    let mut mem = bank();
    for n in 1..=5 {
        boot(&mut mem, n, 0);
    }
    let earlier = mem.clone();
    let head = history(&earlier).head.unwrap();
    assert_eq!((head.seq, head.boot), (4, Some(5)));

    let mut erased = bank();
    boot(&mut erased, 1, 1);
    assert!(audit::verify_blocks(log_area(&erased, BS), BS).is_intact(), "the chain alone sees nothing");
    assert_eq!(history(&erased).origin, Origin::Start { boot: 1 });
    assert_eq!(continues(&earlier, &erased), Continuity::Restarted(Restart::BootFell { was: 5, now: 1 }));
    let noted = Head { boot: None, ..head };
    let found = continuity(&noted, log_area(&erased, BS), BS);
    assert_eq!(found, Continuity::Restarted(Restart::SeqFell { head: 4, last: 1 }));
    assert!(found.to_string().starts_with("HISTORY RESTARTED: "), "{found}");

    boot(&mut erased, 2, 3);
    assert_eq!(continuity(&noted, log_area(&erased, BS), BS), Continuity::Restarted(Restart::Diverged { seq: 4 }));
    assert_eq!(continuity(&noted, log_area(&bank(), BS), BS), Continuity::Restarted(Restart::Empty));
}

/// TRUST-010: counters erased while the log is kept: the boot count falls from one
/// record to the next, and the dump alone reports the restart.
#[test]
fn a_boot_count_that_falls_within_the_log_is_a_restart() {
    let mut mem = bank();
    for n in 1..=3 {
        boot(&mut mem, n, 0);
    }
    assert_eq!(history(&mem).boot_fell, None);
    boot(&mut mem, 1, 0);
    boot(&mut mem, 2, 0);
    let h = history(&mem);
    assert_eq!(h.boot_fell, Some(BootFell { seq: 3, from: 3, to: 1 }));
    assert!(h.restarted());
    assert!(h.to_string().contains("HISTORY RESTARTED at record #3: the boot count fell from 3 to 1"), "{h}");
    // A log whose first boots left no record says so, without calling it a restart.
    let mut late = bank();
    boot(&mut late, 2, 0);
    assert_eq!(history(&late).origin, Origin::Start { boot: 2 });
    assert!(!history(&late).restarted());
}

/// TRUST-010: once the ring has discarded the earlier head, the link cannot be checked
/// and is not claimed; a boot count below the earlier head's is still a restart.
#[test]
fn a_head_discarded_by_the_ring_cannot_be_checked() {
    let mut mem = bank();
    boot(&mut mem, 1, 1);
    let earlier = mem.clone();
    let slots = u64::from(LOG_BLOCKS * BS) / audit::RECORD_LEN as u64;
    for n in 2..=4 {
        boot(&mut mem, n, slots / 2);
    }
    let h = history(&mem);
    let Origin::Wrapped { oldest, boot } = h.origin else { panic!("no wrap: {h:?}") };
    assert!(oldest > 1 && boot > 1, "{h:?}");
    assert!(h.to_string().contains("discarded by the ring"), "{h}");
    assert_eq!(continues(&earlier, &mem), Continuity::Discarded { oldest });
    assert!(!continues(&earlier, &mem).restarted());

    let later_head = history(&mem).head.unwrap();
    let fell = Head { boot: Some(later_head.boot.unwrap() + 1), ..history(&earlier).head.unwrap() };
    assert!(continuity(&fell, log_area(&mem, BS), BS).restarted());
}

//! CH-002: a hostile producer can't break the consumer. Whatever the producer region
//! holds, and whenever it changes (between calls or in the middle of one),
//! `Consumer::recv` never panics, never reaches outside either region or writes the
//! producer's, never returns more than `payload_capacity()` bytes, and moves its index
//! by exactly one when it takes a slot (delivered or rejected) and not at all
//! otherwise, counting each outcome once. From an honest producer's (re)attachment to
//! the next hostile write, messages come through intact and in order (CH-001).
//!
//! Input: `slot` `depth` `start:u32`, then operations, each a tag byte (taken modulo
//! 8) and its fields, integers little-endian:
//!
//! | tag | operation | fields |
//! |---|---|---|
//! | 0 | recv into a buffer of exactly `payload_capacity()` | |
//! | 1 | recv into a buffer of `len` bytes | `len:u8` |
//! | 2 | hostile: store a word of the producer region | `word:u16` (mod words) `value:u32` |
//! | 3 | hostile: write bytes into the producer region | `at:u16` (mod size) `n:u8` `bytes[n]` |
//! | 4 | an honest producer (re)attaches | |
//! | 5 | the honest producer sends | `n:u8` `bytes[n]` |
//! | 6 | the consumer restarts (re-attaches) | |
//! | 7 | hostile: arm stores that land during the next calls (`Race`) | `n:u8` `bytes[n]`, 6 a store |
//!
//! `slot` gives the slot size `32 + 16 * (slot % 15)` (32..=256), `depth` the depth
//! `2 << (depth % 4)` (2..=16) and, by its bit 2, the channel's checksum (0: CRC-32C,
//! 1: none; both ends alike), `start` the producer's write index when the consumer
//! first attaches (so the free-running indexes wrap).
#![no_main]

mod common;

use common::{scribble_bytes, scribble_word, words, Checked, Race, Script};
use libfuzzer_sys::fuzz_target;
use septum_ipc_channel::queuing::{Consumer, Producer, RecvError, RecvStats, SendError};
use septum_ipc_channel::{wire, Checksum, Geometry};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

fuzz_target!(|data: &[u8]| run(Script(data)));

fn run(mut s: Script) {
    let slot = 32 + 16 * u32::from(s.u8() % 15);
    let depth_byte = s.u8();
    let depth = 2 << (depth_byte % 4);
    let checksum = if depth_byte & 4 == 0 { Checksum::Crc32c } else { Checksum::None };
    let geo = Geometry::new(slot, depth).expect("slot and depth are chosen valid");
    let capacity = geo.payload_capacity();
    let prod = words(geo.producer_region_size());
    let cons = words(geo.consumer_region_size());
    scribble_word(&prod, (wire::WRITE_INDEX / 4) as u16, s.u32());

    let race = Race::default();
    let consumer = || Consumer::new(geo, checksum, Checked::own(&cons), Checked::hostile(&prod, &race)).expect("regions fit");
    let mut rx = consumer();
    let mut tx: Option<Producer<Checked>> = None;
    // What an honest producer has sent and the consumer not yet taken, in order; an
    // unknown entry (`None`) is a slot left in flight by an earlier, possibly hostile,
    // incarnation, which may be delivered or rejected but takes its turn. The whole
    // queue is `None` once the hostile side has written since the producer last
    // attached, when the protocol promises nothing about delivery.
    let mut honest: Option<VecDeque<Option<Vec<u8>>>> = None;

    while let Some(tag) = s.byte() {
        match tag % 8 {
            0 => recv(&mut rx, &cons, capacity, capacity, honest.as_mut()),
            1 => {
                let len = usize::from(s.u8());
                recv(&mut rx, &cons, capacity, len, honest.as_mut())
            }
            2 => {
                let (word, value) = (s.u16(), s.u32());
                scribble_word(&prod, word, value);
                honest = None;
            }
            3 => {
                let (at, n) = (s.u16(), s.u8());
                scribble_bytes(&prod, at, s.bytes(usize::from(n)));
                honest = None;
            }
            4 => {
                // It keeps its published index when that is consistent with the
                // consumer's, so what is in flight stays in flight; else it starts at
                // the consumer's index with nothing in flight.
                race.disarm();
                let published = prod[wire::WRITE_INDEX / 4].load(Ordering::Relaxed);
                let read = cons[wire::READ_INDEX / 4].load(Ordering::Relaxed);
                let in_flight = published.wrapping_sub(read);
                tx = Some(Producer::new(geo, checksum, Checked::own(&prod), Checked::peer(&cons)).expect("regions fit"));
                if honest.is_none() {
                    let unknown = if in_flight <= depth { in_flight as usize } else { 0 };
                    honest = Some(std::iter::repeat_n(None, unknown).collect());
                }
            }
            5 => {
                let n = s.u8();
                let msg = s.bytes(usize::from(n));
                let Some(tx) = tx.as_mut() else { continue };
                let result = tx.send(msg);
                if msg.len() > capacity {
                    assert_eq!(result, Err(SendError::TooLarge));
                } else if let Some(queue) = honest.as_mut() {
                    if queue.len() < depth as usize {
                        assert_eq!(result, Ok(()), "an honest pair has room");
                        queue.push_back(Some(msg.to_vec()));
                    } else {
                        assert_eq!(result, Err(SendError::Full), "an honest pair is full at depth");
                    }
                }
            }
            6 => {
                // It starts at the producer's index: what was in flight is skipped.
                rx = consumer();
                if let Some(queue) = honest.as_mut() {
                    queue.clear();
                }
            }
            _ => {
                let n = s.u8();
                race.arm(Script(s.bytes(usize::from(n))));
                honest = None;
            }
        }
    }
}

/// One `recv` into a buffer of `len` bytes, and every guarantee checked on its outcome.
fn recv(
    rx: &mut Consumer<Checked>,
    cons: &[AtomicU32],
    capacity: usize,
    len: usize,
    honest: Option<&mut VecDeque<Option<Vec<u8>>>>,
) {
    let mut buf = vec![0u8; len];
    // The consumer publishes its private index after every call that moves it, and no
    // one else writes its region: the published word is the private index.
    let read_index = || cons[wire::READ_INDEX / 4].load(Ordering::Relaxed);
    let (index, stats) = (read_index(), rx.stats());
    let result = rx.recv(&mut buf);
    let moved = read_index().wrapping_sub(index);
    let after = rx.stats();

    assert_eq!(result == Err(RecvError::BufferTooSmall), len < capacity);
    let expected = match result {
        Ok(n) => {
            assert!(n <= capacity, "recv returned {n} bytes, capacity is {capacity}");
            RecvStats { received: stats.received + 1, ..stats }
        }
        Err(RecvError::BadIndex) => RecvStats { bad_index: stats.bad_index + 1, ..stats },
        Err(RecvError::Rejected) => {
            assert_eq!(after.rejected(), stats.rejected() + 1, "a rejected slot is counted once");
            RecvStats {
                bad_format: after.bad_format,
                bad_seq: after.bad_seq,
                bad_len: after.bad_len,
                bad_crc: after.bad_crc,
                ..stats
            }
        }
        Err(RecvError::Empty | RecvError::BufferTooSmall) => stats,
    };
    assert_eq!(after, expected, "stats after {result:?}");
    let takes_slot = matches!(result, Ok(_) | Err(RecvError::Rejected));
    assert_eq!(moved, u32::from(takes_slot), "index moved by {moved} on {result:?}");

    if let Some(queue) = honest {
        if len < capacity {
            return;
        }
        match queue.pop_front() {
            Some(Some(msg)) => {
                assert_eq!(result, Ok(msg.len()), "an honest message is delivered");
                assert_eq!(&buf[..msg.len()], &msg[..], "an honest message is delivered intact");
            }
            Some(None) => assert!(takes_slot, "a slot left in flight takes its turn: {result:?}"),
            None => assert_eq!(result, Err(RecvError::Empty), "an honest empty queue is empty"),
        }
    }
}

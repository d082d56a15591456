//! CH-001..CH-004 (docs/requirements.md): FIFO against a reference model, and the honest
//! side's guarantees under arbitrary bytes from a hostile peer.

use super::*;
use crate::mem::HostRegion;
use core::sync::atomic::{AtomicU32, Ordering};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::vec::Vec;

fn words(bytes: usize) -> Vec<AtomicU32> {
    (0..bytes.div_ceil(4)).map(|_| AtomicU32::new(0)).collect()
}

struct Pair {
    prod: Vec<AtomicU32>,
    cons: Vec<AtomicU32>,
    geo: Geometry,
    checksum: Checksum,
}

impl Pair {
    fn new(slot: u32, depth: u32) -> Self {
        Self::with(slot, depth, Checksum::Crc32c)
    }
    fn with(slot: u32, depth: u32, checksum: Checksum) -> Self {
        let geo = Geometry::new(slot, depth).unwrap();
        Self { prod: words(geo.producer_region_size()), cons: words(geo.consumer_region_size()), geo, checksum }
    }
    fn producer(&self) -> Producer<HostRegion<'_>> {
        Producer::new(self.geo, self.checksum, HostRegion::new(&self.prod), HostRegion::new(&self.cons)).unwrap()
    }
    fn consumer(&self) -> Consumer<HostRegion<'_>> {
        self.consumer_with(self.checksum)
    }
    fn consumer_with(&self, checksum: Checksum) -> Consumer<HostRegion<'_>> {
        Consumer::new(self.geo, checksum, HostRegion::new(&self.cons), HostRegion::new(&self.prod)).unwrap()
    }
    /// The first slot's header words, as stored.
    fn slot_word(&self, index: usize) -> &AtomicU32 {
        &self.prod[wire::HEADER_SIZE / 4 + index]
    }
}

fn checksums() -> impl Strategy<Value = Checksum> {
    prop_oneof![Just(Checksum::Crc32c), Just(Checksum::None)]
}

fn buf(geo: Geometry) -> Vec<u8> {
    std::vec![0u8; geo.payload_capacity()]
}

#[test]
fn fifo_full_and_empty() {
    let p = Pair::new(32, 4);
    let mut tx = p.producer();
    let mut rx = p.consumer();
    let mut b = buf(p.geo);
    assert_eq!(rx.recv(&mut b), Err(RecvError::Empty));
    for i in 0..4u8 {
        tx.send(&[i; 3]).unwrap();
    }
    assert_eq!(tx.send(&[9]), Err(SendError::Full));
    for i in 0..4u8 {
        assert_eq!(rx.recv(&mut b), Ok(3));
        assert_eq!(&b[..3], &[i; 3]);
    }
    assert_eq!(rx.recv(&mut b), Err(RecvError::Empty));
    assert_eq!(tx.send(&[0; 17]), Err(SendError::TooLarge));
    assert_eq!(rx.recv(&mut [0u8; 4]), Err(RecvError::BufferTooSmall));
}

#[test]
fn restarted_consumer_resumes_in_step() {
    let p = Pair::new(32, 4);
    let mut tx = p.producer();
    let mut old = p.consumer();
    let mut b = buf(p.geo);
    for _ in 0..3 {
        tx.send(b"x").unwrap();
        old.recv(&mut b).unwrap();
    }
    for _ in 0..3 {
        tx.send(b"x").unwrap();
    }
    // The consumer partition restarts: its region is zeroed, then it re-attaches.
    for w in &p.cons {
        w.store(0, Ordering::Relaxed);
    }
    // The producer still goes by the index it last loaded (3: one slot free), then,
    // the queue looking full, loads the zeroed one: 7 unread is impossible for depth 4.
    assert_eq!(tx.send(b"y"), Ok(()));
    assert_eq!(tx.send(b"y"), Err(SendError::PeerCorrupt));
    let mut rx = p.consumer();
    tx.send(b"z").unwrap();
    assert_eq!(rx.recv(&mut b), Ok(1));
    assert_eq!(b[0], b'z');
}

/// The interleaving SPIN found: a producer re-attaches (its region intact) while the
/// consumer, still seeing the old write index, takes a message. Nothing may jam or be
/// lost.
#[test]
fn producer_reattaching_while_the_consumer_runs_stays_in_step() {
    let p = Pair::new(32, 4);
    let mut old = p.producer();
    let mut rx = p.consumer();
    old.send(b"one").unwrap();
    let mut tx = p.producer(); // re-attach: reads the indices...
    let mut b = buf(p.geo);
    assert_eq!(rx.recv(&mut b), Ok(3)); // ...while the consumer takes "one"
    assert_eq!(&b[..3], b"one");
    tx.send(b"two").unwrap();
    assert_eq!(rx.recv(&mut b), Ok(3));
    assert_eq!(&b[..3], b"two");
    assert_eq!(rx.stats().bad_index + tx.stats().peer_corrupt, 0);
}

#[test]
fn corrupted_slot_is_rejected_and_counted_once() {
    let p = Pair::new(32, 4);
    let mut tx = p.producer();
    let mut rx = p.consumer();
    tx.send(b"hello").unwrap();
    tx.send(b"world").unwrap();
    // Flip a payload byte of the first slot.
    let at = (wire::HEADER_SIZE + SLOT_HEADER) / 4;
    p.prod[at].fetch_xor(1, Ordering::Relaxed);
    let mut b = buf(p.geo);
    assert_eq!(rx.recv(&mut b), Err(RecvError::Rejected));
    assert_eq!(rx.recv(&mut b), Ok(5));
    assert_eq!(&b[..5], b"world");
    assert_eq!(rx.stats().bad_crc, 1);
    assert_eq!(rx.stats().received, 1);
}

/// CH-011: a message is written in format 2 (its format word names version 2 and
/// CRC-32C) with the CRC-32C of its numbers and bytes.
#[test]
fn messages_carry_format_2_and_their_crc32c() {
    let p = Pair::new(32, 4);
    p.producer().send(b"hello").unwrap();
    let header: Vec<u32> = (0..4).map(|i| p.slot_word(i).load(Ordering::Relaxed)).collect();
    assert_eq!(header, [0, 5, crate::checksum(0, 5, b"hello"), 0x0001_0002]);
    assert_eq!(wire::VERSION, 2);
}

/// CH-013: a receiver refuses a message whose format word is not its own (a version-1
/// message, an unknown version, another checksum), counts it as `bad_format`, and
/// goes on with the next.
#[test]
fn a_message_of_another_format_is_refused() {
    for (checksum, format) in [
        (Checksum::Crc32c, 0),           // version 1: the word was reserved, zero
        (Checksum::Crc32c, 0x0001_0003), // version 3, CRC-32C
        (Checksum::Crc32c, wire::format(Checksum::None)),
        (Checksum::None, wire::format(Checksum::Crc32c)),
    ] {
        let p = Pair::with(32, 4, checksum);
        let mut tx = p.producer();
        let mut rx = p.consumer();
        tx.send(b"old").unwrap();
        tx.send(b"new").unwrap();
        p.slot_word(3).store(format, Ordering::Relaxed);
        let mut b = buf(p.geo);
        assert_eq!(rx.recv(&mut b), Err(RecvError::Rejected), "{checksum:?} end, format {format:#x}");
        assert_eq!(rx.recv(&mut b), Ok(3));
        assert_eq!(&b[..3], b"new");
        assert_eq!((rx.stats().bad_format, rx.stats().rejected()), (1, 1));
    }
}

/// CH-013: ends configured with different checksums never exchange a message: every
/// one is refused as `bad_format` (a misconfiguration shows at once, by its cause).
#[test]
fn ends_disagreeing_on_the_checksum_exchange_nothing() {
    let p = Pair::with(32, 4, Checksum::None);
    let mut tx = p.producer();
    let mut rx = p.consumer_with(Checksum::Crc32c);
    let mut b = buf(p.geo);
    for _ in 0..3 {
        tx.send(b"x").unwrap();
        assert_eq!(rx.recv(&mut b), Err(RecvError::Rejected));
    }
    assert_eq!(rx.stats().bad_format, 3);
}

/// CH-012: without a checksum the field is zero and unread (a payload changed in flight
/// is the payload's own authentication's to catch), but the format word, sequence
/// number and length are still checked.
#[test]
fn without_a_checksum_seq_len_and_format_are_still_checked() {
    let p = Pair::with(32, 4, Checksum::None);
    let mut tx = p.producer();
    let mut rx = p.consumer();
    let mut b = buf(p.geo);
    tx.send(b"hello").unwrap();
    assert_eq!(p.slot_word(2).load(Ordering::Relaxed), 0, "no CRC written");
    assert_eq!(p.slot_word(3).load(Ordering::Relaxed), 0x0002_0002);
    p.slot_word(4).fetch_xor(1, Ordering::Relaxed); // a payload bit: not this layer's to see
    assert_eq!(rx.recv(&mut b), Ok(5));
    assert_eq!(&b[..5], b"iello");
    tx.send(b"seq").unwrap();
    p.prod[(wire::HEADER_SIZE + 32) / 4].fetch_add(1, Ordering::Relaxed);
    tx.send(b"len").unwrap();
    p.prod[(wire::HEADER_SIZE + 64) / 4 + 1].store(17, Ordering::Relaxed);
    assert_eq!(rx.recv(&mut b), Err(RecvError::Rejected));
    assert_eq!(rx.recv(&mut b), Err(RecvError::Rejected));
    let s = rx.stats();
    assert_eq!((s.bad_seq, s.bad_len, s.bad_crc, s.received), (1, 1, 0, 1));
}

#[derive(Debug, Clone)]
enum Op {
    Send(Vec<u8>),
    Recv,
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..=max).prop_map(Op::Send), Just(Op::Recv)]
}

proptest! {
    /// CH-001: an honest pair behaves exactly as a bounded VecDeque: FIFO, no loss, no
    /// duplication, full is an error, never an overwrite; with or without a checksum
    /// (CH-012).
    #[test]
    fn honest_pair_matches_a_bounded_fifo(
        depth_log in 1u32..4,
        checksum in checksums(),
        ops in proptest::collection::vec(op(16), 0..200),
    ) {
        let p = Pair::with(32, 1 << depth_log, checksum);
        let mut tx = p.producer();
        let mut rx = p.consumer();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut b = buf(p.geo);
        for o in ops {
            match o {
                Op::Send(m) => {
                    let r = tx.send(&m);
                    if model.len() < p.geo.depth() as usize {
                        prop_assert_eq!(r, Ok(()));
                        model.push_back(m);
                    } else {
                        prop_assert_eq!(r, Err(SendError::Full));
                    }
                }
                Op::Recv => match model.pop_front() {
                    Some(m) => {
                        prop_assert_eq!(rx.recv(&mut b), Ok(m.len()));
                        prop_assert_eq!(&b[..m.len()], &m[..]);
                    }
                    None => prop_assert_eq!(rx.recv(&mut b), Err(RecvError::Empty)),
                },
            }
        }
        prop_assert_eq!(rx.stats().rejected() + rx.stats().bad_index, 0);
    }

    /// CH-002: arbitrary bytes written anywhere in the producer region between any two
    /// calls never make the consumer panic, read out of bounds, return more than a
    /// slot, move its index by more than one, or stop answering.
    #[test]
    fn hostile_producer_cannot_break_the_consumer(
        checksum in checksums(),
        scribbles in proptest::collection::vec((any::<u16>(), any::<u32>(), 0u8..3), 0..300),
    ) {
        let p = Pair::with(48, 4, checksum);
        let mut rx = p.consumer();
        let mut b = buf(p.geo);
        for (at, value, calls) in scribbles {
            let i = at as usize % p.prod.len();
            p.prod[i].store(value, Ordering::Relaxed);
            for _ in 0..calls {
                let before = rx.read;
                match rx.recv(&mut b) {
                    Ok(len) => prop_assert!(len <= p.geo.payload_capacity()),
                    Err(RecvError::BufferTooSmall) => prop_assert!(false, "buffer is large enough"),
                    Err(_) => {}
                }
                prop_assert!(rx.read.wrapping_sub(before) <= 1);
                // The consumer's published index is its own and only ever its private one.
                prop_assert_eq!(p.cons[wire::READ_INDEX / 4].load(Ordering::Relaxed), rx.read);
            }
        }
    }

    /// CH-003: arbitrary bytes in the consumer region never make the producer panic,
    /// write outside its region or overwrite a slot an honest reading of the consumer's
    /// index says is unread.
    #[test]
    fn hostile_consumer_cannot_break_the_producer(
        reads in proptest::collection::vec(any::<u32>(), 0..200),
        msg in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let p = Pair::new(48, 8);
        let mut tx = p.producer();
        let mut shown = std::vec![p.cons[wire::READ_INDEX / 4].load(Ordering::Relaxed)];
        for r in reads {
            p.cons[wire::READ_INDEX / 4].store(r, Ordering::Relaxed);
            shown.push(r);
            let before = tx.write;
            let result = tx.send(&msg);
            match result {
                Ok(()) => {
                    // It wrote slot `before`, which a read index the consumer once
                    // showed says is free: fewer than depth unread.
                    prop_assert!(shown.contains(&tx.read_seen));
                    prop_assert!(before.wrapping_sub(tx.read_seen) < p.geo.depth());
                    prop_assert_eq!(tx.write, before.wrapping_add(1));
                }
                Err(_) => prop_assert_eq!(tx.write, before),
            }
        }
    }
}

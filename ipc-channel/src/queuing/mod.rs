//! Queuing port: a bounded FIFO from one producer to one consumer.
//!
//! Each side keeps its own index privately and is the only writer of its copy in
//! shared memory; it reads the peer's index **at most once per call** and bounds it
//! (the producer keeps the last value it loaded and loads again only when the queue
//! looks full). The
//! producer writes payload, then slot header, then publishes with a release store of
//! `write_index`; the consumer acquires `write_index`, copies the slot header and then
//! the payload into private memory (each shared byte read once), validates the copy
//! (format word, sequence number, length, CRC-32C unless the channel carries no
//! checksum), and only then releases the slot by storing
//! `read_index`. A full queue is an error to the sender; unread data is never
//! overwritten while the consumer's index is honest. A lying peer can cause lost or
//! rejected messages, never out-of-bounds access, a panic, a loop or corrupted state
//! of the honest side: every call does a bounded amount of work (one slot at most).
//!
//! Model: `model/channel.pml` (`producer`/`consumer` processes mirror [`Producer::send`]
//! and [`Consumer::recv`] step by step).

use crate::mem::Shared;
use crate::wire::{self, Checksum, Geometry, GeometryError, SlotHeader, SLOT_HEADER};
use zerocopy::{FromBytes, IntoBytes};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The message is longer than a slot's payload.
    TooLarge,
    /// `depth` messages are unread: try again later.
    Full,
    /// The consumer's index is impossible (ahead of ours or more than `depth` behind).
    PeerCorrupt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing to read.
    Empty,
    /// The caller's buffer is smaller than the channel's largest message.
    BufferTooSmall,
    /// The producer's index is impossible (behind ours or more than `depth` ahead).
    BadIndex,
    /// A slot failed validation and was dropped (see [`RecvStats`] for which check).
    Rejected,
}

/// What a producer has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    pub sent: u64,
    pub full: u64,
    pub peer_corrupt: u64,
}

/// What a consumer has seen; every malformed message is counted once, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvStats {
    pub received: u64,
    pub bad_index: u64,
    /// The slot's format word is not this end's: another version of the wire format, or
    /// another checksum than the channel is configured for.
    pub bad_format: u64,
    pub bad_seq: u64,
    pub bad_len: u64,
    pub bad_crc: u64,
}

impl RecvStats {
    pub fn rejected(&self) -> u64 {
        self.bad_format + self.bad_seq + self.bad_len + self.bad_crc
    }
}

/// The sending end. `own` is the producer region, `peer` the consumer region.
pub struct Producer<M: Shared> {
    own: M,
    peer: M,
    geo: Geometry,
    checksum: Checksum,
    write: u32,
    /// The consumer's index as last loaded and bounded. It only ever lags the true
    /// one, so a slot it shows free is free; the peer's cache line is loaded again only
    /// when the queue looks full (as SPSC rings do, to keep the line from bouncing).
    read_seen: u32,
    stats: SendStats,
}

impl<M: Shared> Producer<M> {
    /// Takes over the producer region. A producer re-attaching keeps the write index it
    /// published if that is consistent with the consumer's (never moving it backwards,
    /// so a consumer still running keeps its footing); only an impossible one (a zeroed
    /// region after a restart) is replaced by the consumer's index, and while it is
    /// impossible the consumer takes nothing (`Empty` or `BadIndex`). A lying consumer
    /// only makes later sends fail. `checksum` is the channel's, as configured for both
    /// ends.
    pub fn new(geo: Geometry, checksum: Checksum, own: M, peer: M) -> Result<Self, GeometryError> {
        check_size(geo.producer_region_size(), own.size())?;
        check_size(geo.consumer_region_size(), peer.size())?;
        let published = own.load_acquire(wire::WRITE_INDEX);
        let read = peer.load_acquire(wire::READ_INDEX);
        let write = if published.wrapping_sub(read) <= geo.depth() { published } else { read };
        let header = wire::ProducerHeader {
            magic: wire::MAGIC_PRODUCER,
            version: wire::VERSION,
            slot_size: geo.slot_size(),
            depth: geo.depth(),
            write_index: write,
            _reserved: [0; 11],
        };
        own.write(0, header.as_bytes());
        own.store_release(wire::WRITE_INDEX, write);
        Ok(Self { own, peer, geo, checksum, write, read_seen: read, stats: SendStats::default() })
    }

    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > self.geo.payload_capacity() {
            return Err(SendError::TooLarge);
        }
        let mut used = self.write.wrapping_sub(self.read_seen);
        if used >= self.geo.depth() {
            self.read_seen = self.peer.load_acquire(wire::READ_INDEX);
            used = self.write.wrapping_sub(self.read_seen);
        }
        if used > self.geo.depth() {
            self.stats.peer_corrupt += 1;
            return Err(SendError::PeerCorrupt);
        }
        if used == self.geo.depth() {
            self.stats.full += 1;
            return Err(SendError::Full);
        }
        let slot = self.geo.slot_offset(self.write);
        let len = msg.len() as u32;
        self.own.write(slot + SLOT_HEADER, msg);
        let crc = match self.checksum {
            Checksum::Crc32c => crate::checksum(self.write, len, msg),
            Checksum::None => 0,
        };
        let header = SlotHeader { seq: self.write, len, crc, format: wire::format(self.checksum) };
        self.own.write(slot, header.as_bytes());
        self.write = self.write.wrapping_add(1);
        self.own.store_release(wire::WRITE_INDEX, self.write);
        self.stats.sent += 1;
        Ok(())
    }

    /// Messages written and not yet released by the consumer, as far as we can tell.
    pub fn pending(&self) -> u32 {
        self.write.wrapping_sub(self.peer.load_acquire(wire::READ_INDEX)).min(self.geo.depth())
    }

    pub fn stats(&self) -> SendStats {
        self.stats
    }
}

/// The receiving end. `own` is the consumer region, `peer` the producer region.
pub struct Consumer<M: Shared> {
    own: M,
    peer: M,
    geo: Geometry,
    checksum: Checksum,
    read: u32,
    stats: RecvStats,
}

impl<M: Shared> Consumer<M> {
    /// Takes over the consumer region, starting at the producer's current index:
    /// messages in flight before a (re)start are not delivered. `checksum` is the
    /// channel's, as configured for both ends: a message carrying another is refused.
    pub fn new(geo: Geometry, checksum: Checksum, own: M, peer: M) -> Result<Self, GeometryError> {
        check_size(geo.consumer_region_size(), own.size())?;
        check_size(geo.producer_region_size(), peer.size())?;
        let read = peer.load_acquire(wire::WRITE_INDEX);
        let header = wire::ConsumerHeader {
            magic: wire::MAGIC_CONSUMER,
            version: wire::VERSION,
            read_index: read,
            _reserved: [0; 13],
        };
        own.write(0, header.as_bytes());
        own.store_release(wire::READ_INDEX, read);
        Ok(Self { own, peer, geo, checksum, read, stats: RecvStats::default() })
    }

    /// Receives one message into `buf` (at least [`Geometry::payload_capacity`] bytes)
    /// and returns its length.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if buf.len() < self.geo.payload_capacity() {
            return Err(RecvError::BufferTooSmall);
        }
        let write = self.peer.load_acquire(wire::WRITE_INDEX);
        let available = write.wrapping_sub(self.read);
        if available == 0 {
            return Err(RecvError::Empty);
        }
        if available > self.geo.depth() {
            self.stats.bad_index += 1;
            return Err(RecvError::BadIndex);
        }
        // Copy out first, validate the private copy after: no double fetch.
        let slot = self.geo.slot_offset(self.read);
        let mut raw = [0u8; SLOT_HEADER];
        self.peer.read(slot, &mut raw);
        let header = SlotHeader::read_from_bytes(&raw).unwrap_or_default();
        let capacity = self.geo.payload_capacity();
        let len = (header.len as usize).min(capacity);
        self.peer.read(slot + SLOT_HEADER, &mut buf[..len]);
        let verdict = if header.format != wire::format(self.checksum) {
            self.stats.bad_format += 1;
            Err(RecvError::Rejected)
        } else if header.seq != self.read {
            self.stats.bad_seq += 1;
            Err(RecvError::Rejected)
        } else if header.len as usize > capacity {
            self.stats.bad_len += 1;
            Err(RecvError::Rejected)
        } else if self.checksum == Checksum::Crc32c
            && crate::checksum(header.seq, header.len, &buf[..len]) != header.crc
        {
            self.stats.bad_crc += 1;
            Err(RecvError::Rejected)
        } else {
            self.stats.received += 1;
            Ok(len)
        };
        // Valid or not, the slot is done with: a bad message is dropped, not retried.
        self.read = self.read.wrapping_add(1);
        self.own.store_release(wire::READ_INDEX, self.read);
        verdict
    }

    pub fn stats(&self) -> RecvStats {
        self.stats
    }
}

fn check_size(needed: usize, found: usize) -> Result<(), GeometryError> {
    if found < needed {
        Err(GeometryError::RegionTooSmall { needed, found })
    } else {
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

//! What both targets share: reading a fuzz input as a script, and a view of shared
//! memory that checks the protocol keeps its side of the `Shared` contract and lets a
//! hostile peer write in the middle of a call.
// Each target is its own crate and uses only part of this.
#![allow(dead_code)]

use septum_ipc_channel::{HostRegion, Shared};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU32;

/// Shared memory as the channel sees it on the host: atomic words, zeroed.
pub fn words(bytes: usize) -> Vec<AtomicU32> {
    (0..bytes.div_ceil(4)).map(|_| AtomicU32::new(0)).collect()
}

/// The fuzz input, read front to back. Every input is a valid script: a field the
/// input ends in the middle of reads as zeros, so the fuzzer never wastes a run on a
/// parse error.
pub struct Script<'a>(pub &'a [u8]);

impl<'a> Script<'a> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    /// Up to `n` bytes (fewer if the input ends).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn le<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }
    pub fn u8(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.le())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.le())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.le())
    }
}

/// The hostile peer's moves on its own region: raw stores, no protocol.
pub fn scribble_word(region: &[AtomicU32], at: u16, value: u32) {
    HostRegion::new(region).store_release(usize::from(at) % region.len() * 4, value);
}

pub fn scribble_bytes(region: &[AtomicU32], at: u16, bytes: &[u8]) {
    HostRegion::new(region).write(usize::from(at) % (region.len() * 4), bytes);
}

/// A region as one side of the channel sees it. `HostRegion` quietly clamps what
/// falls outside the region; this view fails the run instead, so an out-of-bounds or
/// misaligned access by the protocol, or a write through the mapping the hypervisor
/// makes read-only for it, is a crash the fuzzer reports.
pub struct Checked<'a> {
    words: &'a [AtomicU32],
    writable: bool,
    race: Option<&'a Race>,
}

/// Stores the hostile peer makes *during* the victim's calls: a peer that writes at
/// any moment. Before each access the victim makes through a [`Checked::hostile`]
/// view, the next armed store lands, until none are left.
#[derive(Default)]
pub struct Race(RefCell<VecDeque<(u16, u32)>>);

impl Race {
    /// Arms the stores in `script`, each `word:u16 value:u32` (a scripted store).
    pub fn arm(&self, mut script: Script) {
        let mut stores = self.0.borrow_mut();
        stores.clear();
        while !script.0.is_empty() {
            stores.push_back((script.u16(), script.u32()));
        }
    }
    pub fn disarm(&self) {
        self.0.borrow_mut().clear();
    }
    fn next(&self) -> Option<(u16, u32)> {
        self.0.borrow_mut().pop_front()
    }
}

impl<'a> Checked<'a> {
    /// The caller's own region.
    pub fn own(words: &'a [AtomicU32]) -> Self {
        Self { words, writable: true, race: None }
    }
    /// An honest peer's region.
    pub fn peer(words: &'a [AtomicU32]) -> Self {
        Self { words, writable: false, race: None }
    }
    /// A hostile peer's region, which it may write in the middle of a call.
    pub fn hostile(words: &'a [AtomicU32], race: &'a Race) -> Self {
        Self { words, writable: false, race: Some(race) }
    }
    fn inside(&self, off: usize, len: usize) {
        let end = off.checked_add(len);
        assert!(end.is_some_and(|e| e <= self.size()), "access of {len} bytes at {off}, region is {}", self.size());
    }
    fn word(&self, off: usize) {
        assert!(off % 4 == 0, "index word at unaligned offset {off}");
        self.inside(off, 4);
    }
    fn may_write(&self) {
        assert!(self.writable, "write to the peer's region, which is mapped read-only");
    }
    fn interfere(&self) {
        if let Some((word, value)) = self.race.and_then(Race::next) {
            scribble_word(self.words, word, value);
        }
    }
}

impl Shared for Checked<'_> {
    fn size(&self) -> usize {
        self.words.len() * 4
    }
    fn load_acquire(&self, off: usize) -> u32 {
        self.interfere();
        self.word(off);
        HostRegion::new(self.words).load_acquire(off)
    }
    fn store_release(&self, off: usize, value: u32) {
        self.may_write();
        self.word(off);
        HostRegion::new(self.words).store_release(off, value)
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.interfere();
        self.inside(off, dst.len());
        HostRegion::new(self.words).read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) {
        self.may_write();
        self.inside(off, src.len());
        HostRegion::new(self.words).write(off, src)
    }
}

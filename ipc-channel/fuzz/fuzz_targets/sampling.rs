//! CH-002 for sampling ports: a hostile writer can't break the reader. Whatever the
//! sampling region holds, and whenever it changes (between calls or in the middle of
//! one), `Reader::read` never panics, never reaches outside the region or writes it,
//! and never returns more than its capacity. After an honest write (which rewrites
//! everything a read looks at), the value reads back intact with its sequence number
//! and age, or as invalid when its stamp lies in the reader's future.
//!
//! Input: `capacity` `validity`, then operations, each a tag byte (taken modulo 6)
//! and its fields, integers little-endian:
//!
//! | tag | operation | fields |
//! |---|---|---|
//! | 0 | read at the reader's time `now` | `now:u64` |
//! | 1 | hostile: store a word of the region | `word:u16` (mod words) `value:u32` |
//! | 2 | hostile: write bytes into the region | `at:u16` (mod size) `n:u8` `bytes[n]` |
//! | 3 | an honest writer (re)attaches | |
//! | 4 | the honest writer writes, stamped `stamp` | `stamp:u64` `n:u8` `bytes[n]` |
//! | 5 | hostile: arm stores that land during the next reads (`Race`) | `n:u8` `bytes[n]`, 6 a store |
//!
//! `capacity`'s low 7 bits are taken modulo 65 (0..=64 bytes), its top bit chooses the
//! channel's checksum (0: CRC-32C, 1: none; both ends alike); `validity` is in clock
//! ticks.
#![no_main]

mod common;

use common::{scribble_bytes, scribble_word, words, Checked, Race, Script};
use libfuzzer_sys::fuzz_target;
use septum_ipc_channel::sampling::{self, Reader, Sample, SampleError, Writer};
use septum_ipc_channel::Checksum;

fuzz_target!(|data: &[u8]| run(Script(data)));

/// What the region holds, when the honest writer was the last to write it.
enum Honest {
    NoValue,
    Value { bytes: Vec<u8>, stamp: u64, seq: u32 },
}

fn run(mut s: Script) {
    let capacity_byte = s.u8();
    let capacity = usize::from((capacity_byte & 0x7F) % 65);
    let checksum = if capacity_byte & 0x80 == 0 { Checksum::Crc32c } else { Checksum::None };
    let validity = u64::from(s.u8());
    let region = words(sampling::region_size(capacity));
    let race = Race::default();
    let mut reader = Reader::new(capacity, checksum, validity, Checked::hostile(&region, &race)).expect("region fits");
    let mut writer: Option<Writer<Checked>> = None;
    let mut writes = 0;
    let mut honest = Some(Honest::NoValue);

    while let Some(tag) = s.byte() {
        match tag % 6 {
            0 => {
                let now = s.u64();
                let mut buf = vec![0u8; capacity];
                let result = reader.read(&mut buf, now);
                if let Ok(sample) = result {
                    assert!(sample.len <= capacity, "read returned {} bytes, capacity is {capacity}", sample.len);
                }
                match &honest {
                    Some(Honest::NoValue) => assert_eq!(result, Err(SampleError::NoValue)),
                    Some(Honest::Value { stamp, .. }) if *stamp > now => {
                        assert_eq!(result, Err(SampleError::Invalid), "a stamp from the future is refused")
                    }
                    Some(Honest::Value { bytes, stamp, seq }) => {
                        let age = now - stamp;
                        let sample = result.expect("an honest value reads back");
                        let expected = Sample { len: bytes.len(), seq: *seq, age, fresh: age <= validity, ..sample };
                        assert_eq!(sample, expected);
                        assert_eq!(&buf[..sample.len], &bytes[..], "an honest value reads back intact");
                    }
                    None => {}
                }
            }
            1 => {
                let (word, value) = (s.u16(), s.u32());
                scribble_word(&region, word, value);
                honest = None;
            }
            2 => {
                let (at, n) = (s.u16(), s.u8());
                scribble_bytes(&region, at, s.bytes(usize::from(n)));
                honest = None;
            }
            3 => {
                race.disarm();
                writer = Some(Writer::new(capacity, checksum, Checked::own(&region)).expect("region fits"));
                writes = 0;
                honest = Some(Honest::NoValue);
            }
            4 => {
                let (stamp, n) = (s.u64(), s.u8());
                let bytes = s.bytes(usize::from(n));
                let Some(writer) = writer.as_mut() else { continue };
                if bytes.len() > capacity {
                    assert_eq!(writer.write(bytes, stamp), Err(SampleError::BufferTooSmall));
                } else {
                    assert_eq!(writer.write(bytes, stamp), Ok(()));
                    writes += 1;
                    race.disarm();
                    honest = Some(Honest::Value { bytes: bytes.to_vec(), stamp, seq: writes });
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

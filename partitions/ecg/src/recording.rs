//! The replay file format: what the host bench, xtask and the partition's replayed
//! front end read (`docs/monitoring.md`).
//!
//! Little-endian. A 32-byte header, then `sample_count` samples of `i16`:
//!
//! | offset | field | value |
//! |---|---|---|
//! | 0 | magic | `b"SECG"` |
//! | 4 | version | `u16` 1 |
//! | 6 | header_len | `u16` 32 |
//! | 8 | sample_rate_hz | `u32`, 100..=1000 |
//! | 12 | nanovolts_per_lsb | `u32`, nonzero (1000: 1 µV per LSB) |
//! | 16 | sample_count | `u32` |
//! | 20 | flags | `u32` 0 |
//! | 24 | reserved | 8 bytes of zero |
//!
//! A sample of `i16::MIN` means the front end flagged leads off at that sample.

use core::fmt;

use crate::sample::Sample;

pub const MAGIC: [u8; 4] = *b"SECG";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
/// The sample value that means "leads off".
pub const LEADS_OFF: i16 = i16::MIN;
/// The sampling rates the processing supports.
pub const MIN_RATE_HZ: u32 = 100;
pub const MAX_RATE_HZ: u32 = 1000;

/// A parsed recording borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Recording<'a> {
    rate_hz: u32,
    nv_per_lsb: u32,
    samples: &'a [u8],
}

/// Why bytes are not a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingError {
    /// Shorter than the header.
    Short,
    Magic,
    Version(u16),
    HeaderLen(u16),
    /// A sampling rate outside 100..=1000 Hz.
    Rate(u32),
    /// A scale of zero nanovolts per LSB.
    Scale,
    /// Nonzero flags (none are defined).
    Flags(u32),
    /// Fewer sample bytes than `sample_count` says.
    Truncated {
        samples: u32,
        bytes: usize,
    },
}

impl fmt::Display for RecordingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short => write!(f, "shorter than the {HEADER_LEN}-byte header"),
            Self::Magic => write!(f, "not an ECG recording (magic is not SECG)"),
            Self::Version(v) => write!(f, "version {v}, expected {VERSION}"),
            Self::HeaderLen(l) => write!(f, "header length {l}, expected {HEADER_LEN}"),
            Self::Rate(r) => write!(f, "sampling rate {r} Hz outside {MIN_RATE_HZ}..={MAX_RATE_HZ}"),
            Self::Scale => write!(f, "zero nanovolts per LSB"),
            Self::Flags(x) => write!(f, "unknown flags {x:#x}"),
            Self::Truncated { samples, bytes } => {
                write!(f, "{samples} samples announced but only {bytes} bytes of samples")
            }
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Recording<'a> {
    /// Checks the header and that every announced sample is present; bytes after the
    /// last sample are ignored (sensor memory is larger than the recording).
    pub fn parse(b: &'a [u8]) -> Result<Recording<'a>, RecordingError> {
        if b.len() < HEADER_LEN {
            return Err(RecordingError::Short);
        }
        if b[0..4] != MAGIC {
            return Err(RecordingError::Magic);
        }
        let version = u16_at(b, 4);
        if version != VERSION {
            return Err(RecordingError::Version(version));
        }
        let header_len = u16_at(b, 6);
        if header_len as usize != HEADER_LEN {
            return Err(RecordingError::HeaderLen(header_len));
        }
        let rate_hz = u32_at(b, 8);
        if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
            return Err(RecordingError::Rate(rate_hz));
        }
        let nv_per_lsb = u32_at(b, 12);
        if nv_per_lsb == 0 {
            return Err(RecordingError::Scale);
        }
        let count = u32_at(b, 16);
        let flags = u32_at(b, 20);
        if flags != 0 {
            return Err(RecordingError::Flags(flags));
        }
        let body = &b[HEADER_LEN..];
        let need = count as usize * 2;
        if body.len() < need {
            return Err(RecordingError::Truncated { samples: count, bytes: body.len() });
        }
        Ok(Recording { rate_hz, nv_per_lsb, samples: &body[..need] })
    }

    pub fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    pub fn nv_per_lsb(&self) -> u32 {
        self.nv_per_lsb
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.samples.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The raw value of sample `i`, or `None` past the end.
    pub fn raw(&self, i: usize) -> Option<i16> {
        let b = self.samples.get(2 * i..2 * i + 2)?;
        Some(i16::from_le_bytes([b[0], b[1]]))
    }

    /// Sample `i` in microvolts (rounded toward zero); past the end reads as leads off.
    pub fn sample(&self, i: usize) -> Sample {
        match self.raw(i) {
            None | Some(LEADS_OFF) => Sample::LeadsOff,
            Some(v) => Sample::Microvolts(to_microvolts(v, self.nv_per_lsb)),
        }
    }

    /// The largest magnitude a sample can have, in microvolts: where the front end's
    /// converter saturates (`Monitor::set_full_scale_uv`).
    pub fn full_scale_uv(&self) -> u32 {
        (i16::MAX as u64 * self.nv_per_lsb as u64 / 1000).min(u32::MAX as u64) as u32
    }

    /// The recording's length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.len() as u64 * 1000 / self.rate_hz as u64
    }
}

/// Scales a raw value to microvolts, saturating at `i32`'s range.
pub fn to_microvolts(v: i16, nv_per_lsb: u32) -> i32 {
    let uv = v as i64 * nv_per_lsb as i64 / 1000;
    uv.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Writes a recording (host tools: the generator).
#[cfg(any(test, feature = "std"))]
pub fn write(rate_hz: u32, nv_per_lsb: u32, samples: &[i16]) -> std::vec::Vec<u8> {
    let mut out = std::vec::Vec::with_capacity(HEADER_LEN + 2 * samples.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    out.extend_from_slice(&rate_hz.to_le_bytes());
    out.extend_from_slice(&nv_per_lsb.to_le_bytes());
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_scales() {
        let bytes = write(250, 2500, &[0, 4, -4, LEADS_OFF, i16::MAX]);
        let r = Recording::parse(&bytes).unwrap();
        assert_eq!((r.rate_hz(), r.nv_per_lsb(), r.len()), (250, 2500, 5));
        assert_eq!(r.sample(1), Sample::Microvolts(10));
        assert_eq!(r.sample(2), Sample::Microvolts(-10));
        assert_eq!(r.sample(3), Sample::LeadsOff);
        assert_eq!(r.sample(5), Sample::LeadsOff);
        assert_eq!(r.full_scale_uv(), 81917);
        assert_eq!(r.duration_ms(), 20);
    }

    #[test]
    fn refuses_bad_headers() {
        let good = write(250, 1000, &[1, 2, 3]);
        let with = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b[at..at + v.len()].copy_from_slice(v);
            Recording::parse(&b).map(|_| ())
        };
        assert_eq!(Recording::parse(&good[..31]).map(|_| ()), Err(RecordingError::Short));
        assert_eq!(with(0, b"SECH"), Err(RecordingError::Magic));
        assert_eq!(with(4, &2u16.to_le_bytes()), Err(RecordingError::Version(2)));
        assert_eq!(with(6, &33u16.to_le_bytes()), Err(RecordingError::HeaderLen(33)));
        assert_eq!(with(8, &99u32.to_le_bytes()), Err(RecordingError::Rate(99)));
        assert_eq!(with(8, &1001u32.to_le_bytes()), Err(RecordingError::Rate(1001)));
        assert_eq!(with(12, &0u32.to_le_bytes()), Err(RecordingError::Scale));
        assert_eq!(with(20, &1u32.to_le_bytes()), Err(RecordingError::Flags(1)));
        assert_eq!(with(16, &4u32.to_le_bytes()), Err(RecordingError::Truncated { samples: 4, bytes: 6 }));
        // Trailing bytes (sensor memory larger than the file) are ignored.
        let mut longer = good.clone();
        longer.extend_from_slice(&[0xAA; 64]);
        assert_eq!(Recording::parse(&longer).unwrap().len(), 3);
    }
}

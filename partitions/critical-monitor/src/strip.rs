//! Rhythm strips (MED-008): the raw ECG of the seconds before an alarm, the only raw
//! samples that ever leave the critical partition, and only when the partition's signed
//! command line asks for them (`rhythm_strip_s=N`; off by default). A clinician
//! reviewing an alarm remotely sees what the monitor saw.
//!
//! The last samples are kept in a fixed ring; when an alarm is raised the strip is the
//! ring's content at that moment, sent in `septum_vitals::Strip` pieces only while no
//! derived record is waiting, so a strip never delays a beat, a summary or an alarm
//! event. One strip at a time: an alarm raised while one is being sent gets none
//! (counted).

use septum_ecg::Sample;
use septum_vitals::{AlarmKind, Header, RecordKind, Strip};

/// Samples the ring holds. A strip is at most half of it (8 s at 250 Hz, 2 s at
/// 1000 Hz), so the other half's time is left to send it before new samples overwrite
/// its first piece.
pub const CAPACITY: usize = 4096;

pub struct Strips {
    ring: [i16; CAPACITY],
    /// Samples per strip (0: strips are off).
    len: usize,
    rate_hz: u16,
    /// Samples recorded so far.
    recorded: u64,
    sending: Option<Sending>,
    pub sent: u64,
    /// Alarms raised while a strip was being sent: no strip of their own.
    pub skipped: u64,
    /// Strips given up because connectivity took too long to take them.
    pub abandoned: u64,
}

struct Sending {
    alarm: AlarmKind,
    /// Index of the strip's first sample.
    first: u64,
    pieces: u16,
    next: u16,
}

impl Strips {
    /// Strips of `seconds` at `rate_hz`, as long as the ring allows; the length kept.
    pub fn new(seconds: u64, rate_hz: u32) -> Self {
        let wanted = seconds.saturating_mul(u64::from(rate_hz));
        let len = usize::try_from(wanted).unwrap_or(usize::MAX).min(CAPACITY / 2);
        Self {
            ring: [0; CAPACITY],
            len,
            rate_hz: u16::try_from(rate_hz).unwrap_or(u16::MAX),
            recorded: 0,
            sending: None,
            sent: 0,
            skipped: 0,
            abandoned: 0,
        }
    }

    /// The strip's length in samples (0: off).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Keeps one sample (µV clamped to 16 bits; `i16::MIN` where the leads were off).
    pub fn record(&mut self, s: Sample) {
        if self.len == 0 {
            return;
        }
        let v = match s {
            Sample::Microvolts(uv) => uv.clamp(i32::from(i16::MIN) + 1, i32::from(i16::MAX)) as i16,
            Sample::LeadsOff => i16::MIN,
        };
        self.ring[(self.recorded % CAPACITY as u64) as usize] = v;
        self.recorded += 1;
    }

    /// `alarm` was raised after the samples recorded so far: its strip is the last
    /// `len` of them (fewer if the monitor has not run that long).
    pub fn alarm_raised(&mut self, alarm: AlarmKind) {
        if self.len == 0 {
            return;
        }
        if self.sending.is_some() {
            self.skipped += 1;
            return;
        }
        let n = (self.len as u64).min(self.recorded);
        let pieces = n.div_ceil(Strip::SAMPLES as u64);
        if pieces == 0 {
            return;
        }
        self.sending = Some(Sending {
            alarm,
            first: self.recorded - n,
            pieces: u16::try_from(pieces).unwrap_or(u16::MAX),
            next: 0,
        });
    }

    /// The next piece of the strip being sent, numbered `seq`, if there is one; it is
    /// taken with [`Strips::advance`] once the channel has it. A strip whose next piece
    /// newer samples have already overwritten (the channel stayed full for longer than
    /// the ring's slack) is given up here.
    pub fn peek(&mut self, seq: u64) -> Option<Strip> {
        let s = self.sending.as_ref()?;
        let from = s.first + u64::from(s.next) * Strip::SAMPLES as u64;
        if self.recorded - from > CAPACITY as u64 {
            self.sending = None;
            self.abandoned += 1;
            return None;
        }
        let end = (s.first + self.len as u64).min(self.recorded);
        let count = end.saturating_sub(from).min(Strip::SAMPLES as u64) as usize;
        let t_ms = from * 1000 / u64::from(self.rate_hz.max(1));
        let mut piece = Strip {
            header: Header::new(RecordKind::Strip, seq, t_ms),
            alarm: s.alarm as u8,
            count: count as u8,
            piece: s.next.into(),
            pieces: s.pieces.into(),
            rate_hz: self.rate_hz.into(),
            first: (from as u32).into(),
            samples: [0.into(); Strip::SAMPLES],
        };
        for (i, slot) in piece.samples.iter_mut().enumerate().take(count) {
            *slot = self.ring[((from + i as u64) % CAPACITY as u64) as usize].into();
        }
        Some(piece)
    }

    /// The piece [`Strips::peek`] gave is in the channel.
    pub fn advance(&mut self) {
        let Some(s) = self.sending.as_mut() else { return };
        s.next += 1;
        if s.next >= s.pieces {
            self.sending = None;
        }
        self.sent += 1;
    }
}

//! The records the critical monitor sends to connectivity and the commands it accepts
//! back: the only meaning the channel's bytes have (MED- requirements in
//! `docs/requirements.md`, the schema in `docs/monitoring.md`).
//!
//! Only derived data leaves the critical partition: one record per detected beat, a
//! summary each second, and alarm events. Every record starts with the same header (a
//! kind, this format's version, and a sequence number counting every record the monitor
//! sent since it started), so the receiver can check that nothing was lost or reordered
//! across kinds. All fields are little-endian; a record is at most [`MAX_RECORD`] bytes.
//!
//! Commands are few on purpose. None of them can silence an alarm, change a limit or
//! alter a measurement: the monitor parses every command it is given, acts on the ones
//! listed in [`CommandKind`], and counts everything else as rejected.

#![no_std]
#![forbid(unsafe_code)]

use zerocopy::little_endian::{I16, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// This format's version, in every header.
pub const VERSION: u8 = 1;

/// The largest record or command, in bytes.
pub const MAX_RECORD: usize = 48;

/// What follows a [`Header`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A detected beat: [`Beat`].
    Beat = 1,
    /// Once a second: [`Summary`].
    Summary = 2,
    /// An alarm raised or cleared: [`AlarmEvent`].
    Alarm = 3,
    /// A monitor with no sensor exercises the channel: it sends these, numbered, as
    /// fast as the channel takes them, and the receiver answers with numbered `Ping`s
    /// as fast (tests of the channel and of Linux's agent run this way). They carry no
    /// measurement and are never uploaded: [`Exercise`].
    Exercise = 4,
    /// A piece of a rhythm strip: raw samples around an alarm, sent only when the
    /// system description asks for strips (off by default): [`Strip`].
    Strip = 5,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Beat),
            2 => Some(Self::Summary),
            3 => Some(Self::Alarm),
            4 => Some(Self::Exercise),
            5 => Some(Self::Strip),
            _ => None,
        }
    }
}

/// The start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Header {
    /// A [`RecordKind`].
    pub kind: u8,
    /// [`VERSION`].
    pub version: u8,
    pub _reserved: [u8; 2],
    /// Counts every record since the monitor started, whatever its kind, from 0.
    pub seq: U64,
    /// When it happened: milliseconds of the recording since the monitor started
    /// sampling (sample index × 1000 / sampling rate), so derived from the samples, not
    /// from a clock connectivity could set.
    pub t_ms: U64,
}

/// One detected beat.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Beat {
    pub header: Header,
    /// The interval from the previous beat, in ms; 0 for the first beat after a gap.
    pub rr_ms: U32,
    /// Signal quality at the beat, 0 (unusable) to 100.
    pub quality: u8,
    pub _reserved: [u8; 3],
}

/// Once a second of signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Summary {
    pub header: Header,
    /// Heart rate as displayed, in tenths of a beat per minute; 0 when none is known.
    pub hr_decibpm: U16,
    /// Signal quality over the second, 0 to 100.
    pub quality: u8,
    pub _reserved: u8,
    /// The alarms active at the end of the second, one bit per [`AlarmKind`]
    /// (`1 << kind`).
    pub active_alarms: U32,
    /// Samples the monitor could not take on time since it started (overruns).
    pub overruns: U32,
    /// Commands rejected since the monitor started.
    pub rejected_commands: U32,
}

/// An alarm condition.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmKind {
    /// No beat for the asystole delay (physiological, high priority).
    Asystole = 0,
    /// Heart rate below its limit for the onset delay (physiological).
    Bradycardia = 1,
    /// Heart rate above its limit for the onset delay (physiological).
    Tachycardia = 2,
    /// The front end reports an electrode off, or the signal is railed (technical).
    LeadsOff = 3,
    /// The signal is too noisy to measure (technical).
    Unusable = 4,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 5] =
        [Self::Asystole, Self::Bradycardia, Self::Tachycardia, Self::LeadsOff, Self::Unusable];

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }

    /// The name the schema uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Asystole => "asystole",
            Self::Bradycardia => "bradycardia",
            Self::Tachycardia => "tachycardia",
            Self::LeadsOff => "leads-off",
            Self::Unusable => "unusable-signal",
        }
    }

    /// Physiological (about the patient) or technical (about the equipment).
    pub fn physiological(self) -> bool {
        matches!(self, Self::Asystole | Self::Bradycardia | Self::Tachycardia)
    }

    /// Its bit in an alarm mask (`Summary::active_alarms`): `1 << kind`.
    pub const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// The kinds whose bits are set in `mask`, in [`AlarmKind::ALL`]'s order.
    pub fn in_mask(mask: u32) -> impl Iterator<Item = AlarmKind> {
        Self::ALL.into_iter().filter(move |k| mask & k.bit() != 0)
    }
}

/// An alarm raised or cleared.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct AlarmEvent {
    pub header: Header,
    /// An [`AlarmKind`].
    pub alarm: u8,
    /// 1 raised, 0 cleared.
    pub raised: u8,
    pub _reserved: [u8; 2],
    /// The value that crossed the limit, as `septum_ecg::AlarmChange` gives it: the
    /// heart rate in tenths of bpm (bradycardia, tachycardia), the pause in ms
    /// (asystole), how long the signal has been lost in ms (leads off), the quality
    /// 0..=100 (unusable signal).
    pub value: U32,
    /// The limit it crossed, in the same unit.
    pub limit: U32,
}

/// A channel-exercise record (no sensor): the header, and a pattern derived from the
/// sequence number that the receiver may check.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Exercise {
    pub header: Header,
    /// `seq` XOR [`Exercise::PATTERN`].
    pub check: U64,
}

impl Exercise {
    pub const PATTERN: u64 = 0x5EB7_0000_5EB7_0000;

    pub fn new(seq: u64, t_ms: u64) -> Self {
        Self { header: Header::new(RecordKind::Exercise, seq, t_ms), check: (seq ^ Self::PATTERN).into() }
    }

    /// Whether the check word matches the sequence number.
    pub fn intact(&self) -> bool {
        self.check.get() == self.header.seq.get() ^ Self::PATTERN
    }
}

/// One piece of a rhythm strip: [`Strip::SAMPLES`] raw samples (µV, `i16::MIN` where
/// the leads were off) from sample `first` on, piece `piece` of `pieces` of the strip
/// the alarm `alarm` (an [`AlarmKind`]) raised. The only raw ECG that ever leaves the
/// critical partition, and only when configured.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Strip {
    pub header: Header,
    pub alarm: u8,
    /// How many of `samples` are used (the last piece may hold fewer).
    pub count: u8,
    pub piece: U16,
    pub pieces: U16,
    /// The recording rate, so the strip can be drawn without anything else.
    pub rate_hz: U16,
    /// Index of the first sample, counted from the monitor's start (low 32 bits).
    pub first: U32,
    pub samples: [I16; Strip::SAMPLES],
}

impl Strip {
    /// Samples a piece carries: what fits [`MAX_RECORD`] after the fields above.
    pub const SAMPLES: usize = 8;

    /// The `i`th sample in µV, or None past `count` or where the leads were off.
    pub fn sample(&self, i: usize) -> Option<i16> {
        let v = self.samples.get(i).filter(|_| i < self.count as usize)?.get();
        (v != i16::MIN).then_some(v)
    }
}

/// A record, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Beat(Beat),
    Summary(Summary),
    Alarm(AlarmEvent),
    Exercise(Exercise),
    Strip(Strip),
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its kind's record.
    Short,
    /// A version other than [`VERSION`].
    Version(u8),
    /// A kind this version does not define.
    Kind(u8),
}

impl Record {
    /// Parses a record; bytes after the record's own length are ignored.
    pub fn parse(b: &[u8]) -> Result<Record, ParseError> {
        let (h, _) = Header::read_from_prefix(b).map_err(|_| ParseError::Short)?;
        if h.version != VERSION {
            return Err(ParseError::Version(h.version));
        }
        match RecordKind::from_u8(h.kind) {
            Some(RecordKind::Beat) => {
                Beat::read_from_prefix(b).map(|(r, _)| Record::Beat(r)).map_err(|_| ParseError::Short)
            }
            Some(RecordKind::Summary) => {
                Summary::read_from_prefix(b).map(|(r, _)| Record::Summary(r)).map_err(|_| ParseError::Short)
            }
            Some(RecordKind::Alarm) => {
                AlarmEvent::read_from_prefix(b).map(|(r, _)| Record::Alarm(r)).map_err(|_| ParseError::Short)
            }
            Some(RecordKind::Exercise) => {
                Exercise::read_from_prefix(b).map(|(r, _)| Record::Exercise(r)).map_err(|_| ParseError::Short)
            }
            Some(RecordKind::Strip) => {
                Strip::read_from_prefix(b).map(|(r, _)| Record::Strip(r)).map_err(|_| ParseError::Short)
            }
            None => Err(ParseError::Kind(h.kind)),
        }
    }

    pub fn header(&self) -> &Header {
        match self {
            Record::Beat(r) => &r.header,
            Record::Summary(r) => &r.header,
            Record::Alarm(r) => &r.header,
            Record::Exercise(r) => &r.header,
            Record::Strip(r) => &r.header,
        }
    }

    /// The record's bytes, as sent.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Record::Beat(r) => r.as_bytes(),
            Record::Summary(r) => r.as_bytes(),
            Record::Alarm(r) => r.as_bytes(),
            Record::Exercise(r) => r.as_bytes(),
            Record::Strip(r) => r.as_bytes(),
        }
    }
}

impl Header {
    pub fn new(kind: RecordKind, seq: u64, t_ms: u64) -> Self {
        Self { kind: kind as u8, version: VERSION, _reserved: [0; 2], seq: seq.into(), t_ms: t_ms.into() }
    }
}

/// The commands the critical monitor accepts. Anything else (unknown kinds, and on
/// purpose anything that would silence an alarm, change a limit or alter a
/// measurement, which no kind here can express) is rejected and counted.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// Connectivity is alive; no effect but a count. Lets the monitor report whether
    /// its data has a reader.
    Ping = 1,
    /// Connectivity says whether it currently reaches the cloud (`arg` 1) or not (0);
    /// the monitor only shows it on its console.
    UplinkState = 2,
}

impl CommandKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Ping),
            2 => Some(Self::UplinkState),
            _ => None,
        }
    }
}

/// A command from connectivity.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Command {
    /// A [`CommandKind`].
    pub kind: u8,
    /// [`VERSION`].
    pub version: u8,
    pub _reserved: [u8; 2],
    pub arg: U32,
    /// The sender's own numbering, counted by the monitor for gaps.
    pub seq: U64,
}

/// Why a command was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not a whole command.
    Short,
    Version(u8),
    /// A kind the monitor does not accept.
    Kind(u8),
    /// An accepted kind with an argument outside its range.
    Argument,
}

impl Command {
    pub fn new(kind: CommandKind, arg: u32, seq: u64) -> Self {
        Self { kind: kind as u8, version: VERSION, _reserved: [0; 2], arg: arg.into(), seq: seq.into() }
    }

    /// The command in `b`, if the monitor accepts it.
    pub fn parse(b: &[u8]) -> Result<(CommandKind, Command), Rejected> {
        let (c, _) = Command::read_from_prefix(b).map_err(|_| Rejected::Short)?;
        if c.version != VERSION {
            return Err(Rejected::Version(c.version));
        }
        let kind = CommandKind::from_u8(c.kind).ok_or(Rejected::Kind(c.kind))?;
        match kind {
            CommandKind::Ping => {}
            CommandKind::UplinkState if c.arg.get() > 1 => return Err(Rejected::Argument),
            CommandKind::UplinkState => {}
        }
        Ok((kind, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fit_and_round_trip() {
        let beat =
            Beat { header: Header::new(RecordKind::Beat, 7, 1234), rr_ms: 800.into(), quality: 97, _reserved: [0; 3] };
        let sum = Summary {
            header: Header::new(RecordKind::Summary, 8, 2000),
            hr_decibpm: 750.into(),
            quality: 90,
            _reserved: 0,
            active_alarms: AlarmKind::Bradycardia.bit().into(),
            overruns: 0.into(),
            rejected_commands: 3.into(),
        };
        let alarm = AlarmEvent {
            header: Header::new(RecordKind::Alarm, 9, 2100),
            alarm: AlarmKind::Asystole as u8,
            raised: 1,
            _reserved: [0; 2],
            value: 0.into(),
            limit: 0.into(),
        };
        let ex = Exercise::new(10, 2200);
        let mut strip = Strip {
            header: Header::new(RecordKind::Strip, 11, 2300),
            alarm: AlarmKind::Asystole as u8,
            count: 3,
            piece: 4.into(),
            pieces: 9.into(),
            rate_hz: 250.into(),
            first: 1000.into(),
            samples: [0.into(); Strip::SAMPLES],
        };
        strip.samples[0] = 120.into();
        strip.samples[1] = i16::MIN.into();
        strip.samples[2] = (-80).into();
        let got: [Option<i16>; Strip::SAMPLES] = core::array::from_fn(|i| strip.sample(i));
        assert_eq!(got, [Some(120), None, Some(-80), None, None, None, None, None]);
        assert!(ex.intact());
        for r in
            [Record::Beat(beat), Record::Summary(sum), Record::Alarm(alarm), Record::Exercise(ex), Record::Strip(strip)]
        {
            assert!(r.as_bytes().len() <= MAX_RECORD);
            assert_eq!(Record::parse(r.as_bytes()), Ok(r));
            assert_eq!(Record::parse(&r.as_bytes()[..r.as_bytes().len() - 1]), Err(ParseError::Short));
        }
        let mut bytes = [0u8; 64];
        bytes[..beat.as_bytes().len()].copy_from_slice(beat.as_bytes());
        bytes[1] = 2;
        assert_eq!(Record::parse(&bytes), Err(ParseError::Version(2)));
        bytes[1] = VERSION;
        bytes[0] = 9;
        assert_eq!(Record::parse(&bytes), Err(ParseError::Kind(9)));
    }

    /// MED-006: only the listed commands are accepted; every other kind is rejected.
    #[test]
    fn only_the_listed_commands_are_accepted() {
        let ok = Command::new(CommandKind::UplinkState, 1, 5);
        assert_eq!(Command::parse(ok.as_bytes()), Ok((CommandKind::UplinkState, ok)));
        assert_eq!(Command::parse(Command::new(CommandKind::UplinkState, 2, 5).as_bytes()), Err(Rejected::Argument));
        let mut accepted = 0;
        for kind in 0..=255u8 {
            let mut c = Command::new(CommandKind::Ping, 0, 0);
            c.kind = kind;
            if Command::parse(c.as_bytes()).is_ok() {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 2);
        assert_eq!(Command::parse(&[1, VERSION]), Err(Rejected::Short));
    }
}

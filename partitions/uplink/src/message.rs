//! A vitals record as the message uploaded for it: its topic and its JSON body, as
//! `docs/vitals.schema.json` defines them. Beats, summaries, alarms and the pieces of
//! rhythm strips (raw samples around an alarm, which the monitor sends only when
//! configured to) travel; `Exercise` records (a monitor with no sensor exercising the
//! channel) carry no measurement and map to nothing.

use septum_vitals::{AlarmKind, Record, Strip};
use serde_json::{json, Value};

/// The three message kinds, one topic each: `septum/<device>/<kind's topic>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Beat,
    Summary,
    Alarm,
    Strip,
}

impl Kind {
    /// The last topic level.
    pub fn topic(self) -> &'static str {
        match self {
            Kind::Beat => "beats",
            Kind::Summary => "summary",
            Kind::Alarm => "alarms",
            Kind::Strip => "strips",
        }
    }
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub topic: String,
    pub payload: String,
}

/// Whether `record` is uploaded at all (and so spooled).
pub fn uploaded(record: &Record) -> bool {
    matches!(record, Record::Beat(_) | Record::Summary(_) | Record::Alarm(_) | Record::Strip(_))
}

/// Alarms are kept longest when the spool is full (see `spool`).
pub fn is_alarm(record: &Record) -> bool {
    matches!(record, Record::Alarm(_))
}

/// The topic prefix of a device: `septum/<device>/`.
pub fn topic_prefix(device: &str) -> String {
    format!("septum/{device}/")
}

/// The message for `record` from `device`, or `None` for records that are not uploaded.
pub fn message(device: &str, record: &Record) -> Option<Message> {
    let h = record.header();
    let (seq, t_ms) = (h.seq.get(), h.t_ms.get());
    let (kind, body) = match record {
        Record::Beat(b) => (
            Kind::Beat,
            json!({
                "device": device, "seq": seq, "t_ms": t_ms,
                "rr_ms": b.rr_ms.get(), "quality": b.quality,
            }),
        ),
        Record::Summary(s) => (
            Kind::Summary,
            json!({
                "device": device, "seq": seq, "t_ms": t_ms,
                "hr_bpm": f64::from(s.hr_decibpm.get()) / 10.0,
                "quality": s.quality,
                "active_alarms": active_alarms(s.active_alarms.get()),
                "overruns": s.overruns.get(),
                "rejected_commands": s.rejected_commands.get(),
            }),
        ),
        Record::Alarm(a) => {
            let (value, limit, unit) = alarm_values(a.alarm, a.value.get(), a.limit.get());
            (
                Kind::Alarm,
                json!({
                    "device": device, "seq": seq, "t_ms": t_ms,
                    "alarm": alarm_name(a.alarm),
                    "raised": a.raised != 0,
                    "value": value,
                    "limit": limit,
                    "unit": unit,
                }),
            )
        }
        Record::Strip(p) => (
            Kind::Strip,
            json!({
                "device": device, "seq": seq, "t_ms": t_ms,
                "alarm": alarm_name(p.alarm),
                "piece": p.piece.get(), "pieces": p.pieces.get(),
                "rate_hz": p.rate_hz.get(), "first_sample": p.first.get(),
                // µV; null where the leads were off.
                "samples_uv": (0..usize::from(p.count).min(Strip::SAMPLES)).map(|i| p.sample(i)).collect::<Vec<_>>(),
            }),
        ),
        Record::Exercise(_) => return None,
    };
    Some(Message { kind, topic: format!("{}{}", topic_prefix(device), kind.topic()), payload: body.to_string() })
}

/// An alarm event's value and limit in the unit its kind uses, and the unit's name
/// (`septum_ecg::AlarmChange`): heart rates in bpm (the record carries tenths), the
/// pause of an asystole and the time the signal was lost in ms, and the signal's
/// quality (0-100) against its threshold for an unusable signal.
fn alarm_values(alarm: u8, value: u32, limit: u32) -> (Value, Value, &'static str) {
    match AlarmKind::from_u8(alarm) {
        Some(AlarmKind::Bradycardia | AlarmKind::Tachycardia) => {
            ((f64::from(value) / 10.0).into(), (f64::from(limit) / 10.0).into(), "bpm")
        }
        Some(AlarmKind::Asystole | AlarmKind::LeadsOff) => (value.into(), limit.into(), "ms"),
        Some(AlarmKind::Unusable) => (value.into(), limit.into(), "quality"),
        None => (value.into(), limit.into(), "unknown"),
    }
}

/// The names of the alarms whose bits are set, in [`AlarmKind`] order; bits no kind
/// defines are reported as `"unknown"` once (the monitor's newer format, say), rather
/// than dropped silently.
fn active_alarms(bits: u32) -> Vec<Value> {
    let mut out: Vec<Value> = AlarmKind::in_mask(bits).map(|k| k.name().into()).collect();
    let known = AlarmKind::ALL.iter().fold(0u32, |m, k| m | k.bit());
    if bits & !known != 0 {
        out.push("unknown".into());
    }
    out
}

fn alarm_name(alarm: u8) -> &'static str {
    AlarmKind::from_u8(alarm).map_or("unknown", AlarmKind::name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use septum_vitals::{AlarmEvent, Beat, Exercise, Header, RecordKind, Summary};

    pub fn beat(seq: u64) -> Record {
        Record::Beat(Beat {
            header: Header::new(RecordKind::Beat, seq, seq * 800),
            rr_ms: 800.into(),
            quality: 97,
            _reserved: [0; 3],
        })
    }

    pub fn summary(seq: u64) -> Record {
        Record::Summary(Summary {
            header: Header::new(RecordKind::Summary, seq, 5000),
            hr_decibpm: 725.into(),
            quality: 90,
            _reserved: 0,
            active_alarms: ((1 << AlarmKind::Tachycardia as u8) | (1 << AlarmKind::LeadsOff as u8)).into(),
            overruns: 1.into(),
            rejected_commands: 2.into(),
        })
    }

    pub fn alarm(seq: u64) -> Record {
        Record::Alarm(AlarmEvent {
            header: Header::new(RecordKind::Alarm, seq, 6000),
            alarm: AlarmKind::Tachycardia as u8,
            raised: 1,
            _reserved: [0; 2],
            value: 1425.into(),
            limit: 1200.into(),
        })
    }

    fn schema() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/vitals.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/vitals.schema.json")).expect("schema is JSON")
    }

    fn body(m: &Message) -> Value {
        serde_json::from_str(&m.payload).unwrap()
    }

    #[test]
    fn records_map_to_their_topics_and_bodies() {
        let m = message("dev-1", &beat(7)).unwrap();
        assert_eq!((m.kind, m.topic.as_str()), (Kind::Beat, "septum/dev-1/beats"));
        assert_eq!(body(&m), json!({"device": "dev-1", "seq": 7, "t_ms": 5600, "rr_ms": 800, "quality": 97}));

        let m = message("dev-1", &summary(8)).unwrap();
        assert_eq!(m.topic, "septum/dev-1/summary");
        assert_eq!(
            body(&m),
            json!({"device": "dev-1", "seq": 8, "t_ms": 5000, "hr_bpm": 72.5, "quality": 90,
                   "active_alarms": ["tachycardia", "leads-off"], "overruns": 1, "rejected_commands": 2})
        );

        let m = message("dev-1", &alarm(9)).unwrap();
        assert_eq!(m.topic, "septum/dev-1/alarms");
        assert_eq!(
            body(&m),
            json!({"device": "dev-1", "seq": 9, "t_ms": 6000, "alarm": "tachycardia", "raised": true,
                   "value": 142.5, "limit": 120.0, "unit": "bpm"})
        );
        let asystole = Record::Alarm(AlarmEvent {
            header: Header::new(RecordKind::Alarm, 10, 7000),
            alarm: AlarmKind::Asystole as u8,
            raised: 1,
            _reserved: [0; 2],
            value: 4000.into(),
            limit: 4000.into(),
        });
        let m = message("dev-1", &asystole).unwrap();
        assert_eq!((body(&m)["value"].clone(), body(&m)["unit"].clone()), (json!(4000), json!("ms")));

        assert_eq!(message("dev-1", &Record::Exercise(Exercise::new(1, 2))), None, "exercise is not uploaded");
        assert!(!uploaded(&Record::Exercise(Exercise::new(1, 2))) && uploaded(&beat(1)));
        let strip = Strip {
            header: Header::new(RecordKind::Strip, 3, 4),
            alarm: 0,
            count: 0,
            piece: 0.into(),
            pieces: 1.into(),
            rate_hz: 250.into(),
            first: 0.into(),
            samples: [0.into(); Strip::SAMPLES],
        };
        let mut strip = strip;
        strip.count = 2;
        strip.samples[0] = 150.into();
        strip.samples[1] = i16::MIN.into();
        let m = message("dev-1", &Record::Strip(strip)).unwrap();
        assert_eq!(m.topic, "septum/dev-1/strips");
        assert_eq!(
            body(&m),
            json!({"device": "dev-1", "seq": 3, "t_ms": 4, "alarm": "asystole", "piece": 0, "pieces": 1,
                   "rate_hz": 250, "first_sample": 0, "samples_uv": [150, null]})
        );
        assert!(uploaded(&Record::Strip(strip)));
    }

    #[test]
    fn unknown_alarm_kinds_and_bits_are_named_unknown() {
        assert_eq!(active_alarms(1 << 31 | 1), vec![Value::from("asystole"), Value::from("unknown")]);
        assert_eq!(alarm_name(200), "unknown");
    }

    /// NET-002: every message kind validates against the published schema, and the
    /// schema refuses a message missing a field, with an extra field or of another kind.
    #[test]
    fn messages_validate_against_the_published_schema() {
        let schema = schema();
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        let mut piece = Strip {
            header: Header::new(RecordKind::Strip, 4, 5),
            alarm: AlarmKind::Asystole as u8,
            count: 3,
            piece: 2.into(),
            pieces: 125.into(),
            rate_hz: 250.into(),
            first: 1000.into(),
            samples: [0.into(); Strip::SAMPLES],
        };
        piece.samples[1] = i16::MIN.into();
        for r in [beat(1), summary(2), alarm(3), Record::Strip(piece)] {
            let m = message("dev-1", &r).unwrap();
            let v = body(&m);
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", m.payload);
        }
        let mut missing = body(&message("dev-1", &beat(1)).unwrap());
        missing.as_object_mut().unwrap().remove("rr_ms");
        assert!(!validator.is_valid(&missing));
        let mut extra = body(&message("dev-1", &alarm(1)).unwrap());
        extra.as_object_mut().unwrap().insert("silence".into(), true.into());
        assert!(!validator.is_valid(&extra));
        assert!(!validator.is_valid(&json!({"device": "dev-1", "seq": 1, "t_ms": 1})));
        let mut bad = body(&message("dev-1", &alarm(1)).unwrap());
        bad["alarm"] = "fire".into();
        assert!(!validator.is_valid(&bad));
    }
}

//! The critical monitor's ECG processing: from samples to beats, heart rate, signal
//! quality and alarms (MED-010..MED-016 in `docs/requirements.md`; the design, the
//! alarm table and the bench's figures in `docs/monitoring.md`).
//!
//! Integer arithmetic only, no allocation, a fixed-size [`Monitor`], and a bounded
//! amount of work per sample whatever the signal: the partition runs it with the MMU
//! off, and its cost per sample is the same on every run.
//!
//! ```text
//! Sample -> filter (comb low-pass, high-pass, derivative, square, integrate)
//!        -> detector (adaptive thresholds, refractory, T wave, search-back) -> beat
//!        -> heart rate (trimmed mean of RR)      -> per-second summary
//!        -> quality (leads off, rails, noise)    -> alarms (technical gate physiological)
//! ```
//!
//! With the `std` feature (host tools only): writing recordings, the synthetic
//! recording generator ([`synth`]) and the evaluation the bench and tests share
//! ([`eval`]).

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod alarm;
pub mod detector;
pub mod filter;
pub mod monitor;
pub mod quality;
pub mod rate;
pub mod recording;
pub mod sample;

#[cfg(any(test, feature = "std"))]
pub mod eval;
#[cfg(test)]
mod requirements;
#[cfg(any(test, feature = "std"))]
pub mod synth;

pub use alarm::{AlarmChange, LimitError, Limits, UnknownLimit};
pub use monitor::{BeatEvent, ConfigError, Events, Monitor, SecondSummary};
pub use recording::{Recording, RecordingError};
pub use sample::Sample;
pub use septum_vitals::AlarmKind;

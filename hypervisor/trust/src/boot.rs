//! The boot-time checks as the hypervisor runs them; each returns its result together
//! with the audit event that records it.
//!
//! Which event records which outcome is decided here, not in the EL2 binary, so that the
//! host tests show every refusal reaching the audit log. The caller appends
//! [`Checked::event`] as it is, after stamping `ticks` with its clock (it is 0 here: this
//! crate has no clock).
//!
//! | check | success | refusal (`result` = [`TrustError::code`], `detail` = 0) |
//! |-------|---------|---------|
//! | [`root_chain`] | `RootVerified`, detail = root version, subject = anchor | subject = anchor |
//! | [`config`] | `ConfigVerified`, detail = body length, subject = SHA-512 of the body | subject = SHA-512 of the envelope (zeros if missing) |
//! | [`partition`] | `ImageVerified`, detail = security counter, subject = the manifest's image hash | subject = SHA-512 of the device tree in RAM if the device tree was refused, else of the image in RAM |
//!
//! Root and configuration events concern no partition ([`NO_PARTITION`]); a partition's
//! carry its index in the configuration.
//!
//! Two more records say what the hypervisor did about a refusal:
//!
//! | record | `result` | `detail` |
//! |--------|----------|----------|
//! | [`refused`]: `PartitionRefused` (the partition is not started) | [`Refusal::code`]: a [`TrustError::code`] (below 64), or a [`PayloadFault`] (64 and up) | the [`Payload`] at fault, 0 for a trust refusal |
//! | [`bundle_refused`]: `BundleRefused` (nothing is started) | the bundle's error code (`septum_abi::bundle::BundleError::code`) | what the caller names (e.g. the entry at fault) |

use core::fmt;

use crate::audit::{Event, EventKind, NO_PARTITION};
use crate::counters::Floors;
use crate::format::{Manifest, RootBody};
use crate::hash::{self, Hash};
use crate::verify::{self, Expected, TrustError};

#[cfg(test)]
mod tests;

/// A check's result and the audit event that records it.
#[derive(Clone, Copy, Debug)]
pub struct Checked<T> {
    pub result: Result<T, TrustError>,
    /// To append to the audit log once the caller has set `ticks`.
    pub event: Event,
}

/// How long the two steps of [`partition`] took, in ticks of the caller's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Finding and verifying the manifest (signatures, bindings, counter).
    pub manifest: u64,
    /// Checking the image and the device tree against the manifest (length, SHA-512);
    /// 0 when the manifest was refused, as they are then not looked at.
    pub image: u64,
}

/// A partition's payloads as they lie in its RAM after the copy: what it would run.
#[derive(Clone, Copy, Debug)]
pub struct InRam<'a> {
    pub image: &'a [u8],
    pub dtb: &'a [u8],
}

/// Verifies the root chain (genesis first) against the built-in `anchor` and the stored
/// floors ([`verify::verify_root_chain`]); the result is the root in force.
pub fn root_chain<'a>(
    anchor: &Hash,
    chain: impl Iterator<Item = &'a [u8]>,
    floors: &Floors,
    production: bool,
) -> Checked<RootBody> {
    let result = verify::verify_root_chain(anchor, chain, floors, production);
    // The anchor is the subject either way: it names the chain the bundle had to extend.
    let event = match &result {
        Ok(root) => event(EventKind::RootVerified, NO_PARTITION, 0, u64::from(root.version), anchor),
        Err(e) => event(EventKind::VerificationFailed, NO_PARTITION, e.code(), 0, anchor),
    };
    Checked { result, event }
}

/// Verifies the configuration envelope (`None`: the bundle has none) with the keys of
/// `root` ([`verify::verify_config`]); the result is its body.
pub fn config<'a>(root: &RootBody, envelope: Option<&'a [u8]>, floors: &Floors) -> Checked<&'a [u8]> {
    let result = envelope.ok_or(TrustError::Missing).and_then(|e| verify::verify_config(root, e, floors));
    let event = match &result {
        Ok(body) => event(EventKind::ConfigVerified, NO_PARTITION, 0, body.len() as u64, &hash::sha512(body)),
        Err(e) => {
            // The refused bytes are all there is to name: the body is not trusted.
            let subject = envelope.map_or([0; crate::HASH_LEN], hash::sha512);
            event(EventKind::VerificationFailed, NO_PARTITION, e.code(), 0, &subject)
        }
    };
    Checked { result, event }
}

/// Verifies partition `index`'s manifest envelope (`None`: the bundle has none,
/// [`verify::verify_manifest`]), then the image and the device tree as they lie in the
/// partition's RAM against it ([`verify::verify_image`], [`verify::verify_device_tree`]);
/// the result is the manifest.
///
/// `clock` is read before, between and after the two steps (three times, twice if the
/// manifest is refused), for the returned [`Split`]: the hypervisor logs both times.
pub fn partition(
    root: &RootBody,
    manifest: Option<&[u8]>,
    expected: &Expected<'_>,
    floors: &Floors,
    index: u8,
    in_ram: InRam<'_>,
    mut clock: impl FnMut() -> u64,
) -> (Checked<Manifest>, Split) {
    let start = clock();
    let verified = manifest.ok_or(TrustError::Missing).and_then(|m| verify::verify_manifest(root, m, expected, floors));
    let signed = clock();
    let mut split = Split { manifest: signed.wrapping_sub(start), image: 0 };
    let result = verified.and_then(|m| {
        let checked = verify::verify_image(&m, in_ram.image)
            .and_then(|()| verify::verify_device_tree(&m, in_ram.dtb))
            .map(|()| m);
        split.image = clock().wrapping_sub(signed);
        checked
    });
    let event = match &result {
        Ok(m) => event(EventKind::ImageVerified, index, 0, m.security_counter, &m.image_hash),
        // What was in RAM, whichever step refused it: what the partition would have run.
        Err(e @ (TrustError::DeviceTreeLength { .. } | TrustError::DeviceTreeHash)) => {
            event(EventKind::VerificationFailed, index, e.code(), 0, &hash::sha512(in_ram.dtb))
        }
        Err(e) => event(EventKind::VerificationFailed, index, e.code(), 0, &hash::sha512(in_ram.image)),
    };
    (Checked { result, event }, split)
}

/// A payload the bundle carries for a partition (the `detail` of a `PartitionRefused`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    Image = 1,
    DeviceTree = 2,
    Manifest = 3,
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image => "image",
            Self::DeviceTree => "device tree",
            Self::Manifest => "manifest",
        })
    }
}

/// What is wrong with a payload before any signature is looked at. The codes are stable
/// (they are stored) and above every [`TrustError::code`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFault {
    /// The bundle has no such entry.
    Missing = 64,
    /// Its CRC-32 does not match: the bundle was damaged (or edited without care).
    Corrupted = 65,
    /// It does not fit where the configuration puts it.
    TooLarge = 66,
}

/// Why a partition is not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The chain of trust refused it (its `VerificationFailed` record says about what).
    Trust(TrustError),
    /// One of its payloads is missing, corrupted or too large.
    Payload(Payload, PayloadFault),
}

impl Refusal {
    /// The `result` of its `PartitionRefused` record.
    pub fn code(&self) -> u8 {
        match self {
            Self::Trust(e) => e.code(),
            Self::Payload(_, fault) => *fault as u8,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trust(e) => write!(f, "{e}"),
            Self::Payload(what, PayloadFault::Missing) => write!(f, "the bundle has no {what} for it"),
            Self::Payload(what, PayloadFault::Corrupted) => {
                write!(f, "its {what} in the bundle fails its CRC-32: corrupted")
            }
            Self::Payload(what, PayloadFault::TooLarge) => {
                write!(f, "its {what} does not fit where the configuration puts it")
            }
        }
    }
}

/// The record of partition `index` not being started, for `refusal`.
pub fn refused(index: u8, refusal: &Refusal) -> Event {
    let detail = match refusal {
        Refusal::Trust(_) => 0,
        Refusal::Payload(what, _) => *what as u64,
    };
    event(EventKind::PartitionRefused, index, refusal.code(), detail, &[0; crate::HASH_LEN])
}

/// The record of the boot bundle being refused as a whole (nothing starts): `code` is the
/// bundle error's stable code, `detail` what the caller names with it.
pub fn bundle_refused(code: u8, detail: u64) -> Event {
    event(EventKind::BundleRefused, NO_PARTITION, code, detail, &[0; crate::HASH_LEN])
}

fn event(kind: EventKind, partition: u8, result: u8, detail: u64, subject: &Hash) -> Event {
    Event { kind, partition, result, ticks: 0, detail, subject: *subject }
}

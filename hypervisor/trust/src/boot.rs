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
//! | [`partition`] | `ImageVerified`, detail = security counter, subject = the manifest's image hash | subject = SHA-512 of the image in RAM |
//!
//! Root and configuration events concern no partition ([`NO_PARTITION`]); a partition's
//! carry its index in the configuration.

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
    /// Checking the image against the manifest (length, SHA-512); 0 when the manifest
    /// was refused, as the image is then not looked at.
    pub image: u64,
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
/// [`verify::verify_manifest`]), then the image bytes as they lie in the partition's
/// RAM against it ([`verify::verify_image`]); the result is the manifest.
///
/// `clock` is read before, between and after the two steps (three times, twice if the
/// manifest is refused), for the returned [`Split`]: the hypervisor logs both times.
pub fn partition(
    root: &RootBody,
    manifest: Option<&[u8]>,
    expected: &Expected<'_>,
    floors: &Floors,
    index: u8,
    image_in_ram: &[u8],
    mut clock: impl FnMut() -> u64,
) -> (Checked<Manifest>, Split) {
    let start = clock();
    let verified = manifest.ok_or(TrustError::Missing).and_then(|m| verify::verify_manifest(root, m, expected, floors));
    let signed = clock();
    let mut split = Split { manifest: signed.wrapping_sub(start), image: 0 };
    let result = verified.and_then(|m| {
        let checked = verify::verify_image(&m, image_in_ram).map(|()| m);
        split.image = clock().wrapping_sub(signed);
        checked
    });
    let event = match &result {
        Ok(m) => event(EventKind::ImageVerified, index, 0, m.security_counter, &m.image_hash),
        // What was in RAM, whichever step refused it: the image the partition would have run.
        Err(e) => event(EventKind::VerificationFailed, index, e.code(), 0, &hash::sha512(image_in_ram)),
    };
    (Checked { result, event }, split)
}

fn event(kind: EventKind, partition: u8, result: u8, detail: u64, subject: &Hash) -> Event {
    Event { kind, partition, result, ticks: 0, detail, subject: *subject }
}

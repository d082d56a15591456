//! `[channel.<name>]` tables: the memory shared between two partitions, laid out with
//! the channel crate's own geometry (so it is defined once), and turned into regions of
//! both partitions: each end's writable region read-write for it and read-only for the
//! peer, plus one doorbell page per end.
//!
//! ```toml
//! [channel.vitals]
//! from = "critical-monitor"     # producer (queuing) or writer (sampling)
//! to = "connectivity"           # consumer or reader
//! kind = "queuing"              # or "sampling"
//! slot_size = 64                # queuing: bytes per slot (16 of them header)
//! depth = 64                    # queuing: slots, a power of two
//! capacity = 64                 # sampling: largest value
//! memory = 0x4F00_0000          # physical base, 4 KiB aligned
//! ipa = 0x3000_0000             # where both ends see it (default: memory)
//! doorbell_rate = 1000          # rings per second each end may signal (default 1000)
//! checksum = "crc32c"           # or "none" (default "crc32c"), see below
//! ```
//!
//! `checksum = "none"` drops the per-message CRC-32C, for payloads that authenticate
//! themselves end to end (a signed update image): the receiver then relies on the
//! payload's own signature for its integrity, and checks only the message's format,
//! sequence number and length. A channel with a critical partition at either end
//! always carries the checksum (CH-012): the validator refuses "none" there.

use septum_abi::config::{MemRegion, RegionKind};
use septum_ipc_channel::{sampling, Checksum, Geometry};
use serde::Deserialize;
use toml::Spanned;

const PAGE: u64 = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    from: Spanned<String>,
    to: Spanned<String>,
    kind: Spanned<String>,
    slot_size: Option<u32>,
    depth: Option<u32>,
    capacity: Option<u32>,
    memory: Spanned<u64>,
    ipa: Option<u64>,
    #[serde(default = "default_rate")]
    doorbell_rate: u32,
    checksum: Option<Spanned<String>>,
}

fn default_rate() -> u32 {
    1000
}

/// What kind of port a channel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Queuing { slot_size: u32, depth: u32 },
    Sampling { capacity: u32 },
}

/// One end of a channel, as its partition's device tree describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub channel: String,
    pub kind: Kind,
    /// `producer`/`consumer` (queuing) or `writer`/`reader` (sampling).
    pub role: &'static str,
    /// The region this end writes (IPA, size); none for a sampling reader.
    pub own: Option<(u64, u64)>,
    /// The region the peer writes (IPA, size); none for a sampling writer.
    pub peer: Option<(u64, u64)>,
    /// The doorbell this end rings to signal its peer.
    pub doorbell: u64,
    /// The virtual interrupt this end receives when its peer rings (the channel's
    /// doorbell INTID, [`septum_abi::config::DOORBELL_INTIDS`]).
    pub interrupt: u32,
    /// What the channel's messages carry to be checked (both ends alike).
    pub checksum: Checksum,
}

/// A checked channel: the regions and endpoint each side gets.
pub(super) struct Laid {
    pub from: String,
    pub to: String,
    pub line: usize,
    pub from_regions: Vec<MemRegion>,
    pub to_regions: Vec<MemRegion>,
    pub from_end: Endpoint,
    pub to_end: Endpoint,
    /// Where `checksum` is written, if it is (for a refusal that names it).
    pub checksum_at: Option<usize>,
}

fn round_page(v: u64) -> u64 {
    v.div_ceil(PAGE) * PAGE
}

/// A region; a doorbell's signal (partition, INTID) is filled in once the partitions'
/// indices are known.
fn region(pa: u64, ipa: u64, size: u64, kind: RegionKind, param: u32) -> MemRegion {
    MemRegion { pa, ipa, size, kind: kind as u32, param, signal_partition: 0, signal_intid: 0 }
}

/// Lays out a channel; `Err((offset, message))` names what is wrong and where.
pub(super) fn lay_out(name: &str, raw: &RawChannel, line: usize) -> Result<Laid, (usize, String)> {
    let from = raw.from.get_ref().clone();
    let to = raw.to.get_ref().clone();
    if from == to {
        return Err((
            raw.to.span().start,
            format!("channel {name}: from and to are both {from}; a channel joins two partitions"),
        ));
    }
    let base = *raw.memory.get_ref();
    let ipa = raw.ipa.unwrap_or(base);
    if !base.is_multiple_of(PAGE) || !ipa.is_multiple_of(PAGE) {
        return Err((raw.memory.span().start, format!("channel {name}: memory and ipa must be 4 KiB aligned")));
    }
    let kind = match raw.kind.get_ref().as_str() {
        "queuing" => {
            let (Some(slot_size), Some(depth)) = (raw.slot_size, raw.depth) else {
                return Err((
                    raw.kind.span().start,
                    format!("channel {name}: a queuing channel needs slot_size and depth"),
                ));
            };
            Geometry::new(slot_size, depth).map_err(|e| {
                let why = match e {
                    septum_ipc_channel::GeometryError::Depth => "depth must be a power of two, 2..=65536",
                    _ => "slot_size must be a multiple of 16, 32..=65536",
                };
                (raw.kind.span().start, format!("channel {name}: {why}"))
            })?;
            Kind::Queuing { slot_size, depth }
        }
        "sampling" => {
            let Some(capacity) = raw.capacity.filter(|&c| c > 0) else {
                return Err((raw.kind.span().start, format!("channel {name}: a sampling channel needs capacity > 0")));
            };
            Kind::Sampling { capacity }
        }
        other => {
            return Err((
                raw.kind.span().start,
                format!("channel {name}: kind \"{other}\" is neither \"queuing\" nor \"sampling\""),
            ))
        }
    };
    let checksum = match &raw.checksum {
        None => Checksum::default(),
        Some(given) => Checksum::from_name(given.get_ref()).ok_or_else(|| {
            let what = given.get_ref();
            (given.span().start, format!("channel {name}: checksum \"{what}\" is neither \"crc32c\" nor \"none\""))
        })?,
    };
    let rate = raw.doorbell_rate.max(1);
    use RegionKind::{Doorbell, SharedRo, SharedRw};
    let (from_regions, to_regions, from_end, to_end);
    match kind {
        Kind::Queuing { slot_size, depth } => {
            let geo = Geometry::new(slot_size, depth).map_err(|_| (0, String::new()))?;
            let prod = round_page(geo.producer_region_size() as u64);
            let cons = round_page(geo.consumer_region_size() as u64);
            let (db_from, db_to) = (ipa + prod + cons, ipa + prod + cons + PAGE);
            from_regions = vec![
                region(base, ipa, prod, SharedRw, 0),
                region(base + prod, ipa + prod, cons, SharedRo, 0),
                region(0, db_from, PAGE, Doorbell, rate),
            ];
            to_regions = vec![
                region(base, ipa, prod, SharedRo, 0),
                region(base + prod, ipa + prod, cons, SharedRw, 0),
                region(0, db_to, PAGE, Doorbell, rate),
            ];
            from_end = Endpoint {
                channel: name.into(),
                kind,
                role: "producer",
                own: Some((ipa, prod)),
                peer: Some((ipa + prod, cons)),
                doorbell: db_from,
                interrupt: 0,
                checksum,
            };
            to_end = Endpoint {
                channel: name.into(),
                kind,
                role: "consumer",
                own: Some((ipa + prod, cons)),
                peer: Some((ipa, prod)),
                doorbell: db_to,
                interrupt: 0,
                checksum,
            };
        }
        Kind::Sampling { capacity } => {
            let size = round_page(sampling::region_size(capacity as usize) as u64);
            let (db_from, db_to) = (ipa + size, ipa + size + PAGE);
            from_regions = vec![region(base, ipa, size, SharedRw, 0), region(0, db_from, PAGE, Doorbell, rate)];
            to_regions = vec![region(base, ipa, size, SharedRo, 0), region(0, db_to, PAGE, Doorbell, rate)];
            from_end = Endpoint {
                channel: name.into(),
                kind,
                role: "writer",
                own: Some((ipa, size)),
                peer: None,
                doorbell: db_from,
                interrupt: 0,
                checksum,
            };
            to_end = Endpoint {
                channel: name.into(),
                kind,
                role: "reader",
                own: None,
                peer: Some((ipa, size)),
                doorbell: db_to,
                interrupt: 0,
                checksum,
            };
        }
    }
    let checksum_at = raw.checksum.as_ref().map(|c| c.span().start);
    Ok(Laid { from, to, line, from_regions, to_regions, from_end, to_end, checksum_at })
}

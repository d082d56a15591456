//! Channel doorbells. A doorbell is a page of a partition's guest-physical space that
//! no stage 2 maps, so any access traps; a write is a ring (a signal to the channel's
//! peer), a read returns zero. Only accesses the hardware fully describes (ESR.ISV)
//! are emulated; anything else at a doorbell is a violation like any stage-2 abort.

use septum_abi::config::{PartitionDesc, RegionKind};

use crate::esr::Esr;

/// A decoded access to a doorbell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorbellAccess {
    /// Index of the doorbell region in the partition's regions.
    pub region: usize,
    pub write: bool,
    /// The transfer register (31 = XZR).
    pub reg: u8,
    /// The configured rings per second.
    pub rate: u32,
}

/// Whether a stage-2 data abort at `ipa` is an access to one of the partition's
/// doorbells that can be emulated.
pub fn decode(desc: &PartitionDesc, ipa: u64, esr: Esr) -> Option<DoorbellAccess> {
    let (region, r) =
        desc.regions().iter().enumerate().find(|(_, r)| {
            r.kind() == Some(RegionKind::Doorbell) && r.ipa <= ipa && ipa < r.ipa.saturating_add(r.size)
        })?;
    let da = esr.data_abort();
    da.valid.then_some(DoorbellAccess { region, write: da.write, reg: da.reg, rate: r.param })
}

#[cfg(test)]
mod tests {
    use super::*;
    use septum_abi::config::MemRegion;
    use zerocopy::FromZeros;

    fn desc() -> PartitionDesc {
        let mut d = PartitionDesc::new_zeroed();
        d.regions[0] = MemRegion {
            pa: 0,
            ipa: 0x3100_0000,
            size: 4096,
            kind: RegionKind::Doorbell as u32,
            param: 500,
            signal_partition: 1,
            signal_intid: 960,
        };
        d.region_count = 1;
        d
    }

    /// CH-007: a described write to a doorbell is a ring; anything else is not emulated.
    #[test]
    fn decodes_only_described_accesses_to_doorbells() {
        let str_w0 = Esr((0x24 << 26) | (1 << 25) | (1 << 24) | (0b10 << 22) | (1 << 6) | 0x07);
        assert_eq!(
            decode(&desc(), 0x3100_0008, str_w0),
            Some(DoorbellAccess { region: 0, write: true, reg: 0, rate: 500 })
        );
        let no_isv = Esr(str_w0.0 & !(1 << 24));
        assert_eq!(decode(&desc(), 0x3100_0008, no_isv), None);
        assert_eq!(decode(&desc(), 0x3100_1000, str_w0), None);
    }
}

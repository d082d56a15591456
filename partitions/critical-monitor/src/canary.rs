//! A page of the monitor's own RAM holding a known pattern (`canary=1`): what another
//! partition's device could write there (DMA-003) would show.

/// Bytes of the canary: the last page of the monitor's RAM.
pub const CANARY_BYTES: u64 = 4096;

/// A page of the monitor's own RAM holding a known pattern.
pub struct Canary {
    pub at: u64,
}

impl Canary {
    fn word(i: u64) -> u64 {
        0xC0FF_EE00_0000_0000 | i
    }

    pub fn lay(at: u64) -> Self {
        for i in 0..CANARY_BYTES / 8 {
            // SAFETY: the last page of our RAM, above the image, stack and device tree,
            // which nothing else of this program uses.
            unsafe { core::ptr::write_volatile((at + 8 * i) as *mut u64, Self::word(i)) };
        }
        Self { at }
    }

    /// Words that no longer hold the pattern.
    pub fn changed(&self) -> u64 {
        (0..CANARY_BYTES / 8)
            // SAFETY: as in `lay`.
            .filter(|&i| unsafe { core::ptr::read_volatile((self.at + 8 * i) as *const u64) } != Self::word(i))
            .count() as u64
    }
}

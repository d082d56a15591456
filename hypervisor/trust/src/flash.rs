//! The hypervisor's persistent storage: a NOR flash bank, seen through [`Flash`].
//!
//! NOR semantics: an erased byte reads `0xFF`; programming can only clear bits (the new
//! content is the old one ANDed with the data); only a whole erase block can be set back
//! to `0xFF`. The EL2 driver implements [`Flash`] for the board's bank; [`RamFlash`] is
//! the same thing over a byte slice (tests, and xtask reading a dump); [`CutAfter`] wraps
//! any [`Flash`] to inject a power cut.
//!
//! # Layout of the bank
//!
//! On QEMU virt the bank is the second pflash bank: 64 MiB, CFI, erase blocks of
//! 256 KiB ([`BANK_SIZE`], [`BLOCK_SIZE`]). The storage code only needs at least four
//! blocks and reads the geometry from the driver.
//!
//! | blocks | content |
//! |--------|---------|
//! | 0 and 1 ([`COUNTER_BLOCKS`]) | the two copies of the anti-rollback counters ([`crate::counters`]), each a record at the start of its block |
//! | 2 ([`LOG_FIRST_BLOCK`]) to the last | the audit log ([`crate::audit`]): a ring of fixed-size records, block by block |
//!
//! Every program this crate issues starts at a multiple of 8 bytes and is a multiple of
//! 8 bytes long. No partition's stage 2 maps the bank: only the hypervisor writes it.

use core::fmt;

/// Size of the storage bank on QEMU virt (its second pflash bank).
pub const BANK_SIZE: u32 = 64 << 20;
/// Erase block of QEMU virt's pflash; [`crate::audit::verify`] assumes it for a dump.
pub const BLOCK_SIZE: u32 = 256 << 10;
/// The blocks holding the two copies of the anti-rollback counters.
pub const COUNTER_BLOCKS: [u32; 2] = [0, 1];
/// The audit log takes every block from this one to the end of the bank.
pub const LOG_FIRST_BLOCK: u32 = 2;
/// The [`FlashError::Device`] code the storage code reports when what it reads back
/// differs from what it has just programmed without the driver reporting an error.
pub const READBACK_MISMATCH: u32 = 0xFFFF_FFFF;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashError {
    /// An offset, length or block outside the bank, or a bank too small (or of an
    /// unsupported geometry) for the layout.
    OutOfRange,
    /// The power was cut ([`CutAfter`]): nothing more is written until reset.
    PowerCut,
    /// The device reported a failure (driver-specific status, or [`READBACK_MISMATCH`]).
    Device(u32),
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange => write!(f, "flash access out of range"),
            Self::PowerCut => write!(f, "power cut"),
            Self::Device(READBACK_MISMATCH) => write!(f, "flash read back differs from what was programmed"),
            Self::Device(status) => write!(f, "flash device error (status {status:#x})"),
        }
    }
}

/// A NOR flash bank. Offsets are bytes from the start of the bank.
pub trait Flash {
    /// Bytes in the bank.
    fn size(&self) -> u32;
    /// Bytes in an erase block.
    fn block_size(&self) -> u32;
    /// Reads `buf.len()` bytes at `offset`.
    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Programs `data` at `offset`: each byte becomes `old & data` (NOR can only clear bits).
    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError>;
    /// Erases block `block` (bytes `block * block_size()..`): every byte becomes `0xFF`.
    fn erase(&mut self, block: u32) -> Result<(), FlashError>;
    /// Power-cut injection only ([`CutAfter`]): leaves `block` as an erase cut off halfway
    /// does, its first half erased and its second half as it was. A driver that cannot do
    /// that need not implement it: the default erases the whole block, i.e. models a cut
    /// that came just after the erase finished (a state storage must survive as well).
    fn erase_half(&mut self, block: u32) -> Result<(), FlashError> {
        self.erase(block)
    }
}

impl<F: Flash + ?Sized> Flash for &mut F {
    fn size(&self) -> u32 {
        (**self).size()
    }
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        (**self).read(offset, buf)
    }
    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        (**self).program(offset, data)
    }
    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        (**self).erase(block)
    }
    fn erase_half(&mut self, block: u32) -> Result<(), FlashError> {
        (**self).erase_half(block)
    }
}

/// The byte range `offset..offset + len` if it lies inside a bank of `size` bytes.
fn range(size: usize, offset: u32, len: usize) -> Result<core::ops::Range<usize>, FlashError> {
    let start = offset as usize;
    let end = start.checked_add(len).ok_or(FlashError::OutOfRange)?;
    if end <= size {
        Ok(start..end)
    } else {
        Err(FlashError::OutOfRange)
    }
}

/// A NOR flash bank in RAM, with the exact NOR semantics (program ANDs, erase sets a
/// whole block to `0xFF`).
pub struct RamFlash<'a> {
    mem: &'a mut [u8],
    block_size: u32,
}

impl<'a> RamFlash<'a> {
    /// A bank over `mem` (its content is the bank's), or `None` unless `block_size` is
    /// non-zero and divides `mem.len()`, which must fit in a `u32`.
    pub fn new(mem: &'a mut [u8], block_size: u32) -> Option<Self> {
        let fits = u32::try_from(mem.len()).is_ok();
        (fits && block_size != 0 && mem.len().is_multiple_of(block_size as usize)).then_some(Self { mem, block_size })
    }

    /// The bank's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.mem
    }

    /// The bank's bytes, for tests that edit them behind the storage code's back.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.mem
    }

    fn block_range(&self, block: u32) -> Result<core::ops::Range<usize>, FlashError> {
        let offset = block.checked_mul(self.block_size).ok_or(FlashError::OutOfRange)?;
        range(self.mem.len(), offset, self.block_size as usize)
    }
}

impl Flash for RamFlash<'_> {
    fn size(&self) -> u32 {
        self.mem.len() as u32
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        let r = range(self.mem.len(), offset, buf.len())?;
        buf.copy_from_slice(&self.mem[r]);
        Ok(())
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        let r = range(self.mem.len(), offset, data.len())?;
        for (m, d) in self.mem[r].iter_mut().zip(data) {
            *m &= d;
        }
        Ok(())
    }

    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        let r = self.block_range(block)?;
        self.mem[r].fill(0xFF);
        Ok(())
    }

    fn erase_half(&mut self, block: u32) -> Result<(), FlashError> {
        let r = self.block_range(block)?;
        let half = r.start + (r.end - r.start) / 2;
        self.mem[r.start..half].fill(0xFF);
        Ok(())
    }
}

/// Power-cut injection around any [`Flash`]: counts the program and erase operations;
/// the `n`th is done only partly and fails with [`FlashError::PowerCut`], and every later
/// one fails the same way and does nothing. Reads still work (they show what a reboot
/// would find).
///
/// A cut program writes the first half of its bytes (rounded down to a multiple of 8,
/// as the drivers program whole words); a cut erase leaves the block's first half erased
/// and its second half untouched ([`Flash::erase_half`]).
pub struct CutAfter<F> {
    inner: F,
    /// Operations before the one that is cut; `None`: never cut; `Some(0)`: cut already.
    steps_left: Option<u32>,
    /// Operations started (the cut one included).
    steps: u32,
}

impl<F: Flash> CutAfter<F> {
    /// Cuts the power during the `n`th program or erase (counting from 1); with `n == 0`
    /// the power is off from the start.
    pub fn new(inner: F, n: u32) -> Self {
        Self { inner, steps_left: Some(n), steps: 0 }
    }

    /// Never cuts: only counts the operations (to learn how many a sequence takes).
    pub fn never(inner: F) -> Self {
        Self { inner, steps_left: None, steps: 0 }
    }

    /// Program and erase operations that ran, fully or (the cut one) partly.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Whether the power has been cut.
    pub fn is_cut(&self) -> bool {
        self.steps_left == Some(0)
    }

    pub fn inner(&self) -> &F {
        &self.inner
    }

    pub fn into_inner(self) -> F {
        self.inner
    }

    /// Accounts for one operation: `Ok(true)` to do it fully, `Ok(false)` to do it partly
    /// (the cut), `Err` if the power is already off.
    fn step(&mut self) -> Result<bool, FlashError> {
        match self.steps_left {
            Some(0) => Err(FlashError::PowerCut),
            Some(1) => {
                self.steps += 1;
                self.steps_left = Some(0);
                Ok(false)
            }
            Some(k) => {
                self.steps += 1;
                self.steps_left = Some(k - 1);
                Ok(true)
            }
            None => {
                self.steps = self.steps.saturating_add(1);
                Ok(true)
            }
        }
    }
}

impl<F: Flash> Flash for CutAfter<F> {
    fn size(&self) -> u32 {
        self.inner.size()
    }

    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }

    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        self.inner.read(offset, buf)
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        if self.step()? {
            return self.inner.program(offset, data);
        }
        let half = (data.len() / 2) & !7;
        self.inner.program(offset, &data[..half])?;
        Err(FlashError::PowerCut)
    }

    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        if self.step()? {
            return self.inner.erase(block);
        }
        self.inner.erase_half(block)?;
        Err(FlashError::PowerCut)
    }

    fn erase_half(&mut self, block: u32) -> Result<(), FlashError> {
        if self.step()? {
            return self.inner.erase_half(block);
        }
        Err(FlashError::PowerCut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_flash_has_nor_semantics() {
        let mut mem = [0xFFu8; 64];
        let mut f = RamFlash::new(&mut mem, 16).unwrap();
        assert_eq!((f.size(), f.block_size()), (64, 16));
        f.program(3, &[0xF0, 0x0F]).unwrap();
        f.program(3, &[0x3C, 0xFF]).unwrap(); // can only clear bits: AND
        let mut b = [0u8; 4];
        f.read(2, &mut b).unwrap();
        assert_eq!(b, [0xFF, 0x30, 0x0F, 0xFF]);
        f.program(17, &[0]).unwrap();
        f.erase(0).unwrap();
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0xFF; 4]);
        assert_eq!(f.bytes()[17], 0, "erasing block 0 leaves block 1 alone");
        f.erase(1).unwrap();
        assert!(f.bytes().iter().all(|&x| x == 0xFF));
        // Ranges, overflow included.
        assert_eq!(f.read(61, &mut b), Err(FlashError::OutOfRange));
        assert_eq!(f.program(u32::MAX, &[0, 0]), Err(FlashError::OutOfRange));
        assert_eq!(f.erase(4), Err(FlashError::OutOfRange));
        assert_eq!(f.erase(u32::MAX), Err(FlashError::OutOfRange));
        f.read(60, &mut b).unwrap();
        f.read(64, &mut []).unwrap();
        // Geometry.
        let mut odd = [0u8; 10];
        assert!(RamFlash::new(&mut odd, 4).is_none());
        assert!(RamFlash::new(&mut odd, 0).is_none());
    }

    #[test]
    fn cut_after_cuts_the_nth_operation_and_everything_after() {
        let mut mem = [0u8; 64];
        let mut ram = RamFlash::new(&mut mem, 32).unwrap();
        {
            let mut f = CutAfter::new(&mut ram, 3);
            f.erase(0).unwrap(); // 1
            f.program(0, &[0x11; 16]).unwrap(); // 2
            assert!(!f.is_cut());
            assert_eq!(f.erase(1), Err(FlashError::PowerCut)); // 3: half erased
            assert!(f.is_cut());
            assert_eq!(f.program(48, &[0; 8]), Err(FlashError::PowerCut));
            assert_eq!(f.erase(0), Err(FlashError::PowerCut));
            assert_eq!(f.steps(), 3);
        }
        let m = ram.bytes();
        assert_eq!(&m[..16], &[0x11; 16]);
        assert_eq!(&m[16..32], &[0xFF; 16]);
        assert_eq!(&m[32..48], &[0xFF; 16], "first half of block 1 erased");
        assert_eq!(&m[48..], &[0; 16], "second half of block 1 untouched");

        ram.erase(0).unwrap();
        let mut f = CutAfter::new(&mut ram, 1);
        assert_eq!(f.program(0, &[0; 32]), Err(FlashError::PowerCut));
        let mut b = [0u8; 32];
        f.read(0, &mut b).unwrap();
        assert_eq!((&b[..16], &b[16..]), (&[0u8; 16][..], &[0xFFu8; 16][..]), "first half programmed");

        let mut f = CutAfter::never(&mut ram);
        for _ in 0..5 {
            f.erase(0).unwrap();
        }
        assert_eq!((f.steps(), f.is_cut()), (5, false));
        let mut f = CutAfter::new(&mut ram, 0);
        assert_eq!(f.erase(0), Err(FlashError::PowerCut));
        assert_eq!(f.steps(), 0);
    }
}

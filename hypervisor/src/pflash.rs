//! The hypervisor's flash bank: a CFI NOR flash with the Intel/Sharp command set
//! (QEMU `pflash_cfi01`; real boards put a NOR or eMMC partition here). It holds the
//! anti-rollback counters and the audit log ([`septum_trust::flash::Flash`]); no
//! partition's stage 2 maps it.
//!
//! The bank is two 16-bit chips side by side on a 32-bit bus, so every command is
//! written to both halves of a word. Programming works a word at a time; a word's new
//! value is ANDed with its old one, as NOR programming can only clear bits.

use septum_platform::catalog::Storage;
use septum_trust::flash::{Flash, FlashError};

/// Commands (Intel command set), for one 16-bit chip.
mod cmd {
    pub const READ_ARRAY: u16 = 0xFF;
    pub const CLEAR_STATUS: u16 = 0x50;
    pub const WORD_PROGRAM: u16 = 0x40;
    pub const BLOCK_ERASE: u16 = 0x20;
    pub const ERASE_CONFIRM: u16 = 0xD0;
}

/// Status register bits.
mod status {
    pub const READY: u32 = 0x80;
    /// Erase failed, program failed, block locked.
    pub const ERRORS: u32 = 0x20 | 0x10 | 0x02;
}

/// How long to poll the status register before calling the device broken.
const POLL_LIMIT: u32 = 1 << 24;

pub struct Pflash {
    base: u64,
    size: u32,
    block: u32,
}

impl Pflash {
    /// # Safety
    /// `storage` must describe a CFI flash bank mapped as Device memory in the
    /// hypervisor's stage 1, reached by nothing else (no partition maps it).
    pub unsafe fn new(storage: Storage) -> Self {
        Self { base: storage.base, size: storage.size as u32, block: storage.block_size as u32 }
    }

    fn word(&self, offset: u32) -> *mut u32 {
        (self.base + u64::from(offset & !3)) as *mut u32
    }

    fn command(&mut self, offset: u32, c: u16) {
        let both = u32::from(c) | (u32::from(c) << 16);
        // SAFETY: `offset` is inside the bank (callers check); the bank is ours (`new`).
        unsafe { self.word(offset).write_volatile(both) };
    }

    fn read_word(&self, offset: u32) -> u32 {
        // SAFETY: as in `command`; in read-array mode the bank reads as memory.
        unsafe { self.word(offset).read_volatile() }
    }

    fn write_word(&mut self, offset: u32, value: u32) {
        // SAFETY: as in `command`.
        unsafe { self.word(offset).write_volatile(value) };
    }

    /// Waits for the operation in progress, then returns to read-array mode.
    fn finish(&mut self, offset: u32) -> Result<(), FlashError> {
        let mut st = 0;
        for _ in 0..POLL_LIMIT {
            st = self.read_word(offset);
            if st & status::READY != 0 {
                break;
            }
        }
        let failed = st & status::READY == 0 || st & status::ERRORS != 0;
        if failed {
            self.command(offset, cmd::CLEAR_STATUS);
        }
        self.command(offset, cmd::READ_ARRAY);
        if failed {
            Err(FlashError::Device(st))
        } else {
            Ok(())
        }
    }

    fn in_range(&self, offset: u32, len: usize) -> Result<(), FlashError> {
        let end = u64::from(offset) + len as u64;
        if end <= u64::from(self.size) {
            Ok(())
        } else {
            Err(FlashError::OutOfRange)
        }
    }
}

impl Flash for Pflash {
    fn size(&self) -> u32 {
        self.size
    }

    fn block_size(&self) -> u32 {
        self.block
    }

    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        self.in_range(offset, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i as u32;
            *b = self.read_word(at).to_le_bytes()[(at % 4) as usize];
        }
        Ok(())
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        self.in_range(offset, data.len())?;
        let mut at = offset & !3;
        let end = offset + data.len() as u32;
        while at < end {
            let old = self.read_word(at).to_le_bytes();
            let mut new = old;
            for (k, byte) in new.iter_mut().enumerate() {
                let pos = at + k as u32;
                if (offset..end).contains(&pos) {
                    *byte &= data[(pos - offset) as usize];
                }
            }
            if new != old {
                self.command(at, cmd::WORD_PROGRAM);
                self.write_word(at, u32::from_le_bytes(new));
                self.finish(at)?;
            }
            at += 4;
        }
        Ok(())
    }

    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        let offset = block.checked_mul(self.block).ok_or(FlashError::OutOfRange)?;
        self.in_range(offset, self.block as usize)?;
        self.command(offset, cmd::BLOCK_ERASE);
        self.command(offset, cmd::ERASE_CONFIRM);
        self.finish(offset)
    }
}

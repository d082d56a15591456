//! VMSAv8-64 translation tables, 4 KiB granule, 39-bit input addresses (start level 1).
//! One builder serves the hypervisor's EL2 stage 1 and every partition's stage 2: they
//! differ only in how a leaf's attributes are encoded ([`Regime`]).
//!
//! Tables live in an [`Arena`] of 4 KiB [`Table`]s whose physical address is known, so
//! the same code runs on the host (tests) and at EL2 (where physical == virtual for the
//! hypervisor). Mapping never splits or replaces an existing entry: a second mapping of
//! the same address is an error, which is how the builder proves no two regions alias.

/// Entries per table.
pub const ENTRIES: usize = 512;
/// Input address bits (T0SZ = 64 - 39 = 25): 512 GiB, level-1 root.
pub const INPUT_BITS: u32 = 39;
pub const T0SZ: u64 = 64 - INPUT_BITS as u64;

const VALID: u64 = 1 << 0;
/// Bit 1: table (levels 1, 2) or page (level 3); clear for a block.
const TABLE_OR_PAGE: u64 = 1 << 1;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
const ADDR_MASK: u64 = 0x0000_FFFF_FFFF_F000;

/// One 4 KiB translation table.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal, inner/outer write-back cacheable, inner shareable.
    Normal,
    /// Device-nGnRnE.
    Device,
}

/// Access rights of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub exec: bool,
}

impl Access {
    pub const RW: Access = Access { write: true, exec: false };
    pub const RWX: Access = Access { write: true, exec: true };
    pub const RX: Access = Access { write: false, exec: true };
    pub const RO: Access = Access { write: false, exec: false };
}

/// One mapping request: `[va, va+size)` to `[pa, pa+size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub va: u64,
    pub pa: u64,
    pub size: u64,
    pub mem: MemType,
    pub access: Access,
}

impl Mapping {
    pub const fn new(va: u64, pa: u64, size: u64, mem: MemType, access: Access) -> Self {
        Self { va, pa, size, mem, access }
    }
}

/// Which translation regime the tables are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// The hypervisor's own stage 1 (TTBR0_EL2). MAIR_EL2 index 0 = Device-nGnRnE,
    /// index 1 = Normal write-back (see [`MAIR_EL2`]).
    El2Stage1,
    /// A partition's stage 2 (VTTBR_EL2).
    Stage2,
}

/// MAIR_EL2 value matching [`Regime::El2Stage1`]'s attribute indices.
pub const MAIR_EL2: u64 = 0xFF << 8;

impl Regime {
    fn leaf_attrs(self, mem: MemType, access: Access) -> u64 {
        match self {
            Regime::El2Stage1 => {
                let attr_index: u64 = match mem {
                    MemType::Device => 0,
                    MemType::Normal => 1,
                };
                // AP[2:1]: 0b01 read-write, 0b11 read-only (AP[1] is RES1 at EL2).
                let ap: u64 = if access.write { 0b01 } else { 0b11 };
                let sh = if mem == MemType::Normal { SH_INNER } else { 0 };
                let xn = if access.exec && mem == MemType::Normal { 0 } else { 1 << 54 };
                (attr_index << 2) | (ap << 6) | sh | AF | xn
            }
            Regime::Stage2 => {
                // MemAttr[3:0]: 0b1111 Normal WB/WB, 0b0000 Device-nGnRnE.
                let memattr: u64 = match mem {
                    MemType::Device => 0b0000,
                    MemType::Normal => 0b1111,
                };
                // S2AP: 0b01 read-only, 0b11 read-write.
                let s2ap: u64 = if access.write { 0b11 } else { 0b01 };
                let sh = if mem == MemType::Normal { SH_INNER } else { 0 };
                // XN[1:0] = 0b10: not executable at EL1 or EL0.
                let xn = if access.exec && mem == MemType::Normal { 0 } else { 0b10 << 53 };
                (memattr << 2) | (s2ap << 6) | sh | AF | xn
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not 4 KiB aligned.
    Unaligned,
    /// Beyond the 39-bit input range or the 48-bit output range.
    OutOfRange,
    /// Part of the range is already mapped.
    AlreadyMapped { addr: u64 },
    /// The arena has no free table left.
    OutOfTables,
}

/// A pool of tables at a known physical address.
pub struct Arena<'a> {
    tables: &'a mut [Table],
    base_pa: u64,
    used: usize,
}

impl<'a> Arena<'a> {
    /// `base_pa` is the physical address of `tables[0]`.
    pub fn new(tables: &'a mut [Table], base_pa: u64) -> Self {
        Self { tables, base_pa, used: 0 }
    }

    /// Continues with an arena of which the first `used` tables are already in use.
    pub fn resume(tables: &'a mut [Table], base_pa: u64, used: usize) -> Self {
        Self { tables, base_pa, used }
    }

    /// Tables handed out so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// A fresh, zeroed table: its index.
    pub fn alloc(&mut self) -> Result<usize, MapError> {
        let idx = self.used;
        let table = self.tables.get_mut(idx).ok_or(MapError::OutOfTables)?;
        *table = Table::EMPTY;
        self.used += 1;
        Ok(idx)
    }

    pub fn pa_of(&self, idx: usize) -> u64 {
        self.base_pa + (idx as u64) * 4096
    }

    fn idx_of(&self, pa: u64) -> Option<usize> {
        let off = pa.checked_sub(self.base_pa)?;
        let idx = (off / 4096) as usize;
        (idx < self.used).then_some(idx)
    }

    /// Maps `[va, va+size)` to `[pa, pa+size)` under the root table `root`, using
    /// the largest blocks alignment allows.
    pub fn map(&mut self, regime: Regime, root: usize, m: Mapping) -> Result<(), MapError> {
        let Mapping { va, pa, size, mem, access } = m;
        if !va.is_multiple_of(4096) || !pa.is_multiple_of(4096) || !size.is_multiple_of(4096) {
            return Err(MapError::Unaligned);
        }
        let va_end = va.checked_add(size).ok_or(MapError::OutOfRange)?;
        let pa_end = pa.checked_add(size).ok_or(MapError::OutOfRange)?;
        if va_end > 1 << INPUT_BITS || pa_end > 1 << 48 {
            return Err(MapError::OutOfRange);
        }
        let attrs = regime.leaf_attrs(mem, access);
        let mut off = 0;
        while off < size {
            let step = self.map_one(root, va + off, pa + off, size - off, attrs)?;
            off += step;
        }
        Ok(())
    }

    /// Maps the largest aligned chunk at `va`; returns its size.
    fn map_one(&mut self, root: usize, va: u64, pa: u64, remaining: u64, attrs: u64) -> Result<u64, MapError> {
        let mut table = root;
        for level in 1..=3u32 {
            let shift = 12 + 9 * (3 - level);
            let block = 1u64 << shift;
            let index = ((va >> shift) & 0x1FF) as usize;
            let entry = self.tables[table].0[index];
            let aligned = va.is_multiple_of(block) && pa.is_multiple_of(block) && remaining >= block;
            if level == 3 || (aligned && level >= 1) {
                if entry & VALID != 0 {
                    return Err(MapError::AlreadyMapped { addr: va });
                }
                let kind = if level == 3 { VALID | TABLE_OR_PAGE } else { VALID };
                self.tables[table].0[index] = (pa & ADDR_MASK) | attrs | kind;
                return Ok(block);
            }
            table = if entry & VALID == 0 {
                let next = self.alloc()?;
                self.tables[table].0[index] = self.pa_of(next) | VALID | TABLE_OR_PAGE;
                next
            } else if entry & TABLE_OR_PAGE == 0 {
                return Err(MapError::AlreadyMapped { addr: va });
            } else {
                self.idx_of(entry & ADDR_MASK).ok_or(MapError::OutOfRange)?
            };
        }
        Err(MapError::OutOfRange)
    }

    /// Walks the tables like the hardware would: the output address and leaf attribute
    /// bits for `va`, or `None` if unmapped.
    pub fn translate(&self, root: usize, va: u64) -> Option<(u64, u64)> {
        if va >= 1 << INPUT_BITS {
            return None;
        }
        let mut table = root;
        for level in 1..=3u32 {
            let shift = 12 + 9 * (3 - level);
            let entry = self.tables[table].0[((va >> shift) & 0x1FF) as usize];
            if entry & VALID == 0 {
                return None;
            }
            let is_leaf = level == 3 || entry & TABLE_OR_PAGE == 0;
            if is_leaf {
                let offset = va & ((1 << shift) - 1);
                return Some(((entry & ADDR_MASK & !((1 << shift) - 1)) + offset, entry & !ADDR_MASK));
            }
            table = self.idx_of(entry & ADDR_MASK)?;
        }
        None
    }
}

impl Arena<'_> {
    /// Calls `f(va, size, attrs)` for every valid leaf (block or page) under `root`, in
    /// address order: what the tables map, as the hardware would find it.
    pub fn for_each_leaf(&self, root: usize, f: &mut impl FnMut(u64, u64, u64)) {
        self.walk(root, 1, 0, f);
    }

    fn walk(&self, table: usize, level: u32, base: u64, f: &mut impl FnMut(u64, u64, u64)) {
        let shift = 12 + 9 * (3 - level);
        for (i, &entry) in self.tables[table].0.iter().enumerate() {
            if entry & VALID == 0 {
                continue;
            }
            let va = base + ((i as u64) << shift);
            if level == 3 || entry & TABLE_OR_PAGE == 0 {
                f(va, 1 << shift, entry & !ADDR_MASK);
            } else if let Some(next) = self.idx_of(entry & ADDR_MASK) {
                self.walk(next, level + 1, va, f);
            }
        }
    }
}

/// Reads the access rights back out of a stage-2 leaf's attribute bits.
pub fn stage2_access(attrs: u64) -> (MemType, Access) {
    let mem = if (attrs >> 2) & 0xF == 0 { MemType::Device } else { MemType::Normal };
    let write = (attrs >> 6) & 0b11 == 0b11;
    let exec = (attrs >> 53) & 0b11 == 0;
    (mem, Access { write, exec })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    const MB: u64 = 1 << 20;

    /// ISO-001: a stage 2 maps exactly what it was given, with the given rights.
    #[test]
    fn maps_blocks_and_pages_and_translates() {
        let mut tables = vec![Table::EMPTY; 8];
        let mut arena = Arena::new(&mut tables, 0x8000_0000);
        let root = arena.alloc().unwrap();
        arena
            .map(Regime::Stage2, root, Mapping::new(0x4000_0000, 0x5000_0000, 16 * MB, MemType::Normal, Access::RWX))
            .unwrap();
        arena
            .map(Regime::Stage2, root, Mapping::new(0x0900_0000, 0x0900_0000, 4096, MemType::Device, Access::RW))
            .unwrap();
        // 16 MiB at 2 MiB alignment: 8 level-2 blocks under one level-2 table; the
        // page needs a level-2 and a level-3 table: root + 3.
        assert_eq!(arena.used(), 4);
        let (pa, attrs) = arena.translate(root, 0x4012_3456).unwrap();
        assert_eq!(pa, 0x5012_3456);
        assert_eq!(stage2_access(attrs), (MemType::Normal, Access::RWX));
        let (pa, attrs) = arena.translate(root, 0x0900_0018).unwrap();
        assert_eq!(pa, 0x0900_0018);
        assert_eq!(stage2_access(attrs), (MemType::Device, Access::RW));
        assert_eq!(arena.translate(root, 0x4100_0000), None);
        assert_eq!(arena.translate(root, 0x0900_1000), None);
        assert_eq!(arena.translate(root, 0x0800_0000), None);
    }

    #[test]
    fn refuses_double_mapping_and_bad_input() {
        let mut tables = vec![Table::EMPTY; 8];
        let mut arena = Arena::new(&mut tables, 0);
        let root = arena.alloc().unwrap();
        arena
            .map(Regime::Stage2, root, Mapping::new(0x4000_0000, 0x4000_0000, 2 * MB, MemType::Normal, Access::RW))
            .unwrap();
        assert_eq!(
            arena.map(Regime::Stage2, root, Mapping::new(0x4010_0000, 0x1000_0000, 4096, MemType::Normal, Access::RW)),
            Err(MapError::AlreadyMapped { addr: 0x4010_0000 })
        );
        assert_eq!(
            arena.map(Regime::Stage2, root, Mapping::new(0x123, 0, 4096, MemType::Normal, Access::RW)),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            arena.map(Regime::Stage2, root, Mapping::new(1 << 39, 0, 4096, MemType::Normal, Access::RW)),
            Err(MapError::OutOfRange)
        );
    }

    #[test]
    fn reports_exhaustion() {
        let mut tables = vec![Table::EMPTY; 2];
        let mut arena = Arena::new(&mut tables, 0);
        let root = arena.alloc().unwrap();
        assert_eq!(
            arena.map(Regime::Stage2, root, Mapping::new(0x1000, 0x1000, 4096, MemType::Normal, Access::RW)),
            Err(MapError::OutOfTables)
        );
    }

    /// BOOT-001: hypervisor text read-only and executable, data never executable.
    #[test]
    fn el2_stage1_text_is_read_only_executable_and_data_never_executable() {
        let rx = Regime::El2Stage1.leaf_attrs(MemType::Normal, Access::RX);
        assert_eq!(rx & (1 << 54), 0);
        assert_eq!((rx >> 6) & 0b11, 0b11);
        let rw = Regime::El2Stage1.leaf_attrs(MemType::Normal, Access::RW);
        assert_ne!(rw & (1 << 54), 0);
        let dev = Regime::El2Stage1.leaf_attrs(MemType::Device, Access::RWX);
        assert_ne!(dev & (1 << 54), 0, "device memory is never executable");
        assert_eq!((dev >> 2) & 0b111, 0, "device memory uses MAIR index 0, Device-nGnRnE");
    }
}

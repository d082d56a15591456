//! The compiled system configuration.
//!
//! `xtask` turns a human-written `systems/<name>.toml` into this fixed binary layout;
//! the hypervisor reads it without any text parsing. Both sides run [`Config::parse`],
//! which checks the framing (magic, version, length, CRC-32) and then every invariant
//! the hypervisor relies on, against the facts of the board it is checked for
//! ([`BoardFacts`]: a catalogue at build time, the board's device tree at boot).
//!
//! Layout: one [`ConfigHeader`] followed by `partition_count` [`PartitionDesc`]s. Every
//! structure is `repr(C)` with explicit padding fields so the bytes are fully defined.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{name_str, PAGE_SIZE};

pub const CONFIG_MAGIC: [u8; 8] = *b"SEPTCFG\0";
/// 2: doorbells name the partition and virtual interrupt they signal.
/// 3: a device region's `param` carries [`device_flags`] (DMA opt-out, PCIe ECAM).
pub const CONFIG_VERSION: u32 = 4;
pub const MAX_PARTITIONS: usize = 8;
pub const MAX_VCPUS: usize = 8;
pub const MAX_REGIONS: usize = 16;
pub const MAX_IRQS: usize = 16;
pub const NAME_LEN: usize = 24;

/// Board identifiers. The hypervisor is built for one board and refuses a configuration
/// compiled for another.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardId {
    QemuVirt = 1,
    /// QEMU `virt` with `gic-version=2`: the same machine, another interrupt controller.
    QemuVirtGicV2 = 2,
    /// Raspberry Pi 4 Model B (BCM2711, GIC-400), and QEMU's `raspi4b`.
    Rpi4 = 3,
    /// NXP i.MX 8M Plus EVK, and QEMU's `imx8mp-evk`.
    Imx8mpEvk = 4,
}

impl BoardId {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::QemuVirt),
            2 => Some(Self::QemuVirtGicV2),
            3 => Some(Self::Rpi4),
            4 => Some(Self::Imx8mpEvk),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::QemuVirt => "qemu-virt",
            Self::QemuVirtGicV2 => "qemu-virt-gicv2",
            Self::Rpi4 => "rpi4",
            Self::Imx8mpEvk => "imx8mp-evk",
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ConfigHeader {
    pub magic: [u8; 8],
    pub version: u32,
    /// Bytes of the whole configuration, header included.
    pub total_len: u32,
    /// CRC-32 (IEEE) of the whole configuration with this field set to zero.
    pub crc32: u32,
    /// [`BoardId`].
    pub board: u32,
    pub partition_count: u32,
    pub _reserved: u32,
}

/// What a region of a partition's address space is.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Normal memory, cacheable, read-write-execute for the partition.
    Ram = 1,
    /// A device's MMIO window, Device-nGnRnE, never executable.
    Device = 2,
    /// Channel memory this partition writes (its producer or consumer region): normal
    /// memory, read-write, never executable.
    SharedRw = 3,
    /// Channel memory the peer writes: normal memory, read-only, never executable.
    SharedRo = 4,
    /// A channel doorbell page: mapped nowhere, so every access traps to the hypervisor,
    /// which counts (and, with interrupt virtualization, forwards) a write as a ring.
    /// `pa` is unused.
    Doorbell = 5,
    /// Memory a sensor's acquisition fills and the partition only reads (on QEMU, the
    /// replay of an ECG recording that QEMU's loader puts there before the board
    /// starts): normal memory, read-only, never executable, never zeroed or loaded by
    /// the hypervisor, and nobody else's. `param` is 0.
    Sensor = 6,
}

impl RegionKind {
    /// Backed by physical memory that must not be shared except as a channel.
    pub fn is_memory(self) -> bool {
        !matches!(self, RegionKind::Doorbell)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct MemRegion {
    /// Physical base address.
    pub pa: u64,
    /// Where the partition sees it (intermediate physical address).
    pub ipa: u64,
    pub size: u64,
    /// [`RegionKind`].
    pub kind: u32,
    /// Kind-specific: for a [`RegionKind::Doorbell`], the rings per second the peer may
    /// be signalled (more are counted and dropped); for a [`RegionKind::Device`], its
    /// [`device_flags`]; otherwise 0.
    pub param: u32,
    /// [`RegionKind::Doorbell`] only (else 0): the partition a ring signals (its index
    /// in the configuration), and the virtual interrupt it receives for it, one of
    /// [`DOORBELL_INTIDS`].
    pub signal_partition: u32,
    pub signal_intid: u32,
}

/// The virtual INTIDs doorbells are delivered as (channel `c`: `start + c`): above any
/// board's SPIs and below the special INTIDs (1020..), so never a real device's.
pub const DOORBELL_INTIDS: core::ops::Range<u32> = 960..1020;

const _: () = assert!(core::mem::size_of::<MemRegion>() == 40);

/// Flag bits of a device region's [`MemRegion::param`].
pub mod device_flags {
    /// The description accepts that this window's device masters the bus with no IOMMU
    /// between it and memory (`dma = "unprotected"`): it could reach any memory. Never
    /// for a critical partition; logged as a warning at every boot (DMA-002).
    pub const DMA_UNPROTECTED: u32 = 1 << 0;
    /// The window is a PCIe host bridge's configuration space (ECAM): before the
    /// partition's memory is zeroed and reloaded, the hypervisor turns bus mastering off
    /// in every function there (DMA-004).
    pub const PCI_ECAM: u32 = 1 << 1;
    pub const ALL: u32 = DMA_UNPROTECTED | PCI_ECAM;
}

impl MemRegion {
    /// A device's window, where the partition sees it at its physical address.
    pub const fn device(pa: u64, size: u64) -> Self {
        Self { pa, ipa: pa, size, kind: RegionKind::Device as u32, param: 0, signal_partition: 0, signal_intid: 0 }
    }
    pub fn kind(&self) -> Option<RegionKind> {
        match self.kind {
            1 => Some(RegionKind::Ram),
            2 => Some(RegionKind::Device),
            3 => Some(RegionKind::SharedRw),
            4 => Some(RegionKind::SharedRo),
            5 => Some(RegionKind::Doorbell),
            6 => Some(RegionKind::Sensor),
            _ => None,
        }
    }
    pub fn pa_end(&self) -> Option<u64> {
        self.pa.checked_add(self.size)
    }
    pub fn ipa_end(&self) -> Option<u64> {
        self.ipa.checked_add(self.size)
    }
}

/// What the health monitor does when a partition faults.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPolicy {
    /// Reload the pristine image, zero RAM, start again (bounded, with back-off).
    Restart = 1,
    /// Stop the partition; the rest of the system keeps running.
    Halt = 2,
    /// Stop every partition: the system's documented safe state. Critical partitions only.
    SafeState = 3,
}

impl FaultPolicy {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Restart),
            2 => Some(Self::Halt),
            3 => Some(Self::SafeState),
            _ => None,
        }
    }
}

/// Flag bits of [`PartitionDesc::flags`].
pub mod flags {
    /// The partition is safety-critical: it may (and only it may) use `safe-state`.
    pub const CRITICAL: u32 = 1 << 0;
    /// The partition may read the audit log (`AUDIT_INFO`, `AUDIT_READ`), to upload it.
    pub const AUDIT_READER: u32 = 1 << 1;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct PartitionDesc {
    pub name: [u8; NAME_LEN],
    /// Stage-2 VMID; unique and non-zero.
    pub vmid: u32,
    /// Bits of [`flags`].
    pub flags: u32,
    /// [`FaultPolicy`].
    pub policy: u32,
    /// Restarts allowed within `restart_window_ms` before the policy escalates to halt.
    pub restart_max: u32,
    pub restart_window_ms: u32,
    /// Delay before the first restart; doubled for each further one in the window.
    pub backoff_ms: u32,
    pub vcpu_count: u32,
    pub region_count: u32,
    pub irq_count: u32,
    pub _reserved: u32,
    /// MPIDR affinity (Aff3..Aff0) of the physical core each vCPU is pinned to.
    pub vcpu_mpidr: [u64; MAX_VCPUS],
    /// Where the image is copied and where its first instruction is.
    pub image_ipa: u64,
    pub entry_ipa: u64,
    /// Where the partition's device tree is placed; passed in `x0` at entry.
    pub dtb_ipa: u64,
    pub regions: [MemRegion; MAX_REGIONS],
    /// Physical interrupt numbers (GIC INTIDs) owned by the partition.
    pub irqs: [u32; MAX_IRQS],
}

impl PartitionDesc {
    pub fn name(&self) -> &str {
        name_str(&self.name)
    }
    pub fn policy(&self) -> Option<FaultPolicy> {
        FaultPolicy::from_u32(self.policy)
    }
    pub fn is_critical(&self) -> bool {
        self.flags & flags::CRITICAL != 0
    }
    pub fn is_audit_reader(&self) -> bool {
        self.flags & flags::AUDIT_READER != 0
    }
    /// The regions in use (bounded by the validated count).
    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..(self.region_count as usize).min(MAX_REGIONS)]
    }
    pub fn vcpus(&self) -> &[u64] {
        &self.vcpu_mpidr[..(self.vcpu_count as usize).min(MAX_VCPUS)]
    }
    pub fn irqs(&self) -> &[u32] {
        &self.irqs[..(self.irq_count as usize).min(MAX_IRQS)]
    }
    /// Does `[ipa, ipa+len)` lie wholly inside one RAM region of this partition?
    pub fn ram_contains(&self, ipa: u64, len: u64) -> bool {
        let Some(end) = ipa.checked_add(len) else {
            return false;
        };
        self.regions()
            .iter()
            .any(|r| r.kind() == Some(RegionKind::Ram) && r.ipa <= ipa && r.ipa_end().is_some_and(|e| end <= e))
    }
    /// Translate an IPA inside one of this partition's RAM regions to its PA.
    pub fn ram_ipa_to_pa(&self, ipa: u64) -> Option<u64> {
        self.regions()
            .iter()
            .filter(|r| r.kind() == Some(RegionKind::Ram))
            .find(|r| r.ipa <= ipa && r.ipa_end().is_some_and(|e| ipa < e))
            .map(|r| r.pa + (ipa - r.ipa))
    }
}

/// A half-open physical range `[base, base+size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
    pub fn overlaps(&self, other: &Range) -> bool {
        self.base < other.end() && other.base < self.end()
    }
    pub fn contains(&self, other: &Range) -> bool {
        self.base <= other.base && other.end() <= self.end()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.base, self.end())
    }
}

/// Fixed-capacity list used by [`BoardFacts`] (no allocation on the hypervisor side).
#[derive(Clone, Copy, Debug)]
pub struct List<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        Self { items: [None; N], len: 0 }
    }
}

impl<T: Copy, const N: usize> List<T, N> {
    /// Appends; `false` when full.
    pub fn push(&mut self, item: T) -> bool {
        if self.len == N {
            return false;
        }
        self.items[self.len] = Some(item);
        self.len += 1;
        true
    }
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A device window the board has, whether it may be given to a partition, and the
/// interrupts the device raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardDevice {
    pub range: Range,
    /// False for devices the hypervisor keeps (its interrupt controller and flash bank,
    /// bus masters with no IOMMU, firmware interfaces: the board catalogue's
    /// `kept_devices`) or that only the secure world may use. No partition's device
    /// region may even overlap such a window.
    pub assignable: bool,
    pub irqs: DeviceIrqs,
    /// Whether the device masters the bus, and whether something contains it.
    pub dma: DeviceDma,
}

impl BoardDevice {
    pub const fn new(range: Range, assignable: bool) -> Self {
        Self { range, assignable, irqs: DeviceIrqs::NONE, dma: DeviceDma::None }
    }
}

/// What a device window's device can do on the bus (DMA-001).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceDma {
    /// It does not master the bus.
    #[default]
    None,
    /// A bus master behind an IOMMU the hypervisor drives: each of its streams reaches
    /// exactly its partition's memory.
    Contained,
    /// A bus master nothing contains (the board has no IOMMU, or the IOMMU that would is
    /// absent): it could reach any memory.
    Uncontained,
}

/// Interrupts (GIC INTIDs) one device raises, at most [`DeviceIrqs::MAX`]: a device
/// with more keeps the first ones, so its others can be given to no partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceIrqs([u16; DeviceIrqs::MAX]);

impl DeviceIrqs {
    pub const MAX: usize = 8;
    pub const NONE: Self = Self([0; Self::MAX]);

    /// The first [`Self::MAX`] of `intids` (INTIDs above 1019 are no device's).
    pub fn of(intids: &[u32]) -> Self {
        let mut irqs = Self::NONE;
        for &intid in intids {
            irqs.push(intid);
        }
        irqs
    }
    /// Adds `intid` (0 < `intid` < 1020); `false` when full or not a device's INTID.
    pub fn push(&mut self, intid: u32) -> bool {
        let Some(slot) = self.0.iter_mut().find(|s| **s == 0) else { return false };
        match u16::try_from(intid) {
            Ok(v) if v > 0 && intid < SPECIAL_INTIDS => {
                *slot = v;
                true
            }
            _ => false,
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().take_while(|&&v| v != 0).map(|&v| u32::from(v))
    }
    pub fn contains(&self, intid: u32) -> bool {
        self.iter().any(|i| i == intid)
    }
}

/// INTIDs from here on are special (1020..1023: spurious and the like), GICv3.1's
/// extended ranges or LPIs: none is a wired interrupt Septum gives to a partition.
pub const SPECIAL_INTIDS: u32 = 1020;
/// SPIs, the interrupts devices outside the cores raise, start here; below are SGIs
/// (0..16, software-generated, between cores) and PPIs (16..32, private to each core:
/// the timers, the GIC maintenance interrupt).
pub const FIRST_SPI: u32 = 32;

/// What a configuration is checked against: the board's RAM, cores and devices, and the
/// memory reserved by the hypervisor, the boot staging and the board's firmware.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoardFacts {
    pub ram: List<Range, 8>,
    pub cpus: List<u64, 16>,
    pub devices: List<BoardDevice, 256>,
    pub reserved: List<Range, 32>,
}

/// Where in the configuration a problem is, so xtask can point at the source line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Header,
    Partition(usize),
    Region(usize, usize),
    Vcpu(usize, usize),
    /// Partition, index in its `irqs`.
    Irq(usize, usize),
}

/// Everything [`Config::parse`] can refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    TooShort {
        len: usize,
    },
    BadMagic,
    UnsupportedVersion {
        found: u32,
    },
    LengthMismatch {
        header: u32,
        actual: usize,
    },
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    WrongBoard {
        found: u32,
        expected: u32,
    },
    PartitionCount {
        count: u32,
    },
    BadName {
        partition: usize,
    },
    DuplicateName {
        partition: usize,
        other: usize,
    },
    BadVmid {
        partition: usize,
    },
    DuplicateVmid {
        partition: usize,
        other: usize,
    },
    BadPolicy {
        partition: usize,
    },
    SafeStateNotCritical {
        partition: usize,
    },
    BadRestartLimits {
        partition: usize,
    },
    VcpuCount {
        partition: usize,
        count: u32,
    },
    CpuNotOnBoard {
        partition: usize,
        vcpu: usize,
        mpidr: u64,
    },
    CpuGivenTwice {
        partition: usize,
        vcpu: usize,
        mpidr: u64,
        other: usize,
    },
    RegionCount {
        partition: usize,
        count: u32,
    },
    IrqCount {
        partition: usize,
        count: u32,
    },
    BadRegionKind {
        partition: usize,
        region: usize,
    },
    /// A doorbell signals no other partition of this configuration, or with an INTID
    /// outside [`DOORBELL_INTIDS`]; or a region that is no doorbell names a signal.
    BadSignal {
        partition: usize,
        region: usize,
    },
    EmptyRegion {
        partition: usize,
        region: usize,
    },
    UnalignedRegion {
        partition: usize,
        region: usize,
    },
    RegionWraps {
        partition: usize,
        region: usize,
    },
    NoRam {
        partition: usize,
    },
    RamOutsideBoard {
        partition: usize,
        region: usize,
        range: Range,
    },
    DeviceNotOnBoard {
        partition: usize,
        region: usize,
        range: Range,
    },
    DeviceNotAssignable {
        partition: usize,
        region: usize,
        range: Range,
    },
    OverlapsReserved {
        partition: usize,
        region: usize,
        range: Range,
        reserved: Range,
    },
    PhysicalOverlap {
        partition: usize,
        region: usize,
        other_partition: usize,
        other_region: usize,
    },
    IpaOverlap {
        partition: usize,
        region: usize,
        other_region: usize,
    },
    ImageOutsideRam {
        partition: usize,
    },
    EntryOutsideRam {
        partition: usize,
    },
    DtbOutsideRam {
        partition: usize,
    },
    DtbOverlapsImage {
        partition: usize,
    },
    /// An SGI, a PPI (private to a core: the timers, the GIC maintenance interrupt), a
    /// doorbell INTID or a special one: only a device's SPI can be given.
    IrqNotSpi {
        partition: usize,
        irq: usize,
        intid: u32,
    },
    /// Listed twice by the partition (`other` = `partition`) or also given to `other`.
    IrqGivenTwice {
        partition: usize,
        irq: usize,
        intid: u32,
        other: usize,
    },
    /// No device window of the partition raises it.
    IrqNotOfItsDevices {
        partition: usize,
        irq: usize,
        intid: u32,
    },
    /// A device window of a bus master nothing contains, without the opt-out.
    BusMasterUncontained {
        partition: usize,
        region: usize,
        range: Range,
    },
    /// The opt-out for a critical partition, which may never have it.
    UnprotectedDmaForCritical {
        partition: usize,
        region: usize,
        range: Range,
    },
    /// Device flags that are unknown, or say what the board contradicts (an opt-out
    /// or ECAM flag on a window of no bus master).
    BadDeviceFlags {
        partition: usize,
        region: usize,
        range: Range,
    },
}

impl ConfigError {
    /// The part of the configuration the error is about.
    pub fn location(&self) -> Where {
        use ConfigError::*;
        match *self {
            TooShort { .. }
            | BadMagic
            | UnsupportedVersion { .. }
            | LengthMismatch { .. }
            | ChecksumMismatch { .. }
            | WrongBoard { .. }
            | PartitionCount { .. } => Where::Header,
            CpuNotOnBoard { partition, vcpu, .. } | CpuGivenTwice { partition, vcpu, .. } => {
                Where::Vcpu(partition, vcpu)
            }
            IrqNotSpi { partition, irq, .. }
            | IrqGivenTwice { partition, irq, .. }
            | IrqNotOfItsDevices { partition, irq, .. } => Where::Irq(partition, irq),
            BadRegionKind { partition, region }
            | BadSignal { partition, region }
            | EmptyRegion { partition, region }
            | UnalignedRegion { partition, region }
            | RegionWraps { partition, region }
            | RamOutsideBoard { partition, region, .. }
            | DeviceNotOnBoard { partition, region, .. }
            | DeviceNotAssignable { partition, region, .. }
            | BusMasterUncontained { partition, region, .. }
            | UnprotectedDmaForCritical { partition, region, .. }
            | BadDeviceFlags { partition, region, .. }
            | OverlapsReserved { partition, region, .. }
            | PhysicalOverlap { partition, region, .. }
            | IpaOverlap { partition, region, .. } => Where::Region(partition, region),
            BadName { partition }
            | DuplicateName { partition, .. }
            | BadVmid { partition }
            | DuplicateVmid { partition, .. }
            | BadPolicy { partition }
            | SafeStateNotCritical { partition }
            | BadRestartLimits { partition }
            | VcpuCount { partition, .. }
            | RegionCount { partition, .. }
            | IrqCount { partition, .. }
            | NoRam { partition }
            | ImageOutsideRam { partition }
            | EntryOutsideRam { partition }
            | DtbOutsideRam { partition }
            | DtbOverlapsImage { partition } => Where::Partition(partition),
        }
    }
}

/// A message that names the problem. Partitions and regions are given by index here;
/// xtask, which has the source text, rewrites them into names and lines.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigError::*;
        match self {
            TooShort { len } => write!(f, "configuration is {len} bytes, shorter than its header"),
            BadMagic => write!(f, "configuration magic is not SEPTCFG"),
            UnsupportedVersion { found } => {
                write!(f, "configuration format version {found}, this hypervisor reads {CONFIG_VERSION}")
            }
            LengthMismatch { header, actual } => {
                write!(f, "configuration header says {header} bytes, {actual} present")
            }
            ChecksumMismatch { stored, computed } => write!(
                f,
                "configuration checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): corrupted"
            ),
            WrongBoard { found, expected } => {
                write!(f, "configuration is for board id {found}, this is board id {expected}")
            }
            PartitionCount { count } => {
                write!(f, "{count} partitions; between 1 and {MAX_PARTITIONS} are supported")
            }
            BadName { partition } => write!(f, "partition #{partition} has an empty or invalid name"),
            DuplicateName { partition, other } => {
                write!(f, "partition #{partition} has the same name as partition #{other}")
            }
            BadVmid { partition } => write!(f, "partition #{partition} has VMID 0 or above 255"),
            DuplicateVmid { partition, other } => {
                write!(f, "partition #{partition} has the same VMID as partition #{other}")
            }
            BadPolicy { partition } => write!(f, "partition #{partition} has an unknown fault policy"),
            SafeStateNotCritical { partition } => write!(
                f,
                "partition #{partition} uses on_fault = \"safe-state\" but is not marked critical; \
                 only a critical partition may stop the whole system"
            ),
            BadRestartLimits { partition } => write!(
                f,
                "partition #{partition}: restart needs max >= 1 and a window > 0"
            ),
            VcpuCount { partition, count } => {
                write!(f, "partition #{partition} has {count} CPUs; between 1 and {MAX_VCPUS} are supported")
            }
            CpuNotOnBoard { partition, vcpu, mpidr } => write!(
                f,
                "partition #{partition} CPU #{vcpu} (MPIDR {mpidr:#x}) does not exist on this board"
            ),
            CpuGivenTwice { partition, vcpu, mpidr, other } => write!(
                f,
                "partition #{partition} CPU #{vcpu} (MPIDR {mpidr:#x}) is also given to partition #{other}"
            ),
            RegionCount { partition, count } => {
                write!(f, "partition #{partition} has {count} regions; at most {MAX_REGIONS} are supported")
            }
            IrqCount { partition, count } => {
                write!(f, "partition #{partition} has {count} interrupts; at most {MAX_IRQS} are supported")
            }
            BadRegionKind { partition, region } => {
                write!(f, "partition #{partition} region #{region} has an unknown kind")
            }
            BadSignal { partition, region } => write!(
                f,
                "partition #{partition} region #{region}: a doorbell must signal another partition with an \
                 INTID in {}..{}, and no other region may name a signal",
                DOORBELL_INTIDS.start,
                DOORBELL_INTIDS.end
            ),
            EmptyRegion { partition, region } => {
                write!(f, "partition #{partition} region #{region} has size 0")
            }
            UnalignedRegion { partition, region } => write!(
                f,
                "partition #{partition} region #{region} is not aligned to {PAGE_SIZE:#x} (base, ipa and size must be)"
            ),
            RegionWraps { partition, region } => {
                write!(f, "partition #{partition} region #{region} wraps around the address space")
            }
            NoRam { partition } => write!(f, "partition #{partition} has no RAM"),
            RamOutsideBoard { partition, region, range } => write!(
                f,
                "partition #{partition} region #{region} ({range}) is outside the board's RAM"
            ),
            DeviceNotOnBoard { partition, region, range } => write!(
                f,
                "partition #{partition} region #{region} ({range}) is not a device window of this board"
            ),
            BusMasterUncontained { partition, region, range } => write!(
                f,
                "partition #{partition} region #{region} ({range}) is a device that masters the bus (DMA) with no IOMMU \
                 containing it on this board: it could read and write any memory; refused without the opt-out"
            ),
            UnprotectedDmaForCritical { partition, region, range } => write!(
                f,
                "partition #{partition} region #{region} ({range}): a critical partition may never be given a bus \
                 master no IOMMU contains"
            ),
            BadDeviceFlags { partition, region, range } => write!(
                f,
                "partition #{partition} region #{region} ({range}) has device flags that are unknown or name a bus \
                 master where the board has none"
            ),
            DeviceNotAssignable { partition, region, range } => write!(
                f,
                "partition #{partition} region #{region} ({range}) reaches a device the hypervisor keeps (its \
                 interrupt controller or flash bank, a bus master with no IOMMU, a firmware interface) or one \
                 only the secure world may use"
            ),
            OverlapsReserved { partition, region, range, reserved } => write!(
                f,
                "partition #{partition} region #{region} ({range}) overlaps reserved memory ({reserved}: the \
                 hypervisor's, its boot staging's, or what the board's device tree reserves)"
            ),
            PhysicalOverlap { partition, region, other_partition, other_region } => write!(
                f,
                "partition #{partition} region #{region} overlaps partition #{other_partition} region #{other_region}"
            ),
            IpaOverlap { partition, region, other_region } => write!(
                f,
                "partition #{partition} region #{region} overlaps its own region #{other_region} in guest-physical space"
            ),
            ImageOutsideRam { partition } => {
                write!(f, "partition #{partition}: image does not fit in its RAM")
            }
            EntryOutsideRam { partition } => {
                write!(f, "partition #{partition}: entry point is outside its image")
            }
            DtbOutsideRam { partition } => {
                write!(f, "partition #{partition}: device tree does not fit in its RAM")
            }
            DtbOverlapsImage { partition } => {
                write!(f, "partition #{partition}: its image runs into the space for its device tree")
            }
            IrqNotSpi { partition, intid, .. } => write!(
                f,
                "partition #{partition}: interrupt {intid} is {}; only a device's SPI ({FIRST_SPI}..{}) can be given",
                intid_kind(*intid),
                DOORBELL_INTIDS.start - 1
            ),
            IrqGivenTwice { partition, intid, other, .. } if partition == other => {
                write!(f, "partition #{partition}: interrupt {intid} is listed twice")
            }
            IrqGivenTwice { partition, intid, other, .. } => write!(
                f,
                "partition #{partition}: interrupt {intid} is also given to partition #{other}; an interrupt \
                 belongs to one partition"
            ),
            IrqNotOfItsDevices { partition, intid, .. } => write!(
                f,
                "partition #{partition}: interrupt {intid} is raised by none of its devices; a partition owns \
                 only its own devices' interrupts"
            ),
        }
    }
}

/// What an INTID that is no device's SPI is, for messages.
pub fn intid_kind(intid: u32) -> &'static str {
    match intid {
        0..16 => "an SGI (software-generated, between cores)",
        25 => "a PPI (the GIC maintenance interrupt, the hypervisor's)",
        26 => "a PPI (the hypervisor's timer)",
        27 => "a PPI (each core's virtual timer, given to whichever partition runs there)",
        16..FIRST_SPI => "a PPI (private to each core)",
        i if DOORBELL_INTIDS.contains(&i) => "a channel doorbell interrupt (set by the hypervisor from the channels)",
        i if i >= SPECIAL_INTIDS => "a special, extended-range or LPI INTID",
        _ => "an SPI",
    }
}

/// Can a partition be given `intid`: an SPI, and none the hypervisor uses for doorbells?
pub fn is_device_spi(intid: u32) -> bool {
    (FIRST_SPI..SPECIAL_INTIDS).contains(&intid) && !DOORBELL_INTIDS.contains(&intid)
}

/// A configuration whose framing and invariants have been checked.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    pub header: &'a ConfigHeader,
    pub partitions: &'a [PartitionDesc],
}

/// Computes the CRC-32 of a configuration image with its `crc32` field taken as zero.
pub fn checksum(bytes: &[u8]) -> u32 {
    let crc_at = core::mem::offset_of!(ConfigHeader, crc32);
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..crc_at]);
    h.update(&[0; 4]);
    h.update(&bytes[crc_at + 4..]);
    h.finalize()
}

impl<'a> Config<'a> {
    /// Checks framing, then every invariant against `board`; the hypervisor uses nothing
    /// from a configuration that has not passed this. `image_len(p)` gives the size of
    /// partition `p`'s image, when known (xtask and the hypervisor know it from the bundle).
    pub fn parse(
        bytes: &'a [u8],
        expected_board: BoardId,
        board: &BoardFacts,
        image_len: &dyn Fn(usize) -> Option<u64>,
    ) -> Result<Self, ConfigError> {
        let (header, rest) =
            ConfigHeader::ref_from_prefix(bytes).map_err(|_| ConfigError::TooShort { len: bytes.len() })?;
        if header.magic != CONFIG_MAGIC {
            return Err(ConfigError::BadMagic);
        }
        if header.version != CONFIG_VERSION {
            return Err(ConfigError::UnsupportedVersion { found: header.version });
        }
        if header.total_len as usize != bytes.len() {
            return Err(ConfigError::LengthMismatch { header: header.total_len, actual: bytes.len() });
        }
        let computed = checksum(bytes);
        if computed != header.crc32 {
            return Err(ConfigError::ChecksumMismatch { stored: header.crc32, computed });
        }
        if header.board != expected_board as u32 {
            return Err(ConfigError::WrongBoard { found: header.board, expected: expected_board as u32 });
        }
        let count = header.partition_count;
        if count == 0 || count as usize > MAX_PARTITIONS {
            return Err(ConfigError::PartitionCount { count });
        }
        let partitions = <[PartitionDesc]>::ref_from_bytes_with_elems(rest, count as usize)
            .map_err(|_| ConfigError::LengthMismatch { header: header.total_len, actual: bytes.len() })?;
        let config = Config { header, partitions };
        config.check(board, image_len)?;
        Ok(config)
    }

    fn check(&self, board: &BoardFacts, image_len: &dyn Fn(usize) -> Option<u64>) -> Result<(), ConfigError> {
        use ConfigError::*;
        for (i, p) in self.partitions.iter().enumerate() {
            check_partition_fields(i, p)?;
            for (j, q) in self.partitions[..i].iter().enumerate() {
                if q.name() == p.name() {
                    return Err(DuplicateName { partition: i, other: j });
                }
                if q.vmid == p.vmid {
                    return Err(DuplicateVmid { partition: i, other: j });
                }
            }
            for (v, &mpidr) in p.vcpus().iter().enumerate() {
                if !board.cpus.iter().any(|c| c == mpidr) {
                    return Err(CpuNotOnBoard { partition: i, vcpu: v, mpidr });
                }
                if p.vcpus()[..v].contains(&mpidr) {
                    return Err(CpuGivenTwice { partition: i, vcpu: v, mpidr, other: i });
                }
                if let Some(other) = self.partitions[..i].iter().position(|q| q.vcpus().contains(&mpidr)) {
                    return Err(CpuGivenTwice { partition: i, vcpu: v, mpidr, other });
                }
            }
            for (r, region) in p.regions().iter().enumerate() {
                check_region(i, r, region, board, p.is_critical())?;
                let signal_ok = if region.kind() == Some(RegionKind::Doorbell) {
                    let peer = region.signal_partition as usize;
                    peer != i && peer < self.partitions.len() && DOORBELL_INTIDS.contains(&region.signal_intid)
                } else {
                    region.signal_partition == 0 && region.signal_intid == 0
                };
                if !signal_ok {
                    return Err(BadSignal { partition: i, region: r });
                }
                for (s, earlier) in p.regions()[..r].iter().enumerate() {
                    let a = Range::new(region.ipa, region.size);
                    let b = Range::new(earlier.ipa, earlier.size);
                    if a.overlaps(&b) {
                        return Err(IpaOverlap { partition: i, region: r, other_region: s });
                    }
                }
                for (j, q) in self.partitions[..=i].iter().enumerate() {
                    let limit = if j == i { r } else { q.regions().len() };
                    for (s, other) in q.regions()[..limit].iter().enumerate() {
                        let both_memory = region.kind().is_some_and(RegionKind::is_memory)
                            && other.kind().is_some_and(RegionKind::is_memory);
                        if both_memory
                            && Range::new(region.pa, region.size).overlaps(&Range::new(other.pa, other.size))
                            && !is_channel_pair(region, other, i != j)
                        {
                            return Err(PhysicalOverlap {
                                partition: i,
                                region: r,
                                other_partition: j,
                                other_region: s,
                            });
                        }
                    }
                }
            }
            self.check_irqs(i, board)?;
            if !p.regions().iter().any(|r| r.kind() == Some(RegionKind::Ram)) {
                return Err(NoRam { partition: i });
            }
            let len = image_len(i).unwrap_or(1);
            if !p.ram_contains(p.image_ipa, len.max(1)) {
                return Err(ImageOutsideRam { partition: i });
            }
            if p.entry_ipa < p.image_ipa || p.entry_ipa >= p.image_ipa.saturating_add(len.max(1)) {
                return Err(EntryOutsideRam { partition: i });
            }
            if p.dtb_ipa % 8 != 0 || !p.ram_contains(p.dtb_ipa, DTB_MAX) {
                return Err(DtbOutsideRam { partition: i });
            }
            if Range::new(p.image_ipa, len.max(1)).overlaps(&Range::new(p.dtb_ipa, DTB_MAX)) {
                return Err(DtbOverlapsImage { partition: i });
            }
        }
        Ok(())
    }

    /// Partition `i`'s interrupts, checked like its devices: each a device's SPI, listed
    /// once, owned by no earlier partition, and raised by a device window the partition
    /// has (a window it was given overlaps the device's).
    fn check_irqs(&self, i: usize, board: &BoardFacts) -> Result<(), ConfigError> {
        use ConfigError::*;
        let p = &self.partitions[i];
        let own_devices =
            || p.regions().iter().filter(|r| r.kind() == Some(RegionKind::Device)).map(|r| Range::new(r.pa, r.size));
        for (k, &intid) in p.irqs().iter().enumerate() {
            if !is_device_spi(intid) {
                return Err(IrqNotSpi { partition: i, irq: k, intid });
            }
            if p.irqs()[..k].contains(&intid) {
                return Err(IrqGivenTwice { partition: i, irq: k, intid, other: i });
            }
            if let Some(other) = self.partitions[..i].iter().position(|q| q.irqs().contains(&intid)) {
                return Err(IrqGivenTwice { partition: i, irq: k, intid, other });
            }
            let raised_by_own =
                board.devices.iter().any(|d| d.irqs.contains(intid) && own_devices().any(|r| r.overlaps(&d.range)));
            if !raised_by_own {
                return Err(IrqNotOfItsDevices { partition: i, irq: k, intid });
            }
        }
        Ok(())
    }

    pub fn board(&self) -> Option<BoardId> {
        BoardId::from_u32(self.header.board)
    }
}

/// Space reserved for a partition's device tree at `dtb_ipa`.
pub const DTB_MAX: u64 = 64 * 1024;

fn check_partition_fields(i: usize, p: &PartitionDesc) -> Result<(), ConfigError> {
    use ConfigError::*;
    let name_ok = {
        let len = p.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        len > 0
            && len < NAME_LEN
            && core::str::from_utf8(&p.name[..len]).is_ok()
            && p.name[len..].iter().all(|&b| b == 0)
    };
    if !name_ok {
        return Err(BadName { partition: i });
    }
    if p.vmid == 0 || p.vmid > 255 {
        return Err(BadVmid { partition: i });
    }
    match p.policy() {
        None => return Err(BadPolicy { partition: i }),
        Some(FaultPolicy::SafeState) if !p.is_critical() => return Err(SafeStateNotCritical { partition: i }),
        Some(FaultPolicy::Restart) if p.restart_max == 0 || p.restart_window_ms == 0 => {
            return Err(BadRestartLimits { partition: i })
        }
        Some(_) => {}
    }
    if p.vcpu_count == 0 || p.vcpu_count as usize > MAX_VCPUS {
        return Err(VcpuCount { partition: i, count: p.vcpu_count });
    }
    if p.region_count as usize > MAX_REGIONS {
        return Err(RegionCount { partition: i, count: p.region_count });
    }
    if p.irq_count as usize > MAX_IRQS {
        return Err(IrqCount { partition: i, count: p.irq_count });
    }
    Ok(())
}

fn check_region(i: usize, r: usize, region: &MemRegion, board: &BoardFacts, critical: bool) -> Result<(), ConfigError> {
    use ConfigError::*;
    let Some(kind) = region.kind() else {
        return Err(BadRegionKind { partition: i, region: r });
    };
    if region.size == 0 {
        return Err(EmptyRegion { partition: i, region: r });
    }
    if !region.pa.is_multiple_of(PAGE_SIZE)
        || !region.ipa.is_multiple_of(PAGE_SIZE)
        || !region.size.is_multiple_of(PAGE_SIZE)
    {
        return Err(UnalignedRegion { partition: i, region: r });
    }
    if region.pa_end().is_none() || region.ipa_end().is_none() {
        return Err(RegionWraps { partition: i, region: r });
    }
    let range = Range::new(region.pa, region.size);
    match kind {
        RegionKind::Ram | RegionKind::SharedRw | RegionKind::SharedRo | RegionKind::Sensor => {
            if kind == RegionKind::Sensor && region.param != 0 {
                return Err(BadDeviceFlags { partition: i, region: r, range });
            }
            if !board.ram.iter().any(|ram| ram.contains(&range)) {
                return Err(RamOutsideBoard { partition: i, region: r, range });
            }
            if let Some(reserved) = board.reserved.iter().find(|res| res.overlaps(&range)) {
                return Err(OverlapsReserved { partition: i, region: r, range, reserved });
            }
        }
        RegionKind::Device => {
            // Overlap, not containment, decides what is kept: a window that reaches into
            // a kept device's (a shared page, a bus window around it) is refused.
            if board.devices.iter().any(|d| !d.assignable && d.range.overlaps(&range)) {
                return Err(DeviceNotAssignable { partition: i, region: r, range });
            }
            if !board.devices.iter().any(|d| d.assignable && d.range.contains(&range)) {
                return Err(DeviceNotOnBoard { partition: i, region: r, range });
            }
            check_dma(i, r, region.param, range, board, critical)?;
        }
        RegionKind::Doorbell => {}
    }
    Ok(())
}

/// A device window's bus mastering (DMA-001, DMA-002): a bus master no IOMMU contains
/// only with the description's opt-out, never for a critical partition; flags only
/// where the board has a bus master.
fn check_dma(
    i: usize,
    r: usize,
    flags: u32,
    range: Range,
    board: &BoardFacts,
    critical: bool,
) -> Result<(), ConfigError> {
    use device_flags::{ALL, DMA_UNPROTECTED, PCI_ECAM};
    use ConfigError::*;
    let masters = || board.devices.iter().filter(|d| d.range.overlaps(&range) && d.dma != DeviceDma::None);
    let uncontained = masters().any(|d| d.dma == DeviceDma::Uncontained);
    let opted_out = flags & DMA_UNPROTECTED != 0;
    if flags & !ALL != 0 || (flags & (DMA_UNPROTECTED | PCI_ECAM) != 0 && masters().next().is_none()) {
        return Err(BadDeviceFlags { partition: i, region: r, range });
    }
    if opted_out && critical {
        return Err(UnprotectedDmaForCritical { partition: i, region: r, range });
    }
    if uncontained && !opted_out {
        return Err(BusMasterUncontained { partition: i, region: r, range });
    }
    Ok(())
}

/// Two regions may share physical memory only as the two ends of a channel: the same
/// range, in different partitions, with at most one of them writable.
fn is_channel_pair(a: &MemRegion, b: &MemRegion, different_partitions: bool) -> bool {
    use RegionKind::{SharedRo, SharedRw};
    different_partitions
        && a.pa == b.pa
        && a.size == b.size
        && matches!(
            (a.kind(), b.kind()),
            (Some(SharedRw), Some(SharedRo)) | (Some(SharedRo), Some(SharedRw | SharedRo))
        )
}

#[cfg(test)]
mod tests;

/// Bytes of a configuration with `partitions` partitions.
pub const fn encoded_len(partitions: usize) -> usize {
    core::mem::size_of::<ConfigHeader>() + partitions * core::mem::size_of::<PartitionDesc>()
}

/// Writes header, partitions and checksum into `out`; returns the bytes used, or `None`
/// if `out` is too small or there are more than [`MAX_PARTITIONS`] partitions.
pub fn encode(board: BoardId, partitions: &[PartitionDesc], out: &mut [u8]) -> Option<usize> {
    let len = encoded_len(partitions.len());
    if partitions.len() > MAX_PARTITIONS || out.len() < len {
        return None;
    }
    let header = ConfigHeader {
        magic: CONFIG_MAGIC,
        version: CONFIG_VERSION,
        total_len: len as u32,
        crc32: 0,
        board: board as u32,
        partition_count: partitions.len() as u32,
        _reserved: 0,
    };
    let hlen = core::mem::size_of::<ConfigHeader>();
    out[..hlen].copy_from_slice(header.as_bytes());
    out[hlen..len].copy_from_slice(partitions.as_bytes());
    let crc = checksum(&out[..len]);
    let at = core::mem::offset_of!(ConfigHeader, crc32);
    out[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    Some(len)
}

//! System descriptions: `systems/<name>.toml`, written by people, checked here with
//! errors that name the file, the line and the fix, and compiled into the binary
//! configuration (`septum_abi::config`) the hypervisor reads.
//!
//! xtask checks what only the text can tell (names, units, unknown boards and devices),
//! then runs the very validator the hypervisor runs at boot (`Config::parse`) against
//! the board's catalogue, and translates its findings back to lines of the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use septum_abi::config::{
    self, flags, BoardFacts, Config, ConfigError, FaultPolicy, MemRegion, PartitionDesc, RegionKind, Where, DTB_MAX,
};
use septum_ipc_channel::Checksum;
use septum_platform::catalog::{self, Board};
use serde::Deserialize;
use toml::Spanned;
use zerocopy::FromZeros;

/// A problem in a system description, already formatted as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemError(pub String);

impl std::fmt::Display for SystemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SystemError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    board: Spanned<String>,
    partition: Option<indexmap_like::Ordered<RawPartition>>,
    channel: Option<indexmap_like::Ordered<channel::RawChannel>>,
}

/// A TOML table kept in file order.
mod indexmap_like {
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use std::fmt;

    pub struct Ordered<T>(pub Vec<(String, T)>);

    impl<T> Default for Ordered<T> {
        fn default() -> Self {
            Self(Vec::new())
        }
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(std::marker::PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = Ordered<T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a table of partitions")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, T>()? {
                        out.push((k, v));
                    }
                    Ok(Ordered(out))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    #[serde(default)]
    critical: bool,
    /// May read the audit log (read-only export, to upload it).
    #[serde(default)]
    audit_reader: bool,
    cpus: Spanned<Vec<Spanned<u64>>>,
    ram: Spanned<OneOrMany<RawRam>>,
    #[serde(default)]
    devices: Vec<Spanned<RawDevice>>,
    /// The interrupts (GIC INTIDs) the partition owns; default: all its devices'. Fewer
    /// leaves a device to be polled.
    interrupts: Option<Vec<Spanned<u32>>>,
    image: Spanned<String>,
    /// An initial RAM disk for a Linux kernel: "septum-initramfs" (busybox and the
    /// channel agent, built by xtask) or a file.
    initrd: Option<Spanned<String>>,
    #[serde(default)]
    bootargs: String,
    on_fault: Spanned<RawPolicy>,
    /// The image's release version for its signed manifest, "x.y.z".
    version: Option<Spanned<String>>,
    /// The manifest's anti-rollback counter: raise it to make older images unbootable.
    security_counter: Option<u64>,
    /// Memory a sensor's acquisition fills, by sensor name (`[partition.X.sensor.ecg]`):
    /// read-only to the partition; on QEMU, a recording's replay that xtask has QEMU
    /// load there.
    #[serde(default)]
    sensor: std::collections::BTreeMap<String, Spanned<RawRam>>,
    /// The ECG monitor's alarm limits (`[partition.X.alarms]`), over the standard's
    /// defaults (`septum_ecg::Limits`): carried in the signed device tree.
    alarms: Option<Spanned<std::collections::BTreeMap<String, Spanned<u32>>>>,
}

/// A device by its catalogue name, or `{ name = "...", dma = "unprotected" }`: a bus
/// master no IOMMU contains, given anyway (DMA-002).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDevice {
    Name(String),
    Table(RawDeviceTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviceTable {
    name: String,
    /// "unprotected": the description accepts DMA that nothing contains.
    dma: Option<String>,
}

impl RawDevice {
    fn name(&self) -> &str {
        match self {
            RawDevice::Name(n) => n,
            RawDevice::Table(t) => &t.name,
        }
    }
    fn dma(&self) -> Option<&str> {
        match self {
            RawDevice::Name(_) => None,
            RawDevice::Table(t) => t.dma.as_deref(),
        }
    }
}

/// The `dma` value that gives a bus master nothing contains.
pub const DMA_UNPROTECTED: &str = "unprotected";

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRam {
    base: u64,
    size: Size,
    /// Where the partition sees it; defaults to `base`.
    ipa: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    /// The size in bytes; None if the text is not a size.
    fn bytes(&self) -> Option<u64> {
        match self {
            Size::Bytes(b) => Some(*b),
            Size::Text(t) => parse_size(t),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPolicy {
    Name(String),
    Restart { restart: RawRestart },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    max: u32,
    within: String,
    #[serde(default = "default_backoff")]
    backoff: String,
}

fn default_backoff() -> String {
    "10ms".into()
}

/// What a partition's image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// One of the workspace's guest crates, built for `aarch64-unknown-none`.
    Guest(String),
    /// A file (an arm64 `Image` or a flat binary), relative to the description.
    File(PathBuf),
    /// Debian bookworm's generic arm64 kernel, unmodified, fetched by xtask.
    DebianLinux,
}

/// What a kernel's initial RAM disk is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitrdSource {
    /// Busybox, the channel agent and its kernel module, built by xtask (`linux::initramfs`).
    SeptumInitramfs,
    File(PathBuf),
}

/// The `image` naming Debian's kernel.
pub const DEBIAN_LINUX: &str = "debian-linux";
/// The `initrd` naming xtask's initramfs.
pub const SEPTUM_INITRAMFS: &str = "septum-initramfs";

/// The guest crates a description can name as `image`.
pub const GUESTS: &[&str] = &["critical-monitor", "connectivity"];

/// A checked partition, with what xtask still needs to build it.
#[derive(Debug, Clone)]
pub struct Partition {
    pub name: String,
    pub desc: PartitionDesc,
    pub image: ImageSource,
    pub initrd: Option<InitrdSource>,
    /// Where the initrd lies once the image is laid out (`[start, end)` IPAs), for the
    /// device tree's `/chosen`.
    pub initrd_range: Option<(u64, u64)>,
    pub bootargs: String,
    /// Devices by catalogue name, in the order given.
    pub devices: Vec<&'static catalog::DeviceInfo>,
    /// The device of each region after the RAM regions (one per device window).
    pub device_regions: Vec<&'static catalog::DeviceInfo>,
    /// Devices given with `dma = "unprotected"` (a warning at every build and boot).
    pub unprotected: Vec<&'static str>,
    /// Sensor memory, whose regions follow the devices.
    pub sensors: Vec<Sensor>,
    /// Alarm limits the description sets (`[partition.X.alarms]`), checked; None: the
    /// monitor's defaults, and no `alarm-limits` node.
    pub alarms: Option<septum_ecg::Limits>,
    /// Channel ends, whose regions follow the sensors.
    pub channels: Vec<channel::Endpoint>,
    /// Release version its manifest names (default: the workspace's version).
    pub version: [u16; 3],
    /// Anti-rollback counter its manifest carries (default 1).
    pub security_counter: u64,
    line: usize,
    cpu_lines: Vec<usize>,
    region_lines: Vec<usize>,
    /// Where each interrupt comes from: its entry in `interrupts`, or its device's.
    irq_lines: Vec<usize>,
    policy_line: usize,
}

/// Memory a sensor's acquisition fills (`RegionKind::Sensor`): on QEMU, where xtask has
/// QEMU's loader put a recording (`cargo xtask run --ecg FILE` for the one named "ecg").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sensor {
    pub name: String,
    pub pa: u64,
    pub ipa: u64,
    pub size: u64,
}

/// A checked system description.
#[derive(Debug, Clone)]
pub struct System {
    pub name: String,
    pub path: PathBuf,
    pub board: &'static Board,
    pub partitions: Vec<Partition>,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<String>,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }
    fn err(&mut self, offset: usize, msg: impl std::fmt::Display) {
        let line = self.line(offset);
        self.errors.push(format!("{}:{line}: {msg}", self.path.display()));
    }
    fn err_line(&mut self, line: usize, msg: impl std::fmt::Display) {
        self.errors.push(format!("{}:{line}: {msg}", self.path.display()));
    }
}

/// Parses `"16M"`, `"4K"`, `"1G"` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    let n: u64 = match num.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => num.parse().ok()?,
    };
    n.checked_mul(mult)
}

/// Parses `"60s"`, `"250ms"`, `"2min"` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix("min") {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else {
        return None;
    };
    u32::try_from(num.trim().parse::<u64>().ok()?.checked_mul(mult)?).ok()
}

/// Parses a release version `"x.y.z"` (each part at most 65535).
pub fn parse_version(s: &str) -> Option<[u16; 3]> {
    let mut parts = s.trim().split('.').map(|p| p.parse::<u16>().ok());
    let v = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(v)
}

/// The version manifests carry when a description gives none: the workspace's.
pub fn default_version() -> [u16; 3] {
    parse_version(env!("CARGO_PKG_VERSION")).unwrap_or([0, 0, 0])
}

/// Where a partition's device tree goes: 2 MiB below the top of its first RAM region.
fn dtb_ipa(ram: &MemRegion) -> u64 {
    ram.ipa + ram.size.saturating_sub(2 << 20).max(ram.size / 2) / 4096 * 4096
}

/// Reads and checks a system description. Checks that need the images' sizes run again
/// in `build::pack`, once the images are built.
pub fn load(path: &Path) -> Result<System, Vec<SystemError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![SystemError(format!("{}: cannot read: {e}", path.display()))])?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<System, Vec<SystemError>> {
    let mut cx = Ctx { path, text, errors: Vec::new() };
    let raw: RawSystem = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map_or(1, |s| cx.line(s.start));
            let msg = e.message().to_string();
            return Err(vec![SystemError(format!("{}:{line}: {msg}", path.display()))]);
        }
    };
    let board_name = raw.board.get_ref();
    let Some(board) = catalog::board(board_name) else {
        let known: Vec<_> = catalog::BOARDS.iter().map(|b| b.name).collect();
        cx.err(raw.board.span().start, format!("unknown board \"{board_name}\"; known boards: {}", known.join(", ")));
        return Err(cx.errors.into_iter().map(SystemError).collect());
    };
    let (parts_span, raw_parts) = match raw.partition {
        Some(p) => (text.len(), p.0),
        None => (text.len(), Vec::new()),
    };
    if raw_parts.is_empty() {
        cx.err(parts_span, "no [partition.<name>] tables: a system needs at least one partition");
    }
    let mut partitions = Vec::new();
    let mut device_owner: BTreeMap<&str, (String, usize)> = BTreeMap::new();
    for (i, (name, rp)) in raw_parts.into_iter().enumerate() {
        let header = format!("[partition.{name}]");
        let line = text.find(&header).map_or_else(|| cx.line(rp.image.span().start), |at| cx.line(at));
        let mut desc = PartitionDesc::new_zeroed();
        match septum_abi::name_field::<{ config::NAME_LEN }>(&name) {
            Some(n) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) => desc.name = n,
            _ => cx.err_line(
                line,
                format!("partition name \"{name}\" must be 1..{} printable characters", config::NAME_LEN - 1),
            ),
        }
        desc.vmid = i as u32 + 1;
        if rp.critical {
            desc.flags |= flags::CRITICAL;
        }
        if rp.audit_reader {
            desc.flags |= flags::AUDIT_READER;
        }
        // CPUs, by board CPU number.
        let mut cpu_lines = Vec::new();
        if rp.cpus.get_ref().is_empty() {
            cx.err(rp.cpus.span().start, format!("{name}: cpus is empty; give at least one CPU"));
        }
        for (v, cpu) in rp.cpus.get_ref().iter().enumerate() {
            let n = *cpu.get_ref();
            cpu_lines.push(cx.line(cpu.span().start));
            match board.cpus.get(n as usize) {
                Some(&mpidr) if v < config::MAX_VCPUS => desc.vcpu_mpidr[v] = mpidr,
                Some(_) => cx.err(cpu.span().start, format!("{name}: more than {} CPUs", config::MAX_VCPUS)),
                None => cx.err(
                    cpu.span().start,
                    format!(
                        "{name}: CPU {n} does not exist on {} (it has CPUs 0..{})",
                        board.name,
                        board.cpus.len() - 1
                    ),
                ),
            }
        }
        desc.vcpu_count = rp.cpus.get_ref().len().min(config::MAX_VCPUS) as u32;
        // RAM regions first, then devices.
        let ram_at = rp.ram.span().start;
        let rams: Vec<RawRam> = match rp.ram.into_inner() {
            OneOrMany::One(r) => vec![r],
            OneOrMany::Many(v) => v,
        };
        let mut regions = Vec::new();
        let mut region_lines = Vec::new();
        for r in &rams {
            let Some(size) = r.size.bytes() else {
                cx.err(ram_at, format!("{name}: ram size is not a size (write e.g. \"16M\" or 0x100_0000)"));
                continue;
            };
            regions.push(MemRegion {
                pa: r.base,
                ipa: r.ipa.unwrap_or(r.base),
                size,
                kind: RegionKind::Ram as u32,
                param: 0,
                signal_partition: 0,
                signal_intid: 0,
            });
            region_lines.push(cx.line(ram_at));
        }
        let mut devices = Vec::new();
        let mut device_lines = Vec::new();
        let mut device_regions = Vec::new();
        let mut unprotected = Vec::new();
        for dev in &rp.devices {
            let dname = dev.get_ref().name();
            // A device the hypervisor keeps is named to be refused, with its reason, by
            // the validator the hypervisor also runs.
            let found = board.device(dname).or_else(|| board.kept_device(dname).map(|k| &k.device));
            let Some(info) = found else {
                let known: Vec<_> = board.devices.iter().map(|d| d.name).collect();
                cx.err(
                    dev.span().start,
                    format!("{name}: device \"{dname}\" is not on {} (it has {})", board.name, known.join(", ")),
                );
                continue;
            };
            if let Some((owner, owner_line)) = device_owner.get(info.name) {
                cx.err(
                    dev.span().start,
                    format!(
                        "{name}: device \"{dname}\" is already given to {owner} (line {owner_line}); a device belongs to one partition"
                    ),
                );
                continue;
            }
            let mut flags = 0;
            match dev.get_ref().dma() {
                None => {}
                Some(DMA_UNPROTECTED) => {
                    flags |= config::device_flags::DMA_UNPROTECTED;
                    unprotected.push(info.name);
                }
                Some(other) => cx.err(
                    dev.span().start,
                    format!("{name}: device \"{dname}\": dma = \"{other}\" is not a choice (the one there is: dma = \"{DMA_UNPROTECTED}\")"),
                ),
            }
            device_owner.insert(info.name, (name.clone(), cx.line(dev.span().start)));
            for (k, window) in info.ranges().enumerate() {
                let ecam = if k == 0 && info.pci_ecam { config::device_flags::PCI_ECAM } else { 0 };
                regions.push(MemRegion { param: flags | ecam, ..MemRegion::device(window.base, window.size) });
                region_lines.push(cx.line(dev.span().start));
                device_regions.push(info);
            }
            device_lines.push(cx.line(dev.span().start));
            devices.push(info);
        }
        let mut sensors = Vec::new();
        for (sname, raw) in &rp.sensor {
            let at = raw.span().start;
            let r = raw.get_ref();
            let Some(size) = r.size.bytes() else {
                cx.err(at, format!("{name}: sensor {sname}: size is not a size (write e.g. \"4M\" or 0x40_0000)"));
                continue;
            };
            let sensor = Sensor { name: sname.clone(), pa: r.base, ipa: r.ipa.unwrap_or(r.base), size };
            regions.push(MemRegion {
                pa: sensor.pa,
                ipa: sensor.ipa,
                size,
                kind: RegionKind::Sensor as u32,
                param: 0,
                signal_partition: 0,
                signal_intid: 0,
            });
            region_lines.push(cx.line(at));
            sensors.push(sensor);
        }
        let alarms = rp.alarms.as_ref().and_then(|table| {
            if sensors.is_empty() {
                cx.err(table.span().start, format!("{name}: alarms are for a partition with a sensor to monitor"));
            }
            let mut limits = septum_ecg::Limits::default();
            let mut ok = true;
            for (key, value) in table.get_ref() {
                if let Err(e) = limits.set(key, *value.get_ref()) {
                    cx.err(value.span().start, format!("{name}: alarms: {key}: {e}"));
                    ok = false;
                }
            }
            if let Err(e) = limits.validate() {
                cx.err(table.span().start, format!("{name}: alarms: {e}"));
                ok = false;
            }
            ok.then_some(limits)
        });
        if regions.len() > config::MAX_REGIONS {
            cx.err_line(line, format!("{name}: more than {} memory and device regions", config::MAX_REGIONS));
            regions.truncate(config::MAX_REGIONS);
        }
        desc.region_count = regions.len() as u32;
        desc.regions[..regions.len()].copy_from_slice(&regions);
        // Interrupts: as listed, or every interrupt of the partition's devices (but a
        // kept device's, which the validator refuses as a device first).
        let irqs: Vec<(u32, usize)> = match &rp.interrupts {
            Some(list) => list.iter().map(|i| (*i.get_ref(), cx.line(i.span().start))).collect(),
            None => devices
                .iter()
                .zip(&device_lines)
                .filter(|(d, _)| board.device(d.name).is_some())
                .flat_map(|(d, &l)| d.irqs.iter().map(move |&i| (i, l)))
                .collect(),
        };
        if irqs.len() > config::MAX_IRQS {
            cx.err_line(
                irqs[config::MAX_IRQS].1,
                format!("{name}: more than {} interrupts; list the ones it uses in `interrupts`", config::MAX_IRQS),
            );
        }
        let irqs = &irqs[..irqs.len().min(config::MAX_IRQS)];
        for (slot, &(irq, _)) in desc.irqs.iter_mut().zip(irqs) {
            *slot = irq;
        }
        desc.irq_count = irqs.len() as u32;
        let irq_lines = irqs.iter().map(|&(_, line)| line).collect();
        // Image placement: images are linked to start at the first RAM region's IPA.
        if let Some(first) = regions.first() {
            desc.image_ipa = first.ipa;
            desc.entry_ipa = first.ipa;
            desc.dtb_ipa = dtb_ipa(first);
        }
        // Fault policy.
        let policy_line = cx.line(rp.on_fault.span().start);
        match rp.on_fault.get_ref() {
            RawPolicy::Name(n) if n == "halt" => desc.policy = FaultPolicy::Halt as u32,
            RawPolicy::Name(n) if n == "safe-state" => desc.policy = FaultPolicy::SafeState as u32,
            RawPolicy::Name(n) if n == "restart" => {
                desc.policy = FaultPolicy::Restart as u32;
                desc.restart_max = 5;
                desc.restart_window_ms = 60_000;
                desc.backoff_ms = 10;
            }
            RawPolicy::Name(other) => cx.err_line(
                policy_line,
                format!("{name}: on_fault = \"{other}\" is not a policy; use \"restart\", \"halt\", \"safe-state\" or {{ restart = {{ max, within, backoff }} }}"),
            ),
            RawPolicy::Restart { restart } => {
                desc.policy = FaultPolicy::Restart as u32;
                desc.restart_max = restart.max;
                match (parse_duration_ms(&restart.within), parse_duration_ms(&restart.backoff)) {
                    (Some(w), Some(b)) => {
                        desc.restart_window_ms = w;
                        desc.backoff_ms = b;
                    }
                    _ => cx.err_line(policy_line, format!("{name}: within and backoff are durations such as \"60s\" or \"10ms\"")),
                }
            }
        }
        let image = match rp.image.get_ref().as_str() {
            g if GUESTS.contains(&g) => ImageSource::Guest(g.to_string()),
            DEBIAN_LINUX => ImageSource::DebianLinux,
            other if other.contains('/') || other.contains('.') => {
                ImageSource::File(path.parent().unwrap_or(Path::new(".")).join(other))
            }
            other => {
                cx.err(
                    rp.image.span().start,
                    format!(
                        "{name}: image \"{other}\" is neither a guest crate ({}), \"{DEBIAN_LINUX}\" nor a file path",
                        GUESTS.join(", ")
                    ),
                );
                ImageSource::File(PathBuf::from(other))
            }
        };
        let version = match &rp.version {
            None => default_version(),
            Some(v) => parse_version(v.get_ref()).unwrap_or_else(|| {
                cx.err(v.span().start, format!("{name}: version \"{}\" is not x.y.z (e.g. \"1.2.0\")", v.get_ref()));
                [0; 3]
            }),
        };
        let initrd = rp.initrd.as_ref().map(|rd| match rd.get_ref().as_str() {
            SEPTUM_INITRAMFS => InitrdSource::SeptumInitramfs,
            file => InitrdSource::File(path.parent().unwrap_or(Path::new(".")).join(file)),
        });
        if let (Some(rd), ImageSource::Guest(g)) = (&rp.initrd, &image) {
            cx.err(rd.span().start, format!("{name}: initrd is for a Linux kernel image, not for the guest \"{g}\""));
        }
        partitions.push(Partition {
            name,
            desc,
            image,
            initrd,
            initrd_range: None,
            bootargs: rp.bootargs,
            devices,
            device_regions,
            unprotected,
            sensors,
            alarms,
            channels: Vec::new(),
            version,
            security_counter: rp.security_counter.unwrap_or(1),
            line,
            cpu_lines,
            region_lines,
            irq_lines,
            policy_line,
        });
    }
    for (c, (name, raw)) in raw.channel.map(|c| c.0).unwrap_or_default().into_iter().enumerate() {
        let header = format!("[channel.{name}]");
        let line = text.find(&header).map_or(1, |at| cx.line(at));
        // Each channel's doorbells arrive as one virtual interrupt of its own.
        let Some(intid) = config::DOORBELL_INTIDS.clone().nth(c) else {
            cx.err_line(line, format!("channel {name}: more channels than doorbell interrupts"));
            continue;
        };
        let laid = match channel::lay_out(&name, &raw, line) {
            Ok(l) => l,
            Err((offset, msg)) => {
                cx.err(offset, msg);
                continue;
            }
        };
        // CH-012: the critical partition's channels always carry their checksum.
        if laid.from_end.checksum == Checksum::None {
            let critical = partitions
                .iter()
                .find(|p| (p.name == laid.from || p.name == laid.to) && p.desc.flags & flags::CRITICAL != 0);
            if let Some(p) = critical {
                let msg = format!(
                    "channel {name}: checksum = \"none\" on a channel of critical partition {}; a critical partition's \
                     channels always carry their CRC-32C (drop the line)",
                    p.name
                );
                match laid.checksum_at {
                    Some(at) => cx.err(at, msg),
                    None => cx.err_line(laid.line, msg),
                }
                continue;
            }
        }
        let index_of = |n: &str| partitions.iter().position(|p| p.name == n).unwrap_or(0) as u32;
        let (from_index, to_index) = (index_of(&laid.from), index_of(&laid.to));
        for (end, regions, endpoint, peer) in [
            (&laid.from, &laid.from_regions, &laid.from_end, to_index),
            (&laid.to, &laid.to_regions, &laid.to_end, from_index),
        ] {
            let Some(p) = partitions.iter_mut().find(|p| &p.name == end) else {
                cx.err_line(laid.line, format!("channel {name}: no partition named \"{end}\""));
                continue;
            };
            let count = p.desc.region_count as usize;
            if count + regions.len() > config::MAX_REGIONS {
                cx.err_line(
                    laid.line,
                    format!("{}: more than {} memory, device and channel regions", p.name, config::MAX_REGIONS),
                );
                continue;
            }
            p.desc.regions[count..count + regions.len()].copy_from_slice(regions);
            for r in &mut p.desc.regions[count..count + regions.len()] {
                if r.kind() == Some(RegionKind::Doorbell) {
                    (r.signal_partition, r.signal_intid) = (peer, intid);
                }
            }
            p.desc.region_count += regions.len() as u32;
            p.region_lines.extend(std::iter::repeat_n(laid.line, regions.len()));
            p.channels.push(channel::Endpoint { interrupt: intid, ..endpoint.clone() });
        }
    }
    if !cx.errors.is_empty() {
        return Err(cx.errors.into_iter().map(SystemError).collect());
    }
    let system = System {
        name: path.file_stem().map_or("system".into(), |s| s.to_string_lossy().into_owned()),
        path: path.to_path_buf(),
        board,
        partitions,
    };
    system.check(&|_| None).map_err(|e| vec![e])?;
    Ok(system)
}

impl System {
    /// The binary configuration.
    pub fn encode(&self) -> Vec<u8> {
        let descs: Vec<PartitionDesc> = self.partitions.iter().map(|p| p.desc).collect();
        let mut out = vec![0u8; config::encoded_len(descs.len())];
        let n = config::encode(self.board.id, &descs, &mut out).unwrap_or(0);
        out.truncate(n);
        out
    }

    /// Runs the hypervisor's own validator on the compiled configuration.
    pub fn check(&self, image_len: &dyn Fn(usize) -> Option<u64>) -> Result<(), SystemError> {
        if self.partitions.len() > config::MAX_PARTITIONS {
            return Err(SystemError(format!(
                "{}: {} partitions; at most {} are supported",
                self.path.display(),
                self.partitions.len(),
                config::MAX_PARTITIONS
            )));
        }
        self.check_against(&self.board.facts(), image_len)
    }

    /// Runs the hypervisor's validator against `facts`.
    fn check_against(&self, facts: &BoardFacts, image_len: &dyn Fn(usize) -> Option<u64>) -> Result<(), SystemError> {
        let bytes = self.encode();
        Config::parse(&bytes, self.board.id, facts, image_len).map(|_| ()).map_err(|e| self.explain(e))
    }

    /// Runs the check the hypervisor runs at boot, against the board device tree `dtb`
    /// (what it says, the devices the catalogue keeps, and the memory the catalogue
    /// reserves for the hypervisor and the boot staging).
    pub fn check_at_boot(&self, dtb: &[u8]) -> Result<(), SystemError> {
        let facts = boot_facts(self.board, dtb)
            .map_err(|e| SystemError(format!("{}: the board's device tree: {e}", self.path.display())))?;
        self.check_against(&facts, &|_| None)
    }

    /// Turns a validator finding into `file:line: message` with names instead of indices.
    fn explain(&self, e: ConfigError) -> SystemError {
        let file = self.path.display();
        let p = |i: usize| self.partitions.get(i);
        let pname = |i: usize| p(i).map_or("?".to_string(), |p| p.name.clone());
        let rname = |i: usize, r: usize| -> String {
            let Some(part) = p(i) else { return "?".into() };
            let rams = part.desc.regions().iter().filter(|x| x.kind() == Some(RegionKind::Ram)).count();
            let reg = part.desc.regions.get(r).copied();
            let range = reg.map(|x| format!("{:#x}..{:#x}", x.pa, x.pa.saturating_add(x.size))).unwrap_or_default();
            let kind = reg.and_then(|x| x.kind());
            if kind == Some(RegionKind::Sensor) {
                let sensor = part.sensors.iter().find(|s| reg.is_some_and(|x| x.ipa == s.ipa && x.pa == s.pa));
                format!("sensor {} memory of {} ({range})", sensor.map_or("?", |s| s.name.as_str()), part.name)
            } else if matches!(kind, Some(RegionKind::SharedRw | RegionKind::SharedRo | RegionKind::Doorbell)) {
                let ipa = reg.map_or(0, |x| x.ipa);
                let ch = part.channels.iter().find(|c| {
                    [c.own, c.peer].iter().flatten().any(|&(b, sz)| b <= ipa && ipa < b + sz) || c.doorbell == ipa
                });
                format!("channel {} memory of {} ({range})", ch.map_or("?", |c| c.channel.as_str()), part.name)
            } else if r < rams {
                format!("ram of {} ({range})", part.name)
            } else {
                let dev = part.device_regions.get(r - rams).map_or("?", |d| d.name);
                format!("device {dev} of {} ({range})", part.name)
            }
        };
        let line = match e {
            ConfigError::SafeStateNotCritical { partition }
            | ConfigError::BadRestartLimits { partition }
            | ConfigError::BadPolicy { partition } => p(partition).map_or(1, |p| p.policy_line),
            _ => self.line_of(e),
        };
        let irq_of = |intid: u32| {
            let device = self.board.devices.iter().find(|d| d.irqs.contains(&intid));
            let owner =
                device.and_then(|d| self.partitions.iter().find(|q| q.devices.iter().any(|x| x.name == d.name)));
            let kept = self.board.kept_devices.iter().find(|k| k.device.irqs.contains(&intid));
            match (device, owner, kept) {
                (Some(d), Some(q), _) => format!("it is {}'s, a device of {}", d.name, q.name),
                (Some(d), None, _) => format!("it is {}'s, which no partition has", d.name),
                (None, _, Some(k)) => format!("it is {}'s, which the hypervisor keeps", k.device.name),
                (None, _, None) => format!("no device of {} in the catalogue raises it", self.board.name),
            }
        };
        let own_irqs = |i: usize| {
            let list: Vec<String> = p(i)
                .map_or(Vec::new(), |part| part.devices.iter().map(|d| format!("{}: {:?}", d.name, d.irqs)).collect());
            if list.is_empty() {
                "it has no devices".to_string()
            } else {
                list.join(", ")
            }
        };
        let mut msg = String::new();
        let _ = match e {
            ConfigError::DeviceNotAssignable { partition, region, range } => match self.board.kept_at(&range) {
                Some(k) if self.device_name(partition, region) == Some(k.device.name) => write!(
                    msg,
                    "{} is kept by the hypervisor: {}; no partition may have it",
                    rname(partition, region),
                    k.why
                ),
                Some(k) => write!(
                    msg,
                    "{} reaches into {} ({}), kept by the hypervisor: {}; no partition may have it",
                    rname(partition, region),
                    k.device.name,
                    k.range(),
                    k.why
                ),
                None => write!(
                    msg,
                    "{} is a device the hypervisor keeps or only the secure world may use",
                    rname(partition, region)
                ),
            },
            ConfigError::BusMasterUncontained { partition, region, .. } => {
                let dev = self.device_name(partition, region).and_then(|n| self.board.device(n));
                let name = dev.map_or("?", |d| d.name);
                match (dev.map(|d| d.dma), self.board.iommu) {
                    (Some(catalog::Dma::Iommu { .. }), Some(iommu)) => write!(
                        msg,
                        "{} masters the bus (DMA) and the IOMMU that contains it on {} (the SMMUv3 at {:#x}) is not \
                         in this machine (QEMU: -M virt,iommu=smmuv3): it could read and write any memory, the \
                         critical partition's included",
                        rname(partition, region),
                        self.board.name,
                        iommu.base
                    ),
                    _ => write!(
                        msg,
                        "{} masters the bus (DMA) and {} has no IOMMU in front of it: it could read and write any \
                         memory, the critical partition's included. Give it as {{ name = \"{name}\", dma = \"{DMA_UNPROTECTED}\" }} \
                         only if the device maker accepts that (docs/boards.md)",
                        rname(partition, region),
                        self.board.name
                    ),
                }
            }
            ConfigError::UnprotectedDmaForCritical { partition, region, .. } => write!(
                msg,
                "{}: a critical partition may never be given a device with dma = \"{DMA_UNPROTECTED}\" (nothing would stop it \
                 writing anywhere)",
                rname(partition, region)
            ),
            ConfigError::BadDeviceFlags { partition, region, .. } => write!(
                msg,
                "{}: dma = \"{DMA_UNPROTECTED}\" is only for a device that masters the bus with no IOMMU in front",
                rname(partition, region)
            ),
            ConfigError::IrqGivenTwice { partition, intid, other, .. } if other == partition => {
                write!(msg, "{}: interrupt {intid} is listed twice", pname(partition))
            }
            ConfigError::IrqGivenTwice { partition, intid, other, .. } => write!(
                msg,
                "{}: interrupt {intid} is already given to {}; an interrupt belongs to one partition",
                pname(partition),
                pname(other)
            ),
            ConfigError::IrqNotOfItsDevices { partition, intid, .. } => write!(
                msg,
                "{}: interrupt {intid} is raised by none of its devices ({}); {}",
                pname(partition),
                own_irqs(partition),
                irq_of(intid)
            ),
            ConfigError::PhysicalOverlap { partition, region, other_partition, other_region } => write!(
                msg,
                "{} overlaps {}; move one of them",
                rname(partition, region),
                rname(other_partition, other_region)
            ),
            ConfigError::UnalignedRegion { partition, region } => {
                write!(
                    msg,
                    "{} is not 4 KiB aligned (base, ipa and size must be multiples of 0x1000)",
                    rname(partition, region)
                )
            }
            ConfigError::RamOutsideBoard { partition, region, .. } => {
                let board_ram: Vec<_> = self.board.ram.iter().map(|r| r.to_string()).collect();
                write!(
                    msg,
                    "{} is outside the RAM of {} ({})",
                    rname(partition, region),
                    self.board.name,
                    board_ram.join(", ")
                )
            }
            ConfigError::OverlapsReserved { partition, region, reserved, .. }
                if self.board.firmware_reserved.contains(&reserved) =>
            {
                write!(
                    msg,
                    "{} overlaps {reserved}, which the firmware of {} keeps (its device tree's /reserved-memory or \
                     /memreserve/)",
                    rname(partition, region),
                    self.board.name
                )
            }
            ConfigError::OverlapsReserved { partition, region, reserved, .. }
                if self.board.reserved.contains(&reserved) =>
            {
                write!(
                    msg,
                    "{} overlaps {reserved}, which {} reserves for the hypervisor and boot staging",
                    rname(partition, region),
                    self.board.name
                )
            }
            ConfigError::OverlapsReserved { partition, region, reserved, .. } => {
                write!(msg, "{} overlaps {reserved}, which the board's device tree reserves", rname(partition, region))
            }
            ConfigError::CpuGivenTwice { partition, vcpu, other, .. } => {
                let n = self.board_cpu(partition, vcpu);
                if other == partition {
                    write!(msg, "{}: CPU {n} is listed twice", pname(partition))
                } else {
                    write!(
                        msg,
                        "{}: CPU {n} is already given to {}; a CPU belongs to one partition",
                        pname(partition),
                        pname(other)
                    )
                }
            }
            ConfigError::SafeStateNotCritical { partition } => {
                write!(
                    msg,
                    "{}: on_fault = \"safe-state\" stops the whole system, so only a partition with critical = true may use it",
                    pname(partition)
                )
            }
            ConfigError::ImageOutsideRam { partition } => {
                write!(msg, "{}: its image does not fit in its first RAM region", pname(partition))
            }
            ConfigError::DtbOutsideRam { partition } => write!(
                msg,
                "{}: its first RAM region is too small for image and device tree ({} KiB at the top)",
                pname(partition),
                DTB_MAX / 1024
            ),
            other => {
                // Replace "partition #i" with the name.
                let text = other.to_string();
                let mut out = text.clone();
                for (i, part) in self.partitions.iter().enumerate() {
                    out = out.replace(&format!("partition #{i} "), &format!("{} ", part.name));
                    out = out.replace(&format!("partition #{i}:"), &format!("{}:", part.name));
                }
                write!(msg, "{out}")
            }
        };
        SystemError(format!("{file}:{line}: {msg}"))
    }

    /// The catalogue name of partition `i`'s region `r`, when it is a device.
    fn device_name(&self, i: usize, r: usize) -> Option<&'static str> {
        let part = self.partitions.get(i)?;
        let rams = part.desc.regions().iter().filter(|x| x.kind() == Some(RegionKind::Ram)).count();
        part.device_regions.get(r.checked_sub(rams)?).map(|d| d.name)
    }

    /// The line a validator finding is about.
    fn line_of(&self, e: ConfigError) -> usize {
        let p = |i: usize| self.partitions.get(i);
        match e.location() {
            Where::Header => 1,
            Where::Partition(i) => p(i).map_or(1, |p| p.line),
            Where::Region(i, r) => p(i).and_then(|p| p.region_lines.get(r).copied()).unwrap_or(1),
            Where::Vcpu(i, v) => p(i).and_then(|p| p.cpu_lines.get(v).copied()).unwrap_or(1),
            Where::Irq(i, k) => p(i).and_then(|p| p.irq_lines.get(k).copied()).unwrap_or(1),
        }
    }

    fn board_cpu(&self, partition: usize, vcpu: usize) -> String {
        let mpidr = self.partitions.get(partition).and_then(|p| p.desc.vcpu_mpidr.get(vcpu).copied());
        match mpidr.and_then(|m| self.board.cpus.iter().position(|&c| c == m)) {
            Some(n) => n.to_string(),
            None => format!("{mpidr:#x?}"),
        }
    }

    /// Sets a partition's image layout once the image is built, and re-checks.
    pub fn place_image(&mut self, index: usize, load: u64, entry: u64) {
        if let Some(p) = self.partitions.get_mut(index) {
            p.desc.image_ipa = load;
            p.desc.entry_ipa = entry;
        }
    }
}

/// The facts the hypervisor checks a configuration against at boot on `board`, from
/// its device tree `dtb`: what the DTB says (devices with their interrupts, reserved
/// memory), the devices the catalogue keeps, and the catalogue's reserved RAM (where
/// the hypervisor and the boot staging are; the hypervisor adds its exact ranges).
/// A DTB as shipped whose RAM the firmware fills in is taken with the catalogue's RAM.
pub fn boot_facts(board: &Board, dtb: &[u8]) -> Result<BoardFacts, String> {
    let mut facts = septum_core::board::read_as_shipped(dtb).map_err(|e| e.to_string())?.board;
    if facts.ram.is_empty() {
        for &r in board.ram {
            facts.ram.push(r);
        }
    }
    if facts.cpus.is_empty() {
        return Err("the device tree names no CPUs".into());
    }
    let smmu = septum_core::board::read_as_shipped(dtb).map_err(|e| e.to_string())?.smmu_v3;
    if !board.keep_devices(&mut facts) || !board.add_shown_devices(&mut facts, board.iommu_at(smmu)) {
        return Err("more devices than the hypervisor's table holds".into());
    }
    for &r in board.reserved {
        if !facts.reserved.push(r) {
            return Err("more reserved ranges than the hypervisor's table holds".into());
        }
    }
    Ok(facts)
}

pub mod channel;

#[cfg(test)]
mod tests;

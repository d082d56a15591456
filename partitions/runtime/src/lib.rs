//! What every Septum bare-metal guest needs: the entry point (FP on, stack, BSS), its
//! device tree (read with `fdt`), a console (its own UART if its device tree lists one:
//! a PL011, an i.MX UART or a BCM2835 mini UART; else the hypervisor's log through a
//! hypercall), the generic timer, and hypercalls.
//!
//! A guest crate provides `#[no_mangle] fn partition_main(boot: Boot) -> !`.
#![no_std]

use core::fmt::{self, Write};
use septum_abi::hypercall::{self as hc, psci, StartCondition};
use septum_ipc_channel::queuing::{Consumer, Producer};
use septum_ipc_channel::volatile::VolatileRegion;
use septum_ipc_channel::{Checksum, Geometry};
use septum_platform::bcm2835_aux::MiniUart;
use septum_platform::imx_uart::ImxUart;
use septum_platform::pl011::Pl011;
use septum_platform::uart::UartKind;

pub use fdt;
pub use septum_ipc_channel as channel;

core::arch::global_asm!(
    r#"
.section .text.entry, "ax"
.global _start
_start:
    mov     x19, x0
    mrs     x9, cpacr_el1
    orr     x9, x9, #(3 << 20)       // FP/SIMD at EL1 and EL0
    msr     cpacr_el1, x9
    isb
    adrp    x9, __stack_top
    add     x9, x9, #:lo12:__stack_top
    mov     sp, x9
    bl      septum_entry_hook        // a guest's look at the state it was entered with
    adrp    x9, __bss_start
    add     x9, x9, #:lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, #:lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  mov     x0, x19
    bl      guest_start
3:  wfe
    b       3b

// Runs before anything else, FP/SIMD just enabled; may use x9-x15 and the FP/SIMD
// registers and must not touch BSS (zeroed after it). A guest may define its own.
.weak septum_entry_hook
septum_entry_hook:
    ret

// A secondary vCPU, started by PSCI CPU_ON with x0 = its stack top.
.global _secondary_start
_secondary_start:
    mrs     x9, cpacr_el1
    orr     x9, x9, #(3 << 20)
    msr     cpacr_el1, x9
    isb
    mov     sp, x0
    bl      secondary_start
4:  wfe
    b       4b
"#
);

extern "Rust" {
    fn partition_main(boot: Boot) -> !;
}

/// Channel ends a guest can have.
pub const MAX_CHANNELS: usize = 4;

/// Sensor memories a guest can have.
pub const MAX_SENSORS: usize = 2;

/// A sensor's memory, from the guest's device tree (`septum,sensor-memory`): mapped
/// read-only by the hypervisor, filled by the sensor's acquisition.
#[derive(Clone, Copy, Debug)]
pub struct SensorInfo {
    pub name: &'static str,
    /// Where the partition sees it (IPA) and its size.
    pub base: u64,
    pub size: u64,
}

impl SensorInfo {
    /// The memory's bytes, for a source that fills it before the partition starts and
    /// never again (QEMU's replay of a recording). A live front end writing it while the
    /// partition reads would need volatile reads instead.
    pub fn replay(&self) -> &'static [u8] {
        if self.base == 0 {
            return &[];
        }
        // SAFETY: the hypervisor maps [base, base + size) read-only into this partition
        // for as long as it runs (RegionKind::Sensor), and a replay source wrote it
        // before the board started, so the bytes neither move nor change while the
        // slice lives. The guests are built with strict alignment, which Device memory
        // (our MMU is off) requires of every access.
        unsafe { core::slice::from_raw_parts(self.base as *const u8, self.size as usize) }
    }
}

fn read_sensors(fdt: &fdt::Fdt<'static>) -> [Option<SensorInfo>; MAX_SENSORS] {
    let mut out = [None; MAX_SENSORS];
    let nodes =
        fdt.all_nodes().filter(|n| n.compatible().is_some_and(|c| c.all().any(|x| x == "septum,sensor-memory")));
    for (slot, n) in out.iter_mut().zip(nodes) {
        let Some(reg) = n.reg().and_then(|mut r| r.next()) else { continue };
        let name = n.property("label").and_then(|p| p.as_str()).unwrap_or("");
        *slot = Some(SensorInfo { name, base: reg.starting_address as u64, size: reg.size.unwrap_or(0) as u64 });
    }
    out
}

/// One end of a channel, from the guest's device tree (`septum,channel-endpoint-v1`).
#[derive(Clone, Copy, Debug)]
pub struct ChannelInfo {
    pub name: &'static str,
    pub kind: &'static str,
    pub role: &'static str,
    /// The region this end writes, and the one the peer writes (IPA, size).
    pub own: Option<(u64, u64)>,
    pub peer: Option<(u64, u64)>,
    pub doorbell: u64,
    /// The virtual interrupt this end receives when the peer rings (0: none).
    pub interrupt: u32,
    pub slot_size: u32,
    pub depth: u32,
    pub capacity: u32,
    /// `septum,checksum`: "crc32c", "none", or empty when the node has none (taken as
    /// "crc32c").
    pub checksum: &'static str,
}

fn region((ipa, size): (u64, u64)) -> VolatileRegion {
    // SAFETY: the hypervisor built our device tree from the system description and maps
    // exactly these channel regions into our stage 2 (ours read-write, the peer's
    // read-only); nothing else in this program refers to them.
    unsafe { VolatileRegion::new(ipa as usize, size as usize) }
}

impl ChannelInfo {
    /// What the channel's messages carry; `None` for a name this build does not know
    /// (then neither end is made).
    pub fn checksum(&self) -> Option<Checksum> {
        if self.checksum.is_empty() {
            Some(Checksum::Crc32c)
        } else {
            Checksum::from_name(self.checksum)
        }
    }
    pub fn producer(&self) -> Option<Producer<VolatileRegion>> {
        let geo = Geometry::new(self.slot_size, self.depth).ok()?;
        Producer::new(geo, self.checksum()?, region(self.own?), region(self.peer?)).ok()
    }
    pub fn consumer(&self) -> Option<Consumer<VolatileRegion>> {
        let geo = Geometry::new(self.slot_size, self.depth).ok()?;
        Consumer::new(geo, self.checksum()?, region(self.own?), region(self.peer?)).ok()
    }
    /// This end's writable region, raw: for a test build that plays a hostile peer.
    pub fn own_region(&self) -> Option<VolatileRegion> {
        self.own.map(region)
    }
    /// Signals the peer (a write to the doorbell page, which traps to the hypervisor).
    pub fn ring(&self) {
        // SAFETY: the doorbell page is unmapped in our stage 2; the write traps to the
        // hypervisor, which emulates it. No memory of ours is touched.
        unsafe { core::ptr::write_volatile(self.doorbell as *mut u32, 1) };
    }
}

/// FEAT_CRC32: ID_AA64ISAR0_EL1.CRC32 (bits 19:16) is 1 (Arm ARM D19.2.61).
fn cpu_has_crc32() -> bool {
    use aarch64_cpu::registers::{Readable, ID_AA64ISAR0_EL1};
    (ID_AA64ISAR0_EL1.get() >> 16) & 0xF != 0
}

fn read_channels(fdt: &fdt::Fdt<'static>) -> [Option<ChannelInfo>; MAX_CHANNELS] {
    let mut out = [None; MAX_CHANNELS];
    let Some(node) = fdt.find_node("/channels") else { return out };
    let pair = |v: &[u8]| -> Option<(u64, u64)> {
        Some((u64::from_be_bytes(v.get(..8)?.try_into().ok()?), u64::from_be_bytes(v.get(8..16)?.try_into().ok()?)))
    };
    let u32_of = |v: &[u8]| v.get(..4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
    let eps = node
        .children()
        .filter(|c| c.compatible().is_some_and(|co| co.all().any(|x| x == "septum,channel-endpoint-v1")));
    for (slot, ep) in out.iter_mut().zip(eps) {
        let text = |name: &str| ep.property(name).and_then(|p| p.as_str()).unwrap_or("");
        let raw = |name: &str| ep.property(name).map_or(&[][..], |p| p.value);
        *slot = Some(ChannelInfo {
            name: text("label"),
            kind: text("septum,kind"),
            role: text("septum,role"),
            own: pair(raw("septum,own")),
            peer: pair(raw("septum,peer")),
            doorbell: raw("septum,doorbell").get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes),
            interrupt: u32_of(raw("septum,doorbell-intid")),
            slot_size: u32_of(raw("septum,slot-size")),
            depth: u32_of(raw("septum,depth")),
            capacity: u32_of(raw("septum,capacity")),
            checksum: text("septum,checksum"),
        });
    }
    out
}

/// What a guest knows at start.
pub struct Boot {
    pub console: Console,
    /// `/chosen/bootargs` of its device tree.
    pub bootargs: &'static str,
    /// Its RAM as its device tree describes it (guest-physical).
    pub ram: (u64, u64),
    pub start: StartCondition,
    pub restarts: u64,
    pub channels: [Option<ChannelInfo>; MAX_CHANNELS],
    pub sensors: [Option<SensorInfo>; MAX_SENSORS],
    /// The device tree the hypervisor gave us (signed with our image), for what a
    /// partition reads of its own (`Boot::dt`).
    pub dtb: &'static [u8],
    /// vCPUs the partition has (its device tree's `/cpus`); this one is vCPU 0.
    pub vcpus: usize,
    /// The distributor it sees (the first `reg` of its device tree's GIC node:
    /// `arm,gic-v3`, or `arm,cortex-a15-gic` / `arm,gic-400` for a GICv2), and its
    /// UART's interrupt (INTID), if it has a UART.
    pub gicd: Option<u64>,
    pub uart_irq: Option<u32>,
    /// GICv3: where its vCPUs' redistributors are (frame k: vCPU k). `None` on a GICv2.
    pub gicr: Option<u64>,
    /// Which GIC its device tree shows ([`GicVersion::V3`] if it shows none).
    pub gic_version: GicVersion,
    /// GICv2: its CPU interface (the hypervisor maps the physical virtual CPU interface,
    /// `GICV`, there). `None` on a GICv3, whose CPU interface is system registers.
    pub gicc: Option<u64>,
}

/// The GIC architecture of a partition's interrupt controller: V2, a memory-mapped
/// CPU interface (`GICC_*`) with SGIs through `GICD_SGIR`; V3, redistributors and the
/// system-register CPU interface (`ICC_*`).
pub use septum_platform::catalog::GicVersion;

/// The GIC distributor's address in this partition's space, from its device tree.
pub fn gic_distributor() -> Option<u64> {
    gic::gicd()
}

/// What the interrupt paths need from the device tree, set once by the boot vCPU before
/// any other starts.
mod gic {
    use super::GicVersion;
    use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

    static VERSION: AtomicU8 = AtomicU8::new(3);
    static GICD: AtomicU64 = AtomicU64::new(0);
    static GICC: AtomicU64 = AtomicU64::new(0);
    static VCPUS: AtomicUsize = AtomicUsize::new(1);

    pub(crate) fn set(version: GicVersion, gicd: Option<u64>, gicc: Option<u64>, vcpus: usize) {
        VERSION.store(if version == GicVersion::V2 { 2 } else { 3 }, Ordering::Relaxed);
        GICD.store(gicd.unwrap_or(0), Ordering::Relaxed);
        GICC.store(gicc.unwrap_or(0), Ordering::Relaxed);
        VCPUS.store(vcpus, Ordering::Relaxed);
    }

    pub(crate) fn version() -> GicVersion {
        if VERSION.load(Ordering::Relaxed) == 2 {
            GicVersion::V2
        } else {
            GicVersion::V3
        }
    }

    pub(crate) fn gicd() -> Option<u64> {
        Some(GICD.load(Ordering::Relaxed)).filter(|&a| a != 0)
    }

    /// GICv2: the CPU interface's registers at `offset`.
    pub(crate) fn gicc(offset: u64) -> Option<u64> {
        Some(GICC.load(Ordering::Relaxed)).filter(|&a| a != 0).map(|a| a + offset)
    }

    pub(crate) fn vcpus() -> usize {
        VCPUS.load(Ordering::Relaxed)
    }
}

impl Boot {
    /// The channel end named `name`.
    pub fn channel(&self, name: &str) -> Option<ChannelInfo> {
        self.channels.iter().flatten().find(|c| c.name == name).copied()
    }

    /// The sensor memory named `name`.
    /// Our device tree, parsed (None if the blob is not one).
    pub fn dt(&self) -> Option<fdt::Fdt<'static>> {
        fdt::Fdt::new(self.dtb).ok()
    }

    pub fn sensor(&self, name: &str) -> Option<SensorInfo> {
        self.sensors.iter().flatten().find(|s| s.name == name).copied()
    }

    /// The value of `key=value` in the boot arguments.
    pub fn arg(&self, key: &str) -> Option<&'static str> {
        self.bootargs.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    pub fn arg_u64(&self, key: &str) -> Option<u64> {
        let v = self.arg(key)?;
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    }
}

#[no_mangle]
extern "C" fn guest_start(dtb: u64) -> ! {
    // SAFETY: the hypervisor places our device tree at `dtb` (x0) inside our RAM and
    // never changes it; the header gives its size.
    let blob = unsafe {
        let size = u32::from_be_bytes(core::ptr::read_volatile((dtb + 4) as *const [u8; 4]));
        core::slice::from_raw_parts(dtb as *const u8, size.min(64 * 1024) as usize)
    };
    let fdt = fdt::Fdt::new(blob).ok();
    // The first node of a UART we drive, and its kind.
    let uart_node = fdt.as_ref().and_then(|f| f.all_nodes().find_map(|n| uart_kind(&n).map(|kind| (n, kind))));
    let uart = uart_node.and_then(|(n, kind)| Some((kind, n.reg()?.next()?)));
    // `interrupts = <type number flags>`: an SPI's INTID is 32 + its number.
    let uart_irq = uart_node.and_then(|(n, _)| n.property("interrupts")).and_then(|p| {
        let cell = |i: usize| p.value.get(4 * i..4 * i + 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
        (cell(0)? == 0).then_some(32 + cell(1)?)
    });
    let gic_node = fdt.as_ref().and_then(|f| {
        f.find_compatible(&["arm,gic-v3"])
            .map(|n| (GicVersion::V3, n))
            .or_else(|| f.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400"]).map(|n| (GicVersion::V2, n)))
    });
    let gic_version = gic_node.as_ref().map_or(GicVersion::V3, |&(v, _)| v);
    // GICv3: <distributor> <redistributors>; GICv2: <distributor> <CPU interface>.
    let gic_regs = gic_node.and_then(|(_, n)| n.reg());
    let mut gic_regs = gic_regs.into_iter().flatten().map(|r| r.starting_address as u64);
    let (gicd, second) = (gic_regs.next(), gic_regs.next());
    let (gicr, gicc) = match gic_version {
        GicVersion::V3 => (second, None),
        GicVersion::V2 => (None, second),
    };
    let mut console = match uart {
        // SAFETY: our device tree lists this UART as ours, so our stage 2 maps its
        // registers (a mini UART's whole AUX page, AUX_ENABLES included), and nothing
        // else in this program drives it.
        Some((kind, r)) => Console::Uart(unsafe { Uart::new(kind, r.starting_address as usize) }),
        None => Console::Hypervisor(HvConsole),
    };
    let bootargs = fdt
        .as_ref()
        .and_then(|f| f.find_node("/chosen"))
        .and_then(|c| c.property("bootargs"))
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let ram = fdt
        .as_ref()
        .and_then(|f| f.find_node("/memory"))
        .and_then(|m| m.reg()?.next())
        .map_or((0, 0), |r| (r.starting_address as u64, r.size.unwrap_or(0) as u64));
    let [status, cond, restarts, _] = hvc(hc::PARTITION_STATUS, [0; 7]);
    let start = if status == hc::SUCCESS {
        StartCondition::from_u64(cond).unwrap_or(StartCondition::NormalStart)
    } else {
        StartCondition::NormalStart
    };
    let mut channels = fdt.as_ref().map_or([None; MAX_CHANNELS], read_channels);
    if channel::crc32c::BUILT_FOR_THE_INSTRUCTION && !cpu_has_crc32() && channels.iter().any(Option::is_some) {
        // The channel's CRC-32C runs the CRC32C instructions without asking: on a CPU
        // without them the first message would fault. Say so once and run without.
        let _ = writeln!(console, "septum-guest: this CPU lacks FEAT_CRC32 (ID_AA64ISAR0_EL1.CRC32 = 0); channels off");
        channels = [None; MAX_CHANNELS];
    }
    let sensors = fdt.as_ref().map_or([None; MAX_SENSORS], read_sensors);
    let vcpus = fdt.as_ref().map_or(1, |f| f.cpus().count()).max(1);
    gic::set(gic_version, gicd, gicc, vcpus);
    vtimer::init();
    // A GIC delivers only what is enabled: our channels' doorbells, and the SGIs of
    // each vCPU (the boot vCPU's here, a secondary's when it starts).
    if let Some(gicd) = gicd {
        for c in channels.iter().flatten().filter(|c| c.interrupt != 0) {
            gicd::enable(gicd, c.interrupt);
        }
    }
    if let Some(gicr) = gicr {
        gicd::set_redistributors(gicr);
    }
    gicd::enable_own_sgis(0);
    let boot = Boot {
        console,
        bootargs,
        ram,
        start,
        restarts,
        channels,
        sensors,
        dtb: blob,
        vcpus,
        gicd,
        uart_irq,
        gicr,
        gic_version,
        gicc,
    };
    // SAFETY: provided by the guest binary with exactly this signature.
    unsafe { partition_main(boot) }
}

/// `HVC #0` with the SMC Calling Convention: x0..x3 back.
pub fn hvc(function: u32, args: [u64; 7]) -> [u64; 4] {
    let (mut x0, mut x1, mut x2, mut x3) = (u64::from(function), args[0], args[1], args[2]);
    // SAFETY: a hypercall; the hypervisor returns results in x0-x3 and preserves the rest.
    unsafe {
        core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") x1, inout("x2") x2, inout("x3") x3,
            in("x4") args[3], in("x5") args[4], in("x6") args[5], in("x7") args[6], options(nostack));
    }
    [x0, x1, x2, x3]
}

/// The virtual counter (equal to the physical one under Septum).
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reads CNTVCT_EL0 after an ISB so the read is not hoisted.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nostack, nomem)) };
    v
}

pub fn counter_hz() -> u64 {
    let v: u64;
    // SAFETY: reads CNTFRQ_EL0.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nostack, nomem)) };
    v
}

/// Busy-waits until the counter reaches `deadline`.
pub fn wait_until(deadline: u64) {
    while counter() < deadline {
        core::hint::spin_loop();
    }
}

/// PSCI SYSTEM_RESET function number.
pub fn psci_system_reset_fid() -> u32 {
    psci::SYSTEM_RESET
}

/// A fixed-period beat on the generic timer: beat `n` is due `n` periods after start,
/// however late the previous one was printed, so a stall shows as a gap in the counter.
pub struct Heartbeat {
    ticks: u64,
    next: u64,
    n: u64,
    /// Sleeps ended by the virtual timer's interrupt.
    timer_irqs: u64,
}

impl Heartbeat {
    pub fn new(period_ms: u64) -> Self {
        let ticks = counter_hz() / 1000 * period_ms.max(1);
        Self { ticks, next: counter() + ticks, n: 0, timer_irqs: 0 }
    }

    /// The next beat if it is due now, without waiting: for loops that do other work
    /// between beats.
    pub fn poll(&mut self) -> Option<(u64, u64)> {
        let now = counter();
        (now >= self.next).then(|| {
            self.next += self.ticks;
            self.n += 1;
            (self.n, now)
        })
    }

    /// Sleeps (WFI) until the next beat is due: woken by the virtual timer's interrupt,
    /// which the hypervisor forwards; the core idles meanwhile. Returns early if
    /// something else wakes the core: call [`Heartbeat::poll`] after it.
    /// The interrupt that ended the sleep (acknowledged and ended), if any.
    pub fn sleep(&mut self) -> Option<u32> {
        self.sleep_before(u64::MAX)
    }

    /// [`Heartbeat::sleep`], but woken at `deadline` if that comes before the next
    /// beat: for loops with work of their own on the clock (sampling a sensor).
    pub fn sleep_before(&mut self, deadline: u64) -> Option<u32> {
        let intid = vtimer::sleep_until(self.next.min(deadline));
        if intid == Some(vtimer::INTID) {
            self.timer_irqs += 1;
        }
        intid
    }

    /// How many sleeps the virtual timer's interrupt ended.
    pub fn timer_irqs(&self) -> u64 {
        self.timer_irqs
    }

    /// Waits for the next beat; returns its number (from 1) and the counter value.
    pub fn wait(&mut self) -> (u64, u64) {
        wait_until(self.next);
        self.next += self.ticks;
        self.n += 1;
        (self.n, counter())
    }
}

/// Asks the hypervisor to reset this partition (PSCI SYSTEM_RESET).
pub fn system_reset() -> ! {
    hvc(psci::SYSTEM_RESET, [0; 7]);
    loop {
        core::hint::spin_loop();
    }
}

/// A guest's own UART: whichever kind its device tree lists.
pub enum Uart {
    Pl011(Pl011),
    Imx(ImxUart),
    MiniUart(MiniUart),
}

impl Uart {
    /// # Safety
    /// As the driver's `new`: `base` is the register address the UART's device tree
    /// node names, mapped as device memory for good, and no one else drives the UART.
    unsafe fn new(kind: UartKind, base: usize) -> Self {
        // SAFETY: the caller's guarantee is each driver's contract.
        unsafe {
            match kind {
                UartKind::Pl011 => Uart::Pl011(Pl011::new(base)),
                UartKind::Imx => Uart::Imx(ImxUart::new(base)),
                UartKind::MiniUart => Uart::MiniUart(MiniUart::new(base)),
            }
        }
    }

    /// Sends `b`, waiting while the transmitter is full.
    pub fn write_byte(&self, b: u8) {
        match self {
            Uart::Pl011(u) => u.write_byte(b),
            Uart::Imx(u) => u.write_byte(b),
            Uart::MiniUart(u) => u.write_byte(b),
        }
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        match self {
            Uart::Pl011(u) => u.read_byte(),
            Uart::Imx(u) => u.read_byte(),
            Uart::MiniUart(u) => u.read_byte(),
        }
    }

    /// Raises the UART's interrupt while its transmitter can take more: at once, since
    /// it always can here. [`Uart::quiet`] masks it again.
    pub fn interrupt_when_writable(&self) {
        match self {
            Uart::Pl011(u) => u.interrupt_when_writable(),
            Uart::Imx(u) => u.interrupt_when_writable(),
            Uart::MiniUart(u) => u.interrupt_when_writable(),
        }
    }

    /// Masks (and, where it latches, clears) the transmit interrupt.
    pub fn quiet(&self) {
        match self {
            Uart::Pl011(u) => u.quiet(),
            Uart::Imx(u) => u.quiet(),
            Uart::MiniUart(u) => u.quiet(),
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self {
            Uart::Pl011(u) => u.write_str(s),
            Uart::Imx(u) => u.write_str(s),
            Uart::MiniUart(u) => u.write_str(s),
        }
    }
}

/// The kind of UART `node` is, if one we drive.
fn uart_kind(node: &fdt::node::FdtNode<'_, '_>) -> Option<UartKind> {
    let compatible = node.compatible()?;
    UartKind::of(|| compatible.all())
}

/// A guest's console.
pub enum Console {
    Uart(Uart),
    Hypervisor(HvConsole),
}

impl Console {
    /// The UART, when the console is one.
    pub fn uart(&self) -> Option<&Uart> {
        match self {
            Console::Uart(u) => Some(u),
            Console::Hypervisor(_) => None,
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self {
            Console::Uart(u) => u.write_str(s),
            Console::Hypervisor(h) => h.write_str(s),
        }
    }
}

/// Console through the hypervisor's log (`CONSOLE_WRITE`), 48 bytes a call.
#[derive(Default)]
pub struct HvConsole;

impl Write for HvConsole {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(hc::CONSOLE_WRITE_MAX) {
            let mut words = [0u64; 7];
            words[0] = chunk.len() as u64;
            for (i, b) in chunk.iter().enumerate() {
                words[1 + i / 8] |= u64::from(*b) << ((i % 8) * 8);
            }
            hvc(hc::CONSOLE_WRITE, words);
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut c = HvConsole;
    let _ = writeln!(c, "guest panic: {info}");
    hvc(psci::SYSTEM_OFF, [0; 7]);
    loop {
        core::hint::spin_loop();
    }
}

/// The audit log's read-only export (`AUDIT_INFO`, `AUDIT_READ`), for a partition its
/// configuration grants `audit_reader`: the slots come as they lie in the hypervisor's
/// flash, and the reader (or the server it uploads them to) checks them.
pub mod audit {
    use super::hc;

    /// A log slot's bytes (one record).
    pub const SLOT_LEN: usize = 2 * hc::AUDIT_READ_BYTES;

    #[derive(Clone, Copy, Debug)]
    pub struct Info {
        /// Slots in the log's ring.
        pub slots: u32,
        /// The slot the next record goes to; the newest is the one before it.
        pub next_slot: u32,
        /// The next record's sequence number (records so far, ever).
        pub next_seq: u64,
    }

    /// `None`: not granted, or no log on this board.
    pub fn info() -> Option<Info> {
        let [status, slots, next_slot, next_seq] = super::hvc(hc::AUDIT_INFO, [0; 7]);
        let info = Info { slots: u32::try_from(slots).ok()?, next_slot: u32::try_from(next_slot).ok()?, next_seq };
        (status == hc::SUCCESS && info.slots > 0).then_some(info)
    }

    /// Slot `slot`'s bytes as stored; `None` if refused.
    pub fn read_slot(slot: u32) -> Option<[u8; SLOT_LEN]> {
        let mut out = [0u8; SLOT_LEN];
        for (half, bytes) in out.chunks_exact_mut(hc::AUDIT_READ_BYTES).enumerate() {
            let words = read_half(slot, half as u64)?;
            for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
        }
        Some(out)
    }

    /// One `AUDIT_READ`: sixteen words back in x1..=x16.
    fn read_half(slot: u32, half: u64) -> Option<[u64; 16]> {
        let mut w = [0u64; 16];
        let mut x0 = u64::from(hc::AUDIT_READ);
        // SAFETY: a hypercall; the hypervisor writes x0..=x16 and preserves the rest.
        unsafe {
            core::arch::asm!("hvc #0",
                inout("x0") x0, inout("x1") u64::from(slot) => w[0], inout("x2") half => w[1],
                out("x3") w[2], out("x4") w[3], out("x5") w[4], out("x6") w[5], out("x7") w[6],
                out("x8") w[7], out("x9") w[8], out("x10") w[9], out("x11") w[10], out("x12") w[11],
                out("x13") w[12], out("x14") w[13], out("x15") w[14], out("x16") w[15],
                options(nostack));
        }
        (x0 == hc::SUCCESS).then_some(w)
    }
}

/// The EL1 virtual timer and its interrupt, through the virtual CPU interface the
/// hypervisor provides: GICv3's system registers (`ICC_*`, reaching `ICV_*`), or a
/// GICv2's memory-mapped `GICC` (the physical `GICV` frame). The guest keeps IRQs
/// masked (PSTATE.I): WFI still wakes on a pending interrupt, which the guest then
/// acknowledges and ends by polling the CPU interface, so it needs no vector table.
pub mod vtimer {
    use super::{gic, GicVersion};

    /// The EL1 virtual timer's interrupt (PPI 11).
    pub const INTID: u32 = 27;
    /// ICC_IAR1_EL1's answer when nothing is pending.
    const SPURIOUS: u64 = 1023;
    /// CNTV_CTL_EL0: ENABLE, IMASK.
    const ENABLE: u64 = 1;
    /// GICv2 CPU interface registers.
    const GICC_CTLR: u64 = 0x0;
    const GICC_PMR: u64 = 0x4;
    const GICC_IAR: u64 = 0xC;
    const GICC_EOIR: u64 = 0x10;
    /// GICC_CTLR.EnableGrp0 (EOImode 0: the EOIR write also deactivates).
    const GICC_CTLR_ENABLE_GRP0: u32 = 1;

    fn gicc_write(offset: u64, value: u32) {
        if let Some(at) = gic::gicc(offset) {
            // SAFETY: the hypervisor maps this vCPU's virtual CPU interface (GICV) at the
            // GICC address of our device tree, as Device memory; its registers are this
            // vCPU's alone and no memory of ours is there.
            unsafe { core::ptr::write_volatile(at as *mut u32, value) };
        }
    }

    fn gicc_read(offset: u64) -> Option<u32> {
        // SAFETY: as in `gicc_write`.
        gic::gicc(offset).map(|at| unsafe { core::ptr::read_volatile(at as *const u32) })
    }

    /// Enables this vCPU's CPU interface: all priorities, and group 1 (GICv3) or group 0
    /// (GICv2, where every interrupt is in group 0).
    pub(crate) fn init() {
        if gic::version() == GicVersion::V2 {
            gicc_write(GICC_PMR, 0xFF);
            gicc_write(GICC_CTLR, GICC_CTLR_ENABLE_GRP0);
            return;
        }
        // SAFETY: the hypervisor gives every GICv3 partition the GICv3 virtual CPU
        // interface (ICC_SRE_EL2.Enable), so these reach ICV registers of this vCPU only.
        unsafe {
            core::arch::asm!(
                "mrs {t}, icc_sre_el1",
                "orr {t}, {t}, #1",
                "msr icc_sre_el1, {t}",
                "isb",
                "msr icc_pmr_el1, {pmr}",
                "msr icc_igrpen1_el1, {one}",
                "isb",
                t = out(reg) _, pmr = in(reg) 0xFFu64, one = in(reg) 1u64,
                options(nostack),
            );
        }
    }

    /// Arms the timer for `deadline` (a counter value) and waits for it with WFI. The
    /// interrupt that woke the core (the timer's, or an SGI) is acknowledged and ended
    /// here, and returned.
    pub fn sleep_until(deadline: u64) -> Option<u32> {
        if super::counter() >= deadline {
            return None;
        }
        // SAFETY: programs this vCPU's own virtual timer, then waits for an interrupt.
        unsafe {
            core::arch::asm!(
                "msr cntv_cval_el0, {d}",
                "msr cntv_ctl_el0, {en}",
                "isb",
                "wfi",
                d = in(reg) deadline, en = in(reg) ENABLE,
                options(nostack),
            );
        }
        take()
    }

    /// Takes a pending interrupt without waiting, if there is one, and ends it; the
    /// timer's also stops the timer (its level drops), which lets the hypervisor forward
    /// the next one.
    pub fn take() -> Option<u32> {
        let (intid, ack) = acknowledge()?;
        if intid == INTID {
            // SAFETY: disables this vCPU's own virtual timer.
            unsafe { core::arch::asm!("msr cntv_ctl_el0, xzr", "isb", options(nostack)) };
        }
        end(ack);
        Some(intid)
    }

    /// Acknowledges the highest-priority pending interrupt: its INTID and the value that
    /// ends it (GICv2: the whole `GICC_IAR`, with an SGI's source CPU). `None` if none.
    fn acknowledge() -> Option<(u32, u64)> {
        if gic::version() == GicVersion::V2 {
            let iar = gicc_read(GICC_IAR)?;
            let intid = septum_platform::gicv2::intid_of(iar);
            // 1020..=1023 are special (1023: nothing pending); none is ended.
            return (intid < 1020).then_some((intid, u64::from(iar)));
        }
        let intid: u64;
        // SAFETY: reads this vCPU's virtual interrupt acknowledge register.
        unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) intid, options(nostack)) };
        (intid != SPURIOUS).then_some((intid as u32, intid))
    }

    /// Ends the interrupt `acknowledge` returned `ack` for (drop and deactivate).
    fn end(ack: u64) {
        if gic::version() == GicVersion::V2 {
            gicc_write(GICC_EOIR, ack as u32);
            return;
        }
        // SAFETY: ends the interrupt just acknowledged (drop and deactivate).
        unsafe { core::arch::asm!("msr icc_eoir1_el1, {}", in(reg) ack, options(nostack)) };
    }
}

/// Secondary vCPUs: started with PSCI `CPU_ON` on the cores the partition's system
/// description pins them to, each on a stack of its own.
pub mod smp {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    use super::{hc, hvc, psci};

    /// Secondary vCPUs with a stack here (vCPUs 1..=MAX_SECONDARIES).
    pub const MAX_SECONDARIES: usize = 3;
    const STACK_SIZE: usize = 16 * 1024;

    #[repr(C, align(16))]
    struct Stack(UnsafeCell<[u8; STACK_SIZE]>);
    // SAFETY: each stack is handed to one vCPU only, by `start`, and never touched here.
    unsafe impl Sync for Stack {}
    static STACKS: [Stack; MAX_SECONDARIES] = [const { Stack(UnsafeCell::new([0; STACK_SIZE])) }; MAX_SECONDARIES];
    /// The function secondaries run (a `fn(usize) -> !`, as an address).
    static MAIN: AtomicUsize = AtomicUsize::new(0);

    /// Sends SGI `intid` (0..16), raw, so a test can also aim outside the partition.
    ///
    /// GICv3: through `ICC_SGI1R_EL1`: `targets` is the register's target list (bit k:
    /// vCPU k) and `affinity` its Aff1 field.
    ///
    /// GICv2: through the distributor's `GICD_SGIR`, with `TargetListFilter` 0 and
    /// `targets`' low eight bits as its CPU target list (bit k: vCPU k; a GICv2 has at
    /// most eight CPU interfaces, so bits 8..16 are dropped). A GICv2 has no other
    /// cluster: `affinity` != 0 aims instead at every CPU interface at or above the
    /// partition's vCPU count (none if it has eight), which the partition does not have
    /// either, so the SGI is still one aimed outside it (and `targets` is ignored).
    pub fn send_sgi(intid: u32, targets: u16, affinity: u8) {
        if super::gic::version() == super::GicVersion::V2 {
            let Some(gicd) = super::gic::gicd() else { return };
            let list = if affinity == 0 { targets & 0xFF } else { (0xFF_u16 << super::gic::vcpus().min(8)) & 0xFF };
            super::gicd::write_raw(gicd, GICD_SGIR, (u32::from(list) << 16) | (intid & 0xF));
            return;
        }
        let v = (u64::from(intid & 0xF) << 24) | (u64::from(affinity) << 16) | u64::from(targets);
        // SAFETY: trapped to the hypervisor, which delivers it within the partition.
        unsafe { core::arch::asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) v, options(nostack)) };
    }

    /// GICv2's software-generated interrupt register, in the distributor.
    const GICD_SGIR: u64 = 0xF00;

    /// This vCPU's number (MPIDR Aff0: the hypervisor numbers vCPUs from 0).
    pub fn id() -> usize {
        let mpidr: u64;
        // SAFETY: reads MPIDR_EL1 (VMPIDR_EL2's value), no side effect.
        unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nostack, nomem)) };
        (mpidr & 0xFF) as usize
    }

    /// Starts vCPU `vcpu` (1..=MAX_SECONDARIES) running `main(vcpu)`. The PSCI error
    /// code if the hypervisor refuses.
    pub fn start(vcpu: usize, main: fn(usize) -> !) -> Result<(), i64> {
        let Some(stack) = vcpu.checked_sub(1).and_then(|i| STACKS.get(i)) else {
            return Err(i64::from(psci::INVALID_PARAMETERS));
        };
        MAIN.store(main as usize, Ordering::Release);
        let top = stack.0.get() as u64 + STACK_SIZE as u64;
        cpu_on(vcpu as u64, top)
    }

    /// PSCI `CPU_ON` for the vCPU with MPIDR `target`, entering the runtime's secondary
    /// entry with `x0` = `stack_top`: raw, for tests of what the hypervisor refuses.
    pub fn cpu_on(target: u64, stack_top: u64) -> Result<(), i64> {
        extern "C" {
            fn _secondary_start();
        }
        let entry = _secondary_start as *const () as u64;
        let [r, ..] = hvc(psci::CPU_ON_64, [target, entry, stack_top, 0, 0, 0, 0]);
        if r == hc::SUCCESS {
            Ok(())
        } else {
            Err(r as i64)
        }
    }

    #[no_mangle]
    extern "C" fn secondary_start() -> ! {
        super::vtimer::init();
        super::gicd::enable_own_sgis(id());
        let main = MAIN.load(Ordering::Acquire);
        if main == 0 {
            loop {
                core::hint::spin_loop();
            }
        }
        // SAFETY: `MAIN` only ever holds a `fn(usize) -> !` stored by `start`.
        let main: fn(usize) -> ! = unsafe { core::mem::transmute::<usize, fn(usize) -> !>(main) };
        main(id())
    }
}

/// The distributor the hypervisor emulates for this partition (it shows only the
/// partition's own interrupts): enabling them.
pub mod gicd {
    use super::{gic, GicVersion};

    /// GICD_ISENABLER<n>.
    const ISENABLER: u64 = 0x100;
    /// GICD_CTLR: affinity routing and group 1 on (GICv3).
    const CTLR_ARE_GRP1: u32 = (1 << 4) | (1 << 1);
    /// GICD_CTLR: groups 0 and 1 on (GICv2).
    const CTLR_GRP0_GRP1: u32 = 0b11;

    fn write(gicd: u64, offset: u64, value: u32) {
        // SAFETY: the distributor's page is not mapped for us: the write traps to the
        // hypervisor, which emulates it; none of our memory is touched.
        unsafe { core::ptr::write_volatile((gicd + offset) as *mut u32, value) };
    }

    fn read(gicd: u64, offset: u64) -> u32 {
        // SAFETY: as in `write`; the read is emulated too.
        unsafe { core::ptr::read_volatile((gicd + offset) as *const u32) }
    }

    /// Turns on the distributor (GICv3: affinity routing and group 1; GICv2: groups 0
    /// and 1) and enables `intid` (an SPI of ours).
    pub fn enable(gicd: u64, intid: u32) {
        let ctlr = if gic::version() == GicVersion::V2 { CTLR_GRP0_GRP1 } else { CTLR_ARE_GRP1 };
        write(gicd, 0, ctlr);
        write(gicd, ISENABLER + u64::from(intid / 32) * 4, 1 << (intid % 32));
    }

    /// Whether `intid` reads back as enabled.
    pub fn is_enabled(gicd: u64, intid: u32) -> bool {
        read(gicd, ISENABLER + u64::from(intid / 32) * 4) & (1 << (intid % 32)) != 0
    }

    /// Raw register access, for tests of what the hypervisor ignores.
    pub fn write_raw(gicd: u64, offset: u64, value: u32) {
        write(gicd, offset, value)
    }

    /// Raw register read (benchmarks, tests).
    pub fn read_raw(gicd: u64, offset: u64) -> u32 {
        read(gicd, offset)
    }

    /// Where this partition's redistributors are (from the device tree, at boot).
    static GICR: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    /// GICR_ISENABLER0, in a redistributor's SGI frame.
    const GICR_ISENABLER0: u64 = 0x1_0000 + 0x100;
    /// One redistributor: RD_base and SGI_base frames.
    const GICR_FRAME: u64 = 0x2_0000;

    pub fn set_redistributors(gicr: u64) {
        GICR.store(gicr, core::sync::atomic::Ordering::Relaxed);
    }

    /// Enables the 16 SGIs of vCPU `vcpu`, which must be the running one: in its own
    /// redistributor (GICv3), or in the distributor's `GICD_ISENABLER0`, banked per
    /// vCPU, so the running vCPU's own (GICv2: `vcpu` is not used).
    pub fn enable_own_sgis(vcpu: usize) {
        if gic::version() == GicVersion::V2 {
            if let Some(gicd) = gic::gicd() {
                write(gicd, ISENABLER, 0xFFFF);
            }
            return;
        }
        let gicr = GICR.load(core::sync::atomic::Ordering::Relaxed);
        if gicr != 0 {
            write(gicr, vcpu as u64 * GICR_FRAME + GICR_ISENABLER0, 0xFFFF);
        }
    }

    /// `GICR_TYPER` of redistributor frame `k` at `gicr`: (affinity, last frame).
    pub fn redistributor_typer(gicr: u64, k: usize) -> (u32, bool) {
        let at = gicr + k as u64 * 0x2_0000 + 8;
        // SAFETY: as in `write`: the redistributor frames are not mapped for us, the
        // hypervisor emulates the read.
        let typer = unsafe { core::ptr::read_volatile(at as *const u64) };
        ((typer >> 32) as u32, typer & (1 << 4) != 0)
    }
}

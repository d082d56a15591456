//! Partition device trees: each partition gets one that lists only what it owns (its
//! RAM as it sees it, its vCPUs, PSCI over HVC, the GIC it sees, the generic timer and
//! its devices with their interrupts). Written with rust-vmm's `vm-fdt`.
//!
//! The GIC node names the board's distributor address, where the hypervisor emulates a
//! distributor showing only the partition's interrupts, and, on a GICv3, the emulated
//! redistributor frames of its vCPUs; on a GICv2, the CPU interface address, where the
//! hypervisor maps the virtual CPU interface.
//!
//! UARTs (PL011, i.MX, BCM2835 mini UART) carry the clocks their Linux drivers ask for,
//! each has a `serialN` alias, and the first is `/chosen`'s `stdout-path`.

use septum_abi::config::RegionKind;
use septum_platform::bcm2835_aux;
use septum_platform::catalog::{DeviceInfo, GicVersion, GICV2_CPU_INTERFACE_SIZE};
use septum_platform::uart::UartKind;
use vm_fdt::{Error, FdtWriter};

use crate::system::{Partition, System};

/// The fixed clock of PrimeCells and i.MX UARTs (QEMU virt's `apb-pclk`, the i.MX8M
/// Plus's 24 MHz oscillator that feeds its UART roots).
const CLOCK_PHANDLE: u32 = 1;
const CLOCK_HZ: u32 = 24_000_000;
const GIC_PHANDLE: u32 = 2;
/// The mini UART's clock: the VideoCore core clock, from which it divides its baud rate
/// (Linux's `8250_bcm2835aux` doubles the rate to fit the 16550's divisor). The
/// Raspberry Pi 4 firmware holds it at 500 MHz while a UART is enabled (`enable_uart=1`).
const VPU_CLOCK_PHANDLE: u32 = 3;
const VPU_CLOCK_HZ: u32 = 500_000_000;
/// A page: stage 2 maps devices by whole pages, the catalogue describes them so.
const PAGE: u64 = 0x1000;
/// GIC interrupt specifier: type (0: SPI, 1: PPI), number, flags (4: level high, 1: edge).
const SPI: u32 = 0;
const PPI: u32 = 1;
const LEVEL_HIGH: u32 = 4;
const EDGE_RISING: u32 = 1;
/// Bytes of one redistributor (RD_base and SGI_base frames).
const REDISTRIBUTOR_FRAME: u64 = 0x2_0000;
/// Bytes of the distributor's frame.
const DISTRIBUTOR_FRAME: u64 = 0x1_0000;

pub fn generate(system: &System, p: &Partition) -> Result<Vec<u8>, Error> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string_list("compatible", vec!["septum,partition".into()])?;
    fdt.property_string("model", &format!("Septum partition {} on {}", p.name, system.board.name))?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &p.bootargs)?;
    if let Some((start, end)) = p.initrd_range {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    let uarts: Vec<&DeviceInfo> = p.devices.iter().copied().filter(|d| uart_kind(d).is_some()).collect();
    if let Some(uart) = uarts.first() {
        fdt.property_string("stdout-path", &format!("/{}", node_name(uart)))?;
    }
    fdt.end_node(chosen)?;

    // `serialN` names the UARTs in order: Linux's i.MX driver refuses a UART without one.
    if !uarts.is_empty() {
        let aliases = fdt.begin_node("aliases")?;
        for (i, uart) in uarts.iter().enumerate() {
            fdt.property_string(&format!("serial{i}"), &format!("/{}", node_name(uart)))?;
        }
        fdt.end_node(aliases)?;
    }

    for r in p.desc.regions().iter().filter(|r| r.kind() == Some(RegionKind::Ram)) {
        let mem = fdt.begin_node(&format!("memory@{:x}", r.ipa))?;
        fdt.property_string("device_type", "memory")?;
        fdt.property_array_u64("reg", &[r.ipa, r.size])?;
        fdt.end_node(mem)?;
    }

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for v in 0..p.desc.vcpus().len() {
        let cpu = fdt.begin_node(&format!("cpu@{v}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string_list("compatible", vec!["arm,armv8".into()])?;
        fdt.property_u32("reg", v as u32)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()])?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let gic = system.board.gic;
    let intc = fdt.begin_node(&format!("interrupt-controller@{:x}", gic.distributor))?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    match gic.version {
        GicVersion::V3 => {
            fdt.property_string_list("compatible", vec!["arm,gic-v3".into()])?;
            let redistributors = REDISTRIBUTOR_FRAME * p.desc.vcpus().len() as u64;
            fdt.property_array_u64("reg", &[gic.distributor, DISTRIBUTOR_FRAME, gic.redistributors, redistributors])?;
        }
        GicVersion::V2 => {
            // The distributor (emulated) and the CPU interface, where the hypervisor
            // maps the virtual CPU interface.
            fdt.property_string_list("compatible", vec!["arm,cortex-a15-gic".into()])?;
            let (dist, cpu) = (gic.distributor_size(), GICV2_CPU_INTERFACE_SIZE);
            fdt.property_array_u64("reg", &[gic.distributor, dist, gic.cpu_interface, cpu])?;
        }
    }
    // The interrupt parent of a PCIe host bridge's `interrupt-map`: no unit address.
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(intc)?;

    // Secure and non-secure physical, virtual and hypervisor timers: PPIs 13, 14, 11, 10.
    let timer = fdt.begin_node("timer")?;
    fdt.property_string_list("compatible", vec!["arm,armv8-timer".into()])?;
    fdt.property_null("always-on")?;
    // A GICv2 PPI's flags also name the CPU interfaces it reaches (bits 15:8).
    let ppi_flags = match gic.version {
        GicVersion::V3 => LEVEL_HIGH,
        GicVersion::V2 => ((1u32 << p.desc.vcpus().len().min(8)) - 1) << 8 | LEVEL_HIGH,
    };
    let ppis: Vec<u32> = [13, 14, 11, 10].iter().flat_map(|&n| [PPI, n, ppi_flags]).collect();
    fdt.property_array_u32("interrupts", &ppis)?;
    fdt.end_node(timer)?;

    let clk = fdt.begin_node("apb-pclk")?;
    fdt.property_string_list("compatible", vec!["fixed-clock".into()])?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", CLOCK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(CLOCK_PHANDLE)?;
    fdt.end_node(clk)?;

    if uarts.iter().any(|d| uart_kind(d) == Some(UartKind::MiniUart)) {
        let clk = fdt.begin_node("vpu-clk")?;
        fdt.property_string_list("compatible", vec!["fixed-clock".into()])?;
        fdt.property_u32("#clock-cells", 0)?;
        fdt.property_u32("clock-frequency", VPU_CLOCK_HZ)?;
        fdt.property_string("clock-output-names", "vpu")?;
        fdt.property_phandle(VPU_CLOCK_PHANDLE)?;
        fdt.end_node(clk)?;
    }

    for d in p.devices.iter().filter(|d| d.pci_ecam) {
        pci_host(&mut fdt, p, d)?;
    }
    for d in p.devices.iter().filter(|d| !d.pci_ecam) {
        let node = fdt.begin_node(&node_name(d))?;
        fdt.property_string_list("compatible", d.compatible.iter().map(|s| s.to_string()).collect())?;
        let (base, size) = reg(d);
        fdt.property_array_u64("reg", &[base, size])?;
        // Only the interrupts the partition owns: a device it polls has none.
        let owned: Vec<u32> = d.irqs.iter().copied().filter(|i| p.desc.irqs().contains(i)).collect();
        if !owned.is_empty() {
            let spis: Vec<u32> = owned.iter().flat_map(|&i| [SPI, i.saturating_sub(32), LEVEL_HIGH]).collect();
            fdt.property_array_u32("interrupts", &spis)?;
        }
        if d.compatible.contains(&"arm,primecell") {
            fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
            fdt.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
        }
        match uart_kind(d) {
            Some(UartKind::Imx) => {
                // Linux's `imx.c` gets both by name: the register clock and the baud
                // rate's reference clock.
                fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
                fdt.property_string_list("clock-names", vec!["ipg".into(), "per".into()])?;
            }
            Some(UartKind::MiniUart) => fdt.property_u32("clocks", VPU_CLOCK_PHANDLE)?,
            Some(UartKind::Pl011) | None => {}
        }
        fdt.end_node(node)?;
    }
    for sensor in &p.sensors {
        let node = fdt.begin_node(&format!("sensor@{:x}", sensor.ipa))?;
        fdt.property_string_list("compatible", vec![SENSOR_COMPATIBLE.into()])?;
        fdt.property_string("label", &sensor.name)?;
        fdt.property_array_u64("reg", &[sensor.ipa, sensor.size])?;
        fdt.end_node(node)?;
    }
    if let Some(limits) = &p.alarms {
        // Every limit, not only those the description sets: what the monitor runs with
        // is then all in the signed tree.
        let node = fdt.begin_node("alarm-limits")?;
        fdt.property_string_list("compatible", vec![ALARM_LIMITS_COMPATIBLE.into()])?;
        for (field, value) in limits.fields() {
            fdt.property_u32(&format!("septum,{field}"), value)?;
        }
        fdt.end_node(node)?;
    }
    if !p.channels.is_empty() {
        channels(&mut fdt, p)?;
    }
    fdt.end_node(root)?;
    fdt.finish()
}

/// A PCIe host bridge (`pci-host-ecam-generic`), as a native QEMU virt DTB describes
/// it, without MSI (the partition is offered no ITS: its devices use INTx): its ECAM
/// window, its I/O and 32-bit memory windows (the catalogue's further windows, I/O
/// first when it has one at the catalogue's I/O place), and the INTx swizzle onto the
/// SPIs the partition owns. Its devices' DMA goes through the SMMU with the
/// partition's stage 2, so guest-physical addresses are what they use: no
/// `iommu-map` (the SMMU is the hypervisor's).
fn pci_host(fdt: &mut FdtWriter, p: &Partition, d: &DeviceInfo) -> Result<(), Error> {
    const PCI_IO: u32 = 0x0100_0000;
    const PCI_MEM32: u32 = 0x0200_0000;
    let node = fdt.begin_node(&format!("pcie@{:x}", d.base))?;
    fdt.property_string_list("compatible", d.compatible.iter().map(|s| s.to_string()).collect())?;
    fdt.property_string("device_type", "pci")?;
    fdt.property_array_u64("reg", &[d.base, d.size])?;
    // 1 MiB of ECAM per bus.
    let buses = (d.size >> 20).clamp(1, 256) as u32;
    fdt.property_array_u32("bus-range", &[0, buses - 1])?;
    fdt.property_u32("linux,pci-domain", 0)?;
    fdt.property_u32("#address-cells", 3)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("dma-coherent")?;
    let mut ranges = Vec::new();
    for w in d.windows {
        // A window below 64 KiB of PCI I/O space is the I/O window (QEMU's is 64 KiB).
        let (space, pci_addr) = if w.size <= 0x1_0000 { (PCI_IO, 0) } else { (PCI_MEM32, w.base) };
        let hi = |v: u64| (v >> 32) as u32;
        ranges.extend([space, hi(pci_addr), pci_addr as u32, hi(w.base), w.base as u32, hi(w.size), w.size as u32]);
    }
    fdt.property_array_u32("ranges", &ranges)?;
    // INTA..INTD of slot s reach the host bridge's lines (s + pin - 1) mod 4.
    let lines: Vec<u32> = d.irqs.iter().copied().filter(|i| p.desc.irqs().contains(i)).collect();
    if lines.len() == d.irqs.len() && !lines.is_empty() {
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_array_u32("interrupt-map-mask", &[0x1800, 0, 0, 7])?;
        let mut map = Vec::new();
        for slot in 0..4u32 {
            for pin in 1..=4u32 {
                let line = lines[((slot + pin - 1) % lines.len() as u32) as usize];
                map.extend([slot << 11, 0, 0, pin, GIC_PHANDLE, SPI, line - 32, LEVEL_HIGH]);
            }
        }
        fdt.property_array_u32("interrupt-map", &map)?;
    }
    fdt.end_node(node)
}

/// The kind of UART `d` is, if one the partition runtime drives.
fn uart_kind(d: &DeviceInfo) -> Option<UartKind> {
    UartKind::of(|| d.compatible.iter().copied())
}

/// A device's `reg`: its catalogue window, but for a mini UART, whose catalogue entry
/// is the AUX block's page (what stage 2 maps), the mini UART's registers in that page,
/// as Linux's binding wants.
fn reg(d: &DeviceInfo) -> (u64, u64) {
    match uart_kind(d) {
        Some(UartKind::MiniUart) => {
            let aux = d.base - d.base % PAGE;
            (aux + bcm2835_aux::MINI_UART_OFFSET as u64, bcm2835_aux::MINI_UART_SIZE as u64)
        }
        _ => (d.base, d.size),
    }
}

/// A device's node name (a child of the root): `<kind>@<reg address>`, its kind from
/// its most specific `compatible` (`pl011`, `imx8mp-uart`, `bcm2835-aux-uart`).
fn node_name(d: &DeviceInfo) -> String {
    let kind = d.compatible.first().and_then(|c| c.split(',').nth(1)).unwrap_or(d.name);
    format!("{kind}@{:x}", reg(d).0)
}

/// Compatible string of a sensor's memory (read-only; on QEMU, a recording's replay):
/// `label` (the sensor's name, e.g. "ecg") and `reg` (<ipa size>).
pub const SENSOR_COMPATIBLE: &str = "septum,sensor-memory";

/// Compatible string of a channel endpoint node. Properties:
/// `label` (channel name), `septum,kind` ("queuing" | "sampling"), `septum,role`
/// ("producer" | "consumer" | "writer" | "reader"), `septum,own` and `septum,peer`
/// (<ipa size> of the region this end writes / the peer writes, each present when
/// the role has one), `septum,doorbell` (<ipa> of the page to write to signal the
/// peer), `septum,doorbell-intid` (<intid>: the virtual interrupt this end receives
/// when the peer rings), `septum,slot-size` + `septum,depth` (queuing) or
/// `septum,capacity` (sampling), and `septum,checksum` ("crc32c" | "none": what the
/// channel's messages carry, both ends alike; readers take a missing one as "crc32c").
/// The ECG monitor's alarm limits (`[partition.X.alarms]`): a `u32` property
/// `septum,<field>` per `septum_ecg::Limits` field.
pub const ALARM_LIMITS_COMPATIBLE: &str = "septum,alarm-limits";

pub const CHANNEL_COMPATIBLE: &str = "septum,channel-endpoint-v1";

fn channels(fdt: &mut FdtWriter, p: &Partition) -> Result<(), Error> {
    use crate::system::channel::Kind;
    let node = fdt.begin_node("channels")?;
    for (i, c) in p.channels.iter().enumerate() {
        let ep = fdt.begin_node(&format!("endpoint@{i}"))?;
        fdt.property_string_list("compatible", vec![CHANNEL_COMPATIBLE.into()])?;
        fdt.property_string("label", &c.channel)?;
        fdt.property_string("septum,role", c.role)?;
        if let Some((ipa, size)) = c.own {
            fdt.property_array_u64("septum,own", &[ipa, size])?;
        }
        if let Some((ipa, size)) = c.peer {
            fdt.property_array_u64("septum,peer", &[ipa, size])?;
        }
        fdt.property_u64("septum,doorbell", c.doorbell)?;
        fdt.property_u32("septum,doorbell-intid", c.interrupt)?;
        fdt.property_string("septum,checksum", c.checksum.name())?;
        fdt.property_array_u32("interrupts", &[SPI, c.interrupt.saturating_sub(32), EDGE_RISING])?;
        match c.kind {
            Kind::Queuing { slot_size, depth } => {
                fdt.property_string("septum,kind", "queuing")?;
                fdt.property_u32("septum,slot-size", slot_size)?;
                fdt.property_u32("septum,depth", depth)?;
            }
            Kind::Sampling { capacity } => {
                fdt.property_string("septum,kind", "sampling")?;
                fdt.property_u32("septum,capacity", capacity)?;
            }
        }
        fdt.end_node(ep)?;
    }
    fdt.end_node(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use septum_platform::qemu_virt;
    use std::collections::BTreeMap;

    /// Each node's path (`/`, `/chosen`, `/pl011@9040000`) and properties, from a DTB.
    fn nodes(dtb: &[u8]) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let word = |at: usize| u32::from_be_bytes(dtb[at..at + 4].try_into().unwrap()) as usize;
        let c_str = |at: usize| {
            let end = at + dtb[at..].iter().position(|&b| b == 0).unwrap();
            (std::str::from_utf8(&dtb[at..end]).unwrap().to_string(), end + 1)
        };
        let (strings, mut at) = (word(12), word(8));
        let (mut path, mut out) = (Vec::<String>::new(), BTreeMap::new());
        let joined = |path: &[String]| if path.len() <= 1 { "/".to_string() } else { path.join("/") };
        loop {
            let token = word(at);
            at += 4;
            match token {
                1 => {
                    let (name, end) = c_str(at);
                    at = end.next_multiple_of(4);
                    path.push(name);
                    out.insert(joined(&path), BTreeMap::new());
                }
                2 => {
                    path.pop();
                }
                3 => {
                    let (len, name) = (word(at), c_str(strings + word(at + 4)).0);
                    let value = dtb[at + 8..at + 8 + len].to_vec();
                    at = (at + 8 + len).next_multiple_of(4);
                    out.get_mut(&joined(&path)).unwrap().insert(name, value);
                }
                4 => {}
                9 => return out,
                t => panic!("token {t:#x} at {at:#x}"),
            }
        }
    }

    fn texts(v: &[u8]) -> Vec<&str> {
        v.strip_suffix(&[0]).unwrap().split(|&b| b == 0).map(|s| std::str::from_utf8(s).unwrap()).collect()
    }

    fn cells(v: &[u8]) -> Vec<u32> {
        v.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
    }

    /// The device tree of the bare-metal system's connectivity partition, given `devices`
    /// instead of its own (none: its own, `uart1`).
    fn device_tree(devices: &[&'static DeviceInfo]) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let system = crate::system::load(&crate::build::root().join("systems/qemu-virt-bare.toml")).unwrap();
        let mut p = system.partitions.iter().find(|p| p.name == "connectivity").unwrap().clone();
        if !devices.is_empty() {
            p.devices = devices.to_vec();
        }
        nodes(&generate(&system, &p).unwrap())
    }

    /// A catalogue device like QEMU virt's `uart1`, but at `base` and of `compatible`.
    fn device(name: &'static str, base: u64, size: u64, compatible: &'static [&'static str]) -> &'static DeviceInfo {
        let uart1 = qemu_virt::BOARD.device("uart1").unwrap();
        Box::leak(Box::new(DeviceInfo { name, base, size, compatible, ..*uart1 }))
    }

    fn imx_uart() -> &'static DeviceInfo {
        device("uart2", 0x3089_0000, 0x1_0000, septum_platform::imx_uart::COMPATIBLE)
    }

    /// As the Raspberry Pi 4's catalogue has it: the AUX block's page.
    fn mini_uart() -> &'static DeviceInfo {
        device("miniuart", 0xFE21_5000, 0x1000, bcm2835_aux::COMPATIBLE)
    }

    fn text<'a>(dt: &'a BTreeMap<String, BTreeMap<String, Vec<u8>>>, node: &str, prop: &str) -> Vec<&'a str> {
        texts(&dt[node][prop])
    }

    fn number(dt: &BTreeMap<String, BTreeMap<String, Vec<u8>>>, node: &str, prop: &str) -> Vec<u32> {
        cells(&dt[node][prop])
    }

    #[test]
    fn a_pl011_keeps_its_primecell_clocks_and_is_stdout() {
        let dt = device_tree(&[]);
        let uart = "/pl011@9040000";
        assert_eq!(number(&dt, uart, "reg"), [0, 0x0904_0000, 0, 0x1000]);
        assert_eq!(number(&dt, uart, "clocks"), [CLOCK_PHANDLE, CLOCK_PHANDLE]);
        assert_eq!(text(&dt, uart, "clock-names"), ["uartclk", "apb_pclk"]);
        assert_eq!(text(&dt, "/chosen", "stdout-path"), [uart]);
        assert_eq!(text(&dt, "/aliases", "serial0"), [uart]);
        assert!(!dt.contains_key("/vpu-clk"), "no mini UART, no VideoCore clock");
    }

    /// Linux's `imx.c` needs the `ipg` and `per` clocks and a `serial` alias.
    #[test]
    fn an_imx_uart_has_its_two_named_clocks_an_alias_and_is_stdout() {
        let dt = device_tree(&[imx_uart()]);
        let uart = "/imx8mp-uart@30890000";
        assert_eq!(text(&dt, uart, "compatible"), ["fsl,imx8mp-uart", "fsl,imx6q-uart"]);
        assert_eq!(number(&dt, uart, "reg"), [0, 0x3089_0000, 0, 0x1_0000]);
        assert_eq!(number(&dt, uart, "interrupts"), [SPI, 40 - 32, LEVEL_HIGH]);
        assert_eq!(number(&dt, uart, "clocks"), [CLOCK_PHANDLE, CLOCK_PHANDLE]);
        assert_eq!(text(&dt, uart, "clock-names"), ["ipg", "per"]);
        assert_eq!(number(&dt, "/apb-pclk", "phandle"), [CLOCK_PHANDLE]);
        assert_eq!(number(&dt, "/apb-pclk", "clock-frequency"), [24_000_000]);
        assert_eq!(text(&dt, "/chosen", "stdout-path"), [uart]);
        assert_eq!(text(&dt, "/aliases", "serial0"), [uart]);
    }

    /// Linux's binding names the mini UART's registers (AUX + 0x40), not the AUX page
    /// the partition is given; `8250_bcm2835aux` divides the VideoCore clock.
    #[test]
    fn a_mini_uart_names_its_registers_in_the_aux_page_and_the_videocore_clock() {
        let dt = device_tree(&[mini_uart()]);
        let uart = "/bcm2835-aux-uart@fe215040";
        assert_eq!(text(&dt, uart, "compatible"), ["brcm,bcm2835-aux-uart"]);
        assert_eq!(number(&dt, uart, "reg"), [0, 0xFE21_5040, 0, 0x40]);
        assert_eq!(number(&dt, uart, "clocks"), [VPU_CLOCK_PHANDLE]);
        assert!(!dt[uart].contains_key("clock-names"));
        assert_eq!(number(&dt, "/vpu-clk", "phandle"), [VPU_CLOCK_PHANDLE]);
        assert_eq!(number(&dt, "/vpu-clk", "clock-frequency"), [500_000_000]);
        assert_eq!(text(&dt, "/vpu-clk", "compatible"), ["fixed-clock"]);
        assert_eq!(text(&dt, "/chosen", "stdout-path"), [uart]);
        assert_eq!(text(&dt, "/aliases", "serial0"), [uart]);
    }

    #[test]
    fn stdout_is_the_first_uart_of_any_kind_and_every_uart_has_an_alias() {
        let gpio = qemu_virt::BOARD.device("gpio").unwrap();
        let pl011 = qemu_virt::BOARD.device("uart0").unwrap();
        let dt = device_tree(&[gpio, mini_uart(), pl011, imx_uart()]);
        assert_eq!(text(&dt, "/chosen", "stdout-path"), ["/bcm2835-aux-uart@fe215040"]);
        assert_eq!(text(&dt, "/aliases", "serial0"), ["/bcm2835-aux-uart@fe215040"]);
        assert_eq!(text(&dt, "/aliases", "serial1"), ["/pl011@9000000"]);
        assert_eq!(text(&dt, "/aliases", "serial2"), ["/imx8mp-uart@30890000"]);
        assert_eq!(dt["/aliases"].len(), 3, "the GPIO is no UART");
        assert!(dt.contains_key("/pl061@9030000"));
    }

    /// MED-005, MED-007: the monitor's sensor memory and every alarm limit of the
    /// description (the defaults where it sets none) are in its device tree, which its
    /// manifest signs.
    #[test]
    fn the_monitors_device_tree_carries_its_sensor_and_every_alarm_limit() {
        let toml = std::fs::read_to_string(crate::build::root().join("tests/systems/monitor.toml")).unwrap();
        let toml = toml.replace("brady_bpm = 50 ", "brady_bpm = 45 ").replace("asystole_ms = 4000", "");
        let system = crate::system::parse(std::path::Path::new("monitor.toml"), &toml).unwrap();
        let p = system.partitions.iter().find(|p| p.name == "critical-monitor").unwrap();
        let dt = nodes(&generate(&system, p).unwrap());
        let sensor = "/sensor@60000000";
        assert_eq!(text(&dt, sensor, "compatible"), [SENSOR_COMPATIBLE]);
        assert_eq!(text(&dt, sensor, "label"), ["ecg"]);
        assert_eq!(number(&dt, sensor, "reg"), [0, 0x6000_0000, 0, 0x80_0000]);
        let limits = "/alarm-limits";
        assert_eq!(text(&dt, limits, "compatible"), [ALARM_LIMITS_COMPATIBLE]);
        assert_eq!(number(&dt, limits, "septum,brady_bpm"), [45]);
        assert_eq!(number(&dt, limits, "septum,tachy_bpm"), [120]);
        let defaults = septum_ecg::Limits::default();
        assert_eq!(number(&dt, limits, "septum,asystole_ms"), [defaults.asystole_ms]);
        assert_eq!(dt[limits].len(), 1 + defaults.fields().len());
        let connectivity = system.partitions.iter().find(|p| p.name == "connectivity").unwrap();
        let theirs = nodes(&generate(&system, connectivity).unwrap());
        assert!(!theirs.contains_key(sensor) && !theirs.contains_key(limits), "the sensor is one partition's");
    }
}

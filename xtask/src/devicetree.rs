//! Partition device trees: each partition gets one that lists only what it owns (its
//! RAM as it sees it, its vCPUs, PSCI over HVC, the GIC it sees, the generic timer and
//! its devices with their interrupts). Written with rust-vmm's `vm-fdt`.
//!
//! The GIC node names the board's distributor address, where the hypervisor emulates a
//! distributor showing only the partition's interrupts, and, on a GICv3, the emulated
//! redistributor frames of its vCPUs; on a GICv2, the CPU interface address, where the
//! hypervisor maps the virtual CPU interface.

use septum_abi::config::RegionKind;
use septum_platform::catalog::{GicVersion, GICV2_CPU_INTERFACE_SIZE};
use vm_fdt::{Error, FdtWriter};

use crate::system::{Partition, System};

const CLOCK_PHANDLE: u32 = 1;
const GIC_PHANDLE: u32 = 2;
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
    if let Some(uart) = p.devices.iter().find(|d| d.compatible.contains(&"arm,pl011")) {
        fdt.property_string("stdout-path", &format!("/pl011@{:x}", uart.base))?;
    }
    fdt.end_node(chosen)?;

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
    fdt.property_u32("clock-frequency", 24_000_000)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(CLOCK_PHANDLE)?;
    fdt.end_node(clk)?;

    for d in &p.devices {
        let node_name = d.compatible.first().and_then(|c| c.split(',').nth(1)).unwrap_or(d.name);
        let node = fdt.begin_node(&format!("{node_name}@{:x}", d.base))?;
        fdt.property_string_list("compatible", d.compatible.iter().map(|s| s.to_string()).collect())?;
        fdt.property_array_u64("reg", &[d.base, d.size])?;
        if !d.irqs.is_empty() {
            let spis: Vec<u32> = d.irqs.iter().flat_map(|&i| [SPI, i.saturating_sub(32), LEVEL_HIGH]).collect();
            fdt.property_array_u32("interrupts", &spis)?;
        }
        if d.compatible.contains(&"arm,primecell") {
            fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
            fdt.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
        }
        fdt.end_node(node)?;
    }
    if !p.channels.is_empty() {
        channels(&mut fdt, p)?;
    }
    fdt.end_node(root)?;
    fdt.finish()
}

/// Compatible string of a channel endpoint node. Properties:
/// `label` (channel name), `septum,kind` ("queuing" | "sampling"), `septum,role`
/// ("producer" | "consumer" | "writer" | "reader"), `septum,own` and `septum,peer`
/// (<ipa size> of the region this end writes / the peer writes, each present when
/// the role has one), `septum,doorbell` (<ipa> of the page to write to signal the
/// peer), `septum,doorbell-intid` (<intid>: the virtual interrupt this end receives
/// when the peer rings), and `septum,slot-size` + `septum,depth` (queuing) or
/// `septum,capacity` (sampling).
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

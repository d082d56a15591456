//! Partition device trees: each partition gets one that lists only what it owns (its
//! RAM as it sees it, its vCPUs, PSCI over HVC, the generic timer and its devices).
//! Written with rust-vmm's `vm-fdt`.

use septum_abi::config::RegionKind;
use vm_fdt::{Error, FdtWriter};

use crate::system::{Partition, System};

const CLOCK_PHANDLE: u32 = 1;

pub fn generate(system: &System, p: &Partition) -> Result<Vec<u8>, Error> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string_list("compatible", vec!["septum,partition".into()])?;
    fdt.property_string("model", &format!("Septum partition {} on {}", p.name, system.board.name))?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &p.bootargs)?;
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

    let timer = fdt.begin_node("timer")?;
    fdt.property_string_list("compatible", vec!["arm,armv8-timer".into()])?;
    fdt.property_null("always-on")?;
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
        if d.compatible.contains(&"arm,primecell") {
            fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
            fdt.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
        }
        fdt.end_node(node)?;
    }
    fdt.end_node(root)?;
    fdt.finish()
}

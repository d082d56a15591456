//! DMA isolation (DMA-001..DMA-004): devices that master the bus reach only their
//! partition's memory, through the SMMU the hypervisor drives; without it, the system is
//! refused.

use std::time::Duration;

use septum_system_tests::{artifacts, assert_critical_kept_its_period, count};
use xtask::qemu::{Launch, Machine};

/// A blank raw disk for the connectivity partition's controller.
fn scratch_disk(art: &xtask::build::Artifacts, name: &str) -> std::path::PathBuf {
    let path = art.dir.join(name);
    std::fs::write(&path, vec![0u8; 1 << 20]).expect("disk image");
    path
}

/// DMA-003, DMA-004: connectivity has the PCIe disk controller write, by DMA, into the critical
/// monitor's canary page, into the hypervisor's memory and outside its own map, and
/// moves the controller's BAR onto the critical monitor's RAM. The SMMU stops each
/// write; the hypervisor logs the stream and address and restarts connectivity by its
/// policy; the BAR is reachable by nothing; the critical monitor's canary never changes
/// and it keeps its period.
#[test]
fn dma_into_other_memory_is_stopped_by_the_smmu() {
    let art = artifacts("tests/systems/dma-attack.toml");
    let disk = scratch_disk(&art, "dma-attack-disk.img");
    let opts = Launch { disk: Some(disk), ..Launch::default() };
    let mut m = Machine::launch(&art, &opts).expect("QEMU starts");
    m.wait_for("four attacks and a boot after them", Duration::from_secs(120), |l| {
        count(l, "connectivity: boot (") >= 5 && count(l, "critical-monitor: canary intact") >= 2
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    for (attack, target) in
        [("dma-critical", 0x50ff_f000u64), ("dma-hypervisor", 0x4800_0000), ("dma-outside", 0x70_0000_0000)]
    {
        let aimed = format!("connectivity: attack {attack}: the disk controller writes to {target:#x}");
        assert_eq!(count(&lines, &aimed), 1, "no `{aimed}`\n{t}");
        let stopped = format!("write at {target:#x}: F_");
        assert!(
            lines.iter().any(|l| l.text.contains("connectivity: DMA FAULT stream") && l.text.contains(&stopped)),
            "the SMMU did not report `{stopped}`\n{t}"
        );
    }
    // A BAR moved outside the host bridge's windows is reachable by nothing: the
    // partition's own write there is a stage-2 fault.
    assert_eq!(count(&lines, "connectivity: attack bar-outside: BAR4 at 0x50fff000"), 1, "{t}");
    assert_eq!(count(&lines, "connectivity: FAULT access outside its memory map: write at IPA 0x50fff000"), 1, "{t}");
    assert_eq!(count(&lines, "NOT CONTAINED"), 0, "{t}");
    assert_eq!(count(&lines, "connectivity: policy restart"), 4, "{t}");
    assert_eq!(count(&lines, "CANARY CHANGED"), 0, "{t}");
    assert_critical_kept_its_period(&lines, &t);
}

/// DMA-001, DMA-003: the same system on the same machine without its SMMU: the
/// hypervisor refuses it at boot (the PCIe host bridge would be a bus master nothing
/// contains), rather than run it.
#[test]
fn without_the_smmu_the_system_is_refused_at_boot() {
    let art = artifacts("tests/systems/dma-attack.toml");
    let opts = Launch { iommu: false, ..Launch::default() };
    let mut m = Machine::launch(&art, &opts).expect("QEMU starts");
    let _ = m.wait_for("the refusal", Duration::from_secs(30), |l| count(l, "configuration refused") >= 1);
    let lines = m.lines();
    let t = m.transcript();
    assert!(
        lines.iter().any(|l| l.text.contains("configuration refused") && l.text.contains("masters the bus (DMA)")),
        "{t}"
    );
    assert_eq!(count(&lines, "heartbeat"), 0, "nothing runs\n{t}");
}

/// DMA-002: on the Raspberry Pi 4, which has no IOMMU, the SD card controller is given
/// to connectivity with the description's opt-out: the system boots, and the hypervisor
/// says at boot that the device can reach any memory.
#[test]
fn an_unprotected_bus_master_boots_with_the_warning() {
    let art = artifacts("tests/systems/rpi4-unprotected-dma.toml");
    let mut m = Machine::launch(&art, &Launch::default()).expect("QEMU starts");
    m.wait_for("both partitions beating", Duration::from_secs(60), |l| {
        count(l, "critical-monitor: heartbeat n=20 ") == 1 && count(l, "connectivity: heartbeat n=20 ") == 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lines = m.lines();
    let t = m.transcript();
    let warning =
        "WARNING connectivity: the device at 0xfe340000..0xfe341000 masters the bus with NO IOMMU containing it";
    assert_eq!(count(&lines, warning), 1, "{t}");
    assert_critical_kept_its_period(&lines, &t);
}

//! CFG-001: broken system descriptions are refused with messages that name the problem
//! and its line. Each file in `systems/broken/` states the message it must produce in
//! its first line (`# expect: :LINE: message`).

use super::*;
use septum_abi::config::Range;

fn root() -> PathBuf {
    crate::build::root()
}

#[test]
fn every_broken_description_is_refused_with_its_expected_message() {
    let dir = root().join("systems/broken");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("systems/broken exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("first line says # expect:");
        let errors = match load(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e,
        };
        let wanted = format!("{}{expect}", path.display());
        assert!(errors.iter().any(|e| e.0 == wanted), "{}:\n wanted {wanted}\n got {errors:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} broken descriptions");
}

#[test]
fn shipped_descriptions_are_valid() {
    for dir in ["systems", "tests/systems"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            }
        }
    }
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("16M"), Some(16 << 20));
    assert_eq!(parse_size("4K"), Some(4096));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("0x1000"), Some(4096));
    assert_eq!(parse_size("64 lightyears"), None);
    assert_eq!(parse_duration_ms("60s"), Some(60_000));
    assert_eq!(parse_duration_ms("10ms"), Some(10));
    assert_eq!(parse_duration_ms("2min"), Some(120_000));
    assert_eq!(parse_duration_ms("soon"), None);
    assert_eq!(parse_version("1.2.3"), Some([1, 2, 3]));
    assert_eq!(parse_version("1.2"), None);
    assert_eq!(parse_version("1.2.3.4"), None);
    assert_eq!(parse_version("1.x.3"), None);
}

#[test]
fn release_version_and_security_counter_default_and_override() {
    let sys = load(&root().join("systems/qemu-virt.toml")).expect("valid");
    assert_eq!(sys.partitions[0].version, default_version());
    assert_eq!(sys.partitions[0].security_counter, 1);
    let text = std::fs::read_to_string(root().join("systems/qemu-virt.toml")).expect("readable");
    let text = text.replacen(
        "on_fault = \"safe-state\"",
        "on_fault = \"safe-state\"\nversion = \"2.5.1\"\nsecurity_counter = 7",
        1,
    );
    let sys = parse(&root().join("systems/qemu-virt.toml"), &text).expect("valid");
    assert_eq!((sys.partitions[0].version, sys.partitions[0].security_counter), ([2, 5, 1], 7));
    let bad = text.replace("2.5.1", "2.5");
    let errs = parse(Path::new("v.toml"), &bad).expect_err("refused");
    assert!(errs[0].0.starts_with("v.toml:") && errs[0].0.contains("is not x.y.z"), "{errs:?}");
}

#[test]
fn compiled_configuration_places_partitions_as_described() {
    let sys = load(&root().join("systems/qemu-virt.toml")).expect("valid");
    let cfg = sys.encode();
    let board = sys.board.facts();
    let parsed = Config::parse(&cfg, sys.board.id, &board, &|_| Some(4096)).expect("hypervisor accepts it");
    let conn = &parsed.partitions[1];
    assert_eq!(conn.name(), "connectivity");
    assert_eq!(conn.vcpus(), &[1, 2], "Linux's two vCPUs on cores 1 and 2");
    assert_eq!(conn.ram_ipa_to_pa(0x4000_0000), Some(0x6000_0000));
    assert!(conn.regions().iter().any(|r| r.kind() == Some(RegionKind::Device) && r.pa == 0x0904_0000));
    assert!(!conn.regions().iter().any(|r| r.pa == 0x0900_0000), "uart0 is not connectivity's");
    assert_eq!(sys.partitions[1].image, ImageSource::DebianLinux);
    assert_eq!(sys.partitions[1].initrd, Some(InitrdSource::SeptumInitramfs));
}

#[test]
fn an_initrd_is_for_kernels_only() {
    let text = std::fs::read_to_string(root().join("systems/qemu-virt-bare.toml")).expect("readable");
    let bad = text.replacen("image = \"connectivity\"", "image = \"connectivity\"\ninitrd = \"rd.cpio\"", 1);
    let errs = parse(Path::new("i.toml"), &bad).expect_err("refused");
    assert!(errs[0].0.contains("initrd is for a Linux kernel image"), "{errs:?}");
}

/// QEMU 10.0.2's `virt` device trees (`-M virt,virtualization=on,gic-version=3|2`),
/// as the hypervisor reads them at boot: without the SMMU, and as xtask runs the
/// machine, with it (`iommu=smmuv3`).
const VIRT_DTB: &[u8] = include_bytes!("../../../hypervisor/core/tests/qemu-virt.dtb");
const VIRT_SMMU_DTB: &[u8] = include_bytes!("../../../hypervisor/core/tests/qemu-virt-smmuv3.dtb");
const VIRT_GICV2_SMMU_DTB: &[u8] = include_bytes!("../../../hypervisor/core/tests/qemu-virt-gicv2-smmuv3.dtb");

fn virt_dtb(board: &Board) -> Option<&'static [u8]> {
    match board.name {
        "qemu-virt" => Some(VIRT_SMMU_DTB),
        "qemu-virt-gicv2" => Some(VIRT_GICV2_SMMU_DTB),
        _ => None,
    }
}

/// CFG-004, CFG-005, CFG-006: every shipped description for QEMU virt also passes the
/// check the hypervisor runs at boot, against QEMU's own device tree (nothing
/// legitimate is refused there). The boards' Debian device trees: `dist`'s tests.
#[test]
fn shipped_descriptions_pass_the_boot_time_check() {
    let mut seen = 0;
    for dir in ["systems", "tests/systems"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let sys = load(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            if let Some(dtb) = virt_dtb(sys.board) {
                sys.check_at_boot(dtb).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
    }
    assert!(seen >= 8, "only {seen} descriptions for QEMU virt");
}

/// Gives partition `i` of `sys` (one without channels, whose regions would follow its
/// devices) the device the catalogue or its kept list names, as a configuration
/// written without xtask's checks could.
fn give(sys: &mut System, i: usize, name: &str) {
    let info = sys.board.device(name).or_else(|| sys.board.kept_device(name).map(|k| &k.device)).expect("named");
    let p = &mut sys.partitions[i];
    let r = p.desc.region_count as usize;
    p.desc.regions[r] = MemRegion::device(info.base, info.size);
    p.desc.region_count += 1;
    p.devices.push(info);
    p.device_regions.push(info);
}

fn with_irqs(sys: &mut System, i: usize, irqs: &[u32]) {
    let p = &mut sys.partitions[i];
    p.desc.irq_count = irqs.len() as u32;
    p.desc.irqs[..irqs.len()].copy_from_slice(irqs);
}

/// BOOT-005, CFG-004: QEMU virt's device tree alone makes its flash banks, fw-cfg,
/// virtio-mmio transports, ITS and PCIe ECAM assignable devices; with the catalogue's
/// kept devices added, as the hypervisor adds them at boot, a partition given one is
/// refused, with the message the build-time check gives.
#[test]
fn kept_devices_are_refused_at_boot_whatever_the_dtb_says() {
    let dtb_alone = septum_core::board::read(VIRT_DTB).expect("reads");
    for base in [0x0400_0000, 0x0902_0000, 0x0A00_0000, 0x0808_0000, 0x40_1000_0000] {
        let d =
            dtb_alone.board.devices.iter().find(|d| d.range.overlaps(&Range::new(base, 0x1000))).expect("in the DTB");
        assert!(d.assignable, "{base:#x}: the DTB alone does not say it is kept");
    }
    let bare = root().join("tests/systems/attacks.toml");
    for name in
        ["flash1", "flash0", "fw-cfg", "virtio-mmio", "gic-its", "smmu", "pcie-ecam-low", "pcie-mmio-high", "gicd"]
    {
        let mut sys = load(&bare).expect("valid");
        give(&mut sys, 1, name);
        let at_build = sys.check(&|_| None).expect_err(name);
        let at_boot = sys.check_at_boot(VIRT_DTB).expect_err(name);
        assert_eq!(at_boot, at_build, "{name}");
        assert!(at_boot.0.contains(&format!("device {name} of connectivity")), "{name}: {at_boot}");
        assert!(at_boot.0.contains("kept by the hypervisor"), "{name}: {at_boot}");
    }
}

/// DMA-001, DMA-003: the PCIe host bridge is given only where the machine has the SMMU
/// in front of it: with QEMU's `iommu=smmuv3` it is accepted, on the same machine
/// without it the hypervisor refuses the system at boot, with the build-time message.
#[test]
fn pcie_is_given_only_behind_the_smmu() {
    let with_smmu = VIRT_SMMU_DTB;
    let sys = load(&root().join("tests/systems/dma-attack.toml")).expect("valid");
    sys.check_at_boot(with_smmu).expect("behind the SMMU");
    let refused = sys.check_at_boot(VIRT_DTB).expect_err("no SMMU");
    assert!(refused.0.contains("device pcie of connectivity"), "{refused}");
    assert!(refused.0.contains("the SMMUv3 at 0x9050000) is not in this machine"), "{refused}");
}

/// CFG-005: at boot too, a partition owns only its own devices' SPIs: not another
/// partition's, not a device's it was not given, not a PPI.
#[test]
fn foreign_and_private_interrupts_are_refused_at_boot() {
    let sys = load(&root().join("tests/systems/attacks.toml")).expect("valid");
    assert_eq!(sys.partitions[1].desc.irqs(), [40]);
    for (irqs, refusal) in [
        (&[40, 33][..], "interrupt 33 is already given to critical-monitor"),
        (&[34], "interrupt 34 is raised by none of its devices"),
        (&[48], "interrupt 48 is raised by none of its devices (uart1: [40]); it is virtio-mmio's, which the hypervisor keeps"),
        (&[27], "interrupt 27 is a PPI"),
        (&[25], "interrupt 25 is a PPI (the GIC maintenance interrupt"),
    ] {
        let mut sys = sys.clone();
        with_irqs(&mut sys, 1, irqs);
        let at_boot = sys.check_at_boot(VIRT_DTB).expect_err(refusal);
        assert!(at_boot.0.contains(refusal), "{irqs:?}: {at_boot}");
        assert_eq!(sys.check(&|_| None).expect_err(refusal), at_boot);
    }
}

/// CFG-005: the interrupts a partition owns are its devices' unless it lists them; its
/// device tree names only those it owns (a device it polls has none).
#[test]
fn interrupts_default_to_the_devices_and_may_be_fewer() {
    let path = root().join("systems/qemu-virt-bare.toml");
    let text = std::fs::read_to_string(&path).expect("readable");
    let sys = parse(&path, &text).expect("valid");
    assert_eq!(sys.partitions[0].desc.irqs(), [33]);
    let polled = text.replacen("devices = [\"uart0\"]", "devices = [\"uart0\"]\ninterrupts = []", 1);
    let sys = parse(&path, &polled).expect("valid");
    assert_eq!(sys.partitions[0].desc.irqs(), [] as [u32; 0]);
    let dtb = crate::devicetree::generate(&sys, &sys.partitions[0]).expect("generates");
    let owned = crate::devicetree::generate(&load(&path).unwrap(), &load(&path).unwrap().partitions[0]).unwrap();
    assert!(dtb.len() < owned.len(), "no interrupts property for the polled UART");
}

/// CH-012: `checksum` defaults to "crc32c", is given to both ends alike, and may be
/// "none" only on a channel with no critical partition at either end; any other value
/// is refused by name.
#[test]
fn a_channel_carries_its_checksum_to_both_ends() {
    let path = root().join("systems/qemu-virt-bare.toml");
    let text = std::fs::read_to_string(&path).expect("readable");
    let ends = |sys: &System| -> Vec<(String, Checksum)> {
        sys.partitions.iter().flat_map(|p| p.channels.iter().map(|c| (c.channel.clone(), c.checksum))).collect()
    };
    let sys = parse(&path, &text).expect("valid");
    assert!(ends(&sys).iter().all(|(_, c)| *c == Checksum::Crc32c), "{:?}", ends(&sys));

    // A channel between two non-critical partitions may go without.
    let plain =
        text.replacen("critical = true\n", "", 1).replacen("on_fault = \"safe-state\"", "on_fault = \"halt\"", 1)
            + "checksum = \"none\"\n";
    let sys = parse(&path, &plain).expect("valid");
    let commands: Vec<Checksum> = ends(&sys).into_iter().filter(|(n, _)| n == "commands").map(|(_, c)| c).collect();
    assert_eq!(commands, [Checksum::None, Checksum::None], "both ends of the last channel");

    let errs = parse(Path::new("c.toml"), &(text.clone() + "checksum = \"none\"\n")).expect_err("refused");
    assert!(errs[0].0.contains("channel commands: checksum = \"none\" on a channel of critical partition"), "{errs:?}");
    let errs = parse(Path::new("c.toml"), &(text + "checksum = \"crc32\"\n")).expect_err("refused");
    assert!(errs[0].0.contains("checksum \"crc32\" is neither \"crc32c\" nor \"none\""), "{errs:?}");
}

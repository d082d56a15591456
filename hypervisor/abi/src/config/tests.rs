//! The validator's rules, one test each (CFG-* requirements in docs/requirements.md).
use super::*;
use zerocopy::FromZeros;

const MB: u64 = 1 << 20;

fn board() -> BoardFacts {
    let mut b = BoardFacts::default();
    b.ram.push(Range::new(0x4000_0000, 1024 * MB));
    for c in 0..4 {
        b.cpus.push(c);
    }
    let device = |base, size, assignable, irqs: &[u32]| BoardDevice {
        irqs: DeviceIrqs::of(irqs),
        ..BoardDevice::new(Range::new(base, size), assignable)
    };
    b.devices.push(device(0x0900_0000, 0x1000, true, &[33]));
    b.devices.push(device(0x0904_0000, 0x1000, true, &[40]));
    b.devices.push(device(0x0903_0000, 0x1000, true, &[39]));
    b.devices.push(device(0x0800_0000, 0x10000, false, &[]));
    // A bus window around a kept device (QEMU virt's flash banks and fw-cfg stand-ins).
    b.devices.push(device(0x0000_0000, 0x0A00_0000, true, &[]));
    b.devices.push(device(0x0902_0000, 0x1000, false, &[]));
    b.reserved.push(Range::new(0x4000_0000, 64 * MB));
    b
}

/// The INTID of each UART `partition` gives.
fn uart_irq(uart: u64) -> u32 {
    if uart == 0x0900_0000 {
        33
    } else {
        40
    }
}

fn partition(name: &str, vmid: u32, cpu: u64, pa: u64, uart: u64) -> PartitionDesc {
    let mut p = PartitionDesc::new_zeroed();
    p.name = crate::name_field(name).unwrap();
    p.vmid = vmid;
    p.policy = FaultPolicy::Restart as u32;
    p.restart_max = 3;
    p.restart_window_ms = 1000;
    p.vcpu_count = 1;
    p.vcpu_mpidr[0] = cpu;
    p.region_count = 2;
    p.regions[0] = MemRegion {
        pa,
        ipa: 0x4000_0000,
        size: 16 * MB,
        kind: RegionKind::Ram as u32,
        param: 0,
        signal_partition: 0,
        signal_intid: 0,
    };
    p.regions[1] = MemRegion::device(uart, 0x1000);
    p.irq_count = 1;
    p.irqs[0] = uart_irq(uart);
    p.image_ipa = 0x4000_0000;
    p.entry_ipa = 0x4000_0000;
    p.dtb_ipa = 0x4000_0000 + 15 * MB;
    p
}

fn two() -> [PartitionDesc; 2] {
    [partition("critical", 1, 0, 0x5000_0000, 0x0900_0000), partition("conn", 2, 1, 0x6000_0000, 0x0904_0000)]
}

fn check(parts: &[PartitionDesc]) -> Result<(), ConfigError> {
    let mut buf = [0u8; encoded_len(MAX_PARTITIONS)];
    let n = encode(BoardId::QemuVirt, parts, &mut buf).unwrap();
    Config::parse(&buf[..n], BoardId::QemuVirt, &board(), &|_| Some(4096)).map(|_| ())
}

#[test]
fn a_good_configuration_round_trips() {
    let parts = two();
    let mut buf = [0u8; encoded_len(2)];
    let n = encode(BoardId::QemuVirt, &parts, &mut buf).unwrap();
    let cfg = Config::parse(&buf[..n], BoardId::QemuVirt, &board(), &|_| Some(4096)).unwrap();
    assert_eq!(cfg.partitions.len(), 2);
    assert_eq!(cfg.partitions[1].name(), "conn");
    assert_eq!(cfg.partitions[1].ram_ipa_to_pa(0x4000_1000), Some(0x6000_1000));
}

/// CFG-002: every single-bit corruption of a configuration is refused.
#[test]
fn any_flipped_bit_is_refused() {
    let parts = two();
    let mut buf = [0u8; encoded_len(2)];
    let n = encode(BoardId::QemuVirt, &parts, &mut buf).unwrap();
    for byte in 0..n {
        for bit in 0..8 {
            let mut copy = buf;
            copy[byte] ^= 1 << bit;
            assert!(
                Config::parse(&copy[..n], BoardId::QemuVirt, &board(), &|_| Some(4096)).is_err(),
                "flip of byte {byte} bit {bit} accepted"
            );
        }
    }
}

#[test]
fn truncated_and_foreign_configurations_are_refused() {
    let parts = two();
    let mut buf = [0u8; encoded_len(2)];
    let n = encode(BoardId::QemuVirt, &parts, &mut buf).unwrap();
    for cut in [0, 3, 31, n - 1] {
        assert!(Config::parse(&buf[..cut], BoardId::QemuVirt, &board(), &|_| None).is_err());
    }
}

#[test]
fn overlapping_ram_is_refused() {
    let mut p = two();
    p[1].regions[0].pa = 0x5000_0000 + 8 * MB;
    assert!(matches!(check(&p), Err(ConfigError::PhysicalOverlap { partition: 1, region: 0, other_partition: 0, .. })));
}

#[test]
fn unaligned_region_is_refused() {
    let mut p = two();
    p[0].regions[0].size = 16 * MB + 12;
    assert!(matches!(check(&p), Err(ConfigError::UnalignedRegion { partition: 0, region: 0 })));
}

#[test]
fn cpu_given_twice_is_refused() {
    let mut p = two();
    p[1].vcpu_mpidr[0] = 0;
    assert!(matches!(check(&p), Err(ConfigError::CpuGivenTwice { partition: 1, mpidr: 0, other: 0, .. })));
}

#[test]
fn device_given_twice_is_refused() {
    let mut p = two();
    p[1].regions[1].pa = 0x0900_0000;
    assert!(matches!(check(&p), Err(ConfigError::PhysicalOverlap { partition: 1, region: 1, .. })));
}

#[test]
fn memory_outside_the_board_is_refused() {
    let mut p = two();
    p[1].regions[0].pa = 0x8000_0000;
    assert!(matches!(check(&p), Err(ConfigError::RamOutsideBoard { partition: 1, .. })));
}

/// CFG-004: memory the hypervisor or the board reserves, and devices the hypervisor
/// keeps, are refused.
#[test]
fn hypervisor_memory_and_kept_devices_are_refused() {
    let mut p = two();
    p[1].regions[0].pa = 0x4100_0000;
    assert!(matches!(check(&p), Err(ConfigError::OverlapsReserved { .. })));
    let mut p = two();
    p[1].regions[1].pa = 0x0800_0000;
    assert!(matches!(check(&p), Err(ConfigError::DeviceNotAssignable { .. })));
}

/// CFG-004: a device window that overlaps a kept one is refused even when an assignable
/// window (a bus around it, a device sharing its page) contains it: overlap decides.
#[test]
fn a_window_reaching_into_a_kept_device_is_refused() {
    let refused = |base: u64, size: u64| {
        let mut p = two();
        p[1].regions[1].pa = base;
        p[1].regions[1].ipa = base;
        p[1].regions[1].size = size;
        p[1].irq_count = 0;
        check(&p)
    };
    assert!(matches!(
        refused(0x0902_0000, 0x1000),
        Err(ConfigError::DeviceNotAssignable { partition: 1, region: 1, .. })
    ));
    assert!(matches!(refused(0x0901_F000, 0x2000), Err(ConfigError::DeviceNotAssignable { .. })), "one page in");
    assert!(matches!(refused(0x0000_0000, 0x0A00_0000), Err(ConfigError::DeviceNotAssignable { .. })), "the bus");
    assert!(refused(0x0100_0000, 0x1000).is_ok(), "the bus window elsewhere is assignable");
    assert!(matches!(refused(0x0A00_0000, 0x1000), Err(ConfigError::DeviceNotOnBoard { .. })));
}

fn with_irqs(partition: usize, irqs: &[u32]) -> Result<(), ConfigError> {
    let mut p = two();
    p[partition].irq_count = irqs.len() as u32;
    p[partition].irqs[..irqs.len()].copy_from_slice(irqs);
    check(&p)
}

/// CFG-005: a partition owns only SPIs, and only its own devices' (here connectivity,
/// which has uart1 = INTID 40): not another partition's, not a device it was not given,
/// not a PPI (25: the GIC maintenance interrupt, 27: the virtual timer), not an SGI, not
/// a doorbell INTID, not a special one.
#[test]
fn a_partition_owns_only_its_own_devices_spis() {
    use ConfigError::*;
    assert!(with_irqs(1, &[40]).is_ok());
    assert!(with_irqs(1, &[]).is_ok(), "a partition may poll its devices");
    assert!(
        matches!(with_irqs(1, &[40, 33]), Err(IrqGivenTwice { partition: 1, irq: 1, intid: 33, other: 0 })),
        "critical-monitor's UART interrupt"
    );
    assert!(matches!(with_irqs(1, &[39]), Err(IrqNotOfItsDevices { partition: 1, irq: 0, intid: 39 })), "gpio's");
    assert!(matches!(with_irqs(1, &[100]), Err(IrqNotOfItsDevices { intid: 100, .. })), "nobody's");
    for ppi_or_sgi in [25, 27, 30, 16, 0, 15] {
        assert!(
            matches!(with_irqs(1, &[ppi_or_sgi]), Err(IrqNotSpi { partition: 1, irq: 0, intid }) if intid == ppi_or_sgi),
            "{ppi_or_sgi}"
        );
    }
    for not_a_device in [DOORBELL_INTIDS.start, DOORBELL_INTIDS.end - 1, 1020, 1023, 8192] {
        assert!(matches!(with_irqs(1, &[not_a_device]), Err(IrqNotSpi { .. })), "{not_a_device}");
    }
    assert_eq!(with_irqs(1, &[25]).unwrap_err().location(), Where::Irq(1, 0));
}

/// CFG-005: an interrupt is listed once and belongs to one partition.
#[test]
fn an_interrupt_belongs_to_one_partition_once() {
    assert!(matches!(
        with_irqs(1, &[40, 40]),
        Err(ConfigError::IrqGivenTwice { partition: 1, irq: 1, intid: 40, other: 1 })
    ));
    // Both given uart0's page: the device is refused before its interrupt.
    let mut p = two();
    p[1].regions[1].pa = 0x0900_0000;
    p[1].irqs[0] = 33;
    assert!(matches!(check(&p), Err(ConfigError::PhysicalOverlap { .. })));
    // A device's interrupt that a window of the partition reaches is its own: a device
    // sharing the page of one it was given (rpi4's mini UART and the AUX block).
    let mut b = board();
    b.devices
        .push(BoardDevice { irqs: DeviceIrqs::of(&[41]), ..BoardDevice::new(Range::new(0x0904_0000, 0x1000), true) });
    let mut parts = two();
    parts[1].irq_count = 2;
    parts[1].irqs[1] = 41;
    let mut buf = [0u8; encoded_len(2)];
    let n = encode(BoardId::QemuVirt, &parts, &mut buf).unwrap();
    assert!(Config::parse(&buf[..n], BoardId::QemuVirt, &b, &|_| Some(4096)).is_ok());
    assert!(Config::parse(&buf[..n], BoardId::QemuVirt, &board(), &|_| Some(4096)).is_err());
}

#[test]
fn device_interrupt_lists_keep_what_fits() {
    let irqs = DeviceIrqs::of(&[33, 0, 2000, 40, 41, 42, 43, 44, 45, 46, 47]);
    assert!(irqs.iter().eq([33, 40, 41, 42, 43, 44, 45, 46]));
    assert!(irqs.contains(46) && !irqs.contains(47) && !irqs.contains(0));
    assert_eq!(DeviceIrqs::NONE.iter().count(), 0);
}

#[test]
fn cpu_not_on_board_is_refused() {
    let mut p = two();
    p[1].vcpu_mpidr[0] = 7;
    assert!(matches!(check(&p), Err(ConfigError::CpuNotOnBoard { partition: 1, mpidr: 7, .. })));
}

#[test]
fn safe_state_needs_a_critical_partition() {
    let mut p = two();
    p[1].policy = FaultPolicy::SafeState as u32;
    assert!(matches!(check(&p), Err(ConfigError::SafeStateNotCritical { partition: 1 })));
    p[1].flags = flags::CRITICAL;
    assert!(check(&p).is_ok());
}

#[test]
fn entry_and_dtb_must_be_in_ram() {
    let mut p = two();
    p[0].entry_ipa = 0x3000_0000;
    assert!(check(&p).is_err());
    let mut p = two();
    p[0].dtb_ipa = 0x4000_0000 + 16 * MB - 4096;
    assert!(matches!(check(&p), Err(ConfigError::DtbOutsideRam { partition: 0 })));
}

#[test]
fn image_must_not_run_into_the_device_tree() {
    let parts = two();
    let mut buf = [0u8; encoded_len(MAX_PARTITIONS)];
    let n = encode(BoardId::QemuVirt, &parts, &mut buf).unwrap();
    let big = 15 * MB + 4096;
    let r = Config::parse(&buf[..n], BoardId::QemuVirt, &board(), &|_| Some(big));
    assert!(matches!(r, Err(ConfigError::DtbOverlapsImage { partition: 0 })), "{r:?}");
}

#[test]
fn duplicate_names_and_vmids_are_refused() {
    let mut p = two();
    p[1].name = p[0].name;
    assert!(matches!(check(&p), Err(ConfigError::DuplicateName { partition: 1, other: 0 })));
    let mut p = two();
    p[1].vmid = 1;
    assert!(matches!(check(&p), Err(ConfigError::DuplicateVmid { partition: 1, other: 0 })));
}

fn shared(pa: u64, ipa: u64, kind: RegionKind) -> MemRegion {
    MemRegion { pa, ipa, size: 0x10000, kind: kind as u32, param: 0, signal_partition: 0, signal_intid: 0 }
}

fn with_channel(a: RegionKind, b: RegionKind) -> [PartitionDesc; 2] {
    let mut p = two();
    p[0].regions[2] = shared(0x4F00_0000, 0x3000_0000, a);
    p[0].region_count = 3;
    p[1].regions[2] = shared(0x4F00_0000, 0x3000_0000, b);
    p[1].region_count = 3;
    p
}

/// CH-006: channel memory is shared only as writer + reader(s), never two writers,
/// never with anything else.
#[test]
fn channel_memory_is_shared_only_between_one_writer_and_readers() {
    use RegionKind::*;
    assert!(check(&with_channel(SharedRw, SharedRo)).is_ok());
    assert!(check(&with_channel(SharedRo, SharedRw)).is_ok());
    assert!(check(&with_channel(SharedRo, SharedRo)).is_ok());
    assert!(matches!(check(&with_channel(SharedRw, SharedRw)), Err(ConfigError::PhysicalOverlap { .. })));
    assert!(matches!(check(&with_channel(SharedRw, Ram)), Err(ConfigError::PhysicalOverlap { .. })));
    let mut p = with_channel(SharedRw, SharedRo);
    p[1].regions[2].size = 0x20000;
    assert!(matches!(check(&p), Err(ConfigError::PhysicalOverlap { .. })), "ends must be the same range");
    let mut p = with_channel(SharedRw, SharedRo);
    p[0].regions[2].pa = 0x5000_0000; // onto the partition's own RAM
    assert!(matches!(check(&p), Err(ConfigError::PhysicalOverlap { .. })));
}

/// MED-007: a sensor's memory is board RAM that no other region touches, read-only to
/// the one partition that has it; it carries no flags.
#[test]
fn sensor_memory_is_one_partitions_and_inside_ram() {
    let mut p = two();
    p[0].regions[2] = shared(0x4F00_0000, 0x3000_0000, RegionKind::Sensor);
    p[0].region_count = 3;
    assert!(check(&p).is_ok());
    let mut q = p;
    q[1].regions[2] = shared(0x4F00_0000, 0x3000_0000, RegionKind::SharedRo);
    q[1].region_count = 3;
    assert!(matches!(check(&q), Err(ConfigError::PhysicalOverlap { .. })), "shared with another partition");
    let mut q = p;
    q[0].regions[2].pa = 0x5000_0000;
    assert!(matches!(check(&q), Err(ConfigError::PhysicalOverlap { .. })), "over its own RAM");
    let mut q = p;
    q[0].regions[2].pa = 0x0800_0000;
    assert!(matches!(check(&q), Err(ConfigError::RamOutsideBoard { .. })));
    let mut q = p;
    q[0].regions[2].param = 1;
    assert!(matches!(check(&q), Err(ConfigError::BadDeviceFlags { .. })));
}

/// A doorbell page at IPA 0x3100_0000 that signals `peer` with INTID `intid`.
fn doorbell(param: u32, peer: u32, intid: u32) -> MemRegion {
    MemRegion {
        pa: 0,
        ipa: 0x3100_0000,
        size: 4096,
        kind: RegionKind::Doorbell as u32,
        param,
        signal_partition: peer,
        signal_intid: intid,
    }
}

#[test]
fn doorbells_are_not_memory_but_must_not_collide_in_guest_space() {
    let mut p = two();
    p[1].regions[2] = doorbell(0, 0, DOORBELL_INTIDS.start);
    p[1].region_count = 3;
    p[0].regions[2] = doorbell(0, 1, DOORBELL_INTIDS.start);
    p[0].region_count = 3;
    assert!(check(&p).is_ok());
    p[1].regions[2].ipa = 0x4000_0000;
    assert!(matches!(check(&p), Err(ConfigError::IpaOverlap { partition: 1, .. })));
}

/// CH-010: a doorbell signals another partition of the configuration, as a doorbell
/// INTID; nothing else names a signal.
#[test]
fn doorbells_signal_another_partition_with_a_doorbell_intid() {
    let mut p = two();
    p[0].regions[2] = doorbell(10, 1, DOORBELL_INTIDS.start + 3);
    p[0].region_count = 3;
    assert!(check(&p).is_ok());
    let bad = |edit: fn(&mut MemRegion)| {
        let mut q = p;
        edit(&mut q[0].regions[2]);
        matches!(check(&q), Err(ConfigError::BadSignal { partition: 0, region: 2 }))
    };
    assert!(bad(|r| r.signal_partition = 0), "itself");
    assert!(bad(|r| r.signal_partition = 2), "no such partition");
    assert!(bad(|r| r.signal_intid = 33), "a real SPI");
    assert!(bad(|r| r.signal_intid = DOORBELL_INTIDS.end), "a special INTID");
    let mut q = p;
    q[0].regions[0].signal_intid = DOORBELL_INTIDS.start;
    assert!(matches!(check(&q), Err(ConfigError::BadSignal { partition: 0, region: 0 })), "RAM names no signal");
}

/// The board above with a bus master of each kind: one behind the IOMMU (a PCIe host
/// bridge stand-in) and one nothing contains (an Ethernet controller stand-in).
fn board_with_bus_masters() -> BoardFacts {
    let mut b = board();
    let master = |base, dma| BoardDevice { dma, ..BoardDevice::new(Range::new(base, 0x1_0000), true) };
    b.devices.push(master(0x1000_0000, DeviceDma::Contained));
    b.devices.push(master(0x1100_0000, DeviceDma::Uncontained));
    b
}

fn check_on(parts: &[PartitionDesc], board: &BoardFacts) -> Result<(), ConfigError> {
    let mut buf = [0u8; encoded_len(MAX_PARTITIONS)];
    let n = encode(BoardId::QemuVirt, parts, &mut buf).unwrap();
    Config::parse(&buf[..n], BoardId::QemuVirt, board, &|_| Some(4096)).map(|_| ())
}

/// Gives partition `p` a device window at `base` with `flags`.
fn with_device(mut p: PartitionDesc, base: u64, flags: u32) -> PartitionDesc {
    let r = p.region_count as usize;
    p.regions[r] = MemRegion { param: flags, ..MemRegion::device(base, 0x1_0000) };
    p.region_count += 1;
    p
}

/// DMA-001, DMA-002: a bus master behind the IOMMU may be given; one nothing contains
/// only with the opt-out, and never to a critical partition; the flags name only what
/// the board has.
#[test]
fn bus_masters_need_an_iommu_or_the_opt_out() {
    use device_flags::{DMA_UNPROTECTED, PCI_ECAM};
    let b = board_with_bus_masters();
    let [crit, conn] = two();
    let mut crit_flag = crit;
    crit_flag.flags |= flags::CRITICAL;
    let range = Range::new(0x1100_0000, 0x1_0000);
    assert_eq!(check_on(&[crit, with_device(conn, 0x1000_0000, PCI_ECAM)], &b), Ok(()), "contained");
    assert_eq!(
        check_on(&[crit, with_device(conn, 0x1100_0000, 0)], &b),
        Err(ConfigError::BusMasterUncontained { partition: 1, region: 2, range })
    );
    assert_eq!(check_on(&[crit, with_device(conn, 0x1100_0000, DMA_UNPROTECTED)], &b), Ok(()), "opted out");
    assert_eq!(
        check_on(&[with_device(crit_flag, 0x1100_0000, DMA_UNPROTECTED), conn], &b),
        Err(ConfigError::UnprotectedDmaForCritical { partition: 0, region: 2, range })
    );
    assert_eq!(
        check_on(&[with_device(crit_flag, 0x1000_0000, DMA_UNPROTECTED), conn], &b),
        Err(ConfigError::UnprotectedDmaForCritical {
            partition: 0,
            region: 2,
            range: Range::new(0x1000_0000, 0x1_0000)
        }),
        "a critical partition never opts out, whatever the device"
    );
    let mut uart_flagged = conn;
    uart_flagged.regions[1].param = DMA_UNPROTECTED;
    assert_eq!(
        check_on(&[crit, uart_flagged], &b),
        Err(ConfigError::BadDeviceFlags { partition: 1, region: 1, range: Range::new(0x0904_0000, 0x1000) }),
        "an opt-out on a device that is no bus master"
    );
    assert_eq!(
        check_on(&[crit, with_device(conn, 0x1000_0000, 1 << 7)], &b),
        Err(ConfigError::BadDeviceFlags { partition: 1, region: 2, range: Range::new(0x1000_0000, 0x1_0000) }),
        "unknown flags"
    );
}

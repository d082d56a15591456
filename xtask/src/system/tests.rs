//! CFG-001: broken system descriptions are refused with messages that name the problem
//! and its line. Each file in `systems/broken/` states the message it must produce in
//! its first line (`# expect: :LINE: message`).

use super::*;

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

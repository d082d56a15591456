//! Links the hypervisor at its board's address. xtask says where with
//! `SEPTUM_RAM_BASE` (the first RAM range's base) and `SEPTUM_HV_BASE` (the link
//! address, 2 MiB aligned) and `SEPTUM_EL3_GIC400`; the default is QEMU virt's (and
//! the i.MX 8M Plus's).
use std::path::PathBuf;

fn main() {
    let linker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../linker");
    let var = |name: &str, default: &str| {
        println!("cargo:rerun-if-env-changed={name}");
        std::env::var(name).unwrap_or_else(|_| default.to_string())
    };
    let ram_base = var("SEPTUM_RAM_BASE", "0x40000000");
    let hv_base = var("SEPTUM_HV_BASE", "0x40200000");
    // A GIC-400 the EL3 entry makes non-secure (a board whose ELF boot starts at EL3
    // with a GICv2: the Raspberry Pi 4), or 0.
    let el3_gic400 = var("SEPTUM_EL3_GIC400", "0");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("hypervisor-board.ld");
    std::fs::write(
        &script,
        format!(
            "RAM_BASE = {ram_base};\nHV_BASE = {hv_base};\n__el3_gic400_base = {el3_gic400};\nINCLUDE hypervisor.ld\n"
        ),
    )
    .expect("OUT_DIR is writable");
    println!("cargo:rustc-link-arg-bins=-L{}", linker.display());
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed=../linker");
}

//! Links the hypervisor with its board's linker script.
fn main() {
    let linker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../linker");
    let board = "qemu-virt";
    println!("cargo:rustc-link-arg-bins=-L{}", linker.display());
    println!("cargo:rustc-link-arg-bins=-Thypervisor-{board}.ld");
    println!("cargo:rerun-if-changed=../linker");
}

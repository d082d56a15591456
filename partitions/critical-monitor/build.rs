//! Links the guest at the guest-physical base every partition sees its RAM at.
fn main() {
    let linker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../linker");
    println!("cargo:rustc-link-arg-bins=-T{}", linker.join("guest.ld").display());
    println!("cargo:rerun-if-changed=../../linker/guest.ld");
}

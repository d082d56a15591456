//! Building: the EL2 kernel and guests for bare-metal aarch64, then the boot bundle
//! (configuration, images, device trees) for one system description.

use std::path::{Path, PathBuf};
use std::process::Command;

use septum_abi::bundle::{self, EntryKind};

use crate::image::{self, LoadImage};
use crate::system::{self, ImageSource, System};

pub const GUEST_TARGET: &str = "aarch64-unknown-none";
/// EL2 code must not use the FP/SIMD registers, which hold the guest's state.
pub const HYPERVISOR_TARGET: &str = "aarch64-unknown-none-softfloat";

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where bare-metal builds go: apart from the host build, so a test running under
/// `cargo test` can build them without waiting on cargo's lock.
pub fn cross_target_dir() -> PathBuf {
    root().join("target").join("cross")
}

/// Everything needed to boot one system.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub system: System,
    pub dir: PathBuf,
    /// The hypervisor as an ELF (QEMU loads it at EL3) and as an arm64 `Image`.
    pub hypervisor_elf: PathBuf,
    pub hypervisor_image: PathBuf,
    pub bundle: PathBuf,
}

pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Builds the hypervisor and every guest crate, release profile.
pub fn compile() -> Result<(), String> {
    crate::prereq::rust_targets()?;
    let target_dir = cross_target_dir();
    run(cargo()
        .args(["build", "--release", "--quiet", "-p", "septum-hypervisor", "--target", HYPERVISOR_TARGET])
        .arg("--target-dir")
        .arg(&target_dir))?;
    let mut c = cargo();
    c.args(["build", "--release", "--quiet", "--target", GUEST_TARGET]).arg("--target-dir").arg(&target_dir);
    for g in system::GUESTS {
        c.args(["-p", g]);
    }
    run(&mut c)
}

fn elf_path(target: &str, name: &str) -> PathBuf {
    cross_target_dir().join(target).join("release").join(name)
}

/// Resolves a system name (`qemu-virt`) or path to its description file.
pub fn system_path(name: &str) -> PathBuf {
    let p = PathBuf::from(name);
    if p.extension().is_some_and(|e| e == "toml") {
        if p.is_absolute() {
            p
        } else {
            std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
        }
    } else {
        root().join("systems").join(format!("{name}.toml"))
    }
}

/// Checks a system description, compiles everything and writes its artifacts.
pub fn system(name: &str) -> Result<Artifacts, String> {
    let path = system_path(name);
    let mut sys = system::load(&path).map_err(join_errors)?;
    compile()?;
    pack(&mut sys)
}

pub fn join_errors(errs: Vec<system::SystemError>) -> String {
    errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join("\n")
}

/// Writes bundle and hypervisor images for an already compiled tree.
pub fn pack(sys: &mut System) -> Result<Artifacts, String> {
    let dir = root().join("target").join("septum").join(&sys.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut images: Vec<LoadImage> = Vec::new();
    for (i, p) in sys.partitions.clone().iter().enumerate() {
        let img = match &p.image {
            ImageSource::Guest(g) => {
                let path = elf_path(GUEST_TARGET, g);
                let elf = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                image::from_elf(&elf).map_err(|e| format!("{}: {e}", path.display()))?
            }
            ImageSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let load = p.desc.image_ipa;
                LoadImage { load, entry: load, bytes }
            }
        };
        sys.place_image(i, img.load, img.entry);
        images.push(img);
    }
    sys.check(&|i| images.get(i).map(|img| img.bytes.len() as u64)).map_err(|e| e.0)?;

    let config = sys.encode();
    let mut dtbs = Vec::new();
    for p in &sys.partitions {
        let dtb = crate::devicetree::generate(sys, p).map_err(|e| format!("device tree of {}: {e:?}", p.name))?;
        std::fs::write(dir.join(format!("{}.dtb", p.name)), &dtb).map_err(|e| e.to_string())?;
        dtbs.push(dtb);
    }
    let mut items: Vec<(EntryKind, u32, &[u8])> = vec![(EntryKind::Config, 0, &config)];
    for (i, img) in images.iter().enumerate() {
        items.push((EntryKind::Image, i as u32, &img.bytes));
        items.push((EntryKind::DeviceTree, i as u32, &dtbs[i]));
    }
    let capacity: usize = 4096 + items.iter().map(|(_, _, d)| d.len() + 16).sum::<usize>();
    let mut out = vec![0u8; capacity];
    let n = bundle::encode(&items, &mut out).ok_or("bundle does not fit")?;
    out.truncate(n);
    let bundle = dir.join("bundle.bin");
    std::fs::write(&bundle, &out).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.bin"), &config).map_err(|e| e.to_string())?;

    let hv_elf = elf_path(HYPERVISOR_TARGET, "septum");
    let elf = std::fs::read(&hv_elf).map_err(|e| format!("{}: {e}", hv_elf.display()))?;
    let img = image::from_elf(&elf)?;
    if img.load != sys.board.hypervisor_base || &img.bytes[56..60] != b"ARM\x64" {
        return Err(format!("{}: not an arm64 Image linked at {:#x}", hv_elf.display(), sys.board.hypervisor_base));
    }
    let hypervisor_image = dir.join("septum.bin");
    std::fs::write(&hypervisor_image, &img.bytes).map_err(|e| e.to_string())?;
    let hypervisor_elf = dir.join("septum.elf");
    std::fs::write(&hypervisor_elf, &elf).map_err(|e| e.to_string())?;
    Ok(Artifacts { system: sys.clone(), dir, hypervisor_elf, hypervisor_image, bundle })
}

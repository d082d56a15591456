//! Building: the EL2 kernel and guests for bare-metal aarch64, then the signed boot
//! bundle (root chain, configuration, images, device trees, manifests) for one system
//! description.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::{self, LoadImage};
use crate::system::{self, ImageSource, InitrdSource, System};
use crate::trust::{self, BundleParts, Keys};
use septum_platform::catalog::Board;

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
    /// The keys the bundle is signed with (and whose genesis root the hypervisor trusts),
    /// so a test can re-sign a tampered piece.
    pub keys: Keys,
}

/// How to sign a build.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A key directory (`cargo xtask keygen`); `None`: the development keys.
    pub keys: Option<PathBuf>,
    /// A production hypervisor refuses development-signed roots; building one refuses
    /// development keys.
    pub production: bool,
}

pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

/// Runs `cmd` with no input and its output captured; a failure says what it printed on
/// stderr.
pub fn run_captured(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(std::process::Stdio::null()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// The hypervisor's build-time trust settings, read with `option_env!` (cargo rebuilds
/// it when they change): the SHA-512 of the genesis root's body, in hex.
pub const ROOT_ANCHOR_ENV: &str = "SEPTUM_ROOT_ANCHOR";
/// `"1"` in production builds, absent otherwise.
pub const PRODUCTION_ENV: &str = "SEPTUM_PRODUCTION";

/// Where the hypervisor linked for `board` is built. The hypervisor is linked at its
/// board's address; boards sharing QEMU virt's build in the shared directory, others
/// in their own (so switching boards does not relink the others).
fn hypervisor_target_dir(board: &Board) -> PathBuf {
    if shares_virt_build(board) {
        cross_target_dir()
    } else {
        root().join("target").join(format!("cross-{}", board.name))
    }
}

/// The GIC-400 whose interrupts the EL3 entry makes non-secure: on boards with their
/// own link address and a GICv2 (the Raspberry Pi 4), its base (the distributor lies
/// at +0x1000). Boards sharing QEMU virt's build get 0: their EL3 entry is a GICv3's.
fn el3_gic400(board: &Board) -> u64 {
    if shares_virt_build(board) || board.gic.version != septum_platform::catalog::GicVersion::V2 {
        0
    } else {
        board.gic.distributor - septum_platform::gicv2::GIC400_DISTRIBUTOR_OFFSET
    }
}

/// Whether `board` is linked where QEMU virt is, and so shares its hypervisor build.
fn shares_virt_build(board: &Board) -> bool {
    board.hypervisor_base == septum_platform::qemu_virt::HYPERVISOR_BASE
}

/// The hypervisor ELF linked for `board`, once [`compile`] built it.
pub fn hypervisor_elf(board: &Board) -> PathBuf {
    hypervisor_target_dir(board).join(HYPERVISOR_TARGET).join("release").join("septum")
}

/// Builds the hypervisor for `board` (trusting `keys`' genesis root) and every guest
/// crate, release profile.
pub fn compile(board: &Board, keys: &Keys, production: bool) -> Result<(), String> {
    crate::prereq::rust_targets()?;
    let target_dir = cross_target_dir();
    let ram_base = board.ram.first().map_or(0, |r| r.base);
    let mut hv = cargo();
    hv.args(["build", "--release", "--quiet", "-p", "septum-hypervisor", "--target", HYPERVISOR_TARGET])
        .arg("--target-dir")
        .arg(hypervisor_target_dir(board))
        .env("SEPTUM_RAM_BASE", format!("{ram_base:#x}"))
        .env("SEPTUM_HV_BASE", format!("{:#x}", board.hypervisor_base))
        .env("SEPTUM_EL3_GIC400", format!("{:#x}", el3_gic400(board)))
        .env(ROOT_ANCHOR_ENV, trust::hex(&keys.anchor()));
    if production {
        hv.env(PRODUCTION_ENV, "1");
    } else {
        // Whatever the calling shell says: only `--production` makes a production build.
        hv.env_remove(PRODUCTION_ENV);
    }
    run(&mut hv)?;
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

/// Checks a system description, compiles everything and writes its artifacts, signed
/// with the development keys.
pub fn system(name: &str) -> Result<Artifacts, String> {
    system_with(name, &Options::default())
}

/// [`system`] with a choice of keys and production mode.
pub fn system_with(name: &str, opts: &Options) -> Result<Artifacts, String> {
    let path = system_path(name);
    let mut sys = system::load(&path).map_err(join_errors)?;
    // DMA-002: the description's opt-out, said at every build (and at every boot).
    for p in &sys.partitions {
        for dev in &p.unprotected {
            eprintln!(
                "xtask: WARNING {}: {}: device {dev} masters the bus with NO IOMMU containing it \
                 (dma = \"unprotected\"): it can read and write any memory, other partitions' included",
                path.display(),
                p.name
            );
        }
    }
    let keys = signing_keys(&sys, opts)?;
    compile(sys.board, &keys, opts.production)?;
    pack(&mut sys, &keys)
}

/// The keys `opts` asks for, refusing development keys for production.
pub fn signing_keys(sys: &System, opts: &Options) -> Result<Keys, String> {
    let keys = match &opts.keys {
        Some(dir) => trust::load_keys(dir, sys)?,
        None if opts.production => {
            return Err("production builds need real keys: give --keys DIR (made by `cargo xtask keygen`)".into())
        }
        None => trust::dev_keys(sys),
    };
    if opts.production && keys.development {
        let dir = opts.keys.as_deref().unwrap_or(Path::new("?")).display();
        return Err(format!(
            "{dir}: holds development keys (published seeds) or a DEVELOPMENT root; production builds need real keys"
        ));
    }
    Ok(keys)
}

/// Lays out partition `index`'s arm64 `Image` with its initrd, if it has one, and
/// records where the initrd went.
fn kernel(sys: &mut System, index: usize, bytes: &[u8], path: &Path) -> Result<LoadImage, String> {
    let p = &sys.partitions[index];
    let initrd = match &p.initrd {
        None => None,
        Some(InitrdSource::SeptumInitramfs) => {
            let agent = agent()?;
            let rd = crate::linux::initramfs(Some(&agent))?;
            Some(std::fs::read(&rd).map_err(|e| format!("{}: {e}", rd.display()))?)
        }
        Some(InitrdSource::File(rd)) => Some(std::fs::read(rd).map_err(|e| format!("{}: {e}", rd.display()))?),
    };
    let k = image::from_arm64_image(bytes, initrd.as_deref(), p.desc.image_ipa)
        .map_err(|e| format!("{}: {}: {e}", p.name, path.display()))?;
    sys.partitions[index].initrd_range = k.initrd;
    Ok(k.image)
}

/// The Linux-side channel agent, a static `aarch64-unknown-linux-musl` binary (linked
/// by rust-lld against rustup's self-contained musl).
pub const AGENT_TARGET: &str = "aarch64-unknown-linux-musl";
/// The C compiler for the agent's C and assembly dependencies (*ring*, for its TLS):
/// Debian's aarch64 cross gcc. *ring*'s C is freestanding (no libc headers), so a
/// glibc-targeting gcc makes objects the musl link takes.
pub const AGENT_CC: &str = "aarch64-linux-gnu-gcc";
pub const AGENT_AR: &str = "aarch64-linux-gnu-ar";

/// Gives a cargo command for [`AGENT_TARGET`] its C compiler (installed if missing).
pub fn agent_c_toolchain(c: &mut Command) -> Result<(), String> {
    crate::prereq::debian_tool(AGENT_CC, "gcc-aarch64-linux-gnu")?;
    c.env("CC_aarch64_unknown_linux_musl", AGENT_CC).env("AR_aarch64_unknown_linux_musl", AGENT_AR);
    Ok(())
}

pub fn agent() -> Result<PathBuf, String> {
    crate::prereq::rust_target(AGENT_TARGET)?;
    let mut c = cargo();
    agent_c_toolchain(&mut c)?;
    c.args(["build", "--release", "--quiet", "-p", "septum-agent", "--target", AGENT_TARGET])
        .arg("--target-dir")
        .arg(cross_target_dir())
        // Without symbols it is a twelfth of the size, and the initramfs is signed,
        // loaded and hashed at every boot.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols");
    run(&mut c)?;
    Ok(elf_path(AGENT_TARGET, "septum-agent"))
}

pub fn join_errors(errs: Vec<system::SystemError>) -> String {
    errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join("\n")
}

/// Writes the signed bundle and hypervisor images for an already compiled tree: in
/// `target/septum/<system>/`, `bundle.bin`, `septum.bin`, `septum.elf`, each
/// partition's `<name>.dtb` and `<name>.manifest`, `config.bin` (the configuration
/// body), `config.envelope`, the root chain `root-<n>.envelope` (n from 1: genesis) and
/// `root-anchor.hex`.
pub fn pack(sys: &mut System, keys: &Keys) -> Result<Artifacts, String> {
    let dir = root().join("target").join("septum").join(&sys.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut images: Vec<LoadImage> = Vec::new();
    for (i, p) in sys.partitions.clone().iter().enumerate() {
        let ram_ipa = p.desc.image_ipa;
        let img = match &p.image {
            ImageSource::Guest(g) => {
                let path = elf_path(GUEST_TARGET, g);
                let elf = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                image::from_elf(&elf).map_err(|e| format!("{}: {e}", path.display()))?
            }
            ImageSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                if image::is_arm64_image(&bytes) {
                    kernel(sys, i, &bytes, path)?
                } else {
                    LoadImage { load: ram_ipa, entry: ram_ipa, bytes }
                }
            }
            ImageSource::DebianLinux => {
                let k = crate::linux::debian_kernel()?;
                let bytes = std::fs::read(&k.image).map_err(|e| format!("{}: {e}", k.image.display()))?;
                kernel(sys, i, &bytes, &k.image)?
            }
        };
        if p.initrd.is_some() && !matches!(p.image, ImageSource::DebianLinux) && !image::is_arm64_image(&img.bytes) {
            return Err(format!("{}: an initrd needs an arm64 Image kernel as the image", p.name));
        }
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
    let image_bytes: Vec<&[u8]> = images.iter().map(|i| i.bytes.as_slice()).collect();
    let dtb_bytes: Vec<&[u8]> = dtbs.iter().map(Vec::as_slice).collect();
    let hashed: u64 = image_bytes.iter().chain(&dtb_bytes).map(|b| b.len() as u64).sum();
    let what = format!("{} images and {} device trees", image_bytes.len(), dtb_bytes.len());
    let step = crate::progress::Step::spinner(&format!("hashing and signing {}'s {what}", sys.name));
    let signed = trust::sign_system(keys, sys, &image_bytes, &dtb_bytes, &config)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    for (i, root) in signed.chain.iter().enumerate() {
        write(&format!("root-{}.envelope", i + 1), root)?;
    }
    // A longer chain of an earlier build must not look like part of this one.
    for n in signed.chain.len() + 1.. {
        if std::fs::remove_file(dir.join(format!("root-{n}.envelope"))).is_err() {
            break;
        }
    }
    write("root-anchor.hex", format!("{}\n", trust::hex(&keys.anchor())).as_bytes())?;
    write("config.bin", &config)?;
    write("config.envelope", &signed.config)?;
    for (p, m) in sys.partitions.iter().zip(&signed.manifests) {
        write(&format!("{}.manifest", p.name), m)?;
    }
    let parts = BundleParts {
        roots: signed.chain,
        config: signed.config,
        images: images.into_iter().map(|i| i.bytes).collect(),
        device_trees: dtbs,
        manifests: signed.manifests,
    };
    let bytes = parts.encode()?;
    // What the hypervisor will check at boot, checked now: a key directory whose roles
    // do not fit the system fails here, with a reason, rather than at boot.
    trust::verify_bundle(&bytes, &keys.anchor(), false).map_err(|e| format!("{}: signed bundle: {e}", sys.name))?;
    let took = step.elapsed();
    step.finish(&format!("signed and checked {}'s {what}: {}", sys.name, crate::progress::amount(hashed, took)));
    let bundle = dir.join("bundle.bin");
    write("bundle.bin", &bytes)?;

    let hv_elf = hypervisor_elf(sys.board);
    let elf = std::fs::read(&hv_elf).map_err(|e| format!("{}: {e}", hv_elf.display()))?;
    let img = image::from_elf(&elf)?;
    if img.load != sys.board.hypervisor_base || &img.bytes[56..60] != b"ARM\x64" {
        return Err(format!("{}: not an arm64 Image linked at {:#x}", hv_elf.display(), sys.board.hypervisor_base));
    }
    let hypervisor_image = dir.join("septum.bin");
    std::fs::write(&hypervisor_image, &img.bytes).map_err(|e| e.to_string())?;
    let hypervisor_elf = dir.join("septum.elf");
    std::fs::write(&hypervisor_elf, &elf).map_err(|e| e.to_string())?;
    Ok(Artifacts { system: sys.clone(), dir, hypervisor_elf, hypervisor_image, bundle, keys: keys.clone() })
}

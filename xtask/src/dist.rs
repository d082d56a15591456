//! `cargo xtask dist`: a folder ready to copy to a real board's boot partition.
//!
//! * `rpi4` (Raspberry Pi 4 Model B): the Raspberry Pi firmware boots from the FAT
//!   partition of the SD card: `start4.elf` and `fixup4.dat` (Debian's `raspi-firmware`,
//!   in the archive's `non-free-firmware` component), `config.txt`, the board's device
//!   tree (from Debian's arm64 kernel package), the hypervisor as `septum.img` and the
//!   signed bundle as `septum.bundle`, loaded as the initramfs.
//! * `imx8mp-evk` (NXP i.MX 8M Plus EVK): U-Boot loads `septum.img`, `septum.bundle` and
//!   `imx8mp-evk.dtb` from the boot partition with the script `boot.cmd` (compiled to
//!   `boot.scr` by `mkimage`, Debian's `u-boot-tools`).
//!
//! Every folder has a `README.txt`. The hypervisor runs where it is linked, so the
//! bootloader must load it at exactly the address its arm64 `Image` header implies: the
//! 2 MiB aligned start of RAM plus `text_offset` (checked against the board catalogue's
//! `hypervisor_base`). The board DTB and the bundle go to RAM the board catalogue
//! reserves, clear of the hypervisor's whole footprint (`image_size`, BSS and stacks
//! included) and of the DTB's `/memreserve/` entries; the bootloader then records the
//! bundle's place in `/chosen` (`linux,initrd-start`/`-end`), where the hypervisor finds it.
//!
//! Nothing here has been booted on real hardware yet: `docs/boards.md` says what is
//! known and what is not.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use septum_abi::config::Range;
use septum_platform::Board;

use crate::build::{self, Artifacts};
use crate::image::{ImageHeader, ARM64_ALIGN, FLAG_ANYWHERE};
use crate::linux;

/// The boards `dist` makes boot folders for, by their catalogue names.
pub const RPI4: &str = "rpi4";
pub const IMX8MP_EVK: &str = "imx8mp-evk";
pub const BOARDS: &[&str] = &[RPI4, IMX8MP_EVK];

/// File names in the folder.
pub const IMAGE_FILE: &str = "septum.img";
pub const BUNDLE_FILE: &str = "septum.bundle";
pub const README_FILE: &str = "README.txt";
pub const CONFIG_TXT: &str = "config.txt";
pub const BOOT_CMD: &str = "boot.cmd";
pub const BOOT_SCR: &str = "boot.scr";
/// Debian's copyright file of `raspi-firmware`, which carries the firmware's licence.
pub const FIRMWARE_LICENCE: &str = "LICENCE.raspi-firmware";

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// arm64 `Image`s are placed at a 2 MiB aligned base plus `text_offset`.
pub const IMAGE_ALIGN: u64 = ARM64_ALIGN;
/// Room after the board DTB for what the firmware or U-Boot adds to it in place
/// (`/chosen`, memory nodes; U-Boot pads by 12 KiB): generous, it is reserved RAM anyway.
const DTB_ROOM: u64 = MIB;

/// Each board's device tree in Debian's arm64 kernel package, under
/// `usr/lib/linux-image-<abi>/`.
const DTBS: &[(&str, &str)] = &[(RPI4, "broadcom/bcm2711-rpi-4-b.dtb"), (IMX8MP_EVK, "freescale/imx8mp-evk.dtb")];

/// Debian's package of the Raspberry Pi firmware (`Architecture: all`), and the files of
/// it a Pi 4 boots with: the GPU firmware and its matching fixup file. (A Pi 4 has no
/// `bootcode.bin`: its boot EEPROM does that stage.)
const RASPI_FIRMWARE: &str = "raspi-firmware";
const RASPI_FIRMWARE_DIR: &str = "usr/lib/raspi-firmware";
pub const PI4_FIRMWARE: &[&str] = &["start4.elf", "fixup4.dat"];
const RASPI_FIRMWARE_COPYRIGHT: &str = "usr/share/doc/raspi-firmware/copyright";

/// `raspi-firmware` is in Debian's `non-free-firmware` component; this file adds it to
/// apt's sources when they lack it.
pub const NON_FREE_FIRMWARE_LIST: &str = "/etc/apt/sources.list.d/septum-non-free-firmware.list";
const DEBIAN_URI: &str = "http://deb.debian.org/debian";
const DEBIAN_SUITE: &str = "bookworm";

/// Build a system for a real board (rpi4, imx8mp-evk) and write the folder to copy to
/// its boot partition
///
/// The system is built as `cargo xtask build` builds it, with the same signing options;
/// the board's device tree and firmware come from Debian's packages. See docs/boards.md.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Dist {
    /// The system to package: a name in systems/ or a path to a .toml
    #[arg(long, value_name = "NAME", value_parser = crate::args::system)]
    pub system: String,
    /// Where to write the folder [default: target/dist/NAME/]
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub signing: crate::args::Signing,
}

impl Dist {
    pub fn run(&self) -> Result<(), String> {
        let system = &self.system;
        let folder = dist(system, self.out.clone(), &self.signing.options())?;
        println!("{}: boot folder for {} in {}", system, folder.board, folder.dir.display());
        for f in &folder.files {
            println!("  {f}");
        }
        for n in &folder.notes {
            println!("note: {n}");
        }
        if folder.development_keys {
            println!("note: the bundle is signed with DEVELOPMENT keys (published seeds): for development only");
        }
        println!("see {} in that folder, and docs/boards.md", README_FILE);
        Ok(())
    }
}

/// Builds `system` (as `build::system_with` does) and writes its boot folder to `out`
/// (default `target/dist/<system>/`). Fails before building when the system's board is
/// not one `dist` knows.
pub fn dist(system: &str, out: Option<PathBuf>, opts: &build::Options) -> Result<Folder, String> {
    dist_built(system, out, opts).map(|(_, folder)| folder)
}

/// [`dist`], also returning what was built.
fn dist_built(system: &str, out: Option<PathBuf>, opts: &build::Options) -> Result<(Artifacts, Folder), String> {
    let sys = crate::system::load(&build::system_path(system)).map_err(build::join_errors)?;
    let board = supported(sys.board.name)?;
    // The downloads first: a missing apt source fails in seconds, not after a build.
    let inputs = Inputs::fetch(board)?;
    // The board's own device tree can refuse what the catalogue let through (memory its
    // firmware reserves): refuse it here, not at boot.
    sys.check_at_boot(&read(&inputs.dtb)?).map_err(|e| e.to_string())?;
    let art = build::system_with(system, opts)?;
    let out = out.unwrap_or_else(|| build::root().join("target").join("dist").join(&art.system.name));
    let folder = write_folder(&art, board, &out, &inputs)?;
    Ok((art, folder))
}

fn supported(board: &str) -> Result<&'static str, String> {
    BOARDS.iter().copied().find(|b| *b == board).ok_or_else(|| {
        format!(
            "board `{board}` has no boot folder: `dist` knows {} (QEMU boards run with `cargo xtask run`)",
            BOARDS.join(", ")
        )
    })
}

/// What a board's folder needs besides the build: Debian's device tree for the board
/// and, for the Pi, the firmware.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub dtb: PathBuf,
    pub firmware: Option<RaspiFirmware>,
}

impl Inputs {
    /// Fetches (or finds cached) what `board` needs.
    pub fn fetch(board: &str) -> Result<Self, String> {
        let dtb = board_dtb(board)?;
        let firmware = if board == RPI4 { Some(raspi_firmware()?) } else { None };
        Ok(Self { dtb, firmware })
    }
}

/// A written boot folder.
#[derive(Debug, Clone)]
pub struct Folder {
    pub dir: PathBuf,
    pub board: &'static str,
    /// The file names written, in order.
    pub files: Vec<String>,
    /// Where the bootloader must load the hypervisor.
    pub load_address: u64,
    pub header: ImageHeader,
    pub staging: Staging,
    /// Things the user should know (e.g. `boot.scr` could not be compiled).
    pub notes: Vec<String>,
    pub development_keys: bool,
}

/// Writes `board`'s boot folder for the built system `art` into `out` (created if need
/// be; files of other names already there are left alone). The layout depends on
/// `board`, not on the board `art` was built for, so a QEMU build can stand in for a
/// board's in tests; addresses come from `art`'s board catalogue and Image header.
pub fn write_folder(art: &Artifacts, board: &str, out: &Path, inputs: &Inputs) -> Result<Folder, String> {
    let board = supported(board)?;
    let image = read(&art.hypervisor_image)?;
    let header = boot_header(&image).map_err(|e| format!("{}: {e}", art.hypervisor_image.display()))?;
    let catalogue = art.system.board;
    let ram_base = catalogue.ram.iter().map(|r| r.base).min().ok_or("the board catalogue lists no RAM")?;
    let load_address = header.load_address(ram_base);
    if load_address != catalogue.hypervisor_base {
        return Err(format!(
            "{}: its header places it at {load_address:#x} (RAM base {ram_base:#x} + text_offset {:#x}), but the \
             {} catalogue links the hypervisor at {:#x}",
            art.hypervisor_image.display(),
            header.text_offset,
            catalogue.name,
            catalogue.hypervisor_base
        ));
    }
    let bundle = read(&art.bundle)?;
    let dtb = read(&inputs.dtb)?;
    let dtb_name = file_name(&inputs.dtb)?;
    let mut avoid = vec![header.footprint(load_address)];
    avoid.extend(memreserve(&dtb).map_err(|e| format!("{}: {e}", inputs.dtb.display()))?);
    let staging = staging(catalogue, &avoid, dtb.len() as u64, bundle.len() as u64)?;

    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), String> {
        let path = out.join(name);
        fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        files.push(name.to_string());
        Ok(())
    };
    put(IMAGE_FILE, &image)?;
    put(BUNDLE_FILE, &bundle)?;
    put(&dtb_name, &dtb)?;
    let layout = Layout { load_address, header, staging, dtb_name: dtb_name.clone() };
    let mut notes = Vec::new();
    let readme = match board {
        RPI4 => {
            let fw = inputs.firmware.as_ref().ok_or("the Raspberry Pi 4 folder needs the firmware files")?;
            for f in &fw.files {
                put(&file_name(f)?, &read(f)?)?;
            }
            put(FIRMWARE_LICENCE, &read(&fw.copyright)?)?;
            put(CONFIG_TXT, rpi4_config_txt(&layout).as_bytes())?;
            rpi4_readme(art, out, &layout, fw, &inputs.dtb)
        }
        _ => {
            let script = imx8mp_boot_cmd(&layout);
            put(BOOT_CMD, script.as_bytes())?;
            let compiled = ensure_mkimage().and_then(|()| compile_script(&out.join(BOOT_CMD), &out.join(BOOT_SCR)));
            match compiled {
                Ok(()) => files.push(BOOT_SCR.to_string()),
                Err(why) => {
                    // A stale boot.scr would run an older script.
                    let _ = fs::remove_file(out.join(BOOT_SCR));
                    notes.push(format!("{BOOT_SCR} not written ({why}); compile it with:\n{}", mkimage_command()));
                }
            }
            imx8mp_readme(art, out, &layout, &inputs.dtb, files.iter().any(|f| f == BOOT_SCR))
        }
    };
    let path = out.join(README_FILE);
    fs::write(&path, readme).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    files.push(README_FILE.to_string());
    Ok(Folder {
        dir: out.to_path_buf(),
        board,
        files,
        load_address,
        header,
        staging,
        notes,
        development_keys: art.keys.development,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn file_name(path: &Path) -> Result<String, String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no file name", path.display()))
}

// The arm64 Image header.

/// `flags` bit 0: big-endian kernel.
const FLAG_BE: u64 = 1;

/// The hypervisor Image's header, which a board's bootloader reads: an arm64 Image
/// ([`ImageHeader::parse`]) that is little-endian, as the hypervisor is built.
pub fn boot_header(bytes: &[u8]) -> Result<ImageHeader, String> {
    let h = ImageHeader::parse(bytes)?;
    if h.flags & FLAG_BE != 0 {
        return Err("a big-endian arm64 Image".into());
    }
    Ok(h)
}

// Where the board DTB and the bundle go.

/// Where the bootloader is told to put the board DTB (with room to grow) and the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staging {
    pub dtb: Range,
    pub bundle: Range,
}

/// Places the bundle and the DTB (`dtb_len` plus room to grow) in the board catalogue's
/// reserved RAM (which no partition may use), clear of `avoid` (the hypervisor's
/// footprint, the DTB's `/memreserve/` entries) and of each other: the bundle at the
/// catalogue's `default_bundle` when it fits there, the DTB at its `default_dtb`, else
/// right after the bundle (as QEMU stages them); failing those, at the lowest page that
/// fits.
pub fn staging(board: &Board, avoid: &[Range], dtb_len: u64, bundle_len: u64) -> Result<Staging, String> {
    let reserved: Vec<Range> = board.reserved.to_vec();
    let bundle_size = bundle_len.next_multiple_of(PAGE);
    let bundle = place(bundle_size, &[board.default_bundle], &reserved, avoid).ok_or_else(|| {
        format!(
            "no room for the bundle ({bundle_size:#x} bytes) in {}'s reserved RAM ({}) clear of {}",
            board.name,
            list(&reserved),
            list(avoid)
        )
    })?;
    let mut avoid = avoid.to_vec();
    avoid.push(Range::new(bundle, bundle_size));
    let dtb_size = (dtb_len + DTB_ROOM).next_multiple_of(PAGE);
    let after_bundle = bundle + bundle_size;
    let dtb = place(dtb_size, &[board.default_dtb, after_bundle], &reserved, &avoid).ok_or_else(|| {
        format!(
            "no room for the board DTB ({dtb_size:#x} bytes with room to grow) in {}'s reserved RAM ({}) clear of {}",
            board.name,
            list(&reserved),
            list(&avoid)
        )
    })?;
    Ok(Staging { dtb: Range::new(dtb, dtb_size), bundle: Range::new(bundle, bundle_len) })
}

fn list(ranges: &[Range]) -> String {
    let v: Vec<String> = ranges.iter().map(|r| format!("{:#x}..{:#x}", r.base, r.end())).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A place for `len` bytes inside one of `within` and overlapping none of `avoid`: the
/// first of `prefer` that fits, else the lowest page-aligned address that does.
fn place(len: u64, prefer: &[u64], within: &[Range], avoid: &[Range]) -> Option<u64> {
    let clear = |at: u64| avoid.iter().filter(|a| a.size > 0 && a.overlaps(&Range::new(at, len))).map(Range::end).max();
    let inside = |at: u64| at.checked_add(len).is_some() && within.iter().any(|r| r.contains(&Range::new(at, len)));
    if let Some(&at) = prefer.iter().find(|&&at| inside(at) && clear(at).is_none()) {
        return Some(at);
    }
    for r in within {
        let mut at = r.base.next_multiple_of(PAGE);
        while at.checked_add(len).is_some_and(|end| end <= r.end()) {
            match clear(at) {
                None => return Some(at),
                Some(end) => at = end.next_multiple_of(PAGE),
            }
        }
    }
    None
}

/// The `/memreserve/` entries of a flattened device tree (memory firmware keeps, e.g.
/// the Raspberry Pi's ARM stub and spin table).
pub fn memreserve(dtb: &[u8]) -> Result<Vec<Range>, String> {
    let be32 = |at: usize| dtb.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let be64 = |at: usize| {
        dtb.get(at..at + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        })
    };
    if be32(0) != Some(0xd00d_feed) {
        return Err("not a flattened device tree (no 0xd00dfeed magic)".into());
    }
    let mut at = be32(16).ok_or("truncated device tree header")? as usize;
    let mut out = Vec::new();
    loop {
        let (Some(base), Some(size)) = (be64(at), be64(at + 8)) else {
            return Err("unterminated /memreserve/ block".into());
        };
        if base == 0 && size == 0 {
            return Ok(out);
        }
        out.push(Range::new(base, size));
        at += 16;
    }
}

/// What the boot files are generated from.
struct Layout {
    load_address: u64,
    header: ImageHeader,
    staging: Staging,
    dtb_name: String,
}

// Raspberry Pi 4.

/// The firmware's `config.txt`. Every option here is in Raspberry Pi's documentation
/// (config.txt "Boot options" and the device-tree page); lines stay under 80 characters.
fn rpi4_config_txt(l: &Layout) -> String {
    let Layout { load_address, staging, dtb_name, .. } = l;
    format!(
        "\
# Septum on the Raspberry Pi 4 Model B: read by the Pi's firmware
# (start4.elf) from this FAT partition. Written by `cargo xtask dist`;
# see README.txt. Comments must start a line.

# Start the ARM cores in AArch64 state: the hypervisor is an arm64 Image.
arm_64bit=1

# The file the firmware loads as the kernel: Septum's hypervisor.
kernel={IMAGE_FILE}

# Where to load it: the address it is linked at and runs from (it does not
# relocate itself), RAM base + the Image header's text_offset.
kernel_address={load_address:#x}

# The signed boot bundle, loaded as the initramfs. The firmware records where
# it put it in /chosen (linux,initrd-start and -end) of the device tree it
# passes: that is how the hypervisor finds the bundle. An explicit address
# (RAM the board catalogue reserves, clear of the hypervisor) rather than
# `followkernel`, whose placement the firmware chooses.
initramfs {BUNDLE_FILE} {bundle:#x}

# The device tree to pass (Debian's for the Pi 4; the firmware would pick a
# file of this name itself), and where to put it: reserved RAM again, with
# room for what the firmware adds to it.
device_tree={dtb_name}
device_tree_address={dtb:#x}
device_tree_end={dtb_end:#x}

# Enable the primary UART on GPIO 14/15 (header pins 8 and 10). On a Pi 4 that
# is the mini UART (the PL011 serves Bluetooth); this also fixes the VPU core
# clock, which the mini UART's baud rate is derived from.
enable_uart=1

# Deliver interrupts through the GIC-400, which Septum drives (the Pi 4's
# default; stated so that nothing else can change it).
enable_gic=1
",
        bundle = staging.bundle.base,
        dtb = staging.dtb.base,
        dtb_end = staging.dtb.end(),
    )
}

fn rpi4_readme(art: &Artifacts, out: &Path, l: &Layout, fw: &RaspiFirmware, dtb: &Path) -> String {
    let dtb_from = dtb_source(dtb);
    format!(
        "\
Septum for the Raspberry Pi 4 Model B: boot folder for system `{system}`
=========================================================================

Nothing in this folder has been booted on a real Raspberry Pi 4 yet.
{keys}
Files (copy all of them to the FAT boot partition, at its top level)
  {IMAGE_FILE:<24}the Septum hypervisor (an arm64 Image, at {load:#x})
  {BUNDLE_FILE:<24}the signed boot bundle: root chain, configuration,
  {blank:<24}partition images, device trees and manifests
  {CONFIG_TXT:<24}the firmware's configuration, every line explained
  {fw_files:<24}the Pi 4's GPU firmware, from Debian's
  {blank:<24}{RASPI_FIRMWARE} {fw_version}
  {FIRMWARE_LICENCE:<24}its licence (the package's copyright file)
  {dtb_name:<24}the board's device tree, from
  {blank:<24}{dtb_from}
  {README_FILE:<24}this file

Steps
  1. Take a micro-SD card with an MBR partition table whose first partition is
     FAT32, e.g. (as root; /dev/sdX is the card, and is erased):
       printf 'type=c\\n' | sfdisk /dev/sdX && mkfs.vfat -F 32 /dev/sdX1
  2. Mount that partition and copy every file here to it, e.g.
       cp {dir}/* /media/$USER/<partition>/
     then unmount it.
  3. Connect a 3.3 V USB serial adapter to the 40-pin header: its GND to pin 6,
     its RX to pin 8 (GPIO 14, the Pi's TX), its TX to pin 10 (GPIO 15, RX);
     115200 baud, 8N1. Never 5 V. Which UART drives those pins, and what the
     hypervisor prints: docs/boards.md.
  4. Insert the card and power the Pi. The firmware reads config.txt, loads the
     files and starts the hypervisor at {load:#x}.

Memory the bootloader is told to use
  hypervisor   {hv}  (image_size {image_size:#x}, with BSS, stacks)
  device tree  {dtb_range}  (with room to grow)
  bundle       {bundle_range}
The bundle's checks can be repeated offline: cargo xtask inspect {BUNDLE_FILE}
",
        system = art.system.name,
        keys = keys_note(art),
        load = l.load_address,
        blank = "",
        fw_files = PI4_FIRMWARE.join(", "),
        fw_version = fw.version,
        dtb_name = l.dtb_name,
        dir = out.display(),
        hv = range(l.header.footprint(l.load_address)),
        image_size = l.header.image_size,
        dtb_range = range(l.staging.dtb),
        bundle_range = range(l.staging.bundle),
    )
}

fn range(r: Range) -> String {
    format!("{:#010x}..{:#010x}", r.base, r.end())
}

fn keys_note(art: &Artifacts) -> &'static str {
    if art.keys.development {
        "The bundle is signed with the DEVELOPMENT keys (published seeds): for\ndevelopment only.\n"
    } else {
        ""
    }
}

fn dtb_source(dtb: &Path) -> String {
    match dtb.parent().map(|d| d.join(DTBS_RECORD)).and_then(|r| linux::read_record(&r)) {
        Some((package, version)) => format!("Debian's {package} {version}"),
        None => format!("{}", dtb.display()),
    }
}

// NXP i.MX 8M Plus EVK.

/// The U-Boot script. The hypervisor goes straight to its link address: `booti` would
/// move it there anyway (the header's flags leave bit 3 clear, so `booti` relocates the
/// Image to the 2 MiB aligned start of RAM plus `text_offset`).
fn imx8mp_boot_cmd(l: &Layout) -> String {
    let Layout { load_address, header, staging, dtb_name } = l;
    let moved = if header.flags & FLAG_ANYWHERE == 0 {
        "booti would move it\n# there anyway: its header's flags leave bit 3 clear, so booti relocates it\n\
         # to the 2 MiB aligned start of RAM + text_offset, which is that address"
    } else {
        "Its header's flags\n# say it may run anywhere, but it is linked to run exactly there"
    };
    format!(
        "\
# Septum on the NXP i.MX 8M Plus EVK: a U-Boot script, written by
# `cargo xtask dist` (see README.txt). Compile it with
#   {mkimage}
# and run it from the U-Boot prompt, with the files on partition 1 of the
# card in mmc device 1 (the micro-SD slot):
#   setenv devnum 1; load mmc ${{devnum}}:1 ${{loadaddr}} {BOOT_SCR}
#   source ${{loadaddr}}
# (`source` copies a script before running it, so the loads below may
# overwrite it.) NXP's U-Boot environment also has a command that loads and
# runs {BOOT_SCR} from the boot partition (bsp_bootcmd, bsp_script).

# The hypervisor runs where it is linked, {load_address:#x}. {moved}.
setenv kernel_addr_r {load_address:#x}
# The board DTB and the bundle: RAM the board catalogue reserves (no partition
# uses it), clear of the hypervisor's {image_size:#x} bytes and of each other.
setenv fdt_addr_r {dtb:#x}
setenv ramdisk_addr_r {bundle:#x}
# Leave both where they are loaded: otherwise U-Boot copies them high in RAM,
# which a partition may own.
setenv fdt_high 0xffffffffffffffff
setenv initrd_high 0xffffffffffffffff

# distro boot sets devnum; NXP's own boot command uses mmcdev.
if test -z \"${{devnum}}\"; then setenv devnum ${{mmcdev}}; fi
load mmc ${{devnum}}:1 ${{kernel_addr_r}} {IMAGE_FILE}
load mmc ${{devnum}}:1 ${{fdt_addr_r}} {dtb_name}
# Last, so that ${{filesize}} is the bundle's size.
load mmc ${{devnum}}:1 ${{ramdisk_addr_r}} {BUNDLE_FILE}
# U-Boot records the bundle in /chosen (linux,initrd-start and -end): that is
# how the hypervisor finds it.
booti ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{filesize}} ${{fdt_addr_r}}
",
        mkimage = mkimage_command(),
        image_size = header.image_size,
        dtb = staging.dtb.base,
        bundle = staging.bundle.base,
    )
}

/// `mkimage`'s arguments before the input and output files: a U-Boot script image.
const MKIMAGE_ARGS: [&str; 11] = ["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "septum", "-d"];

/// The command that compiles the script by hand, as run by `compile_script`.
fn mkimage_command() -> String {
    format!("mkimage {} {BOOT_CMD} {BOOT_SCR}", MKIMAGE_ARGS.join(" "))
}

fn imx8mp_readme(art: &Artifacts, out: &Path, l: &Layout, dtb: &Path, scr: bool) -> String {
    let scr_line = if scr {
        format!("  {BOOT_SCR:<24}the same, compiled for U-Boot's `source` by mkimage\n")
    } else {
        format!(
            "  ({BOOT_SCR} is missing: mkimage was not available; compile it with\n   \
             cd <this folder> && {})\n",
            mkimage_command()
        )
    };
    format!(
        "\
Septum for the NXP i.MX 8M Plus EVK: boot folder for system `{system}`
======================================================================

Nothing in this folder has been booted on a real i.MX 8M Plus EVK yet.
{keys}
Files (copy all of them to the FAT boot partition, at its top level)
  {IMAGE_FILE:<24}the Septum hypervisor (an arm64 Image, at {load:#x})
  {BUNDLE_FILE:<24}the signed boot bundle: root chain, configuration,
  {blank:<24}partition images, device trees and manifests
  {dtb_name:<24}the board's device tree, from
  {blank:<24}{dtb_from}
  {BOOT_CMD:<24}the U-Boot script that loads and starts them
{scr_line}  {README_FILE:<24}this file

Steps
  1. The EVK boots U-Boot first (from eMMC, or from the micro-SD card with
     flash.bin written at 32 KiB: U-Boot's doc/board/nxp/imx8mp_evk.rst).
  2. Copy every file here to the first (FAT) partition of a micro-SD card,
     e.g. cp {dir}/* /media/$USER/<partition>/
     and unmount it.
  3. Connect the EVK's USB debug port to your computer: U-Boot's console is
     one of the serial ports it shows (U-Boot's documentation names the third,
     /dev/ttyUSB2), 115200 baud 8N1.
  4. Power on and stop autoboot with a key, then:
       setenv devnum 1; load mmc ${{devnum}}:1 ${{loadaddr}} {BOOT_SCR}
       source ${{loadaddr}}
     (mmc device 1 is the micro-SD slot in NXP's and U-Boot's environment;
     `mmc list` shows the devices.) NXP's U-Boot environment also has a
     command that loads and runs {BOOT_SCR} from the boot partition
     (`run bsp_bootcmd`).

Memory the bootloader is told to use
  hypervisor   {hv}  (image_size {image_size:#x}, with BSS, stacks)
  device tree  {dtb_range}  (with room to grow)
  bundle       {bundle_range}
U-Boot's booti moves an Image to the 2 MiB aligned start of RAM + text_offset
unless its header's flags set bit 3; the script loads it there directly
(kernel_addr_r {load:#x}).
The bundle's checks can be repeated offline: cargo xtask inspect {BUNDLE_FILE}
",
        system = art.system.name,
        keys = keys_note(art),
        load = l.load_address,
        blank = "",
        dtb_name = l.dtb_name,
        dtb_from = dtb_source(dtb),
        dir = out.display(),
        hv = range(l.header.footprint(l.load_address)),
        image_size = l.header.image_size,
        dtb_range = range(l.staging.dtb),
        bundle_range = range(l.staging.bundle),
    )
}

/// Makes sure `mkimage` runs, installing Debian's `u-boot-tools` as root.
fn ensure_mkimage() -> Result<(), String> {
    let works = || Command::new("mkimage").arg("-V").output().is_ok_and(|o| o.status.success());
    if works() {
        return Ok(());
    }
    let _one = one_at_a_time();
    if works() {
        return Ok(());
    }
    if !linux::is_root() {
        return Err("mkimage is not installed; as root: apt-get install -y u-boot-tools".into());
    }
    eprintln!("xtask: installing u-boot-tools (mkimage)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "u-boot-tools"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        // The lists may predate the current version.
        let _ = Command::new("apt-get").args(["update", "-qq"]).stdin(Stdio::null()).status();
        install();
    }
    if works() {
        Ok(())
    } else {
        Err("installing u-boot-tools failed; run: apt-get update && apt-get install -y u-boot-tools".into())
    }
}

fn compile_script(cmd: &Path, scr: &Path) -> Result<(), String> {
    build::run_captured(Command::new("mkimage").args(MKIMAGE_ARGS).arg(cmd).arg(scr))
}

/// Downloads, extractions into the shared caches and apt changes, one at a time in
/// this process (the scratch directories are per process; apt takes one lock).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// Debian's board device trees.

/// Where board DTBs are cached, with `dtbs.version` (`package version`).
pub fn dtbs_dir() -> PathBuf {
    linux::dir().join("dtbs")
}
const DTBS_RECORD: &str = "dtbs.version";

/// The file name of `board`'s device tree in Debian's kernel package, e.g.
/// `bcm2711-rpi-4-b.dtb` for `rpi4`.
pub fn dtb_file_name(board: &str) -> Option<&'static str> {
    DTBS.iter().find(|(b, _)| *b == board).map(|(_, m)| m.rsplit('/').next().unwrap_or(m))
}

/// Debian's device tree for `board_name` (`rpi4`, `imx8mp-evk`), from the arm64 kernel
/// package `linux.rs` takes the kernel from (the recorded one, else the current ABI):
/// fetched once, with every other board's, into `target/linux/dtbs/`; when cached, this
/// only checks two files exist. Prints `xtask: board device trees from <package>
/// <version> (fetched)` to stderr when it downloads.
pub fn board_dtb(board_name: &str) -> Result<PathBuf, String> {
    let name = dtb_file_name(board_name).ok_or_else(|| {
        let known: Vec<&str> = DTBS.iter().map(|(b, _)| *b).collect();
        format!("no Debian device tree is known for board `{board_name}` (known: {})", known.join(", "))
    })?;
    let dir = dtbs_dir();
    let path = dir.join(name);
    let cached = || path.is_file() && linux::read_record(&dir.join(DTBS_RECORD)).is_some();
    if cached() {
        return Ok(path);
    }
    let _one = one_at_a_time();
    if cached() {
        return Ok(path);
    }
    fetch_dtbs(&dir)?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} missing after fetching the board device trees", path.display()))
    }
}

fn fetch_dtbs(dir: &Path) -> Result<(), String> {
    linux::ensure_arm64()?;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let recorded = linux::read_record(&linux::dir().join("kernel.version")).map(|(p, _)| p);
    let scratch = dir.join(format!("deb-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let result = (|| {
        let download = |p: &str| linux::apt_download(p, &scratch);
        // The package of the cached kernel first: its device trees match it. It leaves
        // the archive when Debian moves to a new kernel ABI.
        let (package, deb) = match recorded.map(|p| (download(&p), p)) {
            Some((Ok(deb), p)) => (p, deb),
            _ => {
                let p = linux::kernel_package()?;
                (p.clone(), download(&p)?)
            }
        };
        let version = linux::deb_field(&deb, "Version")?;
        let abi = package.strip_suffix("-unsigned").unwrap_or(&package);
        for (_, member) in DTBS {
            let got = linux::extract(&deb, &format!("usr/lib/{abi}/{member}"), &scratch.join("root"))?;
            memreserve(&read(&got)?).map_err(|e| format!("{} in {package}: {e}", got.display()))?;
            let name = member.rsplit('/').next().unwrap_or(member);
            fs::rename(&got, dir.join(name)).map_err(|e| format!("cannot move {}: {e}", got.display()))?;
        }
        linux::write_record(&dir.join(DTBS_RECORD), &package, &version)?;
        eprintln!("xtask: board device trees from {package} {version} (fetched)");
        Ok(())
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

// Debian's Raspberry Pi firmware.

/// The Pi 4's firmware files, extracted from Debian's `raspi-firmware`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaspiFirmware {
    /// [`PI4_FIRMWARE`], in that order.
    pub files: Vec<PathBuf>,
    /// Debian's copyright file of the package (the firmware's licence).
    pub copyright: PathBuf,
    pub version: String,
}

/// Where the firmware is cached, with `version` (`package version`).
pub fn firmware_dir() -> PathBuf {
    build::root().join("target").join("firmware").join(RASPI_FIRMWARE)
}

/// Fetches (once; cached in `target/firmware/raspi-firmware/`) the Pi 4 firmware from
/// Debian's `raspi-firmware`, adding the `non-free-firmware` component to apt's sources
/// first when they lack it (as root; otherwise the error says what to run).
pub fn raspi_firmware() -> Result<RaspiFirmware, String> {
    let dir = firmware_dir();
    let record = dir.join("version");
    let files: Vec<PathBuf> = PI4_FIRMWARE.iter().map(|f| dir.join(f)).collect();
    let copyright = dir.join("copyright");
    let cached = || match linux::read_record(&record) {
        Some((_, version)) if files.iter().chain([&copyright]).all(|f| f.is_file()) => Some(version),
        _ => None,
    };
    if let Some(version) = cached() {
        return Ok(RaspiFirmware { files, copyright, version });
    }
    let _one = one_at_a_time();
    if let Some(version) = cached() {
        return Ok(RaspiFirmware { files, copyright, version });
    }
    ensure_non_free_firmware()?;
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let scratch = dir.join(format!("deb-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let result = (|| -> Result<String, String> {
        // `Architecture: all`: apt knows no `raspi-firmware:arm64`.
        let deb = linux::apt_download_spec(RASPI_FIRMWARE, RASPI_FIRMWARE, &scratch)?;
        let version = linux::deb_field(&deb, "Version")?;
        let members = PI4_FIRMWARE.iter().map(|f| format!("{RASPI_FIRMWARE_DIR}/{f}"));
        for (member, dest) in
            members.chain([RASPI_FIRMWARE_COPYRIGHT.to_string()]).zip(files.iter().chain([&copyright]))
        {
            let got = linux::extract(&deb, &member, &scratch.join("root"))?;
            fs::rename(&got, dest).map_err(|e| format!("cannot move {}: {e}", got.display()))?;
        }
        linux::write_record(&record, RASPI_FIRMWARE, &version)?;
        eprintln!("xtask: {RASPI_FIRMWARE} {version} (fetched)");
        Ok(version)
    })();
    let _ = fs::remove_dir_all(&scratch);
    Ok(RaspiFirmware { files, copyright, version: result? })
}

fn apt_knows(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["show", "--no-all-versions", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// Makes apt know `raspi-firmware`: as root, adds [`NON_FREE_FIRMWARE_LIST`] (with the
/// `signed-by` the machine's other entries for the Debian archive use: apt refuses
/// conflicting values) and runs `apt-get update`; otherwise says what to run.
pub fn ensure_non_free_firmware() -> Result<(), String> {
    if apt_knows(RASPI_FIRMWARE) {
        return Ok(());
    }
    let line = non_free_firmware_line(&apt_sources());
    let commands = format!("echo '{line}' > {NON_FREE_FIRMWARE_LIST}\napt-get update");
    if !linux::is_root() {
        return Err(format!(
            "Debian's {RASPI_FIRMWARE} (the Raspberry Pi firmware) is in the archive's non-free-firmware \
             component, which apt's sources here do not list; run as root (or with sudo):\n{commands}"
        ));
    }
    let list = Path::new(NON_FREE_FIRMWARE_LIST);
    let ours = fs::read_to_string(list).is_ok_and(|t| t.trim() == line);
    if !ours {
        eprintln!("xtask: adding Debian's non-free-firmware component to apt's sources ({NON_FREE_FIRMWARE_LIST})");
        fs::write(list, format!("{line}\n")).map_err(|e| format!("{NON_FREE_FIRMWARE_LIST}: {e}"))?;
    }
    eprintln!("xtask: apt-get update");
    if let Err(e) = build::run_captured(Command::new("apt-get").args(["update", "-qq"])) {
        // Never leave apt broken by a line of ours.
        if !ours {
            let _ = fs::remove_file(list);
        }
        return Err(format!("with {NON_FREE_FIRMWARE_LIST}: {e}\nthe commands were:\n{commands}"));
    }
    if apt_knows(RASPI_FIRMWARE) {
        Ok(())
    } else {
        Err(format!(
            "apt still knows no {RASPI_FIRMWARE} after adding non-free-firmware; the commands were:\n{commands}"
        ))
    }
}

/// Every apt source file but ours: (file name, text).
fn apt_sources() -> Vec<(String, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files
        .into_iter()
        .filter(|p| p != Path::new(NON_FREE_FIRMWARE_LIST))
        .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
        .filter_map(|p| Some((p.to_string_lossy().into_owned(), fs::read_to_string(&p).ok()?)))
        .collect()
}

/// The one-line apt source for `non-free-firmware`, with the `signed-by` option the
/// other entries for the Debian archive's suite use, if any.
fn non_free_firmware_line(sources: &[(String, String)]) -> String {
    match debian_signed_by(sources) {
        Some(key) => format!("deb [signed-by={key}] {DEBIAN_URI} {DEBIAN_SUITE} non-free-firmware"),
        None => format!("deb {DEBIAN_URI} {DEBIAN_SUITE} non-free-firmware"),
    }
}

fn is_debian_uri(uri: &str) -> bool {
    let u = uri.trim_end_matches('/');
    u == DEBIAN_URI || u == "https://deb.debian.org/debian"
}

/// The `Signed-By` (a keyring path) of an enabled entry for the Debian archive's
/// suite, in one-line (`.list`) or deb822 (`.sources`) form.
fn debian_signed_by(sources: &[(String, String)]) -> Option<String> {
    for (name, text) in sources {
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |key: &str| {
                    stanza.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim().eq_ignore_ascii_case(key).then(|| v.trim().to_string())
                    })
                };
                let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
                let ours = field("URIs").is_some_and(|u| u.split_whitespace().any(is_debian_uri))
                    && field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == DEBIAN_SUITE));
                if let (true, true, Some(key)) = (enabled, ours, field("Signed-By")) {
                    // An inline key (a multi-line value) cannot be repeated on one line.
                    if !key.is_empty() && !key.contains("BEGIN PGP") {
                        return Some(key);
                    }
                }
            }
        } else {
            for line in text.lines().map(str::trim) {
                let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else { continue };
                let rest = rest.trim_start();
                let (options, rest) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
                    Some((o, r)) => (o, r),
                    None => ("", rest),
                };
                let mut words = rest.split_whitespace();
                let (Some(uri), Some(suite)) = (words.next(), words.next()) else { continue };
                if is_debian_uri(uri) && suite == DEBIAN_SUITE {
                    let key = options.split_whitespace().find_map(|o| o.strip_prefix("signed-by="));
                    if let Some(key) = key {
                        return Some(key.to_string());
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    use object::{Object, ObjectSymbol};

    use super::*;

    fn scratch(what: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("septum-dist-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fake_image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut k = vec![0x5Au8; len];
        k[8..16].copy_from_slice(&text_offset.to_le_bytes());
        k[16..24].copy_from_slice(&image_size.to_le_bytes());
        k[24..32].copy_from_slice(&2u64.to_le_bytes());
        k[56..60].copy_from_slice(b"ARM\x64");
        k
    }

    #[test]
    fn image_header_parses_and_refuses() {
        let h = ImageHeader::parse(&fake_image(0x8_0000, 0x40_0000, 0x1000)).unwrap();
        assert_eq!(h, ImageHeader { text_offset: 0x8_0000, image_size: 0x40_0000, flags: 2 });
        assert!(ImageHeader::parse(&[0u8; 64]).unwrap_err().contains("magic"));
        assert!(ImageHeader::parse(&fake_image(0, 0, 0x100)).unwrap_err().contains("image_size"));
        assert!(ImageHeader::parse(&fake_image(0, 0x80, 0x100)).unwrap_err().contains("smaller"));
        let mut be = fake_image(0, 0x1000, 0x100);
        be[24] = 1;
        assert!(boot_header(&be).unwrap_err().contains("big-endian"));
        assert!(ImageHeader::parse(&be).is_ok(), "a partition kernel may be big-endian");
        assert!(ImageHeader::parse(&be[..40]).is_err(), "a truncated header");
    }

    #[test]
    fn the_load_address_is_the_aligned_ram_base_plus_text_offset() {
        let h = ImageHeader { text_offset: 0x20_0000, image_size: 0x20_0000, flags: 2 };
        // The Pi 4's RAM starts at 0; the EVK's and QEMU virt's at 1 GiB.
        assert_eq!(h.load_address(0), 0x20_0000);
        assert_eq!(h.load_address(0x4000_0000), 0x4020_0000);
        // A base that is not 2 MiB aligned: booti rounds it up.
        assert_eq!(h.load_address(0x4000_1000), 0x4040_0000);
        assert_eq!(h.footprint(0x20_0000), Range::new(0x20_0000, 0x20_0000));
    }

    #[test]
    fn placement_prefers_the_catalogue_and_avoids_what_it_must() {
        let within = [Range::new(0, 64 * MIB), Range::new(128 * MIB, 128 * MIB)];
        let hv = Range::new(2 * MIB, 2 * MIB);
        assert_eq!(place(MIB, &[128 * MIB], &within, &[hv]), Some(128 * MIB), "the preferred place fits");
        assert_eq!(place(MIB, &[2 * MIB, 130 * MIB], &within, &[hv]), Some(130 * MIB), "the second preference");
        // Preferred on the hypervisor: the first page that is clear instead.
        assert_eq!(place(MIB, &[2 * MIB], &within, &[Range::new(0, 0x1000), hv]), Some(0x1000));
        assert_eq!(place(2 * MIB, &[0], &within, &[Range::new(0, 0x1000), hv]), Some(4 * MIB));
        // Outside reserved RAM is never chosen, even when preferred.
        assert_eq!(place(MIB, &[80 * MIB], &within, &[]), Some(0));
        assert_eq!(place(MIB, &[63 * MIB + 1], &within, &[]), Some(0), "straddles the end of a range");
        assert_eq!(place(200 * MIB, &[0], &within, &[]), None, "too large for any reserved range");
        assert_eq!(place(MIB, &[0], &[], &[]), None);
        assert_eq!(place(u64::MAX, &[0], &within, &[]), None);
        // Zero-sized entries avoid nothing.
        assert_eq!(place(MIB, &[0], &within, &[Range::new(0, 0)]), Some(0));
    }

    #[test]
    fn memreserve_entries_are_read() {
        let reserve = [
            vm_fdt::FdtReserveEntry::new(0, 0x1000).unwrap(),
            vm_fdt::FdtReserveEntry::new(0x10_0000, 0x2000).unwrap(),
        ];
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&reserve).unwrap();
        let root = w.begin_node("").unwrap();
        w.end_node(root).unwrap();
        let dtb = w.finish().unwrap();
        assert_eq!(memreserve(&dtb).unwrap(), [Range::new(0, 0x1000), Range::new(0x10_0000, 0x2000)]);
        assert!(memreserve(b"not a device tree").is_err());
        assert!(memreserve(&dtb[..44]).is_err(), "truncated");
    }

    #[test]
    fn the_new_source_repeats_the_signed_by_apt_already_uses() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\
                      Components: main\nSigned-By: /other.gpg\n";
        let sources = [("/etc/apt/sources.list.d/debian.sources".to_string(), deb822.to_string())];
        assert_eq!(
            non_free_firmware_line(&sources),
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm \
             non-free-firmware"
        );
        let one_line = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian/ bookworm main\n";
        let sources = [("/etc/apt/sources.list".to_string(), one_line.to_string())];
        assert_eq!(
            non_free_firmware_line(&sources),
            "deb [signed-by=/k.gpg] http://deb.debian.org/debian bookworm non-free-firmware"
        );
        // Without Signed-By (or only for other suites), none: the line apt's manual gives.
        let plain = [
            ("/etc/apt/sources.list".to_string(), "deb http://deb.debian.org/debian bookworm main\n".to_string()),
            (
                "/etc/apt/sources.list.d/backports.list".to_string(),
                "deb [signed-by=/x.gpg] http://deb.debian.org/debian bookworm-backports main\n".to_string(),
            ),
        ];
        assert_eq!(non_free_firmware_line(&plain), "deb http://deb.debian.org/debian bookworm non-free-firmware");
        let disabled = deb822.replace(
            "Types: deb\nURIs: http://deb.debian.org/debian\n",
            "Types: deb\nEnabled: no\nURIs: http://deb.debian.org/debian\n",
        );
        assert_eq!(debian_signed_by(&[("a.sources".into(), disabled)]), None);
    }

    #[test]
    fn the_command_line_needs_a_system_and_a_known_board() {
        let missing = crate::args::parse_words::<Dist>("dist", &[]).unwrap_err();
        assert!(missing.contains("--system <NAME>"), "{missing}");
        let e = supported("qemu-virt").unwrap_err();
        assert!(e.contains("rpi4") && e.contains("imx8mp-evk") && e.contains("cargo xtask run"), "{e}");
        assert_eq!(dtb_file_name(RPI4), Some("bcm2711-rpi-4-b.dtb"));
        assert_eq!(dtb_file_name(IMX8MP_EVK), Some("imx8mp-evk.dtb"));
        assert!(board_dtb("qemu-virt").unwrap_err().contains("no Debian device tree"));
    }

    /// `key=value` lines and the `initramfs FILE ADDRESS` line of a config.txt.
    fn config_txt(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let (k, v) = l.split_once(' ').expect("`key=value` or `initramfs FILE ADDRESS`");
                    (k.to_string(), v.to_string())
                }
            })
            .collect()
    }

    fn hex(s: &str) -> u64 {
        u64::from_str_radix(s.strip_prefix("0x").expect("hex with 0x"), 16).expect("hex")
    }

    /// Builds go one at a time: a system whose board links the hypervisor elsewhere
    /// rebuilds the same ELF.
    static BUILDS: Mutex<()> = Mutex::new(());

    /// qemu-virt-bare, built once, standing in for a board's build.
    fn built() -> &'static Artifacts {
        static ART: OnceLock<Artifacts> = OnceLock::new();
        ART.get_or_init(|| {
            let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
            build::system("qemu-virt-bare").expect("qemu-virt-bare builds")
        })
    }

    /// A device tree with a /memreserve/ at the start of RAM, where qemu-virt's
    /// catalogue would put it: placement must step around it.
    fn fake_inputs(dir: &Path, board: &str) -> Inputs {
        let reserve = [vm_fdt::FdtReserveEntry::new(0x4000_0000, 0x1000).unwrap()];
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&reserve).unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string("compatible", "septum,fake").unwrap();
        w.end_node(root).unwrap();
        let dtb = dir.join(dtb_file_name(board).unwrap());
        fs::write(&dtb, w.finish().unwrap()).unwrap();
        let firmware = (board == RPI4).then(|| {
            let files: Vec<PathBuf> = PI4_FIRMWARE.iter().map(|f| dir.join(f)).collect();
            for f in &files {
                fs::write(f, b"fake firmware").unwrap();
            }
            let copyright = dir.join("copyright");
            fs::write(&copyright, b"fake licence").unwrap();
            RaspiFirmware { files, copyright, version: "0-fake".into() }
        });
        Inputs { dtb, firmware }
    }

    /// What every folder must satisfy; `art` is what it was written from.
    fn check_folder(f: &Folder, art: &Artifacts) {
        let dir = &f.dir;
        for name in &f.files {
            assert!(dir.join(name).is_file(), "{name} listed but not written");
        }
        let exists = |name: &str| dir.join(name).is_file();

        // The Image header: magic, text_offset, and image_size as the linker script
        // makes it (__hv_end - __hv_start, __hv_end aligned to 2 MiB).
        let image = fs::read(dir.join(IMAGE_FILE)).unwrap();
        assert_eq!(image, fs::read(&art.hypervisor_image).unwrap());
        assert_eq!(&image[56..60], b"ARM\x64");
        let h = ImageHeader::parse(&image).unwrap();
        assert_eq!(h, f.header);
        let board = art.system.board;
        let ram_base = board.ram.iter().map(|r| r.base).min().unwrap();
        assert_eq!(h.text_offset, board.hypervisor_base - ram_base);
        assert_eq!(f.load_address, board.hypervisor_base);
        let elf = fs::read(&art.hypervisor_elf).unwrap();
        let elf = object::File::parse(elf.as_slice()).unwrap();
        let symbol = |name: &str| elf.symbols().find(|s| s.name() == Ok(name)).map(|s| s.address()).unwrap();
        let (start, end) = (symbol("__hv_start"), symbol("__hv_end"));
        assert_eq!(start, f.load_address);
        assert_eq!(h.image_size, end - start);
        assert_eq!(end % IMAGE_ALIGN, 0, "the linker script rounds the end to 2 MiB");
        assert!(h.image_size >= image.len() as u64 && h.image_size - (image.len() as u64) < 16 * MIB);

        // The bundle, read back, passes every offline check from the anchor the
        // hypervisor was built with.
        let bundle = fs::read(dir.join(BUNDLE_FILE)).unwrap();
        assert_eq!(bundle, fs::read(&art.bundle).unwrap());
        let report = crate::trust::inspect::inspect(&bundle, Some(&art.keys.anchor()));
        assert_eq!(report.failures, 0, "{}", report.text);
        assert!(report.checks > 5, "{}", report.text);

        // Staging: disjoint, clear of the hypervisor, inside reserved RAM.
        let hv = h.footprint(f.load_address);
        let s = f.staging;
        assert!(!s.dtb.overlaps(&hv) && !s.bundle.overlaps(&hv) && !s.dtb.overlaps(&s.bundle), "{s:?} {hv:?}");
        assert_eq!(s.bundle.size, bundle.len() as u64);
        for r in [s.dtb, s.bundle] {
            assert!(board.reserved.iter().any(|res| res.contains(&r)), "{r:?} outside reserved RAM");
        }
        let dtb_name = dtb_file_name(f.board).unwrap();
        assert!(exists(dtb_name));
        let reserved_by_dtb = memreserve(&fs::read(dir.join(dtb_name)).unwrap()).unwrap();
        assert!(reserved_by_dtb.iter().all(|m| !m.overlaps(&s.dtb) && !m.overlaps(&s.bundle)));

        let readme = fs::read_to_string(dir.join(README_FILE)).unwrap();
        for name in f.files.iter().filter(|n| *n != BOOT_SCR) {
            assert!(readme.contains(name.as_str()), "README.txt does not mention {name}");
        }
        assert!(readme.contains("Nothing in this folder has been booted on a real"));

        match f.board {
            RPI4 => {
                let text = fs::read_to_string(dir.join(CONFIG_TXT)).unwrap();
                for line in text.lines() {
                    assert!(line.len() <= 80, "config.txt line over 80 characters: {line}");
                }
                let kv = config_txt(&text);
                let get = |k: &str| {
                    let v: Vec<&str> = kv.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect();
                    assert_eq!(v.len(), 1, "{k} set {} times", v.len());
                    v[0].to_string()
                };
                assert_eq!(get("arm_64bit"), "1");
                assert_eq!(get("enable_uart"), "1");
                assert_eq!(get("enable_gic"), "1");
                let kernel = get("kernel");
                assert!(exists(&kernel), "config.txt names {kernel}");
                assert_eq!(hex(&get("kernel_address")), h.load_address(ram_base));
                let initramfs = get("initramfs");
                let (file, at) = initramfs.split_once(' ').unwrap();
                assert!(exists(file), "config.txt names {file}");
                assert_eq!(file, BUNDLE_FILE);
                assert_eq!(hex(at), s.bundle.base);
                let dt = get("device_tree");
                assert!(exists(&dt), "config.txt names {dt}");
                assert_eq!(hex(&get("device_tree_address")), s.dtb.base);
                assert_eq!(hex(&get("device_tree_end")), s.dtb.end());
                for fw in PI4_FIRMWARE.iter().chain(&[FIRMWARE_LICENCE]) {
                    assert!(exists(fw), "{fw} missing");
                }
                assert!(!exists("bootcode.bin"), "a Pi 4 boots from its EEPROM");
                assert_eq!(kv.len(), 9, "{kv:?}");
            }
            _ => {
                let script = fs::read_to_string(dir.join(BOOT_CMD)).unwrap();
                let commands: Vec<&str> = script.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
                let set = |var: &str| {
                    let prefix = format!("setenv {var} ");
                    commands.iter().find_map(|c| c.strip_prefix(prefix.as_str())).map(hex).unwrap()
                };
                assert_eq!(set("kernel_addr_r"), f.load_address);
                assert_eq!(set("fdt_addr_r"), s.dtb.base);
                assert_eq!(set("ramdisk_addr_r"), s.bundle.base);
                assert_eq!(set("initrd_high"), u64::MAX);
                assert_eq!(set("fdt_high"), u64::MAX);
                let loads: Vec<(&str, &str)> = commands
                    .iter()
                    .filter_map(|c| c.strip_prefix("load mmc ${devnum}:1 "))
                    .map(|c| c.split_once(' ').unwrap())
                    .collect();
                assert_eq!(
                    loads,
                    [("${kernel_addr_r}", IMAGE_FILE), ("${fdt_addr_r}", dtb_name), ("${ramdisk_addr_r}", BUNDLE_FILE)]
                );
                for (_, file) in &loads {
                    assert!(exists(file), "boot.cmd loads {file}");
                }
                assert_eq!(
                    commands.last(),
                    Some(&"booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr_r}"),
                    "booti right after the bundle's load, so ${{filesize}} is its size"
                );
                if exists(BOOT_SCR) {
                    // A legacy U-Boot image: magic, OS Linux, arch arm64, type script,
                    // no compression; the payload is a length list, then the script.
                    let scr = fs::read(dir.join(BOOT_SCR)).unwrap();
                    assert_eq!(&scr[..4], &0x2705_1956u32.to_be_bytes());
                    assert_eq!(&scr[28..32], &[5, 22, 6, 0]);
                    let len = u32::from_be_bytes(scr[64..68].try_into().unwrap()) as usize;
                    assert_eq!(&scr[68..72], &[0; 4]);
                    assert_eq!(&scr[72..72 + len], script.as_bytes());
                } else {
                    assert!(f.notes.iter().any(|n| n.contains("mkimage")), "{:?}", f.notes);
                }
            }
        }
    }

    #[test]
    fn folders_from_qemu_virt_bare_artifacts() {
        let art = built();
        for board in BOARDS {
            let dir = scratch(board);
            let inputs = fake_inputs(&dir, board);
            let out = dir.join("folder");
            let f = write_folder(art, board, &out, &inputs).unwrap();
            check_folder(&f, art);
            // The bundle where the catalogue stages it; the DTB, kept off the
            // /memreserve/ at qemu-virt's default_dtb, right after it.
            assert_eq!(f.staging.bundle.base, art.system.board.default_bundle);
            assert_eq!(f.staging.dtb.base, f.staging.bundle.end().next_multiple_of(PAGE));
            // Written twice, the same folder.
            let again = write_folder(art, board, &out, &inputs).unwrap();
            assert_eq!(again.files, f.files);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Why a fetch from the Debian archive could not be tried here, if that is why it
    /// failed: no network, or not root where apt's sources need a change.
    fn cannot_fetch(e: &str) -> Option<&'static str> {
        let offline =
            ["Could not resolve", "Temporary failure resolving", "Failed to fetch", "Unable to connect", "unreachable"];
        if offline.iter().any(|o| e.contains(o)) {
            Some("offline")
        } else if e.contains("run as root") {
            Some("not root, and apt's sources need a change")
        } else {
            None
        }
    }

    macro_rules! fetched {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => match cannot_fetch(&e) {
                    Some(why) => {
                        eprintln!("skipped: {why}: {e}");
                        return;
                    }
                    None => panic!("{e}"),
                },
            }
        };
    }

    /// The real Debian files (downloaded once, then cached in target/): the boards'
    /// device trees and the Pi 4 firmware, in folders written from qemu-virt-bare's
    /// build.
    #[test]
    fn folders_with_debian_files() {
        for (board, compatible) in [(RPI4, "raspberrypi,4-model-b"), (IMX8MP_EVK, "fsl,imx8mp-evk")] {
            let dtb = fetched!(board_dtb(board));
            assert_eq!(dtb, dtbs_dir().join(dtb_file_name(board).unwrap()));
            let bytes = fs::read(&dtb).unwrap();
            memreserve(&bytes).unwrap();
            assert!(
                bytes.windows(compatible.len()).any(|w| w == compatible.as_bytes()),
                "{} is not {compatible}",
                dtb.display()
            );
            assert_eq!(board_dtb(board).unwrap(), dtb, "cached");
            let (package, _) = linux::read_record(&dtbs_dir().join(DTBS_RECORD)).unwrap();
            assert!(package.starts_with("linux-image-") && package.ends_with("-arm64-unsigned"), "{package}");
        }
        let fw = fetched!(raspi_firmware());
        assert_eq!(fw.files.len(), PI4_FIRMWARE.len());
        assert_eq!(&fs::read(&fw.files[0]).unwrap()[..4], b"\x7fELF", "start4.elf");
        assert!(fs::metadata(&fw.files[1]).unwrap().len() > 1000, "fixup4.dat");
        assert!(fs::read_to_string(&fw.copyright).unwrap().contains("Broadcom"));
        assert_eq!(raspi_firmware().unwrap(), fw, "cached");

        let art = built();
        for board in BOARDS {
            let inputs = fetched!(Inputs::fetch(board));
            let dir = scratch(board);
            let f = write_folder(art, board, &dir, &inputs).unwrap();
            check_folder(&f, art);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// CFG-004, CFG-005, CFG-006, BOOT-005: with Debian's device trees of the Pi 4 and
    /// the EVK (the ones the firmware passes), every shipped system of the board passes
    /// the check the hypervisor runs at boot; what those trees reserve is in the
    /// catalogue (`reserved` or `firmware_reserved`), so the build-time check refuses
    /// what the boot-time check would; and each device the catalogue keeps is a window
    /// the tree has (or a PCIe window its bridge's `ranges` name).
    #[test]
    fn board_systems_pass_the_boot_time_check_with_debians_device_trees() {
        for board in BOARDS {
            let dtb = fs::read(fetched!(board_dtb(board))).unwrap();
            let catalogue = septum_platform::catalog::board(board).unwrap();
            let facts = septum_core::board::read_as_shipped(&dtb).unwrap().board;
            for r in facts.reserved.iter() {
                let known = catalogue.reserved.iter().chain(catalogue.firmware_reserved).any(|c| c.contains(&r));
                assert!(known, "{board}: the DTB reserves {r}, which the catalogue does not");
            }
            for k in catalogue.kept_devices.iter().filter(|k| !k.device.name.ends_with("-window")) {
                let in_dtb = facts.devices.iter().any(|d| d.range.overlaps(&k.range()));
                assert!(in_dtb, "{board}: kept device {} ({}) is in no DTB node", k.device.name, k.range());
            }
            for d in catalogue.devices {
                let irqs: Vec<u32> = facts
                    .devices
                    .iter()
                    .filter(|x| x.range.overlaps(&Range::new(d.base, d.size)))
                    .flat_map(|x| x.irqs.iter().collect::<Vec<_>>())
                    .collect();
                assert!(d.irqs.iter().all(|i| irqs.contains(i)), "{board}: {} raises {irqs:?} in the DTB", d.name);
            }
            let mut checked = 0;
            for dir in ["systems", "tests/systems"] {
                for entry in fs::read_dir(build::root().join(dir)).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_none_or(|e| e != "toml") {
                        continue;
                    }
                    let sys = crate::system::load(&path).unwrap();
                    if sys.board.name == *board {
                        sys.check_at_boot(&dtb).unwrap_or_else(|e| panic!("{e}"));
                        checked += 1;
                    }
                }
            }
            assert!(checked >= 3, "{board}: only {checked} systems");
        }
    }

    /// `dist` of the boards' own system descriptions, once they exist.
    #[test]
    fn dist_of_the_board_systems() {
        for (system, board) in [("rpi4", RPI4), ("imx8mp-evk", IMX8MP_EVK)] {
            if !build::system_path(system).is_file() {
                eprintln!("skipped: no systems/{system}.toml yet");
                continue;
            }
            let dir = scratch(system);
            let (art, f) = {
                let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
                fetched!(dist_built(system, Some(dir.clone()), &build::Options::default()))
            };
            assert_eq!(f.board, board);
            check_folder(&f, &art);
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

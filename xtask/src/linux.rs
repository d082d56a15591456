//! Linux for the connectivity partition: Debian bookworm's unmodified generic arm64
//! kernel and a small busybox initramfs.
//!
//! Both binaries come from the Debian archive through the host's own apt (arm64 as a
//! foreign architecture), so apt checks them against the archive's signed indexes and
//! no cross toolchain is needed. They are fetched once and cached under `target/linux/`;
//! delete that directory to pick up a newer kernel.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Debian's metapackage that depends on the current generic arm64 kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-arm64";
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// What a machine needs before `apt-get download PKG:arm64` works.
pub(crate) const ARM64_SETUP: &str = "dpkg --add-architecture arm64\napt-get update";

/// The interpreter lives at /bin/busybox, so the script runs before any applet link
/// exists. It ends by becoming busybox `init` (still PID 1), so `reboot` and `poweroff`
/// work as on any system: init stops everything, then asks the kernel (PSCI).
const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
# Septum connectivity partition: bring up a minimal userspace on the console.
/bin/busybox --install -s
# The kernel may already have mounted some of these; a second mount failing is fine.
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "septum-linux: userspace up, $(nproc) cpus online"
# The drivers of the PCIe devices the partition may be given (virtio over PCI, its
# network card and disk) and the data disk's filesystem, dependencies first.
if [ -f /lib/modules/order ]; then
    for m in $(cat /lib/modules/order); do
        insmod /lib/modules/$m.ko || echo "septum-linux: module $m NOT loaded"
    done
fi
if [ -e /sys/class/net/eth0 ]; then
    ip link set lo up
    ip link set eth0 up
    if udhcpc -i eth0 -q -n -t 10 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1; then
        echo "septum-linux: network eth0 up, $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
    else
        echo "septum-linux: network eth0: no DHCP lease"
    fi
fi
# The data disk (the first virtio disk): ext4, created by xtask, kept across restarts.
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
if [ -b /dev/vda ]; then
    mkdir -p /data
    if mount -t ext4 /dev/vda /data; then
        echo "septum-linux: data disk /dev/vda on /data, $(df -k /data | awk 'NR==2 {print $4}') KiB free"
    else
        echo "septum-linux: data disk /dev/vda NOT mounted"
    fi
fi
# The channel driver (xtask/src/kmod.rs): /dev/septum/<label> per channel end. The agent
# falls back to /dev/mem without it.
if [ -f /lib/modules/septum_channel.ko ]; then
    insmod /lib/modules/septum_channel.ko || echo "septum-linux: module septum_channel NOT loaded"
fi
if [ -x /bin/septum-agent ]; then
    /bin/septum-agent >/dev/console 2>&1 &
fi
exec /bin/busybox init
"#;

/// What busybox `udhcpc` runs with a lease: the address, the default route, the name
/// servers (QEMU's user-mode network serves DHCP itself, inside the emulator).
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
    deconfig)
        ifconfig "$interface" 0.0.0.0 up
        ;;
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
        for r in $router; do route add default gw "$r" dev "$interface"; break; done
        : > /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
        ;;
esac
exit 0
"#;

/// The kernel modules the initramfs carries, in the order `/init` loads them
/// (dependencies first): virtio over PCI, the network card (with its failover
/// helpers), the disk, and ext4 for the data disk (with the CRC-32C its journal needs).
/// Every module's `depends=` must come earlier in the list; the fetch checks that.
pub const MODULES: &[&str] = &[
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "crc16",
    "crc32c_generic",
    "mbcache",
    "jbd2",
    "ext4",
];

/// Busybox init's table: a login shell on the console, restarted when it exits.
const INITTAB: &str = "::respawn:/bin/cttyhack /bin/sh -l\n::shutdown:/bin/sync\n";

/// Read by the login shell.
const PROFILE: &str = "export HOME=/root\nexport PS1='septum-linux# '\ncd /root\n";

/// A Debian kernel, extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The raw arm64 `Image` (what Debian ships as `/boot/vmlinuz-*` on arm64).
    pub image: PathBuf,
    /// The binary package it came from, e.g. `linux-image-6.1.0-56-arm64-unsigned`.
    pub package: String,
    /// That package's Debian version, e.g. `6.1.192-2`.
    pub version: String,
    /// Its [`MODULES`], as `<name>.ko` files.
    pub modules: PathBuf,
}

/// Where the Linux pieces are cached: `target/linux/` in the workspace.
pub fn dir() -> PathBuf {
    crate::build::root().join("target").join("linux")
}

/// Fetches (once; cached under `target/linux/`) Debian's generic arm64 kernel, the
/// unsigned package of the ABI `linux-image-arm64` currently depends on, into
/// `target/linux/Image`. Records its package and version in `target/linux/kernel.version`
/// (one line, `package version`) and prints
/// `xtask: linux kernel <package> <version> (cached)` or `(fetched)` to stderr.
/// A cached kernel is used without touching the network.
pub fn debian_kernel() -> Result<Kernel, String> {
    let dir = dir();
    let image = dir.join("Image");
    let modules = dir.join("modules");
    let record = dir.join("kernel.version");
    let have_modules = || MODULES.iter().all(|m| modules.join(format!("{m}.ko")).is_file());
    if let (true, true, Some((package, version))) = (image.is_file(), have_modules(), read_record(&record)) {
        eprintln!("xtask: linux kernel {package} {version} (cached)");
        return Ok(Kernel { image, package, version, modules });
    }
    ensure_arm64()?;
    let package = kernel_package()?;
    let fetched = fetch_kernel(&package, &image, &modules)?;
    check_arm64_image(&image)?;
    write_record(&record, &package, &fetched)?;
    eprintln!("xtask: linux kernel {package} {fetched} (fetched)");
    Ok(Kernel { image, package, version: fetched, modules })
}

/// Downloads kernel package `package`, extracts its `Image` to `image` and its
/// [`MODULES`] into `modules`, checks the modules' dependencies, and returns its version.
fn fetch_kernel(package: &str, image: &Path, modules: &Path) -> Result<String, String> {
    with_deb(package, |deb, root| {
        let kernel = extract(deb, "boot/vmlinuz-", root)?;
        let patterns: Vec<String> = MODULES.iter().map(|m| format!("*/{m}.ko")).collect();
        extract_all(deb, &patterns, root)?;
        fs::create_dir_all(modules).map_err(|e| format!("cannot create {}: {e}", modules.display()))?;
        for (i, m) in MODULES.iter().enumerate() {
            let found = find_file(&root.join("lib/modules"), &format!("{m}.ko"))
                .ok_or_else(|| format!("{package} has no module {m}.ko"))?;
            let bytes = fs::read(&found).map_err(|e| format!("{}: {e}", found.display()))?;
            for dep in module_depends(&bytes) {
                if !MODULES[..i].contains(&dep.as_str()) {
                    return Err(format!(
                        "module {m} of {package} needs {dep}, which xtask's MODULES does not load before it; add it"
                    ));
                }
            }
            write_atomically(&modules.join(format!("{m}.ko")), &bytes)?;
        }
        fs::rename(&kernel, image).map_err(|e| format!("cannot move {} to {}: {e}", kernel.display(), image.display()))
    })
}

/// Downloads `package:arm64` into a scratch directory under `target/linux/debs/`, runs
/// `f` with the .deb and a folder to extract into, removes the scratch directory, and
/// returns the package's version.
fn with_deb(package: &str, f: impl FnOnce(&Path, &Path) -> Result<(), String>) -> Result<String, String> {
    with_deb_spec(package, &format!("{package}:arm64"), f)
}

/// [`with_deb`] of `spec` as apt names it (see [`apt_download_spec`]): `package:arm64`,
/// `package` for the host's architecture or `Architecture: all`, `package=version`.
pub(crate) fn with_deb_spec(
    package: &str,
    spec: &str,
    f: impl FnOnce(&Path, &Path) -> Result<(), String>,
) -> Result<String, String> {
    let scratch = dir().join("debs").join(format!("{package}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let result = (|| {
        let deb = apt_download_spec(package, spec, &scratch)?;
        let version = deb_field(&deb, "Version")?;
        f(&deb, &scratch.join("root"))?;
        Ok(version)
    })();
    let _ = fs::remove_dir_all(&scratch);
    // Fails, harmlessly, while another process is fetching.
    let _ = fs::remove_dir(dir().join("debs"));
    result
}

/// A module's `depends=` list (from its `.modinfo` strings).
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|list| String::from_utf8_lossy(list).split(',').filter(|d| !d.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The first file named `name` under `dir`, searched depth first.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().and_then(|n| n.to_str()) == Some(name) {
            return Some(path);
        }
    }
    None
}

/// Fetches (once; cached) `busybox-static:arm64`'s static `bin/busybox` into
/// `target/linux/busybox` (its version in `target/linux/busybox.version`) and returns
/// its path. Prints `xtask: busybox <version> (cached)` or `(fetched)` to stderr.
pub fn busybox() -> Result<PathBuf, String> {
    let dir = dir();
    let binary = dir.join("busybox");
    let record = dir.join("busybox.version");
    if let (true, Some((_, version))) = (binary.is_file(), read_record(&record)) {
        eprintln!("xtask: busybox {version} (cached)");
        return Ok(binary);
    }
    ensure_arm64()?;
    let version = fetch_member(BUSYBOX_PACKAGE, "bin/busybox", &binary)?;
    check_arm64_elf(&binary)?;
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", binary.display()))?;
    write_record(&record, BUSYBOX_PACKAGE, &version)?;
    eprintln!("xtask: busybox {version} (fetched)");
    Ok(binary)
}

/// Builds `target/linux/initramfs.cpio` around the cached (or freshly fetched) busybox;
/// see [`initramfs_from`] for its contents. Returns the path.
pub fn initramfs(agent: Option<&Path>) -> Result<PathBuf, String> {
    let busybox = busybox()?;
    let kernel = debian_kernel()?;
    let channel = crate::kmod::build(&kernel)?;
    let out = dir().join("initramfs.cpio");
    let modules = Modules { kernel: &kernel.modules, channel: Some(&channel) };
    initramfs_from(&busybox, agent, Some(modules), &out)?;
    Ok(out)
}

/// Writes an uncompressed newc initramfs to `out`: `/init` (a busybox shell script,
/// 0755), `/bin/busybox` (0755), the empty directories `/dev /proc /sys /tmp /root /etc
/// /bin /sbin /usr/bin /usr/sbin`, `/dev/console` (character device 5,1, 0600, so the
/// kernel has a console before `/init` mounts devtmpfs), `/etc/udhcpc.script`,
/// `/bin/septum-agent` (0755) when `agent` is given, and, from `modules`, the kernel's
/// [`MODULES`] as `/lib/modules/<name>.ko` with their load order in
/// `/lib/modules/order`, and the channel driver as `/lib/modules/septum_channel.ko`
/// (loaded on its own, before the agent starts). The output depends only on the inputs' bytes (mtime 0, owner
/// 0, fixed inode numbers), so the signed image's hash is repeatable.
pub fn initramfs_from(
    busybox: &Path,
    agent: Option<&Path>,
    modules: Option<Modules<'_>>,
    out: &Path,
) -> Result<(), String> {
    let read = |p: &Path| fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let mut cpio = Newc::default();
    // Parents before children: the kernel unpacks entries in order.
    for d in ["bin", "dev", "etc", "proc", "root", "sbin", "sys", "usr", "usr/bin", "usr/sbin"] {
        cpio.dir(d, 0o755)?;
    }
    cpio.dir("tmp", 0o1777)?;
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
    cpio.file("etc/inittab", 0o644, INITTAB.as_bytes())?;
    cpio.file("etc/profile", 0o644, PROFILE.as_bytes())?;
    cpio.file("etc/udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes())?;
    cpio.file("bin/busybox", 0o755, &read(busybox)?)?;
    if let Some(agent) = agent {
        cpio.file("bin/septum-agent", 0o755, &read(agent)?)?;
    }
    if let Some(modules) = modules {
        cpio.dir("lib", 0o755)?;
        cpio.dir("lib/modules", 0o755)?;
        for m in MODULES {
            cpio.file(&format!("lib/modules/{m}.ko"), 0o644, &read(&modules.kernel.join(format!("{m}.ko")))?)?;
        }
        cpio.file("lib/modules/order", 0o644, MODULES.join("\n").as_bytes())?;
        if let Some(channel) = modules.channel {
            cpio.file(&format!("lib/modules/{}.ko", crate::kmod::NAME), 0o644, &read(channel)?)?;
        }
    }
    write_atomically(out, &cpio.finish())
}

/// The kernel modules an initramfs carries.
#[derive(Clone, Copy, Debug)]
pub struct Modules<'a> {
    /// The directory holding the kernel's [`MODULES`] as `<name>.ko`.
    pub kernel: &'a Path,
    /// The channel driver built for that kernel (`crate::kmod`).
    pub channel: Option<&'a Path>,
}

/// Writes via a temporary sibling and a rename, so a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))
}

// The SVR4 "newc" cpio format (magic 070701): per entry, a 110-byte ASCII header of
// 13 eight-digit hex fields, the NUL-terminated name, padding to 4 bytes, the data,
// padding to 4 bytes; closed by an entry named TRAILER!!!.
const S_IFCHR: u32 = 0o020_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const NEWC_MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// An in-memory writer of uncompressed newc cpio archives, the format Linux unpacks its
/// initramfs from. Every entry is owned by root with mtime 0 and inode numbers count up
/// from 1 in order, so equal inputs give equal bytes. Names are written as given;
/// the kernel wants them relative (`bin/busybox`), parents first.
#[derive(Debug, Default)]
pub struct Newc {
    out: Vec<u8>,
    last_ino: u32,
}

impl Newc {
    /// A directory with permission bits `perm`.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), String> {
        self.entry(name, S_IFDIR, perm, 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), String> {
        self.entry(name, S_IFREG, perm, 1, (0, 0), data)
    }

    /// A symbolic link; its data is the target path.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), String> {
        self.entry(name, S_IFLNK, 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node `major:minor`.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> Result<(), String> {
        self.entry(name, S_IFCHR, perm, 1, (major, minor), &[])
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.record(0, 0, 1, (0, 0), TRAILER, &[]);
        self.out
    }

    fn entry(
        &mut self,
        name: &str,
        kind: u32,
        perm: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), String> {
        if name.is_empty() || name.contains('\0') || name == TRAILER {
            return Err(format!("cpio: invalid entry name {name:?}"));
        }
        if perm & !0o7777 != 0 {
            return Err(format!("cpio: {name}: permission bits {perm:o} out of range"));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(format!("cpio: {name}: {} bytes is too large for newc (4 GiB limit)", data.len()));
        }
        self.last_ino += 1;
        self.record(self.last_ino, kind | perm, nlink, rdev, name, data);
        Ok(())
    }

    fn record(&mut self, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), name: &str, data: &[u8]) {
        // The name size counts its NUL; lengths were checked to fit by `entry`.
        let fields = [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(NEWC_MAGIC.as_bytes());
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        self.out.resize(self.out.len().next_multiple_of(4), 0);
    }
}

// Fetching from the Debian archive.

/// Set once `apt-get update` has run in this process: it is slow, and once is enough.
static UPDATED: AtomicBool = AtomicBool::new(false);

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn arm64_enabled() -> bool {
    Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "arm64"))
}

/// Makes dpkg accept arm64 packages (as root), or says how to.
pub(crate) fn ensure_arm64() -> Result<(), String> {
    if arm64_enabled() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!("arm64 is not a dpkg architecture here; run as root (or with sudo):\n{ARM64_SETUP}"));
    }
    eprintln!("xtask: adding arm64 as a dpkg architecture");
    crate::build::run(Command::new("dpkg").args(["--add-architecture", "arm64"]))
        .map_err(|e| format!("{e}; run as root:\n{ARM64_SETUP}"))?;
    apt_update()
}

/// Refreshes apt's package lists, at most once per process; `Err` if it already ran
/// (so a caller's retry stops) or cannot.
fn apt_update() -> Result<(), String> {
    if !is_root() {
        return Err(format!("the package lists may be stale; run as root (or with sudo):\n{ARM64_SETUP}"));
    }
    if UPDATED.swap(true, Ordering::SeqCst) {
        return Err("apt-get update already ran".into());
    }
    eprintln!("xtask: apt-get update");
    crate::build::run_captured(Command::new("apt-get").args(["update", "-qq"]))
}

/// The unsigned kernel package of the ABI Debian's arm64 metapackage depends on now,
/// e.g. `linux-image-6.1.0-56-arm64-unsigned` for `linux-image-6.1.0-56-arm64`.
pub(crate) fn kernel_package() -> Result<String, String> {
    let query = || -> Option<String> {
        let out = Command::new("apt-cache").args(["depends", &format!("{KERNEL_METAPACKAGE}:arm64")]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|l| {
            let dep = l.trim().strip_prefix("Depends: ")?.strip_suffix(":arm64")?;
            dep.starts_with("linux-image-").then(|| format!("{dep}-unsigned"))
        })
    };
    if let Some(p) = query() {
        return Ok(p);
    }
    let why = apt_update().err();
    query().ok_or_else(|| {
        format!(
            "`apt-cache depends {KERNEL_METAPACKAGE}:arm64` names no linux-image package{}; check the Debian \
             sources and run as root:\n{ARM64_SETUP}",
            why.map_or(String::new(), |w| format!(" ({w})"))
        )
    })
}

/// Downloads `package:arm64`, extracts its one file whose path starts with `member`
/// (e.g. `boot/vmlinuz-`) to `dest`, and returns the package's version. The .deb lives
/// in a scratch directory under `target/linux/debs/` that is removed afterwards.
fn fetch_member(package: &str, member: &str, dest: &Path) -> Result<String, String> {
    with_deb(package, |deb, root| {
        let extracted = extract(deb, member, root)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        // `fs::rename` within target/: both paths are on one filesystem.
        fs::rename(&extracted, dest)
            .map_err(|e| format!("cannot move {} to {}: {e}", extracted.display(), dest.display()))
    })
}

/// `apt-get download package:arm64` into `dir`, retrying once after `apt-get update`
/// (a failure usually means the lists predate the current version). Returns the .deb.
pub(crate) fn apt_download(package: &str, dir: &Path) -> Result<PathBuf, String> {
    apt_download_spec(package, &format!("{package}:arm64"), dir)
}

/// [`apt_download`] of `spec` as apt names it: `package:arch`, or just `package` for an
/// `Architecture: all` package (apt finds no `package:arm64` for those).
pub(crate) fn apt_download_spec(package: &str, spec: &str, dir: &Path) -> Result<PathBuf, String> {
    let prefix = format!("{package}_");
    let attempt = || download_with_progress(spec, &prefix, dir);
    if let Err(first) = attempt() {
        apt_update().map_err(|e| format!("{first}\n({e}); try:\n{ARM64_SETUP}\napt-get download {spec}"))?;
        attempt()
            .map_err(|e| format!("{e}\ncheck the Debian sources and try:\n{ARM64_SETUP}\napt-get download {spec}"))?;
    }
    deb_in(dir, &prefix)
        .ok_or_else(|| format!("apt-get download {spec} succeeded but left no {prefix}*.deb in {}", dir.display()))
}

/// The file in `dir` whose name starts with `prefix` (`package_`) and ends `.deb`.
fn deb_in(dir: &Path, prefix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb")))
}

/// Bytes of the files in `dir` whose names start with `prefix`: what apt has written of
/// the package so far.
fn bytes_in(dir: &Path, prefix: &str) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix)))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The size apt's lists give for `spec`'s candidate version (what `apt-get download`
/// fetches), if they give one.
fn package_size(spec: &str) -> Option<u64> {
    let out = Command::new("apt-cache").args(["show", "--no-all-versions", spec]).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Size: ")?.trim().parse().ok())
}

/// One `apt-get download spec` into `dir`, its progress shown as the package's file
/// grows there (apt writes it under its final name); the summary gives its size, time
/// and rate.
fn download_with_progress(spec: &str, prefix: &str, dir: &Path) -> Result<(), String> {
    let mut cmd = Command::new("apt-get");
    cmd.arg("download").arg("-q");
    if is_root() {
        // As root apt drops to `_apt` to download, which cannot write into target/.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.arg(spec).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let total = package_size(spec);
    let step = crate::progress::Step::bytes(&format!("downloading {spec} from the Debian archive"), total);
    let child = cmd.spawn().map_err(|e| format!("cannot run apt-get download {spec}: {e}"))?;
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() {
        step.set_position(bytes_in(dir, prefix));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = waiter
        .join()
        .map_err(|_| format!("apt-get download {spec}: the waiting thread failed"))?
        .map_err(|e| format!("apt-get download {spec}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get download {spec} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let took = step.elapsed();
    step.finish(&format!("downloaded {spec}: {}", crate::progress::amount(bytes_in(dir, prefix), took)));
    Ok(())
}

pub(crate) fn deb_field(deb: &Path, field: &str) -> Result<String, String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .map_err(|e| format!("cannot run dpkg-deb -f {}: {e}", deb.display()))?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !value.is_empty() {
        Ok(value)
    } else {
        Err(format!("dpkg-deb -f {} {field} failed: {}", deb.display(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Extracts the files matching any of `patterns` (tar wildcards) from `deb` into `root`
/// (`dpkg-deb --fsys-tarfile | tar`), nothing else.
fn extract_all(deb: &Path, patterns: &[String], root: &Path) -> Result<(), String> {
    fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb --fsys-tarfile {}: {e}", deb.display()))?;
    let tar_in = dpkg.stdout.take().ok_or("dpkg-deb: no stdout pipe")?;
    let tar =
        Command::new("tar").arg("-x").arg("-C").arg(root).arg("--wildcards").args(patterns).stdin(tar_in).status();
    let dpkg = dpkg.wait();
    let failed = |what: String| format!("extracting {} from {} failed ({what})", patterns.join(" "), deb.display());
    match (tar, dpkg) {
        (Ok(t), Ok(d)) if t.success() && d.success() => Ok(()),
        (Ok(t), Ok(d)) => Err(failed(format!("tar: {t}, dpkg-deb: {d}"))),
        (Err(e), _) | (_, Err(e)) => Err(failed(e.to_string())),
    }
}

/// Extracts the one file under `member*` from `deb` into `root`, returning its path.
/// Only that file is unpacked: the kernel package also holds hundreds of megabytes of
/// modules the partition does not use.
pub(crate) fn extract(deb: &Path, member: &str, root: &Path) -> Result<PathBuf, String> {
    // Debian's data.tar names members `./boot/...`; the leading `*` matches either form.
    extract_all(deb, &[format!("*{member}*")], root)?;
    let failed = |what: &str| format!("extracting {member}* from {} failed ({what})", deb.display());
    let (parent, stem) = member.rsplit_once('/').unwrap_or(("", member));
    let parent = root.join(parent);
    let mut found = fs::read_dir(&parent)
        .map_err(|e| failed(&format!("{}: {e}", parent.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(stem)));
    match (found.next(), found.next()) {
        (Some(p), None) => Ok(p),
        (None, _) => Err(failed("no such file in the package")),
        (Some(_), Some(_)) => Err(failed("more than one match")),
    }
}

/// Checks for the arm64 `Image` header's magic, "ARM\x64" at byte 56: a compressed or
/// foreign kernel would otherwise only fail at boot, silently.
fn check_arm64_image(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.get(56..60) == Some(b"ARM\x64") {
        Ok(())
    } else {
        let _ = fs::remove_file(path);
        Err(format!(
            "{} is not a raw arm64 Image (no ARM\\x64 magic at offset 56); Debian's packaging may have changed",
            path.display()
        ))
    }
}

/// Checks for a 64-bit little-endian aarch64 ELF (e_machine 183).
fn check_arm64_elf(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let aarch64 = bytes.get(..6) == Some(b"\x7fELF\x02\x01") && bytes.get(18..20) == Some(&183u16.to_le_bytes()[..]);
    if aarch64 {
        Ok(())
    } else {
        let _ = fs::remove_file(path);
        Err(format!("{} is not an aarch64 ELF executable", path.display()))
    }
}

/// Reads a `package version` record line.
pub(crate) fn read_record(path: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string(path).ok()?;
    let (package, version) = text.trim().split_once(' ')?;
    Some((package.to_string(), version.to_string()))
}

pub(crate) fn write_record(path: &Path, package: &str, version: &str) -> Result<(), String> {
    write_atomically(path, format!("{package} {version}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::AtomicUsize;

    const NEWC_HEADER_LEN: usize = 110;

    /// One parsed archive entry.
    #[derive(Debug)]
    struct Entry {
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        name: String,
        data: Vec<u8>,
    }

    /// A strict newc reader: checks magic, alignment, the trailer and that nothing
    /// follows it. Returns the entries before the trailer.
    fn parse(archive: &[u8]) -> Vec<Entry> {
        let mut at = 0;
        let mut entries = Vec::new();
        loop {
            assert_eq!(at % 4, 0, "header at {at} is not 4-byte aligned");
            let header = &archive[at..at + NEWC_HEADER_LEN];
            assert_eq!(&header[..6], NEWC_MAGIC.as_bytes());
            let field = |i: usize| {
                let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(hex, 16).unwrap()
            };
            let (uid, gid, mtime, filesize, namesize, check) =
                (field(2), field(3), field(5), field(6), field(11), field(12));
            assert_eq!((uid, gid, mtime, check), (0, 0, 0, 0));
            assert_eq!((field(7), field(8)), (0, 0), "devmajor/devminor");
            let name_start = at + NEWC_HEADER_LEN;
            let name_end = name_start + namesize as usize;
            assert_eq!(archive[name_end - 1], 0, "name not NUL-terminated");
            let name = std::str::from_utf8(&archive[name_start..name_end - 1]).unwrap().to_string();
            let data_start = name_end.next_multiple_of(4);
            assert!(archive[name_end..data_start].iter().all(|&b| b == 0), "name padding not zero");
            let data_end = data_start + filesize as usize;
            let next = data_end.next_multiple_of(4);
            assert!(archive[data_end..next].iter().all(|&b| b == 0), "data padding not zero");
            at = next;
            if name == TRAILER {
                assert_eq!(at, archive.len(), "bytes after the trailer");
                return entries;
            }
            let data = archive[data_start..data_end].to_vec();
            entries.push(Entry {
                ino: field(0),
                mode: field(1),
                nlink: field(4),
                rdev: (field(9), field(10)),
                name,
                data,
            });
        }
    }

    fn scratch(what: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("septum-linux-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> Vec<u8> {
        let mut c = Newc::default();
        c.dir("d", 0o755).unwrap();
        c.file("d/f", 0o644, b"hello").unwrap();
        c.symlink("d/l", "f").unwrap();
        c.char_device("d/console", 0o600, 5, 1).unwrap();
        // Name lengths around the padding boundary: header 110 + name + NUL.
        c.file("ab", 0o600, b"").unwrap();
        c.file("abc", 0o600, b"1234").unwrap();
        c.finish()
    }

    #[test]
    fn newc_layout() {
        let archive = sample();
        let entries = parse(&archive);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["d", "d/f", "d/l", "d/console", "ab", "abc"]);
        let inos: Vec<_> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos, [1, 2, 3, 4, 5, 6]);
        assert_eq!((entries[0].mode, entries[0].nlink), (0o040_755, 2));
        assert_eq!((entries[1].mode, entries[1].data.as_slice()), (0o100_644, &b"hello"[..]));
        assert_eq!((entries[2].mode, entries[2].data.as_slice()), (0o120_777, &b"f"[..]));
        assert_eq!((entries[3].mode, entries[3].rdev), (0o020_600, (5, 1)));
        // The first header: "d\0" ends at 112, already aligned; "hello" is padded to 8.
        assert_eq!(&archive[..6], b"070701");
        assert_eq!(&archive[110..112], b"d\0");
        assert_eq!(&archive[112..118], b"070701");
        assert!(archive.len().is_multiple_of(4));
    }

    #[test]
    fn newc_rejects_bad_entries() {
        let mut c = Newc::default();
        assert!(c.file("", 0o644, b"").is_err());
        assert!(c.file("a\0b", 0o644, b"").is_err());
        assert!(c.file(TRAILER, 0o644, b"").is_err());
        assert!(c.dir("x", 0o40_755).is_err());
    }

    /// Round trip through GNU cpio, when installed: it must list every entry with its
    /// type and extract the file's contents.
    #[test]
    fn newc_round_trips_through_cpio() {
        let Ok(version) = Command::new("cpio").arg("--version").output() else {
            eprintln!("cpio not installed; skipping the round trip");
            return;
        };
        assert!(version.status.success());
        let dir = scratch("cpio");
        let archive = dir.join("a.cpio");
        fs::write(&archive, sample()).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("cpio")
                .args(args)
                .stdin(fs::File::open(&archive).unwrap())
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "cpio {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        let listing = run(&["-t", "-v", "--quiet"]);
        let lines: Vec<_> = listing.lines().collect();
        assert_eq!(lines.len(), 6, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" d"), "{listing}");
        assert!(lines[1].starts_with("-rw-r--r--") && lines[1].ends_with(" d/f"), "{listing}");
        assert!(lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with(" d/l -> f"), "{listing}");
        assert!(lines[3].starts_with("crw-------") && lines[3].contains("5,") && lines[3].ends_with(" d/console"));
        assert_eq!(run(&["-i", "--quiet", "--to-stdout", "d/f"]), "hello");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn initramfs_is_deterministic_and_complete() {
        let dir = scratch("initramfs");
        let busybox = dir.join("busybox");
        let agent = dir.join("agent");
        fs::File::create(&busybox).unwrap().write_all(b"\x7fELF dummy busybox").unwrap();
        fs::write(&agent, b"dummy agent").unwrap();
        let (a, b) = (dir.join("a.cpio"), dir.join("b.cpio"));
        initramfs_from(&busybox, Some(&agent), None, &a).unwrap();
        // A different mtime on the inputs must not matter.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&busybox, b"\x7fELF dummy busybox").unwrap();
        initramfs_from(&busybox, Some(&agent), None, &b).unwrap();
        let archive = fs::read(&a).unwrap();
        assert_eq!(archive, fs::read(&b).unwrap());

        let entries = parse(&archive);
        let find = |name: &str| entries.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(find("init").mode, 0o100_755);
        assert!(find("init").data.starts_with(b"#!/bin/busybox sh\n"));
        assert_eq!(find("bin/busybox").data, b"\x7fELF dummy busybox");
        assert_eq!(
            (find("bin/septum-agent").mode, find("bin/septum-agent").data.as_slice()),
            (0o100_755, &b"dummy agent"[..])
        );
        assert_eq!((find("dev/console").mode, find("dev/console").rdev), (0o020_600, (5, 1)));
        for d in ["dev", "proc", "sys", "tmp", "root", "etc", "bin", "sbin", "usr", "usr/bin", "usr/sbin"] {
            assert_eq!(find(d).mode & S_IFDIR, S_IFDIR, "{d}");
        }
        // Parents precede children, as the kernel's unpacker needs.
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.name.rsplit_once('/') {
                assert!(entries[..i].iter().any(|p| p.name == parent), "{} before its parent", e.name);
            }
        }

        let kernel_modules = dir.join("modules");
        fs::create_dir_all(&kernel_modules).unwrap();
        for m in MODULES {
            fs::write(kernel_modules.join(format!("{m}.ko")), m.as_bytes()).unwrap();
        }
        let channel = dir.join("septum_channel.ko");
        fs::write(&channel, b"channel driver").unwrap();
        let with = dir.join("m.cpio");
        let modules = Modules { kernel: &kernel_modules, channel: Some(&channel) };
        initramfs_from(&busybox, Some(&agent), Some(modules), &with).unwrap();
        let entries = parse(&fs::read(&with).unwrap());
        let data = |name: &str| entries.iter().find(|e| e.name == name).map(|e| e.data.clone());
        assert_eq!(data("lib/modules/septum_channel.ko").as_deref(), Some(&b"channel driver"[..]));
        assert_eq!(data("lib/modules/ext4.ko").as_deref(), Some(&b"ext4"[..]));
        assert_eq!(data("lib/modules/order"), Some(MODULES.join("\n").into_bytes()), "loaded on its own");

        let without = dir.join("c.cpio");
        initramfs_from(&busybox, None, None, &without).unwrap();
        assert!(parse(&fs::read(&without).unwrap()).iter().all(|e| e.name != "bin/septum-agent"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn init_script_shape() {
        let script = INIT_SCRIPT;
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        assert!(script.contains("echo \"septum-linux: userspace up, $(nproc) cpus online\""));
        assert!(script.contains("/bin/septum-agent >/dev/console 2>&1 &"));
        let insmod = script.find("insmod /lib/modules/septum_channel.ko").expect("the channel driver is loaded");
        assert!(insmod < script.find("/bin/septum-agent >").unwrap(), "before the agent starts");
        assert!(script.ends_with("exec /bin/busybox init\n"), "init stays PID 1");
        assert!(INITTAB.contains("::respawn:/bin/cttyhack /bin/sh -l"));
        assert!(PROFILE.contains("PS1='septum-linux# '"));
    }

    /// Fetches the real kernel and busybox from the Debian archive and builds the
    /// initramfs: `cargo test -p xtask linux -- --ignored`.
    #[test]
    #[ignore = "downloads from the Debian archive"]
    fn fetch_from_debian() {
        let kernel = debian_kernel().unwrap();
        let image = fs::read(&kernel.image).unwrap();
        assert_eq!(&image[56..60], b"ARM\x64");
        assert!(kernel.package.starts_with("linux-image-") && kernel.package.ends_with("-arm64-unsigned"));
        assert_eq!(debian_kernel().unwrap(), kernel, "the cached kernel differs");
        let busybox = busybox().unwrap();
        check_arm64_elf(&busybox).unwrap();
        let cpio = initramfs(None).unwrap();
        let entries = parse(&fs::read(&cpio).unwrap());
        assert!(entries.iter().any(|e| e.name == "bin/busybox" && e.data.len() > 500_000));
        let ko = &entries.iter().find(|e| e.name == "lib/modules/septum_channel.ko").unwrap().data;
        let reference = fs::read(kernel.modules.join("ext4.ko")).unwrap();
        assert_eq!(crate::kmod::vermagic(ko), crate::kmod::vermagic(&reference), "built for this kernel");
        assert_eq!(fs::read(&cpio).unwrap(), fs::read(initramfs(None).unwrap()).unwrap(), "repeatable");
    }
}

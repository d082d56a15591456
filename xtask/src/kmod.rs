//! The `septum_channel` kernel module (partitions/linux-agent/kmod/), built out of tree
//! for the exact Debian kernel the connectivity partition boots.
//!
//! Kbuild needs the kernel's build tree: Debian ships it as `linux-headers-<abi>-arm64`
//! (the configuration, `Module.symvers`, generated headers), `linux-headers-<abi>-common`
//! (the sources' headers and Makefiles) and `linux-kbuild-<major.minor>` (kbuild's
//! host programs, `fixdep` and `modpost`, for the machine that builds). xtask downloads
//! the three at the kernel's own version and unpacks them together under
//! `target/linux/kbuild-<abi>/`, where the headers' relative symlinks find the host
//! programs; the cross compiler is bookworm's `gcc-aarch64-linux-gnu`, the same GCC 12
//! Debian builds the kernel with. The module is stripped of its debug information (as
//! Debian's own are), so its bytes do not depend on where it was built, and its
//! `vermagic` must equal the kernel's modules' or `insmod` would refuse it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::linux::{self, Kernel};

/// The module's name (`<name>.ko`, `insmod` and `lsmod` use it).
pub const NAME: &str = "septum_channel";
/// Its sources, under the workspace root.
const SOURCES: &str = "partitions/linux-agent/kmod";
const FILES: &[&str] = &["septum_channel.c", "Kbuild"];
const CROSS_COMPILE: &str = "aarch64-linux-gnu-";
/// Debian's kernel Makefile calls `$(CROSS_COMPILE)gcc-12`.
const CROSS_GCC: &str = "aarch64-linux-gnu-gcc-12";
const CROSS_PACKAGE: &str = "gcc-aarch64-linux-gnu";

/// `linux-image-6.1.0-57-arm64-unsigned` → (`6.1.0-57`, `arm64`).
pub fn abi_and_flavour(package: &str) -> Option<(&str, &str)> {
    let rest = package.strip_prefix("linux-image-")?;
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    let (abi, flavour) = rest.rsplit_once('-')?;
    abi.split_once('-').is_some().then_some((abi, flavour))
}

/// `6.1.0-57` → `linux-kbuild-6.1`.
pub fn kbuild_package(abi: &str) -> Option<String> {
    let mut parts = abi.split(['.', '-']);
    let (major, minor) = (parts.next()?, parts.next()?);
    Some(format!("linux-kbuild-{major}.{minor}"))
}

/// A module's `vermagic=` string (from its `.modinfo` strings).
pub fn vermagic(ko: &[u8]) -> Option<String> {
    ko.split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"vermagic="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Builds (or finds up to date) `target/linux/septum_channel.ko` for `kernel` and
/// returns its path.
pub fn build(kernel: &Kernel) -> Result<PathBuf, String> {
    let root = crate::build::root();
    let out = linux::dir().join(format!("{NAME}.ko"));
    let record = linux::dir().join(format!("{NAME}.version"));
    let mut sources = Vec::new();
    for f in FILES {
        let p = root.join(SOURCES).join(f);
        sources.push((f, fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?));
    }
    // The module is rebuilt when its kernel or its sources change.
    let stamp = format!("{}-{:016x}", kernel.version, fingerprint(&sources));
    if out.is_file() && linux::read_record(&record).is_some_and(|(p, s)| p == kernel.package && s == stamp) {
        eprintln!("xtask: kernel module {NAME} for {} (cached)", kernel.package);
        return Ok(out);
    }
    let (abi, flavour) = abi_and_flavour(&kernel.package)
        .ok_or_else(|| format!("cannot tell the kernel ABI from package name {}", kernel.package))?;
    crate::prereq::debian_tool(CROSS_GCC, CROSS_PACKAGE)?;
    crate::prereq::debian_tool("make", "make")?;
    let headers = kbuild_tree(abi, flavour, &kernel.version)?;

    let build = linux::dir().join(format!("kmod-build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&build);
    let result = (|| {
        for (f, bytes) in &sources {
            linux::write_atomically(&build.join(f), bytes)?;
        }
        let made = Command::new("make")
            .arg("-C")
            .arg(&headers)
            .arg(format!("M={}", build.display()))
            .args(["ARCH=arm64", &format!("CROSS_COMPILE={CROSS_COMPILE}"), "modules"])
            .env_remove("MAKEFLAGS")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run make: {e}"))?;
        if !made.status.success() {
            return Err(format!(
                "building kernel module {NAME} failed ({}):\n{}{}",
                made.status,
                String::from_utf8_lossy(&made.stdout),
                String::from_utf8_lossy(&made.stderr)
            ));
        }
        let stripped = build.join(format!("{NAME}.stripped.ko"));
        crate::build::run_captured(
            Command::new(format!("{CROSS_COMPILE}strip"))
                .arg("--strip-debug")
                .arg("-o")
                .arg(&stripped)
                .arg(build.join(format!("{NAME}.ko"))),
        )?;
        let ko = fs::read(&stripped).map_err(|e| format!("{}: {e}", stripped.display()))?;
        check_vermagic(&ko, &kernel.modules)?;
        linux::write_atomically(&out, &ko)
    })();
    let _ = fs::remove_dir_all(&build);
    result?;
    linux::write_record(&record, &kernel.package, &stamp)?;
    eprintln!("xtask: kernel module {NAME} for {} (built)", kernel.package);
    Ok(out)
}

/// The module must carry the kernel's `vermagic` (release, SMP, modversions...): the
/// same string as the kernel's own modules, which xtask took from its package.
fn check_vermagic(ko: &[u8], modules: &Path) -> Result<(), String> {
    let reference = linux::MODULES
        .iter()
        .find_map(|m| fs::read(modules.join(format!("{m}.ko"))).ok())
        .and_then(|b| vermagic(&b))
        .ok_or_else(|| format!("no module with a vermagic in {}", modules.display()))?;
    match vermagic(ko) {
        Some(v) if v == reference => Ok(()),
        got => Err(format!("{NAME}.ko has vermagic {got:?}; the kernel's modules have {reference:?}")),
    }
}

/// FNV-1a over the sources' names and bytes: a cache key, not a security check.
fn fingerprint(sources: &[(&&str, Vec<u8>)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in sources {
        for &b in name.as_bytes().iter().chain([0u8].iter()).chain(bytes.iter()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The kernel's build tree (`.../usr/src/linux-headers-<abi>-<flavour>`), fetched once
/// into `target/linux/kbuild-<abi>/` at the kernel's `version`.
fn kbuild_tree(abi: &str, flavour: &str, version: &str) -> Result<PathBuf, String> {
    let root = linux::dir().join(format!("kbuild-{abi}"));
    let tree = root.join(format!("usr/src/linux-headers-{abi}-{flavour}"));
    let record = root.join("kbuild.version");
    if tree.join("Makefile").is_file() && linux::read_record(&record).is_some_and(|(_, v)| v == version) {
        return Ok(tree);
    }
    linux::ensure_arm64()?;
    let _ = fs::remove_dir_all(&root);
    let kbuild = kbuild_package(abi).ok_or_else(|| format!("cannot tell the kbuild package of ABI {abi}"))?;
    let arch_headers = format!("linux-headers-{abi}-{flavour}");
    let common = format!("linux-headers-{abi}-common");
    // Arch-specific for arm64; arch-independent; the host's own architecture.
    for (package, spec) in [
        (arch_headers.as_str(), format!("{arch_headers}:arm64={version}")),
        (common.as_str(), format!("{common}={version}")),
        (kbuild.as_str(), format!("{kbuild}={version}")),
    ] {
        linux::with_deb_spec(package, &spec, |deb, _| {
            crate::build::run_captured(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))
        })
        .map_err(|e| {
            // The archive keeps only recent kernels: a cached older one has no headers left.
            format!(
                "{e}\nthe headers must match the cached kernel ({version}); if the archive no longer has \
                 them, delete {} to fetch the current kernel",
                linux::dir().display()
            )
        })?;
    }
    // The arch tree's Makefile includes the common one by its installed, absolute path.
    let makefile = tree.join("Makefile");
    let text = fs::read_to_string(&makefile).map_err(|e| format!("{}: {e}", makefile.display()))?;
    let installed = format!("include /usr/src/{common}/");
    if !text.contains(&installed) {
        return Err(format!("{}: no `{installed}` line; Debian's packaging may have changed", makefile.display()));
    }
    let here = format!("include {}/", root.join("usr/src").join(&common).display());
    linux::write_atomically(&makefile, text.replace(&installed, &here).as_bytes())?;
    linux::write_record(&record, &arch_headers, version)?;
    eprintln!("xtask: kernel build tree {arch_headers} {version} (fetched)");
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_kernel_package() {
        assert_eq!(abi_and_flavour("linux-image-6.1.0-57-arm64-unsigned"), Some(("6.1.0-57", "arm64")));
        assert_eq!(abi_and_flavour("linux-image-6.1.0-57-cloud-arm64"), Some(("6.1.0-57-cloud", "arm64")));
        assert_eq!(abi_and_flavour("linux-image-arm64"), None);
        assert_eq!(abi_and_flavour("busybox"), None);
        assert_eq!(kbuild_package("6.1.0-57").as_deref(), Some("linux-kbuild-6.1"));
        assert_eq!(kbuild_package("6").as_deref(), None);
    }

    #[test]
    fn reads_vermagic_from_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0vermagic=6.1.0-57-arm64 SMP mod_unload modversions aarch64\0name=x\0";
        assert_eq!(vermagic(ko).as_deref(), Some("6.1.0-57-arm64 SMP mod_unload modversions aarch64"));
        assert_eq!(vermagic(b"no modinfo"), None);
    }

    #[test]
    fn the_sources_are_gpl_and_named_in_kbuild() {
        let dir = crate::build::root().join(SOURCES);
        let c = fs::read_to_string(dir.join("septum_channel.c")).unwrap();
        assert!(c.starts_with("// SPDX-License-Identifier: GPL-2.0\n"));
        assert!(c.contains("MODULE_LICENSE(\"GPL\");"));
        assert!(c.contains(&format!("\"{}\"", crate::devicetree::CHANNEL_COMPATIBLE)), "binds the DT's endpoints");
        let kbuild = fs::read_to_string(dir.join("Kbuild")).unwrap();
        assert!(kbuild.contains(&format!("obj-m := {NAME}.o")));
    }
}

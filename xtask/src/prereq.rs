//! Prerequisites on a fresh Debian bookworm machine: the Rust targets and QEMU 10
//! (from bookworm-backports: bookworm's own 7.2 lacks the boards Septum supports).
//! Installed when running as root; otherwise the exact commands are printed.

use std::process::Command;

pub const QEMU: &str = "qemu-system-aarch64";
const QEMU_MAJOR: u32 = 10;
const BACKPORTS: &str = "deb http://deb.debian.org/debian bookworm-backports main\n";
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/septum-bookworm-backports.list";

/// `rustup target add` for both bare-metal targets (RUSTUP_AUTO_INSTALL=0 on our machines).
pub fn rust_targets() -> Result<(), String> {
    let targets = [crate::build::GUEST_TARGET, crate::build::HYPERVISOR_TARGET];
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if let Ok(out) = &installed {
        let list = String::from_utf8_lossy(&out.stdout);
        if targets.iter().all(|t| list.lines().any(|l| l.trim() == *t)) {
            return Ok(());
        }
    }
    let status = Command::new("rustup")
        .arg("target")
        .arg("add")
        .args(targets)
        .current_dir(crate::build::root())
        .status()
        .map_err(|e| {
            format!("cannot run rustup ({e}); install the targets with: rustup target add {}", targets.join(" "))
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustup target add failed; run: rustup target add {}", targets.join(" ")))
    }
}

/// `rustup target add` for one more target, when a system needs it (the Linux agent's).
pub fn rust_target(target: &str) -> Result<(), String> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if installed.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == target)) {
        return Ok(());
    }
    let ok = Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(crate::build::root())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!("rustup target add {target} failed; run it by hand"))
    }
}

/// QEMU's major version, if installed.
pub fn qemu_major() -> Option<u32> {
    let out = Command::new(QEMU).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split("version ").nth(1)?;
    version.split('.').next()?.trim().parse().ok()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes sure QEMU >= 10 is there, installing it from bookworm-backports as root.
pub fn qemu() -> Result<(), String> {
    match qemu_major() {
        Some(v) if v >= QEMU_MAJOR => return Ok(()),
        found => {
            let what = found.map_or("not installed".to_string(), |v| format!("version {v}"));
            eprintln!("xtask: {QEMU} is {what}; Septum needs QEMU {QEMU_MAJOR} or later");
        }
    }
    let commands = format!(
        "echo '{}' > {BACKPORTS_LIST}\napt-get update\napt-get install -y -t bookworm-backports qemu-system-arm",
        BACKPORTS.trim()
    );
    if !is_root() {
        return Err(format!("run as root (or with sudo):\n{commands}"));
    }
    eprintln!("xtask: installing QEMU from bookworm-backports");
    let has_backports = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("bookworm-backports")));
    if !has_backports {
        std::fs::write(BACKPORTS_LIST, BACKPORTS).map_err(|e| format!("{BACKPORTS_LIST}: {e}"))?;
    }
    let ok = Command::new("apt-get").args(["update", "-qq"]).status().is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .args(["install", "-y", "-qq", "-t", "bookworm-backports", "qemu-system-arm"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    match qemu_major() {
        Some(v) if ok && v >= QEMU_MAJOR => Ok(()),
        _ => Err(format!("installing QEMU failed; the commands were:\n{commands}")),
    }
}

/// Makes sure a Debian package's command is there (`e2fsprogs`'s `mkfs.ext4`, say),
/// installing the package as root.
pub fn debian_tool(command: &str, package: &str) -> Result<(), String> {
    let found =
        |c: &str| ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| std::path::Path::new(d).join(c).is_file());
    if found(command) {
        return Ok(());
    }
    if !is_root() {
        return Err(format!("{command} is missing; run as root (or with sudo): apt-get install -y {package}"));
    }
    eprintln!("xtask: installing {package} (for {command})");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if ok && found(command) {
        Ok(())
    } else {
        Err(format!("installing {package} failed; run: apt-get install -y {package}"))
    }
}

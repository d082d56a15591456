//! A partition's data disk: a raw image holding an ext4 filesystem, which the
//! partition's Linux mounts on `/data` (the `virtio-blk-pci` disk of its PCIe host
//! bridge). Made by the host's `mkfs.ext4` (Debian's e2fsprogs, installed if missing),
//! kept under `target/disks/` across runs, so what the partition writes survives its
//! restarts and a board reset; `--fresh-disk` makes it anew.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes of a new data disk.
pub const SIZE_MIB: u64 = 64;
/// Its filesystem's label.
pub const LABEL: &str = "septum-data";

/// Where `system`'s data disk lives.
pub fn path(system: &str) -> PathBuf {
    crate::build::root().join("target").join("disks").join(format!("{system}-data.img"))
}

/// `system`'s data disk, made (empty ext4) if it is missing or `fresh`.
pub fn data_disk(system: &str, fresh: bool) -> Result<PathBuf, String> {
    let path = path(system);
    if fresh || !path.is_file() {
        make_ext4(&path, SIZE_MIB)?;
        eprintln!("xtask: data disk {} ({SIZE_MIB} MiB, ext4, new)", path.display());
    } else {
        eprintln!("xtask: data disk {} (kept)", path.display());
    }
    Ok(path)
}

/// Writes a raw image of `size_mib` MiB at `path` holding an empty ext4 filesystem.
pub fn make_ext4(path: &Path, size_mib: u64) -> Result<(), String> {
    crate::prereq::debian_tool("mkfs.ext4", "e2fsprogs")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.set_len(size_mib << 20).map_err(|e| format!("{}: {e}", path.display()))?;
    drop(file);
    crate::build::run_captured(
        Command::new("mkfs.ext4").args(["-q", "-F", "-L", LABEL, "-E", "root_owner=0:0"]).arg(path),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_disk_is_an_ext4_filesystem_of_its_size() {
        let path = std::env::temp_dir().join(format!("septum-disk-{}.img", std::process::id()));
        make_ext4(&path, 8).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, 8 << 20);
        // The ext superblock at 1024, its magic 0xEF53 at offset 56, the label at 120.
        assert_eq!(&bytes[1024 + 56..1024 + 58], &[0x53, 0xEF]);
        assert!(bytes[1024 + 120..].starts_with(LABEL.as_bytes()));
        std::fs::remove_file(&path).unwrap();
    }
}

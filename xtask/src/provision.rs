//! `cargo xtask provision`: the factory step that gives a device its identity
//! (xtask/src/fleet.rs, docs/upload.md).

use std::path::PathBuf;

use clap::builder::ValueHint;

use crate::fleet::Fleet;

/// Give a device its identity for uploading vitals, or revoke one
///
/// Makes the fleet CA once (ECDSA P-256, in --fleet), then a key pair and certificate
/// for the device (CN = ID), and writes them with the CA certificate and uplink.conf to
/// /identity/ on the device's data disk (the connectivity partition's /data). The disk
/// must not be in use by a running QEMU. --revoke puts a device's certificate on the
/// fleet's CRL, which the broker reads when it starts.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["device", "revoke"])))]
pub struct Provision {
    /// The device to provision: its ID (1 to 64 of A-Z a-z 0-9 . _ -)
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// The device whose certificate to revoke
    #[arg(long, value_name = "ID", conflicts_with_all = ["system", "disk"])]
    pub revoke: Option<String>,
    /// Whose data disk to write: target/disks/NAME-data.img, made if missing
    /// [default: qemu-virt]
    #[arg(long, value_name = "NAME", conflicts_with = "disk", value_parser = crate::args::system)]
    pub system: Option<String>,
    /// The data disk image (ext4) to write instead; made (64 MiB, empty) if missing
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub disk: Option<PathBuf>,
    /// The fleet's directory: its CA, the broker's and operator's identities, the
    /// devices' certificates and the CRL [default: target/fleet]
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub fleet: Option<PathBuf>,
}

impl Provision {
    pub fn run(&self) -> Result<(), String> {
        let fleet = Fleet::open(&self.fleet.clone().unwrap_or_else(Fleet::default_dir))?;
        if let Some(id) = &self.revoke {
            fleet.revoke(id)?;
            println!("revoked {id}: {} lists it; restart the broker to apply it", fleet.crl().display());
            return Ok(());
        }
        let Some(id) = &self.device else { return Err("--device or --revoke".into()) };
        let dev = fleet.device(id)?;
        let disk = match &self.disk {
            Some(d) if !d.exists() => {
                crate::disk::make_ext4(d, crate::disk::SIZE_MIB)?;
                d.clone()
            }
            Some(d) => d.clone(),
            None => crate::disk::data_disk(self.system.as_deref().unwrap_or("qemu-virt"), false)?,
        };
        fleet.write_to_disk(&dev, &disk)?;
        println!("provisioned {id} (certificate serial {}) on {}: /data/identity/", dev.serial, disk.display());
        Ok(())
    }
}

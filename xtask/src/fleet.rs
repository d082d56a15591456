//! The device fleet's identities (`cargo xtask provision`), as a factory makes them
//! (docs/upload.md):
//!
//! * a fleet CA (ECDSA P-256: what both rustls and the broker's OpenSSL take for
//!   client certificates), made once;
//! * per device, its own key pair and a certificate with CN = the device's ID, signed
//!   by the fleet CA, written with the CA certificate and `uplink.conf` to the device's
//!   data disk (`/data/identity/`); no two devices share a secret;
//! * the broker's server certificate (for the loopback broker: 127.0.0.1, localhost and
//!   the partition's view of it, 10.0.2.100) and an `operator` client certificate for
//!   subscribers;
//! * a CRL the broker checks client certificates against; `--revoke ID` adds a device.
//!
//! Layout of the fleet directory (default `target/fleet/`; a real factory keeps the CA
//! key offline):
//!
//! ```text
//! ca.key ca.crt crl.pem revoked      broker.{key,crt}   operator.{key,crt}
//! devices/<id>/{device.key,device.crt,serial}
//! ```
//!
//! Validity starts at the Unix epoch: the connectivity partition has no trusted clock
//! (its Linux starts at 1970 without an RTC), so validity periods cannot be relied on
//! and revocation is the CRL's job.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

/// The client identity subscribers use; no device may be named so.
pub const OPERATOR: &str = "operator";
/// Where the partition reaches the broker (QEMU `guestfwd` to the host's broker).
pub const GUEST_BROKER_PORT: u16 = 8883;

/// Whether `id` may name a device (a topic level and a CN): as the agent checks it.
pub fn valid_device_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && id != OPERATOR
}

#[derive(Debug, Clone)]
pub struct Fleet {
    pub dir: PathBuf,
}

/// One provisioned device's files in the fleet directory.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub serial: String,
}

fn not_before() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH
}

fn not_after() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 130)
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a file, private ones 0600.
fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn random_serial() -> Result<SerialNumber, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("randomness: {e}"))?;
    b[0] &= 0x7F; // positive, as RFC 5280 asks
    b[0] |= 0x01; // and 16 bytes long, never shortened
    Ok(SerialNumber::from_slice(&b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Septum fleet");
    d.push(DnType::CommonName, cn);
    d
}

fn leaf(cn: &str, eku: ExtendedKeyUsagePurpose, sans: Vec<SanType>) -> Result<(CertificateParams, String), String> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.not_before = not_before();
    p.not_after = not_after();
    let serial = random_serial()?;
    let serial_hex = hex(serial.as_ref());
    p.serial_number = Some(serial);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.subject_alt_names = sans;
    p.use_authority_key_identifier_extension = true;
    Ok((p, serial_hex))
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Fleet {
    /// `target/fleet/` in the workspace.
    pub fn default_dir() -> PathBuf {
        crate::build::root().join("target").join("fleet")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    pub fn broker_cert(&self) -> PathBuf {
        self.dir.join("broker.crt")
    }
    pub fn broker_key(&self) -> PathBuf {
        self.dir.join("broker.key")
    }
    pub fn operator_cert(&self) -> PathBuf {
        self.dir.join("operator.crt")
    }
    pub fn operator_key(&self) -> PathBuf {
        self.dir.join("operator.key")
    }
    fn device_dir(&self, id: &str) -> PathBuf {
        self.dir.join("devices").join(id)
    }

    /// Whether the fleet's CA exists (the broker can run).
    pub fn exists(&self) -> bool {
        self.ca_cert().is_file() && self.dir.join("ca.key").is_file()
    }

    /// The fleet in `dir`, its CA, CRL, broker and operator identities made if missing.
    pub fn open(dir: &Path) -> Result<Fleet, String> {
        let fleet = Fleet { dir: dir.to_path_buf() };
        if !fleet.dir.join("ca.key").is_file() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("CA key"))?;
            let cert = fleet.ca_params().self_signed(&key).map_err(rcgen_err("CA certificate"))?;
            write(&fleet.dir.join("ca.key"), &key.serialize_pem(), true)?;
            write(&fleet.ca_cert(), &cert.pem(), false)?;
            write(&fleet.dir.join("revoked"), "", false)?;
            eprintln!("xtask: fleet CA made in {} (ECDSA P-256)", fleet.dir.display());
        }
        if !fleet.crl().is_file() {
            fleet.write_crl()?;
        }
        if !fleet.broker_key().is_file() {
            let sans = vec![
                SanType::DnsName("localhost".try_into().map_err(rcgen_err("SAN"))?),
                SanType::IpAddress([127, 0, 0, 1].into()),
                SanType::IpAddress(
                    crate::qemu::GUEST_HOST_ADDR.parse::<std::net::IpAddr>().map_err(|e| e.to_string())?,
                ),
            ];
            fleet.issue(
                "septum-broker",
                ExtendedKeyUsagePurpose::ServerAuth,
                sans,
                &fleet.broker_key(),
                &fleet.broker_cert(),
            )?;
        }
        if !fleet.operator_key().is_file() {
            fleet.issue(
                OPERATOR,
                ExtendedKeyUsagePurpose::ClientAuth,
                vec![],
                &fleet.operator_key(),
                &fleet.operator_cert(),
            )?;
        }
        Ok(fleet)
    }

    fn ca_params(&self) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn("Septum fleet CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p.not_before = not_before();
        p.not_after = not_after();
        p.key_identifier_method = KeyIdMethod::Sha256;
        p
    }

    /// The CA as an issuer: its certificate made again from the same name and key (what
    /// a signature and the authority key identifier depend on).
    fn issuer(&self) -> Result<(rcgen::Certificate, KeyPair), String> {
        let key = KeyPair::from_pem(&read(&self.dir.join("ca.key"))?).map_err(rcgen_err("ca.key"))?;
        let cert = self.ca_params().self_signed(&key).map_err(rcgen_err("CA"))?;
        Ok((cert, key))
    }

    /// A fresh key pair and a certificate for it; returns the serial (hex).
    fn issue(
        &self,
        cn: &str,
        eku: ExtendedKeyUsagePurpose,
        sans: Vec<SanType>,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<String, String> {
        let (ca, ca_key) = self.issuer()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("key"))?;
        let (params, serial) = leaf(cn, eku, sans)?;
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(rcgen_err(cn))?;
        write(key_path, &key.serialize_pem(), true)?;
        write(cert_path, &cert.pem(), false)?;
        Ok(serial)
    }

    /// Device `id`'s identity, made once (a second call returns the same).
    pub fn device(&self, id: &str) -> Result<Device, String> {
        if !valid_device_id(id) {
            return Err(format!("device ID {id:?}: 1 to 64 of A-Z a-z 0-9 . _ - (and not {OPERATOR:?})"));
        }
        let dir = self.device_dir(id);
        let (key, cert, serial_path) = (dir.join("device.key"), dir.join("device.crt"), dir.join("serial"));
        if self.revoked()?.iter().any(|(_, d)| d == id) {
            return Err(format!("device {id} was revoked; provision the device under a new ID"));
        }
        if !serial_path.is_file() {
            let serial = self.issue(id, ExtendedKeyUsagePurpose::ClientAuth, vec![], &key, &cert)?;
            write(&serial_path, &format!("{serial}\n"), false)?;
            eprintln!("xtask: device {id}: new key pair and certificate (serial {serial})");
        }
        Ok(Device { id: id.to_string(), key, cert, serial: read(&serial_path)?.trim().to_string() })
    }

    /// The revoked devices: (serial hex, id).
    fn revoked(&self) -> Result<Vec<(String, String)>, String> {
        let path = self.dir.join("revoked");
        if !path.is_file() {
            return Ok(Vec::new());
        }
        Ok(read(&path)?
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.to_string()))
            })
            .collect())
    }

    /// Revokes device `id`: its serial goes on the CRL (the broker reads it when it
    /// starts).
    pub fn revoke(&self, id: &str) -> Result<(), String> {
        let serial_path = self.device_dir(id).join("serial");
        let serial =
            read(&serial_path).map_err(|_| format!("device {id} was never provisioned in {}", self.dir.display()))?;
        let mut list = self.revoked()?;
        if !list.iter().any(|(_, d)| d == id) {
            list.push((serial.trim().to_string(), id.to_string()));
        }
        let text: String = list.iter().map(|(s, d)| format!("{s} {d}\n")).collect();
        write(&self.dir.join("revoked"), &text, false)?;
        self.write_crl()
    }

    fn write_crl(&self) -> Result<(), String> {
        let (ca, ca_key) = self.issuer()?;
        let now = OffsetDateTime::now_utc();
        let revoked = self.revoked()?;
        let mut revoked_certs = Vec::new();
        for (s, _) in &revoked {
            let bytes = unhex(s).ok_or_else(|| format!("revoked: bad serial {s}"))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: not_after(),
            crl_number: SerialNumber::from((now.unix_timestamp() as u64).to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&ca, &ca_key).map_err(rcgen_err("CRL"))?;
        write(&self.crl(), &crl.pem().map_err(rcgen_err("CRL"))?, false)
    }

    /// The `uplink.conf` for device `id` in a partition.
    pub fn uplink_conf(id: &str) -> String {
        format!(
            "# Written by cargo xtask provision (docs/upload.md).\ndevice = {id}\nbroker = {}:{GUEST_BROKER_PORT}\n",
            crate::qemu::GUEST_HOST_ADDR
        )
    }

    /// Writes device `dev`'s identity and configuration to `/identity/` of the ext4
    /// image `disk` (debugfs, so no mount and no root), replacing what was there.
    pub fn write_to_disk(&self, dev: &Device, disk: &Path) -> Result<(), String> {
        crate::prereq::debian_tool("debugfs", "e2fsprogs")?;
        let scratch = self.dir.join(".disk-scratch");
        fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        let files = [
            ("device.key", read(&dev.key)?, "0100600"),
            ("device.crt", read(&dev.cert)?, "0100644"),
            ("ca.crt", read(&self.ca_cert())?, "0100644"),
            ("uplink.conf", Self::uplink_conf(&dev.id), "0100644"),
        ];
        let mut script = String::from("mkdir identity\nsif identity mode 040700\n");
        for (name, text, mode) in &files {
            let local = scratch.join(name);
            write(&local, text, true)?;
            script.push_str(&format!(
                "rm identity/{name}\nwrite {} identity/{name}\nsif identity/{name} mode {mode}\nsif identity/{name} uid 0\nsif identity/{name} gid 0\n",
                local.display()
            ));
        }
        let script_path = scratch.join("debugfs.cmd");
        write(&script_path, &script, true)?;
        let out = Command::new("debugfs").arg("-w").arg("-f").arg(&script_path).arg(disk).output();
        let _ = fs::remove_dir_all(&scratch);
        let out = out.map_err(|e| format!("debugfs: {e}"))?;
        let complaint = String::from_utf8_lossy(&out.stderr).lines().take(3).collect::<Vec<_>>().join("; ");
        if !out.status.success() {
            return Err(format!("debugfs -w {}: {complaint}", disk.display()));
        }
        // debugfs reports a failed command but exits 0: read back what must be there.
        for (name, text, _) in &files {
            let got = Command::new("debugfs")
                .arg("-R")
                .arg(format!("cat identity/{name}"))
                .arg(disk)
                .output()
                .map_err(|e| format!("debugfs: {e}"))?;
            if got.stdout != text.as_bytes() {
                return Err(format!(
                    "{}: identity/{name} did not read back as written (an ext4 image? debugfs said: {complaint})",
                    disk.display()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(what: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("septum-fleet-{what}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// NET-005: every device gets its own key pair, signed by the one fleet CA (made
    /// once); revoking a device puts it on a new CRL and refuses it a new identity.
    #[test]
    fn devices_get_their_own_keys_signed_by_the_fleet_ca_and_revocation_lists_them() {
        let dir = scratch("ids");
        let fleet = Fleet::open(&dir).unwrap();
        let ca = read(&fleet.ca_cert()).unwrap();
        let a = fleet.device("dev-a").unwrap();
        let b = fleet.device("dev-b").unwrap();
        assert_ne!(read(&a.key).unwrap(), read(&b.key).unwrap(), "no shared secret");
        assert_ne!(a.serial, b.serial);
        assert_eq!(fleet.device("dev-a").unwrap().serial, a.serial, "made once");
        assert!(Fleet::open(&dir).is_ok() && read(&fleet.ca_cert()).unwrap() == ca, "the CA is made once");
        assert!(fleet.device("operator").is_err() && fleet.device("a/b").is_err());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&a.key).unwrap().permissions().mode() & 0o777, 0o600);

        let crl_before = read(&fleet.crl()).unwrap();
        fleet.revoke("dev-a").unwrap();
        assert_ne!(read(&fleet.crl()).unwrap(), crl_before);
        assert!(read(&dir.join("revoked")).unwrap().contains(&a.serial));
        assert!(fleet.device("dev-a").unwrap_err().contains("revoked"));
        assert!(fleet.revoke("dev-z").is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    /// NET-006: the identity and uplink.conf land in the ext4 image's /identity/, and
    /// provisioning again replaces them.
    #[test]
    fn the_identity_is_written_to_an_ext4_image() {
        let dir = scratch("disk");
        let fleet = Fleet::open(&dir).unwrap();
        let dev = fleet.device("dev-1").unwrap();
        let disk = dir.join("data.img");
        crate::disk::make_ext4(&disk, 8).unwrap();
        fleet.write_to_disk(&dev, &disk).unwrap();
        // Again: replaces the files.
        fleet.write_to_disk(&dev, &disk).unwrap();
        let out = Command::new("debugfs").arg("-R").arg("cat identity/uplink.conf").arg(&disk).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("device = dev-1\nbroker = 10.0.2.100:8883\n"));
        let _ = fs::remove_dir_all(&dir);
    }
}

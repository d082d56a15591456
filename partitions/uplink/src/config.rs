//! The device's upload configuration, which provisioning (`cargo xtask provision`)
//! writes to its data disk beside its identity:
//!
//! ```text
//! /data/identity/uplink.conf   device = <id>        broker = <host>:<port>
//! /data/identity/device.crt    the device's certificate (CN = id), by the fleet CA
//! /data/identity/device.key    its private key (PKCS#8, PEM)
//! /data/identity/ca.crt        the fleet CA: the only issuer the broker is trusted from
//! ```

use std::path::{Path, PathBuf};

pub const IDENTITY_DIR: &str = "identity";
pub const CONFIG_FILE: &str = "uplink.conf";
pub const SPOOL_DIR: &str = "spool";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub device: String,
    /// Host name or IP address, as the broker's certificate names it.
    pub host: String,
    pub port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub spool: PathBuf,
}

/// Whether `id` may name a device: it becomes a topic level and the certificate's CN,
/// so no MQTT wildcard, separator or space.
pub fn valid_device_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Config {
    /// The configuration under `data` (the data disk's mount point), `Ok(None)` when the
    /// device was never provisioned.
    pub fn load(data: &Path) -> Result<Option<Config>, String> {
        let dir = data.join(IDENTITY_DIR);
        let path = dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::parse(&text, &dir, &data.join(SPOOL_DIR)).map(Some).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, identity: &Path, spool: &Path) -> Result<Config, String> {
        let (mut device, mut broker) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {}: not `key = value`", n + 1));
            };
            match key.trim() {
                "device" => device = Some(value.trim().to_string()),
                "broker" => broker = Some(value.trim().to_string()),
                other => return Err(format!("line {}: unknown key {other:?}", n + 1)),
            }
        }
        let device = device.ok_or("no `device`")?;
        if !valid_device_id(&device) {
            return Err(format!("device {device:?}: 1 to 64 of A-Z a-z 0-9 . _ -"));
        }
        let broker = broker.ok_or("no `broker`")?;
        let (host, port) = broker.rsplit_once(':').ok_or_else(|| format!("broker {broker:?}: not host:port"))?;
        let port = port.parse().map_err(|_| format!("broker {broker:?}: bad port"))?;
        if host.is_empty() {
            return Err(format!("broker {broker:?}: no host"));
        }
        Ok(Config {
            device,
            host: host.to_string(),
            port,
            cert: identity.join("device.crt"),
            key: identity.join("device.key"),
            ca: identity.join("ca.crt"),
            spool: spool.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_provisioned_file() {
        let c = Config::parse(
            "# by xtask\ndevice = dev-1\nbroker = 10.0.2.100:8883\n",
            Path::new("/d/i"),
            Path::new("/d/s"),
        )
        .unwrap();
        assert_eq!((c.device.as_str(), c.host.as_str(), c.port), ("dev-1", "10.0.2.100", 8883));
        assert_eq!(c.key, Path::new("/d/i/device.key"));
        let p = |t| Config::parse(t, Path::new("/i"), Path::new("/s")).unwrap_err();
        assert_eq!(p("broker = a:1"), "no `device`");
        assert!(p("device = a/+\nbroker = a:1").starts_with("device \"a/+\""));
        assert!(p("device = a\nbroker = a").contains("not host:port"));
        assert!(p("device = a\nbroker = a:1\nx = 1").contains("unknown key"));
        assert!(
            valid_device_id("dev-1.a_b") && !valid_device_id("") && !valid_device_id("a#") && !valid_device_id("a b")
        );
    }

    #[test]
    fn an_unprovisioned_device_has_no_config() {
        assert_eq!(Config::load(Path::new("/nonexistent-septum")), Ok(None));
    }
}

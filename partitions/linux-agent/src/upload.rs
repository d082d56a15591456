//! The agent's upload of vitals (septum-uplink, docs/upload.md), started when the
//! device was provisioned: its identity and `uplink.conf` on the data disk.

use std::path::Path;

use septum_uplink::spool::Limits;
use septum_uplink::{Config, Uplink};

/// Where the data disk is mounted (the initramfs' `/init`).
pub const DATA: &str = "/data";

/// The uploader, or `None` (said on the console) when the device has no identity or it
/// cannot start; the channel work goes on either way.
pub fn start(say: fn(&str)) -> Option<Uplink> {
    match Config::load(Path::new(DATA)) {
        Ok(None) => {
            say(&format!("septum-agent: upload off: not provisioned (no {DATA}/identity/uplink.conf)\n"));
            None
        }
        Ok(Some(config)) => match Uplink::start(config, Limits::default(), say) {
            Ok(u) => Some(u),
            Err(e) => {
                say(&format!("septum-agent: upload off: {e}\n"));
                None
            }
        },
        Err(e) => {
            say(&format!("septum-agent: upload off: {e}\n"));
            None
        }
    }
}

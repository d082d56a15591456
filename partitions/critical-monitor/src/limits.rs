//! The alarm limits, from the `alarm-limits` node of our device tree (MED-005): the
//! system description's `[partition.X.alarms]`, checked by xtask, carried in the device
//! tree the partition's manifest signs. Nothing at run time can change them: no command
//! the monitor accepts touches them.

use septum_ecg::Limits;
use septum_guest::fdt::Fdt;

/// The node's `compatible`.
pub const COMPATIBLE: &str = "septum,alarm-limits";

/// Where the limits came from, for the boot line.
pub enum Source {
    /// The standard's defaults: the description sets none.
    Defaults,
    /// The device tree's node.
    Described,
}

/// The limits the device tree gives (each property `septum,<field>`, a `u32`), over the
/// defaults; an error names what is wrong. xtask refuses such a description, so an
/// error here means a device tree not built by it.
pub fn read(dt: Option<&Fdt<'static>>) -> Result<(Limits, Source), &'static str> {
    let mut limits = Limits::default();
    let Some(node) = dt.and_then(|dt| dt.find_compatible(&[COMPATIBLE])) else {
        return Ok((limits, Source::Defaults));
    };
    for p in node.properties() {
        let Some(field) = p.name.strip_prefix("septum,") else { continue };
        let value = <[u8; 4]>::try_from(p.value).map_err(|_| "a limit is not one 32-bit cell")?;
        limits.set(field, u32::from_be_bytes(value)).map_err(|_| "an unknown limit")?;
    }
    limits.validate().map_err(|_| "the limits are inconsistent")?;
    Ok((limits, Source::Described))
}

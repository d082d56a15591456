//! Channel endpoints as Linux shows the device tree the hypervisor built for the
//! partition: `/proc/device-tree/channels/endpoint@N/`, one file per property.
//! Strings are NUL-terminated; cells are big-endian `u32`s, so the `u64` pairs
//! `septum,own` and `septum,peer` (`<ipa-hi ipa-lo size-hi size-lo>`) and the `u64`
//! `septum,doorbell` read as big-endian `u64`s. The properties are the ones
//! `xtask/src/devicetree.rs` writes (and `partitions/runtime` reads on bare metal).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The `compatible` string of a channel endpoint node.
pub const COMPATIBLE: &str = "septum,channel-endpoint-v1";

/// One end of a channel, as the device tree describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The node's name, e.g. `endpoint@0`.
    pub node: String,
    /// The channel's name (`label`), e.g. `vitals`.
    pub label: String,
    /// `producer`/`consumer` (queuing) or `writer`/`reader` (sampling).
    pub role: String,
    /// `queuing` or `sampling`.
    pub kind: String,
    /// The region this end writes (IPA, size).
    pub own: Option<(u64, u64)>,
    /// The region the peer writes (IPA, size).
    pub peer: Option<(u64, u64)>,
    /// The doorbell page this end rings to signal its peer.
    pub doorbell: u64,
    /// Queuing channels: bytes per slot and slots.
    pub slot_size: Option<u32>,
    pub depth: Option<u32>,
    /// `septum,checksum`: what the channel's messages carry ("crc32c" or "none"); a
    /// node without one means "crc32c".
    pub checksum: Option<String>,
}

/// Why the device tree could not be read.
#[derive(Debug)]
pub enum DtError {
    /// A file or directory could not be read.
    Io { path: PathBuf, error: io::Error },
    /// A property is missing or has the wrong size or encoding.
    Malformed { path: PathBuf, why: String },
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            DtError::Malformed { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

/// The channel endpoints under `dt/channels`, in unit-address order. A device tree
/// without a `/channels` node has none; `dt` itself must be readable. Nodes that are not
/// `septum,channel-endpoint-v1` are skipped.
pub fn read_endpoints(dt: &Path) -> Result<Vec<Endpoint>, DtError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| DtError::Io { path, error }
    };
    fs::read_dir(dt).map_err(io_err(dt))?;
    let channels = dt.join("channels");
    let entries = match fs::read_dir(&channels) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&channels)(e)),
    };
    let mut nodes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&channels))?;
        if entry.file_type().map_err(io_err(&entry.path()))?.is_dir() {
            nodes.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    nodes.sort_by_key(|name| (unit_address(name), name.clone()));
    let mut out = Vec::new();
    for node in nodes {
        let dir = channels.join(&node);
        let props = read_properties(&dir)?;
        let ep =
            parse_endpoint(&node, &props).map_err(|(prop, why)| DtError::Malformed { path: dir.join(prop), why })?;
        out.extend(ep);
    }
    Ok(out)
}

/// A node's properties: every regular file in its directory, by name.
fn read_properties(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, DtError> {
    let io_err = |path: &Path, error| DtError::Io { path: path.to_path_buf(), error };
    let mut props = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        if entry.file_type().map_err(|e| io_err(&path, e))?.is_file() {
            let value = fs::read(&path).map_err(|e| io_err(&path, e))?;
            props.insert(entry.file_name().to_string_lossy().into_owned(), value);
        }
    }
    Ok(props)
}

/// `endpoint@12` → 12; nodes without a (hex) unit address sort last.
fn unit_address(node: &str) -> u64 {
    node.split_once('@').and_then(|(_, a)| u64::from_str_radix(a, 16).ok()).unwrap_or(u64::MAX)
}

/// Decodes one node from its properties. `Ok(None)`: not a channel endpoint.
/// `Err((property, why))`: an endpoint with a property missing or malformed.
pub fn parse_endpoint(node: &str, props: &BTreeMap<String, Vec<u8>>) -> Result<Option<Endpoint>, (String, String)> {
    let compatible = props.get("compatible").map(|v| v.split(|&b| b == 0).any(|s| s == COMPATIBLE.as_bytes()));
    if compatible != Some(true) {
        return Ok(None);
    }
    let bad = |prop: &str, why: String| (prop.to_string(), why);
    let string = |prop: &str| -> Result<String, (String, String)> {
        let v = props.get(prop).ok_or_else(|| bad(prop, "missing".into()))?;
        let text = v.strip_suffix(&[0]).ok_or_else(|| bad(prop, "not a NUL-terminated string".into()))?;
        match std::str::from_utf8(text) {
            Ok(s) if !s.contains('\0') => Ok(s.to_string()),
            _ => Err(bad(prop, "not a single UTF-8 string".into())),
        }
    };
    let sized = |prop: &str, len: usize| -> Result<Option<&[u8]>, (String, String)> {
        match props.get(prop) {
            None => Ok(None),
            Some(v) if v.len() == len => Ok(Some(v)),
            Some(v) => Err(bad(prop, format!("{} bytes, expected {len}", v.len()))),
        }
    };
    let be64 = |b: &[u8]| b.try_into().map_or(0, u64::from_be_bytes);
    type Prop<T> = Result<Option<T>, (String, String)>;
    let pair = |prop: &str| -> Prop<(u64, u64)> { Ok(sized(prop, 16)?.map(|v| (be64(&v[..8]), be64(&v[8..])))) };
    let cell = |prop: &str| -> Prop<u32> { Ok(sized(prop, 4)?.map(|v| v.try_into().map_or(0, u32::from_be_bytes))) };
    let checksum = if props.contains_key("septum,checksum") { Some(string("septum,checksum")?) } else { None };
    Ok(Some(Endpoint {
        node: node.to_string(),
        label: string("label")?,
        role: string("septum,role")?,
        kind: string("septum,kind")?,
        own: pair("septum,own")?,
        peer: pair("septum,peer")?,
        doorbell: sized("septum,doorbell", 8)?.map(be64).ok_or_else(|| bad("septum,doorbell", "missing".into()))?,
        slot_size: cell("septum,slot-size")?,
        depth: cell("septum,depth")?,
        checksum,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system's temporary directory, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("septum-agent-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn cells(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// Writes an endpoint node the way Linux shows the one xtask builds.
    pub(crate) fn write_endpoint(dt: &Path, i: u32, label: &str, role: &str, own: (u64, u64), peer: (u64, u64)) {
        let dir = dt.join("channels").join(format!("endpoint@{i}"));
        fs::create_dir_all(&dir).unwrap();
        let split = |(a, s): (u64, u64)| cells(&[(a >> 32) as u32, a as u32, (s >> 32) as u32, s as u32]);
        let doorbell = peer.0 + peer.1 + 0x1000 * u64::from(i);
        let props: [(&str, Vec<u8>); 13] = [
            ("name", string("endpoint")),
            ("compatible", string(COMPATIBLE)),
            ("label", string(label)),
            ("septum,role", string(role)),
            ("septum,own", split(own)),
            ("septum,peer", split(peer)),
            ("septum,doorbell", cells(&[(doorbell >> 32) as u32, doorbell as u32])),
            ("septum,doorbell-intid", cells(&[90 + i])),
            ("interrupts", cells(&[0, 58 + i, 1])),
            ("septum,kind", string("queuing")),
            ("septum,slot-size", cells(&[64])),
            ("septum,depth", cells(&[64])),
            ("septum,checksum", string("crc32c")),
        ];
        for (name, value) in props {
            fs::write(dir.join(name), value).unwrap();
        }
    }

    #[test]
    fn reads_endpoints_in_unit_address_order() {
        let dt = TempDir::new("order");
        fs::write(dt.0.join("compatible"), string("linux,dummy-virt")).unwrap();
        write_endpoint(&dt.0, 10, "late", "producer", (0x1_3000_0000, 0x2000), (0x1_3000_2000, 0x1000));
        write_endpoint(&dt.0, 0, "vitals", "consumer", (0x4F01_1000, 0x1000), (0x4F00_0000, 0x11000));
        write_endpoint(&dt.0, 2, "commands", "producer", (0x4F10_0000, 0x2000), (0x4F10_2000, 0x1000));
        // Not an endpoint: skipped.
        let other = dt.0.join("channels/other@1");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("compatible"), string("vendor,thing")).unwrap();
        fs::write(dt.0.join("channels/name"), string("channels")).unwrap();

        let eps = read_endpoints(&dt.0).unwrap();
        let names: Vec<_> = eps.iter().map(|e| (e.node.as_str(), e.label.as_str())).collect();
        assert_eq!(names, [("endpoint@0", "vitals"), ("endpoint@2", "commands"), ("endpoint@10", "late")]);
        assert_eq!(
            eps[0],
            Endpoint {
                node: "endpoint@0".into(),
                label: "vitals".into(),
                role: "consumer".into(),
                kind: "queuing".into(),
                own: Some((0x4F01_1000, 0x1000)),
                peer: Some((0x4F00_0000, 0x11000)),
                doorbell: 0x4F01_1000,
                slot_size: Some(64),
                depth: Some(64),
                checksum: Some("crc32c".into()),
            }
        );
        // The high cells count.
        assert_eq!(eps[2].own, Some((0x1_3000_0000, 0x2000)));
        assert_eq!(eps[2].doorbell, 0x1_3000_3000 + 0xA000);
    }

    #[test]
    fn a_tree_without_channels_has_no_endpoints() {
        let dt = TempDir::new("empty");
        assert_eq!(read_endpoints(&dt.0).unwrap(), []);
    }

    #[test]
    fn a_missing_tree_is_an_error_naming_it() {
        let dt = TempDir::new("missing");
        let gone = dt.0.join("nonexistent");
        let e = read_endpoints(&gone).unwrap_err();
        assert!(matches!(&e, DtError::Io { path, error } if path == &gone && error.kind() == io::ErrorKind::NotFound));
        assert!(e.to_string().starts_with(&gone.display().to_string()), "{e}");
    }

    #[test]
    fn malformed_properties_are_errors_naming_the_property() {
        let dt = TempDir::new("malformed");
        write_endpoint(&dt.0, 0, "vitals", "consumer", (0x4F01_1000, 0x1000), (0x4F00_0000, 0x11000));
        let own = dt.0.join("channels/endpoint@0/septum,own");
        fs::write(&own, cells(&[0x4F01_1000, 0x1000])).unwrap();
        let e = read_endpoints(&dt.0).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: 8 bytes, expected 16", own.display()));

        fs::write(&own, cells(&[0, 0x4F01_1000, 0, 0x1000])).unwrap();
        let label = dt.0.join("channels/endpoint@0/label");
        fs::write(&label, b"vitals").unwrap();
        let e = read_endpoints(&dt.0).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: not a NUL-terminated string", label.display()));

        fs::write(&label, string("vitals")).unwrap();
        fs::remove_file(dt.0.join("channels/endpoint@0/septum,doorbell")).unwrap();
        let e = read_endpoints(&dt.0).unwrap_err();
        assert!(e.to_string().ends_with("septum,doorbell: missing"), "{e}");
    }

    #[test]
    fn parses_a_property_map_without_files() {
        let mut props = BTreeMap::new();
        props.insert("compatible".to_string(), [string("x,y"), string(COMPATIBLE)].concat());
        props.insert("label".into(), string("commands"));
        props.insert("septum,role".into(), string("writer"));
        props.insert("septum,kind".into(), string("sampling"));
        props.insert("septum,own".into(), cells(&[0, 0x5000_0000, 0, 0x1000]));
        props.insert("septum,doorbell".into(), cells(&[0, 0x5000_1000]));
        let ep = parse_endpoint("endpoint@3", &props).unwrap().unwrap();
        assert_eq!((ep.role.as_str(), ep.own, ep.peer, ep.depth), ("writer", Some((0x5000_0000, 0x1000)), None, None));
        assert_eq!(ep.checksum, None, "no septum,checksum: the default");
        props.insert("septum,checksum".into(), string("none"));
        assert_eq!(parse_endpoint("endpoint@3", &props).unwrap().unwrap().checksum.as_deref(), Some("none"));
        props.insert("compatible".into(), string("x,y"));
        assert_eq!(parse_endpoint("endpoint@3", &props), Ok(None));
    }
}

//! `cargo xtask inspect`: a bundle or a single signed envelope, in human form, with
//! every check that can be made offline marked OK or FAILED: signatures (strict
//! ed25519, by their own keys), thresholds against the root chain the bundle carries,
//! images and device trees against their manifests, manifests against the
//! configuration.

use std::fmt::Display;

use septum_abi::bundle::{Bundle, EntryKind, BUNDLE_MAGIC};
use septum_abi::config::{BoardId, ConfigHeader, CONFIG_MAGIC};
use septum_trust::format::{field_str, root_flags, Envelope, KeyEntry, Kind, Manifest, RootBody, ENVELOPE_MAGIC};
use septum_trust::hash::{self, Hash};
use zerocopy::FromBytes;

use super::{
    approvals, config_partitions, hex, listed_role, placement, role_keys, root_keys, signature_valid, verify_bundle,
};

/// Hex digits of a key shown (its first 8 bytes).
const KEY_PREFIX: usize = 8;

/// What `inspect` found: the text to print and how many checks failed.
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub failures: usize,
    pub checks: usize,
}

impl Report {
    fn line(&mut self, depth: usize, text: impl Display) {
        self.text.push_str(&format!("{:width$}{text}\n", "", width = depth * 2));
    }

    fn check(&mut self, depth: usize, what: impl Display, ok: bool, failure: impl Display) {
        self.checks += 1;
        if ok {
            self.line(depth, format!("{what}: OK"));
        } else {
            self.failures += 1;
            self.line(depth, format!("{what}: FAILED ({failure})"));
        }
    }
}

/// Describes `bytes`, a boot bundle or one signed envelope. A bundle is also verified
/// as the hypervisor verifies it at boot, from `anchor` (the SHA-512 of the genesis
/// body a hypervisor was built with) or, without one, from its own genesis.
pub fn inspect(bytes: &[u8], anchor: Option<&Hash>) -> Report {
    let mut r = Report::default();
    if bytes.starts_with(&BUNDLE_MAGIC) {
        bundle(&mut r, bytes);
        boot_check(&mut r, bytes, anchor);
    } else if bytes.starts_with(&ENVELOPE_MAGIC) {
        match Envelope::parse(bytes) {
            Ok(env) => {
                envelope(&mut r, 0, &env, &Context::default());
                if let Some(root) = env.root() {
                    self_threshold(&mut r, 1, &env, &root);
                } else {
                    r.line(
                        1,
                        "signers' authority is not checked here: inspect the bundle to check it against the root",
                    );
                }
            }
            Err(e) => r.check(0, "signed envelope", false, e),
        }
    } else {
        r.check(0, "format", false, "neither a boot bundle (SEPTBNDL) nor a signed envelope (SEPTSIGN)");
    }
    if r.failures == 0 {
        r.line(0, format!("all {} checks OK", r.checks));
    } else {
        r.line(0, format!("{} of {} checks FAILED", r.failures, r.checks));
    }
    r
}

fn boot_check(r: &mut Report, bytes: &[u8], anchor: Option<&Hash>) {
    let genesis = Bundle::parse(bytes).ok().and_then(|b| b.payload(EntryKind::Root, 0).ok());
    let own = genesis.and_then(|g| Envelope::parse(g).ok()).map(|e| hash::sha512(e.body));
    let (anchor, whose) = match (anchor, own) {
        (Some(a), _) => (*a, "the given anchor"),
        (None, Some(a)) => (a, "its own genesis (give --anchor FILE to check a built hypervisor's)"),
        (None, None) => return,
    };
    let result = verify_bundle(bytes, &anchor, false);
    let what = format!("verified as at boot (fresh counters), trusting {whose}");
    r.check(0, what, result.is_ok(), result.err().unwrap_or_default());
}

/// What the rest of a bundle tells about one envelope.
#[derive(Default)]
struct Context<'a> {
    /// The root in force (the chain's last document).
    root: Option<RootBody>,
    config: Option<&'a [u8]>,
    /// Partition index, and its image and device tree as bundled.
    partition: Option<Bundled<'a>>,
}

/// A partition's payloads in a bundle (`None`: missing or corrupted).
#[derive(Clone, Copy)]
struct Bundled<'a> {
    index: u32,
    image: Option<&'a [u8]>,
    dtb: Option<&'a [u8]>,
}

fn bundle(r: &mut Report, bytes: &[u8]) {
    let b = match Bundle::parse(bytes) {
        Ok(b) => b,
        Err(e) => return r.check(0, "bundle", false, e),
    };
    r.check(0, format!("bundle: {} bytes, {} entries, header CRC", b.len(), b.entries().len()), true, "");
    let payload = |kind: EntryKind, i: u32| b.payload(kind, i).ok();
    let chain: Vec<&[u8]> = (0..).map_while(|i| payload(EntryKind::Root, i)).collect();
    let roots: Vec<Option<RootBody>> = chain.iter().map(|c| Envelope::parse(c).ok().and_then(|e| e.root())).collect();
    let in_force = roots.last().copied().flatten();
    let config = payload(EntryKind::Config, 0).and_then(|c| Envelope::parse(c).ok()).map(|e| e.body);
    for (i, e) in b.entries().iter().enumerate() {
        let kind = EntryKind::from_u32(e.kind);
        let what = match kind {
            Some(EntryKind::Root) if e.partition == 0 => "Root #0 (genesis)".to_string(),
            Some(EntryKind::Root) => format!("Root #{}", e.partition),
            Some(EntryKind::Config) => "Config".to_string(),
            Some(k) => format!("{k:?} of partition #{}{}", e.partition, config_name(config, e.partition)),
            None => format!("unknown kind {}", e.kind),
        };
        let data = b.entry_payload(i);
        r.check(0, format!("entry #{i}: {what}, {} bytes, CRC", e.len), data.is_ok(), "corrupted");
        let (Ok(data), Some(kind)) = (data, kind) else { continue };
        match kind {
            EntryKind::Image | EntryKind::DeviceTree => r.line(1, format!("SHA-512 {}", hex(&hash::sha512(data)))),
            EntryKind::Root | EntryKind::Config | EntryKind::Manifest => {
                let env = match Envelope::parse(data) {
                    Ok(env) => env,
                    Err(e) => {
                        r.check(1, "signed envelope", false, e);
                        continue;
                    }
                };
                let expected = match kind {
                    EntryKind::Root => Kind::Root,
                    EntryKind::Config => Kind::Config,
                    _ => Kind::Manifest,
                };
                if env.kind != expected {
                    r.check(1, "envelope kind", false, format!("{:?} in a {kind:?} entry", env.kind));
                    continue;
                }
                let root =
                    if kind == EntryKind::Root { roots.get(e.partition as usize).copied().flatten() } else { in_force };
                let bundled = Bundled {
                    index: e.partition,
                    image: payload(EntryKind::Image, e.partition),
                    dtb: payload(EntryKind::DeviceTree, e.partition),
                };
                let cx = Context { root, config, partition: Some(bundled) };
                envelope(r, 1, &env, &cx);
                authority(r, &env, kind, e.partition, &roots, in_force);
            }
        }
    }
    if chain.is_empty() {
        r.check(0, "root chain", false, "the bundle carries no root document");
    }
}

/// The `" (name)"` of partition `index` in a configuration body, if it says.
fn config_name(config: Option<&[u8]>, index: u32) -> String {
    config_partitions(config.unwrap_or_default())
        .get(index as usize)
        .map_or_else(String::new, |p| format!(" ({})", septum_abi::name_str(&p.name)))
}

/// Whether the signers of a bundle's envelope hold the authority it needs.
fn authority(
    r: &mut Report,
    env: &Envelope<'_>,
    kind: EntryKind,
    position: u32,
    roots: &[Option<RootBody>],
    in_force: Option<RootBody>,
) {
    match kind {
        EntryKind::Root => {
            let Some(root) = roots.get(position as usize).copied().flatten() else { return };
            self_threshold(r, 1, env, &root);
            if let Some(prev) = position.checked_sub(1).and_then(|p| roots.get(p as usize).copied().flatten()) {
                let n = approvals(env, root_keys(&prev), prev.min_key_version);
                r.check(
                    1,
                    format!("rotation: signed by {n} of the previous root's keys, threshold {}", prev.threshold),
                    n >= prev.threshold as usize,
                    "too few",
                );
                r.check(
                    1,
                    format!("rotation: version {} after {}", root.version, prev.version),
                    root.version > prev.version,
                    "versions must increase",
                );
            }
        }
        EntryKind::Config => {
            let Some(root) = in_force else { return r.check(1, "root threshold", false, "no root document") };
            let n = approvals(env, root_keys(&root), root.min_key_version);
            r.check(
                1,
                format!("signed by {n} root keys, threshold {}", root.threshold),
                n >= root.threshold as usize && root.threshold > 0,
                "too few",
            );
        }
        _ => {
            let Some(root) = in_force else { return r.check(1, "release threshold", false, "no root document") };
            let Some(m) = env.manifest() else { return };
            let name = field_str(&m.partition);
            let Some(role) = listed_role(&root, name) else {
                return r.check(1, format!("release role {name}"), false, "the root in force lists no such role");
            };
            let n = approvals(env, role_keys(role), role.min_key_version);
            r.check(
                1,
                format!("signed by {n} keys of release role {name}, threshold {}", role.threshold),
                n >= role.threshold as usize && role.threshold > 0,
                "too few",
            );
        }
    }
}

fn self_threshold(r: &mut Report, depth: usize, env: &Envelope<'_>, root: &RootBody) {
    let n = approvals(env, root_keys(root), root.min_key_version);
    r.check(
        depth,
        format!("signed by {n} of its own root keys, threshold {}", root.threshold),
        n >= root.threshold as usize && root.threshold > 0,
        "too few",
    );
}

fn key(k: &[u8; 32]) -> String {
    hex(&k[..KEY_PREFIX])
}

fn keys_text(keys: &[KeyEntry]) -> String {
    keys.iter().map(|k| format!("{} (key version {})", key(&k.public), k.key_version)).collect::<Vec<_>>().join(", ")
}

/// An envelope's body and signatures.
fn envelope(r: &mut Report, depth: usize, env: &Envelope<'_>, cx: &Context<'_>) {
    r.line(
        depth,
        format!("{:?} envelope: body {} bytes, {} signatures", env.kind, env.body.len(), env.signature_count()),
    );
    let d = depth + 1;
    match env.kind {
        Kind::Root => match env.root() {
            Some(root) => root_text(r, d, &root, env),
            None => r.check(d, "root document", false, "body is not a root document"),
        },
        Kind::Config => config_text(r, d, env.body),
        Kind::Manifest => match env.manifest() {
            Some(m) => manifest_text(r, d, &m, cx),
            None => r.check(d, "manifest", false, "body is not a manifest"),
        },
    }
    for sig in env.signatures() {
        let whose = cx.root.as_ref().map_or_else(String::new, |root| signer_role(root, &sig.key));
        r.check(d, format!("signature by {}{whose}", key(&sig.key)), signature_valid(env, &sig), "invalid signature");
    }
}

/// `" (root key)"`, `" (release key of NAME)"` or `" (key not listed by the root)"`.
fn signer_role(root: &RootBody, signer: &[u8; 32]) -> String {
    if root_keys(root).iter().any(|k| &k.public == signer) {
        return " (root key)".into();
    }
    let roles = &root.roles[..(root.role_count as usize).min(septum_trust::MAX_ROLES)];
    match roles.iter().find(|role| role_keys(role).iter().any(|k| &k.public == signer)) {
        Some(role) => format!(" (release key of {})", field_str(&role.name)),
        None => " (key not listed by the root)".into(),
    }
}

fn root_text(r: &mut Report, d: usize, root: &RootBody, env: &Envelope<'_>) {
    let dev = root.flags & root_flags::DEVELOPMENT != 0;
    let flags = if dev { "DEVELOPMENT".to_string() } else { format!("{:#x}", root.flags) };
    r.line(d, format!("root document version {}, flags {flags}", root.version));
    if dev {
        r.line(d, "!!! DEVELOPMENT ROOT: its keys come from published seeds; anyone can sign with them.");
        r.line(d, "!!! A production hypervisor refuses it.");
    }
    r.line(
        d,
        format!(
            "root keys: threshold {} of {}, min key version {}: {}",
            root.threshold,
            root_keys(root).len(),
            root.min_key_version,
            keys_text(root_keys(root))
        ),
    );
    for role in &root.roles[..(root.role_count as usize).min(septum_trust::MAX_ROLES)] {
        r.line(
            d,
            format!(
                "release role {}: threshold {} of {}, min key version {}: {}",
                field_str(&role.name),
                role.threshold,
                role_keys(role).len(),
                role.min_key_version,
                keys_text(role_keys(role))
            ),
        );
    }
    r.line(d, format!("SHA-512 of this body (the anchor, if genesis): {}", hex(&hash::sha512(env.body))));
}

fn config_text(r: &mut Report, d: usize, body: &[u8]) {
    let header = ConfigHeader::read_from_prefix(body).ok().map(|(h, _)| h);
    match header {
        Some(h) if h.magic == CONFIG_MAGIC => {
            let board = BoardId::from_u32(h.board).map_or_else(|| format!("#{}", h.board), |b| b.name().to_string());
            let names: Vec<String> =
                config_partitions(body).iter().map(|p| septum_abi::name_str(&p.name).to_string()).collect();
            r.line(d, format!("configuration for {board}: {} partitions ({})", h.partition_count, names.join(", ")));
        }
        _ => r.line(d, "body is not a Septum configuration (magic)"),
    }
    r.line(d, format!("configuration SHA-512 {}", hex(&hash::sha512(body))));
}

fn manifest_text(r: &mut Report, d: usize, m: &Manifest, cx: &Context<'_>) {
    let name = field_str(&m.partition);
    r.line(d, format!("partition: {name}"));
    r.line(d, format!("board: {}", field_str(&m.board_id)));
    r.line(d, format!("version: {}.{}.{}", m.version_major, m.version_minor, m.version_patch));
    r.line(d, format!("security counter: {}", m.security_counter));
    r.line(d, format!("image: {} bytes, load {:#x}, entry {:#x}", m.image_len, m.load_ipa, m.entry_ipa));
    r.line(d, format!("image SHA-512: {}", hex(&m.image_hash)));
    r.line(d, format!("device tree: {} bytes, load {:#x}", m.dtb_len, m.dtb_ipa));
    r.line(d, format!("device tree SHA-512: {}", hex(&m.dtb_hash)));
    r.line(d, format!("config SHA-512: {}", hex(&m.config_hash)));
    if let Some(Bundled { index, image, dtb }) = cx.partition {
        for (what, bytes, len, digest) in
            [("image", image, m.image_len, &m.image_hash), ("device tree", dtb, m.dtb_len, &m.dtb_hash)]
        {
            match bytes {
                Some(b) => {
                    let ok = b.len() as u64 == len && hash::equal(&hash::sha512(b), digest);
                    r.check(
                        d,
                        format!("{what} #{index} matches (length and SHA-512)"),
                        ok,
                        format!("the {what} is not the one signed"),
                    );
                }
                None => r.check(d, format!("{what} #{index}"), false, "missing from the bundle, or corrupted"),
            }
        }
        if let Some(config) = cx.config {
            let ok = hash::equal(&hash::sha512(config), &m.config_hash);
            r.check(d, "config hash matches the bundled configuration", ok, "signed for another configuration");
            let desc = config_partitions(config).get(index as usize).copied();
            let named = desc.as_ref().map(|p| septum_abi::name_str(&p.name).to_string());
            r.check(
                d,
                format!("partition #{index} of the configuration is {name}"),
                named.as_deref() == Some(name),
                format!("it is {}", named.as_deref().unwrap_or("absent")),
            );
            if let Some(p) = desc {
                let at = placement(&p);
                let signed = (m.load_ipa, m.entry_ipa, m.dtb_ipa);
                r.check(
                    d,
                    "image, entry and device tree addresses are the configuration's",
                    signed == (at.load_ipa, at.entry_ipa, at.dtb_ipa),
                    format!(
                        "the configuration says load {:#x}, entry {:#x}, device tree {:#x}",
                        at.load_ipa, at.entry_ipa, at.dtb_ipa
                    ),
                );
            }
            let board = ConfigHeader::read_from_prefix(config).ok().and_then(|(h, _)| BoardId::from_u32(h.board));
            r.check(
                d,
                format!("board {} is the configuration's", field_str(&m.board_id)),
                board.is_some_and(|b| b.name() == field_str(&m.board_id)),
                format!("the configuration is for {}", board.map_or("an unknown board", BoardId::name)),
            );
        }
    }
}

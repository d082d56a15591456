//! The chain-of-trust commands of `cargo xtask`: keygen, sign, root, inspect,
//! audit-verify. Each takes the words after the command name.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use septum_trust::format::{Envelope, Kind};

use super::{
    add_signatures, hex, random_key, read_key, rotate_root, sign_envelope, unhex, DEV_RELEASE_KEYS, DEV_ROOT_KEYS,
    ROOT_ROLE,
};
use crate::{build, system};

/// Parsed `--flag value` words; every flag must be one the command knows.
#[derive(Debug)]
pub struct Args {
    pairs: Vec<(String, String)>,
    /// Words that are not flags.
    pub free: Vec<String>,
}

impl Args {
    /// Splits `args` into `--flag value` pairs (`switches` take no value) and free words.
    pub fn parse(args: &[String], flags: &[&str], switches: &[&str]) -> Result<Self, String> {
        let mut out = Self { pairs: Vec::new(), free: Vec::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if switches.contains(&a.as_str()) {
                out.pairs.push((a.clone(), String::new()));
            } else if flags.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                out.pairs.push((a.clone(), v.clone()));
            } else if a.starts_with("--") {
                return Err(format!("unknown option {a}"));
            } else {
                out.free.push(a.clone());
            }
        }
        Ok(out)
    }

    pub fn get(&self, flag: &str) -> Option<&str> {
        self.pairs.iter().find(|(f, _)| f == flag).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, flag: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(f, _)| f == flag).map(|(_, v)| v.as_str()).collect()
    }

    pub fn has(&self, flag: &str) -> bool {
        self.pairs.iter().any(|(f, _)| f == flag)
    }

    fn need(&self, flag: &str) -> Result<&str, String> {
        self.get(flag).ok_or_else(|| format!("give {flag}"))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Creates `path` with `mode` from the start (never briefly more readable), refusing to
/// replace an existing file.
pub fn create_new(path: &Path, mode: u32, contents: &[u8]) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(contents).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes fresh random keys `<role>-<n>.key` (hex seed, mode 0600) and `<role>-<n>.pub`
/// (hex public key, 0644) into `dir` for each `(role, count)`; refuses to replace any.
/// Returns the files written.
pub fn generate_keys(dir: &Path, roles: &[(String, u32)]) -> Result<Vec<PathBuf>, String> {
    let mut planned = Vec::new();
    for (role, count) in roles {
        if role.is_empty() || role.contains(['/', '.']) {
            return Err(format!("role name \"{role}\" cannot be part of a file name"));
        }
        for n in 1..=*count {
            let key = dir.join(format!("{role}-{n}.key"));
            let public = dir.join(format!("{role}-{n}.pub"));
            for p in [&key, &public] {
                if p.exists() {
                    return Err(format!("{}: already exists; keys are never overwritten", p.display()));
                }
            }
            planned.push((key, public));
        }
    }
    // Only its owner may list or enter a directory of private keys.
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (key_path, pub_path) in planned {
        let key: SigningKey = random_key()?;
        create_new(&key_path, 0o600, format!("{}\n", hex(key.as_bytes())).as_bytes())?;
        create_new(&pub_path, 0o644, format!("{}\n", hex(key.verifying_key().as_bytes())).as_bytes())?;
        written.extend([key_path, pub_path]);
    }
    Ok(written)
}

/// `keygen --out DIR [--system NAME | --role NAME [--count N]]`.
pub fn keygen(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["--out", "--role", "--count", "--system"], &[])?;
    let dir = PathBuf::from(a.need("--out")?);
    let roles = match a.get("--role") {
        Some(role) => {
            let default = if role == ROOT_ROLE { DEV_ROOT_KEYS } else { DEV_RELEASE_KEYS };
            let count = match a.get("--count") {
                Some(c) => c
                    .parse()
                    .ok()
                    .filter(|&n| (1..=septum_trust::MAX_KEYS as u32).contains(&n))
                    .ok_or_else(|| format!("--count {c}: give 1 to {} keys", septum_trust::MAX_KEYS))?,
                None => default,
            };
            vec![(role.to_string(), count)]
        }
        None => {
            let name = a.get("--system").unwrap_or("qemu-virt");
            let sys = system::load(&build::system_path(name)).map_err(build::join_errors)?;
            let mut roles = vec![(ROOT_ROLE.to_string(), DEV_ROOT_KEYS)];
            roles.extend(sys.partitions.iter().map(|p| (p.name.clone(), DEV_RELEASE_KEYS)));
            roles
        }
    };
    let written = generate_keys(&dir, &roles)?;
    for p in &written {
        println!("wrote {}", p.display());
    }
    println!("keep the .key files secret (and offline); the .pub files may be shared");
    Ok(())
}

fn kind(text: &str) -> Result<Kind, String> {
    match text {
        "root" => Ok(Kind::Root),
        "config" => Ok(Kind::Config),
        "manifest" => Ok(Kind::Manifest),
        other => Err(format!("--kind {other}: use root, config or manifest")),
    }
}

/// `sign --kind K --body FILE --key KEY... --out FILE` (FILE may be an envelope: its
/// body is signed afresh), or `sign --add KEY... --to ENVELOPE [--out FILE]`.
pub fn sign(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["--kind", "--body", "--key", "--out", "--add", "--to"], &[])?;
    let load = |flag: &str| a.all(flag).into_iter().map(|k| read_key(Path::new(k))).collect::<Result<Vec<_>, _>>();
    if let Some(to) = a.get("--to") {
        let keys = load("--add")?;
        if keys.is_empty() {
            return Err("give --add KEYFILE for each signature to add".into());
        }
        let to = Path::new(to);
        let before = read(to)?;
        let refs: Vec<&SigningKey> = keys.iter().collect();
        let after = add_signatures(&before, &refs).map_err(|e| format!("{}: {e}", to.display()))?;
        let out = a.get("--out").map_or(to, Path::new);
        write(out, &after)?;
        let count = |b: &[u8]| Envelope::parse(b).map_or(0, |e| e.signature_count());
        println!("{}: {} signatures (was {})", out.display(), count(&after), count(&before));
        return Ok(());
    }
    let body_path = Path::new(a.need("--body")?);
    let mut body = read(body_path)?;
    let mut kind = a.get("--kind").map(kind).transpose()?;
    // An envelope given as the body is re-signed: its body, signed afresh.
    if let Ok(env) = Envelope::parse(&body) {
        if kind.is_some_and(|k| k != env.kind) {
            return Err(format!("{}: holds a {:?} envelope, not --kind {kind:?}", body_path.display(), env.kind));
        }
        kind = Some(env.kind);
        body = env.body.to_vec();
    }
    let kind = kind.ok_or("give --kind root|config|manifest")?;
    let keys = load("--key")?;
    if keys.is_empty() {
        return Err("give --key KEYFILE (once per signer)".into());
    }
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let out = Path::new(a.need("--out")?);
    let envelope = sign_envelope(kind, &body, &refs).map_err(|e| format!("{}: {e}", body_path.display()))?;
    write(out, &envelope)?;
    println!("{}: {kind:?} envelope, {} signatures", out.display(), refs.len());
    Ok(())
}

/// `root --keys DIR --version N [--previous ENVELOPE [--old-keys DIR]] --out FILE`.
pub fn root(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["--keys", "--version", "--previous", "--old-keys", "--out"], &[])?;
    let dir = Path::new(a.need("--keys")?);
    let version: u32 = a.need("--version")?.parse().map_err(|_| "--version takes a number".to_string())?;
    let previous = a.get("--previous").map(|p| read(Path::new(p))).transpose()?;
    if let (Some(file), Some(bytes)) = (a.get("--previous"), &previous) {
        let env = Envelope::parse(bytes).map_err(|e| format!("{file}: {e}"))?;
        env.root().ok_or_else(|| format!("{file}: a {:?} envelope, not a root document", env.kind))?;
    }
    let out = Path::new(a.need("--out")?);
    let (envelope, missing) = rotate_root(dir, version, previous.as_deref(), a.get("--old-keys").map(Path::new))?;
    write(out, &envelope)?;
    println!("{}: root document version {version}", out.display());
    if missing > 0 {
        println!(
            "it needs {missing} more signature(s) by the previous root's keys: \
             cargo xtask sign --add OLD-KEY --to {}",
            out.display()
        );
    }
    Ok(())
}

/// `inspect FILE [--anchor HEXFILE]`: exits non-zero if a check failed.
pub fn inspect(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["--anchor"], &[])?;
    let [file] = a.free.as_slice() else { return Err("give one file: cargo xtask inspect FILE".into()) };
    let anchor = match a.get("--anchor") {
        None => None,
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
            let bytes = unhex(&text).and_then(|b| <[u8; 64]>::try_from(b).ok());
            Some(bytes.ok_or_else(|| format!("{f}: not 128 hex digits (a root-anchor.hex)"))?)
        }
    };
    let path = Path::new(file);
    let report = super::inspect::inspect(&read(path)?, anchor.as_ref());
    println!("{}:", path.display());
    print!("{}", report.text);
    if report.failures == 0 {
        Ok(())
    } else {
        Err(format!("{}: {} of {} checks failed", path.display(), report.failures, report.checks))
    }
}

/// `audit-verify FILE [--records] [--previous EARLIER.bin | --after SEQ:HASH]`: checks
/// a dump of the hypervisor's flash bank: its audit log's hash chain
/// (`septum_trust::audit::verify_bank`) and where its history begins
/// (`septum_trust::history`), and prints its head (`SEQ:HASH`, to note down). With an
/// earlier dump, or a head noted from one, it also checks that this log continues it.
/// Exits non-zero if a record is broken or the history restarted (a boot count that
/// fell, or a log that does not hold the earlier head). `--records` also lists every
/// record, oldest first.
pub fn audit_verify(args: &[String]) -> Result<(), String> {
    use septum_trust::flash::BLOCK_SIZE;
    use septum_trust::{audit, history};

    let a = Args::parse(args, &["--previous", "--after"], &["--records"])?;
    let [file] = a.free.as_slice() else { return Err("give one file: cargo xtask audit-verify FILE".into()) };
    let path = Path::new(file);
    let bank = read(path)?;
    let d = path.display();
    let earlier = match (a.get("--previous"), a.get("--after")) {
        (Some(_), Some(_)) => return Err("give --previous FILE or --after SEQ:HASH, not both".into()),
        (Some(old), None) => earlier_head(Path::new(old))?,
        (None, Some(text)) => Some((format!("--after {text}"), parse_head(text)?)),
        (None, None) => None,
    };
    let log_area = history::log_area(&bank, BLOCK_SIZE);
    if a.has("--records") {
        for (slot, record) in audit::records(log_area) {
            match record {
                Ok(r) => println!("slot {slot}: {r}"),
                Err(e) => println!("slot {slot}: invalid: {e}"),
            }
        }
    }
    let report = audit::verify_bank(&bank);
    println!("{d}: {report}");
    let found = history::of_bank(&bank);
    println!("{d}: {found}");
    match found.head {
        Some(h) => println!(
            "{d}: head {} (boot #{}): check a later dump against it with --after {} or --previous {d}",
            head_text(&h),
            h.boot.unwrap_or(0),
            head_text(&h)
        ),
        None => println!("{d}: no head: the log is empty"),
    }
    let continuity = earlier.map(|(whose, head)| (whose, history::continuity(&head, log_area, BLOCK_SIZE)));
    if let Some((whose, c)) = &continuity {
        println!("{d}: against {whose}: {c}");
    }
    if !report.is_intact() {
        return Err(format!("{d}: the audit log is broken"));
    }
    if found.restarted() {
        return Err(format!("{d}: history restarted: {found}"));
    }
    match continuity {
        Some((whose, history::Continuity::Restarted(r))) => Err(format!("{d}: history restarted against {whose}: {r}")),
        _ => Ok(()),
    }
}

/// The head of an earlier dump, which must itself verify; `None` if its log is empty
/// (any later log continues it).
fn earlier_head(path: &Path) -> Result<Option<(String, septum_trust::history::Head)>, String> {
    let bank = read(path)?;
    let report = septum_trust::audit::verify_bank(&bank);
    if !report.is_intact() {
        return Err(format!("{}: the earlier dump is broken ({report}); it cannot vouch for a head", path.display()));
    }
    let head = septum_trust::history::of_bank(&bank).head;
    if head.is_none() {
        println!("{}: the earlier dump's log is empty: nothing to continue", path.display());
    }
    Ok(head.map(|h| (path.display().to_string(), h)))
}

/// `SEQ:HASH`: a record's sequence number and its 128 hex digits of SHA-512.
fn head_text(h: &septum_trust::history::Head) -> String {
    format!("{}:{}", h.seq, hex(&h.hash))
}

/// Reads [`head_text`]'s form (a leading `#` is allowed).
pub fn parse_head(text: &str) -> Result<septum_trust::history::Head, String> {
    let bad =
        || format!("--after {text}: give SEQ:HASH, as audit-verify prints a head (a number, a colon, 128 hex digits)");
    let (seq, digits) = text.trim().split_once(':').ok_or_else(bad)?;
    let seq = seq.trim_start_matches('#').parse().map_err(|_| bad())?;
    let hash = unhex(digits).and_then(|b| <[u8; 64]>::try_from(b).ok()).ok_or_else(bad)?;
    Ok(septum_trust::history::Head { seq, hash, boot: None })
}

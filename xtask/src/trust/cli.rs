//! The chain-of-trust commands of `cargo xtask`: keygen, sign, root, inspect,
//! audit-verify. Each is declared here (clap) beside what it does, and run by its
//! `run`.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use clap::{ValueEnum, ValueHint};
use ed25519_dalek::SigningKey;
use septum_trust::format::{Envelope, Kind};
use septum_trust::history::Head;

use super::{
    add_signatures, hex, random_key, read_key, rotate_root, sign_envelope, unhex, DEV_RELEASE_KEYS, DEV_ROOT_KEYS,
    ROOT_ROLE,
};
use crate::{args, build, system};

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

/// Fresh random keys: DIR/ROLE-N.key (secret, mode 0600) and DIR/ROLE-N.pub
///
/// By default the roles of a system: 3 root keys and 2 per partition. Keys are never
/// overwritten.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Keygen {
    /// The directory to write the keys into (created, mode 0700)
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub out: PathBuf,
    /// Keys for the roles of this system: root and each partition [default: qemu-virt]
    #[arg(long, value_name = "NAME", value_parser = args::system, conflicts_with = "role")]
    pub system: Option<String>,
    /// Keys for one role only (`root`, or a partition's name)
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// How many keys of --role [default: 3 for root, 2 for a partition]
    #[arg(long, value_name = "N", requires = "role",
          value_parser = clap::value_parser!(u32).range(1..=septum_trust::MAX_KEYS as i64))]
    pub count: Option<u32>,
}

impl Keygen {
    pub fn run(&self) -> Result<(), String> {
        let roles = match &self.role {
            Some(role) => {
                let default = if role == ROOT_ROLE { DEV_ROOT_KEYS } else { DEV_RELEASE_KEYS };
                vec![(role.clone(), self.count.unwrap_or(default))]
            }
            None => {
                let name = self.system.as_deref().unwrap_or("qemu-virt");
                let sys = system::load(&build::system_path(name)).map_err(build::join_errors)?;
                let mut roles = vec![(ROOT_ROLE.to_string(), DEV_ROOT_KEYS)];
                roles.extend(sys.partitions.iter().map(|p| (p.name.clone(), DEV_RELEASE_KEYS)));
                roles
            }
        };
        let written = generate_keys(&self.out, &roles)?;
        for p in &written {
            println!("wrote {}", p.display());
        }
        println!("keep the .key files secret (and offline); the .pub files may be shared");
        Ok(())
    }
}

/// What a signed document is (an envelope's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocumentKind {
    /// A root document: the keys of every role
    Root,
    /// A system's configuration
    Config,
    /// A partition's image manifest
    Manifest,
}

impl From<DocumentKind> for Kind {
    fn from(k: DocumentKind) -> Kind {
        match k {
            DocumentKind::Root => Kind::Root,
            DocumentKind::Config => Kind::Config,
            DocumentKind::Manifest => Kind::Manifest,
        }
    }
}

/// Sign a document body (or an envelope's body, afresh), or add signatures to an
/// envelope
///
/// `sign --kind K --body FILE --key KEY [--key KEY...] --out FILE` writes a new envelope;
/// `sign --add KEY [--add KEY...] --to ENVELOPE [--out FILE]` adds signatures to one,
/// one key holder at a time (threshold signing).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Sign {
    /// The document's kind; when --body is an envelope, its own kind is kept
    #[arg(long, value_enum, conflicts_with = "to")]
    pub kind: Option<DocumentKind>,
    /// The body to sign, or an envelope whose body is signed afresh
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath,
          required_unless_present = "to", conflicts_with = "to")]
    pub body: Option<PathBuf>,
    /// A signer's key file (.key); once per signer
    #[arg(long = "key", value_name = "KEY", value_hint = ValueHint::FilePath,
          required_unless_present = "to", conflicts_with = "to")]
    pub keys: Vec<PathBuf>,
    /// Where to write the envelope [with --to, default: the envelope itself]
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, required_unless_present = "to")]
    pub out: Option<PathBuf>,
    /// A key file whose signature to add to --to's envelope; once per signer
    #[arg(long = "add", value_name = "KEY", value_hint = ValueHint::FilePath, requires = "to")]
    pub add: Vec<PathBuf>,
    /// The envelope to add signatures to
    #[arg(long, value_name = "ENVELOPE", value_hint = ValueHint::FilePath, requires = "add")]
    pub to: Option<PathBuf>,
}

impl Sign {
    pub fn run(&self) -> Result<(), String> {
        let load = |files: &[PathBuf]| files.iter().map(|k| read_key(k)).collect::<Result<Vec<_>, _>>();
        if let Some(to) = &self.to {
            let keys = load(&self.add)?;
            let before = read(to)?;
            let refs: Vec<&SigningKey> = keys.iter().collect();
            let after = add_signatures(&before, &refs).map_err(|e| format!("{}: {e}", to.display()))?;
            let out = self.out.as_deref().unwrap_or(to);
            write(out, &after)?;
            let count = |b: &[u8]| Envelope::parse(b).map_or(0, |e| e.signature_count());
            println!("{}: {} signatures (was {})", out.display(), count(&after), count(&before));
            return Ok(());
        }
        // clap requires --body, --key and --out without --to; these only restate it.
        let body_path = self.body.as_deref().ok_or("give --body FILE")?;
        let out = self.out.as_deref().ok_or("give --out FILE")?;
        let mut body = read(body_path)?;
        let mut kind = self.kind.map(Kind::from);
        // An envelope given as the body is re-signed: its body, signed afresh.
        if let Ok(env) = Envelope::parse(&body) {
            if kind.is_some_and(|k| k != env.kind) {
                return Err(format!("{}: holds a {:?} envelope, not --kind {kind:?}", body_path.display(), env.kind));
            }
            kind = Some(env.kind);
            body = env.body.to_vec();
        }
        let kind = kind.ok_or("give --kind root|config|manifest (the body is not an envelope)")?;
        let keys = load(&self.keys)?;
        let refs: Vec<&SigningKey> = keys.iter().collect();
        let envelope = sign_envelope(kind, &body, &refs).map_err(|e| format!("{}: {e}", body_path.display()))?;
        write(out, &envelope)?;
        println!("{}: {kind:?} envelope, {} signatures", out.display(), refs.len());
        Ok(())
    }
}

/// A root document for a directory's keys
///
/// For a rotation, give the previous root document: the new one is also signed by the
/// previous root's keys found in --old-keys (any missing can be added with `sign --add`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Root {
    /// The keys the document lists (made by `cargo xtask keygen`)
    #[arg(long, value_name = "DIR", value_parser = args::key_dir, value_hint = ValueHint::DirPath)]
    pub keys: PathBuf,
    /// The document's version: higher than the previous root's
    #[arg(long, value_name = "N")]
    pub version: u32,
    /// The root document in force, which this one rotates
    #[arg(long, value_name = "ENVELOPE", value_hint = ValueHint::FilePath)]
    pub previous: Option<PathBuf>,
    /// The previous root's keys, to sign the rotation with
    #[arg(long, value_name = "DIR", value_parser = args::key_dir, value_hint = ValueHint::DirPath,
          requires = "previous")]
    pub old_keys: Option<PathBuf>,
    /// Where to write the root document
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub out: PathBuf,
}

impl Root {
    pub fn run(&self) -> Result<(), String> {
        let previous = self.previous.as_deref().map(read).transpose()?;
        if let (Some(file), Some(bytes)) = (&self.previous, &previous) {
            let file = file.display();
            let env = Envelope::parse(bytes).map_err(|e| format!("{file}: {e}"))?;
            env.root().ok_or_else(|| format!("{file}: a {:?} envelope, not a root document", env.kind))?;
        }
        let version = self.version;
        let (envelope, missing) = rotate_root(&self.keys, version, previous.as_deref(), self.old_keys.as_deref())?;
        let out = &self.out;
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
}

/// A bundle or envelope in human form, every signature, threshold and hash checked
/// offline
///
/// Exits non-zero if a check failed.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Inspect {
    /// A bundle (bundle.bin) or an envelope (.envelope, .manifest)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// The root anchor to check the root chain against (root-anchor.hex: 128 hex digits)
    #[arg(long, value_name = "HEXFILE", value_hint = ValueHint::FilePath)]
    pub anchor: Option<PathBuf>,
}

impl Inspect {
    pub fn run(&self) -> Result<(), String> {
        let anchor = match &self.anchor {
            None => None,
            Some(f) => {
                let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
                let bytes = unhex(&text).and_then(|b| <[u8; 64]>::try_from(b).ok());
                Some(bytes.ok_or_else(|| format!("{}: not 128 hex digits (a root-anchor.hex)", f.display()))?)
            }
        };
        let path = &self.file;
        let report = super::inspect::inspect(&read(path)?, anchor.as_ref());
        println!("{}:", path.display());
        print!("{}", report.text);
        if report.failures == 0 {
            Ok(())
        } else {
            Err(format!("{}: {} of {} checks failed", path.display(), report.failures, report.checks))
        }
    }
}

/// Check a dump of the hypervisor's flash bank: the audit log's hash chain and where
/// its history begins
///
/// Prints the log's head (SEQ:HASH, to note down). Given an earlier dump (--previous)
/// or a head noted from one (--after), also checks that this log continues it. Exits
/// non-zero if a record is broken or the history restarted (a boot count that fell, or
/// a log that does not hold the earlier head).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AuditVerify {
    /// The dump of the flash bank
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// List every record, oldest first
    #[arg(long)]
    pub records: bool,
    /// An earlier dump of the same bank, which this one must continue
    #[arg(long, value_name = "EARLIER.bin", value_hint = ValueHint::FilePath, conflicts_with = "after")]
    pub previous: Option<PathBuf>,
    /// A head noted from an earlier dump, which this log must still hold
    #[arg(long, value_name = "SEQ:HASH", value_parser = parse_head)]
    pub after: Option<Head>,
}

/// `audit-verify`'s words (what follows `audit-verify` on the command line), parsed by
/// its declaration and run: the system tests' way in.
pub fn audit_verify(words: &[String]) -> Result<(), String> {
    args::parse_words::<AuditVerify>("audit-verify", words)?.run()
}

impl AuditVerify {
    /// Checks the bank's audit log's hash chain (`septum_trust::audit::verify_bank`),
    /// where its history begins (`septum_trust::history`) and, given an earlier head,
    /// that the log continues it.
    pub fn run(&self) -> Result<(), String> {
        use septum_trust::flash::BLOCK_SIZE;
        use septum_trust::{audit, history};

        let path = &self.file;
        let bank = read(path)?;
        let d = path.display();
        let earlier = match (&self.previous, &self.after) {
            (Some(_), Some(_)) => return Err("give --previous FILE or --after SEQ:HASH, not both".into()),
            (Some(old), None) => earlier_head(old)?,
            (None, Some(head)) => Some((format!("--after {}", head_text(head)), *head)),
            (None, None) => None,
        };
        let log_area = history::log_area(&bank, BLOCK_SIZE);
        if self.records {
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
            Some((whose, history::Continuity::Restarted(r))) => {
                Err(format!("{d}: history restarted against {whose}: {r}"))
            }
            _ => Ok(()),
        }
    }
}

/// The head of an earlier dump, which must itself verify; `None` if its log is empty
/// (any later log continues it).
fn earlier_head(path: &Path) -> Result<Option<(String, Head)>, String> {
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
fn head_text(h: &Head) -> String {
    format!("{}:{}", h.seq, hex(&h.hash))
}

/// Reads [`head_text`]'s form (a leading `#` is allowed).
pub fn parse_head(text: &str) -> Result<Head, String> {
    let bad =
        || format!("`{text}`: expected SEQ:HASH, as audit-verify prints a head (a number, a colon, 128 hex digits)");
    let (seq, digits) = text.trim().split_once(':').ok_or_else(bad)?;
    let seq = seq.trim_start_matches('#').parse().map_err(|_| bad())?;
    let hash = unhex(digits).and_then(|b| <[u8; 64]>::try_from(b).ok()).ok_or_else(bad)?;
    Ok(Head { seq, hash, boot: None })
}

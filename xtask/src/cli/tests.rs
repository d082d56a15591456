use std::path::{Path, PathBuf};

use clap::error::ErrorKind;

use super::*;
use crate::build::root;

/// `cargo xtask` and the words after it.
fn parse(line: &str) -> Result<Cli, clap::Error> {
    try_parse_from(std::iter::once("cargo-xtask").chain(line.split_whitespace()))
}

fn parsed(line: &str) -> Command {
    match parse(line) {
        Ok(cli) => cli.command,
        Err(e) => panic!("`cargo xtask {line}` does not parse:\n{}", e.render()),
    }
}

/// The error `cargo xtask {line}` gets, as the user sees it.
fn refused(line: &str) -> (ErrorKind, String) {
    match parse(line) {
        Ok(cli) => panic!("`cargo xtask {line}` parsed: {cli:?}"),
        Err(e) => (e.kind(), e.render().to_string()),
    }
}

/// A scratch directory holding a (public) key file: what `--keys` accepts.
fn key_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("septum-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    std::fs::write(dir.join("root-1.pub"), "00\n").expect("key file");
    dir
}

/// The documents whose command lines are checked.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The `cargo xtask ...` command lines in a Markdown file's code blocks, with where
/// they are, without `# comments`.
fn documented(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("readable");
    let mut in_block = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let command = line.split(" #").next().unwrap_or_default().trim();
        if let Some(words) = command.strip_prefix("cargo xtask") {
            if in_block {
                out.push((format!("{}:{}", path.display(), n + 1), words.trim().to_string()));
            }
        }
    }
    out
}

/// A documented command line made concrete: optional parts (`[...]`) included,
/// placeholders given values the parser accepts (a system name for `--system NAME`, a
/// directory of keys for `--keys DIR`, a benchmark for `bench`'s NAME), globs
/// expanded. File placeholders (FILE, OLD.bin) stay: files are read only when run.
fn concrete(words: &str, keys: &Path) -> String {
    let words = words.replace(['[', ']'], " ").replace("...", " ").replace("..", " ");
    let mut out: Vec<String> = Vec::new();
    for w in words.split_whitespace() {
        let placeholder = w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        let after = out.last().map(String::as_str);
        let value = match (after, placeholder) {
            (Some("--system"), true) => "qemu-virt".to_string(),
            (Some("--keys" | "--old-keys"), true) => keys.display().to_string(),
            (Some("bench"), true) => "linux".to_string(),
            _ if w.contains('*') => expand(w),
            _ => w.to_string(),
        };
        out.push(value);
    }
    out.join(" ")
}

/// `dir/*.ext` as the shell expands it (relative to the checkout).
fn expand(glob: &str) -> String {
    let (dir, pattern) = glob.rsplit_once('/').expect("a glob with a directory");
    let suffix = pattern.strip_prefix('*').expect("a `*.ext` glob");
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .expect("the glob's directory")
        .flatten()
        .filter_map(|e| e.file_name().to_str().filter(|n| n.ends_with(suffix)).map(|n| format!("{dir}/{n}")))
        .map(|f| root().join(f).display().to_string())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{glob} matches nothing");
    files.join(" ")
}

#[test]
fn the_declaration_is_consistent() {
    // clap's own checks: conflicting names, requirements on absent arguments, ...
    command().debug_assert();
}

/// Every `cargo xtask` command line in the README's and docs' code blocks parses.
#[test]
fn every_documented_command_line_parses() {
    let keys = key_dir();
    let mut checked = 0;
    for doc in documents() {
        for (at, words) in documented(&doc) {
            let line = concrete(&words, &keys);
            match parse(&line) {
                Ok(_) => {}
                // `--help`, `--version`: shown, as documented.
                Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {}
                Err(e) => panic!("{at}: `cargo xtask {words}` (as `{line}`) does not parse:\n{}", e.render()),
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} command lines found: has the README's form changed?");
}

/// The README lists every command of the declaration (and nothing else: a command it
/// names that is not declared fails the test above).
#[test]
fn the_readme_lists_every_command() {
    let listed: Vec<String> = documented(&root().join("README.md"))
        .into_iter()
        .filter_map(|(_, words)| words.split_whitespace().next().map(str::to_string))
        .collect();
    for sub in command().get_subcommands() {
        let name = sub.get_name();
        assert!(listed.iter().any(|l| l == name), "README.md lists no `cargo xtask {name}` in its command block");
    }
}

/// The README's lines mean what their comments say.
#[test]
fn documented_command_lines_parse_to_what_they_say() {
    let keys = key_dir();
    let Command::Run(run) = parsed("run") else { panic!("run") };
    assert_eq!((run.system(), run.entry(), run.seconds), ("qemu-virt", Entry::El2, None));
    let Command::Run(run) = parsed("run --el3") else { panic!("run") };
    assert_eq!((run.system(), run.entry()), ("qemu-virt-el3", Entry::El3));
    let Command::Run(run) = parsed("run --el1") else { panic!("run") };
    assert_eq!(run.entry(), Entry::El1);
    let Command::Run(run) = parsed("run --system rpi4 --seconds 10") else { panic!("run") };
    assert_eq!((run.system(), run.seconds), ("rpi4", Some(Duration::from_secs(10))));
    let Command::Build(b) = parsed(&format!("build --keys {} --production", keys.display())) else { panic!("build") };
    assert_eq!(b.system, "qemu-virt");
    assert_eq!(b.signing.options().keys.as_deref(), Some(keys.as_path()));
    assert!(b.signing.production);
    let systems = root().join("systems");
    let (a, b) = (systems.join("qemu-virt.toml"), systems.join("broken/bad-size.toml"));
    let Command::Check(c) = parsed(&format!("check {} {} rpi4", a.display(), b.display())) else { panic!("check") };
    assert_eq!(c.files, [a.display().to_string(), b.display().to_string(), "rpi4".into()]);
    let Command::Bench(b) = parsed("bench") else { panic!("bench") };
    assert!(b.only.is_empty(), "no names: all");
    let Command::Bench(b) = parsed("bench linux channel") else { panic!("bench") };
    assert_eq!(b.only, [Bench::Linux, Bench::Channel]);
    let Command::Sign(s) = parsed("sign --kind manifest --body FILE --key K1 --key K2 --out OUT") else {
        panic!("sign")
    };
    assert_eq!(s.kind, Some(crate::trust::cli::DocumentKind::Manifest));
    assert_eq!(s.keys, [PathBuf::from("K1"), PathBuf::from("K2")]);
    assert_eq!((s.body, s.out, s.to), (Some("FILE".into()), Some("OUT".into()), None));
    let Command::Sign(s) = parsed("sign --add K3 --to FILE") else { panic!("sign") };
    assert_eq!((s.add, s.to, s.out), (vec![PathBuf::from("K3")], Some("FILE".into()), None));
    let line = format!("root --keys {0} --version 2 --previous OLD.envelope --old-keys {0} --out FILE", keys.display());
    let Command::Root(r) = parsed(&line) else { panic!("root") };
    assert_eq!(
        (r.version, r.previous.as_deref(), r.old_keys.as_deref()),
        (2, Some(Path::new("OLD.envelope")), Some(keys.as_path()))
    );
    let Command::AuditVerify(a) = parsed("audit-verify FLASH.bin --previous OLD.bin") else { panic!("audit-verify") };
    assert_eq!((a.file, a.previous, a.records), ("FLASH.bin".into(), Some("OLD.bin".into()), false));
    let Command::Keygen(k) = parsed("keygen --out DIR --role root --count 4") else { panic!("keygen") };
    assert_eq!((k.role.as_deref(), k.count), (Some("root"), Some(4)));
    let Command::Completions(c) = parsed("completions zsh") else { panic!("completions") };
    assert_eq!(c.shell, Shell::Zsh);
    let _ = std::fs::remove_dir_all(keys);
}

/// A misspelt flag or command is refused, naming the closest valid one; so is a missing
/// or malformed value, saying what was expected.
#[test]
fn typos_and_missing_values_are_refused_with_their_message() {
    let (kind, text) = refused("run --hlep");
    assert_eq!(kind, ErrorKind::UnknownArgument);
    assert!(text.contains("'--hlep'") && text.contains("a similar argument exists: '--help'"), "{text}");
    let (_, text) = refused("run --sytem rpi4");
    assert!(text.contains("a similar argument exists: '--system'"), "{text}");
    let (kind, text) = refused("tets");
    assert_eq!(kind, ErrorKind::InvalidSubcommand);
    assert!(text.contains("a similar subcommand exists: 'test'"), "{text}");
    let (kind, text) = refused("run --system");
    assert_eq!(kind, ErrorKind::InvalidValue);
    assert!(text.contains("a value is required for '--system <NAME>'"), "{text}");
    let (_, text) = refused("run --system rpi");
    assert!(text.contains("no system named `rpi`") && text.contains("did you mean `rpi4`"), "{text}");
    let (_, text) = refused("run --seconds ten");
    assert!(text.contains("expected a number of seconds"), "{text}");
    let (_, text) = refused("build --keys /nonexistent-septum-keys");
    assert!(text.contains("expected a directory of keys"), "{text}");
    let (_, text) = refused("build --production");
    assert!(text.contains("--keys <DIR>"), "production needs keys: {text}");
    let (kind, _) = refused("run --el3 --el1");
    assert_eq!(kind, ErrorKind::ArgumentConflict);
    let (_, text) = refused("bench linx");
    assert!(text.contains("a similar value exists: 'linux'"), "{text}");
    let (kind, text) = refused("check");
    assert_eq!(kind, ErrorKind::MissingRequiredArgument);
    assert!(text.contains("<FILE>..."), "{text}");
    let (_, text) = refused("sign --kind manifest --key K --out F");
    assert!(text.contains("--body <FILE>"), "{text}");
    let (_, text) = refused("sign --add K");
    assert!(text.contains("--to <ENVELOPE>"), "{text}");
    let (_, text) = refused("sign --kind bogus --body B --key K --out F");
    assert!(text.contains("[possible values: root, config, manifest]"), "{text}");
    let (_, text) = refused("root --version two");
    assert!(text.contains("invalid value 'two' for '--version <N>'"), "{text}");
    let (_, text) = refused(&format!("keygen --out D --role root --count {}", septum_trust::MAX_KEYS + 1));
    assert!(text.contains("--count <N>"), "{text}");
    let (_, text) = refused("audit-verify F --after 12");
    assert!(text.contains("expected SEQ:HASH"), "{text}");
    let (kind, _) = refused("completions tcsh");
    assert_eq!(kind, ErrorKind::InvalidValue);
}

/// `--help` of every command mentions each of its flags and arguments.
#[test]
fn every_commands_help_mentions_each_of_its_flags() {
    let mut cmd = command();
    cmd.build();
    for sub in cmd.get_subcommands_mut() {
        let name = sub.get_name().to_string();
        let help = sub.render_long_help().to_string();
        for arg in sub.get_arguments() {
            let shown = match (arg.get_long(), arg.get_value_names()) {
                (Some(long), _) => format!("--{long}"),
                (None, Some(names)) => names[0].to_string(),
                (None, None) => arg.get_id().as_str().to_uppercase(),
            };
            assert!(help.contains(&shown), "`cargo xtask {name} --help` does not mention {shown}:\n{help}");
            if arg.get_long() != Some("help") {
                assert!(arg.get_help().is_some(), "{name} {shown} has no help");
            }
        }
    }
    for line in ["--help", "help run", "run --help", "audit-verify -h"] {
        assert_eq!(refused(line).0, ErrorKind::DisplayHelp, "{line}");
    }
}

#[test]
fn the_version_names_the_commit() {
    let (kind, text) = refused("--version");
    assert_eq!(kind, ErrorKind::DisplayVersion);
    assert!(text.starts_with(&format!("xtask {} (", env!("CARGO_PKG_VERSION"))), "{text}");
    // A checkout has a commit; its short hash is hex.
    let commit = text.trim().trim_end_matches(')').rsplit('(').next().unwrap_or_default();
    assert!(commit == "commit unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()), "{text}");
}

/// The completion scripts complete from the declaration; bash's, run by bash, completes
/// `cargo xtask run --sy` to `--system`.
#[test]
fn completions_complete_from_the_declaration() {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let script = String::from_utf8(completions(shell)).expect("utf-8");
        // fish spells a long flag `-l system`, and clap's fish script completes no
        // positional values (bench's names).
        let (long, positional) = match shell {
            Shell::Fish => ("-l ", "-a \"bench\""),
            _ => ("--", "verification"),
        };
        for word in ["audit-verify", positional] {
            assert!(script.contains(word), "{shell:?} script lacks {word}");
        }
        for flag in ["system", "seconds", "keys", "records"] {
            assert!(script.contains(&format!("{long}{flag}")), "{shell:?} script lacks {long}{flag}");
        }
    }
    let script = std::env::temp_dir().join(format!("septum-completion-{}.bash", std::process::id()));
    std::fs::write(&script, completions(Shell::Bash)).expect("write");
    let probe = format!(
        ". {}; COMP_WORDS=(cargo xtask run --sy); COMP_CWORD=3; _cargo_with_xtask cargo --sy run; echo \"${{COMPREPLY[*]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash").args(["--norc", "-c", &probe]).output();
    let _ = std::fs::remove_file(&script);
    match out {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "--system", "{out:?}"),
        Err(e) => eprintln!("skipped: no bash ({e})"),
    }
}

//! The command line of `cargo xtask`, declared once (clap): it parses the words, writes
//! every `--help`, suggests the closest flag for a misspelt one and generates the shell
//! completions; the tests check the README's and docs' command lines against it.
//!
//! The commands' own flags are declared beside what they do (`trust::cli`, `dist`,
//! `bench`); the shared typed values are in [`crate::args`].

use std::path::PathBuf;
use std::process::Command as Process;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum, ValueHint};

use crate::args::{self, Signing};
use crate::bench::Bench;
use crate::qemu::Entry;
use crate::trust::cli::{AuditVerify, Inspect, Keygen, Root, Sign};

/// Septum's build tool: validate and compile system descriptions, build, sign, pack,
/// run on QEMU, test
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true,
    disable_version_flag = true,
    after_help = "The chain of trust's commands (keygen, sign, root, inspect, audit-verify): docs/trust.md.\n\
                  Real boards (dist): docs/boards.md. `cargo xtask help COMMAND` tells more."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build everything and boot a system on QEMU, each console labelled with the
    /// partition that owns it
    ///
    /// Ctrl-C (or --seconds) stops it. The first run fetches Debian's kernel and busybox.
    Run(RunArgs),
    /// Every test: fmt, clippy (host, EL2, guests, agent), host unit tests, the QEMU
    /// system tests, then `verify`
    ///
    /// Installs QEMU 10 and the Rust targets first when run as root; otherwise says how.
    Test,
    /// The channel's verification: SPIN model, loom, Miri, bounded fuzzing (also part of
    /// `test`)
    Verify,
    /// Performance figures, printed, never asserted
    Bench(BenchArgs),
    /// Build a system's images and signed boot bundle into target/septum/NAME/
    ///
    /// Signed with the development keys unless --keys names a directory made by keygen.
    Build(BuildArgs),
    /// Validate system descriptions and explain any problem
    Check(CheckArgs),
    Dist(crate::dist::Dist),
    Keygen(Keygen),
    Sign(Sign),
    Root(Root),
    Inspect(Inspect),
    AuditVerify(AuditVerify),
    Provision(crate::provision::Provision),
    /// Print a shell completion script for `cargo xtask`
    ///
    /// bash: save it as ~/.local/share/bash-completion/completions/cargo-xtask; cargo's
    /// own completion hands `cargo xtask` to it (bash-completion 2.12 or later).
    ///
    /// zsh: save it as _cargo-xtask in a directory of your $fpath; cargo's `_cargo`
    /// calls it.
    ///
    /// fish: save it in ~/.config/fish/conf.d/; it adds `xtask` to cargo's completions.
    Completions(CompletionsArgs),
}

/// The options of `run`: one struct, so a new QEMU option is one more field here and its
/// use in `main.rs`'s `run`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunArgs {
    /// The system to boot: a name in systems/ or a path to a .toml [default: qemu-virt;
    /// with --el3, qemu-virt-el3]
    #[arg(long, value_name = "NAME", value_parser = args::system)]
    pub system: Option<String>,
    /// Enter the hypervisor at EL3 (secure=on), as firmware hands over on some boards
    #[arg(long, conflicts_with = "el1")]
    pub el3: bool,
    /// Enter at EL1, where the hypervisor must refuse to run
    #[arg(long)]
    pub el1: bool,
    /// Stop after this long (seconds: 10, 2.5); without it, run until Ctrl-C or QEMU exits
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds)]
    pub seconds: Option<Duration>,
    /// Make the partition's data disk anew (target/disks/<system>-data.img: ext4, kept
    /// across runs otherwise)
    #[arg(long)]
    pub fresh_disk: bool,
    /// Let the partition reach a service on this host's loopback: its connections to
    /// 10.0.2.100:GUEST go to 127.0.0.1:HOST (repeatable; nothing else is reachable)
    #[arg(long, value_name = "GUEST=HOST", value_parser = args::port_pair)]
    pub guestfwd: Vec<(u16, u16)>,
    /// Reach a service of the partition: 127.0.0.1:HOST on this host goes to its port
    /// GUEST (repeatable)
    #[arg(long, value_name = "HOST=GUEST", value_parser = args::port_pair)]
    pub hostfwd: Vec<(u16, u16)>,
    /// Do not start the MQTT broker the agent uploads vitals to (started when the fleet
    /// exists: see `provision`; the partition's 10.0.2.100:8883 reaches it)
    #[arg(long)]
    pub no_broker: bool,
    /// The ECG recording the critical monitor's front end replays (format: docs/monitoring.md)
    /// [default: partitions/ecg/recordings/default.ecg]
    #[arg(long, value_name = "FILE", value_parser = args::loadable_file, value_hint = ValueHint::FilePath)]
    pub ecg: Option<PathBuf>,
    #[command(flatten)]
    pub signing: Signing,
}

impl RunArgs {
    pub fn entry(&self) -> Entry {
        if self.el3 {
            Entry::El3
        } else if self.el1 {
            Entry::El1
        } else {
            Entry::El2
        }
    }

    /// The system to boot, or the default for the entry.
    pub fn system(&self) -> &str {
        match (&self.system, self.entry()) {
            (Some(name), _) => name,
            (None, Entry::El3) => "qemu-virt-el3",
            (None, _) => "qemu-virt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BuildArgs {
    /// The system to build: a name in systems/ or a path to a .toml
    #[arg(long, value_name = "NAME", value_parser = args::system, default_value = "qemu-virt")]
    pub system: String,
    #[command(flatten)]
    pub signing: Signing,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CheckArgs {
    /// System descriptions: paths to .toml files, or names in systems/
    #[arg(value_name = "FILE", required = true, value_parser = args::system, value_hint = ValueHint::FilePath)]
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BenchArgs {
    /// The benchmarks to run [default: all]
    #[arg(value_name = "NAME", value_enum)]
    pub only: Vec<Bench>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete `cargo xtask` in
    #[arg(value_enum)]
    pub shell: Shell,
}

/// A shell whose completion script `completions` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The declaration as clap's `Command`, with the version and commit for `--version`.
pub fn command() -> clap::Command {
    // clap's own flag would say "Print version"; this one says what it prints.
    let flag = clap::Arg::new("version")
        .short('V')
        .long("version")
        .action(clap::ArgAction::Version)
        .help("Print the version and the commit");
    Cli::command().version(version()).arg(flag)
}

/// Parses a whole command line (`words[0]` is the program), as `main` does.
pub fn try_parse_from<I, T>(words: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(words)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// xtask's version and the commit of the checkout it runs from (xtask always runs from
/// its checkout), e.g. `0.1.0 (a563169)`; `(commit unknown)` without git.
pub fn version() -> String {
    let commit = Process::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(crate::build::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty());
    format!("{} ({})", env!("CARGO_PKG_VERSION"), commit.as_deref().unwrap_or("commit unknown"))
}

/// The completion script for `shell`, completing `cargo xtask ...` from this declaration.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    match shell {
        Shell::Bash => {
            // clap_complete's bash script never completes past a subcommand when the
            // name has a hyphen (clap-rs/clap#6421): generated for `cargo_xtask`, the
            // script is then registered for `cargo-xtask` (its function takes the
            // command's name as an argument).
            clap_complete::generate(clap_complete::Shell::Bash, &mut named("cargo_xtask"), "cargo_xtask", &mut out);
            let script = String::from_utf8_lossy(&out).replace(" cargo_xtask\n", " cargo-xtask\n");
            out = format!("{script}{BASH_HAND_OVER}").into_bytes();
        }
        // cargo's `_cargo` calls `_cargo-xtask` for `cargo xtask ...`.
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut named("cargo-xtask"), "cargo-xtask", &mut out);
        }
        // fish has no hand-over: the script adds `xtask` to cargo's completions, as the
        // one subcommand of a stand-in for cargo (whose helper functions are then named
        // after the stand-in, apart from those of fish's own cargo completions).
        Shell::Fish => {
            let mut cargo = clap::Command::new(FISH_STAND_IN)
                .disable_help_flag(true)
                .disable_help_subcommand(true)
                .subcommand(named("xtask"));
            clap_complete::generate(clap_complete::Shell::Fish, &mut cargo, FISH_STAND_IN, &mut out);
            let script = String::from_utf8_lossy(&out);
            out = script.replace(&format!("complete -c {FISH_STAND_IN} "), "complete -c cargo ").into_bytes();
        }
    }
    out
}

const FISH_STAND_IN: &str = "septum_cargo";

/// cargo's own bash completion hands `cargo xtask ...` to `cargo-xtask`'s only with
/// bash-completion 2.12 or later (Debian bookworm has 2.11). So the script completes
/// `cargo` itself: `cargo xtask ...` from the function above, anything else by cargo's
/// own completion (loaded from the toolchain if it is not yet).
const BASH_HAND_OVER: &str = r#"
# `cargo xtask ...` by the function above; the rest of `cargo` by cargo's own completion.
if ! declare -F _cargo >/dev/null; then
    __septum_sysroot=$(rustc --print sysroot 2>/dev/null) &&
        [[ -r $__septum_sysroot/etc/bash_completion.d/cargo ]] &&
        . "$__septum_sysroot/etc/bash_completion.d/cargo"
    unset __septum_sysroot
fi
_cargo_with_xtask() {
    if [[ ${COMP_WORDS[1]-} == xtask && $COMP_CWORD -ge 2 ]]; then
        local prev=$3
        [[ $COMP_CWORD -eq 2 ]] && prev=cargo-xtask
        local COMP_WORDS=(cargo-xtask "${COMP_WORDS[@]:2}") COMP_CWORD=$((COMP_CWORD - 1))
        _cargo_xtask cargo-xtask "$2" "$prev"
    elif declare -F _cargo >/dev/null; then
        _cargo "$@"
    fi
}
complete -F _cargo_with_xtask -o bashdefault -o default cargo
"#;

/// The declaration named `name` for a completion script (not `cargo xtask`, which the
/// subcommands' names would be built from).
fn named(name: &'static str) -> clap::Command {
    command().name(name).bin_name(name)
}

#[cfg(test)]
mod tests;

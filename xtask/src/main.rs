//! `cargo xtask <command>`: see `cargo xtask help`.

use std::process::{Command, ExitCode};
use std::time::Duration;

use xtask::build::{self, root};
use xtask::qemu::{Entry, Launch, Machine};
use xtask::{prereq, system, trust};

const HELP: &str = "\
cargo xtask <command>

  run   [--system NAME] [--el3 | --el1] [--seconds N] [--keys DIR]
        build everything and boot a system on QEMU (default: qemu-virt), showing each
        console labelled with the partition that owns it; Ctrl-C (or --seconds) stops it
  test  host tests, lints, then the QEMU system tests (installs QEMU 10 and the Rust
        targets first when run as root)
  verify                     the channel's verification: SPIN model, loom, Miri, fuzzing
                             (bounded; also part of `test`)
  bench [NAME..]             performance figures (printed, never asserted): verification,
                             virtualization, linux, channel (default: all)
  build [--system NAME] [--keys DIR] [--production]
                             build images and the signed boot bundle into
                             target/septum/NAME/; signed with the development keys
                             unless --keys names a directory made by keygen
  check FILE...              validate system descriptions and explain any problem
  dist --system NAME [--out DIR] [--keys DIR] [--production]
                             build a system for a real board (rpi4, imx8mp-evk) and
                             write a folder to copy to its boot partition (default
                             target/dist/NAME/): see docs/boards.md

chain of trust:
  keygen --out DIR [--system NAME | --role NAME [--count N]]
                             fresh random keys: DIR/<role>-<n>.key (secret, 0600) and
                             .pub; by default 3 root keys and 2 per partition
  sign --kind root|config|manifest --body FILE --key KEY [--key KEY...] --out FILE
                             sign a document body (or an envelope's, afresh)
  sign --add KEY [--add KEY...] --to ENVELOPE [--out FILE]
                             add signatures to an envelope (threshold signing)
  root --keys DIR --version N [--previous ENVELOPE [--old-keys DIR]] --out FILE
                             a root document for DIR's keys (rotation: also signed by
                             the previous root's keys found in --old-keys)
  inspect FILE [--anchor root-anchor.hex]
                             a bundle or envelope in human form, every signature,
                             threshold and hash checked offline
  audit-verify FILE [--records] [--previous EARLIER.bin | --after SEQ:HASH]
                             check a dump of the hypervisor's flash bank: the audit
                             log's hash chain, where its history begins, and that it
                             continues an earlier dump or noted head (--records: list
                             every record)
  help
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("build") => build_cmd(&args[1..]),
        Some("keygen") => trust::cli::keygen(&args[1..]),
        Some("sign") => trust::cli::sign(&args[1..]),
        Some("root") => trust::cli::root(&args[1..]),
        Some("inspect") => trust::cli::inspect(&args[1..]),
        Some("audit-verify") => trust::cli::audit_verify(&args[1..]),
        Some("check") => check(&args[1..]),
        Some("dist") => xtask::dist::run(&args[1..]),
        Some("verify") => xtask::verify::all(),
        Some("bench") => xtask::bench::run(&args[1..]),
        Some("help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn options(args: &[String]) -> build::Options {
    build::Options { keys: flag(args, "--keys").map(Into::into), production: args.iter().any(|a| a == "--production") }
}

/// Says, once, what signed the images when it was not a production key set.
fn signed_with(art: &build::Artifacts) {
    if art.keys.development {
        println!("note: the images are signed with DEVELOPMENT keys (published seeds): for development only");
    }
}

fn build_cmd(args: &[String]) -> Result<(), String> {
    let art = build::system_with(&flag(args, "--system").unwrap_or("qemu-virt".into()), &options(args))?;
    println!("built {} into {}", art.system.name, art.dir.display());
    signed_with(&art);
    Ok(())
}

fn check(files: &[String]) -> Result<(), String> {
    if files.is_empty() {
        return Err("give one or more system description files".into());
    }
    let mut bad = 0;
    for f in files {
        match system::load(&build::system_path(f)) {
            Ok(s) => println!("{f}: ok ({} partitions on {})", s.partitions.len(), s.board.name),
            Err(errs) => {
                bad += 1;
                for e in errs {
                    println!("{e}");
                }
            }
        }
    }
    if bad == 0 {
        Ok(())
    } else {
        Err(format!("{bad} of {} descriptions have problems", files.len()))
    }
}

fn run(args: &[String]) -> Result<(), String> {
    prereq::qemu()?;
    let entry = if args.iter().any(|a| a == "--el3") {
        Entry::El3
    } else if args.iter().any(|a| a == "--el1") {
        Entry::El1
    } else {
        Entry::El2
    };
    let default = if entry == Entry::El3 { "qemu-virt-el3" } else { "qemu-virt" };
    let name = flag(args, "--system").unwrap_or(default.into());
    let seconds = flag(args, "--seconds").and_then(|s| s.parse::<u64>().ok());
    let art = build::system_with(&name, &options(args))?;
    signed_with(&art);
    println!("booting {} on QEMU ({entry:?} entry); Ctrl-C stops", art.system.name);
    let mut m = Machine::launch(&art, &Launch { entry, echo: true, ..Launch::default() })?;
    let limit = Duration::from_secs(seconds.unwrap_or(u64::MAX / 4));
    match m.wait_exit(limit) {
        Some(status) => println!("QEMU exited ({status})"),
        None => println!("stopped after {} s", limit.as_secs()),
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).args(args);
    eprintln!("xtask: cargo {}", args.join(" "));
    build::run(&mut c)
}

const HOST_CRATES: &[&str] =
    &["septum-abi", "septum-core", "septum-trust", "septum-platform", "septum-ipc-channel", "septum-agent", "xtask"];

/// `cargo clippy` of `packages` built for `target` (release, in the cross target
/// directory), warnings denied.
fn cross_clippy(packages: &[&str], target: &str, cross: &str) -> Result<(), String> {
    let mut args = vec!["clippy", "--quiet", "--release", "--target", target, "--target-dir", cross];
    for p in packages {
        args.extend(["-p", p]);
    }
    args.extend(["--", "-D", "warnings"]);
    cargo(&args)
}

fn test() -> Result<(), String> {
    prereq::rust_targets()?;
    prereq::qemu()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"])?;
    let cross = build::cross_target_dir();
    let cross = cross.to_string_lossy();
    cross_clippy(&["septum-hypervisor"], build::HYPERVISOR_TARGET, &cross)?;
    cross_clippy(system::GUESTS, build::GUEST_TARGET, &cross)?;
    prereq::rust_target(build::AGENT_TARGET)?;
    cross_clippy(&["septum-agent"], build::AGENT_TARGET, &cross)?;
    let mut host = vec!["test"];
    for c in HOST_CRATES {
        host.extend(["-p", c]);
    }
    cargo(&host)?;
    // Builds the hypervisor the system tests boot first (trusting qemu-virt's
    // development root), so they do not wait on it.
    let sys = system::load(&build::system_path("qemu-virt")).map_err(build::join_errors)?;
    build::compile(sys.board, &trust::dev_keys(&sys), false)?;
    cargo(&["test", "-p", "septum-system-tests", "--", "--test-threads=1"])?;
    xtask::verify::all()
}

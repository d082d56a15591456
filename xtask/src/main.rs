//! `cargo xtask <command>`: see `cargo xtask --help`. The command line is declared in
//! `xtask::cli`; this file runs what it parsed.

use std::io::Write as _;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use xtask::build::{self, root};
use xtask::cli::{self, BuildArgs, CheckArgs, RunArgs};
use xtask::progress::Step;
use xtask::qemu::{EcgReplay, Launch, Machine, FATAL, HYPERVISOR};
use xtask::{prereq, system, trust};

fn main() -> ExitCode {
    let cli = match cli::try_parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // `--help` and `--version` too: clap prints them and says how to exit.
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        cli::Command::Run(a) => run(&a),
        cli::Command::Test => test(),
        cli::Command::Verify => xtask::verify::all(),
        cli::Command::Bench(a) => xtask::bench::run(&a.only),
        cli::Command::Build(a) => build_cmd(&a),
        cli::Command::Check(a) => check(&a),
        cli::Command::Dist(a) => a.run(),
        cli::Command::Keygen(a) => a.run(),
        cli::Command::Sign(a) => a.run(),
        cli::Command::Root(a) => a.run(),
        cli::Command::Inspect(a) => a.run(),
        cli::Command::AuditVerify(a) => a.run(),
        cli::Command::Provision(a) => a.run(),
        cli::Command::Completions(a) => {
            std::io::stdout().write_all(&cli::completions(a.shell)).map_err(|e| format!("stdout: {e}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Says, once, what signed the images when it was not a production key set.
fn signed_with(art: &build::Artifacts) {
    if art.keys.development {
        println!("note: the images are signed with DEVELOPMENT keys (published seeds): for development only");
    }
}

fn build_cmd(a: &BuildArgs) -> Result<(), String> {
    let art = build::system_with(&a.system, &a.signing.options())?;
    println!("built {} into {}", art.system.name, art.dir.display());
    signed_with(&art);
    Ok(())
}

fn check(a: &CheckArgs) -> Result<(), String> {
    let mut bad = 0;
    for f in &a.files {
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
        Err(format!("{bad} of {} descriptions have problems", a.files.len()))
    }
}

fn run(a: &RunArgs) -> Result<(), String> {
    prereq::qemu()?;
    let entry = a.entry();
    let art = build::system_with(a.system(), &a.signing.options())?;
    signed_with(&art);
    let name = &art.system.name;
    println!("booting {name} on QEMU ({entry:?} entry); Ctrl-C stops");
    // A partition given the PCIe host bridge gets its network (only what --guestfwd
    // names on this host's loopback) and its data disk.
    let gives_pcie = art.system.partitions.iter().any(|p| p.devices.iter().any(|d| d.pci_ecam));
    let disk = gives_pcie.then(|| xtask::disk::data_disk(name, a.fresh_disk)).transpose()?;
    let mut net = xtask::qemu::Net { guestfwd: a.guestfwd.clone(), hostfwd: a.hostfwd.clone() };
    let _broker = if gives_pcie && !a.no_broker { broker(name, &mut net)? } else { None };
    let mut m = Machine::launch(
        &art,
        &Launch {
            entry,
            echo: true,
            disk,
            net,
            ecg: a.ecg.clone().map_or(EcgReplay::Default, EcgReplay::File),
            ..Launch::default()
        },
    )?;
    // Without --seconds: as good as for ever, and still a valid deadline.
    let limit = a.seconds.unwrap_or(Duration::from_secs(u64::MAX / 4));
    let deadline = Instant::now().checked_add(limit);
    let left = || deadline.map_or(limit, |d| d.saturating_duration_since(Instant::now()));
    if let Some(status) = wait_for_consoles(&mut m, name, left) {
        println!("QEMU exited ({status})");
        return Ok(());
    }
    match m.wait_exit(left()) {
        Some(status) => println!("QEMU exited ({status})"),
        None => println!("stopped after {:.1} s", limit.as_secs_f64()),
    }
    Ok(())
}

/// Shows the boot until every console has printed a line (a spinner naming the ones
/// still silent), the hypervisor stopped, time ran out or QEMU exited (its status).
/// The vitals broker for `system`'s agent (xtask/src/broker.rs), when the fleet exists
/// and the partition's broker port is not forwarded elsewhere: on the host's port 8883
/// if free, else on a free port; forwarded from the partition's 10.0.2.100:8883.
fn broker(system: &str, net: &mut xtask::qemu::Net) -> Result<Option<xtask::broker::Broker>, String> {
    use xtask::fleet::{Fleet, GUEST_BROKER_PORT};
    let fleet = Fleet { dir: Fleet::default_dir() };
    if !fleet.exists() {
        println!("vitals upload: no fleet yet (cargo xtask provision --device dev-1 gives the partition an identity)");
        return Ok(None);
    }
    if net.guestfwd.iter().any(|(guest, _)| *guest == GUEST_BROKER_PORT) {
        return Ok(None);
    }
    let fleet = Fleet::open(&fleet.dir)?;
    // For the watch command printed below.
    prereq::debian_tool("mosquitto_sub", "mosquitto-clients")?;
    let port = if std::net::TcpListener::bind(("127.0.0.1", 8883)).is_ok() { 8883 } else { xtask::broker::free_port() };
    let dir = root().join("target").join("broker").join(system);
    let broker = xtask::broker::Broker::start(&fleet, &dir, port)?;
    net.guestfwd.push((GUEST_BROKER_PORT, port));
    println!("vitals broker (mosquitto) on 127.0.0.1:{port}, log {}; watch with:", dir.join("mosquitto.log").display());
    println!("  {}", broker.watch_command(&fleet));
    Ok(Some(broker))
}

fn wait_for_consoles(m: &mut Machine, name: &str, left: impl Fn() -> Duration) -> Option<std::process::ExitStatus> {
    let consoles = m.consoles();
    let step = Step::spinner(&format!("booting {name}: waiting for {}", consoles.join(", ")));
    loop {
        let lines = m.lines();
        if let Some(l) = lines.iter().find(|l| l.console == HYPERVISOR && FATAL.iter().any(|f| l.text.contains(f))) {
            step.finish(&format!(
                "{name}: the hypervisor stopped after {}: {}",
                xtask::progress::seconds(l.at),
                l.text
            ));
            return None;
        }
        let silent: Vec<&str> =
            consoles.iter().map(String::as_str).filter(|c| !lines.iter().any(|l| l.console == *c)).collect();
        if silent.is_empty() {
            let took = xtask::progress::seconds(step.elapsed());
            step.finish(&format!("{name}: every console up after {took}"));
            return None;
        }
        step.set_message(format!("booting {name}: waiting for {}", silent.join(", ")));
        if left().is_zero() {
            return None;
        }
        if let Some(status) = m.wait_exit(Duration::from_millis(100)) {
            return Some(status);
        }
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).args(args);
    eprintln!("xtask: cargo {}", args.join(" "));
    build::run(&mut c)
}

const HOST_CRATES: &[&str] = &[
    "septum-abi",
    "septum-core",
    "septum-trust",
    "septum-platform",
    "septum-ipc-channel",
    "septum-agent",
    "septum-uplink",
    "xtask",
];

/// `cargo clippy` of `packages` built for `target` (release, in the cross target
/// directory), warnings denied.
fn cross_clippy(packages: &[&str], target: &str, cross: &str) -> Result<(), String> {
    let mut args = vec!["clippy", "--quiet", "--release", "--target", target, "--target-dir", cross];
    for p in packages {
        args.extend(["-p", p]);
    }
    args.extend(["--", "-D", "warnings"]);
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).args(&args);
    if target == build::AGENT_TARGET {
        build::agent_c_toolchain(&mut c)?;
    }
    eprintln!("xtask: cargo {}", args.join(" "));
    build::run(&mut c)
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

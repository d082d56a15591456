//! The SPIN model of the channel protocol (`ipc-channel/model/channel.pml`): for each
//! scenario the model holds (honest pair, hostile producer, hostile consumer), `spin -a`
//! generates the verifier, gcc compiles it twice and both runs must report no error:
//! a safety run (assertions, invalid end states) and a liveness run (the model's LTL
//! property under weak fairness). Each scenario takes a few seconds, mostly compiling.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::build::root;

/// The model's scenarios: a name for the report and the `spin -D` flags selecting it.
const SCENARIOS: &[(&str, &[&str])] = &[
    ("honest pair", &[]),
    ("hostile producer", &["-DHOSTILE_PRODUCER"]),
    ("hostile consumer", &["-DHOSTILE_CONSUMER"]),
];

/// Bounds on every pan run, so a model that grows by mistake fails instead of filling
/// the machine: search depth (the deepest scenario needs under 2,000 steps), a 2^22-slot
/// hash table, and at most 1 GiB of memory (compiled in as `MEMLIM`, in MB).
const PAN_DEPTH: &str = "-m100000";
const PAN_HASH: &str = "-w22";
const PAN_MEMLIM: &str = "-DMEMLIM=1024";

/// pan's words for a search that stopped before covering the state space: such a run
/// can say `errors: 0` and still prove nothing.
const INCOMPLETE: &[&str] =
    &["max search depth too small", "Search not completed", "out of memory", "reached -DMEMLIM bound"];

/// What the check runs, the argument that makes each print its version, and the Debian
/// package holding it: `spin` itself, and a C compiler for the verifier it generates
/// (the spin package does not depend on one).
const TOOLS: &[(&str, &str, &str)] = &[("spin", "-V", "spin"), ("gcc", "--version", "gcc")];

/// One pan run: its states stored and errors, as pan printed them.
struct Outcome {
    states: String,
    errors: String,
}

pub fn run() -> Result<(), String> {
    let model = root().join("ipc-channel").join("model").join("channel.pml");
    eprintln!("xtask: SPIN model ({})", model.display());
    tools()?;
    let text = std::fs::read_to_string(&model).map_err(|e| format!("{}: {e}", model.display()))?;
    let scratch = std::env::temp_dir().join(format!("septum-spin-{}", std::process::id()));
    for (name, flags) in SCENARIOS {
        let dir = scratch.join(name.replace(' ', "-"));
        let started = Instant::now();
        let (safety, liveness) = scenario(&dir, &text, flags).map_err(|e| {
            // The directory is kept: it has the verifier and the trail of the violation.
            let replay = ["spin -t -p -g -l"].iter().chain(flags.iter()).copied().collect::<Vec<_>>().join(" ");
            format!("SPIN, {name}: {e}\nto replay a trail: cd {} && {replay} channel.pml", dir.display())
        })?;
        println!(
            "SPIN {name}: safety {} states, {} errors; liveness {} states, {} errors ({:.1} s)",
            safety.states,
            safety.errors,
            liveness.states,
            liveness.errors,
            started.elapsed().as_secs_f64()
        );
    }
    // Nothing to look at when every run passed; a leftover directory is harmless.
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Generates, compiles and runs the verifier for one scenario in `dir`.
fn scenario(dir: &Path, model: &str, flags: &[&str]) -> Result<(Outcome, Outcome), String> {
    // No trail of an earlier run may be taken for this one's.
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // A copy beside the verifier, so a trail can be replayed against the same text.
    let copy = dir.join("channel.pml");
    std::fs::write(&copy, model).map_err(|e| format!("{}: {e}", copy.display()))?;
    output(Command::new("spin").arg("-a").args(flags).arg("channel.pml").current_dir(dir))?;
    let safety = verify(dir, "pan-safety", &["-DSAFETY", "-DNOCLAIM"], &[])?;
    let liveness = verify(dir, "pan-liveness", &[], &["-a", "-f"])?;
    Ok((safety, liveness))
}

/// Compiles `pan.c` with `defines` into `exe`, runs it with `args` and checks its report.
fn verify(dir: &Path, exe: &str, defines: &[&str], args: &[&str]) -> Result<Outcome, String> {
    output(Command::new("gcc").args(["-O2", PAN_MEMLIM]).args(defines).args(["-o", exe, "pan.c"]).current_dir(dir))?;
    let report = output(Command::new(dir.join(exe)).args([PAN_DEPTH, PAN_HASH]).args(args).current_dir(dir))?;
    let outcome = parse(&report).ok_or_else(|| format!("{exe}: no result in its output:\n{report}"))?;
    if outcome.errors != "0" {
        return Err(format!("{exe} found {} error(s):\n{report}", outcome.errors));
    }
    if let Some(why) = INCOMPLETE.iter().find(|w| report.contains(*w)) {
        return Err(format!("{exe} did not finish its search ({why}):\n{report}"));
    }
    Ok(outcome)
}

/// Reads `errors: N` and `N states, stored` from pan's report.
fn parse(report: &str) -> Option<Outcome> {
    let errors = report.split("errors: ").nth(1)?.split_whitespace().next()?.to_string();
    let states = report.lines().find(|l| l.contains("states, stored"))?.split_whitespace().next()?.to_string();
    Some(Outcome { states, errors })
}

/// Runs `cmd` to completion; its standard output, or an error with everything it printed.
fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{cmd:?} failed ({}):\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// Makes sure `spin` and `gcc` run, installing the missing ones with apt as root;
/// otherwise the error gives the command to run.
fn tools() -> Result<(), String> {
    let found = |tool: &str, probe: &str| Command::new(tool).arg(probe).output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> =
        TOOLS.iter().filter(|(tool, probe, _)| !found(tool, probe)).map(|(_, _, package)| *package).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() {
        return Err(format!("SPIN needs {}; run as root (or with sudo): {command}", missing.join(" and ")));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(&missing);
    // The package lists of a fresh machine may be empty or stale: update once if needed.
    if !(apt(&install) || (apt(&["update", "-qq"]) && apt(&install))) {
        return Err(format!("installing {} failed; the command was: {command}", missing.join(" ")));
    }
    match TOOLS.iter().find(|(tool, probe, _)| !found(tool, probe)) {
        Some((tool, _, _)) => Err(format!("{tool} is still not runnable after: {command}")),
        None => Ok(()),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

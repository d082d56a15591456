//! Time-boxed fuzzing of the channel's receive paths (`ipc-channel/fuzz`, CH-002):
//! libFuzzer through cargo-fuzz, on nightly, each target starting from its kept corpus.
//! Inputs found on the way land in that corpus; keeping them is a choice, not a duty.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::build::{self, root};

/// The fuzz targets (`ipc-channel/fuzz/fuzz_targets/<name>.rs`); each gets an equal
/// share of the time.
pub const TARGETS: &[&str] = &["recv", "sampling"];

/// Seconds one input may run before libFuzzer calls it a hang. Every call of the
/// channel does a bounded amount of work, so a slow input is a finding, and without
/// this libFuzzer would wait 20 minutes for it, far past the time box.
const INPUT_TIMEOUT: u64 = 10;

/// Lines of the fuzzer's output an error carries at most (the whole log stays on disk).
const ERROR_LINES: usize = 60;

/// Fuzzes every target for its share of `seconds`; fails on the first crash, hang or
/// out-of-memory, naming the file libFuzzer wrote the input to.
pub fn run(seconds: u64) -> Result<(), String> {
    install()?;
    let dir = root().join("ipc-channel").join("fuzz");
    let share = (seconds / TARGETS.len() as u64).max(1);
    for target in TARGETS {
        fuzz(&dir, target, share)?;
    }
    Ok(())
}

/// cargo-fuzz is no rustup component: a fresh CI machine has to build it once.
fn install() -> Result<(), String> {
    let installed = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    build::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// One target for `seconds`, from its corpus; prints its run time, libFuzzer's final
/// figures and the corpus size.
fn fuzz(dir: &Path, target: &str, seconds: u64) -> Result<(), String> {
    let corpus = dir.join("corpus").join(target);
    // The fuzz crate is a workspace of its own: its build (nightly, sanitizers) goes to
    // its own gitignored `target/`, whatever CARGO_TARGET_DIR says.
    let target_dir = dir.join("target");
    let log_path = target_dir.join(format!("fuzz-{target}.log"));
    for d in [&corpus, &target_dir] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| format!("{}: {e}", log_path.display()))?;

    eprintln!("xtask: fuzzing {target} for {seconds} s (log: {})", log_path.display());
    let started = Instant::now();
    // One file for both streams keeps cargo's, libFuzzer's and the panic's lines in order.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir)
        .args(["+nightly", "fuzz", "run", "--fuzz-dir"])
        .arg(dir)
        .arg("--target-dir")
        .arg(&target_dir)
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT}"))
        .arg("-rss_limit_mb=2048")
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    let status = cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    let output = fs::read_to_string(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;

    if !status.success() {
        let input = output
            .lines()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, path)| path.trim().to_string()))
            .map_or_else(
                || "no input was written (did the build fail?)".to_string(),
                |path| {
                    format!(
                        "the failing input is {path}\nreproduce: cd {} && cargo +nightly fuzz run {target} {path}",
                        dir.display()
                    )
                },
            );
        return Err(format!(
            "fuzz target {target} failed ({status}); {input}\n{}\nfull log: {}",
            findings(&output),
            log_path.display()
        ));
    }

    // libFuzzer ends with `#<runs>\tDONE   cov: .. ft: .. corp: .. exec/s: ..` and
    // `Done <runs> runs in <s> second(s)`.
    let done = output.lines().rev().find_map(|l| l.split_once("DONE ").map(|(_, stats)| stats.trim()));
    let runs = output.lines().rev().find_map(|l| l.strip_prefix("Done ")).unwrap_or("no run count");
    let (files, bytes) = corpus_size(&corpus)?;
    println!(
        "fuzz {target}: {wall:.0} s including the build; {runs}; {}; corpus {files} files, {bytes} bytes",
        done.unwrap_or("no final statistics"),
    );
    Ok(())
}

/// The lines of a failed run to read first: the panic and its message, and the
/// sanitizer's or libFuzzer's verdict (crash, timeout, out of memory), without the
/// stack traces. When there are none (say, the build failed), the end of the output.
fn findings(output: &str) -> String {
    let mut keep = Vec::new();
    let mut in_panic = false;
    for line in output.lines() {
        if line.contains("panicked at") {
            in_panic = true;
        } else if ["stack backtrace:", "note:", "=="].iter().any(|p| line.starts_with(p)) {
            in_panic = false;
        }
        if in_panic || line.contains("ERROR:") || line.starts_with("SUMMARY:") {
            keep.push(line);
        }
    }
    if keep.is_empty() {
        keep = output.lines().collect();
        keep.drain(..keep.len().saturating_sub(ERROR_LINES));
    }
    keep.truncate(ERROR_LINES);
    keep.join("\n")
}

/// Files and bytes in a corpus directory.
fn corpus_size(dir: &Path) -> Result<(usize, u64), String> {
    let mut files = 0;
    let mut bytes = 0;
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let meta = entry.and_then(|e| e.metadata()).map_err(|e| format!("{}: {e}", dir.display()))?;
        if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

//! `cargo xtask verify`: the channel's verification, each part bounded in time so CI
//! can run all of it: the SPIN model of the protocol, loom over the real atomics, Miri
//! over the unit tests, and a time-boxed fuzzing run of the receive path.

use std::process::Command;

use crate::build::{root, run};

pub mod fuzz;
pub mod spin;

/// Seconds of fuzzing in a default run.
pub const FUZZ_SECONDS: u64 = 60;

pub fn all() -> Result<(), String> {
    spin::run()?;
    loom()?;
    miri()?;
    fuzz::run(FUZZ_SECONDS)
}

fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root());
    c
}

/// loom explores the interleavings of the real Rust implementation's atomics.
pub fn loom() -> Result<(), String> {
    eprintln!("xtask: loom (ipc-channel)");
    run(cargo()
        .args(["test", "--release", "-p", "septum-ipc-channel", "--test", "loom"])
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", root().join("target").join("loom"))
        .env("LOOM_MAX_PREEMPTIONS", "3"))
}

/// Miri runs the crate's unit tests (nightly, installed with its `miri` component).
pub fn miri() -> Result<(), String> {
    eprintln!("xtask: miri (ipc-channel)");
    let has_miri =
        Command::new("cargo").args(["+nightly", "miri", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_miri {
        run(Command::new("rustup").args(["component", "add", "--toolchain", "nightly", "miri", "rust-src"]))?;
    }
    run(cargo()
        .args(["+nightly", "miri", "test", "-q", "-p", "septum-ipc-channel", "--lib"])
        // proptest looks at the working directory for its failure file; the volatile
        // region takes its address as an integer, as guests get theirs (exposed
        // provenance, which Miri otherwise warns of).
        .env("MIRIFLAGS", "-Zmiri-disable-isolation -Zmiri-permissive-provenance")
        .env("PROPTEST_CASES", "4")
        .env("CARGO_TARGET_DIR", root().join("target").join("miri")))
}

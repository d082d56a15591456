//! `cargo xtask bench`: performance figures, printed, never asserted.
//!
//! The figures come from the channel's host benchmark (`ipc-channel/benches/throughput.rs`),
//! built by `cargo bench` so it runs with optimisations, like the channel in a partition.
//! `SEPTUM_BENCH_QUICK=1` in the environment reaches it unchanged and makes the runs short.

use std::process::Command;

use crate::build::{self, root};

/// Runs the channel benchmark with its output going straight to the terminal, so the
/// progress and the table show as they come. A failure (build error, or a message lost
/// or out of order) is an error; slow figures are not.
pub fn run() -> Result<(), String> {
    let args = ["bench", "-p", "septum-ipc-channel", "--bench", "throughput"];
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build::run(c.current_dir(root()).args(args))
}

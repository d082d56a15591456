//! `cargo xtask bench`: performance figures, printed, never asserted.

pub fn run() -> Result<(), String> {
    eprintln!("xtask: no benchmarks yet");
    Ok(())
}

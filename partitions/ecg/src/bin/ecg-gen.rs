//! Writes the synthetic recordings (`septum_ecg::synth`) into a directory, by default
//! this crate's `recordings/`: `NAME.ecg`, `NAME.beats`, `NAME.events`.
//!
//! `cargo run -p septum-ecg --features std --bin ecg-gen [DIR]`

use std::path::PathBuf;

fn main() -> Result<(), String> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recordings"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for g in septum_ecg::synth::all() {
        for (ext, bytes) in [("ecg", g.ecg.as_slice()), ("beats", g.beats.as_bytes()), ("events", g.events.as_bytes())]
        {
            let path = dir.join(format!("{}.{ext}", g.name));
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        println!("{}: {} bytes", g.name, g.ecg.len());
    }
    Ok(())
}

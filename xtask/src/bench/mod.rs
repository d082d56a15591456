//! `cargo xtask bench`: performance figures, printed, never asserted.
//!
//! * Boot-time verification: QEMU virt under `-icount shift=4`, where one tick of the
//!   62.5 MHz generic timer is one instruction, boots a system whose connectivity image
//!   is padded to 1 MiB (and signed again); the hypervisor logs the ticks each check
//!   took. The figures are exact and repeatable: instructions, not host time.
//! * Network: TCP throughput from Linux in connectivity to the host, against the same
//!   Linux on QEMU alone (`network.rs`).
//! * The channel's host benchmark (`ipc-channel/benches/throughput.rs`), built by
//!   `cargo bench` so it runs with optimisations, like the channel in a partition.
//!   `SEPTUM_BENCH_QUICK=1` in the environment reaches it unchanged and makes the runs
//!   short. Then the channel on aarch64: two partitions of `systems/bench-channel.toml`
//!   under `-icount shift=4`, instructions per message, each way.
//! * ECG: the critical monitor's processing (septum-ecg) on the host over every
//!   recording in `partitions/ecg/recordings/`: beat detection (AAMI EC57 matching)
//!   and alarm delays against the recordings' truth (`ecg.rs`).

mod ecg;
mod network;

use std::process::Command;
use std::time::Duration;

use septum_trust::hash;

use crate::build::{self, root};
use crate::qemu::{Launch, Line, Machine};
use crate::trust::{resign_manifest, BundleParts};

/// A benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bench {
    /// Boot-time verification of the signed images (instructions, under -icount)
    Verification,
    /// Instructions per hypercall, timer interrupt, SGI and trapped distributor read
    Virtualization,
    /// Linux's boot in a partition, against the same Linux on QEMU alone
    Linux,
    /// The channel: host throughput against rtrb, and instructions per message on aarch64
    Channel,
    /// TCP from Linux in a partition to the host, against the same Linux on QEMU alone
    Network,
    /// The ECG processing on the host over every recording: Se, +P, alarm delays
    Ecg,
}

impl Bench {
    pub const ALL: [Bench; 6] =
        [Bench::Verification, Bench::Virtualization, Bench::Linux, Bench::Network, Bench::Channel, Bench::Ecg];

    fn run(self) -> Result<(), String> {
        match self {
            Bench::Verification => boot_verification(),
            Bench::Virtualization => virtualization(),
            Bench::Linux => linux_boot(),
            Bench::Channel => channel(),
            Bench::Network => network::network(),
            Bench::Ecg => ecg::ecg(),
        }
    }
}

/// Runs the benchmarks `only` names (all of them if it is empty), in [`Bench::ALL`]'s
/// order, figures going straight to the terminal. A failure (build error, a boot that
/// does not verify, a message lost or out of order) is an error; slow figures are not.
pub fn run(only: &[Bench]) -> Result<(), String> {
    for bench in Bench::ALL {
        if only.is_empty() || only.contains(&bench) {
            bench.run()?;
        }
    }
    Ok(())
}

/// Linux's own line when it hands over to userspace.
const RUN_INIT: &str = "Run /init as init process";

/// The printk timestamp (seconds) of a Linux console line `[    1.234567] ...`.
fn printk_seconds(text: &str) -> Option<f64> {
    let inner = text.trim_start().strip_prefix('[')?.split(']').next()?;
    inner.trim().parse().ok()
}

/// Linux boot overhead: the same kernel, initramfs and device tree booted to userspace
/// in the default system's connectivity partition, and on QEMU alone (no hypervisor,
/// entered at EL1 with the same two CPUs, RAM and devices), both under
/// `-icount shift=0`. The figure is Linux's own clock at `Run /init`: its generic-timer
/// sched_clock, which under shift=0 advances one nanosecond per instruction the
/// emulated machine executes, counted from the timer's start early in the kernel.
fn linux_boot() -> Result<(), String> {
    let art = build::system("qemu-virt")?;
    let p = art.system.partitions.iter().find(|p| p.name == PARTITION).ok_or("qemu-virt has no connectivity")?;
    let console = p.devices.iter().find(|d| d.compatible.contains(&"arm,pl011")).ok_or("connectivity has no UART")?;
    let ram_mib = p.desc.regions().first().map_or(0, |r| r.size >> 20);
    let vcpus = p.desc.vcpus().len();
    let bootargs = p.bootargs.clone();

    eprintln!("xtask: booting Linux in qemu-virt under -icount shift=0");
    let mut m = Machine::launch(&art, &Launch { icount: Some(0), ..Launch::default() })?;
    let waited = m.wait_for("Linux userspace", Duration::from_secs(600), |l| {
        l.iter().any(|l| l.console == PARTITION && l.text.contains(RUN_INIT))
    });
    let lines = m.lines();
    drop(m);
    waited.map_err(|e| format!("{e}\n{}", transcript(&lines)))?;
    let in_septum = lines.iter().find(|l| l.text.contains(RUN_INIT)).and_then(|l| printk_seconds(&l.text));

    eprintln!("xtask: booting the same Linux on QEMU alone under -icount shift=0");
    let kernel = crate::linux::debian_kernel()?;
    let initrd = crate::linux::initramfs(Some(&build::agent()?))?;
    let dtb = art.dir.join(format!("{PARTITION}.dtb"));
    // The partition's console is the board's second PL011: the first goes nowhere.
    let serials: &[&str] = if console.name == "uart1" { &["null", "stdio"] } else { &["stdio"] };
    let mut cmd = Command::new(crate::prereq::QEMU);
    cmd.args(["-M", "virt,gic-version=3", "-cpu", "cortex-a72", "-smp", &vcpus.to_string()])
        .args(["-m", &format!("{ram_mib}M"), "-display", "none", "-monitor", "none", "-nodefaults", "-no-reboot"])
        .args(["-icount", "shift=0,align=off,sleep=off"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-dtb")
        .arg(&dtb)
        .args(["-append", &bootargs]);
    for &s in serials {
        cmd.args(["-serial", s]);
    }
    let alone = run_until(&mut cmd, RUN_INIT, Duration::from_secs(600))?;
    let alone = printk_seconds(&alone);

    println!();
    println!(
        "Linux to userspace ({} {}, {vcpus} vCPUs, {ram_mib} MiB; -icount shift=0)",
        kernel.package, kernel.version
    );
    println!("  {:<52} {:>14}", "boot (Linux's clock at `Run /init`)", "instructions");
    let row = |what: &str, v: Option<f64>| match v {
        Some(v) => println!("  {what:<52} {:>14.0}", v * 1e9),
        None => println!("  {what:<52} {:>14}", "(not seen)"),
    };
    row("on QEMU alone (same kernel, initramfs, device tree)", alone);
    row("in Septum's connectivity partition", in_septum);
    if let (Some(a), Some(s)) = (alone, in_septum) {
        println!("  {:<52} {:>13.2}% {:>8}", "overhead", (s - a) / a * 100.0, "< 3%");
    }
    println!("  The count covers every emulated core from the kernel's timer start; under Septum");
    println!("  that includes the critical monitor, which sleeps in WFI between its beats.");
    println!();
    Ok(())
}

/// Runs `cmd`, reading its stdout until a line contains `needle` (returned) or
/// `timeout` passes; the process is killed either way.
fn run_until(cmd: &mut Command, needle: &str, timeout: Duration) -> Result<String, String> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = needle.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&wanted) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let got = rx.recv_timeout(timeout);
    let _ = child.kill();
    let _ = child.wait();
    got.map_err(|_| format!("QEMU alone never printed \"{needle}\" within {timeout:?}"))
}

/// `-icount shift=0`: one instruction per virtual nanosecond; virt's counter runs at
/// 62.5 MHz, so one tick is 16 instructions.
const INSTRUCTIONS_PER_TICK: f64 = 16.0;

/// Boots `systems/bench.toml` under `-icount shift=0` and turns what connectivity
/// measured (`bench: <what> ticks=<T> count=<N>`) into instructions per operation.
fn virtualization() -> Result<(), String> {
    let art = build::system("bench")?;
    eprintln!("xtask: booting systems/bench.toml under -icount shift=0");
    let opts = Launch { icount: Some(0), ..Launch::default() };
    let mut m = Machine::launch(&art, &opts)?;
    let waited =
        m.wait_for("the benchmark", Duration::from_secs(180), |l| l.iter().any(|l| l.text.contains("bench: done")));
    let lines = m.lines();
    drop(m);
    waited.map_err(|e| format!("{e}\n{}", transcript(&lines)))?;
    let figure = |what: &str| -> Option<f64> {
        let text = lines.iter().find_map(|l| l.text.split(&format!("bench: {what} ticks=")).nth(1))?;
        let (ticks, count) = text.split_once(" count=")?;
        let count = count.split_whitespace().next()?;
        let (ticks, count): (f64, f64) = (ticks.parse().ok()?, count.parse().ok()?);
        Some(ticks * INSTRUCTIONS_PER_TICK / count.max(1.0))
    };
    println!();
    println!("Virtualization costs on qemu-virt (cortex-a72, -icount shift=0: 1 tick = 16 instructions)");
    println!("  {:<58} {:>12} {:>8}", "operation (method)", "instructions", "target");
    let row = |what: &str, v: Option<f64>, target: &str| match v {
        Some(v) => println!("  {what:<58} {v:>12.0} {target:>8}"),
        None => println!("  {what:<58} {:>12} {target:>8}", "(none)"),
    };
    row("null hypercall, HVC to return (4096 in a row)", figure("null-hypercall"), "< 100");
    row("virtual timer: deadline to guest's acknowledge (median)", figure("timer-interrupt"), "< 150");
    row("SGI to itself: trapped write to acknowledge and end", figure("sgi-self"), "-");
    row("SGI vCPU 0 -> vCPU 1 in WFI: send to acknowledge (median)*", figure("sgi"), "-");
    row("trapped distributor read (GICD_TYPER, 4096 in a row)", figure("distributor-read"), "< 180");
    println!("  A tick is 16 instructions, so single-shot figures are multiples of 16.");
    println!("  * Across cores, icount runs the vCPUs round-robin on one host thread:");
    println!("  that figure is mostly QEMU's scheduling, not the hypervisor's work.");
    println!("  Where the instructions go (targets missed): a hypercall pays about 45 for the vectors'");
    println!("  full register save and restore (all 31 registers, as for any exit) and the Rust");
    println!("  handler's entry and exit, and on this Cortex-A72 about 35 more for the Spectre-BHB");
    println!("  loop every entry from a partition runs first (ISO-009); versions and features are");
    println!("  then answered before the partition is looked up. The timer's and the distributor");
    println!("  read's paths also find the partition and its state behind locks, and choose the GIC");
    println!("  (v2 or v3) at each register access. An assembly path taken before the register save");
    println!("  (after the hardening), for the calls and interrupts that need no state, would bring");
    println!("  them nearer their targets.");
    println!();
    Ok(())
}

/// Size the connectivity image is padded to.
const IMAGE_BYTES: usize = 1 << 20;
/// `-icount shift=4`: 16 ns per instruction, one tick of virt's 62.5 MHz counter.
const ICOUNT_SHIFT: u32 = 4;
const PARTITION: &str = "connectivity";

fn boot_verification() -> Result<(), String> {
    let art = build::system("qemu-virt-bare")?;
    let index = art
        .system
        .partitions
        .iter()
        .position(|p| p.name == PARTITION)
        .ok_or_else(|| format!("qemu-virt-bare has no {PARTITION} partition"))?;
    let bytes = std::fs::read(&art.bundle).map_err(|e| format!("{}: {e}", art.bundle.display()))?;
    let mut parts = BundleParts::parse(&bytes)?;
    // Zeros after the program: bytes the partition never reads, but every one hashed.
    let image = &mut parts.images[index];
    let program_len = image.len();
    if program_len > IMAGE_BYTES {
        return Err(format!("{PARTITION} image is {program_len} bytes, more than {IMAGE_BYTES}"));
    }
    image.resize(IMAGE_BYTES, 0);
    let image_hash = hash::sha512(image);
    parts.manifests[index] = resign_manifest(&art.keys, &parts.manifests[index], |m| {
        m.image_len = IMAGE_BYTES as u64;
        m.image_hash = image_hash;
    })?;
    let bundle = art.dir.join("bundle-bench-1mib.bin");
    std::fs::write(&bundle, parts.encode()?).map_err(|e| format!("{}: {e}", bundle.display()))?;

    eprintln!("xtask: booting qemu-virt under -icount shift={ICOUNT_SHIFT} with a 1 MiB {PARTITION} image");
    let opts = Launch { bundle: Some(bundle), icount: Some(ICOUNT_SHIFT), ..Launch::default() };
    let mut m = Machine::launch(&art, &opts)?;
    let needle = format!("trust: {PARTITION}: manifest verified");
    let waited = m
        .wait_for("the verification figures", Duration::from_secs(120), |l| l.iter().any(|l| l.text.contains(&needle)));
    let lines = m.lines();
    drop(m);
    waited.map_err(|e| format!("{e}\n{}", transcript(&lines)))?;

    let find = |needle: &str| lines.iter().find(|l| l.text.contains(needle)).map(|l| l.text.as_str());
    let root = find("trust: root chain verified").and_then(|t| number_before(t, " ticks"));
    let config = find("trust: configuration signature verified").and_then(|t| number_before(t, " ticks"));
    let image_line = find(&needle).ok_or("no verification line")?;
    let manifest = number_before(image_line, " ticks,");
    let image_ticks = image_line.rsplit_once(" in ").and_then(|(_, t)| number_before(t, " ticks"));

    println!();
    println!("Boot-time verification on qemu-virt (cortex-a72, -icount shift={ICOUNT_SHIFT}: 1 tick = 1 instruction)");
    println!("  {:<52} {:>14}", "check", "instructions");
    let row = |what: &str, v: Option<u64>| match v {
        Some(v) => println!("  {what:<52} {v:>14}"),
        None => println!("  {what:<52} {:>14}", "(not logged)"),
    };
    row("root chain (genesis document, ed25519)", root);
    row("configuration signature (ed25519)", config);
    row(&format!("{PARTITION} manifest (ed25519, fields, counters)"), manifest);
    row(&format!("{PARTITION} image (1 MiB) and device tree, SHA-512"), image_ticks);
    if let Some(t) = image_ticks {
        println!("  {:<52} {:>14.1}", "  per image byte", t as f64 / IMAGE_BYTES as f64);
    }
    if let (Some(m), Some(t)) = (manifest, image_ticks) {
        let total = m + t;
        println!("  {:<52} {:>14}", "1 MiB partition, manifest + image", total);
        println!("  {:<52} {:>11.1} ms", "  at 1.5 GHz and one instruction per cycle", total as f64 / 1.5e6);
    }
    println!("  (the image: {program_len} bytes of program, then zeros to 1 MiB, signed again)");
    println!();
    Ok(())
}

/// The decimal number right before `suffix` in `text`.
fn number_before(text: &str, suffix: &str) -> Option<u64> {
    let head = &text[..text.find(suffix)?];
    let digits = head.rsplit(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

fn transcript(lines: &[Line]) -> String {
    lines.iter().map(|l| format!("{:<18}| {}\n", l.console, l.text)).collect()
}

/// The channel: the host benchmark (`ipc-channel/benches/throughput.rs`, against
/// `rtrb`), its output going straight to the terminal, then the channel on aarch64
/// ([`channel_aarch64`]).
fn channel() -> Result<(), String> {
    let args = ["bench", "-p", "septum-ipc-channel", "--bench", "throughput"];
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build::run(c.current_dir(root()).args(args))?;
    channel_aarch64()
}

/// The channel's message sizes on aarch64 (as `partitions/connectivity/src/bench.rs`).
const CHANNEL_SIZES: [usize; 3] = [16, 256, 4096];

/// Instructions per message on aarch64: `systems/bench-channel.toml` under
/// `-icount shift=4`, two partitions running the channel's real code over their
/// stage-2-mapped regions, timing each batch while the other waits in WFI.
fn channel_aarch64() -> Result<(), String> {
    let art = build::system("bench-channel")?;
    eprintln!("xtask: booting systems/bench-channel.toml under -icount shift={ICOUNT_SHIFT}");
    let mut m = Machine::launch(&art, &Launch { icount: Some(ICOUNT_SHIFT), ..Launch::default() })?;
    let done = |l: &[Line]| l.iter().filter(|l| l.text.contains("bench: channel done")).count() == 2;
    let waited = m.wait_for("both partitions' channel figures", Duration::from_secs(300), done);
    let lines = m.lines();
    drop(m);
    waited.map_err(|e| format!("{e}\n{}", transcript(&lines)))?;
    if let Some(wrong) = lines.iter().find(|l| l.text.contains("WRONG")) {
        return Err(format!("{}: {}\n{}", wrong.console, wrong.text, transcript(&lines)));
    }
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();

    println!();
    println!(
        "Channel on aarch64 (qemu-virt, cortex-a72, -icount shift={ICOUNT_SHIFT}: 1 tick = 1 instruction; \
         systems/bench-channel.toml)"
    );
    println!("  instructions per message, a batch of a queue's depth each, the peer idle in WFI");
    println!(
        "  {:>7}  {:<9} {:>10} {:>10} {:>10} {:>10}  {:>12}",
        "size", "checksum", "a->b send", "a->b recv", "b->a send", "b->a recv", "CRC-32C alone"
    );
    for (checksum, suffix) in [("crc32c", ""), ("none", "-plain")] {
        for size in CHANNEL_SIZES {
            let cell = |name: &str, op: &str| {
                channel_figure(&texts, &format!("channel {name}{suffix} {op} {size}"))
                    .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
            };
            let crc = if checksum == "crc32c" {
                channel_figure(&texts, &format!("crc32c {size}")).map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
            } else {
                String::new()
            };
            println!(
                "  {:>7}  {checksum:<9} {:>10} {:>10} {:>10} {:>10}  {crc:>12}",
                format!("{size} B"),
                cell("ab", "send"),
                cell("ab", "recv"),
                cell("ba", "send"),
                cell("ba", "recv"),
            );
        }
    }
    println!("  CRC-32C alone: the checksum of the numbers and the message, as a send computes it;");
    println!("  the guests run the CRC32CX instruction (built with target-feature +crc).");
    println!();
    Ok(())
}

/// Ticks per operation from a `bench: <what> ticks=<T> count=<N>` line (at shift=4 a
/// tick is an instruction).
fn channel_figure(lines: &[&str], what: &str) -> Option<f64> {
    let needle = format!("bench: {what} ticks=");
    let text = lines.iter().find_map(|l| l.split(&needle).nth(1))?;
    let (ticks, count) = text.split_once(" count=")?;
    let count = count.split_whitespace().next()?;
    let (ticks, count): (f64, f64) = (ticks.parse().ok()?, count.parse().ok()?);
    (count > 0.0).then(|| ticks / count)
}

#[cfg(test)]
mod tests {
    use super::{channel_figure, number_before, printk_seconds};

    #[test]
    fn reads_the_channel_figures() {
        let lines = ["x", "[b] bench: channel ab recv 256 ticks=4800 count=16", "bench: crc32c 16 ticks=32 count=16"];
        assert_eq!(channel_figure(&lines, "channel ab recv 256"), Some(300.0));
        assert_eq!(channel_figure(&lines, "crc32c 16"), Some(2.0));
        assert_eq!(channel_figure(&lines, "channel ab send 256"), None);
        assert_eq!(channel_figure(&["bench: channel ab send 16 ticks=5 count=0"], "channel ab send 16"), None);
    }

    #[test]
    fn reads_linux_timestamps() {
        assert_eq!(printk_seconds("[    1.240142] Run /init as init process"), Some(1.240142));
        assert_eq!(printk_seconds("no stamp"), None);
    }

    #[test]
    fn reads_the_figures_of_a_log_line() {
        let line = "[ 0.1] trust: connectivity: manifest verified in 812345 ticks, 1048576 image and 2048 device tree bytes verified in 20123456 ticks";
        assert_eq!(number_before(line, " ticks,"), Some(812345));
        let image = line.rsplit_once(" in ").and_then(|(_, t)| number_before(t, " ticks"));
        assert_eq!(image, Some(20123456));
        assert_eq!(number_before("no figures here", " ticks"), None);
    }
}

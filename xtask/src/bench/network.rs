//! `cargo xtask bench network`: TCP throughput from the connectivity Linux to a sink on
//! the host's loopback, under Septum and with the same kernel, initramfs, device tree
//! and QEMU devices on QEMU alone, measured in one run.
//!
//! The sink is a plain socket in xtask: it counts the bytes and the host time from the
//! first to the last. Linux sends with busybox (`dd if=/dev/zero | nc`), typed at its
//! console, through the virtio-net-pci card and QEMU's user-mode network (`guestfwd`,
//! one `socat` per connection, as for any forwarded service).
//! The figure is host wall-clock time, so it moves with the host's load: both machines
//! stay up and send in turn, and the medians are compared. A control pipes the same
//! bytes into `/dev/null` on each, to show what the emulated CPU costs on its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::build;
use crate::qemu::{Launch, Machine, Net, GUEST_HOST_ADDR};

use super::{transcript, PARTITION};

/// The port Linux connects to (forwarded to the sink's).
const GUEST_PORT: u16 = 8000;
/// Bytes per transfer: 64 KiB blocks (16 MiB).
const BLOCKS: u32 = 256;
const BLOCK: u32 = 64 << 10;
/// Bytes of the control (which is much faster): 64 KiB blocks.
const CONTROL_BLOCKS: u32 = 4096;
/// The sender runs on the guest's second CPU, the card's interrupt on its first. Left
/// to the scheduler, `dd` and `nc` sometimes share a CPU and sometimes not, and the
/// rate jumps between two levels twice apart; pinned, it varies by a tenth.
const PINNED: &str = "taskset 2 sh -c";
/// Bytes of the counted control: 64 KiB blocks.
const ICOUNT_BLOCKS: u32 = 16384;
/// Counted turns (each figure is exact but for `/proc/uptime`'s 10 ms steps).
const ICOUNT_ROUNDS: usize = 3;
/// Transfers per setup, taking turns.
const ROUNDS: usize = 7;
/// What Linux prints once its card has a lease.
const NETWORK_UP: &str = "septum-linux: network eth0 up";
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

/// A console Linux's shell is on: the partition's UART under Septum, stdio alone.
trait Console {
    fn send(&mut self, text: &str) -> Result<(), String>;
    /// Lines printed so far.
    fn lines(&self) -> Vec<String>;
    fn exited(&mut self) -> bool;
    fn transcript(&self) -> String;
}

struct UnderSeptum(Machine);

impl Console for UnderSeptum {
    fn send(&mut self, text: &str) -> Result<(), String> {
        self.0.send(PARTITION, text)
    }
    fn lines(&self) -> Vec<String> {
        self.0.console(PARTITION)
    }
    fn exited(&mut self) -> bool {
        self.0.wait_exit(Duration::from_millis(1)).is_some()
    }
    fn transcript(&self) -> String {
        self.0.transcript()
    }
}

/// QEMU alone, its guest's console on stdin/stdout.
struct Alone {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Alone {
    fn launch(cmd: &mut Command) -> Result<Alone, String> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        crate::qemu::die_with_parent(cmd);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Ok(Alone { child, stdin, lines })
    }
}

impl Console for Alone {
    fn send(&mut self, text: &str) -> Result<(), String> {
        self.stdin.write_all(text.as_bytes()).and_then(|()| self.stdin.flush()).map_err(|e| format!("typing: {e}"))
    }
    fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }
    fn transcript(&self) -> String {
        self.lines().join("\n")
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a line after the first `from` contains `needle`.
fn wait_line(c: &mut dyn Console, from: usize, needle: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if c.lines().iter().skip(from).any(|l| l.contains(needle)) {
            return Ok(());
        }
        if c.exited() || Instant::now() > deadline {
            return Err(format!("waiting for \"{needle}\": QEMU exited or {timeout:?} passed\n{}", c.transcript()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for Linux's lease, then for its shell to answer.
fn ready(c: &mut dyn Console) -> Result<(), String> {
    wait_line(c, 0, NETWORK_UP, BOOT_TIMEOUT)?;
    // The shell starts after the init script: ask until it answers.
    for _ in 0..60 {
        let from = c.lines().len();
        // The same userspace on both: the channel agent (which on QEMU alone finds no
        // channel) stopped, so only the transfer runs.
        c.send("killall septum-agent 2>/dev/null; echo shell-$((6*7))\n")?;
        if wait_line(c, from, "shell-42", Duration::from_secs(5)).is_ok() {
            return Ok(());
        }
    }
    Err(format!("Linux's shell never answered\n{}", c.transcript()))
}

/// The same bytes through the same pipe, pinned the same way, into `/dev/null` instead
/// of the network: what the emulated CPU costs on its own. Returns the host time from
/// typing to the answer, and the guest's own (`/proc/uptime`, 10 ms steps), which under
/// `-icount` counts instructions.
fn control(c: &mut dyn Console, blocks: u32) -> Result<(Duration, Option<f64>), String> {
    let from = c.lines().len();
    let started = Instant::now();
    c.send(&format!(
        "a=$(cut -d' ' -f1 /proc/uptime); {PINNED} 'dd if=/dev/zero bs={BLOCK} count={blocks} 2>/dev/null | cat >/dev/null'; \
         b=$(cut -d' ' -f1 /proc/uptime); echo piped $a $b-$((6*7))\n"
    ))?;
    wait_line(c, from, "-42", TRANSFER_TIMEOUT)?;
    let took = started.elapsed();
    let guest = c.lines().iter().skip(from).rev().find_map(|l| {
        let rest = l.strip_prefix("piped ")?.strip_suffix("-42")?;
        let (a, b) = rest.split_once(' ')?;
        Some(b.parse::<f64>().ok()? - a.parse::<f64>().ok()?)
    });
    Ok((took, guest))
}

/// One transfer: Linux sends [`BLOCKS`] × [`BLOCK`] bytes to the sink; returns the
/// bytes the sink received and the host time from the first to the last.
fn transfer(c: &mut dyn Console, sink: &TcpListener) -> Result<(u64, Duration), String> {
    let want = u64::from(BLOCKS) * u64::from(BLOCK);
    let (tx, rx) = std::sync::mpsc::channel();
    let listener = sink.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let got = (|| -> std::io::Result<(u64, Duration)> {
            let (mut s, _) = listener.accept()?;
            let mut buf = vec![0u8; 1 << 16];
            let mut n = s.read(&mut buf)? as u64;
            let first = Instant::now();
            // Up to what was sent, not to the end of the stream: closing ends `nc`,
            // whatever its build does when its input ends.
            while n < want {
                match s.read(&mut buf)? {
                    0 => break,
                    k => n += k as u64,
                }
            }
            Ok((n, first.elapsed()))
        })();
        let _ = tx.send(got);
    });
    let from = c.lines().len();
    c.send(&format!(
        "{PINNED} 'dd if=/dev/zero bs={BLOCK} count={BLOCKS} 2>/dev/null | nc {GUEST_HOST_ADDR} {GUEST_PORT}'; echo sent-$((6*7))\n"
    ))?;
    let got = rx.recv_timeout(TRANSFER_TIMEOUT).map_err(|_| format!("the sink saw no transfer\n{}", c.transcript()))?;
    let (bytes, took) = got.map_err(|e| format!("the sink: {e}"))?;
    wait_line(c, from, "sent-42", TRANSFER_TIMEOUT)?;
    if bytes != want {
        return Err(format!("the sink received {bytes} bytes, not {want}\n{}", c.transcript()));
    }
    Ok((bytes, took))
}

fn mbytes_per_s((bytes, took): (u64, Duration)) -> f64 {
    bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

/// QEMU alone running the partition's Linux as the partition has it: the same kernel,
/// initramfs, device tree (RAM, CPUs, UART, the PCIe host bridge) and bootargs, the same
/// machine devices (the SMMU, idle: nothing programs it) and network card.
fn alone_command(art: &build::Artifacts, net: &Net) -> Result<Command, String> {
    let p = art.system.partitions.iter().find(|p| p.name == PARTITION).ok_or("qemu-virt has no connectivity")?;
    let console = p.devices.iter().find(|d| d.compatible.contains(&"arm,pl011")).ok_or("connectivity has no UART")?;
    let ram_mib = p.desc.regions().first().map_or(0, |r| r.size >> 20);
    let vcpus = p.desc.vcpus().len();
    let kernel = crate::linux::debian_kernel()?;
    let initrd = crate::linux::initramfs(Some(&build::agent()?))?;
    let dtb = art.dir.join(format!("{PARTITION}.dtb"));
    let extras = crate::qemu::board_extras(art.system.board.name)?;
    let nic = extras.nic.ok_or("qemu/qemu-virt.toml names no network card")?;
    let machine = match &extras.iommu {
        Some(iommu) => format!("virt,gic-version=3,{iommu}"),
        None => "virt,gic-version=3".to_string(),
    };
    let mut cmd = Command::new(crate::prereq::QEMU);
    cmd.args(["-M", &machine, "-cpu", "cortex-a72", "-smp", &vcpus.to_string()]).args([
        "-m",
        &format!("{ram_mib}M"),
        "-display",
        "none",
        "-monitor",
        "none",
        "-nodefaults",
        "-no-reboot",
    ]);
    for g in &extras.globals {
        cmd.arg("-global").arg(g);
    }
    cmd.arg("-netdev").arg(net.netdev()?).arg("-device").arg(&nic);
    cmd.arg("-kernel").arg(&kernel.image).arg("-initrd").arg(&initrd).arg("-dtb").arg(&dtb);
    cmd.args(["-append", &p.bootargs]);
    // The partition's console is the board's second PL011: the first goes nowhere.
    let serials: &[&str] = if console.name == "uart1" { &["null", "stdio"] } else { &["stdio"] };
    for &s in serials {
        cmd.args(["-serial", s]);
    }
    Ok(cmd)
}

/// MiB in `blocks` blocks.
fn mib(blocks: u32) -> u64 {
    (u64::from(blocks) * u64::from(BLOCK)) >> 20
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One table row: the median, then every figure.
fn row(what: &str, v: &[f64], decimals: usize) {
    let each: Vec<String> = v.iter().map(|x| format!("{x:6.decimals$}")).collect();
    println!("  {what:<46} {:>8.decimals$}  {}", median(v), each.join(""));
}

pub fn network() -> Result<(), String> {
    let art = build::system("qemu-virt")?;
    let p = art.system.partitions.iter().find(|p| p.name == PARTITION).ok_or("qemu-virt has no connectivity")?;
    if !p.devices.iter().any(|d| d.pci_ecam) {
        return Err("qemu-virt's connectivity has no PCIe host bridge, so no network".into());
    }
    let vcpus = p.desc.vcpus().len();
    let sink = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("the sink: {e}"))?;
    let port = sink.local_addr().map_err(|e| e.to_string())?.port();
    let net = Net { guestfwd: vec![(GUEST_PORT, port)], hostfwd: vec![] };

    let boot = |icount: Option<u32>| -> Result<(UnderSeptum, Alone), String> {
        let clock = icount.map_or(String::new(), |n| format!(", -icount shift={n}"));
        eprintln!("xtask: booting qemu-virt (Linux in connectivity, {vcpus} vCPUs{clock})");
        let mut septum = UnderSeptum(Machine::launch(&art, &Launch { net: net.clone(), icount, ..Launch::default() })?);
        ready(&mut septum).map_err(|e| format!("{e}\n{}", transcript(&septum.0.lines())))?;
        eprintln!("xtask: booting the same Linux on QEMU alone ({vcpus} CPUs{clock})");
        let mut cmd = alone_command(&art, &net)?;
        if let Some(n) = icount {
            cmd.args(["-icount", &format!("shift={n},align=off,sleep=off")]);
        }
        let mut alone = Alone::launch(&mut cmd)?;
        ready(&mut alone)?;
        Ok((septum, alone))
    };

    // Taking turns, so that a change in the host's load falls on both.
    let (mut septum, mut alone) = boot(None)?;
    let (mut under, mut without) = (Vec::new(), Vec::new());
    let (mut cpu_under, mut cpu_without) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("xtask: turn {round} of {ROUNDS}: a transfer and the control, under Septum then alone");
        under.push(mbytes_per_s(transfer(&mut septum, &sink)?));
        without.push(mbytes_per_s(transfer(&mut alone, &sink)?));
        let control_bytes = u64::from(CONTROL_BLOCKS) * u64::from(BLOCK);
        cpu_under.push(mbytes_per_s((control_bytes, control(&mut septum, CONTROL_BLOCKS)?.0)));
        cpu_without.push(mbytes_per_s((control_bytes, control(&mut alone, CONTROL_BLOCKS)?.0)));
    }
    drop(alone);
    drop(septum);

    // The control again, counted in instructions: what Septum adds to the guest's work,
    // apart from what emulating it costs the host.
    let (mut septum, mut alone) = boot(Some(0))?;
    let (mut icount_under, mut icount_without) = (Vec::new(), Vec::new());
    for round in 1..=ICOUNT_ROUNDS {
        eprintln!("xtask: counted turn {round} of {ICOUNT_ROUNDS}");
        icount_under.push(control(&mut septum, ICOUNT_BLOCKS)?.1.ok_or("no guest time from Septum's Linux")?);
        icount_without.push(control(&mut alone, ICOUNT_BLOCKS)?.1.ok_or("no guest time from Linux alone")?);
    }
    drop(alone);
    drop(septum);

    let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    println!();
    println!(
        "Network: TCP from Linux to a sink on the host's loopback ({} MiB per transfer; virtio-net-pci, user-mode network)",
        mib(BLOCKS)
    );
    println!("  {:<46} {:>8}  each turn", "host wall-clock, MB/s", "median");
    row("on QEMU alone (same kernel, initramfs, DTB)", &without, 1);
    row("in Septum's connectivity partition", &under, 1);
    row("ratio (target >= 0.9)", &ratios(&under, &without), 2);
    println!("  control: the same pipe into /dev/null ({} MiB), MB/s", mib(CONTROL_BLOCKS));
    row("on QEMU alone", &cpu_without, 1);
    row("in Septum's connectivity partition", &cpu_under, 1);
    row("ratio", &ratios(&cpu_under, &cpu_without), 2);
    println!("  control under -icount shift=0 ({} MiB), guest seconds (instructions / 1e9)", mib(ICOUNT_BLOCKS));
    row("on QEMU alone", &icount_without, 2);
    row("in Septum's connectivity partition", &icount_under, 2);
    row("ratio (alone / Septum)", &ratios(&icount_without, &icount_under), 2);
    println!("  Both machines are up and take turns; Linux runs only the transfer (the channel agent");
    println!("  stopped), its sender pinned to its second CPU; under Septum the critical monitor keeps");
    println!("  its beat. Where the wall-clock ratios fall short of the counted one, the difference is");
    println!("  the host's cost of emulating a second stage of translation (QEMU walks both stages in");
    println!("  software on every TLB refill, and refills after each address-space switch), not work");
    println!("  Septum adds: the counted ratio says how many more instructions the guest needed.");
    println!();
    Ok(())
}

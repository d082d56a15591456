//! Running a system in QEMU with every console captured: the hypervisor's log
//! (semihosting) and each UART, labelled with the partition that owns it. Used by
//! `cargo xtask run` (echoing to the terminal) and by the system tests (which judge
//! the lines).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::build::Artifacts;

/// How the machine enters the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    El2,
    El3,
    El1,
}

#[derive(Deserialize)]
struct MachineFile {
    binary: String,
    cpu: String,
    smp: u32,
    memory: String,
    /// Bytes of the hypervisor's flash bank (`-drive if=pflash,unit=1`), if the board
    /// has one.
    storage_bytes: Option<u64>,
    /// `"debian"`: give QEMU the board's DTB from Debian's kernel package, as the
    /// board's firmware would (QEMU then fills in /memory and /chosen).
    dtb: Option<String>,
    /// `-global` settings (QEMU virt: the SMMU translating at stage 2).
    #[serde(default)]
    globals: Vec<String>,
    /// The machine option that adds the IOMMU (removed for [`Launch::iommu`] = false).
    iommu: Option<String>,
    /// What xtask plugs into the PCIe host bridge when a system gives it to a partition.
    pci: Option<Pci>,
    el2: Mode,
    el3: Mode,
    el1: Mode,
}

/// PCIe devices of the machine (QEMU virt's host bridge, behind the SMMU).
#[derive(Deserialize)]
struct Pci {
    /// The network interface card: `-device` with `netdev=net0`.
    nic: String,
    /// The disk controller: `-device` with `drive=disk0`.
    disk: String,
}

#[derive(Clone, Deserialize)]
struct Mode {
    machine: String,
    serials: Vec<String>,
    image: String,
}

/// One line a console printed.
#[derive(Clone, Debug)]
pub struct Line {
    /// `hypervisor`, or the partition owning the UART.
    pub console: String,
    pub text: String,
    pub at: Duration,
}

/// The number a report line gives after `key=` (`received=85655` in
/// `vitals received=85655 first=64`), if any.
pub fn field(text: &str, key: &str) -> Option<u64> {
    text.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The last line containing `needle`.
pub fn last_with<'a>(lines: &'a [Line], needle: &str) -> Option<&'a Line> {
    lines.iter().rev().find(|l| l.text.contains(needle))
}

pub struct Machine {
    child: Child,
    dir: PathBuf,
    lines: Arc<Mutex<Vec<Line>>>,
    /// Each console's socket, for typing into it.
    inputs: Vec<(String, UnixStream)>,
    started: Instant,
}

pub const HYPERVISOR: &str = "hypervisor";

/// Hypervisor log lines after which nothing more will happen.
pub const FATAL: &[&str] = &["BOOT STOPPED", "hypervisor fault", "hypervisor panic", "REFUSED"];

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Options of one run.
#[derive(Clone, Debug)]
pub struct Launch {
    pub entry: Entry,
    /// Print every line to stdout, labelled, as it arrives.
    pub echo: bool,
    /// `-icount shift=N`: deterministic, instruction-counted time.
    pub icount: Option<u32>,
    /// Replaces the bundle (tests of corrupted configurations).
    pub bundle: Option<PathBuf>,
    /// The hypervisor's flash bank as a file that outlives the run (created erased if
    /// missing); `None`: a fresh, erased bank for this run only.
    pub storage: Option<PathBuf>,
    /// The hypervisor's command line (`-append`, seen in the DTB's `/chosen/bootargs`),
    /// e.g. the `septum.power_cut=N` test hook.
    pub bootargs: Option<String>,
    /// QEMU implements semihosting (the hypervisor's log path). Off, `HLT #0xF000` is
    /// undefined, as on a board with no debugger: the log is only in its RAM ring
    /// ([`Machine::ram_log`]).
    pub semihosting: bool,
    /// The machine has the IOMMU its board file names (QEMU virt: `iommu=smmuv3`). Off,
    /// as a machine without one: a system that gives a bus master needing it is refused
    /// at boot.
    pub iommu: bool,
    /// When a system gives the PCIe host bridge to a partition: its network card's
    /// user-mode network, and its disk (a raw image; none: no disk controller).
    pub net: Net,
    pub disk: Option<PathBuf>,
    /// What QEMU's loader puts in the memory of the sensor named "ecg" (a replayed
    /// front end), if the system has that sensor.
    pub ecg: EcgReplay,
}

/// The recording an "ecg" sensor replays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EcgReplay {
    /// [`DEFAULT_ECG`].
    #[default]
    Default,
    File(PathBuf),
    /// Nothing: the sensor memory stays zero and the critical monitor, finding no
    /// recording, exercises the channel instead (for the channel's own tests).
    Absent,
}

/// The recording a system's "ecg" sensor replays unless told otherwise (workspace-relative).
pub const DEFAULT_ECG: &str = "partitions/ecg/recordings/default.ecg";

/// A partition's network, QEMU's user-mode stack in `restrict=on` mode: the partition
/// reaches nothing but the host services `guestfwd` names (on the host's loopback), and
/// the host reaches it only through `hostfwd`. Nothing leaves the machine.
#[derive(Clone, Debug, Default)]
pub struct Net {
    /// `(guest port, host port)`: the partition's TCP connections to
    /// [`GUEST_HOST_ADDR`]`:guest port` reach `127.0.0.1:host port`.
    pub guestfwd: Vec<(u16, u16)>,
    /// `(host port, guest port)`: `127.0.0.1:host port` reaches the partition's port.
    pub hostfwd: Vec<(u16, u16)>,
}

impl Net {
    /// QEMU's `-netdev` for it, `id=net0` (what the board file's NIC names).
    ///
    /// Each connection the partition opens to a forwarded port gets its own `socat`
    /// (installed here if missing), which QEMU starts with the connection as its stdin
    /// and stdout and which connects to the host's service. QEMU's other form, a
    /// character device, connects once when QEMU starts and carries every connection
    /// over that one stream: a second `wget` would find the first one's server.
    pub fn netdev(&self) -> Result<String, String> {
        let mut netdev = "user,id=net0,restrict=on".to_string();
        if !self.guestfwd.is_empty() {
            crate::prereq::debian_tool("socat", "socat")?;
        }
        for (guest, host) in &self.guestfwd {
            netdev.push_str(&format!(",guestfwd=tcp:{GUEST_HOST_ADDR}:{guest}-cmd:socat - TCP:127.0.0.1:{host}"));
        }
        for (host, guest) in &self.hostfwd {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        Ok(netdev)
    }
}

/// What a board's QEMU file adds to a plain machine: for running a partition's guest
/// on QEMU alone with the same devices (`cargo xtask bench`).
pub struct BoardExtras {
    /// The machine option that adds the IOMMU, e.g. `iommu=smmuv3`.
    pub iommu: Option<String>,
    /// `-global` settings.
    pub globals: Vec<String>,
    /// The PCIe network card's `-device` (with `netdev=net0`).
    pub nic: Option<String>,
}

/// `qemu/<board>.toml`, parsed.
fn machine_file(board: &str) -> Result<(PathBuf, MachineFile), String> {
    let file = crate::build::root().join("qemu").join(format!("{board}.toml"));
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mf = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((file, mf))
}

/// The IOMMU, globals and network card `qemu/<board>.toml` gives a machine.
pub fn board_extras(board: &str) -> Result<BoardExtras, String> {
    let (_, mf) = machine_file(board)?;
    Ok(BoardExtras { iommu: mf.iommu, globals: mf.globals, nic: mf.pci.map(|p| p.nic) })
}

/// The address a partition reaches the host's forwarded services at (QEMU's user-mode
/// network is 10.0.2.0/24; this address is free in it).
pub const GUEST_HOST_ADDR: &str = "10.0.2.100";

impl Default for Launch {
    fn default() -> Self {
        Self {
            entry: Entry::El2,
            echo: false,
            icount: None,
            bundle: None,
            storage: None,
            bootargs: None,
            semihosting: true,
            iommu: true,
            net: Net::default(),
            disk: None,
            ecg: EcgReplay::Default,
        }
    }
}

impl Machine {
    pub fn launch(art: &Artifacts, opts: &Launch) -> Result<Machine, String> {
        let board = art.system.board;
        let (file, mf) = machine_file(board.name)?;
        let mode = match opts.entry {
            Entry::El2 => &mf.el2,
            Entry::El3 => &mf.el3,
            Entry::El1 => &mf.el1,
        };
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("septum-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let bundle = opts.bundle.clone().unwrap_or_else(|| art.bundle.clone());

        let machine = match (&mf.iommu, opts.iommu) {
            (Some(iommu), false) => mode.machine.replace(&format!(",{iommu}"), ""),
            _ => mode.machine.clone(),
        };
        let mode = &Mode { machine, ..mode.clone() };
        let mut cmd = Command::new(&mf.binary);
        cmd.args(["-M", &mode.machine, "-cpu", &mf.cpu, "-smp", &mf.smp.to_string(), "-m", &mf.memory]);
        for g in &mf.globals {
            cmd.arg("-global").arg(g);
        }
        let gives_pcie = art.system.partitions.iter().any(|p| p.devices.iter().any(|d| d.pci_ecam));
        if let (Some(pci), true) = (&mf.pci, gives_pcie) {
            cmd.arg("-netdev").arg(opts.net.netdev()?).arg("-device").arg(&pci.nic);
            if let Some(disk) = &opts.disk {
                cmd.arg("-drive").arg(format!("if=none,id=disk0,format=raw,file={}", disk.display()));
                cmd.arg("-device").arg(&pci.disk);
            }
        }
        cmd.args(["-display", "none", "-monitor", "none", "-nodefaults", "-no-reboot"]);
        if let Some(shift) = opts.icount {
            cmd.args(["-icount", &format!("shift={shift},align=off,sleep=off")]);
        }
        let mut consoles = vec![(HYPERVISOR.to_string(), dir.join("hv.sock"))];
        cmd.arg("-chardev").arg(format!("socket,id=hv,path={},server=on,wait=on", dir.join("hv.sock").display()));
        if opts.semihosting {
            cmd.args(["-semihosting-config", "enable=on,target=native,chardev=hv"]);
        }
        cmd.arg("-qmp").arg(format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()));
        for (i, uart) in mode.serials.iter().enumerate() {
            let sock = dir.join(format!("{uart}.sock"));
            cmd.arg("-chardev").arg(format!("socket,id=s{i},path={},server=on,wait=on", sock.display()));
            cmd.arg("-serial").arg(format!("chardev:s{i}"));
            let owner = art
                .system
                .partitions
                .iter()
                .find(|p| p.devices.iter().any(|d| d.name == uart))
                .map_or_else(|| uart.clone(), |p| p.name.clone());
            consoles.push((owner, sock));
        }
        let dtb = match mf.dtb.as_deref() {
            None => None,
            Some("debian") => Some(crate::dist::board_dtb(board.name)?),
            Some(other) => return Err(format!("{}: dtb = {other:?}: only \"debian\" is known", file.display())),
        };
        match mode.image.as_str() {
            "elf" => {
                cmd.arg("-kernel").arg(&art.hypervisor_elf);
                cmd.arg("-device").arg(format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    bundle.display(),
                    board.default_bundle
                ));
                // QEMU writes no DTB for an ELF: load the board's, as firmware would have
                // completed it (RAM, /chosen), where the hypervisor looks.
                if let Some(dtb) = &dtb {
                    let filled = dir.join("board.dtb");
                    let mut dump = Command::new(&mf.binary);
                    dump.args(["-M", &mode.machine, "-cpu", &mf.cpu, "-smp", &mf.smp.to_string(), "-m", &mf.memory]);
                    dump.arg("-kernel").arg(&art.hypervisor_image).arg("-initrd").arg(&bundle).arg("-dtb").arg(dtb);
                    dump.arg("-machine").arg(format!("dumpdtb={}", filled.display())).stderr(Stdio::null());
                    crate::build::run(&mut dump)?;
                    cmd.arg("-device").arg(format!(
                        "loader,file={},addr={:#x},force-raw=on",
                        filled.display(),
                        board.default_dtb
                    ));
                }
            }
            _ => {
                cmd.arg("-kernel").arg(&art.hypervisor_image);
                cmd.arg("-initrd").arg(&bundle);
                if let Some(dtb) = &dtb {
                    cmd.arg("-dtb").arg(dtb);
                }
            }
        }
        if let Some(args) = &opts.bootargs {
            cmd.arg("-append").arg(args);
        }
        for sensor in art.system.partitions.iter().flat_map(|p| &p.sensors).filter(|s| s.name == "ecg") {
            let file = match &opts.ecg {
                EcgReplay::Default => crate::build::root().join(DEFAULT_ECG),
                EcgReplay::File(f) => f.clone(),
                EcgReplay::Absent => continue,
            };
            let len = std::fs::metadata(&file).map_err(|e| format!("the ECG recording {}: {e}", file.display()))?.len();
            if len > sensor.size {
                return Err(format!(
                    "the ECG recording {} has {len} bytes; the sensor memory holds {} (raise its size in the system)",
                    file.display(),
                    sensor.size
                ));
            }
            cmd.arg("-device").arg(format!("loader,file={},addr={:#x},force-raw=on", file.display(), sensor.pa));
        }
        if let Some(bytes) = mf.storage_bytes {
            let path = opts.storage.clone().unwrap_or_else(|| dir.join("storage.bin"));
            erased_flash(&path, bytes)?;
            cmd.arg("-drive").arg(format!("if=pflash,unit=1,format=raw,file={}", path.display()));
        }
        let stderr = std::fs::File::create(dir.join("qemu.stderr")).map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        std::fs::write(dir.join("command"), format!("{cmd:?}")).ok();
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", mf.binary))?;
        let mut machine = Machine {
            child,
            dir,
            lines: Arc::new(Mutex::new(Vec::new())),
            inputs: Vec::new(),
            started: Instant::now(),
        };
        for (label, sock) in consoles {
            let stream = machine.connect(&sock)?;
            if let Ok(input) = stream.try_clone() {
                machine.inputs.push((label.clone(), input));
            }
            let lines = Arc::clone(&machine.lines);
            let started = machine.started;
            let echo = opts.echo;
            std::thread::spawn(move || read_console(stream, label, lines, started, echo));
        }
        Ok(machine)
    }

    /// QEMU creates each socket in turn and waits for us on it.
    fn connect(&mut self, sock: &Path) -> Result<UnixStream, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = UnixStream::connect(sock) {
                return Ok(s);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("QEMU exited ({status}) before its consoles opened:\n{}", self.stderr()));
            }
            if Instant::now() > deadline {
                return Err(format!("QEMU never opened {}", sock.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `text` into console `name` (a partition's UART), as a user at its terminal.
    pub fn send(&mut self, name: &str, text: &str) -> Result<(), String> {
        let (_, stream) =
            self.inputs.iter_mut().find(|(l, _)| l == name).ok_or_else(|| format!("no console named {name}"))?;
        stream.write_all(text.as_bytes()).map_err(|e| format!("typing into {name}: {e}"))
    }

    /// The consoles' labels: `hypervisor`, then each UART's owner.
    pub fn consoles(&self) -> Vec<String> {
        self.inputs.iter().map(|(label, _)| label.clone()).collect()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default()
    }

    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Lines of one console.
    pub fn console(&self, name: &str) -> Vec<String> {
        self.lines().into_iter().filter(|l| l.console == name).map(|l| l.text).collect()
    }

    /// Every line, labelled, for a failure message.
    pub fn transcript(&self) -> String {
        let mut out = String::new();
        for l in self.lines() {
            out.push_str(&format!("{:>8.3}s {:<18}| {}\n", l.at.as_secs_f64(), l.console, l.text));
        }
        let err = self.stderr();
        if !err.trim().is_empty() {
            out.push_str(&format!("--- QEMU stderr ---\n{err}"));
        }
        out
    }

    /// Waits until `done` holds for the lines so far; on timeout, QEMU exiting or a
    /// fatal hypervisor line ([`FATAL`]) the error carries what was waited for and the
    /// whole transcript.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, done: impl Fn(&[Line]) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if done(&lines) {
                return Ok(());
            }
            if let Some(l) = lines.iter().find(|l| l.console == HYPERVISOR && FATAL.iter().any(|f| l.text.contains(f)))
            {
                return Err(format!(
                    "waiting for {what}: the hypervisor stopped: {}\n--- transcript ---\n{}",
                    l.text,
                    self.transcript()
                ));
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                // Let the readers drain what QEMU wrote last.
                std::thread::sleep(Duration::from_millis(200));
                if done(&self.lines()) {
                    return Ok(());
                }
                let why = exited.map_or(format!("timed out after {timeout:?}"), |s| format!("QEMU exited ({s})"));
                return Err(format!("waiting for {what}: {why}\n--- transcript ---\n{}", self.transcript()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `len` bytes of guest-physical memory at `addr`, read through QMP's `pmemsave`.
    pub fn read_memory(&self, addr: u64, len: u64) -> Result<Vec<u8>, String> {
        let sock = self.dir.join("qmp.sock");
        let stream = UnixStream::connect(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
        let mut out = stream.try_clone().map_err(|e| e.to_string())?;
        let mut replies = BufReader::new(stream);
        // The greeting, then one reply per command (events are skipped).
        let mut reply = || -> Result<String, String> {
            loop {
                let mut l = String::new();
                if replies.read_line(&mut l).map_err(|e| format!("QMP: {e}"))? == 0 {
                    return Err("QMP closed".into());
                }
                if !l.contains("\"event\"") {
                    return Ok(l);
                }
            }
        };
        reply()?;
        let file = self.dir.join("memory.bin");
        for command in [
            r#"{"execute":"qmp_capabilities"}"#.to_string(),
            format!(
                r#"{{"execute":"pmemsave","arguments":{{"val":{addr},"size":{len},"filename":"{}"}}}}"#,
                file.display()
            ),
        ] {
            out.write_all(command.as_bytes()).map_err(|e| format!("QMP: {e}"))?;
            let r = reply()?;
            if !r.contains("\"return\"") {
                return Err(format!("QMP {command}: {r}"));
            }
        }
        std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))
    }

    /// The hypervisor's log as its RAM ring (`SEPTUM_LOG`, found in the hypervisor's
    /// ELF) holds it: what a debugger reads on a board where semihosting is absent.
    pub fn ram_log(&self, art: &Artifacts) -> Result<String, String> {
        use object::{Object, ObjectSymbol};
        let elf = std::fs::read(&art.hypervisor_elf).map_err(|e| format!("{}: {e}", art.hypervisor_elf.display()))?;
        let file = object::File::parse(elf.as_slice()).map_err(|e| format!("hypervisor ELF: {e}"))?;
        let sym = file.symbols().find(|s| s.name() == Ok("SEPTUM_LOG")).ok_or("no SEPTUM_LOG in the hypervisor ELF")?;
        // `tail: u64` (bytes ever written), then the ring; the hypervisor runs where it
        // is linked, so the symbol's address is physical.
        let raw = self.read_memory(sym.address(), sym.size())?;
        let (tail, ring) = raw.split_at(8.min(raw.len()));
        let tail = u64::from_le_bytes(tail.try_into().map_err(|_| "short ring")?);
        let n = ring.len() as u64;
        let bytes = if tail <= n {
            ring[..tail as usize].to_vec()
        } else {
            let at = (tail % n) as usize;
            [&ring[at..], &ring[..at]].concat()
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes QEMU receive SIGKILL when the process that started it dies, however it dies
/// (a test killed by a timeout, xtask stopped by Ctrl-C): no emulator is ever left
/// running on its own.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl(2), which is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

fn read_console(stream: UnixStream, label: String, lines: Arc<Mutex<Vec<Line>>>, started: Instant, echo: bool) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
        if echo {
            crate::progress::println(&format!("{label:<18}| {text}"));
        }
        if let Ok(mut l) = lines.lock() {
            l.push(Line { console: label.clone(), text, at: started.elapsed() });
        }
    }
}

/// Makes `path` a flash bank of `bytes` bytes, erased (all 0xFF) as a new chip is,
/// unless it already is one of that size (a bank kept across runs).
pub fn erased_flash(path: &Path, bytes: u64) -> Result<(), String> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == bytes) {
        return Ok(());
    }
    std::fs::write(path, vec![0xFFu8; bytes as usize]).map_err(|e| format!("{}: {e}", path.display()))
}

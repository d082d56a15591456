//! `septum-agent`: the connectivity partition's userspace, under an unmodified Linux
//! kernel. It finds its channel ends in Linux's view of the device tree the hypervisor
//! built (`/proc/device-tree/channels/endpoint@N`), maps their regions through the
//! `septum_channel` module's devices (`/dev/septum/<label>`, sleeping until a doorbell
//! interrupt) or, without the module, through `/dev/mem` (polling with back-off), and
//! then does what the bare-metal connectivity guest does: takes the critical monitor's
//! `vitals` records, checking their numbering, and sends it numbered `commands`. With a
//! provisioned identity on its data disk it uploads the beats, summaries and alarms
//! (`upload.rs`, `septum-uplink`). Once a second it prints one report line.
//!
//! ```text
//! septum-agent [--dt DIR]      DIR: the device tree as files (default /proc/device-tree)
//! ```
#![deny(unsafe_code)]

mod agent;
mod chardev;
mod devmem;
mod dt;
mod upload;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agent::{Agent, Backoff};
use chardev::Device;
use devmem::{Access, DevMem, Doorbell};
use dt::Endpoint;
use septum_ipc_channel::queuing::{Consumer, Producer};
use septum_ipc_channel::volatile::VolatileRegion;
use septum_ipc_channel::{Checksum, Geometry};

const USAGE: &str = "usage: septum-agent [--dt DIR]   (DIR: the device tree as files, default /proc/device-tree)";
const REPORT_PERIOD: Duration = Duration::from_secs(1);
/// Doorbell rings are held to at most one per 12 ms: each is a trap to the hypervisor,
/// which admits the channel's `doorbell_rate` a second (100 for commands in the
/// shipped systems) and reports the rest as excess. The critical monitor drains the
/// queue whenever it wakes, so a ring per 12 ms loses nothing. A ring held back is
/// made at the next round.
const RING_MIN_INTERVAL: Duration = Duration::from_millis(12);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            complain(&format!("septum-agent: error: {why}\n"));
            ExitCode::FAILURE
        }
    }
}

/// Writes `line` to stdout in one `write`, so it does not interleave with the shell's
/// output on the same console.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

/// As [`say`], to stderr (unbuffered: formatting straight to it could take several writes).
fn complain(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `Ok(None)`: `--help` was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<PathBuf>, String> {
    let mut dt = PathBuf::from("/proc/device-tree");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dt" => dt = args.next().ok_or_else(|| format!("--dt needs a directory\n{USAGE}"))?.into(),
            "-h" | "--help" => return Ok(None),
            _ => match arg.strip_prefix("--dt=") {
                Some(dir) => dt = dir.into(),
                None => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
            },
        }
    }
    Ok(Some(dt))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let Some(dt) = parse_args(args)? else {
        say(&format!("{USAGE}\n"));
        return Ok(());
    };
    let endpoints = dt::read_endpoints(&dt).map_err(|e| format!("reading the device tree: {e}"))?;
    let (vitals, commands) = choose(&endpoints, &dt)?;

    // The device tree's own errors first, before anything is opened or mapped.
    let port = |ep| -> Result<_, String> { Ok((ep, geometry(ep)?, checksum(ep)?)) };
    let vitals = vitals.map(port).transpose()?;
    let commands = commands.map(port).transpose()?;

    // The module's devices when every end has one; /dev/mem otherwise.
    let with_devices = [vitals, commands].iter().flatten().all(|(ep, ..)| chardev::path(&ep.label).exists());
    let Opened { vitals, commands, ends, through } =
        if with_devices { through_devices(vitals, commands)? } else { through_dev_mem(vitals, commands)? };
    say(&format!(
        "septum-agent: channels vitals={} commands={} (mapped through {through})\n",
        if vitals.is_some() { "consumer" } else { "none" },
        if commands.is_some() { "producer" } else { "none" },
    ));
    let mut agent = Agent::new(vitals, commands);
    // The upload (septum-uplink) takes each record on its own threads: the channel
    // loop never waits on the network.
    let uplink = upload::start(say).map(std::rc::Rc::new);
    if let Some(u) = uplink.clone() {
        agent.set_sink(move |r| u.offer(r));
    }
    serve(agent, ends, uplink)
}

/// An end as the device tree describes it, with its geometry and checksum.
type Port<'a> = (&'a Endpoint, Geometry, Checksum);

/// The agent's two ends, mapped, and how it signals and waits.
struct Opened {
    vitals: Option<(Consumer<VolatileRegion>, Geometry)>,
    commands: Option<(Producer<VolatileRegion>, Geometry)>,
    ends: Ends,
    /// What the regions are mapped through, for the first line.
    through: &'static str,
}

/// Opens `/dev/septum/<label>` for each end and maps its regions.
fn through_devices(vitals: Option<Port>, commands: Option<Port>) -> Result<Opened, String> {
    let open = |ep: &Endpoint| -> Result<(Device, (VolatileRegion, VolatileRegion)), String> {
        let path = chardev::path(&ep.label);
        let dev = Device::open(&path).map_err(|e| format!("{}: opening {}: {e}", name(ep), path.display()))?;
        let size = |prop: &str, range: Option<(u64, u64)>| {
            range.map(|(_, size)| size).ok_or_else(|| format!("{}: {prop} missing", name(ep)))
        };
        let (own, peer) = (size("septum,own", ep.own)?, size("septum,peer", ep.peer)?);
        let regions = dev.regions(own, peer).map_err(|e| format!("{}: {}: {e}", name(ep), path.display()))?;
        Ok((dev, regions))
    };
    let vitals = vitals
        .map(|(ep, geo, sum)| -> Result<_, String> {
            let (dev, (own, peer)) = open(ep)?;
            let rx = Consumer::new(geo, sum, own, peer).map_err(|e| format!("{}: {e:?}", name(ep)))?;
            Ok(((rx, geo), dev))
        })
        .transpose()?;
    let commands = commands
        .map(|(ep, geo, sum)| -> Result<_, String> {
            let (dev, (own, peer)) = open(ep)?;
            let tx = Producer::new(geo, sum, own, peer).map_err(|e| format!("{}: {e:?}", name(ep)))?;
            Ok(((tx, geo), dev))
        })
        .transpose()?;
    let (vitals, vitals_dev) = vitals.unzip();
    let (commands, commands_dev) = commands.unzip();
    let ends = Ends::Devices { vitals: vitals_dev, commands: commands_dev };
    Ok(Opened { vitals, commands, ends, through: chardev::DIR })
}

/// Maps each end's regions, and the commands doorbell, through `/dev/mem`.
fn through_dev_mem(vitals: Option<Port>, commands: Option<Port>) -> Result<Opened, String> {
    let mem = DevMem::open().map_err(|e| format!("opening {}: {e}", devmem::DEV_MEM))?;
    let vitals = vitals
        .map(|(ep, geo, sum)| -> Result<_, String> {
            let (own, peer) = regions(&mem, ep)?;
            let rx = Consumer::new(geo, sum, own, peer).map_err(|e| format!("{}: {e:?}", name(ep)))?;
            Ok((rx, geo))
        })
        .transpose()?;
    let commands = commands
        .map(|(ep, geo, sum)| -> Result<_, String> {
            let (own, peer) = regions(&mem, ep)?;
            let bell =
                mem.doorbell(ep.doorbell).map_err(|e| format!("{}: doorbell at {:#x}: {e}", name(ep), ep.doorbell))?;
            let tx = Producer::new(geo, sum, own, peer).map_err(|e| format!("{}: {e:?}", name(ep)))?;
            Ok(((tx, geo), bell))
        })
        .transpose()?;
    let (commands, bell) = commands.unzip();
    Ok(Opened { vitals, commands, ends: Ends::DevMem { bell }, through: devmem::DEV_MEM })
}

/// How the agent signals its peer and waits for work.
enum Ends {
    /// The `septum_channel` module's devices: rings are `write`s, waits sleep in `poll`
    /// until a doorbell interrupt (or the next deadline).
    Devices { vitals: Option<Device>, commands: Option<Device> },
    /// `/dev/mem`: rings are stores to the mapped doorbell page; no interrupt reaches
    /// userspace, so waits poll with back-off.
    DevMem { bell: Option<Doorbell> },
}

impl Ends {
    fn can_ring(&self) -> bool {
        match self {
            Ends::Devices { commands, .. } => commands.is_some(),
            Ends::DevMem { bell } => bell.is_some(),
        }
    }

    fn ring(&self) -> Result<(), String> {
        match self {
            Ends::Devices { commands: Some(dev), .. } => {
                dev.ring().map_err(|e| format!("ringing through {}: {e}", dev.path().display()))
            }
            Ends::DevMem { bell: Some(bell) } => {
                bell.ring();
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The agent's loop; returns only on a device error.
fn serve(
    mut agent: Agent<VolatileRegion>,
    ends: Ends,
    uplink: Option<std::rc::Rc<septum_uplink::Uplink>>,
) -> Result<(), String> {
    let mut backoff = Backoff::new();
    let mut next_report = Instant::now() + REPORT_PERIOD;
    let mut last_ring: Option<Instant> = None;
    let mut unsignalled = false;
    loop {
        let progress = agent.step();
        if let Some(first) = progress.first {
            say(&agent::first_line(&first));
        }
        unsignalled |= progress.sent > 0 && ends.can_ring();
        let now = Instant::now();
        // A ring held back is due this long after the last one.
        let ring_at = last_ring.map_or(now, |t| t + RING_MIN_INTERVAL);
        if unsignalled && now >= ring_at {
            ends.ring()?;
            last_ring = Some(now);
            unsignalled = false;
        }
        if now >= next_report {
            match &uplink {
                Some(u) => {
                    say(&format!("{} {}\n", agent.report().trim_end(), u.report()));
                    agent.set_uplink(u.counters().connected.load(std::sync::atomic::Ordering::Relaxed));
                }
                None => say(&agent.report()),
            }
            agent.tick();
            next_report += REPORT_PERIOD;
            if next_report <= now {
                next_report = now + REPORT_PERIOD;
            }
            // The Ping now due goes at once.
            continue;
        }
        match &ends {
            Ends::Devices { vitals, commands } => {
                if progress.more {
                    continue;
                }
                // Asleep until the peer rings, the next report, or a held-back ring.
                let wake = if unsignalled { next_report.min(ring_at) } else { next_report };
                let devices: Vec<&Device> = vitals.iter().chain(commands.iter()).collect();
                chardev::wait(&devices, wake.saturating_duration_since(Instant::now()))
                    .map_err(|e| format!("waiting for a doorbell: {e}"))?;
            }
            Ends::DevMem { .. } => {
                if progress.moved() {
                    backoff.reset();
                } else {
                    std::thread::sleep(backoff.idle());
                }
            }
        }
    }
}

/// The `vitals` (consumer) and `commands` (producer) ends, at least one of them.
fn choose<'a>(
    endpoints: &'a [Endpoint],
    dt: &std::path::Path,
) -> Result<(Option<&'a Endpoint>, Option<&'a Endpoint>), String> {
    let find = |label: &str, role: &str| -> Result<Option<&'a Endpoint>, String> {
        let Some(ep) = endpoints.iter().find(|e| e.label == label) else { return Ok(None) };
        if ep.kind != "queuing" || ep.role != role {
            return Err(format!("{}: is a {} {}; this agent needs the queuing {role} end", name(ep), ep.kind, ep.role));
        }
        Ok(Some(ep))
    };
    let (vitals, commands) = (find("vitals", "consumer")?, find("commands", "producer")?);
    if vitals.is_none() && commands.is_none() {
        let labels: Vec<&str> = endpoints.iter().map(|e| e.label.as_str()).collect();
        return Err(format!(
            "no \"vitals\" or \"commands\" channel endpoint under {}/channels (endpoints found: [{}])",
            dt.display(),
            labels.join(", ")
        ));
    }
    Ok((vitals, commands))
}

/// `endpoint@1 (commands)`, for messages.
fn name(ep: &Endpoint) -> String {
    format!("{} ({})", ep.node, ep.label)
}

fn geometry(ep: &Endpoint) -> Result<Geometry, String> {
    let (Some(slot_size), Some(depth)) = (ep.slot_size, ep.depth) else {
        return Err(format!("{}: septum,slot-size or septum,depth missing", name(ep)));
    };
    Geometry::new(slot_size, depth).map_err(|e| format!("{}: slot size {slot_size}, depth {depth}: {e:?}", name(ep)))
}

/// What the channel's messages carry: `septum,checksum`, "crc32c" when absent.
fn checksum(ep: &Endpoint) -> Result<Checksum, String> {
    match ep.checksum.as_deref() {
        None => Ok(Checksum::Crc32c),
        Some(given) => Checksum::from_name(given)
            .ok_or_else(|| format!("{}: septum,checksum \"{given}\" is neither \"crc32c\" nor \"none\"", name(ep))),
    }
}

/// Maps an end's own region read-write and the peer's read-only.
fn regions(mem: &DevMem, ep: &Endpoint) -> Result<(VolatileRegion, VolatileRegion), String> {
    let map = |prop: &str, range: Option<(u64, u64)>, access: Access| {
        let (addr, size) = range.ok_or_else(|| format!("{}: {prop} missing", name(ep)))?;
        mem.region(addr, size, access).map_err(|e| format!("{}: {prop} region {addr:#x}+{size:#x}: {e}", name(ep)))
    };
    Ok((map("septum,own", ep.own, Access::ReadWrite)?, map("septum,peer", ep.peer, Access::ReadOnly)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::tests::{write_endpoint, TempDir};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_args(args(&[])), Ok(Some("/proc/device-tree".into())));
        assert_eq!(parse_args(args(&["--dt", "/tmp/x"])), Ok(Some("/tmp/x".into())));
        assert_eq!(parse_args(args(&["--dt=/tmp/y"])), Ok(Some("/tmp/y".into())));
        assert_eq!(parse_args(args(&["--help"])), Ok(None));
        assert!(parse_args(args(&["--dt"])).unwrap_err().starts_with("--dt needs a directory"));
        assert!(parse_args(args(&["-x"])).unwrap_err().starts_with("unknown argument \"-x\""));
    }

    #[test]
    fn chooses_the_ends_by_label_and_role() {
        let dt = TempDir::new("choose");
        write_endpoint(&dt.0, 0, "vitals", "consumer", (0x4F01_1000, 0x1000), (0x4F00_0000, 0x11000));
        write_endpoint(&dt.0, 1, "commands", "producer", (0x4F10_0000, 0x2000), (0x4F10_2000, 0x1000));
        let eps = dt::read_endpoints(&dt.0).unwrap();
        let (v, c) = choose(&eps, &dt.0).unwrap();
        assert_eq!((v.unwrap().node.as_str(), c.unwrap().node.as_str()), ("endpoint@0", "endpoint@1"));
        assert_eq!(geometry(v.unwrap()).unwrap(), Geometry::new(64, 64).unwrap());
        assert_eq!(checksum(v.unwrap()), Ok(Checksum::Crc32c));
        let mut unknown = v.unwrap().clone();
        unknown.checksum = Some("crc32".into());
        assert_eq!(
            checksum(&unknown),
            Err("endpoint@0 (vitals): septum,checksum \"crc32\" is neither \"crc32c\" nor \"none\"".into())
        );

        let (v, c) = choose(&eps[1..], &dt.0).unwrap();
        assert!(v.is_none() && c.is_some());
        let e = choose(&[], &dt.0).unwrap_err();
        assert!(e.starts_with("no \"vitals\" or \"commands\" channel endpoint"), "{e}");

        let dt2 = TempDir::new("choose-wrong");
        write_endpoint(&dt2.0, 0, "vitals", "producer", (0x4F00_0000, 0x11000), (0x4F01_1000, 0x1000));
        let eps = dt::read_endpoints(&dt2.0).unwrap();
        assert_eq!(
            choose(&eps, &dt2.0).unwrap_err(),
            "endpoint@0 (vitals): is a queuing producer; this agent needs the queuing consumer end"
        );
    }
}

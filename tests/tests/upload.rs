//! Uploading vitals (docs/upload.md): the agent's uploader against Debian's mosquitto
//! as xtask runs it (TLS 1.3, client certificates from the fleet CA, CRL, per-device
//! ACL), watched by an operator subscriber; and the agent in the connectivity partition
//! reaching the broker with the identity provisioned on its data disk. Requirement IDs
//! are in docs/requirements.md.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use septum_system_tests::{artifacts, assert_critical_kept_its_period, count, ecg};
use septum_uplink::spool::Limits;
use septum_uplink::{Config, Uplink};
use septum_vitals::{AlarmEvent, AlarmKind, Beat, Header, Record, RecordKind, Summary};
use xtask::broker::{free_port, Broker};
use xtask::fleet::Fleet;
use xtask::qemu::{field, Launch, Machine, Net};

/// A fresh directory for one test, under the build's target directory.
fn scratch(what: &str) -> PathBuf {
    let d = xtask::build::root().join("target").join("upload-tests").join(format!("{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// `mosquitto_sub` as the operator (a persistent session, QoS 1), collecting
/// `topic payload` lines; killed on drop.
struct Sub {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sub {
    fn start(fleet: &Fleet, port: u16, client_id: &str) -> Sub {
        xtask::prereq::debian_tool("mosquitto_sub", "mosquitto-clients").expect("mosquitto-clients");
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls-version", "tlsv1.3"])
            .arg("--cafile")
            .arg(fleet.ca_cert())
            .arg("--cert")
            .arg(fleet.operator_cert())
            .arg("--key")
            .arg(fleet.operator_key())
            .args(["-i", client_id, "-c", "-q", "1", "-v", "-t", "septum/#"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().expect("lines").push(line);
            }
        });
        Sub { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits until `pred` holds for the lines received, or `timeout`.
    fn wait(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if pred(&self.lines()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        pred(&self.lines())
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The topic and `seq` of a `topic {json}` line.
fn seq_of(line: &str) -> Option<(String, u64)> {
    let (topic, body) = line.split_once(' ')?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some((topic.to_string(), v.get("seq")?.as_u64()?))
}

/// Record `seq`: an alarm every 50th, a summary every 10th, beats otherwise.
fn record(seq: u64) -> Record {
    let header = |k| Header::new(k, seq, seq * 100);
    if seq % 50 == 49 {
        Record::Alarm(AlarmEvent {
            header: header(RecordKind::Alarm),
            alarm: AlarmKind::Bradycardia as u8,
            raised: (seq / 50 % 2) as u8,
            _reserved: [0; 2],
            value: 380.into(),
            limit: 400.into(),
        })
    } else if seq.is_multiple_of(10) {
        Record::Summary(Summary {
            header: header(RecordKind::Summary),
            hr_decibpm: 720.into(),
            quality: 95,
            _reserved: 0,
            active_alarms: 0.into(),
            overruns: 0.into(),
            rejected_commands: 0.into(),
        })
    } else {
        Record::Beat(Beat { header: header(RecordKind::Beat), rr_ms: 833.into(), quality: 95, _reserved: [0; 3] })
    }
}

fn host_config(dir: &Path, fleet: &Fleet, device: &str, port: u16) -> Config {
    let dev = fleet.device(device).expect("device identity");
    Config {
        device: device.to_string(),
        host: "127.0.0.1".into(),
        port,
        cert: dev.cert,
        key: dev.key,
        ca: fleet.ca_cert(),
        spool: dir.join(format!("{device}-spool")),
    }
}

fn say(line: &str) {
    eprint!("{line}");
}

/// NET-002, NET-003, NET-004: the uploader publishes every record to
/// `septum/<device>/{beats,summary,alarms}` over TLS 1.3 with its own certificate; the
/// broker is down for 30 s while records keep coming (they wait in the spool on disk);
/// once it is back the backlog drains and the operator has received every record,
/// once each in order of its first arrival (seq strictly increasing, no gaps), each
/// kind on its topic.
#[test]
fn nothing_is_lost_or_reordered_across_a_30_s_broker_outage() {
    let dir = scratch("outage");
    let fleet = Fleet::open(&dir.join("fleet")).expect("fleet");
    let port = free_port();
    let mut broker = Broker::start(&fleet, &dir.join("broker"), port).expect("broker");
    let sub = Sub::start(&fleet, port, "operator-outage");
    std::thread::sleep(Duration::from_secs(1));
    let uplink = Uplink::start(host_config(&dir, &fleet, "dev-h", port), Limits::default(), say).expect("uplink");

    // 20 records a second: 5 s up, 30 s down, 5 s up again.
    let mut seq = 0u64;
    let feed = |seq: &mut u64, secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            uplink.offer(&record(*seq));
            *seq += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    feed(&mut seq, 5);
    let before = uplink.counters().acked.load(std::sync::atomic::Ordering::Relaxed);
    broker.stop();
    let down_from = seq;
    feed(&mut seq, 30);
    let while_down = seq - down_from;
    broker.restart().expect("broker back");
    feed(&mut seq, 5);
    let total = seq;

    let got_all = sub.wait(Duration::from_secs(60), |l| {
        l.iter().filter_map(|x| seq_of(x)).map(|(_, s)| s).collect::<std::collections::BTreeSet<_>>().len() as u64
            == total
    });
    let lines = sub.lines();
    let report = uplink.report();
    assert!(before > 0, "nothing was acknowledged before the outage: {report}");
    assert!(got_all, "{} of {total} records arrived; {report}\nbroker log:\n{}", lines.len(), broker.log());

    let mut seen = std::collections::BTreeSet::new();
    let mut first_arrivals = Vec::new();
    for (topic, s) in lines.iter().filter_map(|x| seq_of(x)) {
        let want = match record(s) {
            Record::Beat(_) => "septum/dev-h/beats",
            Record::Summary(_) => "septum/dev-h/summary",
            _ => "septum/dev-h/alarms",
        };
        assert_eq!(topic, want, "seq {s}");
        if seen.insert(s) {
            first_arrivals.push(s);
        }
    }
    assert_eq!(first_arrivals, (0..total).collect::<Vec<_>>(), "every record, in order; {report}");
    let repeats = lines.len() as u64 - total;
    eprintln!("upload outage: {total} records ({} during the 30 s outage), {repeats} repeats; {report}", while_down);
    assert!(report.contains(" dropped=0 "), "{report}");
    drop((sub, broker));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mosquitto_pub` of one message; whether the broker took it (exit status 0).
fn publish(port: u16, ca: &Path, id: Option<(&Path, &Path)>, topic: &str) -> (bool, String) {
    let mut c = Command::new("mosquitto_pub");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls-version", "tlsv1.3", "-q", "1", "-t", topic])
        .args(["-m", "{\"probe\":1}"])
        .arg("--cafile")
        .arg(ca);
    if let Some((cert, key)) = id {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = c.output().expect("mosquitto_pub");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// NET-005: the broker takes a device only over TLS 1.3 with a certificate of the
/// fleet CA that is not revoked: TLS 1.2, no certificate, another CA's (for the same
/// device ID), a certificate without its key and a revoked one are refused in the TLS
/// handshake; and a device writes only below its own topic: what
/// dev-a publishes under dev-b's topic reaches no subscriber.
#[test]
fn the_broker_refuses_foreign_missing_and_revoked_identities_and_other_devices_topics() {
    let dir = scratch("refuse");
    let fleet = Fleet::open(&dir.join("fleet")).expect("fleet");
    let rogue = Fleet::open(&dir.join("rogue")).expect("another CA");
    let (a, b, c) = (fleet.device("dev-a").unwrap(), fleet.device("dev-b").unwrap(), fleet.device("dev-c").unwrap());
    let forged = rogue.device("dev-a").unwrap();
    let port = free_port();
    let mut broker = Broker::start(&fleet, &dir.join("broker"), port).expect("broker");
    let sub = Sub::start(&fleet, port, "operator-refuse");
    std::thread::sleep(Duration::from_secs(1));
    let ca = fleet.ca_cert();

    let (ok, err) = publish(port, &ca, Some((&a.cert, &a.key)), "septum/dev-a/beats");
    assert!(ok, "dev-a's own identity on its own topic: {err}");
    let (ok, _) = publish(port, &ca, None, "septum/dev-a/beats");
    assert!(!ok, "no client certificate");
    // (mosquitto_pub's --tls-version is a minimum: OpenSSL's client offers exactly one.)
    xtask::prereq::debian_tool("openssl", "openssl").expect("openssl");
    let handshake = |version: &str| {
        Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), version])
            .arg("-CAfile")
            .arg(&ca)
            .arg("-cert")
            .arg(&a.cert)
            .arg("-key")
            .arg(&a.key)
            .stdin(Stdio::null())
            .output()
            .expect("openssl s_client")
    };
    let tls13 = handshake("-tls1_3");
    assert!(tls13.status.success(), "TLS 1.3: {}", String::from_utf8_lossy(&tls13.stderr));
    let tls12 = handshake("-tls1_2");
    assert!(!tls12.status.success(), "TLS 1.2 was accepted");
    let (ok, _) = publish(port, &ca, Some((&forged.cert, &forged.key)), "septum/dev-a/beats");
    assert!(!ok, "a certificate for dev-a from another CA");
    let (ok, _) = publish(port, &ca, Some((&b.cert, &a.key)), "septum/dev-b/beats");
    assert!(!ok, "dev-b's certificate without dev-b's key");

    // dev-a writes under dev-b's topic: accepted on the wire, delivered to nobody.
    let (ok, err) = publish(port, &ca, Some((&a.cert, &a.key)), "septum/dev-b/alarms");
    assert!(ok, "{err}");
    let (ok, err) = publish(port, &ca, Some((&b.cert, &b.key)), "septum/dev-b/summary");
    assert!(ok, "{err}");
    assert!(sub.wait(Duration::from_secs(10), |l| l.iter().any(|x| x.starts_with("septum/dev-b/summary "))));
    let lines = sub.lines();
    assert!(lines.iter().any(|x| x.starts_with("septum/dev-a/beats ")), "{lines:?}");
    assert!(!lines.iter().any(|x| x.starts_with("septum/dev-b/alarms ")), "the ACL let dev-a write dev-b's topic");

    // Revoked: dev-c gets in until its certificate is on the CRL the broker reads.
    assert!(publish(port, &ca, Some((&c.cert, &c.key)), "septum/dev-c/beats").0);
    fleet.revoke("dev-c").expect("revoke");
    broker.restart().expect("broker with the new CRL");
    let (ok, _) = publish(port, &ca, Some((&c.cert, &c.key)), "septum/dev-c/beats");
    assert!(!ok, "a revoked device\n{}", broker.log());
    assert!(publish(port, &ca, Some((&a.cert, &a.key)), "septum/dev-a/beats").0, "others still get in");
    drop((sub, broker));
    let _ = std::fs::remove_dir_all(&dir);
}

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// NET-006, NET-004, NET-002: the agent in the connectivity partition finds the
/// identity provisioned on its data disk (`cargo xtask provision`), reaches the host's
/// broker through the partition's only network path (10.0.2.100:8883, QEMU guestfwd)
/// over TLS 1.3, known to the broker by its certificate's CN, and uploads the critical
/// monitor's beats and summaries (replaying the default ECG recording) under
/// `septum/dev-q/`; the broker is then down for 30 s: the agent spools on its disk,
/// connects again by itself once it is back, and the operator has every record from
/// the first on, once each in order of first arrival, with no gap in `seq`. The
/// monitor accepts the agent's `UplinkState` commands. Then, end to end (MED-003,
/// MED-012): the recording's asystole raises the alarm on the critical console and at
/// the broker within 10 s, the summaries' heart rate is the annotations' within 2 bpm,
/// and no sample period is missed.
#[test]
fn the_agent_connects_to_the_broker_with_its_provisioned_identity() {
    let art = artifacts("qemu-virt");
    let dir = scratch("agent");
    let fleet = Fleet::open(&dir.join("fleet")).expect("fleet");
    let dev = fleet.device("dev-q").expect("identity");
    let disk = dir.join("data.img");
    xtask::disk::make_ext4(&disk, 64).expect("a data disk");
    fleet.write_to_disk(&dev, &disk).expect("provisioned");
    let port = free_port();
    let broker = Broker::start(&fleet, &dir.join("broker"), port).expect("broker");
    let sub = Sub::start(&fleet, port, "operator-agent");
    let opts = Launch {
        disk: Some(disk),
        net: Net { guestfwd: vec![(xtask::fleet::GUEST_BROKER_PORT, port)], hostfwd: vec![] },
        ..Launch::default()
    };
    let mut m = Machine::launch(&art, &opts).expect("QEMU starts");
    let connected = "septum-agent: upload connected to 10.0.2.100:8883 as dev-q (TLS 1.3)";
    let reported = |l: &[xtask::qemu::Line]| {
        l.iter().any(|x| x.text.starts_with("septum-agent: vitals received=") && x.text.contains(" connected=1"))
    };
    m.wait_for("the agent connected to the broker", BOOT_TIMEOUT, |l| count(l, connected) >= 1 && reported(l))
        .unwrap_or_else(|e| panic!("{e}\nbroker log:\n{}", broker.log()));
    let log = broker.log();
    assert!(log.contains("as dev-q ") && log.contains("u'dev-q'"), "the broker knows it as dev-q:\n{log}");
    let got = |sub: &Sub| sub.lines().iter().filter_map(|x| seq_of(x)).collect::<Vec<_>>();
    let arrived = sub.wait(Duration::from_secs(60), |l| {
        let kinds = |t: &str| l.iter().any(|x| x.starts_with(t));
        kinds("septum/dev-q/beats ") && kinds("septum/dev-q/summary ") && l.len() >= 10
    });
    let t = m.transcript();
    assert!(arrived, "no beats and summaries from the partition: {:?}\n{t}", sub.lines());

    // The broker is down for 30 s; records keep coming and wait in the spool.
    let mut broker = broker;
    broker.stop();
    let down = Instant::now();
    m.wait_for("the agent to notice", Duration::from_secs(60), |l| {
        l.iter().any(|x| x.text.starts_with("septum-agent: upload to 10.0.2.100:8883: "))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    let report_line = |m: &Machine| {
        m.lines().iter().rev().find(|x| x.text.starts_with("septum-agent: vitals received=")).map(|x| x.text.clone())
    };
    let during = report_line(&m).expect("a report");
    let last_before_back = field(&during, "last").expect("last=");
    let outage = down.elapsed().as_secs();
    broker.restart().expect("broker back");
    m.wait_for("the agent to connect again", Duration::from_secs(60), |l| count(l, connected) >= 2)
        .unwrap_or_else(|e| panic!("{e}\nbroker log:\n{}", broker.log()));
    let drained = sub.wait(Duration::from_secs(60), |_| got(&sub).iter().any(|(_, s)| *s >= last_before_back));
    let t = m.transcript();
    assert!(drained, "the backlog (up to seq {last_before_back}) did not arrive; {during}\n{t}");

    let lines = sub.lines();
    assert!(lines.iter().all(|x| x.starts_with("septum/dev-q/")), "{lines:?}");
    let mut seen = std::collections::BTreeSet::new();
    let firsts: Vec<u64> = got(&sub).into_iter().map(|(_, s)| s).filter(|s| seen.insert(*s)).collect();
    let first = firsts[0];
    let want: Vec<u64> = (first..first + firsts.len() as u64).collect();
    assert_eq!(firsts, want, "every record once, in order, no gap\n{t}");
    m.wait_for("a report with the backlog sent", Duration::from_secs(30), |l| {
        l.iter()
            .rev()
            .find(|x| x.text.starts_with("septum-agent: vitals received="))
            .is_some_and(|x| field(&x.text, "backlog") == Some(0) && field(&x.text, "connected") == Some(1))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let report = report_line(&m).expect("a report");
    for key in ["published", "spooled", "acked", "backlog", "dropped"] {
        assert!(report.contains(&format!(" {key}=")), "report field {key}: {report}");
    }
    assert_eq!(field(&report, "dropped"), Some(0), "{report}\n{t}");
    assert_eq!(field(&report, "gaps"), Some(0), "{report}\n{t}");
    // The agent told the monitor of its uplink (UplinkState): accepted, in sequence.
    let monitor = m.lines().iter().rev().find(|x| x.text.contains("critical-monitor: commands received=")).cloned();
    let monitor = monitor.expect("the monitor's commands report").text;
    assert_eq!((field(&monitor, "refused"), field(&monitor, "gaps")), (Some(0), Some(0)), "{monitor}");
    eprintln!(
        "agent upload: seq {first}..={} at the operator ({} messages, {} repeats), {} s outage; {report}",
        firsts.last().unwrap_or(&0),
        lines.len(),
        lines.len() - firsts.len(),
        outage
    );

    // MED-003, MED-012, NET-002 end to end: the default recording's asystole reaches the
    // critical console and the broker within the standard's 10 s; every summary at the
    // broker where the annotations give a fair reference shows their heart rate within
    // 2 bpm; no summary reports a missed sample period.
    let truth = ecg::Truth::load("default");
    let (start_ms, _) = truth.first_ms("asystole").expect("the default recording has an asystole");
    let json = |line: &str| -> Option<serde_json::Value> { serde_json::from_str(line.split_once(' ')?.1).ok() };
    let asystole_at_broker = |l: &[String]| {
        l.iter()
            .filter(|x| x.starts_with("septum/dev-q/alarms "))
            .filter_map(|x| json(x))
            .find(|v| v["alarm"] == "asystole" && v["raised"] == true)
    };
    let raised = sub.wait(Duration::from_secs(180), |l| asystole_at_broker(l).is_some());
    let t = m.transcript();
    assert!(raised, "no asystole alarm at the broker\n{t}");
    let alarm = asystole_at_broker(&sub.lines()).expect("the alarm");
    let onset = alarm["t_ms"].as_u64().expect("t_ms");
    assert!(onset >= start_ms && onset <= start_ms + 10_000, "asystole from {start_ms} ms, alarm at {onset}\n{t}");
    assert!(count(&m.lines(), "critical-monitor: ALARM asystole raised") >= 1, "{t}");
    let mut compared = Vec::new();
    for v in sub.lines().iter().filter(|x| x.starts_with("septum/dev-q/summary ")).filter_map(|x| json(x)) {
        assert_eq!(v["overruns"], 0, "a sample period missed: {v}\n{t}");
        let (Some(at), Some(hr)) = (v["t_ms"].as_u64(), v["hr_bpm"].as_f64()) else { continue };
        let Some(reference) = truth.reference_decibpm(at) else { continue };
        let hr = (hr * 10.0).round() as u64;
        assert!(hr.abs_diff(reference) <= 20, "heart rate {hr} vs {reference} (tenths of bpm) at the broker: {v}");
        compared.push(hr.abs_diff(reference));
    }
    assert!(compared.len() >= 5, "only {} summaries with a reference\n{t}", compared.len());
    eprintln!(
        "end to end: asystole from {start_ms} ms raised at {onset} ms at the broker; heart rate at {} summaries, \
         at most {} tenths of bpm from the annotations",
        compared.len(),
        compared.iter().max().unwrap_or(&0)
    );
    assert_critical_kept_its_period(&m.lines(), &t);
    drop((m, sub, broker));
    let _ = std::fs::remove_dir_all(&dir);
}

//! The connectivity Linux's network and data disk on the PCIe host bridge, behind the
//! SMMU (systems/qemu-virt.toml): it fetches a file over HTTP from a server on the
//! host's loopback (the only place its network reaches), checks it, keeps it on its
//! disk, and finds it again after a partition restart and after a board reset; the
//! critical monitor keeps its period throughout.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use septum_system_tests::{artifacts, assert_critical_kept_its_period, count, shell};
use xtask::qemu::{Launch, Machine, Net};

const LINUX: &str = "connectivity";
const USERSPACE: &str = "septum-linux: userspace up, ";
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// The port the partition asks for (10.0.2.100:8000), forwarded to the test's server.
const GUEST_PORT: u16 = 8000;

/// A free TCP port on the host's loopback.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `python3 -m http.server` on the host's loopback, serving `dir`; killed on drop.
struct Server(Child);

impl Server {
    fn start(dir: &std::path::Path, port: u16) -> Server {
        let mut child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the HTTP server did not start on port {port}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bytes` pseudo-random bytes (reproducible) and their SHA-256 as `sha256sum` prints it.
fn blob(bytes: usize) -> (Vec<u8>, String) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    child.stdin.take().expect("stdin").write_all(&data).expect("hash");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("hash");
    child.wait().expect("sha256sum");
    (data, out.split_whitespace().next().expect("digest").to_string())
}

fn boot(art: &xtask::build::Artifacts, opts: &Launch) -> Machine {
    let mut m = Machine::launch(art, opts).expect("QEMU starts");
    m.wait_for("Linux with its disk", BOOT_TIMEOUT, |l| {
        count(l, USERSPACE) >= 1 && count(l, "septum-linux: data disk /dev/vda on /data") >= 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    m
}

/// NET-001, DISK-001, DMA-003, DMA-004: Linux in connectivity gets a DHCP lease on its
/// virtio-net-pci card, fetches a file over HTTP from a server on the host's loopback
/// (reached through QEMU's `guestfwd`, the only place its restricted network reaches),
/// finds its SHA-256 as the host computed it, and writes it to its virtio-blk-pci data
/// disk; after a partition restart (`reboot`) and after a board reset (QEMU started
/// again on the same disk image) the file is still there, whole. Both devices' DMA goes
/// through the SMMU with the partition's stage 2; the critical monitor keeps its period.
#[test]
fn linux_fetches_a_file_keeps_it_on_its_disk_across_restarts_and_resets() {
    let art = artifacts("qemu-virt");
    let disk = art.dir.join("devices-test-data.img");
    xtask::disk::make_ext4(&disk, 64).expect("a data disk");
    let www = art.dir.join("devices-test-www");
    std::fs::create_dir_all(&www).expect("dir");
    let (data, digest) = blob(3 << 20);
    std::fs::write(www.join("blob.bin"), &data).expect("blob");
    let port = free_port();
    let _server = Server::start(&www, port);
    let opts = Launch {
        disk: Some(disk.clone()),
        net: Net { guestfwd: vec![(GUEST_PORT, port)], hostfwd: vec![] },
        ..Launch::default()
    };

    let mut m = boot(&art, &opts);
    let t = m.transcript();
    assert!(count(&m.lines(), "septum-linux: network eth0 up, 10.0.2.15/24") == 1, "no DHCP lease\n{t}");
    let url = format!("http://{}:{GUEST_PORT}/blob.bin", xtask::qemu::GUEST_HOST_ADDR);
    let fetch = format!("wget -q -O /data/blob.bin {url} && sync && sha256sum /data/blob.bin");
    let out = shell(&mut m, LINUX, &fetch, "fetched", Duration::from_secs(120));
    let t = m.transcript();
    assert!(out.iter().any(|l| l.starts_with(&digest)), "the fetched file's SHA-256 is not {digest}\n{t}");

    // A partition restart: its memory is zeroed and reloaded, its devices silenced and
    // given back; the disk keeps what it wrote.
    m.send(LINUX, "reboot\n").expect("typing");
    m.wait_for("Linux again after its restart", BOOT_TIMEOUT, |l| {
        count(l, "connectivity: restarted from its pristine image") >= 1
            && count(l, "septum-linux: data disk /dev/vda on /data") >= 2
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let out = shell(&mut m, LINUX, "sha256sum /data/blob.bin", "after-restart", Duration::from_secs(60));
    let t = m.transcript();
    assert!(out.iter().any(|l| l.starts_with(&digest)), "the file is gone after the restart\n{t}");
    assert!(count(&m.lines(), "septum-linux: network eth0 up, 10.0.2.15/24") == 2, "{t}");
    let lines = m.lines();
    assert_eq!(count(&lines, "DMA FAULT"), 0, "a device of the partition faulted\n{t}");
    assert_critical_kept_its_period(&lines, &t);
    drop(m);

    // A board reset: everything starts again from the same disk image.
    let mut m = boot(&art, &opts);
    let out = shell(&mut m, LINUX, "sha256sum /data/blob.bin", "after-reset", Duration::from_secs(60));
    let t = m.transcript();
    assert!(out.iter().any(|l| l.starts_with(&digest)), "the file is gone after the board reset\n{t}");
    assert_critical_kept_its_period(&m.lines(), &t);
}

//! Host benchmark of the queuing channel, run by `cargo xtask bench`.
//!
//! Two threads, one core each where the OS lets us pin them, stream fixed-size
//! messages through a [`Producer`]/[`Consumer`] pair over [`VolatileRegion`]s (the
//! accesses partitions and the Linux agent make, here over host memory), and through
//! `rtrb` (a plain SPSC ring buffer that validates nothing) as the baseline; then the
//! same pairs play ping-pong for latency. A third pair, `rtrb` carrying each message
//! with its CRC-32C (the channel's own function, computed by the sender, checked by the
//! receiver), shows what carrying the checksum costs the bare ring; a fourth, our
//! channel configured to carry no checksum (`checksum = "none"`), what the protocol
//! costs without it. Figures are printed, never asserted: a shared two-core machine is
//! far too noisy for timing thresholds, so the targets are reported as information and
//! the bench exits 0 whatever they say. What it does check is correctness: every
//! message arrives, whole and in order.
//!
//! `SEPTUM_BENCH_QUICK=1` makes every run short, so CI can smoke-test the bench.
#![deny(unsafe_code)]

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use septum_ipc_channel::queuing::{Consumer, Producer, RecvError, SendError};
use septum_ipc_channel::volatile::VolatileRegion;
use septum_ipc_channel::wire::SLOT_HEADER;
use septum_ipc_channel::{checksum, crc32c, Checksum, Geometry, Shared};

/// Message sizes: a sensor reading, a command with some data, a page.
const SIZES: [usize; 3] = [16, 256, 4096];
/// Slots per channel; the baseline ring holds as many messages.
const DEPTH: u32 = 64;
/// Each message starts with its sequence number (little-endian), for the order check.
const SEQ_BYTES: usize = 8;
/// The echo thread of the latency runs stops on this sequence number.
const STOP: u64 = u64::MAX;
/// The targets (issue 20): time per message at most this many times a baseline's.
/// CRC-32C at 16 B and 256 B, against the bare ring.
const TARGETS_VS_RING: [(usize, f64); 2] = [(16, 1.5), (256, 1.5)];
/// CRC-32C at 4 KiB, against the ring carrying the same CRC-32C.
const TARGETS_VS_CHECKED_RING: [(usize, f64); 1] = [(4096, 1.1)];
/// No checksum at 4 KiB, against the bare ring.
const TARGETS_PLAIN_VS_RING: [(usize, f64); 1] = [(4096, 1.1)];

/// A throughput run whose threads were both on a CPU at least this share of the time
/// counts as undisturbed by other processes.
const CLEAN_RUN: f64 = 0.95;

/// How long each part runs. Every figure comes from many runs or samples (the fastest
/// throughput run, the median latency, the fastest batch), so other processes taking a
/// core now and then, as they do on a shared machine, do not decide it.
struct Plan {
    warm_up: Duration,
    /// All throughput runs of one case together.
    stream: Duration,
    runs: usize,
    /// Latency samples are taken for this long and at least `min_trips` times.
    latency: Duration,
    min_trips: usize,
    /// Each single-thread part, all batches together.
    part: Duration,
}

impl Plan {
    fn from_env() -> (Self, bool) {
        let quick = std::env::var_os("SEPTUM_BENCH_QUICK").is_some_and(|v| v == "1");
        let plan = if quick {
            Plan {
                warm_up: Duration::from_millis(5),
                stream: Duration::from_millis(20),
                runs: 1,
                latency: Duration::from_millis(10),
                min_trips: 1_000,
                part: Duration::from_millis(2),
            }
        } else {
            Plan {
                warm_up: Duration::from_millis(100),
                stream: Duration::from_millis(750),
                runs: 9,
                latency: Duration::from_millis(300),
                min_trips: 10_000,
                part: Duration::from_millis(50),
            }
        };
        (plan, quick)
    }
}

/// The sending end as the bench drives it: `false` when the queue is full.
trait Tx: Send {
    fn try_send(&mut self, msg: &[u8]) -> bool;
}

/// The receiving end as the bench drives it: `None` when the queue is empty.
trait Rx: Send {
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}

impl Tx for Producer<VolatileRegion> {
    fn try_send(&mut self, msg: &[u8]) -> bool {
        match self.send(msg) {
            Ok(()) => true,
            Err(SendError::Full) => false,
            Err(e) => panic!("send failed: {e:?}"),
        }
    }
}

impl Rx for Consumer<VolatileRegion> {
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.recv(buf) {
            Ok(len) => Some(len),
            Err(RecvError::Empty) => None,
            Err(e) => panic!("recv failed: {e:?} ({:?})", self.stats()),
        }
    }
}

impl Tx for rtrb::Producer<u8> {
    fn try_send(&mut self, msg: &[u8]) -> bool {
        self.push_entire_slice(msg).is_ok()
    }
}

/// The baseline's consumer: a byte ring has no framing, so it is told the message size.
struct RingRx {
    rx: rtrb::Consumer<u8>,
    size: usize,
}

impl Rx for RingRx {
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.rx.pop_entire_slice(&mut buf[..self.size]).ok().map(|()| self.size)
    }
}

/// The two regions of one channel, each starting on a 64-byte line as the hypervisor's
/// page-aligned mappings do, so no index shares a cache line with unrelated data.
/// Atomic words, so the memory may be written through the regions' raw pointers.
struct Regions {
    prod: Vec<AtomicU64>,
    cons: Vec<AtomicU64>,
    geo: Geometry,
}

impl Regions {
    fn new(geo: Geometry) -> Self {
        let words = |bytes: usize| (0..bytes / 8 + 8).map(|_| AtomicU64::new(0)).collect();
        Self { prod: words(geo.producer_region_size()), cons: words(geo.consumer_region_size()), geo }
    }

    fn producer_region(&self) -> VolatileRegion {
        region(&self.prod, self.geo.producer_region_size())
    }

    fn consumer_region(&self) -> VolatileRegion {
        region(&self.cons, self.geo.consumer_region_size())
    }

    /// The two ends, carrying `checksum`. They must not outlive `self` (every caller
    /// drops them first).
    fn ends(&self, checksum: Checksum) -> (Producer<VolatileRegion>, Consumer<VolatileRegion>) {
        let (own, peer) = (self.producer_region(), self.consumer_region());
        let tx = Producer::new(self.geo, checksum, own, peer).expect("producer region fits");
        let (own, peer) = (self.consumer_region(), self.producer_region());
        let rx = Consumer::new(self.geo, checksum, own, peer).expect("consumer region fits");
        (tx, rx)
    }
}

/// `bytes` of `words` from its first 64-byte boundary on, as a shared region.
#[allow(unsafe_code)]
fn region(words: &[AtomicU64], bytes: usize) -> VolatileRegion {
    let skip = (64 - words.as_ptr() as usize % 64) % 64;
    assert!(skip + bytes <= words.len() * 8);
    // SAFETY: the range lies inside `words` (asserted) and is 64-byte aligned; the bench
    // drops every region before the vector it points into. The memory is atomics, so
    // writing it through a shared reference's pointer is allowed.
    unsafe { VolatileRegion::new(words.as_ptr() as usize + skip, bytes) }
}

/// The slot size for a message size: payload plus slot header, in 16-byte steps.
fn geometry(size: usize) -> Geometry {
    let slot = (size + SLOT_HEADER).div_ceil(16) * 16;
    Geometry::new(slot as u32, DEPTH).expect("valid geometry")
}

fn ring(size: usize) -> (rtrb::Producer<u8>, RingRx) {
    let (tx, rx) = rtrb::RingBuffer::new(DEPTH as usize * size);
    (tx, RingRx { rx, size })
}

/// The baseline ring carrying each message behind its [`checksum`] (over a message
/// counter, the length and the bytes, as the channel's): the sender computes it, the
/// receiver checks it. The cost of the checksum alone, with no other validation. Each
/// message goes as one frame (CRC, then the bytes), pushed and popped whole, so the ring
/// keeps its cached indices as the bare one does (asking `slots()` first would load the
/// peer's index, a cache line from the other core, on every message).
struct CheckedTx {
    tx: rtrb::Producer<u8>,
    frame: Vec<u8>,
    seq: u32,
}

impl Tx for CheckedTx {
    fn try_send(&mut self, msg: &[u8]) -> bool {
        let crc = checksum(self.seq, msg.len() as u32, msg);
        self.frame.clear();
        self.frame.extend_from_slice(&crc.to_le_bytes());
        self.frame.extend_from_slice(msg);
        let sent = self.tx.push_entire_slice(&self.frame).is_ok();
        self.seq = self.seq.wrapping_add(u32::from(sent));
        sent
    }
}

struct CheckedRx {
    rx: rtrb::Consumer<u8>,
    frame: Vec<u8>,
    seq: u32,
}

impl Rx for CheckedRx {
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.rx.pop_entire_slice(&mut self.frame).ok()?;
        let (crc, msg) = self.frame.split_at(CRC_BYTES);
        let expected = checksum(self.seq, msg.len() as u32, msg);
        assert!(crc == expected.to_le_bytes(), "checked ring: message {} corrupt", self.seq);
        buf[..msg.len()].copy_from_slice(msg);
        self.seq = self.seq.wrapping_add(1);
        Some(msg.len())
    }
}

const CRC_BYTES: usize = 4;

fn checked_ring(size: usize) -> (CheckedTx, CheckedRx) {
    let (tx, rx) = rtrb::RingBuffer::new(DEPTH as usize * (CRC_BYTES + size));
    let frame = vec![0; CRC_BYTES + size];
    (CheckedTx { tx, frame: Vec::with_capacity(frame.len()), seq: 0 }, CheckedRx { rx, frame, seq: 0 })
}

/// Where the bench's two threads run: a core each, when there are two and the OS agrees.
struct Pinning {
    cores: Option<[CoreId; 2]>,
    refused: AtomicBool,
}

impl Pinning {
    fn new() -> Self {
        let cores = core_affinity::get_core_ids().and_then(|ids| Some([*ids.first()?, *ids.get(1)?]));
        Self { cores, refused: AtomicBool::new(false) }
    }

    /// Pins the calling thread to core `side` (0: sender, 1: receiver).
    fn enter(&self, side: usize) {
        if let Some(cores) = self.cores {
            if !core_affinity::set_for_current(cores[side]) {
                self.refused.store(true, Ordering::Relaxed);
            }
        }
    }

    fn describe(&self) -> String {
        match self.cores {
            None => "no (fewer than two cores to choose from)".into(),
            Some(_) if self.refused.load(Ordering::Relaxed) => "no (the OS refused)".into(),
            Some([a, b]) => format!("yes (sender on core {}, receiver on core {})", a.id, b.id),
        }
    }
}

/// A message of `size` bytes: a byte pattern, the sequence number written per send.
fn message(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + 3) as u8).collect()
}

fn seq_of(buf: &[u8]) -> u64 {
    let mut seq = [0; SEQ_BYTES];
    seq.copy_from_slice(&buf[..SEQ_BYTES]);
    u64::from_le_bytes(seq)
}

/// Spins until a message arrives; the bench's threads have a core each, so busy-waiting
/// is how a partition polling its port would wait too.
fn recv_spin(rx: &mut impl Rx, buf: &mut [u8]) -> usize {
    loop {
        if let Some(len) = rx.try_recv(buf) {
            return len;
        }
        spin_loop();
    }
}

fn send_spin(tx: &mut impl Tx, msg: &[u8]) {
    while !tx.try_send(msg) {
        spin_loop();
    }
}

fn join<T>(h: thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Nanoseconds the calling thread has run on a CPU, where the OS tells (Linux). Sleeps
/// a moment first: the kernel brings the figure up to date only when the thread leaves
/// the CPU (or at a timer tick, too coarse for these runs).
fn on_cpu_ns() -> Option<u64> {
    thread::sleep(Duration::from_micros(1));
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// One throughput run.
struct Run {
    /// From the sender's start to the receiver's last message (one clock: `Instant` is
    /// system-wide monotonic).
    took: Duration,
    /// The smaller of the two threads' shares of their own run time spent on a CPU: below
    /// 1, other processes had a core for a while (and the peer thread spun meanwhile).
    on_cpu: Option<f64>,
}

/// Streams `count` messages of `size` bytes.
fn stream(tx: &mut impl Tx, rx: &mut impl Rx, size: usize, count: u64, pin: &Pinning) -> Run {
    let start_line = &Barrier::new(2);
    thread::scope(|s| {
        let sender = s.spawn(move || {
            pin.enter(0);
            let mut msg = message(size);
            start_line.wait();
            let cpu = on_cpu_ns();
            let start = Instant::now();
            for seq in 0..count {
                msg[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
                send_spin(tx, &msg);
            }
            let end = Instant::now();
            (start, end, on_cpu_ns().zip(cpu).map(|(end, start)| end - start))
        });
        let receiver = s.spawn(move || {
            pin.enter(1);
            let mut buf = vec![0; geometry(size).payload_capacity()];
            start_line.wait();
            let cpu = on_cpu_ns();
            for seq in 0..count {
                let len = recv_spin(rx, &mut buf);
                let got = seq_of(&buf);
                assert!(len == size && got == seq, "message {seq} out of order: got {got} ({len} bytes)");
            }
            (Instant::now(), on_cpu_ns().zip(cpu).map(|(end, start)| end - start))
        });
        let (start, sent, sender_cpu) = join(sender);
        let (end, receiver_cpu) = join(receiver);
        let took = end.saturating_duration_since(start);
        // Each thread's share of its own busy time; the sender finishes first.
        let sender_share =
            sender_cpu.map(|ns| ns as f64 / sent.saturating_duration_since(start).as_nanos().max(1) as f64);
        let receiver_share = receiver_cpu.map(|ns| ns as f64 / took.as_nanos().max(1) as f64);
        let on_cpu = sender_share.zip(receiver_share).map(|(a, b)| a.min(b));
        Run { took, on_cpu: on_cpu.map(|share| share.min(1.0)) }
    })
}

/// One channel under test, streaming `count` messages per call.
type Streamer<'a> = Box<dyn FnMut(u64) -> Run + 'a>;

fn streamer<'a>(tx: &'a mut impl Tx, rx: &'a mut impl Rx, size: usize, pin: &'a Pinning) -> Streamer<'a> {
    Box::new(move |count| stream(&mut *tx, &mut *rx, size, count, pin))
}

/// Messages per second of each channel: a growing warm-up (caches, page faults, clock
/// speed) that also sizes its runs, then rounds of one run of each channel in turn, so a
/// busy or slow stretch of a shared machine falls on all of them alike: `plan.runs`
/// rounds, and up to twice as many again while some channel had no run with both
/// threads on a CPU nearly all the time.
fn throughput(mut channels: Vec<Streamer<'_>>, plan: &Plan) -> Vec<Runs> {
    let counts: Vec<u64> = channels
        .iter_mut()
        .map(|go| {
            let mut count = 1_000u64;
            let rate = loop {
                let took = go(count).took;
                if took >= plan.warm_up {
                    break count as f64 / took.as_secs_f64();
                }
                count *= 4;
            };
            ((rate * plan.stream.as_secs_f64() / plan.runs as f64) as u64).max(1_000)
        })
        .collect();
    let mut runs: Vec<Vec<Run>> = channels.iter().map(|_| Vec::new()).collect();
    let undisturbed = |runs: &[Run]| runs.iter().any(|r| r.on_cpu.is_none_or(|share| share >= CLEAN_RUN));
    for round in 0..3 * plan.runs {
        if round >= plan.runs && runs.iter().all(|r| undisturbed(r)) {
            break;
        }
        for ((go, &count), runs) in channels.iter_mut().zip(&counts).zip(&mut runs) {
            runs.push(go(count));
        }
    }
    runs.into_iter().zip(counts).map(|(runs, count)| Runs::of(count, runs)).collect()
}

/// One-way latency: round trips (send on `fwd`, echoed back on `back`), each timed
/// and halved, for `plan.latency` after a warm-up of `plan.warm_up`.
fn latency<T: Tx, R: Rx>(
    fwd: (&mut T, &mut R),
    back: (&mut T, &mut R),
    size: usize,
    plan: &Plan,
    pin: &Pinning,
) -> Vec<f64> {
    let (fwd_tx, fwd_rx) = fwd;
    let (back_tx, back_rx) = back;
    let start_line = &Barrier::new(2);
    thread::scope(|s| {
        let pinger = s.spawn(move || {
            pin.enter(0);
            let mut msg = message(size);
            let mut buf = vec![0; geometry(size).payload_capacity()];
            let mut half_trips = Vec::new();
            start_line.wait();
            let mut seq = 0u64;
            for recording in [false, true] {
                let end = Instant::now() + if recording { plan.latency } else { plan.warm_up };
                let mut last = Instant::now();
                loop {
                    msg[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
                    send_spin(fwd_tx, &msg);
                    let len = recv_spin(back_rx, &mut buf);
                    let got = seq_of(&buf);
                    assert!(len == size && got == seq, "echo {seq} out of order: got {got} ({len} bytes)");
                    seq += 1;
                    let now = Instant::now();
                    if recording {
                        half_trips.push((now - last).as_nanos() as f64 / 2.0);
                    }
                    last = now;
                    if now >= end && (!recording || half_trips.len() >= plan.min_trips) {
                        break;
                    }
                }
            }
            msg[..SEQ_BYTES].copy_from_slice(&STOP.to_le_bytes());
            send_spin(fwd_tx, &msg);
            half_trips
        });
        let echo = s.spawn(move || {
            pin.enter(1);
            let mut buf = vec![0; geometry(size).payload_capacity()];
            start_line.wait();
            loop {
                let len = recv_spin(fwd_rx, &mut buf);
                if seq_of(&buf) == STOP {
                    break;
                }
                send_spin(back_tx, &buf[..len]);
            }
        });
        join(echo);
        join(pinger)
    })
}

/// Messages per second of the throughput runs. The fastest is the headline: other
/// processes only ever slow a run down, so it is the closest to the channel's own cost;
/// the median shows how much the machine interfered.
#[derive(Clone, Copy)]
struct Runs {
    best: f64,
    median: f64,
    /// The fastest run's [`Run::on_cpu`].
    best_on_cpu: Option<f64>,
}

impl Runs {
    fn of(count: u64, mut runs: Vec<Run>) -> Self {
        runs.sort_by_key(|r| r.took);
        let rate = |r: &Run| count as f64 / r.took.as_secs_f64();
        Self { best: rate(&runs[0]), median: rate(&runs[runs.len() / 2]), best_on_cpu: runs[0].on_cpu }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One implementation at one size.
struct Figures {
    rate: Runs,
    size: usize,
    /// One-way latencies in ns, sorted.
    half_trips: Vec<f64>,
}

impl Figures {
    fn ns_per_msg(&self) -> f64 {
        1e9 / self.rate.best
    }
    fn median_latency(&self) -> f64 {
        percentile(&self.half_trips, 0.5)
    }
}

/// One message size: our channel with its CRC-32C and without a checksum, the
/// baseline ring with the CRC-32C, and the bare baseline ring.
struct Case {
    ours: Figures,
    plain: Figures,
    checked: Figures,
    baseline: Figures,
}

fn case(size: usize, plan: &Plan, pin: &Pinning) -> Case {
    let regions: [Regions; 4] = std::array::from_fn(|_| Regions::new(geometry(size)));
    let ((mut a_tx, mut a_rx), (mut b_tx, mut b_rx)) =
        (regions[0].ends(Checksum::Crc32c), regions[1].ends(Checksum::Crc32c));
    let ((mut p_tx, mut p_rx), (mut q_tx, mut q_rx)) =
        (regions[2].ends(Checksum::None), regions[3].ends(Checksum::None));
    let ((mut c_tx, mut c_rx), (mut d_tx, mut d_rx)) = (checked_ring(size), checked_ring(size));
    let ((mut r_tx, mut r_rx), (mut s_tx, mut s_rx)) = (ring(size), ring(size));
    let rates = throughput(
        vec![
            streamer(&mut a_tx, &mut a_rx, size, pin),
            streamer(&mut p_tx, &mut p_rx, size, pin),
            streamer(&mut c_tx, &mut c_rx, size, pin),
            streamer(&mut r_tx, &mut r_rx, size, pin),
        ],
        plan,
    );
    let mut latencies = [
        latency((&mut a_tx, &mut a_rx), (&mut b_tx, &mut b_rx), size, plan, pin),
        latency((&mut p_tx, &mut p_rx), (&mut q_tx, &mut q_rx), size, plan, pin),
        latency((&mut c_tx, &mut c_rx), (&mut d_tx, &mut d_rx), size, plan, pin),
        latency((&mut r_tx, &mut r_rx), (&mut s_tx, &mut s_rx), size, plan, pin),
    ];
    let rejected = [&a_rx, &b_rx, &p_rx, &q_rx].iter().map(|rx| rx.stats().rejected()).sum::<u64>();
    assert_eq!(rejected, 0, "honest messages rejected");
    let [ours, plain, checked, baseline] = std::array::from_fn(|i| {
        let mut half_trips = std::mem::take(&mut latencies[i]);
        half_trips.sort_by(f64::total_cmp);
        Figures { rate: rates[i], size, half_trips }
    });
    Case { ours, plain, checked, baseline }
}

/// Nanoseconds per call of `f`, on one thread: the best of ten batches, each grown to a
/// tenth of `total` (the best, because interruptions only ever add time).
fn per_call(total: Duration, mut f: impl FnMut()) -> f64 {
    let mut batch = |n: u32| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed()
    };
    let mut n = 16u32;
    while batch(n) < total / 10 {
        n *= 2;
    }
    (0..10).map(|_| batch(n).as_nanos() as f64 / f64::from(n)).fold(f64::INFINITY, f64::min)
}

/// The parts of one message's trip, single-threaded (no cache line moves between
/// cores), so the cost of the CRC and of the word-wise copies can be told apart from
/// the cost of sharing.
struct Parts {
    crc: f64,
    region_write: f64,
    region_read: f64,
    memcpy: f64,
    ours: f64,
    baseline: f64,
}

fn parts(size: usize, at_least: Duration) -> Parts {
    let geo = geometry(size);
    let regions = Regions::new(geo);
    let region = regions.producer_region();
    let payload_at = geo.producer_region_size() - geo.slot_size() as usize + SLOT_HEADER;
    let msg = message(size);
    let mut buf = vec![0; geo.payload_capacity()];
    let crc = per_call(at_least, || {
        black_box(checksum(black_box(1), black_box(size as u32), black_box(&msg)));
    });
    let region_write = per_call(at_least, || black_box(&region).write(black_box(payload_at), black_box(&msg)));
    let region_read = per_call(at_least, || black_box(&region).read(black_box(payload_at), black_box(&mut buf)));
    let memcpy = per_call(at_least, || black_box(&mut buf[..size]).copy_from_slice(black_box(&msg)));
    let (mut tx, mut rx) = regions.ends(Checksum::Crc32c);
    let ours = per_call(at_least, || {
        assert!(tx.try_send(black_box(&msg)));
        assert_eq!(rx.try_recv(black_box(&mut buf)), Some(size));
    });
    let (mut tx, mut rx) = ring(size);
    let baseline = per_call(at_least, || {
        assert!(tx.try_send(black_box(&msg)));
        assert_eq!(rx.try_recv(black_box(&mut buf)), Some(size));
    });
    Parts { crc, region_write, region_read, memcpy, ours, baseline }
}

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn row(name: &str, f: &Figures) {
    println!(
        "{:>7}  {:<14} {:>12.0} {:>9.1} {:>8.0} {:>7} {:>9.0}  {:>9.0} {:>9.0}",
        size_name(f.size),
        name,
        f.rate.best,
        f.rate.best * f.size as f64 / 1e6,
        f.ns_per_msg(),
        f.rate.best_on_cpu.map_or("-".into(), |share| format!("{:.0}%", share * 100.0)),
        1e9 / f.rate.median,
        f.median_latency(),
        percentile(&f.half_trips, 0.99),
    );
}

/// The load averages, where the OS tells them: how busy the machine was (other
/// processes' runnable threads compete with the bench's two spinning ones).
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
}

fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() {
    let (plan, quick) = Plan::from_env();
    let pin = Pinning::new();
    let mut results = Vec::new();
    for size in SIZES {
        eprintln!("bench: {} messages ...", size_name(size));
        results.push(case(size, &plan, &pin));
    }
    eprintln!("bench: single-thread parts ...");
    let parts: Vec<Parts> = SIZES.iter().map(|&size| parts(size, plan.part)).collect();

    println!();
    println!("septum-ipc-channel queuing port vs rtrb (unvalidated SPSC baseline), host, 2 threads");
    println!(
        "  {}; queue depth {DEPTH}; slot = message + {SLOT_HEADER} B header, rounded to 16 B",
        if quick { "QUICK run (SEPTUM_BENCH_QUICK=1): short, figures are rough" } else { "full run" },
    );
    println!("  threads pinned: {}", pin.describe());
    if let Some(load) = load_average() {
        println!("  machine load at start (1, 5, 15 min averages): {load} on {} cores", cores());
    }
    println!(
        "  throughput: the sender streams, the receiver checks every sequence number; at least {} run(s) of \
         ~{} ms,\n    more while every run so far was disturbed. msgs/s, MB/s, ns/msg: the fastest run \
         (MB = 10^6 payload bytes);\n    on-CPU: the share of that run both threads really ran (the rest, \
         other processes had the core); p50 run: the median run's ns/msg",
        plan.runs,
        plan.stream.as_millis() / plan.runs as u128,
    );
    println!(
        "  latency: ping-pong over two channels, each round trip timed with Instant (one clock) and halved;\n    \
         {} ms of samples (at least {}), ns one way",
        plan.latency.as_millis(),
        plan.min_trips,
    );
    println!();
    println!(
        "{:>7}  {:<14} {:>12} {:>9} {:>8} {:>7} {:>9}  {:>9} {:>9}",
        "size", "channel", "msgs/s", "MB/s", "ns/msg", "on-CPU", "p50 run", "1-way p50", "1-way p99"
    );
    for c in &results {
        row("septum", &c.ours);
        row("septum no sum", &c.plain);
        row("rtrb + CRC-32C", &c.checked);
        row("rtrb baseline", &c.baseline);
    }

    println!();
    println!("ratios of time per message (throughput) and of one-way median latency, same run; > 1 is slower");
    println!("  septum / rtrb: CRC-32C channel against the unvalidated ring");
    println!("  septum / rtrb+CRC: against the ring carrying the same CRC-32C (the protocol's own cost)");
    println!("  no sum / rtrb: the channel configured without a checksum, against the unvalidated ring");
    println!("  CRC floor: rtrb+CRC / rtrb, what carrying the checksum costs the bare ring");
    println!(
        "{:>7}  {:>22} {:>22} {:>22}  {:>9}",
        "size", "septum / rtrb", "septum / rtrb+CRC", "no sum / rtrb", "CRC floor"
    );
    println!("{:>7}  {:>22} {:>22} {:>22}", "", "tput  lat  target", "tput  lat  target", "tput  lat  target");
    let clean = |f: &Figures| f.rate.best_on_cpu.is_none_or(|share| share >= CLEAN_RUN);
    let mut disturbed = false;
    let mut misses = Vec::new();
    for c in &results {
        let size = c.ours.size;
        let mut cell = |name: &str, ours: &Figures, base: &Figures, targets: &[(usize, f64)]| {
            let tp = ours.ns_per_msg() / base.ns_per_msg();
            let lat = ours.median_latency() / base.median_latency();
            let mark = if clean(ours) && clean(base) { " " } else { "*" };
            disturbed |= mark == "*";
            let target = match targets.iter().find(|(s, _)| *s == size) {
                Some(&(_, t)) => {
                    if tp > t {
                        misses.push(format!("{} {name}: {tp:.2}x > {t:.1}x", size_name(size)));
                    }
                    format!("{}{t:.1}x", if tp <= t { "ok " } else { "NO " })
                }
                None => "-".into(),
            };
            format!("{tp:>5.2}{mark}{lat:>5.2} {target:>8}")
        };
        let vs_ring = cell("septum / rtrb", &c.ours, &c.baseline, &TARGETS_VS_RING);
        let vs_checked = cell("septum / rtrb+CRC", &c.ours, &c.checked, &TARGETS_VS_CHECKED_RING);
        let plain = cell("no sum / rtrb", &c.plain, &c.baseline, &TARGETS_PLAIN_VS_RING);
        println!(
            "{:>7}  {vs_ring:>22} {vs_checked:>22} {plain:>22}  {:>8.2}x",
            size_name(size),
            c.checked.ns_per_msg() / c.baseline.ns_per_msg()
        );
    }
    if disturbed {
        println!(
            "  * a fastest run had a thread off its core more than {:.0}% of the time (other processes): \
             that ratio is unreliable",
            (1.0 - CLEAN_RUN) * 100.0
        );
    }
    if misses.is_empty() {
        println!("  every target met in this run");
    } else {
        println!("  targets missed in this run: {}", misses.join("; "));
    }

    println!();
    println!("where the time goes: one thread, ns per call (no cache lines move between cores)");
    println!(
        "{:>7}  {:>7} {:>12} {:>11} {:>7}  {:>16} {:>13}",
        "size", "CRC-32C", "region write", "region read", "memcpy", "septum send+recv", "rtrb push+pop"
    );
    for (size, p) in SIZES.iter().zip(&parts) {
        println!(
            "{:>7}  {:>7.1} {:>12.1} {:>11.1} {:>7.1}  {:>16.1} {:>13.1}",
            size_name(*size),
            p.crc,
            p.region_write,
            p.region_read,
            p.memcpy,
            p.ours,
            p.baseline
        );
    }
    println!(
        "  CRC-32C over the numbers and the message ({}); region write/read: the volatile copies;\n  \
         a send writes the payload and the header with its CRC, a recv reads them and checks the copy",
        if crc32c::uses_the_instruction() { "the CPU's instruction" } else { "tables: this CPU has no instruction" }
    );
    println!();
    println!("figures are information only: nothing here is asserted against a threshold");
}

//! The agent's work, over any [`Shared`] memory (the mapped channels on Linux, atomics in
//! host tests): drain the vitals stream (`septum_vitals` records), checking its
//! numbering, and send numbered `Ping` commands: one a second, or, while the monitor
//! exercises the channel (it has no sensor and sends `Exercise` records), as many as
//! the commands queue takes.

use std::time::Duration;

use septum_ipc_channel::queuing::{Consumer, Producer, RecvError, SendError};
use septum_ipc_channel::{Geometry, Shared};
use septum_vitals::{Command, CommandKind, Record};
use zerocopy::IntoBytes;

/// The line the agent prints for the first record it takes.
pub fn first_line(r: &Record) -> String {
    let kind = match r {
        Record::Beat(_) => "beat",
        Record::Summary(_) => "summary",
        Record::Alarm(_) => "alarm",
        Record::Exercise(_) => "exercise",
        Record::Strip(_) => "strip",
    };
    format!("septum-agent: first vitals record seq={} kind={kind}\n", r.header().seq.get())
}

/// The receiving side of a numbered stream, as the bare-metal connectivity guest checks
/// it: a number above the expected one counts the numbers skipped as gaps, one below it
/// counts as out of order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    pub received: u64,
    pub first: Option<u64>,
    expected: Option<u64>,
    pub last: u64,
    pub gaps: u64,
    pub out_of_order: u64,
}

impl Stream {
    pub fn take(&mut self, seq: u64) {
        match self.expected {
            Some(e) if seq > e => self.gaps = self.gaps.saturating_add(seq - e),
            Some(e) if seq < e => self.out_of_order += 1,
            _ => {}
        }
        self.expected = Some(seq.wrapping_add(1));
        self.first.get_or_insert(seq);
        self.last = seq;
        self.received += 1;
    }
}

/// What one [`Agent::step`] moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub received: u32,
    pub sent: u32,
    /// The first vitals record ever received, if it came in this step.
    pub first: Option<Record>,
    /// The step took a whole batch of records without finding the queue empty: more
    /// may be waiting, so step again before sleeping.
    pub more: bool,
}

impl Progress {
    pub fn moved(&self) -> bool {
        self.received > 0 || self.sent > 0
    }
}

/// Where parsed records go besides the numbering check (the uploader).
type Sink = Box<dyn FnMut(&Record)>;

/// The connectivity side of both channels.
pub struct Agent<M: Shared> {
    vitals: Option<Consumer<M>>,
    /// Most records taken in one step: the queue's depth.
    vitals_batch: u32,
    commands: Option<Producer<M>>,
    commands_batch: u32,
    next_command: u64,
    stream: Stream,
    buf: Vec<u8>,
    /// The last record was an `Exercise` one: answer as fast as the queue takes.
    exercising: bool,
    /// A once-a-second `Ping` is due.
    ping_due: bool,
    /// Given every record parsed (the uploader's hand-over; it must not block).
    sink: Option<Sink>,
    /// The uplink state last told to the monitor, and one to tell it.
    uplink_told: Option<bool>,
    uplink_due: Option<bool>,
}

impl<M: Shared> Agent<M> {
    pub fn new(vitals: Option<(Consumer<M>, Geometry)>, commands: Option<(Producer<M>, Geometry)>) -> Self {
        let capacity = vitals.as_ref().map_or(0, |(_, g)| g.payload_capacity());
        let vitals_batch = vitals.as_ref().map_or(0, |(_, g)| g.depth());
        let commands_batch = commands.as_ref().map_or(0, |(_, g)| g.depth());
        Self {
            vitals: vitals.map(|(c, _)| c),
            vitals_batch,
            commands: commands.map(|(p, _)| p),
            commands_batch,
            next_command: 0,
            stream: Stream::default(),
            buf: vec![0; capacity],
            exercising: false,
            ping_due: false,
            sink: None,
            uplink_told: None,
            uplink_due: None,
        }
    }

    /// Hands every record parsed from now on to `sink` as well.
    pub fn set_sink(&mut self, sink: impl FnMut(&Record) + 'static) {
        self.sink = Some(Box::new(sink));
    }

    /// Whether the uploader reaches its broker: told to the monitor (`UplinkState`)
    /// at the next step when it changed.
    pub fn set_uplink(&mut self, up: bool) {
        self.uplink_due = (self.uplink_told != Some(up)).then_some(up);
    }

    /// A second has passed: send a `Ping` at the next step (outside exercise).
    pub fn tick(&mut self) {
        self.ping_due = true;
    }

    /// One round: drains the vitals queue (at most its depth of records), then sends
    /// commands until the commands queue is full (at most its depth). Bounded work.
    pub fn step(&mut self) -> Progress {
        let mut progress = Progress::default();
        if let Some(rx) = self.vitals.as_mut() {
            progress.more = self.vitals_batch > 0;
            for _ in 0..self.vitals_batch {
                match rx.recv(&mut self.buf) {
                    Ok(len) => {
                        progress.received += 1;
                        if let Ok(r) = Record::parse(&self.buf[..len]) {
                            if self.stream.received == 0 {
                                progress.first = Some(r);
                            }
                            self.exercising = matches!(r, Record::Exercise(_));
                            self.stream.take(r.header().seq.get());
                            if let Some(sink) = self.sink.as_mut() {
                                sink(&r);
                            }
                        }
                    }
                    // A rejected slot is consumed (and counted by the consumer): go on.
                    Err(RecvError::Rejected) => progress.received += 1,
                    Err(RecvError::Empty | RecvError::BadIndex | RecvError::BufferTooSmall) => {
                        progress.more = false;
                        break;
                    }
                }
            }
        }
        if let (Some(tx), Some(up)) = (self.commands.as_mut(), self.uplink_due) {
            let state = Command::new(CommandKind::UplinkState, u32::from(up), self.next_command);
            if tx.send(state.as_bytes()).is_ok() {
                self.next_command += 1;
                progress.sent += 1;
                self.uplink_told = Some(up);
                self.uplink_due = None;
            }
        }
        if let Some(tx) = self.commands.as_mut() {
            let batch = if self.exercising { self.commands_batch } else { u32::from(self.ping_due) };
            for _ in 0..batch {
                let ping = Command::new(CommandKind::Ping, 0, self.next_command);
                match tx.send(ping.as_bytes()) {
                    Ok(()) => {
                        self.next_command += 1;
                        progress.sent += 1;
                        self.ping_due = false;
                    }
                    Err(SendError::Full | SendError::PeerCorrupt | SendError::TooLarge) => break,
                }
            }
        }
        progress
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The once-a-second report, one line.
    pub fn report(&self) -> String {
        let s = self.stream();
        let (sent, full) = self.commands.as_ref().map_or((0, 0), |tx| (tx.stats().sent, tx.stats().full));
        format!(
            "septum-agent: vitals received={} first={} last={} gaps={} out_of_order={} commands sent={sent} full={full}\n",
            s.received,
            s.first.unwrap_or(0),
            s.last,
            s.gaps,
            s.out_of_order
        )
    }
}

/// Idle waits: 1 ms, doubling up to 20 ms, until something moves again.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(1);
    pub const MAX: Duration = Duration::from_millis(20);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// How long to sleep now; the next idle wait is twice as long (up to [`Self::MAX`]).
    pub fn idle(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use septum_ipc_channel::{Checksum, HostRegion};
    use std::sync::atomic::AtomicU32;

    fn words(bytes: usize) -> Vec<AtomicU32> {
        (0..bytes / 4).map(|_| AtomicU32::new(0)).collect()
    }

    fn record(seq: u64) -> septum_vitals::Exercise {
        septum_vitals::Exercise::new(seq, seq * 10)
    }

    fn send(tx: &mut Producer<HostRegion<'_>>, seq: u64) -> Result<(), SendError> {
        tx.send(record(seq).as_bytes())
    }

    /// Both channels in host memory: the critical monitor's ends and the agent's.
    struct Rig {
        vitals_prod: Vec<AtomicU32>,
        vitals_cons: Vec<AtomicU32>,
        commands_prod: Vec<AtomicU32>,
        commands_cons: Vec<AtomicU32>,
        geo: Geometry,
    }

    impl Rig {
        fn new(depth: u32) -> Self {
            let geo = Geometry::new(64, depth).unwrap();
            Self {
                vitals_prod: words(geo.producer_region_size()),
                vitals_cons: words(geo.consumer_region_size()),
                commands_prod: words(geo.producer_region_size()),
                commands_cons: words(geo.consumer_region_size()),
                geo,
            }
        }
        fn agent(&self) -> Agent<HostRegion<'_>> {
            let r = HostRegion::new;
            let rx = Consumer::new(self.geo, Checksum::Crc32c, r(&self.vitals_cons), r(&self.vitals_prod)).unwrap();
            let tx = Producer::new(self.geo, Checksum::Crc32c, r(&self.commands_prod), r(&self.commands_cons)).unwrap();
            Agent::new(Some((rx, self.geo)), Some((tx, self.geo)))
        }
        fn monitor(&self) -> (Producer<HostRegion<'_>>, Consumer<HostRegion<'_>>) {
            let r = HostRegion::new;
            (
                Producer::new(self.geo, Checksum::Crc32c, r(&self.vitals_prod), r(&self.vitals_cons)).unwrap(),
                Consumer::new(self.geo, Checksum::Crc32c, r(&self.commands_cons), r(&self.commands_prod)).unwrap(),
            )
        }
    }

    fn drain(rx: &mut Consumer<HostRegion<'_>>) -> Vec<u64> {
        let mut buf = [0u8; 48];
        let mut out = Vec::new();
        while let Ok(len) = rx.recv(&mut buf) {
            let (kind, c) = Command::parse(&buf[..len]).unwrap();
            assert_eq!(kind, CommandKind::Ping);
            out.push(c.seq.get());
        }
        out
    }

    #[test]
    fn exchanges_records_and_commands_checking_numbering() {
        let rig = Rig::new(8);
        let (mut vitals, mut commands) = rig.monitor();
        let mut agent = rig.agent();

        // Nothing yet to take, and no Ping due: nothing moves. Once a second, one Ping.
        assert_eq!(agent.step(), Progress::default());
        agent.tick();
        assert_eq!(agent.step(), Progress { received: 0, sent: 1, first: None, more: false });
        assert_eq!(agent.step(), Progress::default(), "one Ping a second");
        assert_eq!(drain(&mut commands), [0]);

        // The monitor exercises the channel: the agent answers as fast as the queue
        // takes.
        for seq in 100..105 {
            send(&mut vitals, seq).unwrap();
        }
        let p = agent.step();
        assert_eq!((p.received, p.sent), (5, 8));
        assert_eq!(p.first, Some(Record::Exercise(record(100))));
        assert_eq!(first_line(&p.first.unwrap()), "septum-agent: first vitals record seq=100 kind=exercise\n");
        assert_eq!(agent.step(), Progress::default(), "full and empty: nothing moves");

        // Three records lost (107..=109), one repeated.
        for seq in [105, 106, 110, 111, 111] {
            send(&mut vitals, seq).unwrap();
        }
        let p = agent.step();
        assert_eq!((p.received, p.sent, p.first), (5, 0, None));
        let s = *agent.stream();
        assert_eq!((s.received, s.first, s.last, s.gaps, s.out_of_order), (10, Some(100), 111, 3, 1));

        // Commands continue where they stopped; a partly drained queue refills.
        assert_eq!(drain(&mut commands), (1..9).collect::<Vec<_>>());
        assert_eq!(agent.step().sent, 8);
        let mut buf = [0u8; 48];
        for _ in 0..3 {
            commands.recv(&mut buf).unwrap();
        }
        assert_eq!(agent.step().sent, 3);
        assert_eq!(drain(&mut commands), (12..20).collect::<Vec<_>>());

        assert_eq!(
            agent.report(),
            "septum-agent: vitals received=10 first=100 last=111 gaps=3 out_of_order=1 commands sent=20 full=3\n"
        );
    }

    #[test]
    fn a_step_takes_at_most_a_queue_of_records() {
        let rig = Rig::new(4);
        let (mut vitals, _commands) = rig.monitor();
        let mut agent = rig.agent();
        let mut seq = 0;
        for _ in 0..3 {
            while send(&mut vitals, seq).is_ok() {
                seq += 1;
            }
            let p = agent.step();
            assert_eq!((p.received, p.more), (4, true), "a full queue: maybe more");
        }
        assert!(!agent.step().more, "empty");
        assert_eq!((agent.stream().received, agent.stream().gaps), (12, 0));
    }

    #[test]
    fn corrupt_records_are_consumed_and_skipped() {
        let rig = Rig::new(4);
        let (mut vitals, _commands) = rig.monitor();
        let mut agent = rig.agent();
        send(&mut vitals, 0).unwrap();
        send(&mut vitals, 1).unwrap();
        // Flip a payload byte of slot 1: its CRC no longer matches.
        let word = (rig.geo.slot_offset(1) + 16) / 4;
        rig.vitals_prod[word].fetch_xor(1, std::sync::atomic::Ordering::Relaxed);
        send(&mut vitals, 2).unwrap();
        assert_eq!(agent.step().received, 3);
        let s = agent.stream();
        assert_eq!((s.received, s.last, s.gaps), (2, 2, 1));
    }

    #[test]
    fn runs_against_a_monitor_thread() {
        let rig = Rig::new(16);
        let total = 5000u64;
        // All four ends attach before either side runs: a consumer attaching late would
        // skip what was sent before it.
        let (mut vitals, mut commands) = rig.monitor();
        let mut agent = rig.agent();
        // A bound on both sides, so that a broken exchange fails rather than hangs.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let in_time = || std::time::Instant::now() < deadline;
        std::thread::scope(|scope| {
            let monitor = scope.spawn(move || {
                let (mut seq, mut last_command, mut buf) = (0u64, None::<u64>, [0u8; 48]);
                let mut commands_in_order = true;
                while (seq < total || last_command.is_none_or(|c| c < total)) && in_time() {
                    if seq < total && send(&mut vitals, seq).is_ok() {
                        seq += 1;
                    }
                    if let Ok(len) = commands.recv(&mut buf) {
                        let c = Command::parse(&buf[..len]).unwrap().1.seq.get();
                        commands_in_order &= last_command.map_or(c == 0, |l| c == l + 1);
                        last_command = Some(c);
                    }
                    std::thread::yield_now();
                }
                commands_in_order && in_time()
            });
            let mut backoff = Backoff::new();
            while agent.stream().received < total && in_time() {
                if agent.step().moved() {
                    backoff.reset();
                } else {
                    std::thread::sleep(backoff.idle() / 10);
                }
            }
            while !monitor.is_finished() {
                agent.step();
                std::thread::yield_now();
            }
            assert!(monitor.join().unwrap(), "commands arrive numbered 0, 1, 2, ... in time");
            let s = agent.stream();
            assert_eq!((s.received, s.first, s.last, s.gaps, s.out_of_order), (total, Some(0), total - 1, 0, 0));
        });
    }

    /// NET-002: the uploader is handed every record parsed, in order (it chooses what
    /// to upload).
    #[test]
    fn every_parsed_record_goes_to_the_sink() {
        let rig = Rig::new(8);
        let (mut vitals, _commands) = rig.monitor();
        let mut agent = rig.agent();
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let g = got.clone();
        agent.set_sink(move |r| g.borrow_mut().push(r.header().seq.get()));
        for seq in 0..5 {
            send(&mut vitals, seq).unwrap();
        }
        assert_eq!(agent.step().received, 5);
        assert_eq!(*got.borrow(), [0, 1, 2, 3, 4]);
    }

    /// The monitor is told the uplink's state when it changes, once, in the commands'
    /// numbering.
    #[test]
    fn uplink_changes_are_told_to_the_monitor_once() {
        let rig = Rig::new(8);
        let (_vitals, mut commands) = rig.monitor();
        let mut agent = rig.agent();
        let mut told = |agent: &mut Agent<HostRegion<'_>>| {
            agent.step();
            let mut buf = [0u8; 48];
            let mut out = Vec::new();
            while let Ok(len) = commands.recv(&mut buf) {
                let (kind, c) = Command::parse(&buf[..len]).unwrap();
                out.push((kind, c.arg.get(), c.seq.get()));
            }
            out
        };
        agent.set_uplink(true);
        assert_eq!(told(&mut agent), [(CommandKind::UplinkState, 1, 0)]);
        agent.set_uplink(true);
        assert_eq!(told(&mut agent), []);
        agent.set_uplink(false);
        agent.tick();
        assert_eq!(told(&mut agent), [(CommandKind::UplinkState, 0, 1), (CommandKind::Ping, 0, 2)]);
        // A change and its undoing before the next step: nothing to tell.
        agent.set_uplink(true);
        agent.set_uplink(false);
        assert_eq!(told(&mut agent), []);
    }

    #[test]
    fn backoff_doubles_to_twenty_ms_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..7).map(|_| b.idle().as_millis() as u64).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 20, 20]);
        b.reset();
        assert_eq!(b.idle(), Duration::from_millis(1));
    }

    #[test]
    fn stream_counts_like_the_bare_metal_guest() {
        let mut s = Stream::default();
        for seq in [5, 6, 9, 8, 9, u64::MAX, 0] {
            s.take(seq);
        }
        assert_eq!((s.received, s.first, s.last, s.gaps, s.out_of_order), (7, Some(5), 0, 2 + (u64::MAX - 10), 1));
    }
}

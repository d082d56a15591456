//! The connectivity agent's upload of the critical monitor's vitals (docs/upload.md):
//! each record worth uploading ([`message::uploaded`]) is handed over with
//! [`Uplink::offer`], which never blocks; a writer thread appends it to the spool on the
//! data disk ([`spool`]), and a publisher thread sends the spool's records to the MQTT
//! broker over TLS 1.3 with the device's own certificate ([`publisher`]), as JSON
//! messages on `septum/<device>/{beats,summary,alarms}` ([`message`]).

#![forbid(unsafe_code)]

pub mod config;
pub mod message;
pub mod publisher;
pub mod spool;
pub mod tls;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use septum_vitals::Record;

pub use config::Config;
use spool::{Limits, Spool};

/// Records handed over and not yet in the spool, at most: seconds of records at any
/// rate the monitor sends; past it [`Uplink::offer`] drops and counts.
const HANDOVER_DEPTH: usize = 4096;
/// How often the spool is made durable.
const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// What the uploader did, for the agent's report line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records appended to the spool.
    pub spooled: AtomicU64,
    /// Publishes sent to the broker (again after a reconnect, if unacknowledged).
    pub published: AtomicU64,
    /// Publishes the broker acknowledged.
    pub acked: AtomicU64,
    /// Records lost before the spool: the handover queue was full or the disk failed.
    pub dropped: AtomicU64,
    /// Records the spool's bound removed before they were delivered.
    pub spool_dropped: AtomicU64,
    pub connects: AtomicU64,
    pub connected: AtomicBool,
    /// Records appended and not yet acknowledged.
    pub backlog: AtomicU64,
}

/// The uploader's handle, owned by the agent's channel loop.
pub struct Uplink {
    tx: SyncSender<Record>,
    counters: Arc<Counters>,
}

impl Uplink {
    /// Opens the spool and starts the writer and publisher threads. `say` prints one
    /// console line.
    pub fn start(config: Config, limits: Limits, say: fn(&str)) -> Result<Uplink, String> {
        let tls = tls::client_config(&config.cert, &config.key, &config.ca)?;
        let spool = Spool::open(&config.spool, limits).map_err(|e| format!("{}: {e}", config.spool.display()))?;
        let st = spool.stats();
        say(&format!(
            "septum-agent: upload as {} to {}:{}, spool {} ({} records waiting, {} torn bytes cut, {} corrupt)\n",
            config.device,
            config.host,
            config.port,
            config.spool.display(),
            spool.backlog(),
            st.torn_bytes,
            st.corrupt
        ));
        let counters = Arc::new(Counters::default());
        counters.backlog.store(spool.backlog(), Ordering::Relaxed);
        let spool = Arc::new(Mutex::new(spool));
        let (tx, rx) = mpsc::sync_channel(HANDOVER_DEPTH);
        let (s, c) = (spool.clone(), counters.clone());
        std::thread::Builder::new()
            .name("uplink-spool".into())
            .spawn(move || write_spool(rx, &s, &c, say))
            .map_err(|e| format!("spawning the spool writer: {e}"))?;
        let publisher = publisher::Publisher { config, tls, spool, counters: counters.clone(), say };
        std::thread::Builder::new()
            .name("uplink-mqtt".into())
            .spawn(move || publisher.run())
            .map_err(|e| format!("spawning the publisher: {e}"))?;
        Ok(Uplink { tx, counters })
    }

    /// Hands `record` to the uploader if it is uploaded at all; never blocks.
    pub fn offer(&self, record: &Record) {
        if !message::uploaded(record) {
            return;
        }
        match self.tx.try_send(*record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The report line's upload fields: ` upload published=N spooled=N acked=N ...`.
    pub fn report(&self) -> String {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "upload published={} spooled={} acked={} backlog={} dropped={} connected={}",
            n(&c.published),
            n(&c.spooled),
            n(&c.acked),
            n(&c.backlog),
            n(&c.dropped) + n(&c.spool_dropped),
            u8::from(c.connected.load(Ordering::Relaxed))
        )
    }
}

/// The writer thread: appends what is handed over; syncs at least once a second.
fn write_spool(rx: Receiver<Record>, spool: &Mutex<Spool>, c: &Counters, say: fn(&str)) {
    let mut failing = false;
    let mut last_sync = Instant::now();
    loop {
        let got = rx.recv_timeout(SYNC_PERIOD);
        let mut s = spool.lock().unwrap_or_else(|p| p.into_inner());
        let mut result = match got {
            Ok(r) => s.append(&r).map(|_| {
                c.spooled.fetch_add(1, Ordering::Relaxed);
            }),
            Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if result.is_err() && got.is_ok() {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if result.is_ok() && last_sync.elapsed() >= SYNC_PERIOD {
            result = s.sync();
            last_sync = Instant::now();
        }
        if let Err(e) = &result {
            if !failing {
                say(&format!("septum-agent: upload spool: {e}\n"));
            }
        }
        failing = result.is_err();
        c.backlog.store(s.backlog(), Ordering::Relaxed);
        c.spool_dropped.store(s.stats().dropped, Ordering::Relaxed);
    }
}

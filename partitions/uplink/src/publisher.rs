//! The publishing side: one thread that connects to the broker (MQTT 3.1.1 over TLS 1.3,
//! rumqttc), publishes the spool's records in order with QoS 1, and moves the spool's
//! cursor past a record only once the broker has acknowledged it. On any connection
//! error it drops the connection whole (so nothing rumqttc queued is sent twice behind
//! the spool's back), waits with a doubling backoff, and starts again from the first
//! unacknowledged record.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectReturnCode, Event, Incoming, MqttOptions, Outgoing, QoS, Transport};

use crate::config::Config;
use crate::message;
use crate::spool::Spool;
use crate::Counters;

/// Publishes in flight (unacknowledged) at most.
const WINDOW: usize = 32;
/// How long one wait for the broker's events lasts; new records are picked up after it.
const POLL: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect waits: 1 s doubling to 8 s, so a broker back after an outage is found
/// within seconds.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);

pub struct Publisher {
    pub config: Config,
    pub tls: Arc<rustls::ClientConfig>,
    pub spool: Arc<Mutex<Spool>>,
    pub counters: Arc<Counters>,
    pub say: fn(&str),
}

/// Why a session ended.
enum End {
    Refused(String),
    Lost(String),
}

impl Publisher {
    /// Never returns.
    pub fn run(self) -> ! {
        let mut backoff = BACKOFF_FIRST;
        let mut last_complaint = String::new();
        loop {
            let started = Instant::now();
            let why = match self.session() {
                End::Refused(w) => format!("refused: {w}"),
                End::Lost(w) => w,
            };
            self.counters.connected.store(false, Ordering::Relaxed);
            if started.elapsed() > Duration::from_secs(30) {
                backoff = BACKOFF_FIRST;
            }
            // One line per change of reason, not one per attempt.
            if why != last_complaint {
                (self.say)(&format!(
                    "septum-agent: upload to {}:{}: {why}; retrying (every {} s at most)\n",
                    self.config.host,
                    self.config.port,
                    BACKOFF_MAX.as_secs()
                ));
                last_complaint = why;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(self.config.device.clone(), self.config.host.clone(), self.config.port);
        o.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(self.tls.clone())));
        o.set_keep_alive(Duration::from_secs(15));
        // The spool, not the broker's session, holds what is not yet delivered.
        o.set_clean_session(true);
        o.set_inflight(WINDOW as u16);
        o
    }

    fn spool(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One connection, from connecting until it fails.
    fn session(&self) -> End {
        let (client, mut conn) = Client::new(self.options(), WINDOW * 2);
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match conn.recv_timeout(POLL) {
                Ok(Ok(Event::Incoming(Incoming::ConnAck(a)))) if a.code == ConnectReturnCode::Success => break,
                Ok(Ok(Event::Incoming(Incoming::ConnAck(a)))) => return End::Refused(format!("{:?}", a.code)),
                Ok(Ok(_)) => {}
                Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => return End::Refused(format!("{code:?}")),
                Ok(Err(e)) => return End::Lost(e.to_string()),
                Err(rumqttc::RecvTimeoutError::Disconnected) => return End::Lost("client closed".into()),
                Err(rumqttc::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() > deadline {
                return End::Lost("no CONNACK in time".into());
            }
        }
        self.counters.connected.store(true, Ordering::Relaxed);
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        (self.say)(&format!(
            "septum-agent: upload connected to {}:{} as {} (TLS 1.3), {} records waiting\n",
            self.config.host,
            self.config.port,
            self.config.device,
            self.spool().backlog()
        ));

        let mut next = self.spool().acked();
        // Spool indexes handed to the client, in order, not yet given a packet id.
        let mut queued: VecDeque<u64> = VecDeque::new();
        let mut by_pkid: HashMap<u16, u64> = HashMap::new();
        let mut outstanding: BTreeSet<u64> = BTreeSet::new();
        loop {
            if outstanding.len() < WINDOW {
                let batch = self.spool().read(next, WINDOW - outstanding.len());
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => return End::Lost(format!("reading the spool: {e}")),
                };
                for e in batch {
                    let Some(m) = message::message(&self.config.device, &e.record) else {
                        // Never spooled (see `Uplink::offer`); skip rather than stall.
                        next = e.index + 1;
                        continue;
                    };
                    if client.try_publish(m.topic, QoS::AtLeastOnce, false, m.payload).is_err() {
                        break;
                    }
                    queued.push_back(e.index);
                    outstanding.insert(e.index);
                    next = e.index + 1;
                }
            }
            match conn.recv_timeout(POLL) {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(index) = queued.pop_front() {
                        by_pkid.insert(pkid, index);
                        self.counters.published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Ok(Event::Incoming(Incoming::PubAck(ack)))) => {
                    if let Some(index) = by_pkid.remove(&ack.pkid) {
                        outstanding.remove(&index);
                        self.counters.acked.fetch_add(1, Ordering::Relaxed);
                        // Everything below the oldest outstanding publish is delivered.
                        let upto = outstanding.first().copied().unwrap_or(next);
                        let mut spool = self.spool();
                        if let Err(e) = spool.ack(upto) {
                            return End::Lost(format!("spool: {e}"));
                        }
                        self.counters.backlog.store(spool.backlog(), Ordering::Relaxed);
                    }
                }
                Ok(Ok(_)) | Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Ok(Err(e)) => return End::Lost(e.to_string()),
                Err(rumqttc::RecvTimeoutError::Disconnected) => return End::Lost("client closed".into()),
            }
        }
    }
}

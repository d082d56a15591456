//! Without a sensor the monitor exercises the channel (`septum_vitals::Exercise`
//! records, numbered, as fast as the channel takes them), so the channel's and Linux's
//! tests can count what arrives.

use septum_guest::channel::queuing::Producer;
use septum_guest::channel::volatile::VolatileRegion;
use septum_vitals::Exercise;
use zerocopy::IntoBytes;

/// The next record to send, and how many went since the peer was last signalled.
#[derive(Default)]
pub struct Exerciser {
    pub seq: u64,
    pub unsignalled: u64,
}

impl Exerciser {
    /// Sends one record if the queue has room; true if it did.
    pub fn step(&mut self, tx: &mut Producer<VolatileRegion>, t_ms: u64) -> bool {
        if tx.send(Exercise::new(self.seq, t_ms).as_bytes()).is_ok() {
            self.seq += 1;
            self.unsignalled += 1;
            true
        } else {
            false
        }
    }
}

//! The commands connectivity sends (MED-006): parsed with `septum_vitals::Command`,
//! acted on only if their kind is one the monitor accepts (none can silence an alarm,
//! change a limit or alter a measurement), every other message refused and counted.

use septum_vitals::{Command, CommandKind};

/// What the commands received so far did, and their numbering. Each accepted command
/// carries its sender's counter, one higher than the one before. The rule, per command
/// `v` after the previous one `p`:
///
/// * `v == p + 1`: in order;
/// * `v > p + 1`: `v - p - 1` commands were lost (`gaps`);
/// * `v == p`: a duplicate (`out_of_order`);
/// * `v < p`: the sender restarted and counts from low numbers again: a new stream
///   starts at `v` (`peer_restarts`), nothing counted as lost.
///
/// The sender is untrusted: every count saturates.
#[derive(Default)]
pub struct Commands {
    previous: Option<u64>,
    pub accepted: u64,
    pub refused: u64,
    pub gaps: u64,
    pub out_of_order: u64,
    pub peer_restarts: u64,
    /// What connectivity last said of its uplink (`UplinkState`).
    pub uplink: Option<bool>,
}

impl Commands {
    /// Takes one message from the channel; returns the command acted on, if any.
    pub fn take(&mut self, msg: &[u8]) -> Option<CommandKind> {
        let Ok((kind, c)) = Command::parse(msg) else {
            self.refused = self.refused.saturating_add(1);
            return None;
        };
        self.accepted = self.accepted.saturating_add(1);
        let v = c.seq.get();
        match self.previous {
            Some(p) if v > p => self.gaps = self.gaps.saturating_add(v - p - 1),
            Some(p) if v == p => self.out_of_order = self.out_of_order.saturating_add(1),
            Some(_) => self.peer_restarts = self.peer_restarts.saturating_add(1),
            None => {}
        }
        self.previous = Some(v);
        if kind == CommandKind::UplinkState {
            self.uplink = Some(c.arg.get() == 1);
        }
        Some(kind)
    }
}

//! Line assembly for a partition that writes through the hypervisor's log. Bytes are
//! gathered into lines so lines from different speakers never interleave, control
//! characters are replaced (a partition must not be able to forge or erase log lines),
//! and over-long lines are cut.

/// Longest line kept; longer ones are emitted in pieces.
pub const LINE_MAX: usize = 160;

#[derive(Clone, Copy)]
pub struct LineBuffer {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self { buf: [0; LINE_MAX], len: 0 }
    }
}

impl LineBuffer {
    /// Adds bytes; calls `emit` with each completed line (without its newline).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for &b in bytes {
            match b {
                b'\n' => self.flush(&mut emit),
                b'\r' => {}
                0x20..=0x7E => self.append(b, &mut emit),
                _ => self.append(b'?', &mut emit),
            }
        }
    }

    fn append(&mut self, b: u8, emit: &mut impl FnMut(&str)) {
        if self.len == LINE_MAX {
            self.flush(emit);
        }
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        // Only printable ASCII is ever stored, so this is valid UTF-8.
        emit(core::str::from_utf8(&self.buf[..self.len]).unwrap_or(""));
        self.len = 0;
    }

    /// Drops a partial line (the partition restarted).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Lines a partition may write through the hypervisor per second, and the burst it
/// may save up. A flood beyond that is dropped and counted, so a hostile partition
/// cannot monopolise the log (or the lock other cores' log lines take).
pub const LINES_PER_SECOND: u64 = 100;
pub const LINE_BURST: u64 = 50;

/// A token bucket over counter ticks (console lines, doorbell rings).
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    tokens: u64,
    burst: u64,
    last: u64,
    ticks_per_token: u64,
    dropped: u64,
}

/// What to do with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Let it through; `dropped` events were lost before it (say so, if non-zero).
    Write { dropped: u64 },
    /// Drop it.
    Drop,
}

impl RateLimit {
    /// `per_second` events on average, up to `burst` at once.
    pub fn new(per_second: u64, burst: u64, ticks_per_second: u64, now: u64) -> Self {
        let ticks_per_token = (ticks_per_second / per_second.max(1)).max(1);
        Self { tokens: burst, burst, last: now, ticks_per_token, dropped: 0 }
    }

    /// The limit for partition console lines.
    pub fn console(ticks_per_second: u64, now: u64) -> Self {
        Self::new(LINES_PER_SECOND, LINE_BURST, ticks_per_second, now)
    }

    /// Events dropped since the last one let through.
    pub fn pending_drops(&self) -> u64 {
        self.dropped
    }

    pub fn admit(&mut self, now: u64) -> Admit {
        let earned = now.saturating_sub(self.last) / self.ticks_per_token;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.last += earned * self.ticks_per_token;
        }
        if self.tokens == 0 {
            self.dropped += 1;
            return Admit::Drop;
        }
        self.tokens -= 1;
        let dropped = core::mem::take(&mut self.dropped);
        Admit::Write { dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{string::String, vec::Vec};

    /// LOG-001: a partition cannot forge or erase hypervisor log lines.
    #[test]
    fn assembles_lines_and_neutralises_control_characters() {
        let mut lb = LineBuffer::default();
        let mut lines: Vec<String> = Vec::new();
        lb.push(b"hello ", |l| lines.push(l.into()));
        lb.push(b"world\n\x1b[2Jfake\r\n", |l| lines.push(l.into()));
        assert_eq!(lines, ["hello world", "?[2Jfake"]);
    }

    /// LOG-003: a flood is cut to the budget and the loss is reported.
    #[test]
    fn floods_are_rate_limited_and_counted() {
        let mut rl = RateLimit::console(1000, 0); // 10 ticks per line
        let written = (0..200).filter(|_| matches!(rl.admit(0), Admit::Write { .. })).count();
        assert_eq!(written as u64, LINE_BURST);
        assert_eq!(rl.admit(10), Admit::Write { dropped: 150 });
        assert_eq!(rl.admit(10), Admit::Drop);
        assert_eq!(rl.admit(10_000), Admit::Write { dropped: 1 });
    }

    #[test]
    fn long_lines_are_cut() {
        let mut lb = LineBuffer::default();
        let mut lines: Vec<String> = Vec::new();
        lb.push(&[b'a'; LINE_MAX + 5], |l| lines.push(l.into()));
        lb.push(b"\n", |l| lines.push(l.into()));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), LINE_MAX);
        assert_eq!(lines[1], "aaaaa");
    }
}

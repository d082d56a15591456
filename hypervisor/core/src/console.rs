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

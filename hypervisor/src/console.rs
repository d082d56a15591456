//! The hypervisor's log. On QEMU virt it leaves through semihosting (both UARTs belong
//! to partitions); every line starts with `[septum]`, or with `[<partition>]` for lines a
//! partition writes through the `CONSOLE_WRITE` hypercall, so a reader knows who spoke.
//! Lines are written whole under a lock, so cores never interleave within a line.

use core::fmt::{self, Write};
use spin::Mutex;

const LINE: usize = 240;

static LOCK: Mutex<()> = Mutex::new(());

struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // Keep room for "\n\0"; cut what does not fit.
            if self.len < LINE - 2 {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

fn emit(line: &mut Line) {
    line.buf[line.len] = b'\n';
    line.buf[line.len + 1] = 0;
    if let Ok(s) = core::ffi::CStr::from_bytes_until_nul(&line.buf[..line.len + 2]) {
        septum_platform::semihosting::write0(s);
    }
}

fn format(speaker: &str, args: fmt::Arguments<'_>) -> Line {
    let mut line = Line { buf: [0; LINE], len: 0 };
    let _ = write!(line, "[{speaker}] {args}");
    line
}

/// Writes one line, `[speaker] text`.
pub fn line(speaker: &str, args: fmt::Arguments<'_>) {
    let mut l = format(speaker, args);
    let _guard = LOCK.lock();
    emit(&mut l);
}

/// Writes one line without taking the lock: only before the MMU is on (exclusive
/// accesses need cacheable memory) and only on the boot core.
pub fn early_line(args: fmt::Arguments<'_>) {
    let mut l = format("septum", args);
    emit(&mut l);
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        match record.level() {
            log::Level::Error => line("septum", format_args!("ERROR {}", record.args())),
            log::Level::Warn => line("septum", format_args!("WARN {}", record.args())),
            _ => line("septum", *record.args()),
        }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

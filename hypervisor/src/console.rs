//! The hypervisor's log. Under QEMU or a debugger it leaves through semihosting (the
//! boards' UARTs belong to partitions); every line starts with `[septum]`, or with
//! `[<partition>]` for lines a partition writes through the `CONSOLE_WRITE` hypercall,
//! so a reader knows who spoke. Lines are written whole under a lock, so cores never
//! interleave within a line. The lock is fair (a ticket lock), and the lines a
//! partition can cause are budgeted (`septum_core::events`), so no partition can keep
//! it busy; the safe state takes it for a bounded time only ([`line_within`]).
//!
//! Every line is also kept in a RAM ring, [`SEPTUM_LOG`], so nothing is lost where
//! semihosting is absent (a board with no debugger attached: the first call finds its
//! `HLT` undefined, the exception vector returns "absent", and semihosting is not tried
//! again). A debugger reads the ring by its symbol; `tail` is the offset of the next byte.
//!
//! Whether semihosting is there is decided by the first line only, which the boot core
//! writes before any partition runs. A later call that finds it absent on some core
//! (a state a guest could cause there, such as the OS double lock, were it not trapped)
//! turns nothing off for the other cores: the line stays in the ring, the miss is
//! counted and reported with the next line that gets through (ISO-008).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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

/// Bytes of log the RAM ring keeps (the newest).
const RING: usize = 64 * 1024;

/// The log's RAM ring: the newest [`RING`] bytes of log, oldest overwritten first.
#[no_mangle]
static mut SEPTUM_LOG: Ring = Ring { tail: 0, bytes: [0; RING] };

#[repr(C)]
struct Ring {
    /// Bytes ever written; the next byte goes to `tail % RING`.
    tail: u64,
    bytes: [u8; RING],
}

/// Semihosting: not tried yet, there, or absent (decided by the first line, at boot).
static SEMIHOSTING: AtomicU8 = AtomicU8::new(UNTRIED);
const UNTRIED: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;
/// Lines that found semihosting absent after it was found present, and how many of
/// them were reported.
static MISSED: AtomicU64 = AtomicU64::new(0);
static MISSED_REPORTED: AtomicU64 = AtomicU64::new(0);

fn emit(line: &mut Line) {
    keep_line(line);
    let state = SEMIHOSTING.load(Ordering::Relaxed);
    if state == ABSENT {
        return;
    }
    match (state, write_out(line)) {
        (UNTRIED, w) => SEMIHOSTING.store(if w { PRESENT } else { ABSENT }, Ordering::Relaxed),
        (_, false) => {
            MISSED.fetch_add(1, Ordering::Relaxed);
        }
        (_, true) => report_missed(),
    }
}

/// Ends the line (newline, NUL) and appends it to the RAM ring.
fn keep_line(line: &mut Line) {
    line.buf[line.len] = b'\n';
    line.buf[line.len + 1] = 0;
    keep(&line.buf[..line.len + 1]);
}

/// Writes an ended line through semihosting; false if semihosting was absent.
fn write_out(line: &Line) -> bool {
    core::ffi::CStr::from_bytes_until_nul(&line.buf[..line.len + 2]).is_ok_and(septum_platform::semihosting::write0)
}

/// After a line got through: says how many did not since the last report, if any.
fn report_missed() {
    let missed = MISSED.load(Ordering::Relaxed);
    let reported = MISSED_REPORTED.swap(missed, Ordering::Relaxed);
    if missed > reported {
        let what = format_args!("WARN {} log lines did not reach semihosting (kept in SEPTUM_LOG)", missed - reported);
        let mut l = format("septum", what);
        keep_line(&mut l);
        write_out(&l);
    }
}

/// Appends `bytes` to the RAM ring. Callers hold the lock, or are the boot core alone
/// before the MMU is on ([`early_line`]).
fn keep(bytes: &[u8]) {
    // SAFETY: the ring is only written here, by one core at a time (see above); no
    // reference to it outlives this call.
    let ring = unsafe { &mut *core::ptr::addr_of_mut!(SEPTUM_LOG) };
    for &b in bytes {
        ring.bytes[(ring.tail % RING as u64) as usize] = b;
        ring.tail = ring.tail.wrapping_add(1);
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

/// Writes one line, `[speaker] text`, if the lock comes free within `ticks` counter
/// ticks; otherwise writes nothing and returns false. For the safe state, which must
/// not wait on other cores' lines.
pub fn line_within(ticks: u64, speaker: &str, args: fmt::Arguments<'_>) -> bool {
    let mut l = format(speaker, args);
    let deadline = crate::cpu::counter().saturating_add(ticks);
    loop {
        if let Some(_guard) = LOCK.try_lock() {
            emit(&mut l);
            return true;
        }
        if crate::cpu::counter() >= deadline {
            return false;
        }
        core::hint::spin_loop();
    }
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

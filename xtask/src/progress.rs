//! Progress of long steps, shown as cargo shows its own: a bar or spinner on stderr when
//! stderr is a terminal (indicatif), plain `xtask: ...` status lines when it is not (CI,
//! tests, a log), so a log says what happened and holds no control characters.

use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// The bar on screen, if any: lines printed meanwhile go above it ([`println`]).
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn shown() -> MutexGuard<'static, Option<ProgressBar>> {
    SHOWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether progress is drawn (stderr is a terminal) rather than told in status lines.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// A step that takes a while, from its start to its [`Step::finish`]. Dropped unfinished
/// (an error on the way), it clears its bar and says nothing: the error will.
#[derive(Debug)]
pub struct Step {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Step {
    /// A step of unknown length: a spinner with `what` and the time so far; not drawn,
    /// only the summary is told.
    pub fn spinner(what: &str) -> Step {
        if !interactive() {
            return Step { bar: None, started: Instant::now() };
        }
        let bar = ProgressBar::new_spinner().with_style(style("{spinner:.green} {msg} ({elapsed})"));
        Self::show(bar.with_message(what.to_string()))
    }

    /// Moving bytes, `total` of them if known: a bar with bytes, rate and time left, or
    /// one status line.
    pub fn bytes(what: &str, total: Option<u64>) -> Step {
        if !interactive() {
            let size = total.map_or(String::new(), |t| format!(" ({})", HumanBytes(t)));
            eprintln!("xtask: {what}{size}");
            return Step { bar: None, started: Instant::now() };
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(style(
                "{spinner:.green} {msg} [{bar:30.green/dim}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
            )),
            None => {
                ProgressBar::new_spinner().with_style(style("{spinner:.green} {msg} {bytes} {binary_bytes_per_sec}"))
            }
        };
        Self::show(bar.with_message(what.to_string()))
    }

    fn show(bar: ProgressBar) -> Step {
        bar.enable_steady_tick(Duration::from_millis(100));
        *shown() = Some(bar.clone());
        Step { bar: Some(bar), started: Instant::now() }
    }

    /// How far the step is (bytes for [`Step::bytes`]).
    pub fn set_position(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    /// What the step is doing now; drawn only (no status line for each change).
    pub fn set_message(&self, what: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(what);
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the step, leaving `summary` as its status line.
    pub fn finish(mut self, summary: &str) {
        self.clear();
        eprintln!("xtask: {summary}");
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            *shown() = None;
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants of this file; a bad one is this file's bug, and the
    // default style still shows progress.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Prints `line` on stdout, above the bar if one is drawn (so neither garbles the other).
pub fn println(line: &str) {
    let shown = shown();
    match shown.as_ref() {
        Some(bar) => bar.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

/// `bytes` in `took`, for a summary: `57.02 MiB in 2.1 s (27.15 MiB/s)`.
pub fn amount(bytes: u64, took: Duration) -> String {
    let rate = HumanBytes((bytes as f64 / took.as_secs_f64().max(1e-3)) as u64);
    format!("{} in {} ({rate}/s)", HumanBytes(bytes), seconds(took))
}

/// A duration for a summary: `2.1 s`, or `35 ms` under a second.
pub fn seconds(took: Duration) -> String {
    if took < Duration::from_secs(1) {
        format!("{} ms", took.as_millis())
    } else {
        format!("{:.1} s", took.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_say_size_time_and_rate() {
        assert_eq!(amount(3 << 20, Duration::from_secs(2)), "3.00 MiB in 2.0 s (1.50 MiB/s)");
        assert_eq!(amount(1 << 20, Duration::from_millis(250)), "1.00 MiB in 250 ms (4.00 MiB/s)");
        // A step too quick to time still has a finite rate.
        assert!(amount(1024, Duration::ZERO).ends_with("/s)"));
    }
}

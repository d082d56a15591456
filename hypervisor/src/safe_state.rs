//! The system's safe state (HM-003): every partition stops. The reason is logged and
//! recorded, then the board firmware is asked to power the system off (PSCI
//! SYSTEM_OFF), which stops every core and de-energises outputs; if it refuses, this
//! core parks. The way there never waits long on a lock a partition can keep busy
//! (LOG-003): the log's and the audit store's locks are fair, and here each is tried
//! for a bounded time only, so a flood from another partition delays the safe state by
//! at most [`LOCK_BUDGET_US`] per lock.

use core::sync::atomic::{AtomicBool, Ordering};

use septum_abi::hypercall::psci::SYSTEM_OFF;
use septum_core::board::Conduit;
use septum_trust::audit::EventKind;

use crate::cpu;

/// Longest the safe-state path waits for each shared lock (log, audit store).
pub const LOCK_BUDGET_US: u64 = 2_000;

/// Whether PSCI SYSTEM_OFF can be asked of firmware (over SMC): known from the board
/// DTB before any partition exists, so even a refusal at boot can power off.
static POWER_OFF_BY_SMC: AtomicBool = AtomicBool::new(false);

pub fn set_firmware(conduit: Option<Conduit>) {
    POWER_OFF_BY_SMC.store(conduit == Some(Conduit::Smc), Ordering::Release);
}

/// Counter ticks of [`LOCK_BUDGET_US`].
pub fn lock_budget_ticks() -> u64 {
    cpu::counter_hz() / 1_000_000 * LOCK_BUDGET_US
}

/// Enters the safe state for `reason`. Never returns.
pub fn safe_state(reason: &str) -> ! {
    let budget = lock_budget_ticks();
    crate::console::line_within(
        budget,
        "septum",
        format_args!("ERROR SAFE STATE: {reason}; stopping every partition (PSCI SYSTEM_OFF)"),
    );
    if !crate::trust::record_within(budget, EventKind::SafeState, crate::trust::NO_PARTITION, 1, 0) {
        crate::console::line_within(budget, "septum", format_args!("ERROR SAFE STATE: audit store busy; not recorded"));
    }
    if POWER_OFF_BY_SMC.load(Ordering::Acquire) {
        cpu::psci(SYSTEM_OFF, 0, 0, 0);
    }
    crate::console::line_within(
        budget,
        "septum",
        format_args!("ERROR SAFE STATE: firmware did not power off; core parked"),
    );
    cpu::park()
}

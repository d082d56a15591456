//! The health monitor's policy: what happens to a partition that faults or asks to be
//! reset. Pure decision logic over time in counter ticks; the EL2 binary carries out
//! the decision (reload, zero, restart; park the core; stop the system).

use septum_abi::config::{FaultPolicy, PartitionDesc};

/// Restarts remembered per partition for the window check.
const HISTORY: usize = 32;
/// Longest back-off, however many restarts preceded it.
const BACKOFF_CAP_MS: u64 = 10_000;

/// What the partition did that stopped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// A fault or forbidden action (see `traps::Violation`).
    Fault,
    /// The partition asked for PSCI SYSTEM_RESET / SYSTEM_RESET2.
    ResetRequest,
    /// The partition asked for PSCI SYSTEM_OFF.
    OffRequest,
}

/// What the hypervisor does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait `delay_ticks`, then reload the pristine image and start again. `restart`
    /// counts restarts since boot, this one included.
    Restart { delay_ticks: u64, restart: u32 },
    /// Stop the partition; everyone else runs on.
    Halt { reason: HaltReason },
    /// Stop every partition (the documented safe state).
    SafeState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltReason {
    /// The configured policy is `halt`.
    Policy,
    /// More than `max` restarts within the window: restarting is not helping.
    RestartLimit { max: u32, window_ms: u32 },
}

/// Per-partition health state.
#[derive(Clone, Copy, Debug)]
pub struct Health {
    policy: FaultPolicy,
    max: u32,
    window_ms: u32,
    window_ticks: u64,
    backoff_ticks: u64,
    cap_ticks: u64,
    history: [u64; HISTORY],
    restarts: u32,
}

impl Health {
    /// `ticks_per_ms` is the generic timer's rate / 1000.
    pub fn new(desc: &PartitionDesc, ticks_per_ms: u64) -> Self {
        Self {
            policy: desc.policy().unwrap_or(FaultPolicy::Halt),
            max: desc.restart_max.min(HISTORY as u32),
            window_ms: desc.restart_window_ms,
            window_ticks: u64::from(desc.restart_window_ms) * ticks_per_ms,
            backoff_ticks: u64::from(desc.backoff_ms) * ticks_per_ms,
            cap_ticks: BACKOFF_CAP_MS * ticks_per_ms,
            history: [0; HISTORY],
            restarts: 0,
        }
    }

    /// Restarts since boot.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Decides what follows a stop at time `now`.
    pub fn on_stop(&mut self, _cause: StopCause, now: u64) -> Decision {
        match self.policy {
            FaultPolicy::Halt => Decision::Halt { reason: HaltReason::Policy },
            FaultPolicy::SafeState => Decision::SafeState,
            FaultPolicy::Restart => {
                let recent = self.recent(now);
                if recent >= self.max {
                    return Decision::Halt {
                        reason: HaltReason::RestartLimit { max: self.max, window_ms: self.window_ms },
                    };
                }
                // Exponential back-off over the restarts still inside the window.
                let delay_ticks = self.backoff_ticks.saturating_mul(1 << recent.min(20)).min(self.cap_ticks);
                self.history[(self.restarts as usize) % HISTORY] = now;
                self.restarts += 1;
                Decision::Restart { delay_ticks, restart: self.restarts }
            }
        }
    }

    /// Restarts whose time lies within the window before `now`.
    fn recent(&self, now: u64) -> u32 {
        let n = (self.restarts as usize).min(HISTORY);
        self.history[..n].iter().filter(|&&t| now.saturating_sub(t) < self.window_ticks).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use septum_abi::config::PartitionDesc;
    use zerocopy::FromZeros;

    fn desc(policy: FaultPolicy, max: u32, window_ms: u32, backoff_ms: u32) -> PartitionDesc {
        let mut d = PartitionDesc::new_zeroed();
        d.policy = policy as u32;
        d.restart_max = max;
        d.restart_window_ms = window_ms;
        d.backoff_ms = backoff_ms;
        d
    }

    /// HM-002: restart with exponential back-off, then halt past the limit.
    #[test]
    fn restart_backs_off_then_escalates_to_halt() {
        let mut h = Health::new(&desc(FaultPolicy::Restart, 3, 1000, 10), 1);
        assert_eq!(h.on_stop(StopCause::Fault, 100), Decision::Restart { delay_ticks: 10, restart: 1 });
        assert_eq!(h.on_stop(StopCause::Fault, 200), Decision::Restart { delay_ticks: 20, restart: 2 });
        assert_eq!(h.on_stop(StopCause::ResetRequest, 300), Decision::Restart { delay_ticks: 40, restart: 3 });
        assert_eq!(
            h.on_stop(StopCause::Fault, 400),
            Decision::Halt { reason: HaltReason::RestartLimit { max: 3, window_ms: 1000 } }
        );
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let mut h = Health::new(&desc(FaultPolicy::Restart, 2, 100, 5), 1);
        assert!(matches!(h.on_stop(StopCause::Fault, 0), Decision::Restart { .. }));
        assert!(matches!(h.on_stop(StopCause::Fault, 50), Decision::Restart { delay_ticks: 10, .. }));
        // Both earlier restarts are more than 100 ticks old by now.
        assert_eq!(h.on_stop(StopCause::Fault, 1000), Decision::Restart { delay_ticks: 5, restart: 3 });
    }

    #[test]
    fn halt_and_safe_state_policies() {
        let mut h = Health::new(&desc(FaultPolicy::Halt, 0, 0, 0), 1);
        assert_eq!(h.on_stop(StopCause::Fault, 1), Decision::Halt { reason: HaltReason::Policy });
        let mut s = Health::new(&desc(FaultPolicy::SafeState, 0, 0, 0), 1);
        assert_eq!(s.on_stop(StopCause::OffRequest, 1), Decision::SafeState);
    }

    #[test]
    fn back_off_is_capped() {
        let mut h = Health::new(&desc(FaultPolicy::Restart, 32, 1_000_000, 1000), 1);
        let mut last = 0;
        for t in 0..30 {
            if let Decision::Restart { delay_ticks, .. } = h.on_stop(StopCause::Fault, t) {
                last = delay_ticks;
            }
        }
        assert_eq!(last, BACKOFF_CAP_MS);
    }
}

//! The part of the hypervisor that needs no hardware, kept apart (as Hubris keeps
//! `kerncore`) so it builds and is unit-tested on the host. The EL2 binary reads
//! registers, calls into these modules and writes the answers back.
//!
//! * [`esr`]: decoding of the exception syndrome register, for logs and dispatch.
//! * [`traps`]: what a guest's synchronous exception means ([`traps::Exit`]).
//! * [`hypercall`]: answers to PSCI, SMCCC and Septum calls.
//! * [`speculation`]: per core, what entry to EL2 does against branch-predictor
//!   attacks (Spectre-v2, Spectre-BHB) and what `SMCCC_ARCH_FEATURES` says of it.
//! * [`health`]: the fault policy: restart with back-off, halt, safe state.
//! * [`debug_pmu`]: the PMU and OS-lock registers EL2 traps (`MDCR_EL2`) and how it
//!   emulates them, so no counter counts at EL2 and no guest sets the OS double lock.
//! * [`el2map`]: what the hypervisor's own stage 1 maps in its boot, run and
//!   per-partition load views.
//! * [`pagetable`]: the 4 KiB-granule translation-table builder for EL2 stage 1 and
//!   partition stage 2.
//! * [`smmu`]: the SMMUv3's stream table entries, commands and event records.
//! * [`board`]: the board facts a configuration is checked against, read from a DTB.
//! * [`console`]: line assembly for partitions that write through the hypervisor.
//! * [`events`]: contained events counted per partition, the budget for the log lines
//!   a partition can cause, and the periodic summary.
//! * [`virq_unwired`]: the `virq-unwired` quirk's decisions (`HCR_EL2.VI` in place of
//!   a GIC virtual IRQ line a board's model does not wire).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod board;
pub mod console;
pub mod debug_pmu;
pub mod doorbell;
pub mod el2map;
pub mod esr;
pub mod events;
pub mod health;
pub mod hypercall;
pub mod pagetable;
pub mod smmu;
pub mod speculation;
pub mod traps;
pub mod vcpu;
pub mod vgic;
pub mod vgicd;
pub mod vgicd2;
pub mod vgicr;
pub mod virq_unwired;

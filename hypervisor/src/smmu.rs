//! The board's Arm SMMUv3, which the hypervisor alone drives (DMA-003): its stream
//! table, command queue and event queue live in the hypervisor's memory, where no
//! partition and no device's stream reaches. At boot every stream aborts; a stream of a
//! device given to a partition then translates with that partition's stage 2
//! ([`translate`]), and goes back to aborting while the partition is stopped
//! ([`abort`]). What goes into the tables is `septum_core::smmu`'s; which partition a
//! stream belongs to, and what its faults lead to, is `partition::dma`'s.
//!
//! Every wait on the SMMU is bounded: one that does not answer is an error the caller
//! turns into a refusal (at boot) or a halted partition (at a restart), never a hang.

use core::cell::UnsafeCell;

use septum_core::smmu::{self, Cmd, Event, Queue, Ste, EVENTQ_OVERFLOW, STE_ABORT};
use septum_platform::catalog::Streams;
use septum_platform::smmuv3::{Smmu, CMDQ_CONS, CR0, CR1, CR2, GBPA, IDR0, IDR1, IDR5, IRQ_CTRL, STRTAB_BASE_CFG};
use spin::Mutex;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

use crate::cpu;

/// Streams the table holds: bus 0's requester IDs. Streams beyond it abort and are
/// recorded (`C_BAD_STREAMID`).
pub const STREAMS_LOG2: u32 = 8;
const CMDQ: Queue = Queue { log2: 8 };
const EVENTQ: Queue = Queue { log2: 7 };
/// How long the SMMU may take to acknowledge a register write or complete a command.
const ANSWER_US: u64 = 10_000;

#[repr(C, align(16384))]
struct StreamTable([Ste; 1 << STREAMS_LOG2]);
#[repr(C, align(4096))]
struct CommandQueue([Cmd; 1 << 8]);
#[repr(C, align(4096))]
struct EventQueue([[u64; 4]; 1 << 7]);

/// The SMMU's memory: read and written only under [`DRIVER`]'s lock (and by the SMMU).
struct Memory {
    table: UnsafeCell<StreamTable>,
    cmdq: UnsafeCell<CommandQueue>,
    eventq: UnsafeCell<EventQueue>,
}

// SAFETY: the cells are reached only through `Driver`, which lives behind `DRIVER`'s
// lock, so one core at a time.
unsafe impl Sync for Memory {}

static MEMORY: Memory = Memory {
    table: UnsafeCell::new(StreamTable([STE_ABORT; 1 << STREAMS_LOG2])),
    cmdq: UnsafeCell::new(CommandQueue([[0; 2]; 1 << 8])),
    eventq: UnsafeCell::new(EventQueue([[0; 4]; 1 << 7])),
};

struct Driver {
    smmu: Smmu,
    cmdq_prod: u32,
    eventq_cons: u32,
    /// Output address size code for stage-2 entries.
    ps: u8,
    event_irq: u32,
    gerror_irq: u32,
    /// GERROR as last acknowledged.
    gerror_seen: u32,
}

static DRIVER: Mutex<Option<Driver>> = Mutex::new(None);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmuError {
    /// It lacks what Septum needs.
    Unsupported(&'static str),
    /// It did not acknowledge or complete in time.
    NoAnswer(&'static str),
    /// It refused a command (the CMDQ_CONS error code).
    Command(u32),
    /// [`init`] did not run or failed.
    NotRunning,
}

impl core::fmt::Display for SmmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SmmuError::Unsupported(what) => write!(f, "the SMMU lacks {what}"),
            SmmuError::NoAnswer(what) => write!(f, "the SMMU did not answer ({what}) within {ANSWER_US} us"),
            SmmuError::Command(code) => write!(f, "the SMMU refused a command (error {code:#x})"),
            SmmuError::NotRunning => write!(f, "the SMMU is not running"),
        }
    }
}

fn wait(what: &'static str, mut done: impl FnMut() -> bool) -> Result<(), SmmuError> {
    let deadline = cpu::counter() + ANSWER_US * (cpu::counter_hz() / 1_000_000).max(1);
    while !done() {
        if cpu::counter() > deadline {
            return Err(SmmuError::NoAnswer(what));
        }
        core::hint::spin_loop();
    }
    Ok(())
}

impl Driver {
    fn table(&mut self) -> &mut StreamTable {
        // SAFETY: only the driver, under `DRIVER`'s lock, reaches the cell (see `Memory`).
        unsafe { &mut *MEMORY.table.get() }
    }

    /// Queues `cmds` and a CMD_SYNC, and waits until the SMMU consumed them all.
    fn run(&mut self, cmds: impl IntoIterator<Item = Cmd>) -> Result<(), SmmuError> {
        let regs = self.smmu.regs;
        for cmd in cmds.into_iter().chain([smmu::cmd_sync()]) {
            let prod = self.cmdq_prod;
            wait("command queue full", || !CMDQ.is_full(prod, regs.cmdq_cons.get()))?;
            // SAFETY: only the driver, under `DRIVER`'s lock, writes the queue, and the
            // slot at PROD is not the SMMU's (the queue is not full).
            unsafe { (*MEMORY.cmdq.get()).0[CMDQ.slot(prod)] = cmd };
            self.cmdq_prod = CMDQ.next(prod);
            // The command is in memory before the SMMU is told.
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
            regs.cmdq_prod.set(self.cmdq_prod);
        }
        let prod = self.cmdq_prod;
        let mut error = 0;
        wait("CMD_SYNC", || {
            let cons = regs.cmdq_cons.extract();
            error = cons.read(CMDQ_CONS::ERR);
            error != 0 || CMDQ.is_empty(prod, cons.get())
        })?;
        if error != 0 {
            return Err(SmmuError::Command(error));
        }
        Ok(())
    }

    /// Writes `ste` for every stream of `streams` in the table, then has the SMMU drop
    /// what it cached of them (and of `vmid`'s translations) before returning.
    fn set(&mut self, streams: Streams, ste: Ste, vmid: u16) -> Result<(), SmmuError> {
        let end = (streams.first + streams.count).min(1 << STREAMS_LOG2);
        for sid in streams.first..end {
            self.table().0[sid as usize] = ste;
        }
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
        self.run((streams.first..end).map(smmu::cmd_cfgi_ste).chain([smmu::cmd_tlbi_s12_vmall(vmid)]))
    }
}

/// Brings up the SMMU at `base` with every stream aborting and recorded, its event and
/// global-error interrupts routed to the core with affinity `irq_core`. Boot core, once,
/// before any partition runs.
pub fn init(base: u64, event_irq: u32, gerror_irq: u32, irq_core: u64) -> Result<(), SmmuError> {
    // SAFETY: `base` is the board's SMMU, in `hypervisor_devices` (EL2's stage 1 maps it
    // as Device memory) and in `kept_devices` (no partition's stage 2 does); only this
    // module programs it, under `DRIVER`'s lock.
    let smmu = unsafe { Smmu::new(base as usize) };
    let r = smmu.regs;
    if !r.idr0.is_set(IDR0::S2P) {
        return Err(SmmuError::Unsupported("stage-2 translation"));
    }
    if r.idr0.read(IDR0::TTF) & 0b10 == 0 {
        return Err(SmmuError::Unsupported("AArch64 translation tables"));
    }
    if !r.idr0.is_set(IDR0::COHACC) {
        // Tables and queues are written cacheable with no maintenance for the SMMU.
        return Err(SmmuError::Unsupported("coherent table walks and queue accesses"));
    }
    if r.idr1.read(IDR1::SIDSIZE) < STREAMS_LOG2 || r.idr1.read(IDR1::CMDQS) < CMDQ.log2 {
        return Err(SmmuError::Unsupported("the stream or command queue sizes Septum uses"));
    }
    if !r.idr5.is_set(IDR5::GRAN4K) {
        return Err(SmmuError::Unsupported("4 KiB translation granules"));
    }
    let ps = (r.idr5.read(IDR5::OAS) as u8).min(cpu::pa_size() as u8);
    // Off, and aborting whatever arrives meanwhile.
    r.cr0.set(0);
    wait("CR0 off", || r.cr0ack.get() == 0)?;
    r.gbpa.write(GBPA::ABORT::SET + GBPA::UPDATE::SET);
    wait("GBPA", || !r.gbpa.is_set(GBPA::UPDATE))?;
    // Tables and queues: write-back cacheable, inner shareable, like the memory they are in.
    r.cr1.write(
        CR1::QUEUE_IC.val(1)
            + CR1::QUEUE_OC.val(1)
            + CR1::QUEUE_SH.val(3)
            + CR1::TABLE_IC.val(1)
            + CR1::TABLE_OC.val(1)
            + CR1::TABLE_SH.val(3),
    );
    r.cr2.write(CR2::RECINVSID::SET);
    const READ_ALLOCATE: u64 = 1 << 62;
    let addr = |p: *const u8| p as u64 & 0x000F_FFFF_FFFF_FFC0;
    r.strtab_base.set(READ_ALLOCATE | addr(MEMORY.table.get().cast()));
    r.strtab_base_cfg.write(STRTAB_BASE_CFG::FMT.val(0) + STRTAB_BASE_CFG::LOG2SIZE.val(STREAMS_LOG2));
    r.cmdq_base.set(READ_ALLOCATE | addr(MEMORY.cmdq.get().cast()) | u64::from(CMDQ.log2));
    r.cmdq_prod.set(0);
    r.cmdq_cons.set(0);
    const WRITE_ALLOCATE: u64 = 1 << 62;
    r.eventq_base.set(WRITE_ALLOCATE | addr(MEMORY.eventq.get().cast()) | u64::from(EVENTQ.log2));
    smmu.page1.eventq_prod.set(0);
    smmu.set_eventq_cons(0);
    // Wired interrupts, not MSIs.
    r.eventq_irq_cfg0.set(0);
    r.gerror_irq_cfg0.set(0);
    r.irq_ctrl.write(IRQ_CTRL::GERROR_IRQEN::SET + IRQ_CTRL::EVENTQ_IRQEN::SET);
    wait("IRQ_CTRL", || r.irq_ctrlack.is_set(IRQ_CTRL::EVENTQ_IRQEN))?;
    // The stream table in memory says "abort" everywhere before the SMMU reads it.
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
    r.cr0.write(CR0::CMDQEN::SET + CR0::EVENTQEN::SET);
    wait("queues on", || r.cr0ack.is_set(CR0::CMDQEN) && r.cr0ack.is_set(CR0::EVENTQEN))?;
    let gerror_seen = r.gerror.get();
    let mut d = Driver { smmu, cmdq_prod: 0, eventq_cons: 0, ps, event_irq, gerror_irq, gerror_seen };
    d.run([smmu::cmd_cfgi_all(), smmu::cmd_tlbi_nsnh_all()])?;
    d.smmu.regs.cr0.modify(CR0::SMMUEN::SET);
    wait("SMMUEN", || r.cr0ack.is_set(CR0::SMMUEN))?;
    crate::gic::own_spi(event_irq, irq_core, true);
    crate::gic::own_spi(gerror_irq, irq_core, true);
    *DRIVER.lock() = Some(d);
    Ok(())
}

/// Streams `streams` translate with the stage 2 of VMID `vmid` rooted at `s2_root`.
pub fn translate(streams: Streams, vmid: u16, s2_root: u64) -> Result<(), SmmuError> {
    let mut guard = DRIVER.lock();
    let d = guard.as_mut().ok_or(SmmuError::NotRunning)?;
    let ste = smmu::ste_s2(vmid, s2_root, d.ps);
    d.set(streams, ste, vmid)
}

/// Streams `streams` abort again (their partition stopped); nothing the SMMU cached of
/// them or of VMID `vmid` survives the return.
pub fn abort(streams: Streams, vmid: u16) -> Result<(), SmmuError> {
    let mut guard = DRIVER.lock();
    let d = guard.as_mut().ok_or(SmmuError::NotRunning)?;
    d.set(streams, STE_ABORT, vmid)
}

/// GERROR.EVENTQ_ABT_ERR: an event could not be written (the queue was full).
pub const GERROR_EVENTQ_FULL: u32 = 1 << 2;

/// What one pass over the event queue found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drained {
    /// The queue overflowed since the last pass: events were lost.
    pub overflowed: bool,
    /// Global errors raised since the last pass (GERROR bits that toggled).
    pub gerror: u32,
}

/// Whether `intid` is one of the SMMU's interrupts.
pub fn owns_irq(intid: u32) -> bool {
    DRIVER.lock().as_ref().is_some_and(|d| d.event_irq == intid || d.gerror_irq == intid)
}

/// Takes the events the SMMU recorded (at most a queue's worth), handing each to
/// `each`, and acknowledges global errors. Bounded, whatever devices do meanwhile.
pub fn drain(mut each: impl FnMut(Event)) -> Drained {
    let mut guard = DRIVER.lock();
    let Some(d) = guard.as_mut() else { return Drained::default() };
    let prod = d.smmu.eventq_prod();
    let mut cons = d.eventq_cons;
    for _ in 0..1 << EVENTQ.log2 {
        if EVENTQ.is_empty(prod, cons) {
            break;
        }
        // SAFETY: the SMMU has written the entries between CONS and PROD and does not
        // touch them until CONS moves past; only the driver, under the lock, reads them.
        let words = unsafe { (*MEMORY.eventq.get()).0[EVENTQ.slot(cons)] };
        each(Event::decode(words));
        cons = EVENTQ.next(cons);
    }
    // Acknowledge an overflow by copying its flag back (OVACKFLG).
    let overflowed = (prod ^ d.eventq_cons) & EVENTQ_OVERFLOW != 0;
    d.eventq_cons = (cons & !EVENTQ_OVERFLOW) | (prod & EVENTQ_OVERFLOW);
    d.smmu.set_eventq_cons(d.eventq_cons);
    let gerror = d.smmu.regs.gerror.get();
    let raised = gerror ^ d.gerror_seen;
    if raised != 0 {
        d.smmu.regs.gerrorn.set(gerror);
        d.gerror_seen = gerror;
    }
    Drained { overflowed, gerror: raised }
}

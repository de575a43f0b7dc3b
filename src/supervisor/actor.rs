//! The supervisor actor: one slot per worker port, crash restarts with backoff, staged restarts
//! one worker at a time, and the drain on shutdown.
//!
//! Slot life: `Starting` (spawned, not yet ready) → `Ready` (handed out by `/connect`) →
//! `Draining` (told to drain; never handed out) → exit → respawned. A worker that exits without
//! being told to is restarted on the same port after an exponential backoff; after
//! `workers.max_restarts` failures within `workers.restart_window` the slot is given up (`Failed`)
//! and the supervisor says so loudly; it exits non-zero only when no slot can run.
//!
//! A staged restart drains one ready worker, waits for it to exit, starts a new process from the
//! executable file on disk (so a replaced binary is picked up), waits until it is ready, and goes
//! on with the next. It never takes a worker out of service while another one is not ready.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, info, warn};
use serde::Serialize;

use super::process::{FromWorker, Launch, WorkerExited, WorkerProcess};
use crate::broker::local::LocalBrokerServerHandle;
use crate::config::Config;
use crate::control::WorkerEvent;
use crate::metrics::Snapshot;

/// Longest pause before restarting a crashed worker.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a waiting staged restart looks again.
const ROLL_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    Starting,
    Ready,
    Draining,
    Down,
    Failed,
}

struct Slot {
    port: u16,
    generation: u64,
    state: SlotState,
    process: Option<WorkerProcess>,
    sessions: usize,
    metrics: Snapshot,
    failures: VecDeque<Instant>,
    /// The current drain was ordered (staged restart or shutdown), not a crash.
    planned_exit: bool,
}

/// Counters the supervisor keeps about itself.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SupervisorCounters {
    pub restarts: u64,
    pub crashes: u64,
    pub drains: u64,
    pub rolls: u64,
}

/// The supervisor.
pub struct Supervisor {
    config: Config,
    /// The embedded broker, when this supervisor hosts one: it lives as long as the supervisor.
    _embedded: Option<LocalBrokerServerHandle>,
    exe: PathBuf,
    slots: Vec<Slot>,
    roll: VecDeque<usize>,
    rolling: Option<usize>,
    shutting_down: bool,
    counters: SupervisorCounters,
}

impl Supervisor {
    pub fn new(config: Config, exe: PathBuf, embedded: Option<LocalBrokerServerHandle>) -> Self {
        let slots = (0..usize::from(config.workers.count))
            .map(|i| Slot {
                port: config.http.worker_base_port + i as u16,
                generation: 0,
                state: SlotState::Down,
                process: None,
                sessions: 0,
                metrics: Snapshot::default(),
                failures: VecDeque::new(),
                planned_exit: false,
            })
            .collect();
        Supervisor {
            config,
            _embedded: embedded,
            exe,
            slots,
            roll: VecDeque::new(),
            rolling: None,
            shutting_down: false,
            counters: SupervisorCounters::default(),
        }
    }

    fn spawn(&mut self, index: usize, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.sessions = 0;
        slot.planned_exit = false;
        let launch = Launch {
            exe: &self.exe,
            config: self.config.source.as_ref(),
            index,
            port: slot.port,
            generation: slot.generation,
        };
        match WorkerProcess::spawn(launch, ctx.address()) {
            Ok(process) => {
                info!(
                    "worker starting index={index} port={} pid={:?} generation={}",
                    slot.port, process.pid, slot.generation
                );
                slot.process = Some(process);
                slot.state = SlotState::Starting;
            }
            Err(e) => {
                error!(
                    "worker could not be started index={index} exe={} error={e}",
                    self.exe.display()
                );
                slot.state = SlotState::Down;
                self.crashed(index, ctx);
            }
        }
    }

    /// An unplanned exit: restart with backoff, or give the slot up.
    fn crashed(&mut self, index: usize, ctx: &mut Context<Self>) {
        self.counters.crashes += 1;
        let window = self.config.workers.restart_window;
        let max = self.config.workers.max_restarts as usize;
        let slot = &mut self.slots[index];
        let now = Instant::now();
        slot.failures.push_back(now);
        while slot
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            slot.failures.pop_front();
        }
        if slot.failures.len() > max {
            slot.state = SlotState::Failed;
            error!(
                "WORKER GIVEN UP index={index} port={}: {} failures within {:?}; \
                 fix the cause and restart rohrpost",
                slot.port,
                slot.failures.len(),
                window
            );
            if self.slots.iter().all(|s| s.state == SlotState::Failed) {
                error!("no worker can run; supervisor exits");
                System::current().stop_with_code(1);
            }
            return;
        }
        let exponent = slot.failures.len().saturating_sub(1).min(16) as u32;
        let backoff = (Duration::from_millis(100) * 2u32.pow(exponent)).min(MAX_BACKOFF);
        warn!(
            "worker exited unexpectedly index={index} port={}; restarting in {backoff:?}",
            slot.port
        );
        ctx.run_later(backoff, move |act, ctx| {
            if act.slots[index].state == SlotState::Down {
                act.counters.restarts += 1;
                act.spawn(index, ctx);
            }
        });
    }

    /// Moves a staged restart on by one step, if it can.
    fn advance_roll(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || self.rolling.is_some() {
            return;
        }
        let Some(&next) = self.roll.front() else {
            return;
        };
        let others_ready = self
            .slots
            .iter()
            .enumerate()
            .all(|(i, s)| i == next || matches!(s.state, SlotState::Ready | SlotState::Failed));
        let this = self.slots[next].state;
        if !others_ready || this == SlotState::Starting || this == SlotState::Draining {
            ctx.run_later(ROLL_RETRY, |act, ctx| act.advance_roll(ctx));
            return;
        }
        self.roll.pop_front();
        self.rolling = Some(next);
        match this {
            SlotState::Ready => self.drain(next),
            // Down or failed: start it from the binary on disk right away.
            _ => {
                self.slots[next].failures.clear();
                self.spawn(next, ctx);
            }
        }
    }

    fn drain(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if let Some(process) = &slot.process {
            info!("worker drain ordered index={index} port={}", slot.port);
            process.drain();
            slot.state = SlotState::Draining;
            slot.planned_exit = true;
            self.counters.drains += 1;
        }
    }

    fn pick(&self) -> Option<Picked> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Ready)
            .min_by_key(|(_, s)| s.sessions)
            .map(|(index, s)| Picked {
                index,
                port: s.port,
                sessions: s.sessions,
            })
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for index in 0..self.slots.len() {
            self.spawn(index, ctx);
        }
        if let Some(every) = self.config.workers.recycle_interval {
            ctx.run_interval(every, |act, ctx| {
                info!("staged restart: recycle interval");
                act.handle(StartRoll, ctx);
            });
        }
    }
}

impl Handler<FromWorker> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: FromWorker, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.get_mut(msg.index) else {
            return;
        };
        if slot.generation != msg.generation {
            return;
        }
        match msg.event {
            WorkerEvent::Ready { port, version } => {
                info!(
                    "worker ready index={} port={port} version={version}",
                    msg.index
                );
                if slot.state == SlotState::Starting {
                    slot.state = SlotState::Ready;
                }
                if self.rolling == Some(msg.index) {
                    self.rolling = None;
                    self.advance_roll(ctx);
                }
            }
            WorkerEvent::Status {
                sessions, metrics, ..
            } => {
                slot.sessions = sessions;
                slot.metrics = metrics;
            }
            WorkerEvent::Draining { sessions } => {
                slot.state = SlotState::Draining;
                slot.sessions = sessions;
            }
        }
    }
}

impl Handler<WorkerExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WorkerExited, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.get_mut(msg.index) else {
            return;
        };
        if slot.generation != msg.generation {
            return;
        }
        let planned = slot.planned_exit;
        slot.process = None;
        slot.state = SlotState::Down;
        slot.sessions = 0;
        info!(
            "worker exited index={} port={} code={:?} planned={planned}",
            msg.index, slot.port, msg.code
        );
        if self.shutting_down {
            if self.slots.iter().all(|s| s.process.is_none()) {
                info!("all workers gone; supervisor exits");
                System::current().stop_with_code(0);
            }
            return;
        }
        if planned {
            self.counters.restarts += 1;
            self.spawn(msg.index, ctx);
        } else {
            if self.rolling == Some(msg.index) {
                // It crashed while being rolled: the crash path restarts it; the roll goes on
                // once it is ready again.
                self.rolling = None;
                self.roll.push_front(msg.index);
            }
            self.crashed(msg.index, ctx);
        }
    }
}

/// Starts a staged restart of every worker (SIGHUP, `POST /api/restart`, recycle interval).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct StartRoll;

impl Handler<StartRoll> for Supervisor {
    type Result = bool;

    fn handle(&mut self, _msg: StartRoll, ctx: &mut Context<Self>) -> bool {
        if self.shutting_down || !self.roll.is_empty() || self.rolling.is_some() {
            info!("staged restart already under way");
            return false;
        }
        self.counters.rolls += 1;
        info!("staged restart started workers={}", self.slots.len());
        self.roll = (0..self.slots.len()).collect();
        self.advance_roll(ctx);
        true
    }
}

/// Drains every worker and exits when they are gone (`immediate`: kills them now).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub immediate: bool,
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        if msg.immediate || self.shutting_down {
            warn!("supervisor stopping now: killing workers");
            for slot in &self.slots {
                if let Some(p) = &slot.process {
                    p.kill();
                }
            }
            System::current().stop_with_code(0);
            return;
        }
        self.shutting_down = true;
        info!("supervisor shutting down: draining every worker");
        for index in 0..self.slots.len() {
            self.drain(index);
        }
        if self.slots.iter().all(|s| s.process.is_none()) {
            System::current().stop_with_code(0);
            return;
        }
        let grace = self.config.workers.drain_timeout + Duration::from_secs(2);
        ctx.run_later(grace, |act, _ctx| {
            warn!("drain timeout passed: killing remaining workers");
            for slot in &act.slots {
                if let Some(p) = &slot.process {
                    p.kill();
                }
            }
        });
    }
}

/// The worker `/connect` hands out.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Picked {
    pub index: usize,
    pub port: u16,
    pub sessions: usize,
}

/// The least-loaded ready worker that is not draining.
#[derive(Message)]
#[rtype(result = "Option<Picked>")]
pub struct PickWorker;

impl Handler<PickWorker> for Supervisor {
    type Result = Option<Picked>;

    fn handle(&mut self, _msg: PickWorker, _ctx: &mut Context<Self>) -> Option<Picked> {
        let picked = self.pick();
        if let Some(p) = picked {
            // Count the hand-out at once, so a burst of /connect spreads before the next status.
            self.slots[p.index].sessions += 1;
        }
        picked
    }
}

/// One worker, as `/health` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub index: usize,
    pub port: u16,
    pub state: SlotState,
    pub sessions: usize,
    pub pid: Option<u32>,
    pub generation: u64,
    #[serde(skip)]
    pub metrics: Snapshot,
}

/// Everything the supervisor knows, for `/health` and `/metrics`.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct Overview {
    pub workers: Vec<WorkerStatus>,
    pub counters: SupervisorCounters,
    pub rolling: bool,
}

#[derive(Message)]
#[rtype(result = "Overview")]
pub struct GetOverview;

impl Handler<GetOverview> for Supervisor {
    type Result = Overview;

    fn handle(&mut self, _msg: GetOverview, _ctx: &mut Context<Self>) -> Overview {
        Overview {
            workers: self
                .slots
                .iter()
                .enumerate()
                .map(|(index, s)| WorkerStatus {
                    index,
                    port: s.port,
                    state: s.state,
                    sessions: s.sessions,
                    pid: s.process.as_ref().and_then(|p| p.pid),
                    generation: s.generation,
                    metrics: s.metrics.clone(),
                })
                .collect(),
            counters: self.counters,
            rolling: self.rolling.is_some() || !self.roll.is_empty(),
        }
    }
}

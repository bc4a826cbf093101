//! The client reactor: one mio `Poll` per thread, owning every `threads`-th connection.
//!
//! Each turn of the loop: read the clock, learn whether the connect phase is over, open up
//! to a batch of connections, hand out due open-loop messages, fire due deadlines (connect
//! and UDP loss timeouts), emit the per-second interval histogram, then wait for readiness
//! and dispatch each event to its connection. Every step costs in proportion to what
//! happened (events, due messages, due deadlines, connects), never to the number of open
//! connections: the table keeps the counts the loop decides by. Connections that end are
//! closed after the event batch.
//!
//! Timeline (ns since the shared epoch, see `phase.rs`): the connect phase, until every
//! connection of every thread has opened or failed, with no traffic (so connects have the
//! loop and the server's accept path to themselves, and the open-loop schedule starts with
//! every connection up); then warm-up, traffic but no records;
//! `[measure_start, measure_end)` measured; then a drain in which nothing new is sent and
//! owed echoes are awaited until `drain_deadline`.

use std::io;
use std::net::IpAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::config::RunConfig;
use crate::conn::{Client, Flow};
use crate::ctx::Ctx;
use crate::latency::new_histogram;
use crate::msg::{WorkerMsg, INTERVAL_NS};
use crate::payload::{Codec, SCRATCH_LEN};
use crate::phase::Phase;
use crate::ramp::{Ramp, CONNECT_BATCH};
use crate::schedule::{Cursor, Schedule};
use crate::shard::Lane;
use crate::stats::ThreadStats;
use crate::table::Table;
use crate::timeline::{measure_start, Load, Timeline, Wake};
use crate::timer::{self, WakeTimer};
use crate::udp_batch::UdpBatch;

/// The precise timer's token; connection tokens are their local index.
const TIMER: Token = Token(usize::MAX - 1);
/// Wakes a worker when the connect phase ends (or the run gives up) in another thread.
pub(crate) const WAKER: Token = Token(usize::MAX - 2);
/// Everything a worker thread needs to start.
pub(crate) struct WorkerSpec {
    /// Thread index.
    pub(crate) thread: usize,
    /// Settings.
    pub(crate) cfg: Arc<RunConfig>,
    /// Its poller, made by the spawner so that its waker could be shared first.
    pub(crate) poll: Poll,
    /// The connect phase, shared by every worker.
    pub(crate) phase: Arc<Phase>,
    /// Source addresses, used round-robin by connection id (empty: the kernel's choice).
    pub(crate) sources: Arc<[IpAddr]>,
    /// Shared time zero.
    pub(crate) epoch: Instant,
    /// `--start-at` as ns since `epoch`: the measured window's fixed start.
    pub(crate) start_ns: Option<u64>,
    /// Where results go.
    pub(crate) tx: Sender<WorkerMsg>,
}

/// One reactor thread.
pub(crate) struct Worker<C: Client> {
    thread: usize,
    poll: Poll,
    events: Events,
    table: Table<C>,
    ramp: Ramp,
    phase: Arc<Phase>,
    sources: Arc<[IpAddr]>,
    /// The global connection ids this thread owns.
    lane: Lane,
    /// `--start-at` as ns since the epoch, if set.
    start_ns: Option<u64>,
    /// Open loop: connections that got due messages this turn.
    dirty: Vec<usize>,
    cursor: Option<Cursor>,
    timer: Option<WakeTimer>,
    ctx: Ctx,
    /// Interval being recorded and when it ends.
    interval: u64,
    interval_end: u64,
    /// More is due right now (a full connect batch, deadlines left over): poll, don't sleep.
    busy: bool,
    /// `WorkerMsg::Up` was sent.
    announced: bool,
    tx: Sender<WorkerMsg>,
}

/// Runs one worker to completion, reporting through `spec.tx`.
pub(crate) fn run_worker<C: Client>(spec: WorkerSpec) {
    let (tx, thread) = (spec.tx.clone(), spec.thread);
    let result = Worker::<C>::new(spec).and_then(|w| w.run());
    if let Err(e) = result {
        // The collector is gone only if the run was abandoned; nothing to tell then.
        let _ = tx.send(WorkerMsg::Failed { thread, error: e });
    }
}

impl<C: Client> Worker<C> {
    fn new(spec: WorkerSpec) -> io::Result<Self> {
        let cfg = spec.cfg;
        // The schedule starts, and its cursor is made, when the connect phase ends.
        let schedule = cfg.rate.map(|r| Schedule::new(r, cfg.connections));
        let timer = timer::for_schedule(schedule.is_some(), spec.poll.registry(), TIMER)?;
        let lane = cfg.shard.lane(spec.thread, cfg.threads);
        let local = lane.len(cfg.connections);
        let ctx = Ctx {
            codec: Codec::new(cfg.size, cfg.framed),
            schedule,
            epoch: spec.epoch,
            now: 0,
            timeline: Timeline::CONNECTING,
            scratch: vec![0; SCRATCH_LEN],
            udp_batch: UdpBatch::for_run(&cfg),
            hist: new_histogram(),
            connect_hist: new_histogram(),
            stats: ThreadStats::default(),
            up: false,
            cfg: cfg.clone(),
        };
        Ok(Worker {
            thread: spec.thread,
            poll: spec.poll,
            events: Events::with_capacity(1024),
            table: Table::new(local, spec.phase.clone()),
            ramp: Ramp::new(lane, cfg.connections, cfg.connect_rate),
            lane,
            start_ns: spec.start_ns,
            phase: spec.phase,
            sources: spec.sources,
            dirty: Vec::with_capacity(local),
            cursor: None,
            timer,
            ctx,
            interval: 0,
            interval_end: u64::MAX,
            busy: false,
            announced: false,
            tx: spec.tx,
        })
    }

    fn run(mut self) -> io::Result<()> {
        loop {
            self.ctx.refresh_now();
            self.sync_phase();
            if self.phase.gave_up() {
                self.ramp.stop();
                break;
            }
            self.open_due();
            // Before the end check: the last messages due before the measured time ends
            // must still go out even if the loop only wakes after it.
            self.advance_schedule();
            self.busy |= self.table.fire_deadlines(&mut self.ctx);
            self.table.close_pending(&mut self.ramp, &mut self.ctx);
            if self.finished() {
                break;
            }
            self.emit_interval();
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.ctx.refresh_now();
            self.dispatch();
            self.table.close_pending(&mut self.ramp, &mut self.ctx);
            self.announce_up();
        }
        self.finish();
        Ok(())
    }

    /// Once the connect phase has ended (in any thread), fixes this thread's timeline.
    fn sync_phase(&mut self) {
        if self.ctx.timeline.known() {
            if self.ctx.now >= self.ctx.timeline.measure_end {
                // Reconnects stop with the measured time: the drain only collects echoes.
                self.ramp.stop();
            }
            return;
        }
        let Some(end) = self.phase.end() else {
            return;
        };
        let cfg = &self.ctx.cfg;
        let grace = match cfg.protocol {
            crate::config::Protocol::Udp => cfg.udp_timeout,
            crate::config::Protocol::Tcp => cfg.drain_timeout,
        };
        let start = measure_start(end, self.start_ns, cfg.warmup);
        self.ctx.timeline = Timeline::at(start, cfg.duration, grace);
        self.interval_end = self.ctx.timeline.measure_start.saturating_add(INTERVAL_NS);
        // Traffic starts now: the open-loop schedule from here (with --start-at from
        // --warmup before it, shared by every shard), the closed loop with a first send on
        // every connection (once per run, the only pass over them all).
        let anchor = self
            .start_ns
            .map_or(end, |s| s.saturating_sub(crate::clock::ns(cfg.warmup)));
        self.ctx.schedule = self
            .ctx
            .schedule
            .map(|s| s.starting_at(s.start_from(anchor, end)));
        let lane = self.lane;
        self.cursor = self.ctx.schedule.map(|s| s.cursor(lane));
        self.table.pump_all(&mut self.ctx);
        let _ = self.tx.send(WorkerMsg::Connected { at_ns: end });
    }

    /// Opens what the ramp says is due, at most a batch per turn.
    fn open_due(&mut self) {
        self.busy = false;
        for _ in 0..CONNECT_BATCH {
            let Some(i) = self.ramp.take(self.ctx.now) else {
                return;
            };
            let id = self.ramp.global_id(i);
            let source = match &*self.sources {
                [] => None,
                ips => Some(ips[id % ips.len()]),
            };
            let reg = self.poll.registry();
            self.table.open(i, id as u32, source, reg, &mut self.ctx);
        }
        let now = self.ctx.now;
        self.busy = matches!(self.ramp.next_time(now), Some(t) if t <= now);
    }

    /// The run is over (see [`Timeline::finished`]).
    fn finished(&self) -> bool {
        let load = Load {
            live: self.table.live(),
            ramp_done: self.ramp.done(),
            owed: self.table.owed(),
        };
        self.ctx.timeline.finished(self.ctx.now, load)
    }

    /// Open loop: marks every message due by now on its connection, then pumps each
    /// connection that got one (one write each), then arms the timer for the next.
    /// Messages of connections not up are passed over: they count as not sent when the
    /// connection comes up ([`crate::send::SendState::on_connect`]).
    fn advance_schedule(&mut self) {
        let Some(cursor) = self.cursor.as_mut() else {
            return;
        };
        loop {
            let due = cursor.peek();
            if due.at_ns > self.ctx.now || due.at_ns >= self.ctx.timeline.measure_end {
                break;
            }
            cursor.advance();
            let dirty = &mut self.dirty;
            self.table.drive(due.local, &mut self.ctx, |c, _| {
                let s = c.sender();
                s.due = s.due.max(due.m + 1);
                if !s.dirty {
                    s.dirty = true;
                    dirty.push(due.local);
                }
                Flow::Continue
            });
        }
        for i in std::mem::take(&mut self.dirty) {
            self.table.drive(i, &mut self.ctx, |c, ctx| {
                c.sender().dirty = false;
                c.pump(ctx)
            });
        }
        let next = cursor.peek().at_ns;
        if let (Some(timer), true) = (self.timer.as_mut(), next < self.ctx.timeline.measure_end) {
            timer.arm(next, self.ctx.now);
        }
    }

    /// Every second of the measured time: the interval histogram goes to the collector.
    fn emit_interval(&mut self) {
        if self.ctx.now < self.interval_end {
            return;
        }
        let hist = self.ctx.hist.clone();
        self.ctx.hist.reset();
        let msg = WorkerMsg::Interval {
            thread: self.thread,
            index: self.interval,
            hist,
            errors: self.ctx.stats.errors.total(),
        };
        let _ = self.tx.send(msg);
        self.interval += 1;
        self.interval_end = self.interval_end.saturating_add(INTERVAL_NS);
    }

    /// How long to wait (see [`Timeline::poll_timeout`]).
    fn poll_timeout(&self) -> Duration {
        let now = self.ctx.now;
        let wake = Wake {
            busy: self.busy,
            interval_end: self.interval_end,
            deadline: self.table.next_deadline(),
            connect: self.ramp.next_time(now),
            send: self.cursor.as_ref().map(|c| c.peek().at_ns),
        };
        self.ctx.timeline.poll_timeout(now, wake)
    }

    /// One event batch: each event goes to its connection; closes wait for the end.
    fn dispatch(&mut self) {
        for ev in self.events.iter() {
            match ev.token() {
                TIMER => {
                    if let Some(t) = self.timer.as_mut() {
                        t.fired();
                    }
                }
                // The phase is read at the top of every turn.
                WAKER => {}
                Token(i) => self
                    .table
                    .drive(i, &mut self.ctx, |c, ctx| c.on_event(ev, ctx)),
            }
        }
    }

    /// Once a connection of this thread works: tells the collector, and logs the connect
    /// failure held back until now (with none working, the run's error says it all).
    fn announce_up(&mut self) {
        if self.announced || !self.ctx.up {
            return;
        }
        self.announced = true;
        let _ = self.tx.send(WorkerMsg::Up);
        if let Some(line) = self.table.take_deferred_warning() {
            log::warn!("{line}");
        }
    }

    /// End of run: everything still owed is counted, the last interval is sent.
    fn finish(mut self) {
        self.table.finish(&mut self.ctx);
        let msg = WorkerMsg::Done {
            thread: self.thread,
            index: self.interval,
            hist: self.ctx.hist.clone(),
            connect: self.ctx.connect_hist.clone(),
            stats: Box::new(std::mem::take(&mut self.ctx.stats)),
            end_ns: self.ctx.now,
        };
        let _ = self.tx.send(msg);
    }
}

//! The client reactor: one mio `Poll` per thread, owning every `threads`-th connection.
//!
//! Each turn of the loop: read the clock, open connections whose ramp-up time has come,
//! hand out due open-loop messages, run the periodic work (timeouts, the per-second
//! interval histogram), then wait for readiness and dispatch each event to its connection.
//! Connections that end are closed after the event batch, so a token is never reused
//! within a batch.
//!
//! Timeline (ns since the shared epoch): `[0, measure_start)` warm-up, traffic but no
//! records; `[measure_start, measure_end)` measured; then a drain in which nothing new is
//! sent and owed echoes are awaited until `drain_deadline`.

use std::io;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use crate::config::RunConfig;
use crate::conn::{ns, Client, Closed, Ctx, Flow, ThreadStats, SCRATCH_LEN};
use crate::payload::Codec;
use crate::schedule::{Cursor, Schedule};
use crate::timer::{self, WakeTimer};

/// The precise timer's token; connection tokens are their local index.
const TIMER: Token = Token(usize::MAX - 1);
/// How often timeouts are checked.
const TICK_NS: u64 = 10_000_000;
/// Interval histogram length.
pub const INTERVAL_NS: u64 = 1_000_000_000;

/// What a worker tells the collector.
pub enum WorkerMsg {
    /// Interval `index` (second `index` of the measured time) is complete.
    Interval {
        /// Which thread.
        thread: usize,
        /// Which second.
        index: u64,
        /// Latencies completed in it, ns.
        hist: Histogram<u64>,
        /// Errors so far, all kinds, for the progress line.
        errors: u64,
    },
    /// The thread finished; `hist` is its last (partial) interval `index`.
    Done {
        /// Which thread.
        thread: usize,
        /// Index of the last interval.
        index: u64,
        /// Latencies of the last interval.
        hist: Histogram<u64>,
        /// Totals.
        stats: ThreadStats,
        /// When the thread stopped, ns since epoch.
        end_ns: u64,
    },
    /// The thread's first connection works (TCP: connected; UDP: answered), at `at_ns`
    /// since the epoch. Sent once per thread.
    Up {
        /// When.
        at_ns: u64,
    },
    /// The thread could not run at all.
    Failed(String),
}

/// Everything a worker thread needs to start.
pub struct WorkerSpec {
    /// Thread index.
    pub thread: usize,
    /// Settings.
    pub cfg: Arc<RunConfig>,
    /// Shared time zero.
    pub epoch: Instant,
    /// Where results go.
    pub tx: Sender<WorkerMsg>,
}

enum Slot<C> {
    /// Not yet connected (ramp-up).
    Waiting,
    Live(C),
    Gone,
}

/// One reactor thread.
pub struct Worker<C: Client> {
    thread: usize,
    poll: Poll,
    events: Events,
    conns: Vec<Slot<C>>,
    /// Local index of the next connection to open; they open in id order.
    next_connect: usize,
    /// Connections closed during the current event batch.
    closing: Vec<(usize, Closed)>,
    /// Open loop: connections that got due messages this turn.
    dirty: Vec<usize>,
    cursor: Option<Cursor>,
    timer: Option<WakeTimer>,
    ctx: Ctx,
    /// Interval being recorded and when it ends.
    interval: u64,
    interval_end: u64,
    next_tick: u64,
    drain_deadline: u64,
    /// `ctx.up` has been reported to the collector.
    announced: bool,
    /// The first connect failure, logged as a warning only once a connection works: when
    /// none does, the run's error says it all, in one line.
    deferred_warning: Option<String>,
    tx: Sender<WorkerMsg>,
}

/// Runs one worker to completion, reporting through `spec.tx`.
pub fn run_worker<C: Client>(spec: WorkerSpec) {
    let tx = spec.tx.clone();
    let result = Worker::<C>::new(spec).and_then(|w| w.run());
    if let Err(e) = result {
        // The collector is gone only if the run was abandoned; nothing to tell then.
        let _ = tx.send(WorkerMsg::Failed(e.to_string()));
    }
}

/// The first failure of a kind is a warning; the next thousand would only be noise.
fn first_or_debug(count: u64) -> log::Level {
    if count == 1 {
        log::Level::Warn
    } else {
        log::Level::Debug
    }
}

impl<C: Client> Worker<C> {
    fn new(spec: WorkerSpec) -> io::Result<Self> {
        let cfg = spec.cfg;
        let poll = Poll::new()?;
        let schedule = cfg.rate.map(|r| Schedule::new(r, cfg.connections));
        let cursor = schedule.map(|s| s.cursor(spec.thread, cfg.threads));
        let timer = timer::for_schedule(schedule.is_some(), poll.registry(), TIMER)?;
        let local = (cfg.connections - spec.thread).div_ceil(cfg.threads);
        // Saturating: validation caps user durations, a library caller may not have.
        let measure_start = ns(cfg.warmup);
        let measure_end = measure_start.saturating_add(ns(cfg.duration));
        let grace = if cfg.protocol == crate::config::Protocol::Udp {
            cfg.udp_timeout
        } else {
            cfg.drain_timeout
        };
        let ctx = Ctx {
            codec: Codec::new(cfg.size, cfg.framed),
            schedule,
            epoch: spec.epoch,
            now: 0,
            measure_start,
            measure_end,
            scratch: vec![0; SCRATCH_LEN],
            hist: crate::conn::new_histogram(),
            stats: ThreadStats::default(),
            up: false,
            cfg: cfg.clone(),
        };
        Ok(Worker {
            thread: spec.thread,
            poll,
            events: Events::with_capacity(1024),
            conns: (0..local).map(|_| Slot::Waiting).collect(),
            next_connect: 0,
            closing: Vec::new(),
            dirty: Vec::with_capacity(local),
            cursor,
            timer,
            ctx,
            interval: 0,
            interval_end: measure_start.saturating_add(INTERVAL_NS),
            next_tick: 0,
            drain_deadline: measure_end
                .saturating_add(ns(grace))
                .saturating_add(TICK_NS),
            announced: false,
            deferred_warning: None,
            tx: spec.tx,
        })
    }

    fn run(mut self) -> io::Result<()> {
        loop {
            let now = self.ctx.refresh_now();
            self.open_due();
            // Before the end check: the last messages due before the measured time ends
            // must still go out even if the loop only wakes after it.
            self.advance_schedule();
            if self.finished(now) {
                break;
            }
            self.periodic();
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.ctx.refresh_now();
            self.dispatch();
            self.announce_up();
        }
        self.finish();
        Ok(())
    }

    /// Global id of local connection `i`.
    fn global_id(&self, i: usize) -> usize {
        self.thread + i * self.ctx.cfg.threads
    }

    /// When local connection `i` may connect, ns: ids are spread by `--connect-rate`.
    fn connect_time(&self, i: usize) -> u64 {
        match self.ctx.cfg.connect_rate {
            Some(r) => (self.global_id(i) as f64 * 1e9 / r) as u64,
            None => 0,
        }
    }

    /// Ramp-up: opens every connection whose time has come (none after the measured time).
    fn open_due(&mut self) {
        while self.next_connect < self.conns.len()
            && self.connect_time(self.next_connect) <= self.ctx.now
            && self.ctx.now < self.ctx.measure_end
        {
            let i = self.next_connect;
            self.next_connect += 1;
            let id = self.global_id(i);
            let bind = match self.ctx.cfg.bind.as_slice() {
                [] => None,
                ips => Some(ips[id % ips.len()]),
            };
            let opened = C::open(id as u32, bind, &mut self.ctx).and_then(|mut c| {
                self.poll.registry().register(
                    c.source(),
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(c)
            });
            match opened {
                Ok(mut c) => {
                    // UDP sockets are usable at once; a TCP connect finishes on WRITABLE.
                    if let Flow::Close(why) = c.pump(&mut self.ctx) {
                        self.closing.push((i, why));
                    }
                    self.conns[i] = Slot::Live(c);
                }
                Err(e) => self
                    .closing
                    .push((i, Closed::ConnectFailed(crate::io_text(&e)))),
            }
        }
        self.close_pending();
    }

    /// The run is over when time is up, when every connection is gone, or when the
    /// measured time has passed and nothing is owed any more.
    fn finished(&self, now: u64) -> bool {
        if now >= self.drain_deadline {
            return true;
        }
        let waiting = self.next_connect < self.conns.len() && now < self.ctx.measure_end;
        let mut live = self.conns.iter().filter_map(|s| match s {
            Slot::Live(c) => Some(c),
            _ => None,
        });
        if now < self.ctx.measure_end {
            return !waiting && live.next().is_none();
        }
        live.all(|c| c.outstanding() == 0)
    }

    /// Open loop: marks every message due by now on its connection, then pumps each
    /// connection that got one (one write each), then arms the timer for the next.
    fn advance_schedule(&mut self) {
        let Some(cursor) = self.cursor.as_mut() else {
            return;
        };
        loop {
            let due = cursor.peek();
            if due.at_ns > self.ctx.now || due.at_ns >= self.ctx.measure_end {
                break;
            }
            cursor.advance();
            if let Slot::Live(c) = &mut self.conns[due.local] {
                let s = c.sender();
                s.due = s.due.max(due.m + 1);
                if !s.dirty {
                    s.dirty = true;
                    self.dirty.push(due.local);
                }
            }
        }
        for i in std::mem::take(&mut self.dirty).drain(..) {
            if let Slot::Live(c) = &mut self.conns[i] {
                c.sender().dirty = false;
                if let Flow::Close(why) = c.pump(&mut self.ctx) {
                    self.closing.push((i, why));
                }
            }
        }
        let next = cursor.peek().at_ns;
        if let (Some(timer), true) = (self.timer.as_mut(), next < self.ctx.measure_end) {
            timer.arm(next, self.ctx.now);
        }
        self.close_pending();
    }

    /// Every tick: connection timeouts and UDP loss. Every second: the interval histogram.
    fn periodic(&mut self) {
        let now = self.ctx.now;
        if now >= self.next_tick {
            self.next_tick = now.saturating_add(TICK_NS);
            for (i, slot) in self.conns.iter_mut().enumerate() {
                if let Slot::Live(c) = slot {
                    if let Flow::Close(why) = c.tick(&mut self.ctx) {
                        self.closing.push((i, why));
                    }
                }
            }
            self.close_pending();
        }
        if now >= self.interval_end {
            let hist = self.ctx.hist.clone();
            self.ctx.hist.reset();
            let errors = self.ctx.stats.errors.total();
            let msg = WorkerMsg::Interval {
                thread: self.thread,
                index: self.interval,
                hist,
                errors,
            };
            let _ = self.tx.send(msg);
            self.interval += 1;
            self.interval_end = self.interval_end.saturating_add(INTERVAL_NS);
        }
    }

    /// How long to wait: until the next thing this thread must do by the clock.
    fn poll_timeout(&self) -> Duration {
        let mut next = self.next_tick.min(self.drain_deadline);
        if self.ctx.now < self.ctx.measure_start {
            next = next.min(self.ctx.measure_start);
        } else {
            next = next.min(self.interval_end);
        }
        if self.ctx.now < self.ctx.measure_end {
            next = next.min(self.ctx.measure_end);
            if self.next_connect < self.conns.len() {
                next = next.min(self.connect_time(self.next_connect));
            }
            if let Some(c) = &self.cursor {
                // With the timerfd armed this is only a fallback.
                next = next.min(c.peek().at_ns);
            }
        }
        Duration::from_nanos(next.saturating_sub(self.ctx.now))
    }

    /// One event batch: each event goes to its connection; closes wait for the end.
    fn dispatch(&mut self) {
        for ev in self.events.iter() {
            let token = ev.token();
            if token == TIMER {
                if let Some(t) = self.timer.as_mut() {
                    t.fired();
                }
                continue;
            }
            match self.conns.get_mut(token.0) {
                Some(Slot::Live(c)) => {
                    if let Flow::Close(why) = c.on_event(ev, &mut self.ctx) {
                        self.closing.push((token.0, why));
                    }
                }
                // A connection closed earlier in this run: its events are stale.
                _ => log::trace!("spurious event token={}", token.0),
            }
        }
        self.close_pending();
    }

    /// Closes connections collected during a batch and counts why.
    fn close_pending(&mut self) {
        for (i, why) in std::mem::take(&mut self.closing) {
            let slot = std::mem::replace(&mut self.conns[i], Slot::Gone);
            let id = self.global_id(i);
            if let Slot::Live(mut c) = slot {
                c.finish(&mut self.ctx);
            }
            let stats = &mut self.ctx.stats;
            let text = match why {
                Closed::Finished => continue,
                Closed::ConnectFailed(e) => {
                    stats.failed += 1;
                    // A refused UDP socket was counted opened when it was created.
                    if self.ctx.cfg.protocol == crate::config::Protocol::Udp {
                        stats.opened = stats.opened.saturating_sub(1);
                    }
                    let target = self.ctx.cfg.target;
                    if stats.failed == 1 && !self.ctx.up {
                        let line = format!("connect failed id={id} target={target} error={e}");
                        log::debug!("{line}");
                        self.deferred_warning = Some(line);
                    } else {
                        let level = first_or_debug(stats.failed);
                        log::log!(level, "connect failed id={id} target={target} error={e}");
                    }
                    e
                }
                Closed::Broken(e) => {
                    stats.broken += 1;
                    log::log!(
                        first_or_debug(stats.broken),
                        "connection lost id={id} error={e}"
                    );
                    e
                }
            };
            if stats.conn_error.is_none() {
                stats.conn_error = Some(text);
            }
        }
    }

    /// Once a connection of this thread works: tells the collector (which then says
    /// "warming up"), and logs the connect failure held back until now.
    fn announce_up(&mut self) {
        if self.announced || !self.ctx.up {
            return;
        }
        self.announced = true;
        let _ = self.tx.send(WorkerMsg::Up {
            at_ns: self.ctx.now,
        });
        if let Some(line) = self.deferred_warning.take() {
            log::warn!("{line}");
        }
    }

    /// End of run: everything still owed is counted, the last interval is sent.
    fn finish(mut self) {
        for i in 0..self.conns.len() {
            if let Slot::Live(c) = &mut self.conns[i] {
                c.finish(&mut self.ctx);
            }
            self.conns[i] = Slot::Gone;
        }
        let msg = WorkerMsg::Done {
            thread: self.thread,
            index: self.interval,
            hist: self.ctx.hist.clone(),
            stats: std::mem::take(&mut self.ctx.stats),
            end_ns: self.ctx.now,
        };
        let _ = self.tx.send(msg);
    }
}

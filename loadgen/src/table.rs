//! A worker's connections: what each slot holds, its deadline, and the counts the loop
//! decides by (connections live, messages owed), kept current on every call into a
//! connection ([`Table::drive`]) and never recomputed by a scan, so a turn costs what its
//! events cost whether 10 or 19,000 connections are open.
//!
//! Connections that end are closed after the event batch ([`Table::close_pending`]), so a
//! slot reopened by `--reconnect-after` never receives an event meant for its predecessor
//! (closing the socket removes it from epoll; the new one registers under the same token).

use std::net::IpAddr;
use std::sync::Arc;

use mio::{Interest, Registry, Token};

use crate::conn::{Client, Closed, Flow};
use crate::ctx::Ctx;
use crate::deadlines::Deadlines;
use crate::phase::Phase;
use crate::ramp::Ramp;

/// Deadlines handled per turn at most; the rest wait for the next turn (polled at once).
pub(crate) const DEADLINES_PER_TURN: usize = 256;

enum Slot<C> {
    /// Not opened yet.
    Waiting,
    /// A connection. `first`: this is the slot's first connect and it has neither come
    /// up nor failed yet (the connect phase is waiting for it).
    Live { client: C, first: bool },
    /// Connection `id` closed by `--reconnect-after`, about to reopen; open loop resumes
    /// at schedule index `resume`.
    Down { id: u32, resume: u64 },
    /// Done for this run.
    Gone,
}

/// The connections of one worker, indexed by their local index (= their mio token).
pub(crate) struct Table<C> {
    slots: Vec<Slot<C>>,
    deadlines: Deadlines,
    /// Connections to close after the current batch, and why.
    closing: Vec<(usize, Closed)>,
    /// Slots holding a connection (connecting or up).
    live: usize,
    /// Messages sent and not yet resolved, over all connections: the sum of their
    /// `outstanding()`, kept by [`Table::drive`].
    owed: usize,
    phase: Arc<Phase>,
    /// The first connect failure, logged as a warning only once a connection works: when
    /// none does, the run's error says it all, in one line.
    deferred_warning: Option<String>,
}

/// The first failure of a kind is a warning; the next thousand would only be noise.
fn first_or_debug(count: u64) -> log::Level {
    if count == 1 {
        log::Level::Warn
    } else {
        log::Level::Debug
    }
}

impl<C: Client> Table<C> {
    /// `n` slots, none opened.
    pub(crate) fn new(n: usize, phase: Arc<Phase>) -> Self {
        Table {
            slots: (0..n).map(|_| Slot::Waiting).collect(),
            deadlines: Deadlines::new(n),
            closing: Vec::new(),
            live: 0,
            owed: 0,
            phase,
            deferred_warning: None,
        }
    }

    /// Connections open (connecting or up).
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Messages owed over all connections.
    pub(crate) fn owed(&self) -> usize {
        self.owed
    }

    /// The earliest deadline (possibly stale: then its wake-up finds nothing to do).
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.deadlines.next()
    }

    /// Opens slot `i` as connection `id` from `source` and registers it under token `i`:
    /// its first connect, or a reconnect after `--reconnect-after`.
    pub(crate) fn open(
        &mut self,
        i: usize,
        id: u32,
        source: Option<IpAddr>,
        reg: &Registry,
        ctx: &mut Ctx,
    ) {
        let (resume, first) = match self.slots[i] {
            Slot::Waiting => (0, true),
            Slot::Down { resume, .. } => (resume, false),
            // The ramp only hands out slots that are waiting or down.
            Slot::Live { .. } | Slot::Gone => return,
        };
        let opened = C::open(id, source, resume, ctx).and_then(|mut c| {
            reg.register(
                c.source(),
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(c)
        });
        match opened {
            Ok(client) => {
                self.slots[i] = Slot::Live { client, first };
                self.live += 1;
                // UDP is usable at once; a TCP connect finishes on WRITABLE.
                self.drive(i, ctx, |c, ctx| c.pump(ctx));
            }
            Err(e) => {
                self.slots[i] = Slot::Gone;
                let why = Closed::ConnectFailed((&e).into());
                self.count_close(id, first, why, ctx);
            }
        }
    }

    /// Calls into connection `i` (an event, a pump, a deadline), keeping the counts, the
    /// connect phase and its deadline current. A vacant slot means a stale event: ignored.
    pub(crate) fn drive(
        &mut self,
        i: usize,
        ctx: &mut Ctx,
        f: impl FnOnce(&mut C, &mut Ctx) -> Flow,
    ) {
        let Some(Slot::Live { client, first }) = self.slots.get_mut(i) else {
            log::trace!("spurious event token={i}");
            return;
        };
        let before = client.outstanding();
        let flow = f(client, ctx);
        // `owed` includes `before` (it is the sum over connections); saturating all the same.
        self.owed = (self.owed + client.outstanding()).saturating_sub(before);
        if *first && client.is_up() {
            *first = false;
            self.phase.resolve(true, ctx.now);
        }
        match flow {
            Flow::Close(why) => self.closing.push((i, why)),
            Flow::Continue => {
                if let Some(at) = client.deadline(ctx) {
                    self.deadlines.arm(i, at);
                }
            }
        }
    }

    /// The connect phase is over: every connection sends what it may (closed loop: its
    /// first messages). Once per run; everything else is driven by events.
    pub(crate) fn pump_all(&mut self, ctx: &mut Ctx) {
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Live { .. }) {
                self.drive(i, ctx, |c, ctx| c.pump(ctx));
            }
        }
    }

    /// Runs the deadlines due by `ctx.now`, at most [`DEADLINES_PER_TURN`]; returns
    /// whether more are due (the loop then polls without sleeping).
    pub(crate) fn fire_deadlines(&mut self, ctx: &mut Ctx) -> bool {
        for _ in 0..DEADLINES_PER_TURN {
            let Some(i) = self.deadlines.pop_due(ctx.now) else {
                return false;
            };
            self.drive(i, ctx, |c, ctx| c.on_deadline(ctx));
        }
        self.deadlines.next().is_some_and(|at| at <= ctx.now)
    }

    /// Closes the connections collected during the batch and counts why; slots closed by
    /// `--reconnect-after` before the measured time ends go back to `ramp` to reopen.
    pub(crate) fn close_pending(&mut self, ramp: &mut Ramp, ctx: &mut Ctx) {
        for (i, why) in std::mem::take(&mut self.closing) {
            // Closed twice in one batch: the first close won.
            let Slot::Live { mut client, first } =
                std::mem::replace(&mut self.slots[i], Slot::Gone)
            else {
                continue;
            };
            self.deadlines.disarm(i);
            self.owed -= client.outstanding();
            self.live -= 1;
            let (id, resume) = (client.sender().id, client.sender().next_m());
            client.finish(ctx);
            drop(client); // closes the socket, which leaves epoll with it
            if matches!(why, Closed::Reconnect) && ctx.now < ctx.timeline.measure_end {
                self.slots[i] = Slot::Down { id, resume };
                ramp.reconnect(i);
            } else {
                self.count_close(id, first, why, ctx);
            }
        }
    }

    /// Counts and logs why connection `id` ended.
    fn count_close(&mut self, id: u32, first: bool, why: Closed, ctx: &mut Ctx) {
        let stats = &mut ctx.stats;
        let text = match why {
            Closed::Finished | Closed::Reconnect => return,
            Closed::ConnectFailed(e) => {
                stats.failed += 1;
                if first || ctx.cfg.protocol == crate::config::Protocol::Udp {
                    stats.initial_failed += 1;
                }
                if first {
                    self.phase.resolve(false, ctx.now);
                }
                // A refused UDP socket was counted opened when it was created.
                if ctx.cfg.protocol == crate::config::Protocol::Udp {
                    stats.opened = stats.opened.saturating_sub(1);
                }
                let target = ctx.cfg.target;
                let line = format!("connect failed id={id} target={target} error={e}");
                if stats.failed == 1 && !ctx.up {
                    log::debug!("{line}");
                    self.deferred_warning = Some(line);
                } else {
                    log::log!(first_or_debug(stats.failed), "{line}");
                }
                let text = e.to_string();
                stats.connect_failure.get_or_insert(e);
                text
            }
            Closed::Broken(e) => {
                stats.broken += 1;
                let level = first_or_debug(stats.broken);
                log::log!(level, "connection broken id={id} error={e}");
                e
            }
        };
        if stats.conn_error.is_none() {
            stats.conn_error = Some(text);
        }
    }

    /// The connect failure held back until some connection worked.
    pub(crate) fn take_deferred_warning(&mut self) -> Option<String> {
        self.deferred_warning.take()
    }

    /// End of the run: what open connections still owe is counted; open loop, slots down
    /// for a reconnect count what came due in the measured window as not sent.
    pub(crate) fn finish(&mut self, ctx: &mut Ctx) {
        for slot in &mut self.slots {
            match std::mem::replace(slot, Slot::Gone) {
                Slot::Live { mut client, .. } => client.finish(ctx),
                Slot::Down { id, resume } => {
                    if let Some(s) = ctx.schedule {
                        let upto = s.first_due_from(u64::from(id), ctx.timeline.measure_end);
                        crate::send::not_sent(id, resume, upto, ctx);
                    }
                }
                Slot::Waiting | Slot::Gone => {}
            }
        }
        self.live = 0;
        self.owed = 0;
    }
}

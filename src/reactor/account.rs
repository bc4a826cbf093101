//! The memory budget in the loop: keeping the total of what connections hold
//! up to date, and pausing and resuming reads by it (the policy is in
//! `memory.rs`; the overdraft that lets one paused holder finish its frame
//! is in `overdraft.rs`).
//!
//! A connection's holding changes only when it does IO (a visit, a chat
//! handoff) or closes, and the reactor accounts for it right after each:
//! one comparison per visit, and nothing at all on the echo hot path, where
//! the holding stays 0.

use std::sync::atomic::Ordering::Relaxed;

use log::{debug, info, warn};

use super::runq::Lane;
use super::Reactor;
use crate::memory::overdraft::Overdraft;
use crate::memory::{MemoryBudget, Pressure};
use crate::ready::Ready;
use crate::stats;
use crate::token::conn_token;

/// Stale entries tolerated in `Memory::paused` (connections that closed
/// while paused) before it is compacted.
const STALE_PAUSED_SLACK: usize = 1024;

/// The memory budget's side of one reactor.
#[derive(Debug)]
pub(super) struct Memory {
    /// This reactor's share of `--max-memory`, and what is held now.
    pub(super) budget: MemoryBudget,
    /// Connections (slab key, id) the budget stopped reading; all resume
    /// when the total falls to the low-water mark. May hold stale entries
    /// (skipped on resume, compacted past `STALE_PAUSED_SLACK`).
    paused: Vec<(usize, u64)>,
    /// `room.bytes()` at its last accounting (see `account_room`).
    room_held: usize,
    /// Paused holders of unfinished frames waiting for the overdraft, and
    /// the one allowed past the budget to finish its frame.
    pub(super) overdraft: Overdraft,
}

impl Memory {
    /// A budget of `max` bytes for this reactor.
    pub(super) fn new(max: usize) -> Memory {
        Memory {
            budget: MemoryBudget::new(max),
            paused: Vec::new(),
            room_held: 0,
            overdraft: Overdraft::default(),
        }
    }
}

impl Reactor {
    /// Counts what connection `key` holds now (and, for the overdraft's
    /// holder, whether its frame is done).
    pub(super) fn account(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if self.memory.overdraft.holder().is_some_and(|h| h.key == key) {
            let unfinished = slot.conn.unfinished();
            self.memory.overdraft.note(key, slot.conn.id, unfinished);
        }
        let held = slot.conn.held();
        if held != slot.held {
            let before = std::mem::replace(&mut slot.held, held);
            self.track(before, held);
        }
    }

    /// Counts the chat room's chunks on their way: each chunk once, from
    /// when a sender's read made it until every member has it (after that,
    /// what a member has not read yet counts in its own output).
    pub(super) fn account_room(&mut self) {
        let held = self.room.bytes();
        if held != self.memory.room_held {
            let before = std::mem::replace(&mut self.memory.room_held, held);
            self.track(before, held);
        }
    }

    /// A connection holding `held` bytes went away.
    pub(super) fn forget(&mut self, held: usize) {
        self.track(held, 0);
    }

    fn track(&mut self, before: usize, after: usize) {
        let stats = &self.shared.stats;
        stats::shift(&stats.memory_held, before, after);
        stats::max(&stats.memory_held_max, stats.memory_held.load(Relaxed));
        if self.memory.budget.update(before, after) == Pressure::Engaged {
            warn!(
                "memory budget reached, pausing reads of the biggest holders held={} max_memory={}",
                self.memory.budget.held(),
                self.config.max_memory
            );
        }
    }

    /// Before a visit of connection `key`, given its read allowance and
    /// whether input arrived (`readable`): `memory_gate`, and for one that
    /// stays paused, a chance to wait for the overdraft (it may now have
    /// input to use it on). Returns true if it was just unpaused.
    pub(super) fn gate_visit(&mut self, key: usize, allowance: usize, readable: bool) -> bool {
        let was_paused = self.conns.get(key).is_some_and(|s| s.conn.memory_paused());
        if self.memory_gate(key, allowance) {
            return true;
        }
        if was_paused && readable {
            // Its event (at worst a read queued before it was paused: the
            // queue takes each connection once).
            self.overdraft_candidate(key);
        }
        false
    }

    /// Applies the memory budget to connection `key` before a visit, given
    /// its read allowance: pauses it at 0, unpauses it otherwise. Returns
    /// true if it was just unpaused (its waiting input needs a read).
    pub(super) fn memory_gate(&mut self, key: usize, allowance: usize) -> bool {
        let Some(slot) = self.conns.get_mut(key) else {
            return false;
        };
        let pause = allowance == 0;
        if pause == slot.conn.memory_paused() {
            return false;
        }
        let stopped_reading = slot.conn.set_memory_paused(pause);
        if !pause {
            return true;
        }
        if stopped_reading {
            stats::add(&self.shared.stats.memory_pauses, 1);
            debug!(
                "memory pause token={} held={}",
                conn_token(key).0,
                slot.held
            );
        }
        let id = slot.conn.id;
        if slot.conn.unfinished() > 0 {
            // It holds a frame only reads can finish: it waits its turn for
            // the overdraft (`overdraft.rs`).
            self.wait_for_overdraft(key, id);
        }
        let most = 2 * self.conns.len() + STALE_PAUSED_SLACK;
        let conns = &self.conns;
        if self.memory.paused.len() > most {
            self.memory
                .paused
                .retain(|&(k, i)| conns.get(k).is_some_and(|s| s.conn.id == i));
        }
        self.memory.paused.push((key, id));
        false
    }

    /// Puts (key, id) in the overdraft's queue, unless it waits there
    /// already. The queue also holds entries of connections that closed
    /// while waiting: compacted, keeping the order, once it has grown past
    /// twice the connections, so it stays proportional to them.
    pub(super) fn wait_for_overdraft(&mut self, key: usize, id: u64) {
        let most = 2 * self.conns.len() + STALE_PAUSED_SLACK;
        if self.memory.overdraft.waiting() > most {
            let conns = &self.conns;
            self.memory
                .overdraft
                .compact(|k, i| conns.get(k).is_some_and(|s| s.conn.id == i));
        }
        self.memory.overdraft.wait(key, id);
    }

    /// Once the total fell to the low-water mark, every paused connection
    /// reads again: queued with read readiness, since the bytes that waited
    /// raised their edges long ago. Nobody needs the overdraft then.
    pub(super) fn resume_if_released(&mut self) {
        if self.memory.budget.is_over() {
            return;
        }
        self.memory.overdraft.clear();
        if self.memory.paused.is_empty() {
            return;
        }
        info!(
            "memory budget: below low water, resuming reads held={} paused={}",
            self.memory.budget.held(),
            self.memory.paused.len()
        );
        for (key, id) in std::mem::take(&mut self.memory.paused) {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            if slot.conn.id == id && slot.conn.memory_paused() {
                slot.conn.set_memory_paused(false);
                self.queue(key, Ready::READ, Lane::Old);
            }
        }
    }
}

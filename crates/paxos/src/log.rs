//! The learner's log: chosen values, in-order execution on the key-value state, and the
//! truncated prefix's snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::command::Value;
use crate::kv::KvState;
use crate::messages::ChosenEntry;
use crate::types::Slot;

#[derive(Debug)]
pub(crate) struct Log {
    /// Chosen values at or above `start`, executed or not. Executed ones stay until truncation
    /// so lagging peers can catch up from them.
    chosen: BTreeMap<Slot, Value>,
    /// Values below this slot are no longer held (they are in `snapshot`).
    start: Slot,
    /// The next slot to execute. Every slot below is executed.
    executed: Slot,
    pub(crate) kv: KvState,
    /// The latest snapshot (the state before `executed` was at its slot), for peers that fell
    /// behind `start`.
    snapshot: Option<(Slot, Arc<KvState>)>,
    /// Values truncated away (here and in the acceptor), freed a few per step by
    /// [`Log::free_some`]. Freeing 10,000 slots of 40-command batches at once took 4 ms per
    /// map on a quiet core (log and acceptor both hold them), a stall in the event loop at
    /// every snapshot; burying them costs 0.36 ms, and each later step frees a bounded share.
    graveyard: VecDeque<Value>,
    /// Commands in the graveyard's values (a no-op counts as one).
    buried: usize,
}

/// Commands freed per step at the least; a backlog also frees 1/1024 of its commands per step,
/// so memory stays bounded however fast slots are truncated. The budget counts commands, not
/// values: freeing is per command (its key and value), and a value is a batch of up to
/// `max_batch` of them. A budget of 64 values plus 1/64 of the backlog, with batches of ~70
/// commands at 200,000 ops/s, freed ~20,000 commands in each of the first steps after a
/// snapshot, 1-4 ms apiece on the leader, and the p99 of the second holding the snapshot went
/// from ~4 ms to 20-40 ms.
const FREE_PER_STEP: usize = 512;

impl Log {
    pub(crate) fn new(kv: KvState, snapshot: Option<(Slot, Arc<KvState>)>) -> Self {
        let start = snapshot.as_ref().map_or(Slot(0), |(s, _)| *s);
        Log {
            chosen: BTreeMap::new(),
            start,
            executed: start,
            kv,
            snapshot,
            graveyard: VecDeque::new(),
            buried: 0,
        }
    }

    pub(crate) fn executed(&self) -> Slot {
        self.executed
    }

    pub(crate) fn start(&self) -> Slot {
        self.start
    }

    pub(crate) fn snapshot(&self) -> Option<&(Slot, Arc<KvState>)> {
        self.snapshot.as_ref()
    }

    /// Records a chosen value. Returns false if the slot was already known (or executed).
    pub(crate) fn learn(&mut self, slot: Slot, value: Value) -> bool {
        if slot < self.executed {
            return false;
        }
        match self.chosen.entry(slot) {
            std::collections::btree_map::Entry::Occupied(e) => {
                debug_assert_eq!(e.get(), &value, "two values chosen for {slot}");
                false
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(value);
                true
            }
        }
    }

    pub(crate) fn chosen(&self, slot: Slot) -> Option<&Value> {
        self.chosen.get(&slot)
    }

    /// The highest slot known chosen, if any.
    pub(crate) fn highest_chosen(&self) -> Option<Slot> {
        self.chosen.last_key_value().map(|(s, _)| *s)
    }

    /// The next slot to execute, if its value is known; advances `executed` past it.
    pub(crate) fn next_to_execute(&mut self) -> Option<(Slot, Value)> {
        let slot = self.executed;
        let value = self.chosen.get(&slot)?.clone();
        self.executed = slot.next();
        Some((slot, value))
    }

    /// Counts the next slot as executed without holding a value for it (a node with no peers
    /// executes at once and keeps nothing); returns that slot.
    pub(crate) fn skip_executed(&mut self) -> Slot {
        debug_assert!(self.chosen.is_empty(), "a node that skips keeps no log");
        let slot = self.executed;
        self.executed = slot.next();
        self.start = self.executed;
        slot
    }

    /// First unchosen slot at or after `executed` (Basic Paxos proposes there).
    pub(crate) fn first_unchosen(&self) -> Slot {
        let mut slot = self.executed;
        for (s, _) in self.chosen.range(self.executed..) {
            if *s != slot {
                break;
            }
            slot = slot.next();
        }
        slot
    }

    /// Contiguous chosen values from `from`, at most `limit` of them (a catch-up reply).
    pub(crate) fn entries_from(&self, from: Slot, limit: usize) -> Vec<ChosenEntry> {
        let mut out = Vec::new();
        let mut expect = from;
        for (slot, value) in self.chosen.range(from..) {
            if *slot != expect || out.len() == limit {
                break;
            }
            out.push(ChosenEntry {
                slot: *slot,
                value: value.clone(),
            });
            expect = expect.next();
        }
        out
    }

    /// Takes a snapshot of the state at `executed` and drops held values below `keep_from`
    /// (`keep_from <= executed`). Returns the snapshot to persist.
    pub(crate) fn snapshot_and_truncate(&mut self, keep_from: Slot) -> (Slot, Arc<KvState>) {
        debug_assert!(
            keep_from <= self.executed,
            "only executed slots are folded into a snapshot"
        );
        // Cheap: the copy shares the map's shards (see `kv::KeyMap`).
        let snap = (self.executed, Arc::new(self.kv.clone()));
        self.snapshot = Some(snap.clone());
        self.drop_below(keep_from);
        snap
    }

    /// Replaces the state with a peer's snapshot taken at `upto` (beyond what this log executed).
    pub(crate) fn install(&mut self, upto: Slot, state: Arc<KvState>) {
        debug_assert!(upto > self.executed);
        self.kv = (*state).clone();
        self.executed = upto;
        self.snapshot = Some((upto, state));
        self.drop_below(upto);
    }

    /// Drops held values below `slot` (executed, and no longer needed by any peer). They are
    /// freed later, a few per step.
    pub(crate) fn drop_below(&mut self, slot: Slot) {
        if slot > self.start {
            let keep = self.chosen.split_off(&slot);
            let old = std::mem::replace(&mut self.chosen, keep);
            self.bury(old.into_values());
            self.start = slot;
        }
    }

    /// Hands values no longer needed to the graveyard, to be freed a few per step.
    pub(crate) fn bury(&mut self, values: impl IntoIterator<Item = Value>) {
        for v in values {
            self.buried += weight(&v);
            self.graveyard.push_back(v);
        }
    }

    /// Frees some buried values, at least one and about [`FREE_PER_STEP`] commands plus
    /// 1/1024 of the backlog's; called once per step.
    pub(crate) fn free_some(&mut self) {
        let budget = FREE_PER_STEP + self.buried / 1024;
        let mut freed = 0;
        while freed < budget {
            let Some(v) = self.graveyard.pop_front() else {
                break;
            };
            freed += weight(&v);
        }
        self.buried -= freed;
    }

    /// Values held (for memory accounting in tests).
    pub(crate) fn held(&self) -> usize {
        self.chosen.len()
    }
}

/// What freeing `v` costs, in commands (a no-op counts as one).
fn weight(v: &Value) -> usize {
    v.commands().len().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_values_are_freed_a_few_per_step() {
        let mut log = Log::new(KvState::new(8, crate::kv::DEFAULT_SESSION_TIMEOUT), None);
        let value = Value::batch(vec![crate::testing::put(1, 1, b"k", b"v")]);
        for i in 0..10_000 {
            assert!(log.learn(Slot(i), value.clone()));
        }
        log.drop_below(Slot(10_000));
        assert_eq!(log.held(), 0, "the log forgets at once");
        assert_eq!(log.graveyard.len(), 10_000);
        log.free_some();
        let freed = 10_000 - log.graveyard.len();
        assert_eq!(
            freed,
            FREE_PER_STEP + 10_000 / 1024,
            "one step frees a bounded share"
        );
        let mut steps = 1;
        while !log.graveyard.is_empty() {
            log.free_some();
            steps += 1;
        }
        assert!(steps <= 20, "a backlog drains: {steps} steps");
        assert_eq!(log.buried, 0);
        assert_eq!(
            Arc::strong_count(match &value {
                Value::Batch(b) => &b.commands,
                Value::Noop => unreachable!(),
            }),
            1,
            "every buried copy was freed"
        );
    }

    #[test]
    fn a_step_frees_a_bounded_number_of_commands_however_big_the_batches() {
        let mut log = Log::new(KvState::new(8, crate::kv::DEFAULT_SESSION_TIMEOUT), None);
        let batch = |n: u64| {
            Value::batch(
                (0..n)
                    .map(|i| crate::testing::put(1, i, b"k", b"v"))
                    .collect(),
            )
        };
        // 2,000 slots of 100 commands (log and acceptor: two copies each, as after a snapshot),
        // then one huge batch and a no-op.
        log.bury((0..4_000).map(|_| batch(100)));
        log.bury([batch(5_000), Value::Noop]);
        let total = 4_000 * 100 + 5_000 + 1;
        assert_eq!(log.buried, total);
        let mut left = total;
        let mut steps = 0;
        while !log.graveyard.is_empty() {
            let budget = FREE_PER_STEP + log.buried / 1024;
            let before = log.graveyard.len();
            log.free_some();
            let freed = left - log.buried;
            assert!(log.graveyard.len() < before, "every step frees something");
            // At most one value past the budget.
            assert!(freed < budget + 5_000, "{freed} commands freed in one step");
            if log.graveyard.len() > 2 {
                assert!(
                    freed < budget + 100,
                    "{freed} commands with a budget of {budget}"
                );
            }
            left = log.buried;
            steps += 1;
        }
        assert_eq!(log.buried, 0);
        assert!(steps < 1_000, "{steps} steps");
    }

    #[test]
    fn executes_in_order_and_stops_at_a_hole() {
        let mut log = Log::new(KvState::new(8, crate::kv::DEFAULT_SESSION_TIMEOUT), None);
        assert!(log.learn(Slot(1), Value::Noop));
        assert!(log.next_to_execute().is_none(), "slot 0 is a hole");
        assert_eq!(log.first_unchosen(), Slot(0));
        assert!(log.learn(Slot(0), Value::Noop));
        assert!(!log.learn(Slot(0), Value::Noop), "already known");
        assert_eq!(log.next_to_execute().map(|(s, _)| s), Some(Slot(0)));
        assert_eq!(log.next_to_execute().map(|(s, _)| s), Some(Slot(1)));
        assert_eq!(log.first_unchosen(), Slot(2));
        assert_eq!(log.entries_from(Slot(0), 10).len(), 2);
        log.snapshot_and_truncate(Slot(1));
        assert_eq!(log.start(), Slot(1));
        assert_eq!(log.entries_from(Slot(1), 10).len(), 1);
        assert_eq!(log.snapshot().map(|(s, _)| *s), Some(Slot(2)));
    }
}

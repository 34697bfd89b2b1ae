//! The acceptor role: promises and accepted values, the state Paxos safety rests on.
//!
//! Multi-Paxos promises cover every slot from a point onward (one phase 1 for the whole log);
//! Basic Paxos promises cover one slot each. An acceptor keeps both: the promise in force for a
//! slot is the higher of the two. Every change is also returned as a [`Record`] for the caller to
//! persist before any message reports it.

use std::collections::BTreeMap;

use crate::command::Value;
use crate::messages::{AcceptedEntry, PrepareScope};
use crate::storage::{Durable, Record};
use crate::types::{Ballot, Slot};

#[derive(Debug, Default)]
pub(crate) struct Acceptor {
    /// Promised for every slot.
    promised: Ballot,
    /// Promises for single slots, where above `promised`.
    slot_promised: BTreeMap<Slot, Ballot>,
    /// Accepted values at or above `log_start`.
    accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Slots below were truncated: chosen, executed and folded into a snapshot.
    log_start: Slot,
    /// Self-test bug: accept below the promise.
    accept_lower: bool,
}

/// The answer to a Prepare.
#[derive(Debug)]
pub(crate) enum PrepareOutcome {
    /// Promised; here is what was accepted in the scope.
    Promised(Vec<AcceptedEntry>),
    /// Refused: a higher ballot was promised.
    Rejected(Ballot),
    /// The slot is below the truncation point (Basic Paxos only).
    Truncated,
}

/// The answer to an Accept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcceptOutcome {
    /// Accepted (or had already accepted exactly this).
    Accepted,
    /// Refused: a higher ballot was promised.
    Rejected(Ballot),
    /// The slot is below the truncation point: it is chosen already.
    Truncated,
}

impl Acceptor {
    #[cfg(test)]
    pub(crate) fn new(accept_lower: bool) -> Self {
        Acceptor {
            accept_lower,
            ..Acceptor::default()
        }
    }

    /// Rebuilds the acceptor from durable state. `forget_promise` is the self-test bug.
    pub(crate) fn recover(durable: &Durable, accept_lower: bool, forget_promise: bool) -> Self {
        let mut a = Acceptor {
            promised: durable.promised,
            slot_promised: durable.slot_promises.clone(),
            accepted: durable.accepted.clone(),
            log_start: durable.log_start(),
            accept_lower,
        };
        if forget_promise {
            a.promised = Ballot::ZERO;
            a.slot_promised.clear();
        }
        a
    }

    pub(crate) fn promised(&self) -> Ballot {
        self.promised
    }

    pub(crate) fn log_start(&self) -> Slot {
        self.log_start
    }

    /// The promise in force for `slot`.
    pub(crate) fn promised_for(&self, slot: Slot) -> Ballot {
        self.slot_promised
            .get(&slot)
            .map_or(self.promised, |b| (*b).max(self.promised))
    }

    /// Highest ballot round this acceptor has seen (to pick a fresh ballot after a restart).
    pub(crate) fn max_round(&self) -> u64 {
        let slots = self
            .slot_promised
            .values()
            .map(|b| b.round)
            .max()
            .unwrap_or(0);
        let acc = self
            .accepted
            .values()
            .map(|(b, _)| b.round)
            .max()
            .unwrap_or(0);
        self.promised.round.max(slots).max(acc)
    }

    pub(crate) fn accepted(&self, slot: Slot) -> Option<&(Ballot, Value)> {
        self.accepted.get(&slot)
    }

    /// Every accepted value, for checkers and tests.
    pub(crate) fn accepted_iter(&self) -> impl Iterator<Item = (Slot, &(Ballot, Value))> {
        self.accepted.iter().map(|(s, v)| (*s, v))
    }

    /// Phase 1b.
    pub(crate) fn prepare(
        &mut self,
        ballot: Ballot,
        scope: PrepareScope,
        records: &mut Vec<Record>,
    ) -> PrepareOutcome {
        match scope {
            PrepareScope::From(from) => {
                // A promise from `from` onward must also dominate single-slot promises there.
                let highest = self
                    .slot_promised
                    .range(from..)
                    .map(|(_, b)| *b)
                    .max()
                    .unwrap_or_default();
                let in_force = self.promised.max(highest);
                if ballot < in_force {
                    return PrepareOutcome::Rejected(in_force);
                }
                if ballot > self.promised {
                    self.promised = ballot;
                    records.push(Record::Promise(ballot));
                }
                let entries = self
                    .accepted
                    .range(from..)
                    .map(|(slot, (b, v))| AcceptedEntry {
                        slot: *slot,
                        ballot: *b,
                        value: v.clone(),
                    })
                    .collect();
                PrepareOutcome::Promised(entries)
            }
            PrepareScope::Only(slot) => {
                if slot < self.log_start {
                    return PrepareOutcome::Truncated;
                }
                let in_force = self.promised_for(slot);
                if ballot < in_force {
                    return PrepareOutcome::Rejected(in_force);
                }
                if ballot > in_force {
                    self.slot_promised.insert(slot, ballot);
                    records.push(Record::SlotPromise(slot, ballot));
                }
                let entries = self
                    .accepted
                    .get(&slot)
                    .map(|(b, v)| AcceptedEntry {
                        slot,
                        ballot: *b,
                        value: v.clone(),
                    })
                    .into_iter()
                    .collect();
                PrepareOutcome::Promised(entries)
            }
        }
    }

    /// Phase 2b. `whole_log` raises the all-slot promise (Multi-Paxos); otherwise only this
    /// slot's promise rises (Basic Paxos), so proposers in other slots are not disturbed.
    pub(crate) fn accept(
        &mut self,
        ballot: Ballot,
        slot: Slot,
        value: &Value,
        whole_log: bool,
        records: &mut Vec<Record>,
    ) -> AcceptOutcome {
        if slot < self.log_start {
            return AcceptOutcome::Truncated;
        }
        let in_force = self.promised_for(slot);
        if ballot < in_force && !self.accept_lower {
            return AcceptOutcome::Rejected(in_force);
        }
        if let Some((b, v)) = self.accepted.get(&slot) {
            if *b == ballot {
                // A retransmission: one ballot proposes one value per slot.
                debug_assert_eq!(v, value, "a ballot proposes one value per slot");
                return AcceptOutcome::Accepted;
            }
        }
        if whole_log {
            if ballot > self.promised {
                self.promised = ballot;
                records.push(Record::Promise(ballot));
            }
        } else if ballot > in_force {
            self.slot_promised.insert(slot, ballot);
            records.push(Record::SlotPromise(slot, ballot));
        }
        self.accepted.insert(slot, (ballot, value.clone()));
        records.push(Record::Accept {
            slot,
            ballot,
            value: value.clone(),
        });
        AcceptOutcome::Accepted
    }

    /// Forgets every slot below `upto`: they are chosen and covered by a durable snapshot.
    /// Returns the values it held there, for the caller to free at its own pace.
    pub(crate) fn truncate(&mut self, upto: Slot) -> Vec<Value> {
        if upto <= self.log_start {
            return Vec::new();
        }
        let keep = self.accepted.split_off(&upto);
        let old = std::mem::replace(&mut self.accepted, keep);
        self.slot_promised = self.slot_promised.split_off(&upto);
        self.log_start = upto;
        old.into_values().map(|(_, value)| value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn b(round: u64, node: u32) -> Ballot {
        Ballot::new(round, NodeId(node))
    }

    #[test]
    fn promise_refuses_lower_ballots_and_reports_accepted_values() {
        let mut a = Acceptor::new(false);
        let mut rec = Vec::new();
        assert!(
            matches!(a.prepare(b(2, 0), PrepareScope::From(Slot(0)), &mut rec), PrepareOutcome::Promised(e) if e.is_empty())
        );
        assert_eq!(rec, vec![Record::Promise(b(2, 0))]);
        assert_eq!(
            a.accept(b(2, 0), Slot(3), &Value::Noop, true, &mut rec),
            AcceptOutcome::Accepted
        );
        assert!(
            matches!(a.prepare(b(1, 1), PrepareScope::From(Slot(0)), &mut rec), PrepareOutcome::Rejected(p) if p == b(2, 0))
        );
        assert_eq!(
            a.accept(b(1, 1), Slot(4), &Value::Noop, true, &mut rec),
            AcceptOutcome::Rejected(b(2, 0))
        );
        match a.prepare(b(3, 1), PrepareScope::From(Slot(1)), &mut rec) {
            PrepareOutcome::Promised(e) => assert_eq!(
                e,
                vec![AcceptedEntry {
                    slot: Slot(3),
                    ballot: b(2, 0),
                    value: Value::Noop
                }]
            ),
            other => panic!("expected a promise, got {other:?}"),
        }
    }

    #[test]
    fn single_slot_promises_do_not_block_other_slots() {
        let mut a = Acceptor::new(false);
        let mut rec = Vec::new();
        assert!(matches!(
            a.prepare(b(5, 0), PrepareScope::Only(Slot(1)), &mut rec),
            PrepareOutcome::Promised(_)
        ));
        assert_eq!(
            a.accept(b(2, 1), Slot(2), &Value::Noop, false, &mut rec),
            AcceptOutcome::Accepted
        );
        assert_eq!(
            a.accept(b(2, 1), Slot(1), &Value::Noop, false, &mut rec),
            AcceptOutcome::Rejected(b(5, 0))
        );
        // A whole-log prepare must dominate the single-slot promise above its start.
        assert!(
            matches!(a.prepare(b(4, 2), PrepareScope::From(Slot(0)), &mut rec), PrepareOutcome::Rejected(p) if p == b(5, 0))
        );
    }

    #[test]
    fn truncated_slots_are_never_accepted_again() {
        let mut a = Acceptor::new(false);
        let mut rec = Vec::new();
        a.accept(b(1, 0), Slot(0), &Value::Noop, true, &mut rec);
        a.truncate(Slot(5));
        assert_eq!(
            a.accept(b(9, 1), Slot(3), &Value::Noop, true, &mut rec),
            AcceptOutcome::Truncated
        );
        assert!(matches!(
            a.prepare(b(9, 1), PrepareScope::Only(Slot(4)), &mut rec),
            PrepareOutcome::Truncated
        ));
        assert!(a.accepted(Slot(0)).is_none());
    }

    #[test]
    fn recovery_keeps_promises_unless_the_bug_is_on() {
        let mut d = Durable::default();
        d.apply(&Record::Promise(b(7, 2)));
        assert_eq!(Acceptor::recover(&d, false, false).promised(), b(7, 2));
        assert_eq!(Acceptor::recover(&d, false, true).promised(), Ballot::ZERO);
    }
}

//! What a node persists, and the durable state it restarts from.
//!
//! The core emits [`Record`]s in [`crate::Action::Persist`]; the shell writes them (to a
//! write-ahead log, or nowhere with `durability = "none"`) and then calls
//! [`crate::Node::handle_persisted`]. After a crash the shell rebuilds a [`Durable`] from what it
//! wrote and hands it to [`crate::Node::recover`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::command::Value;
use crate::kv::KvState;
use crate::types::{Ballot, Slot};

/// Identifies one Persist action. Tokens grow; `handle_persisted(t)` means every record of every
/// Persist with a token up to `t` is durable, so a shell may complete them in groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PersistToken(pub u64);

/// One durable change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The acceptor promised this ballot for every slot (Multi-Paxos phase 1).
    Promise(Ballot),
    /// The acceptor promised this ballot for one slot (Basic Paxos, or phase 1 per slot).
    SlotPromise(Slot, Ballot),
    /// The acceptor accepted a value.
    Accept {
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: Value,
    },
    /// The state machine after every slot below `upto`; everything logged below it is obsolete.
    Snapshot {
        /// The first slot not included.
        upto: Slot,
        /// The state.
        state: Arc<KvState>,
    },
}

/// Everything a node keeps across a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// Highest ballot promised for all slots.
    pub promised: Ballot,
    /// Per-slot promises above `promised`.
    pub slot_promises: BTreeMap<Slot, Ballot>,
    /// Accepted values at or above the snapshot point.
    pub accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// The latest snapshot, if any.
    pub snapshot: Option<(Slot, Arc<KvState>)>,
}

impl Durable {
    /// Applies one record, as a write-ahead log replay would.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Promise(b) => self.promised = self.promised.max(*b),
            Record::SlotPromise(slot, b) => {
                let entry = self.slot_promises.entry(*slot).or_default();
                *entry = (*entry).max(*b);
            }
            Record::Accept {
                slot,
                ballot,
                value,
            } => {
                if self.snapshot.as_ref().is_none_or(|(upto, _)| slot >= upto) {
                    self.accepted.insert(*slot, (*ballot, value.clone()));
                }
            }
            Record::Snapshot { upto, state } => {
                if self.snapshot.as_ref().is_none_or(|(old, _)| upto > old) {
                    self.accepted = self.accepted.split_off(upto);
                    self.slot_promises = self.slot_promises.split_off(upto);
                    self.snapshot = Some((*upto, state.clone()));
                }
            }
        }
    }

    /// Where the log starts: the snapshot point, or slot 0.
    pub fn log_start(&self) -> Slot {
        self.snapshot.as_ref().map_or(Slot(0), |(upto, _)| *upto)
    }
}

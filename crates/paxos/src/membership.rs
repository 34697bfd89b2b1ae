//! Who votes for which slot: the voting members of a Multi-Paxos cluster as replicated state.
//!
//! A cluster's `Config::nodes` is every node it may ever hold (the address book); at start its
//! voters are those nodes less `Config::learners`. An [`crate::Op::Reconfigure`] command changes
//! the voters through the log, by the rule of "Paxos Made Moderately Complex": a change executed
//! in slot `s` governs every slot from `s + window` on, where `window` is fixed when the state
//! is created (the leader's pipeline window, `Config::window`) and travels with snapshots.
//!
//! # Why two quorums cannot decide conflicting values
//!
//! A slot `t` has exactly one configuration, the one that the changes chosen in slots at or
//! below `t - window` define, and a value is chosen in `t` only by a majority of that
//! configuration. Every proposer learns that configuration the same way, from chosen values it
//! executed: a leader proposes in `t` only once it has executed slot `t - window` (so no leader
//! ever has more than `window` slots past its execution point in flight), and only once a
//! majority of `t`'s configuration has promised its ballot. Two leaders that propose in `t`
//! therefore count majorities of the *same* set, which intersect, and the classic Paxos argument
//! applies slot by slot: the later ballot's phase 1 sees the value the earlier one chose. A
//! leader whose election quorum was a majority of an older configuration keeps taking promises
//! after it is elected, and stops before the first slot whose configuration it has no majority
//! of; a late promise's accepted values for slots it has not proposed yet are recovered as in
//! phase 1. The window is what keeps a change from taking effect under slots already in flight:
//! those were proposed, and may have been chosen, by majorities of the old configuration.

use std::sync::Arc;

use crate::types::{NodeId, Slot};

/// The voters from each slot on: the initial set, then each change at the slot it takes effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// `(from, voters)`, sorted by `from`; the first starts at slot 0 (or where the history was
    /// last pruned). Never empty.
    epochs: Vec<(Slot, Arc<[NodeId]>)>,
    /// A change executed in slot `s` governs slots from `s + window`.
    window: u64,
}

/// Why a reconfiguration was refused; it changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigError {
    /// Adding a node the cluster's node list does not have.
    #[error("{0} is not one of the cluster's nodes")]
    Unknown(NodeId),
    /// Removing every voter.
    #[error("the change would leave no voters")]
    NoVoters,
    /// Adding a voter that already votes, or removing one that does not.
    #[error("{0} is already a voter")]
    AlreadyVoter(NodeId),
    /// Removing a node that does not vote.
    #[error("{0} is not a voter")]
    NotVoter(NodeId),
    /// A node both added and removed.
    #[error("{0} is both added and removed")]
    Both(NodeId),
    /// The protocol has no membership change.
    #[error("only multi-paxos changes membership")]
    Unsupported,
}

impl Membership {
    /// `voters` from slot 0, and changes that take effect `window` slots after their slot.
    pub fn new(voters: Vec<NodeId>, window: u64) -> Membership {
        let mut voters = voters;
        voters.sort_unstable();
        Membership {
            epochs: vec![(Slot(0), voters.into())],
            window: window.max(1),
        }
    }

    /// A membership rebuilt from its parts (a decoded snapshot); `None` if they are not one.
    pub fn from_parts(epochs: Vec<(Slot, Vec<NodeId>)>, window: u64) -> Option<Membership> {
        let sorted = epochs.windows(2).all(|w| w[0].0 < w[1].0);
        if epochs.is_empty() || !sorted || window == 0 || epochs.iter().any(|e| e.1.is_empty()) {
            return None;
        }
        Some(Membership {
            epochs: epochs.into_iter().map(|(s, v)| (s, v.into())).collect(),
            window,
        })
    }

    /// Each configuration and the slot it governs from.
    pub fn epochs(&self) -> impl Iterator<Item = (Slot, &[NodeId])> {
        self.epochs.iter().map(|(s, v)| (*s, &v[..]))
    }

    /// How many slots after its own a change takes effect.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The voters of `slot`. Slots beyond `executed + window` may still change.
    pub fn voters_at(&self, slot: Slot) -> &[NodeId] {
        let i = self.epochs.partition_point(|(from, _)| *from <= slot);
        &self.epochs[i.saturating_sub(1)].1
    }

    /// The voters after every change executed so far.
    pub fn latest(&self) -> &[NodeId] {
        &self.epochs.last().expect("never empty").1
    }

    /// Whether `node` votes for `slot` or any later slot decided so far.
    pub fn votes_from(&self, slot: Slot, node: NodeId) -> bool {
        let i = self.epochs.partition_point(|(from, _)| *from <= slot);
        self.epochs[i.saturating_sub(1)..]
            .iter()
            .any(|(_, v)| v.contains(&node))
    }

    /// Whether every slot from `from` on has the same voters, as far as decided.
    pub fn settled_from(&self, from: Slot) -> bool {
        self.epochs.last().expect("never empty").0 <= from
    }

    /// The first slot after `slot` whose voters differ from `slot`'s, if one is decided.
    pub fn next_change_after(&self, slot: Slot) -> Option<Slot> {
        let i = self.epochs.partition_point(|(from, _)| *from <= slot);
        self.epochs.get(i).map(|(from, _)| *from)
    }

    /// What `add` and `remove` would make of the latest voters, checked against `nodes`.
    pub fn changed(
        &self,
        nodes: &[NodeId],
        add: &[NodeId],
        remove: &[NodeId],
    ) -> Result<Vec<NodeId>, ReconfigError> {
        let mut voters = self.latest().to_vec();
        for n in add {
            if remove.contains(n) {
                return Err(ReconfigError::Both(*n));
            }
            if !nodes.contains(n) {
                return Err(ReconfigError::Unknown(*n));
            }
            if voters.contains(n) {
                return Err(ReconfigError::AlreadyVoter(*n));
            }
            voters.push(*n);
        }
        for n in remove {
            let Some(i) = voters.iter().position(|v| v == n) else {
                return Err(ReconfigError::NotVoter(*n));
            };
            voters.remove(i);
        }
        if voters.is_empty() {
            return Err(ReconfigError::NoVoters);
        }
        voters.sort_unstable();
        voters.dedup();
        Ok(voters)
    }

    /// A change executed in `slot`: `voters` govern from `slot + window` (`effective_after`
    /// slots later for the self-test's broken variant).
    pub fn change(&mut self, slot: Slot, voters: Vec<NodeId>, effective_after: u64) {
        let from = Slot(slot.0 + effective_after);
        // Execution is in slot order, so a later change never starts before an earlier one.
        debug_assert!(self.epochs.last().is_some_and(|(f, _)| *f <= from));
        self.epochs.retain(|(f, _)| *f < from);
        self.epochs.push((from, voters.into()));
    }

    /// Forgets configurations that ended before `slot`.
    pub fn forget_before(&mut self, slot: Slot) {
        let i = self.epochs.partition_point(|(from, _)| *from <= slot);
        if i > 1 {
            self.epochs.drain(..i - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn a_change_governs_from_its_slot_plus_the_window() {
        let mut m = Membership::new(ids(&[2, 0, 1]), 4);
        assert_eq!(m.voters_at(Slot(100)), &ids(&[0, 1, 2])[..]);
        let next = m
            .changed(&ids(&[0, 1, 2, 3]), &ids(&[3]), &ids(&[0]))
            .unwrap();
        m.change(Slot(10), next, m.window());
        assert_eq!(m.voters_at(Slot(13)), &ids(&[0, 1, 2])[..]);
        assert_eq!(m.voters_at(Slot(14)), &ids(&[1, 2, 3])[..]);
        assert!(!m.settled_from(Slot(13)) && m.settled_from(Slot(14)));
        assert_eq!(m.next_change_after(Slot(12)), Some(Slot(14)));
        assert!(m.votes_from(Slot(12), NodeId(0)) && !m.votes_from(Slot(14), NodeId(0)));
        assert!(m.votes_from(Slot(0), NodeId(3)));
        m.forget_before(Slot(20));
        assert_eq!(m.epochs().count(), 1);
        assert_eq!(m.voters_at(Slot(0)), &ids(&[1, 2, 3])[..]);
    }

    #[test]
    fn bad_changes_are_refused_and_name_the_node() {
        let m = Membership::new(ids(&[0, 1, 2]), 4);
        let nodes = ids(&[0, 1, 2, 3]);
        assert_eq!(
            m.changed(&nodes, &ids(&[7]), &[]),
            Err(ReconfigError::Unknown(NodeId(7)))
        );
        assert_eq!(
            m.changed(&nodes, &ids(&[1]), &[]),
            Err(ReconfigError::AlreadyVoter(NodeId(1)))
        );
        assert_eq!(
            m.changed(&nodes, &[], &ids(&[3])),
            Err(ReconfigError::NotVoter(NodeId(3)))
        );
        assert_eq!(
            m.changed(&nodes, &[], &ids(&[0, 1, 2])),
            Err(ReconfigError::NoVoters)
        );
        assert_eq!(
            m.changed(&nodes, &ids(&[3]), &ids(&[3])),
            Err(ReconfigError::Both(NodeId(3)))
        );
        assert!(Membership::from_parts(vec![], 4).is_none());
        assert!(
            Membership::from_parts(vec![(Slot(3), ids(&[1])), (Slot(1), ids(&[2]))], 4).is_none()
        );
    }
}

//! Counting votes: a set of node indexes as a bitmask (clusters have at most 64 nodes).

/// Which nodes (by index in `Config::nodes`) have voted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Votes(u64);

impl Votes {
    /// Records a vote; a duplicate vote changes nothing. Returns whether it was new.
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        debug_assert!(index < 64, "validated configs have at most 64 nodes");
        let bit = 1u64 << index;
        let fresh = self.0 & bit == 0;
        self.0 |= bit;
        fresh
    }

    pub(crate) fn contains(self, index: usize) -> bool {
        self.0 & (1u64 << index) != 0
    }

    pub(crate) fn count(self) -> usize {
        self.0.count_ones() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_votes_do_not_make_a_quorum() {
        let mut v = Votes::default();
        assert!(v.insert(2));
        assert!(!v.insert(2));
        assert_eq!(v.count(), 1);
        assert!(v.insert(0));
        assert_eq!(v.count(), 2);
        assert!(v.contains(0) && v.contains(2) && !v.contains(1));
    }
}

//! Identifiers and time: small newtypes so a slot can never be passed where a ballot belongs.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A node of the cluster. Ids are small integers given by the cluster configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u32);

/// A ballot (round, node): totally ordered, first by round, then by node id, so two proposers
/// never share a ballot. `Ord` and `Eq` both come from this one field order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    /// Grows by one with every new campaign or proposal attempt.
    pub round: u64,
    /// The proposer that owns this ballot.
    pub node: NodeId,
}

/// A position in the replicated log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Slot(pub u64);

/// A client session. Request ids are unique per client.
///
/// The high 64 bits are when the session began, in milliseconds since the UNIX epoch on the
/// client's clock ([`ClientId::created`]); the low 64 bits tell apart sessions that began in
/// the same millisecond ([`ClientId::nonce`]). The replicas drop a session that has been silent
/// for [`crate::Config::session_timeout`], and its creation time is what lets them answer a
/// late request of a dropped session `Expired` instead of executing it again (see
/// [`crate::KvState`]). A plain number (`ClientId(9)`) is a session created at time zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClientId(pub u128);

impl ClientId {
    /// The session `nonce`, begun at `created` (kept to the millisecond, rounded down).
    pub fn new(created: Time, nonce: u64) -> ClientId {
        ClientId((u128::from(created.0 / 1_000_000) << 64) | u128::from(nonce))
    }

    /// When the session began, as its client said (to the millisecond).
    pub fn created(self) -> Time {
        Time(((self.0 >> 64) as u64).saturating_mul(1_000_000))
    }

    /// The creation time as carried: milliseconds since the epoch.
    pub fn created_ms(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// What tells it apart from sessions begun in the same millisecond.
    pub fn nonce(self) -> u64 {
        self.0 as u64
    }

    /// The session with this creation time (ms) and nonce, as decoded from the wire.
    pub fn from_parts(created_ms: u64, nonce: u64) -> ClientId {
        ClientId((u128::from(created_ms) << 64) | u128::from(nonce))
    }
}

/// A request of one client; exactly-once execution is keyed by `(ClientId, RequestId)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RequestId(pub u64);

/// A point in time, in nanoseconds since an epoch chosen by the caller: the simulator's virtual
/// clock, or (in the runtime) the UNIX epoch, measured as the wall clock at start plus the
/// monotonic time since, so it never goes backwards. The core never reads a clock: time is an
/// argument. Batches carry their proposer's time ([`crate::Batch::stamp`]), which is what
/// expires client sessions the same way on every replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Ballot {
    /// The ballot below every real ballot: what a fresh acceptor has promised.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
    };

    /// A ballot owned by `node` at `round`.
    pub fn new(round: u64, node: NodeId) -> Self {
        Ballot { round, node }
    }
}

impl Slot {
    /// The slot after this one.
    pub fn next(self) -> Slot {
        Slot(self.0 + 1)
    }
}

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node.0)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.0 / 1_000_000_000,
            (self.0 % 1_000_000_000) / 1000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        assert!(Ballot::new(1, NodeId(9)) < Ballot::new(2, NodeId(0)));
        assert!(Ballot::new(2, NodeId(0)) < Ballot::new(2, NodeId(1)));
        assert!(Ballot::ZERO < Ballot::new(1, NodeId(0)));
    }

    proptest! {
        #[test]
        fn ballot_ord_agrees_with_eq(a in (0u64..4, 0u32..4), b in (0u64..4, 0u32..4)) {
            let x = Ballot::new(a.0, NodeId(a.1));
            let y = Ballot::new(b.0, NodeId(b.1));
            prop_assert_eq!(x == y, x.cmp(&y) == std::cmp::Ordering::Equal);
            prop_assert_eq!(x < y, (a.0, a.1) < (b.0, b.1));
        }
    }
}

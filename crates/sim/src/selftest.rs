//! The self-test: every deliberately broken protocol variant ([`paxos::Bug`]) must be caught by a
//! safety checker on some seed. Each variant is run under the fault profile that exposes it, and
//! seeds are searched in order (bounded) until one fails a safety check.

use paxos::{Bug, Protocol};

use crate::faults::FaultProfile;
use crate::simulation::{Failure, SimConfig};
use crate::sweep::run_seeds;

/// A bug variant and where to look for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BugCase {
    /// The broken variant.
    pub bug: Bug,
    /// The protocol to run it in.
    pub protocol: Protocol,
    /// The faults that expose it.
    pub faults: FaultProfile,
}

/// Every bug variant with the protocol and fault profile chosen to expose it:
///
/// - `ForgetPromiseOnRestart` needs restarts: Multi-Paxos under `crashes`.
/// - `AcceptLowerBallot` needs a stale proposer whose Accepts reach acceptors that promised a
///   newer ballot: Multi-Paxos under `partitions` (an old leader cut off and healed).
/// - `SkipRecovery` needs a leader change after values were accepted: Multi-Paxos under
///   `crashes` (which kill the leader mid-batch).
/// - `CommitWithoutQuorum` needs nothing but load; `lossy` makes the missing quorum likelier.
/// - `ResurrectExpiredSessions` needs a retry that arrives after its session was dropped:
///   clients cut off by `partitions` for longer than a short session timeout.
/// - `LocalReads` answers a `Get` that is not in the chosen log, which the reply check sees at
///   once; `partitions` (a deposed leader or a cut-off follower answering stale values) is the
///   setting it is dangerous in.
/// - `AckBeforeDurable` sends Promises and Accepteds before their writes complete, which the
///   persist-before-send check sees under any load; `crashes` are what turn it into lost
///   acknowledged state.
/// - `ReadsAfterLeaseExpiry` (runs with `reads = "lease"`) needs a leader cut off long enough for
///   the others to elect a new one, while it keeps answering reads: `partitions`; lease-overlap sees
///   it read under the newer quorum's promises (and, with that check off, real-time-reads sees the
///   stale value once the new leader writes).
/// - `PromiseInsideLease` lets a follower promise a candidate while it holds the leader a lease:
///   `partitions` cut the leader from one follower (or all) while clients still reach it, and
///   lease-overlap sees a quorum promise a newer ballot under the lease.
/// - `LeaseWithoutDriftMargin` counts the whole lease on the leader's clock, which is exact on
///   perfect clocks; the simulator gives that variant the 200,000 ppm drift bound, and a slow
///   leader cut off by `partitions` then reads locally after its fast followers' grants expired
///   and they promised a candidate (lease-overlap). It takes a few hundred seeds to find.
/// - `LearnerVotes` needs only a learner, which the simulator gives that variant (one or two);
///   learners-never-vote sees its first Promise or Accepted, under any faults or none.
/// - `ReconfigNextSlot` lets a membership change govern from the next slot, while the leader
///   still has slots in flight that it proposed under the old voters; the simulator changes
///   membership on every seed of that variant, and the leader then counts a majority of the new
///   voters in a slot the old ones govern, so a node executes a value no majority of that slot's
///   voters accepted (executed-logs-agree; about one lossy seed in twenty).
pub const BUG_CASES: [BugCase; 12] = [
    BugCase {
        bug: Bug::ForgetPromiseOnRestart,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Crashes,
    },
    BugCase {
        bug: Bug::AcceptLowerBallot,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Partitions,
    },
    BugCase {
        bug: Bug::SkipRecovery,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Crashes,
    },
    BugCase {
        bug: Bug::CommitWithoutQuorum,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Lossy,
    },
    BugCase {
        bug: Bug::ResurrectExpiredSessions,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Partitions,
    },
    BugCase {
        bug: Bug::LocalReads,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Partitions,
    },
    BugCase {
        bug: Bug::AckBeforeDurable,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Crashes,
    },
    BugCase {
        bug: Bug::ReadsAfterLeaseExpiry,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Partitions,
    },
    BugCase {
        bug: Bug::PromiseInsideLease,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Partitions,
    },
    BugCase {
        bug: Bug::LeaseWithoutDriftMargin,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Partitions,
    },
    BugCase {
        bug: Bug::LearnerVotes,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Lossy,
    },
    BugCase {
        bug: Bug::ReconfigNextSlot,
        protocol: Protocol::MultiPaxos,
        faults: FaultProfile::Lossy,
    },
];

/// What the search found for one variant.
#[derive(Clone, Debug)]
pub struct SelfTestResult {
    /// The variant and where it was looked for.
    pub case: BugCase,
    /// The first (lowest) seed whose run failed a safety check, with that failure.
    pub caught: Option<Failure>,
    /// Seeds run.
    pub seeds_tried: u64,
    /// Of those, runs that failed only a non-safety check (liveness, stuck, panic).
    pub other_failures: u64,
}

/// Searches seeds `0..max_seeds` for a run of `case` (on `nodes` nodes) that fails a safety
/// check. The answer is the lowest such seed whatever `jobs` is.
pub fn self_test_case(case: BugCase, nodes: usize, max_seeds: u64, jobs: usize) -> SelfTestResult {
    let mut base = SimConfig::new(case.protocol, nodes, 0, case.faults);
    base.bug = Some(case.bug);
    let mut result = SelfTestResult {
        case,
        caught: None,
        seeds_tried: 0,
        other_failures: 0,
    };
    let batch = (jobs as u64 * 4).max(8);
    let mut start = 0;
    while start < max_seeds && result.caught.is_none() {
        let end = (start + batch).min(max_seeds);
        let summary = run_seeds(&base, start..end, jobs, |_| {});
        result.seeds_tried += end - start;
        for f in summary.failures {
            if f.check.is_safety() {
                if result.caught.is_none() {
                    result.caught = Some(f);
                }
            } else {
                result.other_failures += 1;
            }
        }
        start = end;
    }
    result
}

/// Runs [`self_test_case`] for every entry of [`BUG_CASES`].
pub fn self_test(nodes: usize, max_seeds: u64, jobs: usize) -> Vec<SelfTestResult> {
    BUG_CASES
        .iter()
        .map(|&case| self_test_case(case, nodes, max_seeds, jobs))
        .collect()
}

//! Leader leases (`reads = "lease"`): when the leader answers a `Get` from its own state, and
//! what a lease forbids the nodes that granted it.

use std::time::Duration;

use paxos::testing::{get, put, LocalCluster};
use paxos::{
    Action, Ballot, Bug, Config, Message, NodeId, Outcome, Prepare, PrepareScope, Protocol,
    ReadMode, Slot,
};

const SECOND: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_millis(500);

fn cluster(reads: ReadMode, bug: Option<Bug>) -> LocalCluster {
    LocalCluster::new(Protocol::MultiPaxos, 3, |c: &mut Config| {
        c.reads = reads;
        c.lease_duration = LEASE;
        c.bug = bug;
    })
}

/// A cluster with a leader that executed `k = v` and has had a heartbeat round since.
fn leased(reads: ReadMode, bug: Option<Bug>) -> (LocalCluster, NodeId) {
    let mut c = cluster(reads, bug);
    let leader = c.elect(5 * SECOND).expect("a leader within 5 s");
    c.request(leader, put(1, 1, b"k", b"v"));
    c.run();
    c.advance(Duration::from_millis(50));
    (c, leader)
}

fn value_of(c: &LocalCluster, cmd: &paxos::Command) -> Vec<Outcome> {
    c.replies_for(cmd).map(|r| r.outcome.clone()).collect()
}

fn prepare(ballot: Ballot) -> Message {
    Message::Prepare(Prepare {
        ballot,
        scope: PrepareScope::From(Slot(0)),
    })
}

/// Hands `node` a Prepare of `ballot` from `from` at `now`, completes the write it asks for
/// (the Promise waits for it), and says whether a Promise went out.
fn promises(node: &mut paxos::Node, now: paxos::Time, from: NodeId, ballot: Ballot) -> bool {
    let mut out = Vec::new();
    node.handle_message(now, from, prepare(ballot));
    node.drain_actions(now, &mut out);
    let tokens: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Persist { token, .. } => Some(*token),
            _ => None,
        })
        .collect();
    for token in tokens {
        node.handle_persisted(now, token);
    }
    node.drain_actions(now, &mut out);
    out.iter()
        .any(|a| matches!(a, Action::Send { msg: Message::Promise(p), .. } if p.ballot == ballot))
}

#[test]
fn a_leased_leader_answers_a_get_from_its_state_without_a_slot() {
    let (mut c, leader) = leased(ReadMode::Lease, None);
    let l = leader.0 as usize;
    let chosen = c.nodes[l].stats().slots_chosen;
    let g = get(1, 2, b"k");
    c.request(leader, g.clone());
    c.run();
    assert_eq!(value_of(&c, &g), vec![Outcome::Value(Some("v".into()))]);
    assert_eq!(c.nodes[l].stats().local_reads, 1);
    assert_eq!(
        c.nodes[l].stats().slots_chosen,
        chosen,
        "no slot for the read"
    );
    // Followers acknowledged the heartbeats that earned the lease.
    assert!(c.nodes[l].stats().sent_of(paxos::MessageKind::Heartbeat) > 0);
    let acks: u64 = c
        .nodes
        .iter()
        .map(|n| n.stats().sent_of(paxos::MessageKind::HeartbeatAck))
        .sum();
    assert!(acks > 0);
}

#[test]
fn with_log_reads_every_get_takes_a_slot() {
    let (mut c, leader) = leased(ReadMode::Log, None);
    let l = leader.0 as usize;
    let chosen = c.nodes[l].stats().slots_chosen;
    let g = get(1, 2, b"k");
    c.request(leader, g.clone());
    c.run();
    assert_eq!(value_of(&c, &g), vec![Outcome::Value(Some("v".into()))]);
    assert_eq!(c.nodes[l].stats().local_reads, 0);
    assert_eq!(c.nodes[l].stats().slots_chosen, chosen + 1);
    let acks: u64 = c
        .nodes
        .iter()
        .map(|n| n.stats().sent_of(paxos::MessageKind::HeartbeatAck))
        .sum();
    assert_eq!(acks, 0, "no lease, no acknowledgements");
}

#[test]
fn a_leader_cut_off_from_its_quorum_stops_reading_locally_once_its_lease_runs_out() {
    let (mut c, leader) = leased(ReadMode::Lease, None);
    let l = leader.0 as usize;
    for i in 0..3 {
        c.down[i] = i != l;
    }
    // Still inside the lease: local.
    c.request(leader, get(1, 2, b"k"));
    c.run();
    assert_eq!(c.nodes[l].stats().local_reads, 1);
    // Past it (no acknowledgement can arrive): the read goes to the log, where it waits.
    c.advance(LEASE);
    let g = get(1, 3, b"k");
    c.request(leader, g.clone());
    c.run();
    assert_eq!(c.nodes[l].stats().local_reads, 1);
    assert!(value_of(&c, &g).is_empty(), "no quorum, no answer yet");
}

#[test]
fn the_broken_leader_keeps_reading_after_its_lease_ran_out() {
    let (mut c, leader) = leased(ReadMode::Lease, Some(Bug::ReadsAfterLeaseExpiry));
    let l = leader.0 as usize;
    for i in 0..3 {
        c.down[i] = i != l;
    }
    c.advance(2 * LEASE);
    c.request(leader, get(1, 2, b"k"));
    c.run();
    assert_eq!(c.nodes[l].stats().local_reads, 1, "the bug must show");
}

#[test]
fn a_follower_promises_no_other_ballot_inside_the_lease_it_granted() {
    for bug in [None, Some(Bug::PromiseInsideLease)] {
        let (mut c, leader) = leased(ReadMode::Lease, bug);
        let f = (leader.0 as usize + 1) % 3;
        let other = NodeId((leader.0 + 2) % 3);
        let higher = Ballot::new(c.nodes[f].promised().round + 10, other);
        let now = c.now;
        if bug.is_some() {
            assert!(
                promises(&mut c.nodes[f], now, other, higher),
                "the broken follower promises at once"
            );
            continue;
        }
        assert!(
            !promises(&mut c.nodes[f], now, other, higher),
            "refused inside the lease"
        );
        assert_eq!(c.nodes[f].stats().lease_refusals, 1);
        // Once no heartbeat renews it, the grant runs out and the same Prepare is promised.
        let later = now + LEASE + Duration::from_millis(1);
        assert!(
            promises(&mut c.nodes[f], later, other, higher),
            "promised after the lease"
        );
    }
}

#[test]
fn a_restarted_node_promises_nothing_for_one_lease() {
    let (mut c, leader) = leased(ReadMode::Lease, None);
    let f = NodeId((leader.0 + 1) % 3);
    c.restart(f);
    let node = &mut c.nodes[f.0 as usize];
    let other = NodeId((leader.0 + 2) % 3);
    let higher = Ballot::new(node.promised().round + 10, other);
    let now = c.now;
    assert!(
        !promises(node, now, other, higher),
        "a restarted node may have granted a lease it forgot"
    );
    assert_eq!(node.stats().lease_refusals, 1);
    // One lease after its start it promises again.
    assert!(promises(node, now + LEASE, other, higher));
}

#[test]
fn a_lease_with_a_drift_margin_is_shorter_than_the_grant() {
    let mut c = Config::new(Protocol::MultiPaxos, NodeId(0), vec![NodeId(0)]);
    c.lease_duration = Duration::from_secs(1);
    c.clock_drift_ppm = 10_000;
    // 1 s * 0.99 / 1.01
    assert_eq!(c.lease_span(), Duration::from_nanos(980_198_019));
    c.bug = Some(Bug::LeaseWithoutDriftMargin);
    assert_eq!(c.lease_span(), Duration::from_secs(1));
}

#[test]
fn leases_need_multi_paxos_and_a_lease_longer_than_the_heartbeat() {
    let nodes = vec![NodeId(0), NodeId(1), NodeId(2)];
    let mut c = Config::new(Protocol::BasicPaxos, NodeId(0), nodes.clone());
    c.reads = ReadMode::Lease;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("multi-paxos"));
    let mut c = Config::new(Protocol::MultiPaxos, NodeId(0), nodes);
    c.reads = ReadMode::Lease;
    c.lease_duration = c.heartbeat_interval;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("heartbeat_interval"));
    assert_eq!("lease".parse::<ReadMode>(), Ok(ReadMode::Lease));
    assert!("Lease".parse::<ReadMode>().is_err());
}

/// `reads = "learner"`: a learner answers a Get from its own state (after it learned the write
/// here), a voting follower still points the client to the leader, and the leader's Get goes
/// through the log.
#[test]
fn a_learner_answers_gets_from_its_state_under_learner_reads() {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 4, |c: &mut Config| {
        c.reads = ReadMode::Learner;
        c.learners = vec![NodeId(3)];
    });
    let leader = c.elect(5 * SECOND).expect("a leader within 5 s");
    assert_ne!(leader, NodeId(3), "a learner never leads");
    c.request(leader, put(1, 1, b"k", b"v"));
    c.run();
    c.advance(Duration::from_millis(50));
    let at_learner = get(2, 1, b"k");
    c.request(NodeId(3), at_learner.clone());
    c.run();
    assert_eq!(
        value_of(&c, &at_learner),
        vec![Outcome::Value(Some("v".into()))]
    );
    assert_eq!(c.nodes[3].stats().local_reads, 1);
    let follower = (0..3).map(NodeId).find(|n| *n != leader).unwrap();
    let at_follower = get(2, 2, b"k");
    c.request(follower, at_follower.clone());
    c.run();
    assert!(matches!(
        value_of(&c, &at_follower)[..],
        [Outcome::NotLeader { .. }]
    ));
    let chosen = c.nodes[leader.0 as usize].stats().slots_chosen;
    let at_leader = get(2, 3, b"k");
    c.request(leader, at_leader.clone());
    c.run();
    assert_eq!(
        value_of(&c, &at_leader),
        vec![Outcome::Value(Some("v".into()))]
    );
    assert_eq!(c.nodes[leader.0 as usize].stats().local_reads, 0);
    assert!(c.nodes[leader.0 as usize].stats().slots_chosen > chosen);
}

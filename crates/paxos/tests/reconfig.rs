//! Membership change: a `Reconfigure` command decided through the log changes who votes from
//! `window` slots after its own; a removed leader steps down, and the added node votes only
//! once it has executed the change.

use std::time::Duration;

use paxos::testing::{put, LocalCluster};
use paxos::{ClientId, Command, Config, MessageKind, NodeId, Op, Outcome, Protocol, RequestId};

const SECOND: Duration = Duration::from_secs(1);

fn reconfigure(request: u64, add: &[u32], remove: &[u32]) -> Command {
    Command {
        client: ClientId(9),
        request: RequestId(request),
        op: Op::Reconfigure {
            add: add.iter().copied().map(NodeId).collect(),
            remove: remove.iter().copied().map(NodeId).collect(),
        },
    }
}

fn outcomes(c: &LocalCluster, cmd: &Command) -> Vec<Outcome> {
    c.replies_for(cmd).map(|r| r.outcome.clone()).collect()
}

/// Nodes 0-2 vote, node 3 learns, the window is 4 slots; and the leader they elected.
fn voters_and_a_learner() -> (LocalCluster, NodeId) {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 4, |c: &mut Config| {
        c.learners = vec![NodeId(3)];
        c.window = 4;
    });
    let leader = c.elect(5 * SECOND).expect("a leader");
    (c, leader)
}

#[test]
fn a_learner_replaces_the_leader_which_steps_down() {
    let (mut c, leader) = voters_and_a_learner();
    assert!(!c.nodes[3].voting(), "a learner does not vote");
    let change = reconfigure(1, &[3], &[leader.0]);
    c.request(leader, change.clone());
    c.run();
    assert_eq!(outcomes(&c, &change), vec![Outcome::Done]);
    let m = c.nodes[0]
        .membership()
        .expect("multi-paxos tracks membership");
    let (from, voters) = m.epochs().last().unwrap();
    assert!(voters.contains(&NodeId(3)) && !voters.contains(&leader));
    assert!(
        from.0 >= 4,
        "takes effect a window after its slot, not at {from}"
    );
    // Writes fill the window; past it the removed leader steps down and another is elected.
    for r in 1..=6 {
        c.request(leader, put(1, r, b"k", b"v"));
        c.run();
    }
    let next = c.elect(5 * SECOND).expect("a new leader");
    assert_ne!(next, leader, "the removed leader stepped down");
    assert!(
        c.nodes[3].voting(),
        "the added node votes once it executed the change"
    );
    assert!(!c.nodes[leader.0 as usize].voting());
    let w = put(2, 1, b"k", b"after");
    let before = c.nodes[3].stats().sent_of(MessageKind::Accepted);
    c.request(next, w.clone());
    c.advance(Duration::from_millis(100));
    assert_eq!(outcomes(&c, &w), vec![Outcome::Done]);
    assert!(c.nodes[3].stats().sent_of(MessageKind::Accepted) > before);
}

#[test]
fn a_change_that_leaves_no_voters_or_adds_a_stranger_is_refused() {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |_: &mut Config| {});
    let leader = c.elect(5 * SECOND).expect("a leader");
    let stranger = reconfigure(1, &[7], &[]);
    let empty = reconfigure(2, &[], &[0, 1, 2]);
    c.request(leader, stranger.clone());
    c.request(leader, empty.clone());
    c.run();
    assert!(
        matches!(&outcomes(&c, &stranger)[..], [Outcome::Refused(why)] if why.contains("n7 is not one of")),
        "{:?}",
        outcomes(&c, &stranger)
    );
    assert!(
        matches!(&outcomes(&c, &empty)[..], [Outcome::Refused(why)] if why.contains("no voters"))
    );
    assert_eq!(c.nodes[0].membership().unwrap().epochs().count(), 1);
}

#[test]
fn an_idle_change_takes_effect_and_the_successor_takes_over_at_once() {
    // No command follows the change: no-ops fill the window up to the slot it governs from,
    // the removed leader steps down, and the lowest-numbered voter of the new configuration
    // campaigns without waiting out an election timeout (500 ms).
    let (mut c, leader) = voters_and_a_learner();
    let change = reconfigure(1, &[3], &[leader.0]);
    c.request(leader, change.clone());
    c.run();
    assert_eq!(outcomes(&c, &change), vec![Outcome::Done]);
    let successor = NodeId((0..4).find(|n| *n != leader.0).unwrap());
    c.advance(Duration::from_millis(10));
    assert_eq!(c.leader(), Some(successor), "took over within 10 ms");
    assert!(!c.nodes[leader.0 as usize].voting() && c.nodes[3].voting());
    let w = put(2, 1, b"k", b"after");
    c.request(successor, w.clone());
    c.run();
    assert_eq!(outcomes(&c, &w), vec![Outcome::Done]);
}

#[test]
fn a_node_added_far_behind_catches_up_from_a_snapshot_before_it_votes() {
    // Node 3 is down from the start, so it has nothing, while the others truncate their log.
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 4, |c: &mut Config| {
        c.learners = vec![NodeId(3)];
        c.window = 4;
        c.snapshot_interval = 50;
        c.log_retain_slots = 100;
        c.max_batch = 1;
    });
    c.down[3] = true;
    let leader = c.elect(5 * SECOND).expect("a leader");
    for r in 1..=300 {
        c.request(leader, put(1, r, format!("k{}", r % 17).as_bytes(), b"v"));
        if r % 50 == 0 {
            c.run();
        }
    }
    c.run();
    let start = c.nodes[leader.0 as usize].log_start();
    assert!(start.0 > 100, "the log was truncated: it starts at {start}");
    let removed = (0..3).find(|n| *n != leader.0).unwrap();
    let change = reconfigure(1, &[3], &[removed]);
    c.request(leader, change.clone());
    c.run();
    assert_eq!(outcomes(&c, &change), vec![Outcome::Done]);
    // It comes up empty: no configuration it knows makes it a voter.
    c.down[3] = false;
    assert!(!c.nodes[3].voting());
    c.advance(Duration::from_millis(500));
    assert!(
        c.nodes[3].stats().snapshots_installed >= 1,
        "caught up from a snapshot"
    );
    assert!(c.nodes[3].voting(), "votes once it executed the change");
    // With the other remaining voter down, a write is chosen only with node 3's vote.
    let other = (0..3).find(|n| *n != leader.0 && *n != removed).unwrap();
    c.down[other as usize] = true;
    let w = put(2, 1, b"k", b"after");
    c.request(leader, w.clone());
    c.advance(Duration::from_millis(100));
    assert_eq!(outcomes(&c, &w), vec![Outcome::Done]);
    assert_eq!(c.nodes[3].kv(), c.nodes[leader.0 as usize].kv());
}

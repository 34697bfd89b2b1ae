//! Scenario tests: a few nodes stepped by hand, asserting on what they do. Each is named after
//! the rule it checks (Lamport, "Paxos Made Simple", §2.2–2.3 and §3 for Multi-Paxos).

use std::time::Duration;

use paxos::testing::{get, put, LocalCluster};
use paxos::{
    Accept, Action, Ballot, Bug, ClientId, Config, Message, Node, NodeId, Outcome, Prepare,
    PrepareScope, Protocol, RequestId, Role, Slot, Time, Value,
};

const SECOND: Duration = Duration::from_secs(1);

fn multi(n: u32) -> LocalCluster {
    LocalCluster::new(Protocol::MultiPaxos, n, |_| {})
}

fn outcome_of(c: &LocalCluster, cmd: &paxos::Command) -> Vec<Outcome> {
    c.replies_for(cmd).map(|r| r.outcome.clone()).collect()
}

#[test]
fn multi_paxos_elects_one_leader_and_commits_puts_and_gets() {
    let mut c = multi(3);
    let leader = c.elect(5 * SECOND).expect("a leader within 5 s");
    let p = put(1, 1, b"k", b"v1");
    c.request(leader, p.clone());
    c.run();
    assert_eq!(outcome_of(&c, &p), vec![Outcome::Done]);
    let g = get(1, 2, b"k");
    c.request(leader, g.clone());
    c.run();
    assert_eq!(outcome_of(&c, &g), vec![Outcome::Value(Some("v1".into()))]);
    // Followers learn the commit from the next heartbeat and execute too.
    c.advance(Duration::from_millis(50));
    for n in &c.nodes {
        assert_eq!(
            n.kv().get(b"k").map(|v| v.as_ref()),
            Some(&b"v1"[..]),
            "node {}",
            n.id()
        );
    }
}

#[test]
fn a_follower_answers_not_leader_with_the_leader_it_believes_in() {
    let mut c = multi(3);
    let leader = c.elect(5 * SECOND).unwrap();
    c.advance(Duration::from_millis(50));
    let follower = NodeId((leader.0 + 1) % 3);
    let p = put(1, 1, b"k", b"v");
    c.request(follower, p.clone());
    c.run();
    assert_eq!(
        outcome_of(&c, &p),
        vec![Outcome::NotLeader {
            leader: Some(leader)
        }]
    );
}

#[test]
fn commands_arriving_while_the_window_is_full_join_the_next_batch() {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| {
        c.window = 1;
        c.max_batch = 100;
    });
    let leader = c.elect(5 * SECOND).unwrap();
    // The first command goes out alone; 249 more arrive while its slot is in flight.
    c.request(leader, put(9, 0, b"k", b"first"));
    c.round();
    for r in 1..250 {
        c.request(leader, put(9, r, b"k", b"v"));
    }
    c.run();
    let s = c.nodes[leader.0 as usize].stats().clone();
    assert_eq!(c.replies.len(), 250);
    assert_eq!(s.batched_commands, 250);
    assert_eq!(s.batches, 4, "1 + 100 + 100 + 49");
    assert_eq!(s.max_batch_seen, 100);
}

#[test]
fn batches_respect_the_byte_limit() {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| c.max_batch_bytes = 1000);
    let leader = c.elect(5 * SECOND).unwrap();
    for r in 0..10 {
        c.request(leader, put(3, r, b"key", &[7u8; 297])); // 300 payload bytes each
    }
    c.run();
    let s = c.nodes[leader.0 as usize].stats();
    assert_eq!(
        s.max_batch_seen, 3,
        "three 300-byte commands fit in 1000 bytes, four do not"
    );
    assert_eq!(c.replies.len(), 10);
}

#[test]
fn the_window_bounds_slots_in_flight() {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| {
        c.window = 3;
        c.max_batch = 1;
    });
    let leader = c.elect(5 * SECOND).unwrap();
    c.run();
    let l = leader.0 as usize;
    for r in 0..10 {
        c.nodes[l].handle_request(c.now, put(1, r, b"k", b"v"));
    }
    let mut actions = Vec::new();
    c.nodes[l].drain_actions(c.now, &mut actions);
    let accepts = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Broadcast {
                    msg: Message::Accept(_)
                }
            )
        })
        .count();
    assert_eq!(accepts, 3);
    assert_eq!(c.nodes[l].queued(), 7);
}

#[test]
fn a_full_queue_refuses_requests_as_overloaded_and_never_executes_them() {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| c.max_queue = 3);
    let leader = c.elect(5 * SECOND).unwrap();
    c.run();
    let l = leader.0 as usize;
    let now = c.now;
    for r in 0..5 {
        c.nodes[l].handle_request(now, put(6, r, b"k", format!("v{r}").as_bytes()));
    }
    c.run();
    let outcome = |c: &LocalCluster, r: u64| -> Vec<Outcome> {
        c.replies
            .iter()
            .filter(|p| p.client == ClientId(6) && p.request == RequestId(r))
            .map(|p| p.outcome.clone())
            .collect()
    };
    for r in 0..3 {
        assert_eq!(
            outcome(&c, r),
            vec![Outcome::Done],
            "request {r} was queued"
        );
    }
    for r in 3..5 {
        assert_eq!(outcome(&c, r), vec![Outcome::Overloaded], "request {r}");
    }
    assert_eq!(c.nodes[l].stats().overloaded, 2);
    let kv = c.nodes[l].kv();
    assert_eq!(
        kv.get(b"k").map(|v| v.as_ref()),
        Some(&b"v2"[..]),
        "v3, v4 never ran"
    );
    // A retry once there is room is taken and executed exactly once.
    c.request(leader, put(6, 4, b"k", b"v4"));
    c.run();
    assert_eq!(outcome(&c, 4), vec![Outcome::Overloaded, Outcome::Done]);
}

/// The Accepts among a node's drained actions, by the number of commands each carries.
fn accept_sizes(node: &mut Node, now: Time) -> Vec<usize> {
    let mut actions = Vec::new();
    node.drain_actions(now, &mut actions);
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast {
                msg: Message::Accept(m),
            } => Some(m.value.commands().len()),
            _ => None,
        })
        .collect()
}

#[test]
fn one_partial_batch_in_flight_lets_the_next_one_fill() {
    for (partial_batches, expected) in [
        // Default: the lone command leaves at once; the next 15 wait while it is in flight,
        // except a full batch of 10, which never waits.
        (1, vec![vec![1], vec![], vec![10]]),
        // Eager: every drain proposes whatever is queued.
        (32, vec![vec![1], vec![5], vec![10]]),
    ] {
        let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| {
            c.max_batch = 10;
            c.partial_batches = partial_batches;
        });
        let leader = c.elect(5 * SECOND).unwrap();
        c.run();
        let l = leader.0 as usize;
        let now = c.now;
        let mut seen = Vec::new();
        let mut r = 0;
        for n in [1, 5, 10] {
            for _ in 0..n {
                c.nodes[l].handle_request(now, put(4, r, b"k", b"v"));
                r += 1;
            }
            seen.push(accept_sizes(&mut c.nodes[l], now));
        }
        assert_eq!(seen, expected, "partial_batches = {partial_batches}");
        // Nothing is stranded: once the rounds complete (the Accepts drained above were never
        // delivered, so they go again on the retry timer), every command is answered.
        c.advance(Duration::from_secs(1));
        assert_eq!(c.replies.len(), 16, "partial_batches = {partial_batches}");
    }
}

#[test]
fn p1b_promise_leaves_only_after_the_promise_is_durable() {
    let ids = vec![NodeId(0), NodeId(1), NodeId(2)];
    let mut n = Node::new(Config::new(Protocol::MultiPaxos, NodeId(1), ids)).unwrap();
    let ballot = Ballot::new(5, NodeId(0));
    let t = Time(1);
    n.handle_message(
        t,
        NodeId(0),
        Message::Prepare(Prepare {
            ballot,
            scope: PrepareScope::From(Slot(0)),
        }),
    );
    let mut out = Vec::new();
    n.drain_actions(t, &mut out);
    let token = match &out[..] {
        [Action::Persist { token, records }] => {
            assert_eq!(records, &vec![paxos::Record::Promise(ballot)]);
            *token
        }
        other => panic!("expected only a Persist, got {other:?}"),
    };
    out.clear();
    n.handle_persisted(t, token);
    n.drain_actions(t, &mut out);
    assert!(
        matches!(&out[..], [Action::Send { to: NodeId(0), msg: Message::Promise(p) }] if p.ballot == ballot),
        "{out:?}"
    );
}

/// §2.2 P2a: an acceptor accepts no value below its promise, and says so with a Nack.
#[test]
fn p2a_an_acceptor_nacks_accepts_below_its_promise() {
    let ids = vec![NodeId(0), NodeId(1), NodeId(2)];
    let mut n = Node::new(Config::new(Protocol::MultiPaxos, NodeId(1), ids)).unwrap();
    let t = Time(1);
    let high = Ballot::new(5, NodeId(2));
    n.handle_message(
        t,
        NodeId(2),
        Message::Prepare(Prepare {
            ballot: high,
            scope: PrepareScope::From(Slot(0)),
        }),
    );
    let low = Ballot::new(4, NodeId(0));
    let accept = Accept {
        ballot: low,
        slot: Slot(0),
        value: Value::Noop,
        commit: Slot(0),
        truncate: Slot(0),
    };
    n.handle_message(t, NodeId(0), Message::Accept(accept));
    let mut out = Vec::new();
    n.drain_actions(t, &mut out);
    assert!(out.iter().any(
        |a| matches!(a, Action::Send { to: NodeId(0), msg: Message::Nack(k) } if k.promised == high)
    ));
    assert!(n.accepted(Slot(0)).is_none());
}

/// §2.3 / §3: a new leader re-proposes the highest-ballot value it finds in the promises instead
/// of its own; the SkipRecovery variant is shown to lose it.
#[test]
fn a_new_leader_recovers_a_value_accepted_by_a_minority() {
    for bug in [None, Some(Bug::SkipRecovery)] {
        let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| c.bug = bug);
        let old = c.elect(5 * SECOND).unwrap();
        let witness = NodeId((old.0 + 1) % 3);
        let other = NodeId((old.0 + 2) % 3);
        // The old leader's Accept reaches only `witness`, then the old leader dies.
        c.down[other.0 as usize] = true;
        let p = put(1, 1, b"k", b"recovered");
        c.request(old, p.clone());
        c.round(); // Accept out
        c.down[old.0 as usize] = true;
        c.run(); // witness accepts; its Accepted goes nowhere
        assert!(c.nodes[witness.0 as usize].accepted_len() > 0);
        c.down[other.0 as usize] = false;
        let new = c.elect(5 * SECOND).expect("the survivors elect a leader");
        assert_ne!(new, old);
        c.advance(Duration::from_millis(100));
        let kv = c.nodes[new.0 as usize].kv();
        if bug.is_none() {
            assert_eq!(kv.get(b"k").map(|v| v.as_ref()), Some(&b"recovered"[..]));
        } else {
            assert_eq!(
                kv.get(b"k"),
                None,
                "the broken variant drops the accepted value"
            );
        }
    }
}

#[test]
fn leader_failover_elects_a_new_leader_that_serves_requests() {
    let mut c = multi(5);
    let old = c.elect(5 * SECOND).unwrap();
    c.down[old.0 as usize] = true;
    let new = c.elect(5 * SECOND).expect("a new leader");
    assert_ne!(new, old);
    let p = put(2, 1, b"x", b"y");
    c.request(new, p.clone());
    c.run();
    assert_eq!(outcome_of(&c, &p), vec![Outcome::Done]);
    assert!(c.nodes[new.0 as usize].stats().elections_won >= 1);
}

#[test]
fn a_retried_request_executes_once_and_gets_the_cached_reply() {
    let mut c = multi(3);
    let leader = c.elect(5 * SECOND).unwrap();
    let first = put(4, 1, b"k", b"a");
    c.request(leader, first.clone());
    c.run();
    c.request(leader, put(4, 2, b"k", b"b"));
    c.run();
    c.request(leader, first.clone()); // a late retry of request 1
    c.run();
    assert_eq!(outcome_of(&c, &first), vec![Outcome::Done, Outcome::Done]);
    assert_eq!(
        c.nodes[leader.0 as usize]
            .kv()
            .get(b"k")
            .map(|v| v.as_ref()),
        Some(&b"b"[..])
    );
    assert_eq!(c.nodes[leader.0 as usize].stats().commands_executed, 2);
}

#[test]
fn skipping_phase1_off_runs_a_prepare_per_slot() {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| {
        c.skip_phase1 = false;
        c.max_batch = 1;
    });
    let leader = c.elect(5 * SECOND).unwrap();
    let before = c.nodes[leader.0 as usize].stats().phase1_rounds;
    for r in 0..5 {
        c.request(leader, put(1, r, b"k", b"v"));
    }
    c.run();
    assert_eq!(c.replies.len(), 5);
    assert_eq!(c.nodes[leader.0 as usize].stats().phase1_rounds - before, 5);
}

#[test]
fn basic_paxos_contending_proposers_all_finish_in_distinct_slots() {
    let mut c = LocalCluster::new(Protocol::BasicPaxos, 3, |c| c.seed = 7);
    for n in 0..3u32 {
        for r in 0..5 {
            c.request(
                NodeId(n),
                put(u64::from(n), r, format!("k{n}").as_bytes(), b"v"),
            );
        }
    }
    c.advance(20 * SECOND);
    assert_eq!(
        c.replies
            .iter()
            .filter(|r| r.outcome == Outcome::Done)
            .count(),
        15
    );
    c.advance(SECOND);
    let executed: Vec<Slot> = c.nodes.iter().map(|n| n.executed()).collect();
    assert!(
        executed.iter().all(|e| *e == Slot(15)),
        "15 slots, one command each: {executed:?}"
    );
    assert!(c.nodes.iter().all(|n| n.role() == Role::Proposer));
}

#[test]
fn unreplicated_answers_at_once() {
    let mut c = LocalCluster::new(Protocol::Unreplicated, 1, |_| {});
    let p = put(1, 1, b"k", b"v");
    c.request(NodeId(0), p.clone());
    c.run();
    assert_eq!(outcome_of(&c, &p), vec![Outcome::Done]);
}

/// The baseline every result is normalised against holds nothing per executed command: after
/// 20,000 puts it holds no log at all, and a retry is still answered from the reply cache.
#[test]
fn unreplicated_holds_no_log_of_what_it_executed() {
    let mut c = LocalCluster::new(Protocol::Unreplicated, 1, |_| {});
    for request in 1..=20_000 {
        let key = format!("k{}", request % 100);
        c.request(NodeId(0), put(1, request, key.as_bytes(), b"v"));
        if request % 1_000 == 0 {
            c.run();
        }
    }
    c.run();
    let n = &c.nodes[0];
    assert_eq!(c.replies.len(), 20_000);
    assert_eq!(n.executed(), Slot(20_000));
    assert_eq!(n.log_len(), 0, "an unreplicated node keeps no log");
    assert_eq!(n.kv().len(), 100);
    let retry = put(1, 20_000, b"k0", b"other");
    c.request(NodeId(0), retry.clone());
    c.run();
    assert_eq!(outcome_of(&c, &retry).last(), Some(&Outcome::Done));
    assert_eq!(n_get(&c, b"k0"), Some(bytes::Bytes::from_static(b"v")));
}

/// A silent session is dropped on every replica at the same slot, by the log's clock, and a
/// late retry of its request is answered `Expired`, never executed again; an active session is
/// kept. For each protocol.
#[test]
fn silent_sessions_expire_alike_on_every_replica_and_are_never_re_executed() {
    for (protocol, n) in [
        (Protocol::MultiPaxos, 3),
        (Protocol::BasicPaxos, 3),
        (Protocol::Unreplicated, 1),
    ] {
        let mut c = LocalCluster::new(protocol, n, |c| {
            c.session_timeout = Duration::from_secs(1);
        });
        let to = if protocol == Protocol::MultiPaxos {
            c.elect(5 * SECOND).unwrap()
        } else {
            NodeId(0)
        };
        let silent = put(1, 1, b"k", b"first");
        c.request(to, silent.clone());
        c.run();
        assert_eq!(outcome_of(&c, &silent), vec![Outcome::Done], "{protocol}");
        for r in 1..=30 {
            c.advance(Duration::from_millis(100));
            c.request(to, put(2, r, b"j", b"busy"));
            c.run();
        }
        c.advance(Duration::from_millis(200));
        let counts: Vec<usize> = c.nodes.iter().map(|n| n.kv().session_count()).collect();
        assert!(
            counts.iter().all(|&k| k == 1),
            "{protocol}: sessions {counts:?}"
        );
        let retry = put(1, 1, b"k", b"again");
        c.request(to, retry.clone());
        c.run();
        assert_eq!(
            outcome_of(&c, &retry).last(),
            Some(&Outcome::Expired),
            "{protocol}"
        );
        assert_eq!(n_get(&c, b"k"), Some(bytes::Bytes::from_static(b"first")));
    }
}

fn n_get(c: &LocalCluster, key: &[u8]) -> Option<bytes::Bytes> {
    c.nodes[0].kv().get(key).cloned()
}

#[test]
fn truncation_keeps_memory_bounded_and_a_restarted_node_catches_up_from_a_snapshot() {
    // With durable snapshots (fsync) and without (durability none: truncation copies nothing and
    // a lagging peer gets a snapshot made on demand).
    for durable in [true, false] {
        truncation_with(durable);
    }
}

#[test]
fn without_durable_snapshots_the_log_is_truncated_every_truncate_interval_slots() {
    for durable in [true, false] {
        let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| {
            c.durable_snapshots = durable;
            c.snapshot_interval = 1_000;
            c.truncate_interval = 50;
            c.max_batch = 1;
        });
        let leader = c.elect(5 * SECOND).unwrap();
        for request in 1..=500 {
            c.request(leader, put(1, request, b"k", b"v"));
            if request % 25 == 0 {
                c.run();
            }
        }
        c.advance(Duration::from_millis(100));
        assert_eq!(c.replies.len(), 500);
        for n in &c.nodes {
            let taken = n.stats().snapshots_taken;
            if durable {
                // Durable snapshots copy the state: they keep `snapshot_interval`.
                assert_eq!(taken, 0, "durable: {:?}", n.stats());
                assert!(n.log_len() >= 500, "durable: log {}", n.log_len());
            } else {
                assert!((5..=10).contains(&taken), "not durable: {:?}", n.stats());
                assert!(n.log_len() <= 200, "not durable: log {}", n.log_len());
            }
        }
    }
}

fn truncation_with(durable: bool) {
    let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| {
        c.durable_snapshots = durable;
        c.snapshot_interval = 50;
        c.log_retain_slots = 200;
        c.max_batch = 1;
    });
    let leader = c.elect(5 * SECOND).unwrap();
    let lagger = NodeId((leader.0 + 1) % 3);
    let mut request = 0;
    for _ in 0..20 {
        for _ in 0..50 {
            request += 1;
            c.request(
                leader,
                put(1, request, format!("k{}", request % 17).as_bytes(), b"v"),
            );
        }
        c.run();
        if request == 300 {
            c.down[lagger.0 as usize] = true;
        }
    }
    c.advance(Duration::from_millis(100));
    let l = &c.nodes[leader.0 as usize];
    assert_eq!(c.replies.len(), 1000);
    assert!(
        l.log_len() <= 400,
        "log bounded by retention: {}",
        l.log_len()
    );
    assert!(
        l.accepted_len() <= 400,
        "acceptor bounded: {}",
        l.accepted_len()
    );
    // With the lagger down, truncation proceeds once it is `log_retain_slots` behind.
    assert!(
        l.log_start() >= Slot(1000 - 200 - 50),
        "log start {:?}",
        l.log_start()
    );
    assert!(l.stats().snapshots_taken >= 5, "{:?}", l.stats());
    // The lagging node restarts (keeping what it persisted) far behind the truncation point.
    c.down[lagger.0 as usize] = false;
    c.restart(lagger);
    c.advance(Duration::from_millis(500));
    let n = &c.nodes[lagger.0 as usize];
    assert!(n.stats().snapshots_installed >= 1);
    assert_eq!(n.executed(), c.nodes[leader.0 as usize].executed());
    assert_eq!(n.kv(), c.nodes[leader.0 as usize].kv());
}

#[test]
fn a_promise_survives_a_restart_unless_the_bug_forgets_it() {
    for (bug, survives) in [(None, true), (Some(Bug::ForgetPromiseOnRestart), false)] {
        let mut c = LocalCluster::new(Protocol::MultiPaxos, 3, |c| c.bug = bug);
        c.elect(5 * SECOND).unwrap();
        let before = c.nodes[2].promised();
        assert!(before > Ballot::ZERO);
        c.restart(NodeId(2));
        assert_eq!(c.nodes[2].promised() == before, survives);
    }
}

/// A node restarted without its durable state must not vote on promises it forgot: it rejoins
/// as a learner that never sends Promise or Accepted, while the others keep serving.
#[test]
fn a_node_restarted_without_state_learns_but_never_votes() {
    let mut c = multi(3);
    let leader = c.elect(5 * SECOND).unwrap();
    for r in 0..20 {
        c.request(leader, put(1, r, b"k", format!("v{r}").as_bytes()));
    }
    c.run();
    let amnesiac = NodeId((leader.0 + 1) % 3);
    let i = amnesiac.0 as usize;
    let config = c.nodes[i].config().clone();
    c.nodes[i] = Node::rejoin_without_state(config).unwrap();
    assert!(!c.nodes[i].voting());
    for r in 20..40 {
        c.request(leader, put(1, r, b"k", format!("v{r}").as_bytes()));
    }
    c.advance(Duration::from_millis(300));
    assert_eq!(c.replies.len(), 40, "the two voters keep serving");
    let n = &c.nodes[i];
    assert_eq!(n.stats().sent_of(paxos::MessageKind::Promise), 0);
    assert_eq!(n.stats().sent_of(paxos::MessageKind::Accepted), 0);
    assert_eq!(
        n.executed(),
        c.nodes[leader.0 as usize].executed(),
        "it caught up"
    );
    assert_eq!(n.kv().get(b"k").map(|v| v.as_ref()), Some(&b"v39"[..]));
    // The leader dies: the learner does not campaign, so with one voter left nobody leads,
    // rather than risking two values in one slot.
    c.down[leader.0 as usize] = true;
    c.advance(3 * SECOND);
    assert_eq!(c.nodes[i].stats().campaigns, 0);
    assert_ne!(c.nodes[i].role(), Role::Leader);
}

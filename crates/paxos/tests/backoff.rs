//! Basic Paxos backoff and the counters that show contention: a proposer measures its own
//! phase-1 round trips, backoff given in round trips scales with them, and every decided command
//! is counted under the attempt that decided it.

use std::time::Duration;

use paxos::testing::{put, LocalCluster};
use paxos::{
    Action, BackoffMode, BackoffSpan, Ballot, Config, Message, Nack, Node, NodeId, Protocol, Time,
    ATTEMPT_BUCKETS,
};

const MS: Duration = Duration::from_millis(1);

/// Node 0 of three proposes once and is refused after `rtt`: the backoff it then waits, and its
/// round-trip estimate.
fn backoff_after_a_nack(seed: u64, base: BackoffSpan, cap: BackoffSpan, rtt: Duration) -> Duration {
    let ids = vec![NodeId(0), NodeId(1), NodeId(2)];
    let mut c = Config::new(Protocol::BasicPaxos, NodeId(0), ids);
    c.seed = seed;
    c.backoff.mode = BackoffMode::Full;
    c.backoff.base = base;
    c.backoff.cap = cap;
    let mut node = Node::new(c).unwrap();
    let mut out = Vec::new();
    node.handle_request(Time::ZERO, put(1, 1, b"k", b"v"));
    // The Prepare leaves once the proposer's own promise is durable.
    let mut ballot = None;
    for _ in 0..3 {
        node.drain_actions(Time::ZERO, &mut out);
        for a in out.drain(..) {
            match a {
                Action::Persist { token, .. } => node.handle_persisted(Time::ZERO, token),
                Action::Broadcast {
                    msg: Message::Prepare(p),
                } => ballot = Some(p.ballot),
                _ => {}
            }
        }
    }
    let ballot = ballot.expect("a proposer with a command sends a Prepare");
    let now = Time::ZERO + rtt;
    let nack = Nack {
        ballot,
        promised: Ballot::new(ballot.round + 5, NodeId(2)),
        slot: None,
    };
    node.handle_message(now, NodeId(1), Message::Nack(nack));
    assert_eq!(
        node.stats().phase1_rtt,
        Some(rtt),
        "a Nack ends a round trip"
    );
    assert_eq!(node.stats().preemptions, 1);
    node.stats().backoff_time
}

#[test]
fn backoff_in_round_trips_scales_with_the_measured_phase1_round_trip() {
    let base = "2rtt".parse::<BackoffSpan>().unwrap();
    let cap = "64rtt".parse::<BackoffSpan>().unwrap();
    for rtt in [100 * Duration::from_micros(1), 40 * MS] {
        // Full jitter: the first retry waits uniform(0, 2 rtt).
        let waits: Vec<Duration> = (0..40)
            .map(|seed| backoff_after_a_nack(seed, base, cap, rtt))
            .collect();
        let max = *waits.iter().max().unwrap();
        assert!(max <= 2 * rtt, "rtt {rtt:?}: waited {max:?}");
        assert!(max > rtt, "rtt {rtt:?}: 40 draws below {max:?}");
    }
    // The same draws with a fixed 1 ms base never wait more than 1 ms, whatever the round trip.
    let fixed = BackoffSpan::Fixed(MS);
    let cap = BackoffSpan::Fixed(100 * MS);
    let max = (0..40)
        .map(|seed| backoff_after_a_nack(seed, fixed, cap, 40 * MS))
        .max()
        .unwrap();
    assert!(max <= MS, "{max:?}");
}

#[test]
fn a_cap_in_round_trips_bounds_a_fixed_base() {
    // base 10 ms, cap 2 rtt of 1 ms: the cap wins.
    let waits = (0..40).map(|seed| {
        backoff_after_a_nack(
            seed,
            BackoffSpan::Fixed(10 * MS),
            "2rtt".parse().unwrap(),
            MS,
        )
    });
    assert!(waits.max().unwrap() <= 2 * MS);
}

#[test]
fn spans_parse_from_their_written_forms_and_bad_ones_say_why() {
    for (text, span) in [
        ("500us", BackoffSpan::Fixed(Duration::from_micros(500))),
        ("1ms", BackoffSpan::Fixed(MS)),
        ("0.2s", BackoffSpan::Fixed(200 * MS)),
        ("2rtt", BackoffSpan::Rtts { milli: 2000 }),
        ("0.5rtt", BackoffSpan::Rtts { milli: 500 }),
        (
            "max(100ms,25rtt)",
            BackoffSpan::AtLeast {
                floor: 100 * MS,
                milli: 25_000,
            },
        ),
        (
            "max( 2rtt , 5ms )",
            BackoffSpan::AtLeast {
                floor: 5 * MS,
                milli: 2000,
            },
        ),
    ] {
        assert_eq!(text.parse::<BackoffSpan>(), Ok(span), "{text}");
        assert_eq!(
            span.to_string().parse::<BackoffSpan>(),
            Ok(span),
            "{span} round trip"
        );
    }
    for (text, why) in [
        ("2", "no unit"),
        ("rtt", "not a number"),
        ("-1ms", "0 or more"),
        ("3 parsecs", "unknown unit"),
        ("2h", "unknown unit"),
        ("0.0001rtt", "resolution"),
        ("max(1ms)", "two spans"),
        ("max(1ms,2ms)", "one fixed span and one in round trips"),
        ("max(1ms,2rtt,3rtt)", "two spans"),
    ] {
        let e = text.parse::<BackoffSpan>().unwrap_err().to_string();
        assert!(e.contains(why) && e.contains(text), "{text}: {e}");
    }
}

#[test]
fn every_decided_command_is_counted_under_the_attempt_that_decided_it() {
    let mut c = LocalCluster::new(Protocol::BasicPaxos, 3, |c| c.seed = 7);
    for n in 0..3u32 {
        for r in 0..5 {
            c.request(
                NodeId(n),
                put(u64::from(n), r, format!("k{n}").as_bytes(), b"v"),
            );
        }
    }
    c.advance(Duration::from_secs(20));
    let stats: Vec<_> = c.nodes.iter().map(|n| n.stats().clone()).collect();
    let decided: u64 = stats.iter().map(|s| s.decided_own()).sum();
    assert_eq!(decided, 15, "each command once, by its own proposer");
    // Three proposers racing for the same first slots: someone lost at least once.
    let retried: u64 = stats
        .iter()
        .map(|s| s.attempts[1..].iter().sum::<u64>())
        .sum();
    let preempted: u64 = stats.iter().map(|s| s.preemptions).sum();
    assert!(preempted > 0 && retried > 0, "{stats:?}");
    // One command per attempt: the attempts add up to at most the phase-1 rounds started.
    let attempts: u64 = stats
        .iter()
        .flat_map(|s| s.attempts.iter().enumerate())
        .map(|(k, n)| (k as u64 + 1) * n)
        .sum();
    let rounds: u64 = stats.iter().map(|s| s.phase1_rounds).sum();
    assert!(
        attempts <= rounds && attempts >= decided,
        "{attempts} attempts, {rounds} rounds"
    );
    assert_eq!(stats[0].attempts.len(), ATTEMPT_BUCKETS);
}

/// Drains `node` at `now`, completing its writes, until it is quiet; what it sent.
fn drain(node: &mut Node, now: Time) -> Vec<Message> {
    let (mut out, mut sent) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        node.drain_actions(now, &mut out);
        for a in out.drain(..) {
            match a {
                Action::Persist { token, .. } => node.handle_persisted(now, token),
                Action::Broadcast { msg } | Action::Send { msg, .. } => sent.push(msg),
                Action::Reply(_) => {}
            }
        }
    }
    sent
}

#[test]
fn our_commands_chosen_under_an_earlier_attempts_stamp_are_our_win() {
    // Node 0 gets its command accepted by itself and node 1 at ballot b1, is refused by node 2,
    // and retries under a new ballot, with a new stamp. Meanwhile node 1's proposal found the
    // first attempt accepted and got it chosen: those are node 0's commands, decided.
    let ids = vec![NodeId(0), NodeId(1), NodeId(2)];
    let mut c = Config::new(Protocol::BasicPaxos, NodeId(0), ids);
    c.backoff.mode = BackoffMode::None;
    let mut node = Node::new(c).unwrap();
    let t0 = Time::ZERO;
    node.handle_request(t0, put(1, 1, b"k", b"v"));
    let b1 = drain(&mut node, t0)
        .into_iter()
        .find_map(|m| match m {
            Message::Prepare(p) => Some(p.ballot),
            _ => None,
        })
        .unwrap();
    let promise = paxos::Promise {
        ballot: b1,
        scope: paxos::PrepareScope::Only(paxos::Slot(0)),
        log_start: paxos::Slot(0),
        accepted: Vec::new(),
        executed: paxos::Slot(0),
    };
    node.handle_message(t0 + MS, NodeId(1), Message::Promise(promise));
    let first = drain(&mut node, t0 + MS)
        .into_iter()
        .find_map(|m| match m {
            Message::Accept(a) => Some(a.value),
            _ => None,
        })
        .expect("a quorum of promises starts phase 2");
    let nack = Nack {
        ballot: b1,
        promised: Ballot::new(b1.round + 1, NodeId(2)),
        slot: Some(paxos::Slot(0)),
    };
    let t1 = t0 + 2 * MS;
    node.handle_message(t1, NodeId(2), Message::Nack(nack));
    let retried = drain(&mut node, t1)
        .iter()
        .any(|m| matches!(m, Message::Prepare(p) if p.ballot > b1));
    assert!(retried, "no backoff: the retry starts at once");
    let learn = paxos::Learn {
        entries: vec![paxos::ChosenEntry {
            slot: paxos::Slot(0),
            value: first,
        }],
    };
    node.handle_message(t1 + MS, NodeId(1), Message::Learn(learn));
    drain(&mut node, t1 + MS);
    let s = node.stats();
    assert_eq!(s.preemptions, 1, "only the Nack preempted us: {s:?}");
    assert_eq!(s.attempts[1], 1, "decided by our second attempt: {s:?}");
    assert_eq!(node.queued(), 0, "nothing re-queued to be proposed twice");
}

#[test]
fn the_default_cap_is_the_longer_of_100_ms_and_25_round_trips() {
    let cap = Config::new(Protocol::BasicPaxos, NodeId(0), vec![NodeId(0)])
        .backoff
        .cap;
    assert_eq!(cap, BackoffSpan::DEFAULT_CAP);
    assert_eq!(cap.to_string(), "max(100ms,25rtt)");
    // Loopback (0.4 ms round trips) and before any measurement (1 ms assumed): 100 ms.
    assert_eq!(cap.resolve(Some(Duration::from_micros(400))), 100 * MS);
    assert_eq!(cap.resolve(None), 100 * MS);
    // Across regions (a 43 ms round trip): 25 of them.
    assert_eq!(cap.resolve(Some(43 * MS)), 1075 * MS);
}

//! The same seed replays the same run exactly; different seeds give different runs; the thread
//! count of a sweep changes nothing but its speed.

use paxos::Protocol;
use sim::{run, run_seeds, FaultProfile, SimConfig};

#[test]
fn a_seed_replays_exactly() {
    for protocol in [Protocol::MultiPaxos, Protocol::BasicPaxos] {
        let cfg = SimConfig::new(protocol, 3, 42, FaultProfile::All);
        let (a, b) = (run(&cfg), run(&cfg));
        assert_eq!(a.stats, b.stats);
        assert_eq!(a.history, b.history);
        assert_eq!(a.failure, b.failure);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert!(!a.history.is_empty());
        let other = run(&cfg.with_seed(43));
        assert_ne!(a.history, other.history, "seeds 42 and 43 ran the same");
        assert_ne!(a.fingerprint, other.fingerprint);
    }
}

#[test]
fn failures_replay_with_the_same_trace() {
    // A broken variant fails; replaying its seed must print the very same report.
    let mut cfg = SimConfig::new(Protocol::MultiPaxos, 3, 0, FaultProfile::Lossy);
    cfg.bug = Some(paxos::Bug::CommitWithoutQuorum);
    let first = run(&cfg)
        .failure
        .expect("the broken variant fails on seed 0");
    let again = run(&cfg).failure.expect("and again");
    assert_eq!(first, again);
    assert!(!first.trace.is_empty() && first.trace.len() <= cfg.trace_len);
    let text = first.to_string();
    assert!(
        text.contains("seed 0") && text.contains(first.check.name()),
        "{text}"
    );
}

#[test]
fn thread_count_does_not_change_results() {
    let base = SimConfig::new(Protocol::MultiPaxos, 3, 0, FaultProfile::All);
    let mut one = Vec::new();
    let s1 = run_seeds(&base, 10..30, 1, |r| one.push((r.seed, r.stats.clone())));
    let mut two = Vec::new();
    let s2 = run_seeds(&base, 10..30, 3, |r| two.push((r.seed, r.stats.clone())));
    assert_eq!(
        one, two,
        "reports must come in seed order with identical contents"
    );
    assert_eq!(s1.steps, s2.steps);
    assert_eq!(
        one.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (10..30).collect::<Vec<_>>()
    );
}

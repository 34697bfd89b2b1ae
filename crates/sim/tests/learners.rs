//! Learners (`paxos::Config::learners`) execute what the voters choose and never vote; a learner
//! that votes is caught.

use paxos::{Bug, MessageKind, Protocol};
use sim::{run, Check, FaultProfile, SimConfig};

fn with_learners(protocol: Protocol, seed: u64, faults: FaultProfile) -> SimConfig {
    let mut cfg = SimConfig::new(protocol, 3, seed, faults);
    cfg.learners = Some(2);
    // A membership change could make a learner a voter: tests/reconfig.rs covers that.
    cfg.reconfigs = Some(false);
    cfg
}

#[test]
fn learners_execute_the_log_and_never_vote() {
    for protocol in [Protocol::MultiPaxos, Protocol::BasicPaxos] {
        for seed in 0..20 {
            // No faults: every node's counters are there at the end, and a learner has heard of
            // every chosen slot (under loss it may end the run still asking for a missed one).
            let report = run(&with_learners(protocol, seed, FaultProfile::None));
            if let Some(f) = report.failure {
                panic!("{f}");
            }
            let stats = &report.stats.node_stats;
            assert_eq!(stats.len(), 5, "{protocol:?} seed {seed}");
            for learner in &stats[3..] {
                assert!(
                    learner.commands_executed > 0,
                    "{protocol:?} seed {seed}: {learner:?} {}",
                    report.stats.completed
                );
                assert_eq!(learner.sent_of(MessageKind::Promise), 0);
                assert_eq!(learner.sent_of(MessageKind::Accepted), 0);
                assert_eq!(learner.campaigns, 0);
            }
        }
    }
}

#[test]
fn runs_with_learners_pass_every_check_under_all_faults() {
    for protocol in [Protocol::MultiPaxos, Protocol::BasicPaxos] {
        for seed in 0..150 {
            if let Some(f) = run(&with_learners(protocol, seed, FaultProfile::All)).failure {
                panic!("{f}");
            }
        }
    }
}

#[test]
fn a_learner_that_votes_is_caught() {
    let mut cfg = with_learners(Protocol::MultiPaxos, 0, FaultProfile::None);
    cfg.bug = Some(Bug::LearnerVotes);
    let f = run(&cfg).failure.expect("caught on seed 0");
    assert_eq!(f.check, Check::LearnersNeverVote, "{f}");
    assert!(
        f.detail.starts_with("learner n3,") || f.detail.starts_with("learner n4,"),
        "{f}"
    );
}

//! Runs with `reads = "lease"` (half the seeds draw it) answer reads outside the log, and the
//! real-time-reads and lease-overlap checks pass them; a leader that reads past its lease is
//! caught by each of the two on its own.

use paxos::{Bug, Protocol};
use sim::{run, Check, FaultProfile, SimConfig};

#[test]
fn lease_runs_read_locally_and_pass_every_check() {
    let mut local_reads = 0;
    for seed in 0..300 {
        let cfg = SimConfig::new(Protocol::MultiPaxos, 3, seed, FaultProfile::Partitions);
        let report = run(&cfg);
        if let Some(f) = report.failure {
            panic!("{f}");
        }
        local_reads += report
            .stats
            .node_stats
            .iter()
            .map(|s| s.local_reads)
            .sum::<u64>();
    }
    assert!(local_reads > 100, "only {local_reads} local reads");
}

/// The first failure of a leader that reads past its lease, within 500 `partitions` seeds.
fn first_catch(check_lease_overlap: bool) -> sim::Failure {
    let caught = (0..500).find_map(|seed| {
        let mut cfg = SimConfig::new(Protocol::MultiPaxos, 3, seed, FaultProfile::Partitions);
        cfg.bug = Some(Bug::ReadsAfterLeaseExpiry);
        cfg.check_lease_overlap = check_lease_overlap;
        run(&cfg).failure
    });
    caught.expect("caught within 500 seeds")
}

#[test]
fn a_leader_reading_past_its_lease_fails_the_lease_overlap_check_first() {
    let f = first_catch(true);
    assert_eq!(f.check, Check::LeaseOverlap, "{f}");
}

#[test]
fn without_the_overlap_check_the_real_time_check_sees_the_stale_read() {
    let f = first_catch(false);
    assert_eq!(f.check, Check::RealTimeReads, "{f}");
}

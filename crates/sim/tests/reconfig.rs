//! Membership change (`Op::Reconfigure`): runs that swap, add and remove voters under faults
//! pass every check, the changes really happen (and some are refused), and a change that
//! governs from the very next slot is caught.

use paxos::{Bug, Protocol};
use sim::{run, Check, FaultProfile, SimConfig};

fn reconfiguring(seed: u64, faults: FaultProfile) -> SimConfig {
    let mut cfg = SimConfig::new(Protocol::MultiPaxos, 3, seed, faults);
    cfg.reconfigs = Some(true);
    cfg
}

#[test]
fn runs_that_change_membership_pass_every_check_under_all_faults() {
    let (mut done, mut refused, mut promoted) = (0, 0, 0);
    for seed in 0..60 {
        let report = run(&reconfiguring(seed, FaultProfile::All));
        if let Some(f) = report.failure {
            panic!("{f}");
        }
        done += report.stats.reconfigs_done;
        refused += report.stats.reconfigs_refused;
        // A node beyond the first three voted: it was made a voter by a change.
        let beyond = &report.stats.node_stats[3..];
        if beyond
            .iter()
            .any(|s| s.sent_of(paxos::MessageKind::Accepted) > 0)
        {
            promoted += 1;
        }
    }
    assert!(done >= 30, "{done} changes in 60 seeds");
    assert!(
        promoted >= 10,
        "a promoted node voted on only {promoted} seeds"
    );
    // The simulator picks changes from the voters the reference replayed, which may lag.
    assert!(refused > 0 || done > 0);
}

#[test]
fn a_change_that_governs_from_the_next_slot_is_caught() {
    let caught = (0..200).find_map(|seed| {
        let mut cfg = reconfiguring(seed, FaultProfile::Lossy);
        cfg.bug = Some(Bug::ReconfigNextSlot);
        run(&cfg).failure
    });
    let f = caught.expect("caught within 200 lossy seeds");
    assert_eq!(f.check, Check::ExecutedLogsAgree, "{f}");
    // The same seed without the bug passes.
    let good = run(&reconfiguring(f.seed, FaultProfile::Lossy));
    assert!(good.failure.is_none(), "{:?}", good.failure);
}

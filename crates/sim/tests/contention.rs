//! Three Basic Paxos proposers fighting over the same slots: with randomized exponential backoff
//! every command completes and fewer rounds are wasted than with no backoff at all.

use paxos::BackoffMode;
use sim::{contention, fixed_backoff, rtt_backoff};

#[test]
fn backoff_completes_everything_and_wastes_fewer_rounds() {
    let mut wasted = (0, 0);
    for seed in 0..3 {
        let with = contention(seed, fixed_backoff(BackoffMode::Full), 10);
        let without = contention(seed, fixed_backoff(BackoffMode::None), 10);
        let in_rtts = contention(seed, rtt_backoff(BackoffMode::Full), 10);
        assert!(in_rtts.all_completed() && in_rtts.wasted_rounds < without.wasted_rounds);
        for r in [&with, &without, &in_rtts] {
            println!(
                "seed {seed} backoff {:?}: {}/{} commands, last done at {} virtual, {} phase-1 rounds for {} slots ({} wasted), {} preemptions",
                r.backoff, r.completed, r.commands, r.virtual_time, r.phase1_rounds, r.slots_chosen, r.wasted_rounds, r.preemptions
            );
            assert!(
                r.failure.is_none(),
                "safety failure under contention: {}",
                r.failure.as_ref().unwrap()
            );
        }
        assert!(
            with.all_completed(),
            "with backoff only {}/{} commands completed",
            with.completed,
            with.commands
        );
        assert_eq!(with.commands, 30);
        assert!(with.slots_chosen >= 30);
        wasted.0 += with.wasted_rounds;
        wasted.1 += without.wasted_rounds;
    }
    assert!(
        wasted.0 < wasted.1,
        "backoff wasted {} rounds, no backoff {}",
        wasted.0,
        wasted.1
    );
}

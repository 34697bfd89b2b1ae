//! Every deliberately broken variant of the core must be caught by a safety checker (the logic
//! behind `paxbench sim --self-test`), and the correct core must pass the same seeds.

use sim::selftest::{self_test_case, BUG_CASES};
use sim::{run_seeds, SimConfig};

#[test]
fn every_bug_variant_is_caught() {
    for case in BUG_CASES {
        let result = self_test_case(case, 3, 500, 2);
        let caught = result.caught.unwrap_or_else(|| {
            panic!(
                "{:?} was not caught in {} seeds ({} non-safety failures)",
                case.bug, result.seeds_tried, result.other_failures
            )
        });
        assert!(
            caught.check.is_safety(),
            "{:?} caught only by {}",
            case.bug,
            caught.check
        );
        println!(
            "{:?}: {} at seed {}: {}",
            case.bug, caught.check, caught.seed, caught.detail
        );

        // The same seed without the bug passes: the failure is the bug's, not the harness's.
        let clean = SimConfig::new(case.protocol, 3, caught.seed, case.faults);
        let summary = run_seeds(&clean, caught.seed..caught.seed + 1, 1, |_| {});
        assert!(
            summary.failures.is_empty(),
            "seed {} fails without the bug too: {:?}",
            caught.seed,
            summary.failures
        );
    }
}

//! The operations reported with a violation: few, on the violating key, still not
//! linearizable, and 1-minimal.

mod common;

use common::*;
use lincheck::{Operation, Verdict};

/// Linearizable traffic on `key` in `[from, from + 10 * rounds)`: each round, one client
/// writes a fresh value and two others read it, one of them overlapping the write.
fn noise(key: &str, from: u64, rounds: u64, tag: &str) -> Vec<Operation> {
    let mut ops = Vec::new();
    for r in 0..rounds {
        let t = from + 10 * r;
        let value = format!("{tag}-{key}-{r}");
        ops.push(put(1, key, &value, t, t + 4));
        ops.push(get(2, key, Some(&value), t + 2, t + 6)); // overlaps the write: either is fine
        ops.push(get(3, key, Some(&value), t + 5, t + 9));
    }
    ops
}

/// Checks the reported set as the docs promise it, and returns it.
fn reported(history: &[Operation], expect_key: &str) -> Vec<Operation> {
    let Verdict::Violation {
        key,
        operations,
        minimal,
    } = verdict(history)
    else {
        panic!("expected a violation");
    };
    assert_eq!(key, expect_key);
    assert!(minimal, "shrinking was not finished");
    assert!(operations.iter().all(|o| o.key == expect_key.as_bytes()));
    for op in &operations {
        assert!(history.contains(op), "{op:?} is not from the history");
    }
    // Still a violation on its own ...
    assert!(!is_linearizable(&operations), "{operations:#?}");
    // ... and 1-minimal: dropping any one operation (with the reads only it explains) fixes it.
    for i in 0..operations.len() {
        let rest = drop_with_dependents(&operations, i);
        assert!(
            is_linearizable(&rest),
            "dropping #{i} of {operations:#?} left {rest:#?}"
        );
    }
    operations
}

#[test]
fn stale_read_among_noise_shrinks_to_its_three_operations() {
    let core = vec![
        put(4, "hot", "A", 100_000, 100_010),
        put(5, "hot", "B", 100_020, 100_030),
        get(6, "hot", Some("A"), 100_040, 100_050),
    ];
    let mut history = noise("hot", 0, 2_000, "before"); // ends at 20 000
    history.extend(core.clone());
    history.push(get(2, "hot", Some("B"), 100_045, 100_060)); // consistent with the core
    history.extend(noise("hot", 200_000, 2_000, "after"));
    for k in 0..50 {
        history.extend(noise(&format!("cold{k}"), 0, 40, "n"));
    }
    // Mixed order: the checker must not rely on the history being sorted.
    history.reverse();

    let set = reported(&history, "hot");
    assert_eq!(
        set, core,
        "the minimal set is the stale read and the two writes"
    );
}

#[test]
fn read_of_a_value_never_written_shrinks_to_the_read() {
    let bogus = get(9, "hot", Some("never"), 50_005, 50_007);
    let mut history = noise("hot", 0, 10_000, "x");
    history.push(bogus.clone());
    history.extend(noise("other", 0, 100, "y"));
    let set = reported(&history, "hot");
    assert_eq!(set, vec![bogus]);
}

#[test]
fn violation_through_unknown_writes_keeps_them() {
    // An unknown write was seen, then a later read saw the value it had overwritten: the
    // unknown write is part of the explanation.
    let core = vec![
        put(1, "hot", "A", 10_000, 10_010),
        put_unknown(2, "hot", "U", 10_020),
        get(3, "hot", Some("U"), 10_100, 10_110),
        get(3, "hot", Some("A"), 10_200, 10_210),
    ];
    let mut history = noise("hot", 0, 500, "a"); // ends at 5 000
    history.extend(core.clone());
    // Unknown writes nobody saw, and unknown reads: noise the shrinking must drop.
    for i in 0..20 {
        history.push(put_unknown(7, "hot", &format!("lost{i}"), 10_000 + i));
        history.push(op(
            8,
            "hot",
            lincheck::Call::Get,
            10_000 + i,
            None,
            lincheck::Ret::Unknown,
        ));
    }
    let set = reported(&history, "hot");
    assert_eq!(set, core);
}

#[test]
fn many_interleaved_violations_still_shrink_to_a_small_set() {
    // A key where every round is a stale read: many overlapping explanations, any one will do.
    let mut history = Vec::new();
    for r in 0..300u64 {
        let t = 100 * r;
        history.push(put(1, "k", &format!("a{r}"), t, t + 10));
        history.push(put(2, "k", &format!("b{r}"), t + 20, t + 30));
        history.push(get(3, "k", Some(&format!("a{r}")), t + 40, t + 50));
    }
    let set = reported(&history, "k");
    assert_eq!(set.len(), 3, "{set:#?}");
}

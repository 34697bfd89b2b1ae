//! The budget bounds the call, and running out is `Unknown`, never `Linearizable`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lincheck::{check, Operation, Verdict};

/// `n` mutually concurrent writes, then two reads after all of them that disagree: not
/// linearizable, but proving it means trying every subset of the writes.
fn pathological(n: u64) -> Vec<Operation> {
    let mut h: Vec<Operation> = (0..n)
        .map(|i| put(i, "k", &format!("v{i}"), i, 1_000_000 + i))
        .collect();
    h.push(get(n, "k", Some("v0"), 2_000_000, 2_000_010));
    h.push(get(n, "k", Some("v1"), 2_000_020, 2_000_030));
    // And reads concurrent with everything.
    for i in 0..50 {
        h.push(get(
            n + 1 + i,
            "k",
            Some(&format!("v{}", i * 3)),
            10,
            1_500_000,
        ));
    }
    h
}

#[test]
fn pathological_history_runs_out_promptly() {
    let history = pathological(250);
    let start = Instant::now();
    let report = check(&history, Duration::from_millis(1)).unwrap();
    let took = start.elapsed();
    let Verdict::Unknown { reason } = &report.verdict else {
        panic!("expected unknown, got {}", report.verdict);
    };
    assert!(reason.contains("0 of 1 keys"), "{reason}");
    assert!(
        report.verdict.to_string().starts_with("unknown: "),
        "{}",
        report.verdict
    );
    assert_eq!(report.keys_checked, 0);
    // A generous bound on wall time: the point is that 1 ms does not become minutes.
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_larger_budget_is_used_but_not_overrun() {
    let history = pathological(250);
    let start = Instant::now();
    let report = check(&history, Duration::from_millis(300)).unwrap();
    let took = start.elapsed();
    assert!(
        matches!(report.verdict, Verdict::Unknown { .. }),
        "{}",
        report.verdict
    );
    assert!(
        took >= Duration::from_millis(300),
        "gave up early, after {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn no_budget_is_never_a_false_linearizable() {
    // Many keys, none checked: unknown, naming how far it got.
    let history: Vec<Operation> = (0..1_000)
        .flat_map(|k| {
            let key = format!("k{k}");
            [put(1, &key, "a", 0, 10), get(2, &key, Some("a"), 20, 30)]
        })
        .collect();
    let report = check(&history, Duration::ZERO).unwrap();
    assert_eq!(report.keys, 1_000);
    match &report.verdict {
        Verdict::Unknown { reason } => assert!(reason.contains("of 1000 keys"), "{reason}"),
        other => panic!("expected unknown, got {other}"),
    }
    // With time, the same history is linearizable.
    let report = check(&history, Duration::from_secs(10)).unwrap();
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert_eq!(report.keys_checked, 1_000);
}

#[test]
fn a_violation_found_before_the_budget_runs_out_is_reported() {
    // Key "a" is a violation found at once; key "b", after it in key order, is hopeless.
    let mut history = vec![put(1, "a", "x", 0, 10), get(2, "a", None, 20, 30)];
    history.extend(pathological(250).into_iter().map(|mut o| {
        o.key = b"b".to_vec();
        o
    }));
    let report = check(&history, Duration::from_millis(50)).unwrap();
    assert!(
        matches!(&report.verdict, Verdict::Violation { key, .. } if key == "a"),
        "{}",
        report.verdict
    );
}

#[test]
fn easy_wide_concurrency_is_decided() {
    // Not every concurrent history is hard: 250 concurrent writes, each read back by a read
    // that overlaps only it, are decided well within the budget.
    let mut history = Vec::new();
    for i in 0..250u64 {
        history.push(put(i, "k", &format!("v{i}"), 0, 1_000_000));
    }
    for i in 0..250u64 {
        history.push(get(
            1_000 + i,
            "k",
            Some(&format!("v{i}")),
            10 + 2 * i,
            10 + 2 * i,
        ));
    }
    let report = check(&history, Duration::from_secs(20)).unwrap();
    assert_eq!(report.verdict, Verdict::Linearizable);
}

#[test]
fn a_hopeless_key_does_not_hide_a_violation_on_a_later_one() {
    // Key "k" is hopeless; key "z", after it in key order, is a violation found at once.
    let mut history = pathological(250);
    history.extend([put(1, "z", "x", 0, 10), get(2, "z", None, 20, 30)]);
    let start = Instant::now();
    let report = check(&history, Duration::from_millis(400)).unwrap();
    assert!(
        matches!(&report.verdict, Verdict::Violation { key, .. } if key == "z"),
        "{}",
        report.verdict
    );
    // Found in the first pass, long before the budget ran out.
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn unknown_names_what_was_left_undecided() {
    let mut history = pathological(250);
    for k in 0..3 {
        let key = format!("z{k}");
        history.extend([put(1, &key, "x", 0, 10), get(2, &key, Some("x"), 20, 30)]);
    }
    let report = check(&history, Duration::from_millis(50)).unwrap();
    assert_eq!((report.keys, report.keys_checked), (4, 3));
    let Verdict::Unknown { reason } = &report.verdict else {
        panic!("expected unknown, got {}", report.verdict);
    };
    assert!(reason.contains("key k (302 operations)"), "{reason}");
    assert!(
        reason.contains("3 of 4 keys were found linearizable"),
        "{reason}"
    );
}

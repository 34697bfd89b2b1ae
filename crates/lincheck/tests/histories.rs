//! Hand-written histories. Most violations come with a near miss beside them: the same shape,
//! changed just enough to be linearizable, so that neither a checker that rejects everything
//! nor one that accepts everything passes.

mod common;

use std::time::Duration;

use common::*;
use lincheck::{check, Call, Malformed, Operation, Ret, Verdict};

#[test]
fn empty_history_is_linearizable() {
    let report = check(&[], Duration::from_secs(1)).unwrap();
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert_eq!(
        (report.operations, report.keys, report.keys_checked),
        (0, 0, 0)
    );
}

#[test]
fn sequential_history_is_linearizable() {
    assert_linearizable(&[
        get(1, "k", None, 0, 5),
        put(1, "k", "a", 10, 20),
        get(2, "k", Some("a"), 30, 40),
        put(2, "k", "b", 50, 60),
        get(1, "k", Some("b"), 70, 80),
        del(1, "k", 90, 100),
        get(2, "k", None, 110, 120),
    ]);
}

#[test]
fn sequential_history_with_a_wrong_read_is_not() {
    assert_violation(&[
        put(1, "k", "a", 10, 20),
        put(2, "k", "b", 50, 60),
        get(1, "k", Some("a"), 70, 80),
    ]);
}

#[test]
fn concurrent_read_may_see_either_side_of_a_write() {
    // The read overlaps the write: it may come before it or after it.
    assert_linearizable(&[put(1, "k", "a", 0, 100), get(2, "k", None, 10, 20)]);
    assert_linearizable(&[put(1, "k", "a", 0, 100), get(2, "k", Some("a"), 10, 20)]);
}

#[test]
fn concurrent_writes_in_both_orders() {
    let writes = [put(1, "k", "a", 0, 100), put(2, "k", "b", 10, 90)];
    for last in ["a", "b"] {
        let mut h = writes.to_vec();
        h.push(get(3, "k", Some(last), 200, 210));
        assert_linearizable(&h);
    }
    // Both reads after both writes must agree.
    let mut h = writes.to_vec();
    h.push(get(3, "k", Some("a"), 200, 210));
    h.push(get(3, "k", Some("b"), 220, 230));
    assert_violation(&h);
}

#[test]
fn stale_read_is_a_violation() {
    // `b` was acknowledged before the read was invoked: the read must not see `a`.
    assert_violation(&[
        put(1, "k", "a", 0, 10),
        put(1, "k", "b", 20, 30),
        get(2, "k", Some("a"), 40, 50),
    ]);
    // Near miss: the read was invoked before `b` was acknowledged.
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        put(1, "k", "b", 20, 30),
        get(2, "k", Some("a"), 25, 50),
    ]);
}

#[test]
fn stale_read_of_the_initial_absence() {
    assert_violation(&[put(1, "k", "a", 0, 10), get(2, "k", None, 20, 30)]);
}

#[test]
fn equal_instants_are_concurrent() {
    // The write returns at the very instant the read is invoked: either order is allowed.
    assert_linearizable(&[put(1, "k", "a", 0, 10), get(2, "k", None, 10, 20)]);
    // One nanosecond later, the write is strictly before.
    assert_violation(&[put(1, "k", "a", 0, 10), get(2, "k", None, 11, 20)]);
    // Both ends included: a read invoked at the instant the write returns may see it.
    assert_linearizable(&[get(2, "k", Some("a"), 0, 10), put(1, "k", "a", 10, 20)]);
    assert_violation(&[get(2, "k", Some("a"), 0, 9), put(1, "k", "a", 10, 20)]);
}

#[test]
fn lost_write_is_a_violation() {
    // W1 and then W2 acknowledged; a read after both sees what W1 overwrote.
    assert_violation(&[
        put(1, "k", "w0", 0, 10),
        put(1, "k", "w1", 20, 30),
        put(2, "k", "w2", 40, 50),
        get(3, "k", Some("w0"), 60, 70),
    ]);
    // Or sees the key absent, as if neither write happened.
    assert_violation(&[
        put(1, "k", "w1", 20, 30),
        put(2, "k", "w2", 40, 50),
        get(3, "k", None, 60, 70),
    ]);
    // Near miss: W1 lost to a concurrent W2 is fine, if reads see W2.
    assert_linearizable(&[
        put(1, "k", "w1", 20, 45),
        put(2, "k", "w2", 40, 50),
        get(3, "k", Some("w1"), 60, 70),
    ]);
}

#[test]
fn double_execution_is_a_violation() {
    // A acknowledged, then B acknowledged; a read sees B and a later read sees A again, as a
    // retried `Put(A)` executed a second time would make it.
    assert_violation(&[
        put(1, "k", "A", 0, 10),
        put(1, "k", "B", 20, 30),
        get(2, "k", Some("B"), 40, 50),
        get(2, "k", Some("A"), 60, 70),
    ]);
    // Near miss: a second `Put(A)` that the history records, overlapping the second read,
    // explains it.
    assert_linearizable(&[
        put(1, "k", "A", 0, 10),
        put(1, "k", "B", 20, 30),
        get(2, "k", Some("B"), 40, 50),
        put(1, "k", "A", 45, 65),
        get(2, "k", Some("A"), 60, 70),
    ]);
}

#[test]
fn read_of_a_value_never_written_is_a_violation() {
    assert_violation(&[put(1, "k", "a", 0, 10), get(2, "k", Some("zzz"), 5, 30)]);
    assert_violation(&[get(2, "k", Some("zzz"), 5, 30)]);
}

#[test]
fn read_from_the_future_is_a_violation() {
    assert_violation(&[get(2, "k", Some("a"), 0, 10), put(1, "k", "a", 20, 30)]);
}

#[test]
fn unknown_write_that_took_effect() {
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        put_unknown(1, "k", "b", 20),
        get(2, "k", Some("b"), 1_000, 1_010),
    ]);
}

#[test]
fn unknown_write_that_did_not_take_effect() {
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        put_unknown(1, "k", "b", 20),
        get(2, "k", Some("a"), 1_000, 1_010),
        get(2, "k", Some("a"), 2_000, 2_010),
    ]);
}

#[test]
fn unknown_write_may_take_effect_arbitrarily_late() {
    // Not seen by the first read, seen by the second, long after its invocation.
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        put_unknown(1, "k", "b", 20),
        get(2, "k", Some("a"), 1_000, 1_010),
        get(2, "k", Some("b"), 9_000_000, 9_000_010),
    ]);
}

#[test]
fn unknown_write_cannot_take_effect_before_its_invocation() {
    assert_violation(&[get(2, "k", Some("b"), 0, 10), put_unknown(1, "k", "b", 20)]);
    // At its invocation instant is allowed.
    assert_linearizable(&[get(2, "k", Some("b"), 0, 20), put_unknown(1, "k", "b", 20)]);
}

#[test]
fn unknown_write_seen_then_unseen_is_a_violation() {
    // Once a read saw the unknown write, it happened: a later read cannot see the older value.
    assert_violation(&[
        put(1, "k", "a", 0, 10),
        put_unknown(1, "k", "b", 20),
        get(2, "k", Some("b"), 100, 110),
        get(3, "k", Some("a"), 200, 210),
    ]);
    // Near miss: the two reads overlap, so the older value may be read first.
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        put_unknown(1, "k", "b", 20),
        get(2, "k", Some("b"), 100, 210),
        get(3, "k", Some("a"), 200, 210),
    ]);
}

#[test]
fn unknown_with_a_return_time_is_still_open_ended() {
    // A return time on an unknown outcome bounds nothing: the write may land after it.
    let late = Operation {
        returned_ns: Some(25),
        ..put_unknown(1, "k", "b", 20)
    };
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        late,
        get(2, "k", Some("a"), 100, 110),
        get(2, "k", Some("b"), 200, 210),
    ]);
}

#[test]
fn unknown_get_carries_no_information() {
    let blind = op(2, "k", Call::Get, 15, None, Ret::Unknown);
    assert_linearizable(&[put(1, "k", "a", 0, 10), blind.clone()]);
    assert_violation(&[put(1, "k", "a", 0, 10), blind, get(2, "k", None, 20, 30)]);
}

#[test]
fn only_unknown_operations_are_linearizable() {
    assert_linearizable(&[put_unknown(1, "k", "a", 0), del_unknown(2, "k", 5)]);
}

#[test]
fn delete_semantics() {
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        del(1, "k", 20, 30),
        get(2, "k", None, 40, 50),
        put(1, "k", "b", 60, 70),
        get(2, "k", Some("b"), 80, 90),
    ]);
    // A read after the delete still sees the value.
    assert_violation(&[
        put(1, "k", "a", 0, 10),
        del(1, "k", 20, 30),
        get(2, "k", Some("a"), 40, 50),
    ]);
    // Deleting an absent key is fine, and a delete concurrent with a read may go either way.
    assert_linearizable(&[del(1, "k", 0, 10), get(2, "k", None, 20, 30)]);
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        del(1, "k", 20, 60),
        get(2, "k", Some("a"), 30, 40),
        get(2, "k", None, 45, 50),
    ]);
    // But not back again once absent was seen.
    assert_violation(&[
        put(1, "k", "a", 0, 10),
        del(1, "k", 20, 60),
        get(2, "k", None, 30, 40),
        get(2, "k", Some("a"), 45, 50),
    ]);
}

#[test]
fn unknown_delete() {
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        del_unknown(1, "k", 20),
        get(2, "k", Some("a"), 30, 40),
        get(2, "k", None, 50, 60),
    ]);
    assert_violation(&[
        put(1, "k", "a", 0, 10),
        del_unknown(1, "k", 20),
        get(2, "k", None, 30, 40),
        get(2, "k", Some("a"), 50, 60),
    ]);
}

#[test]
fn equal_values_are_not_assumed_unique() {
    // The second `a` is what the read sees: fine although the first `a` was overwritten.
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        put(1, "k", "b", 20, 30),
        put(2, "k", "a", 40, 50),
        get(3, "k", Some("a"), 60, 70),
    ]);
    // Without the second `a`, it is a stale read.
    assert_violation(&[
        put(1, "k", "a", 0, 10),
        put(1, "k", "b", 20, 30),
        get(3, "k", Some("a"), 60, 70),
    ]);
    // An unknown write of an equal value can explain the read too.
    assert_linearizable(&[
        put(1, "k", "a", 0, 10),
        put(1, "k", "b", 20, 30),
        put_unknown(2, "k", "a", 40),
        get(3, "k", Some("a"), 60, 70),
    ]);
}

#[test]
fn keys_are_independent() {
    // Each key alone is fine; a checker that mixed them would see `b` read on "x".
    assert_linearizable(&[
        put(1, "x", "a", 0, 10),
        put(2, "y", "b", 0, 10),
        get(3, "x", Some("a"), 20, 30),
        get(3, "y", Some("b"), 20, 30),
    ]);
    let report = check(
        &[
            put(1, "x", "a", 0, 10),
            put(2, "y", "b", 0, 10),
            put(2, "y", "c", 20, 30),
            get(3, "x", Some("a"), 40, 50),
            get(3, "y", Some("b"), 40, 50),
        ],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!((report.operations, report.keys), (5, 2));
    match &report.verdict {
        Verdict::Violation {
            key, operations, ..
        } => {
            assert_eq!(key, "y");
            assert!(operations.iter().all(|o| o.key == b"y"));
        }
        other => panic!("expected a violation on y, got {other}"),
    }
}

#[test]
fn report_reads_well_and_round_trips_through_json() {
    let report = check(
        &[put(1, "k", "a", 0, 10), get(2, "k", None, 20, 30)],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        report.verdict.to_string(),
        "VIOLATION on key k: 2 operations"
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""kind":"violation""#), "{json}");
    let back: lincheck::Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);

    let ok = check(&[put(1, "k", "a", 0, 10)], Duration::from_secs(5)).unwrap();
    assert_eq!(ok.verdict.to_string(), "linearizable");
    assert_eq!(ok.keys_checked, 1);
    let json = serde_json::to_string(&ok.verdict).unwrap();
    assert_eq!(json, r#"{"kind":"linearizable"}"#);
}

#[test]
fn binary_keys_are_printed_in_hex() {
    let mut history = vec![put(1, "", "a", 0, 10), get(2, "", None, 20, 30)];
    for op in &mut history {
        op.key = vec![0, 0xff, 7];
    }
    match verdict(&history) {
        Verdict::Violation { key, .. } => assert_eq!(key, "0x00ff07"),
        other => panic!("{other}"),
    }
}

#[test]
fn malformed_operations_are_named() {
    let mut backwards = put(7, "k", "a", 50, 40);
    backwards.client = 7;
    let history = [put(1, "k", "z", 0, 10), backwards];
    let err = check(&history, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.client, 7);
    assert_eq!(err.key, "k");
    assert_eq!(
        err.problem,
        Malformed::ReturnedBeforeInvoked {
            invoked_ns: 50,
            returned_ns: 40
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("#1") && text.contains("client 7") && text.contains("key k"),
        "{text}"
    );

    let read_on_put = op(
        3,
        "q",
        Call::Put(b"v".to_vec()),
        0,
        Some(1),
        Ret::Read(None),
    );
    let err = check(&[read_on_put], Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        (err.index, err.client, err.problem),
        (0, 3, Malformed::ReadResultOnWrite)
    );

    let read_on_delete = op(
        3,
        "q",
        Call::Delete,
        0,
        Some(1),
        Ret::Read(Some(b"v".to_vec())),
    );
    let err = check(&[read_on_delete], Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.problem, Malformed::ReadResultOnWrite);

    let done_on_get = op(4, "q", Call::Get, 0, Some(1), Ret::Done);
    let err = check(&[done_on_get], Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.problem, Malformed::DoneOnGet);

    let no_return = op(4, "q", Call::Get, 0, None, Ret::Read(None));
    let err = check(&[no_return], Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.problem, Malformed::CompletedWithoutReturnTime);

    // Well-formed edge cases are not errors: an instantaneous operation, extreme times.
    assert_linearizable(&[
        put(1, "k", "a", 0, 0),
        get(1, "k", Some("a"), u64::MAX, u64::MAX),
        put_unknown(2, "k", "b", u64::MAX),
    ]);
}

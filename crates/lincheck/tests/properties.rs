//! Properties: the checker is neither too strict nor too lax.
//!
//! * Histories made from a sequential execution (a ground-truth order of operations, each
//!   given an interval around its true instant, which makes neighbours concurrent) are
//!   linearizable; changing one read to a value that cannot be current anywhere in its interval
//!   makes them a violation, whose reported set an independent brute-force oracle confirms.
//! * On small arbitrary histories the checker agrees with the oracle.

mod common;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use common::*;
use lincheck::{Call, Operation, Register, Ret, Verdict};

/// One step of a ground-truth execution.
#[derive(Clone, Debug)]
struct Step {
    key: u8,
    /// 0..50 put, 50..85 get, 85..100 delete.
    kind: u8,
    /// How far the interval reaches before and after the true instant.
    before: u64,
    after: u64,
    /// Unknown outcome (1 in 10 writes, 1 in 20 reads).
    unknown: u8,
    /// For an unknown write: whether it took effect.
    took_effect: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..3,
        0u8..100,
        0u64..350,
        0u64..350,
        0u8..20,
        any::<bool>(),
    )
        .prop_map(|(key, kind, before, after, unknown, took_effect)| Step {
            key,
            kind,
            before,
            after,
            unknown,
            took_effect,
        })
}

/// Runs the steps, 100 ns apart, against a register per key, and records what clients see.
fn execute(steps: &[Step]) -> Vec<Operation> {
    let mut regs: std::collections::HashMap<u8, Register> = Default::default();
    let mut history = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let at = 1_000 + 100 * i as u64;
        let call = match s.kind {
            0..50 => Call::Put(format!("v{i}").into_bytes()),
            50..85 => Call::Get,
            _ => Call::Delete,
        };
        let is_get = call == Call::Get;
        let unknown = if is_get {
            s.unknown == 0
        } else {
            s.unknown < 2
        };
        let reg = regs.entry(s.key).or_default();
        let ret = if unknown && !is_get && !s.took_effect {
            Ret::Unknown
        } else {
            let r = reg.apply(&call);
            if unknown {
                Ret::Unknown
            } else {
                r
            }
        };
        history.push(Operation {
            client: i as u64 % 8,
            key: vec![b'a' + s.key],
            call,
            invoked_ns: at - s.before,
            returned_ns: (!unknown).then_some(at + s.after),
            ret,
        });
    }
    history
}

/// Values the read at `r` cannot have seen, whatever the linearization: one never written,
/// one written only after the read returned, one definitely overwritten before the read was
/// invoked, and absence if a write definitely landed before the read with no delete to undo it.
fn impossible_values(h: &[Operation], r: usize) -> Vec<Option<Vec<u8>>> {
    let read = &h[r];
    let (inv, ret) = (read.invoked_ns, read.returned_ns.expect("completed"));
    let same_key: Vec<&Operation> = h.iter().filter(|o| o.key == read.key).collect();
    let done = |o: &Operation| o.ret == Ret::Done;
    let mut out = vec![Some(b"never written".to_vec())];
    for w in &same_key {
        let Call::Put(v) = &w.call else { continue };
        if w.invoked_ns > ret {
            out.push(Some(v.clone()));
        }
        let overwritten = done(w)
            && same_key.iter().any(|w2| {
                done(w2)
                    && w2.call != Call::Get
                    && w.returned_ns.is_some_and(|a| a < w2.invoked_ns)
                    && w2.returned_ns.is_some_and(|b| b < inv)
            });
        if overwritten {
            out.push(Some(v.clone()));
        }
    }
    let put_before = same_key.iter().find(|w| {
        done(w) && matches!(w.call, Call::Put(_)) && w.returned_ns.is_some_and(|b| b < inv)
    });
    if let Some(w) = put_before {
        let no_delete_between = same_key.iter().all(|d| {
            d.call != Call::Delete
                || d.invoked_ns > ret
                || (done(d) && d.returned_ns.is_some_and(|e| e < w.invoked_ns))
        });
        if no_delete_between {
            out.push(None);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn executions_are_linearizable_and_a_wrong_read_is_caught(
        steps in prop::collection::vec(step(), 1..60),
        which_read in any::<prop::sample::Index>(),
        which_value in any::<prop::sample::Index>(),
    ) {
        let mut history = execute(&steps);
        prop_assert_eq!(verdict(&history), Verdict::Linearizable);

        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].ret, Ret::Read(_)))
            .collect();
        prop_assume!(!reads.is_empty());
        let r = reads[which_read.index(reads.len())];
        let candidates = impossible_values(&history, r);
        let wrong = which_value.get(&candidates).clone();
        prop_assert_ne!(&history[r].ret, &Ret::Read(wrong.clone()), "a possible value");
        history[r].ret = Ret::Read(wrong);

        let Verdict::Violation { key, operations, minimal } = verdict(&history) else {
            return Err(TestCaseError::fail("a wrong read was accepted"));
        };
        prop_assert_eq!(key.as_bytes(), history[r].key.as_slice());
        prop_assert!(minimal);
        prop_assert!(operations.contains(&history[r]), "the wrong read explains it");
        if operations.len() <= 8 {
            prop_assert!(!oracle(&operations), "the oracle linearizes {:#?}", operations);
            for i in 0..operations.len() {
                let rest = drop_with_dependents(&operations, i);
                prop_assert!(oracle(&rest), "not 1-minimal: {:#?}", operations);
            }
        }
    }

    #[test]
    fn small_histories_agree_with_the_oracle(history in small_history()) {
        prop_assert_eq!(is_linearizable(&history), oracle(&history), "{:#?}", history);
    }
}

/// Up to 8 arbitrary operations on two keys, values from a pool of two (so values repeat),
/// short random intervals (so overlaps are common), some outcomes unknown.
fn small_history() -> impl Strategy<Value = Vec<Operation>> {
    let op = (0u8..2, 0u8..10, 0u8..3, 0u64..40, 0u64..15, 0u8..10).prop_map(
        |(key, kind, value, invoked, len, unknown)| {
            let v = vec![b'x' + value % 2];
            let key = vec![b'a' + key];
            let (call, ret) = match kind {
                0..4 => (Call::Put(v), Ret::Done),
                4..6 => (Call::Delete, Ret::Done),
                _ => (Call::Get, Ret::Read((value < 2).then_some(v))),
            };
            let unknown = unknown < 2;
            Operation {
                client: 0,
                key,
                call,
                invoked_ns: invoked,
                returned_ns: (!unknown).then_some(invoked + len),
                ret: if unknown { Ret::Unknown } else { ret },
            }
        },
    );
    prop::collection::vec(op, 0..=8)
}

#[test]
fn the_small_histories_are_not_one_sided() {
    // The agreement above means little if nearly every small history is one verdict.
    let mut runner = TestRunner::deterministic();
    let strategy = small_history();
    let (mut yes, mut no) = (0, 0);
    for _ in 0..2_000 {
        let h = strategy.new_tree(&mut runner).expect("a value").current();
        if is_linearizable(&h) {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 400 && no > 400, "{yes} linearizable, {no} not");
}

//! Builders for hand-written histories, and an independent brute-force oracle.
#![allow(dead_code)] // each test file uses a part

use std::time::Duration;

use lincheck::{check, Call, Operation, Register, Ret, Verdict};

pub fn put(client: u64, key: &str, value: &str, invoked: u64, returned: u64) -> Operation {
    op(
        client,
        key,
        Call::Put(value.into()),
        invoked,
        Some(returned),
        Ret::Done,
    )
}

pub fn del(client: u64, key: &str, invoked: u64, returned: u64) -> Operation {
    op(
        client,
        key,
        Call::Delete,
        invoked,
        Some(returned),
        Ret::Done,
    )
}

pub fn get(client: u64, key: &str, seen: Option<&str>, invoked: u64, returned: u64) -> Operation {
    let seen = seen.map(|v| v.as_bytes().to_vec());
    op(
        client,
        key,
        Call::Get,
        invoked,
        Some(returned),
        Ret::Read(seen),
    )
}

/// A `Put` whose client never learned the outcome.
pub fn put_unknown(client: u64, key: &str, value: &str, invoked: u64) -> Operation {
    op(
        client,
        key,
        Call::Put(value.into()),
        invoked,
        None,
        Ret::Unknown,
    )
}

pub fn del_unknown(client: u64, key: &str, invoked: u64) -> Operation {
    op(client, key, Call::Delete, invoked, None, Ret::Unknown)
}

pub fn op(
    client: u64,
    key: &str,
    call: Call,
    invoked_ns: u64,
    returned_ns: Option<u64>,
    ret: Ret,
) -> Operation {
    Operation {
        client,
        key: key.into(),
        call,
        invoked_ns,
        returned_ns,
        ret,
    }
}

/// The verdict with a generous budget; panics (a test failure) on a malformed history.
pub fn verdict(history: &[Operation]) -> Verdict {
    check(history, Duration::from_secs(30))
        .expect("well-formed history")
        .verdict
}

pub fn is_linearizable(history: &[Operation]) -> bool {
    match verdict(history) {
        Verdict::Linearizable => true,
        Verdict::Violation { .. } => false,
        Verdict::Unknown { reason } => panic!("undecided with 30 s: {reason}"),
    }
}

#[track_caller]
pub fn assert_linearizable(history: &[Operation]) {
    let v = verdict(history);
    assert_eq!(v, Verdict::Linearizable, "history: {history:#?}");
}

#[track_caller]
pub fn assert_violation(history: &[Operation]) {
    let v = verdict(history);
    assert!(
        matches!(v, Verdict::Violation { .. }),
        "expected a violation, got {v}; history: {history:#?}"
    );
}

/// Exhaustive: tries every subset of the unknown writes and every order of the operations
/// kept. Only for a handful of operations. Keys are not separated: the oracle runs the whole
/// history through a map of registers, so it also checks the per-key partitioning.
pub fn oracle(history: &[Operation]) -> bool {
    let ops: Vec<&Operation> = history
        .iter()
        .filter(|o| !(o.call == Call::Get && o.ret == Ret::Unknown))
        .collect();
    let unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].ret == Ret::Unknown)
        .collect();
    assert!(ops.len() <= 10, "the oracle is exponential");
    (0u32..1 << unknown.len()).any(|mask| {
        let kept: Vec<&Operation> = (0..ops.len())
            .filter(|i| match unknown.iter().position(|u| u == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .map(|i| ops[i])
            .collect();
        let mut used = vec![false; kept.len()];
        orders(&kept, &mut used, &mut std::collections::HashMap::new())
    })
}

fn orders(
    ops: &[&Operation],
    used: &mut Vec<bool>,
    regs: &mut std::collections::HashMap<Vec<u8>, Register>,
) -> bool {
    if used.iter().all(|&u| u) {
        return true;
    }
    for i in 0..ops.len() {
        if used[i] {
            continue;
        }
        // Not allowed next if a remaining completed operation returned before it was invoked.
        let blocked = (0..ops.len()).any(|j| {
            !used[j]
                && j != i
                && ops[j].ret != Ret::Unknown
                && ops[j].returned_ns.is_some_and(|r| r < ops[i].invoked_ns)
        });
        if blocked {
            continue;
        }
        let reg = regs.entry(ops[i].key.clone()).or_default();
        let before = reg.clone();
        let answer = reg.apply(&ops[i].call);
        let fits = ops[i].ret == Ret::Unknown || answer == ops[i].ret;
        if fits {
            used[i] = true;
            if orders(ops, used, regs) {
                return true;
            }
            used[i] = false;
        }
        regs.insert(ops[i].key.clone(), before);
    }
    false
}

/// `ops` less `ops[i]` and, if it is a write, less the completed reads that could have read
/// from it (its value, absent for a delete; returned at or after its invocation).
pub fn drop_with_dependents(ops: &[Operation], i: usize) -> Vec<Operation> {
    let gone = &ops[i];
    let value = match &gone.call {
        Call::Put(v) => Some(Some(v.clone())),
        Call::Delete => Some(None),
        Call::Get => None,
    };
    ops.iter()
        .enumerate()
        .filter(|&(j, o)| {
            j != i
                && !(value
                    .as_ref()
                    .is_some_and(|v| o.ret == Ret::Read(v.clone()))
                    && o.returned_ns.is_some_and(|r| r >= gone.invoked_ns))
        })
        .map(|(_, o)| o.clone())
        .collect()
}

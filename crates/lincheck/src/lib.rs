//! A linearizability checker for histories of a key-value store, as its clients saw them.
//!
//! A history is a list of [`Operation`]s: what a client asked ([`Call`]), when it asked, and
//! what it was told ([`Ret`]) and when. [`check`] decides whether some sequential execution of
//! the model explains all of it while respecting real time, and says why not if none does.
//!
//! # The model
//!
//! One register per key, absent (`None`) until the first `Put`: `Put(v)` makes it `Some(v)`,
//! `Delete` makes it `None`, and a `Get` must return what it holds ([`Register`] is the model as
//! code). Values are compared by content; the checker does not assume that each write stores a
//! distinct value, though distinct values make a violation easier to read. Keys are
//! independent registers, and linearizability is compositional (a history is linearizable iff
//! each key's sub-history is), so the history is partitioned by key and every key is checked
//! on its own, in key order.
//!
//! # Time
//!
//! A completed operation takes effect at one instant of `[invoked_ns, returned_ns]`, both ends
//! included. Operation `a` comes before `b` in real time iff `a.returned_ns < b.invoked_ns`; a
//! return at the very instant of another's invocation leaves the two concurrent.
//!
//! # Unknown outcomes
//!
//! An operation whose client never learned its outcome ([`Ret::Unknown`]) may or may not have
//! taken effect, at any instant after its invocation, however late: a `Put` or `Delete` is
//! either linearized somewhere after `invoked_ns` (with no upper bound) or never. Its
//! `returned_ns` is ignored (it is normally `None`). An unknown `Get` says nothing and is ignored.
//! The history is linearizable iff every *completed* operation can be placed, with any subset of
//! the unknown writes.
//!
//! # The search
//!
//! Per key, Wing & Gong's search with Lowe's cache, as Porcupine and Knossos run it: operations
//! are linearized one at a time in an order consistent with real time, backtracking when an
//! operation can no longer be placed; every visited configuration (set of linearized operations,
//! state of the register) is remembered and never explored twice. The `search` module
//! (`src/search.rs`) gives the details and the exact reductions it applies.
//!
//! Checking linearizability is NP-complete in general: a key with many mutually concurrent
//! writes can take time exponential in their number. What keeps realistic histories fast is
//! that the search's cost grows with the number of operations *concurrent on one key*, not with
//! the length of the history: partitioning by key, and the cache, which collapses the orders of
//! concurrent writes that end in the same state. A linearizable history is usually found
//! linearizable almost without backtracking (100 000 operations over 1 000 keys check in about a
//! tenth of a second). A violation costs more: proving that no order works means exhausting the
//! orders up to the violation, so a single key with 10 000 operations from 8 concurrent
//! clients, violated half-way, takes seconds to check and shrink.
//!
//! # The budget
//!
//! [`check`] takes a time budget that bounds the whole call, search and shrinking. The clock is
//! read every few hundred search steps (and before each key); the only work it does not bound
//! is validating and partitioning the history, linear in its length (milliseconds for a
//! hundred thousand operations). When the budget runs out before every key is decided,
//! the verdict is [`Verdict::Unknown`], never `Linearizable`. Keys are checked in key order in
//! two passes: the first gives each key a slice of what is left (half of it, shared among the
//! keys still to go), and puts off a key that needs more; the second gives the keys put off the
//! rest, in turn. So a key whose search is hopeless does not hide a violation on another key:
//! the first violation found ends the check, and is reported whatever was left undecided. The
//! search also gives up on a key, with `Unknown`, if its cache of visited configurations
//! outgrows about 1 GiB (its peak footprint can be about twice that).
//!
//! # The minimal set
//!
//! For a violation, the failing key's sub-history is shrunk by delta debugging, within what is
//! left of the budget, to a *1-minimal* set of operations: not linearizable itself, while
//! dropping any one of its operations leaves a linearizable history. A write is dropped
//! together with the reads that could have read from it: the completed `Get`s that returned
//! its value (absence, for a `Delete`) and returned at or after its invocation. Otherwise every
//! violation would shrink to a lone read whose write was dropped, which says nothing; and
//! dropped this way, a linearizable history stays linearizable, so the set reported is a
//! violation that was in the history, not one that dropping made. A stale read shrinks to the
//! write it missed, the write it saw, and itself; a read of a value that was never written
//! shrinks to just that read. If the budget runs out while shrinking, the set reported is still
//! not linearizable, but [`Verdict::Violation::minimal`] is false.
//!
//! ```
//! use lincheck::{check, Call, Operation, Ret, Verdict};
//! use std::time::Duration;
//!
//! let op = |client, call, invoked_ns, returned_ns, ret| Operation {
//!     client, key: b"k".to_vec(), call, invoked_ns, returned_ns: Some(returned_ns), ret,
//! };
//! let history = vec![
//!     op(1, Call::Put(b"a".to_vec()), 0, 10, Ret::Done),
//!     op(1, Call::Put(b"b".to_vec()), 20, 30, Ret::Done),
//!     // Invoked after `b` was acknowledged, yet it sees `a`: a stale read.
//!     op(2, Call::Get, 40, 50, Ret::Read(Some(b"a".to_vec()))),
//! ];
//! let report = check(&history, Duration::from_secs(1)).expect("well-formed");
//! assert!(matches!(&report.verdict, Verdict::Violation { operations, .. } if operations.len() == 3));
//! assert_eq!(report.verdict.to_string(), "VIOLATION on key k: 3 operations");
//! ```

mod lost;
mod model;
mod search;
mod shrink;

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

pub use lost::{lost_writes, LostWrites};
pub use model::Register;
use serde::{Deserialize, Serialize};

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Store this value (values are normally unique per write, so a read can be attributed; the
    /// checker does not rely on it).
    Put(Vec<u8>),
    /// Read the key.
    Get,
    /// Remove the key.
    Delete,
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    /// A `Put` or `Delete` took effect.
    Done,
    /// A `Get` returned this value (`None`: the key was absent).
    Read(Option<Vec<u8>>),
    /// No definite answer: the operation may or may not have taken effect.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// The client (session) that issued it; one client has at most one operation per instant.
    pub client: u64,
    /// The key it touched.
    pub key: Vec<u8>,
    /// What was asked.
    pub call: Call,
    /// When it was invoked, in nanoseconds on the history's clock.
    pub invoked_ns: u64,
    /// When the client learned its outcome (`None` with [`Ret::Unknown`]: never).
    pub returned_ns: Option<u64>,
    /// What it was told.
    pub ret: Ret,
}

/// Whether the client learned the operation's outcome.
pub(crate) fn is_completed(op: &Operation) -> bool {
    !matches!(op.ret, Ret::Unknown)
}

/// The outcome of [`check`]; it is written into the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was found.
    pub verdict: Verdict,
    /// Operations in the history.
    pub operations: usize,
    /// Distinct keys in the history.
    pub keys: usize,
    /// Keys whose sub-history was decided (all of them when the verdict is `Linearizable`).
    pub keys_checked: usize,
    /// Wall time of the whole call, search and shrinking, in milliseconds.
    pub elapsed_ms: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} operations on {} keys, checked in {:.1} ms)",
            self.verdict, self.operations, self.keys, self.elapsed_ms
        )
    }
}

/// Whether the history is linearizable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Every key's sub-history has a linearization.
    Linearizable,
    /// This key's sub-history has none.
    Violation {
        /// The key, printable: as text if it is printable UTF-8, else `0x` and hex.
        key: String,
        /// A set of that key's operations that is not linearizable, in invocation order:
        /// 1-minimal if `minimal` (see the crate docs).
        operations: Vec<Operation>,
        /// Whether the shrinking finished: removing any one operation of the set makes it
        /// linearizable. False if the budget ran out first.
        minimal: bool,
    },
    /// Undecided: the budget ran out (or the search outgrew its memory) before every key was
    /// decided, and no violation had been found.
    Unknown {
        /// Why, and how far the check got.
        reason: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::Violation {
                key,
                operations,
                minimal,
            } => {
                let n = operations.len();
                let s = if n == 1 { "" } else { "s" };
                write!(f, "VIOLATION on key {key}: {n} operation{s}")?;
                if !*minimal {
                    f.write_str(" (not fully shrunk: the budget ran out)")?;
                }
                Ok(())
            }
            Verdict::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// A history that cannot be checked: one operation is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryError {
    /// Its index in the history.
    pub index: usize,
    /// Its client.
    pub client: u64,
    /// Its key, printable (as in [`Verdict::Violation`]).
    pub key: String,
    /// What is wrong with it.
    pub problem: Malformed,
}

/// What is wrong with a malformed operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// It returned before it was invoked.
    ReturnedBeforeInvoked {
        /// When it was invoked.
        invoked_ns: u64,
        /// When it returned.
        returned_ns: u64,
    },
    /// A `Put` or `Delete` answered with a read result.
    ReadResultOnWrite,
    /// A `Get` answered `Done`, with no value.
    DoneOnGet,
    /// It completed (`Done` or `Read`) but has no return time.
    CompletedWithoutReturnTime,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::ReturnedBeforeInvoked {
                invoked_ns,
                returned_ns,
            } => write!(
                f,
                "returned at {returned_ns} ns, before it was invoked at {invoked_ns} ns"
            ),
            Malformed::ReadResultOnWrite => f.write_str("a Put or Delete returned a read result"),
            Malformed::DoneOnGet => f.write_str("a Get returned Done instead of a read result"),
            Malformed::CompletedWithoutReturnTime => {
                f.write_str("it completed but has no return time")
            }
        }
    }
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed history: operation #{} (client {}, key {}): {}",
            self.index, self.client, self.key, self.problem
        )
    }
}

impl std::error::Error for HistoryError {}

/// Checks that every operation is well formed; the first malformed one is the error.
pub fn validate(history: &[Operation]) -> Result<(), HistoryError> {
    for (index, op) in history.iter().enumerate() {
        let problem = match (&op.call, &op.ret, op.returned_ns) {
            (_, _, Some(r)) if r < op.invoked_ns => Malformed::ReturnedBeforeInvoked {
                invoked_ns: op.invoked_ns,
                returned_ns: r,
            },
            (Call::Put(_) | Call::Delete, Ret::Read(_), _) => Malformed::ReadResultOnWrite,
            (Call::Get, Ret::Done, _) => Malformed::DoneOnGet,
            (_, Ret::Done | Ret::Read(_), None) => Malformed::CompletedWithoutReturnTime,
            _ => continue,
        };
        return Err(HistoryError {
            index,
            client: op.client,
            key: printable_key(&op.key),
            problem,
        });
    }
    Ok(())
}

/// `key` as text if it is UTF-8 without control characters (and not empty), else `0x` and
/// lowercase hex.
pub fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.is_empty() && !s.chars().any(char::is_control) => s.to_owned(),
        _ => {
            let mut hex = String::with_capacity(2 + 2 * key.len());
            hex.push_str("0x");
            for b in key {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        }
    }
}

/// Checks `history` for linearizability against the key-value register model, within `budget`
/// (see the crate docs). Errs, before any search, if an operation is malformed.
pub fn check(history: &[Operation], budget: Duration) -> Result<Report, HistoryError> {
    let start = Instant::now();
    let deadline = start.checked_add(budget);
    validate(history)?;

    let by_key = partition(history);
    let keys = by_key.len();
    let mut keys_checked = 0;
    let report = |verdict, keys_checked| Report {
        verdict,
        operations: history.len(),
        keys,
        keys_checked,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    };
    let violation = |key: &[u8], ops: &[&Operation]| {
        let shrunk = shrink::shrink(ops, deadline);
        Verdict::Violation {
            key: printable_key(key),
            operations: shrunk.operations.into_iter().cloned().collect(),
            minimal: shrunk.minimal,
        }
    };

    // First pass: every key gets a slice of what is left (half of it, shared among the keys
    // still to go), so that one hopeless key cannot hide a violation on another. Keys that need
    // more are put off to the second pass, which gives each the rest in turn.
    let mut put_off: Vec<usize> = Vec::new();
    let mut too_big: Option<usize> = None;
    let mut undecided = Vec::new();
    for (i, (key, ops)) in by_key.iter().enumerate() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            undecided.push(i);
            continue;
        }
        let slice = deadline.map(|d| {
            let now = Instant::now();
            let left = d.saturating_duration_since(now).as_nanos() / (2 * (keys - i)) as u128;
            now + Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
        });
        match search::check(ops, slice) {
            search::Outcome::Linearizable => keys_checked += 1,
            search::Outcome::Violation => {
                return Ok(report(violation(key, ops), keys_checked + 1));
            }
            search::Outcome::OutOfTime => put_off.push(i),
            search::Outcome::OutOfMemory => {
                too_big.get_or_insert(i);
            }
        }
    }
    for i in put_off {
        let (key, ops) = &by_key[i];
        if deadline.is_some_and(|d| Instant::now() >= d) {
            undecided.push(i);
            continue;
        }
        match search::check(ops, deadline) {
            search::Outcome::Linearizable => keys_checked += 1,
            search::Outcome::Violation => {
                return Ok(report(violation(key, ops), keys_checked + 1));
            }
            search::Outcome::OutOfTime => undecided.push(i),
            search::Outcome::OutOfMemory => {
                too_big.get_or_insert(i);
            }
        }
    }

    undecided.sort_unstable();
    let verdict = if undecided.is_empty() && too_big.is_none() {
        Verdict::Linearizable
    } else {
        let mut why = Vec::new();
        if let Some(&first) = undecided.first() {
            let (key, ops) = &by_key[first];
            let more = match undecided.len() - 1 {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            why.push(format!(
                "the budget of {budget:?} ran out before key {} ({} operations){more} was decided",
                printable_key(key),
                ops.len()
            ));
        }
        if let Some(i) = too_big {
            let (key, ops) = &by_key[i];
            why.push(format!(
                "the search's cache outgrew {} MiB on key {} ({} operations)",
                search::MAX_CACHE_BYTES >> 20,
                printable_key(key),
                ops.len()
            ));
        }
        Verdict::Unknown {
            reason: format!(
                "{}; {keys_checked} of {keys} keys were found linearizable",
                why.join("; ")
            ),
        }
    };
    Ok(report(verdict, keys_checked))
}

/// The history's operations per key, in key order (each key's in history order).
fn partition(history: &[Operation]) -> Vec<(&[u8], Vec<&Operation>)> {
    let mut index: HashMap<&[u8], usize, BuildHasherDefault<model::WordHasher>> =
        HashMap::default();
    let mut groups: Vec<(&[u8], Vec<&Operation>)> = Vec::new();
    for op in history {
        let i = *index.entry(op.key.as_slice()).or_insert_with(|| {
            groups.push((op.key.as_slice(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(op);
    }
    groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
    groups
}

//! Shrinking a non-linearizable sub-history to a 1-minimal one (delta debugging).
//!
//! Dropping operations one at a time and keeping every drop after which the rest still fails
//! would end, for a register, in a useless answer: a lone `Get` that returned a value, with the
//! `Put` that wrote it dropped, is not linearizable by itself. So a write is dropped together
//! with the reads that could have read from it: the completed `Get`s that returned its value
//! (absence, for a `Delete`) and returned at or after its invocation. Dropped that way, a
//! linearizable history stays linearizable (take a linearization: the reads that read from the
//! dropped write go with it, and every other read still follows the same write), so any set the
//! shrinking reports is a violation that was in the history, not one made by dropping. A `Get`
//! of a value that nothing ever wrote stays a violation on its own, and shrinks to just that.
//!
//! The search is Zeller's ddmin, simplified: drop chunks of the remaining operations (in
//! invocation order) of halving size, keeping each drop after which the rest is still not
//! linearizable, then drop single operations, pass after pass, until a whole pass drops nothing.
//! The result is then *1-minimal*: not linearizable, while dropping any one of its operations
//! (with the reads that could have read from it, as above) leaves a linearizable history.

use std::collections::HashMap;
use std::time::Instant;

use crate::search::{self, Outcome};
use crate::{Call, Operation, Ret};

/// A sub-history found not linearizable, shrunk as far as the deadline allowed.
pub(crate) struct Shrunk<'a> {
    /// The remaining operations, in invocation order.
    pub(crate) operations: Vec<&'a Operation>,
    /// Whether it is proven 1-minimal (false when the deadline, or a hard sub-check, cut it short).
    pub(crate) minimal: bool,
}

/// Shrinks `ops` (one key's operations, known not to be linearizable) before `deadline`.
pub(crate) fn shrink<'a>(ops: &[&'a Operation], deadline: Option<Instant>) -> Shrunk<'a> {
    let mut alive: Vec<&Operation> = ops.to_vec();
    alive.sort_by_key(|op| op.invoked_ns);

    let mut chunk = alive.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        let mut dropped = false;
        let mut certain = true;
        while i < alive.len() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Shrunk {
                    operations: alive,
                    minimal: false,
                };
            }
            let end = (i + chunk).min(alive.len());
            let candidate = without(&alive, i..end);
            match search::check(&candidate, sub_deadline(deadline)) {
                Outcome::Violation => {
                    alive = candidate;
                    dropped = true;
                }
                Outcome::Linearizable => i = end,
                Outcome::OutOfTime | Outcome::OutOfMemory => {
                    certain = false;
                    i = end;
                }
            }
        }
        if chunk > 1 {
            chunk = chunk.div_ceil(2).min(alive.len().div_ceil(2)).max(1);
        } else if !dropped {
            // A whole pass of single drops changed nothing: 1-minimal if every check was decided.
            return Shrunk {
                operations: alive,
                minimal: certain,
            };
        }
    }
}

/// `alive` less the operations at `drop`, and less the completed `Get`s that could have read
/// from a dropped write: same value (absent, for a `Delete`), returned at or after the write's
/// invocation.
pub(crate) fn without<'a>(
    alive: &[&'a Operation],
    drop: std::ops::Range<usize>,
) -> Vec<&'a Operation> {
    // Per value written by a dropped write, the earliest such write's invocation.
    let mut earliest: HashMap<Option<&[u8]>, u64> = HashMap::new();
    for op in &alive[drop.clone()] {
        let value = match &op.call {
            Call::Put(v) => Some(v.as_slice()),
            Call::Delete => None,
            Call::Get => continue,
        };
        let t = earliest.entry(value).or_insert(op.invoked_ns);
        *t = (*t).min(op.invoked_ns);
    }
    alive
        .iter()
        .enumerate()
        .filter(|(i, op)| {
            if drop.contains(i) {
                return false;
            }
            match (&op.ret, op.returned_ns) {
                (Ret::Read(v), Some(r)) => earliest.get(&v.as_deref()).is_none_or(|&w| r < w),
                _ => true,
            }
        })
        .map(|(_, op)| *op)
        .collect()
}

/// The deadline for one check while shrinking: half of what is left, so that one hard
/// candidate cannot use up the rest.
fn sub_deadline(deadline: Option<Instant>) -> Option<Instant> {
    let now = Instant::now();
    let d = deadline?;
    Some(now + d.saturating_duration_since(now) / 2)
}

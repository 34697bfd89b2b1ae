//! Acknowledged writes that a final read shows were lost.
//!
//! A linearizability check sees a lost write only if some later read of its key returns an
//! older value; a key nobody reads again can lose its last acknowledged write unseen. So once
//! the load and the faults are over, the harness reads every key the history wrote, once, and
//! [`lost_writes`] counts, directly, the acknowledged writes those final reads contradict. (The
//! final reads are also ordinary reads: appended to the history, they go through [`crate::check`]
//! too.)
//!
//! **The rule.** A final read of key `k` returned `v`. Its possible *sources* are the writes of
//! `k` that could have left `v` there: every `Put(v)` of `k` whatever its outcome, and, when
//! `v` is absent, every `Delete` of `k` and the initial (empty) state. An acknowledged write
//! `w` of `k` (a `Put` or `Delete` answered `Done`) is **lost** when it is not itself a source
//! and every source definitely came before it: the initial state, or a source that completed
//! (`Done`) before `w` was invoked. Then `w` took effect (it was acknowledged), nothing
//! written after it explains `v`, so the value `w` wrote is gone. A source whose outcome is
//! unknown may have taken effect at any time after its invocation, so it never definitely
//! comes before anything: reading it loses nothing. A value no write of `k` wrote has no
//! source, and loses every acknowledged write of `k`. Keys whose final read has no definite
//! answer are counted apart ([`LostWrites::unread_keys`]), never as keys that lost nothing.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Call, Operation, Ret};

/// What the final reads found ([`lost_writes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWrites {
    /// Keys the history wrote (the keys to read back).
    pub keys: u64,
    /// Of those, keys whose final read got a definite answer.
    pub read_keys: u64,
    /// Keys whose final read got no definite answer (their writes are not judged).
    pub unread_keys: u64,
    /// Acknowledged writes of the keys that were read back.
    pub acknowledged: u64,
    /// Acknowledged writes the final reads show were lost (module docs).
    pub lost: u64,
    /// The first few lost writes, for a reader to look into.
    pub examples: Vec<Operation>,
}

/// How many lost writes [`LostWrites::examples`] keeps.
pub const EXAMPLES: usize = 5;

/// Judges the acknowledged writes of `history` against `finals`, one final read (`Get`) per
/// key, which must all have been invoked after every operation of `history` returned (module
/// docs). A final read whose outcome is unknown leaves its key unread; a second final read of
/// a key, or a final operation that is not a `Get`, is ignored.
pub fn lost_writes(history: &[Operation], finals: &[Operation]) -> LostWrites {
    let mut by_key: HashMap<&[u8], Vec<&Operation>> = HashMap::new();
    for op in history {
        if matches!(op.call, Call::Put(_) | Call::Delete) {
            by_key.entry(&op.key).or_default().push(op);
        }
    }
    let mut seen: HashMap<&[u8], Option<&Option<Vec<u8>>>> = HashMap::new();
    for f in finals.iter().filter(|f| f.call == Call::Get) {
        let value = match &f.ret {
            Ret::Read(v) => Some(v),
            _ => None,
        };
        seen.entry(&f.key).or_insert(value);
    }
    let mut out = LostWrites {
        keys: by_key.len() as u64,
        ..LostWrites::default()
    };
    let mut keys: Vec<&[u8]> = by_key.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let writes = &by_key[key];
        let Some(Some(value)) = seen.get(key) else {
            out.unread_keys += 1;
            continue;
        };
        out.read_keys += 1;
        let is_source = |op: &Operation| match (&op.call, value) {
            (Call::Put(v), Some(read)) => v == read,
            (Call::Delete, None) => true,
            _ => false,
        };
        let sources: Vec<&Operation> = writes.iter().copied().filter(|w| is_source(w)).collect();
        // The latest instant by which every source had definitely taken effect, if every one
        // completed (the initial state, a source of an absent value, is before everything).
        let mut all_done_by = Some(0u64);
        for s in &sources {
            all_done_by = match (all_done_by, &s.ret, s.returned_ns) {
                (Some(t), Ret::Done, Some(r)) => Some(t.max(r)),
                _ => None,
            };
        }
        for w in writes.iter().filter(|w| w.ret == Ret::Done) {
            out.acknowledged += 1;
            if is_source(w) {
                continue;
            }
            let lost = match all_done_by {
                None => false,
                // Only the initial state (an absent value) or nothing explains the read.
                Some(_) if sources.is_empty() => true,
                Some(t) => t < w.invoked_ns,
            };
            if lost {
                out.lost += 1;
                if out.examples.len() < EXAMPLES {
                    out.examples.push((*w).clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, v: &str, inv: u64, ret: Option<u64>) -> Operation {
        Operation {
            client: 1,
            key: key.as_bytes().to_vec(),
            call: Call::Put(v.as_bytes().to_vec()),
            invoked_ns: inv,
            returned_ns: ret,
            ret: if ret.is_some() {
                Ret::Done
            } else {
                Ret::Unknown
            },
        }
    }

    fn delete(key: &str, inv: u64, ret: u64) -> Operation {
        Operation {
            client: 1,
            key: key.as_bytes().to_vec(),
            call: Call::Delete,
            invoked_ns: inv,
            returned_ns: Some(ret),
            ret: Ret::Done,
        }
    }

    fn fin(key: &str, v: Option<&str>) -> Operation {
        Operation {
            client: 99,
            key: key.as_bytes().to_vec(),
            call: Call::Get,
            invoked_ns: 1_000,
            returned_ns: Some(1_001),
            ret: Ret::Read(v.map(|v| v.as_bytes().to_vec())),
        }
    }

    #[test]
    fn the_last_write_read_back_loses_nothing() {
        let h = [put("k", "a", 1, Some(2)), put("k", "b", 3, Some(4))];
        let l = lost_writes(&h, &[fin("k", Some("b"))]);
        assert_eq!((l.keys, l.read_keys, l.acknowledged, l.lost), (1, 1, 2, 0));
    }

    #[test]
    fn an_older_value_read_back_loses_the_newer_write() {
        let h = [put("k", "a", 1, Some(2)), put("k", "b", 3, Some(4))];
        let l = lost_writes(&h, &[fin("k", Some("a"))]);
        assert_eq!(l.lost, 1);
        assert_eq!(l.examples[0].call, Call::Put(b"b".to_vec()));
    }

    #[test]
    fn concurrent_writes_may_end_in_either_order() {
        // a and b overlap: either may be last.
        let h = [put("k", "a", 1, Some(5)), put("k", "b", 2, Some(4))];
        assert_eq!(lost_writes(&h, &[fin("k", Some("a"))]).lost, 0);
        assert_eq!(lost_writes(&h, &[fin("k", Some("b"))]).lost, 0);
    }

    #[test]
    fn an_unknown_write_read_back_may_have_taken_effect_late() {
        // a's outcome is unknown: it may have taken effect after b.
        let h = [put("k", "a", 1, None), put("k", "b", 3, Some(4))];
        assert_eq!(lost_writes(&h, &[fin("k", Some("a"))]).lost, 0);
    }

    #[test]
    fn an_empty_key_after_an_acknowledged_put_lost_it_unless_a_delete_explains_it() {
        let h = [put("k", "a", 1, Some(2))];
        assert_eq!(lost_writes(&h, &[fin("k", None)]).lost, 1);
        let h = [put("k", "a", 1, Some(2)), delete("k", 3, 4)];
        assert_eq!(lost_writes(&h, &[fin("k", None)]).lost, 0);
        // A delete that finished before the put does not explain it.
        let h = [delete("k", 1, 2), put("k", "a", 3, Some(4))];
        assert_eq!(lost_writes(&h, &[fin("k", None)]).lost, 1);
    }

    #[test]
    fn a_value_nobody_wrote_loses_every_acknowledged_write() {
        let h = [put("k", "a", 1, Some(2)), put("k", "b", 3, Some(4))];
        assert_eq!(lost_writes(&h, &[fin("k", Some("zz"))]).lost, 2);
    }

    #[test]
    fn keys_without_a_definite_final_read_are_unread_not_safe() {
        let h = [put("k", "a", 1, Some(2)), put("j", "b", 1, Some(2))];
        let mut unknown = fin("k", None);
        unknown.ret = Ret::Unknown;
        let l = lost_writes(&h, &[unknown]);
        assert_eq!(
            (l.keys, l.read_keys, l.unread_keys, l.acknowledged),
            (2, 0, 2, 0)
        );
    }
}

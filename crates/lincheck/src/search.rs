//! The search for a linearization of one key's sub-history (Wing & Gong's tree search with
//! Lowe's cache of visited configurations, as Porcupine and Knossos run it).
//!
//! The operations' call and return events are put in one doubly linked list, in time order
//! (at equal instants calls come first, so a return at the very instant of another's call
//! leaves the two concurrent). The list always holds the events of the operations not yet
//! linearized. Walking it from the head, every call met before the first return belongs to an
//! operation that may come next: everything that returned before it was invoked is already
//! linearized. The search tries those candidates in turn: a candidate the model accepts is
//! linearized (its events lifted out of the list, the move pushed on a stack) and the walk
//! starts again from the head; meeting a return means the operation it closes can no longer be
//! placed, so the last move is undone (its events put back, dancing-links style) and the walk
//! goes on after the call that was undone. The stack running empty means no linearization
//! exists.
//!
//! A configuration is the set of linearized operations plus the model's state; the future of
//! the search depends on nothing else. Every configuration entered is recorded in a hash set
//! and never entered twice. A set is hashed incrementally (Zobrist: the XOR of a random word per
//! member) and stored compactly, as where its prefix of members ends plus the words from there
//! to its last member (operations are numbered in invocation order, and the sets met are nearly
//! all "everything invoked long ago, plus a few under way"): a lookup costs one hash probe and,
//! on a hit, the comparison of a word or two, however long the key's history.
//!
//! Operations whose outcome is unknown have a call and no return: they may be linearized at any
//! point after their call, or never, and the search succeeds as soon as every *completed*
//! operation is linearized.
//!
//! Three reductions keep realistic histories cheap; each is exact (it never changes the answer):
//!
//! * An unknown write that no completed read could observe (no read of its value returns at or
//!   after its invocation) is dropped: whatever came between it and the next write would have
//!   to read its value, so only a write can follow it, and a write does not care what it
//!   overwrites.
//! * When a configuration is entered, a read that the state satisfies is looked for among all
//!   the candidates and linearized first, and never tried later instead: it leaves the state as
//!   it was, and everything that must precede it is already linearized, so if any linearization
//!   exists from here, one exists that places this read next. So when that branch fails, the
//!   configuration it left from fails too. (This is what makes "many concurrent writes, each
//!   read back" linear rather than exponential.)
//! * A state no remaining read can observe (no read still to be linearized returns it) is
//!   replaced, in the configuration, by one "dead" state: from there every future is the same.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use crate::model::{self, Effect, Interner, Value, ABSENT, DEAD};
use crate::Operation;

/// How the search of one sub-history ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A linearization exists.
    Linearizable,
    /// None exists: the search was exhaustive.
    Violation,
    /// The deadline passed first.
    OutOfTime,
    /// The cache of visited configurations outgrew [`MAX_CACHE_BYTES`] first.
    OutOfMemory,
}

/// The cache of visited configurations is given up on beyond about this many bytes.
pub(crate) const MAX_CACHE_BYTES: usize = 1 << 30;

/// The deadline is read once in this many steps (a power of two).
const STEPS_PER_CLOCK_READ: u64 = 256;

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug)]
struct Op {
    effect: Effect,
    /// Whether it must be linearized (it completed); unknown writes need not be.
    completed: bool,
}

/// A call or return event in the linked list.
#[derive(Clone, Copy, Debug)]
struct Node {
    prev: usize,
    next: usize,
    /// The operation's number in `Search::ops`.
    op: usize,
    /// For a call: the node of its return, or `NIL` (unknown outcome). `NIL` for a return.
    ret: usize,
    is_call: bool,
}

/// One move on the search stack.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// The call node linearized.
    call: usize,
    /// The state before it.
    state: Value,
    /// A read linearized eagerly: when its branch fails, the configuration below fails too.
    forced: bool,
}

/// Checks one key's operations (all on the same key, any order) against the register model.
/// Unknown `Get`s are ignored. `deadline`: `None` for none.
pub(crate) fn check(ops: &[&Operation], deadline: Option<Instant>) -> Outcome {
    match Search::new(ops) {
        Some(mut search) => search.run(deadline),
        None => Outcome::Linearizable,
    }
}

struct Search {
    ops: Vec<Op>,
    nodes: Vec<Node>,
    /// Per value: how many completed reads of it are not linearized yet.
    reads_left: Vec<u32>,
    /// Per operation: its random word in the Zobrist hash of a set.
    zobrist: Vec<u64>,
    /// The configuration: the linearized operations ...
    linearized: Set,
    /// ... and the canonical state of the register.
    state: Value,
    /// How many completed operations are linearized.
    done: usize,
    /// The moves that led here.
    stack: Vec<Frame>,
    /// Every configuration entered so far.
    cache: Cache,
}

impl Search {
    /// Prepares the search, or `None` when there is nothing to linearize.
    fn new(history: &[&Operation]) -> Option<Search> {
        let mut values = Interner::default();
        let mut effects: Vec<(&Operation, Effect)> = history
            .iter()
            .filter_map(|op| model::effect(op, &mut values).map(|e| (*op, e)))
            .collect();
        // Operations are numbered in invocation order, so that linearized sets are mostly a
        // prefix (see `Set`).
        effects.sort_by_key(|(op, _)| op.invoked_ns);

        // Per value, the latest return of a completed read of it.
        let mut last_read = vec![None::<u64>; values.len()];
        for (op, effect) in &effects {
            if let (Effect::Read(v), Some(r)) = (effect, op.returned_ns) {
                let slot = &mut last_read[*v as usize];
                *slot = Some(slot.map_or(r, |s| s.max(r)));
            }
        }

        let mut ops = Vec::with_capacity(effects.len());
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * effects.len());
        let mut reads_left = vec![0u32; values.len()];
        for (op, effect) in effects {
            let completed = crate::is_completed(op);
            if !completed {
                let Effect::Write(v) = effect else {
                    continue; // not reached: unknown reads have no effect
                };
                // Dropped unless some completed read of its value could follow it.
                if last_read[v as usize].is_none_or(|r| r < op.invoked_ns) {
                    continue;
                }
            }
            if let Effect::Read(v) = effect {
                reads_left[v as usize] += 1;
            }
            let id = ops.len();
            ops.push(Op { effect, completed });
            // (time, is_return, op): calls sort before returns at the same instant.
            events.push((op.invoked_ns, false, id));
            if completed {
                if let Some(r) = op.returned_ns {
                    events.push((r, true, id));
                }
            }
        }
        if ops.iter().all(|op| !op.completed) {
            return None;
        }
        events.sort_unstable();

        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Node {
            prev: NIL,
            next: NIL,
            op: NIL,
            ret: NIL,
            is_call: false,
        });
        let mut return_node = vec![NIL; ops.len()];
        for (i, &(_, is_return, op)) in events.iter().enumerate() {
            let me = i + 1;
            nodes[me - 1].next = me;
            nodes.push(Node {
                prev: me - 1,
                next: NIL,
                op,
                ret: NIL,
                is_call: !is_return,
            });
            if is_return {
                return_node[op] = me;
            }
        }
        for node in nodes.iter_mut().skip(1) {
            if node.is_call {
                node.ret = return_node[node.op];
            }
        }

        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let zobrist = (0..ops.len()).map(|_| splitmix64(&mut seed)).collect();
        let mut search = Search {
            linearized: Set::new(ops.len()),
            state: ABSENT,
            done: 0,
            stack: Vec::with_capacity(ops.len()),
            cache: Cache::new(ops.len()),
            ops,
            nodes,
            reads_left,
            zobrist,
        };
        search.state = search.canonical(ABSENT);
        Some(search)
    }

    /// Takes call node `c` and its return out of the list.
    fn lift(&mut self, c: usize) {
        self.unlink(c);
        let r = self.nodes[c].ret;
        if r != NIL {
            self.unlink(r);
        }
    }

    /// Puts back what `lift(c)` took out; lifts are undone in reverse order.
    fn unlift(&mut self, c: usize) {
        let r = self.nodes[c].ret;
        if r != NIL {
            self.relink(r);
        }
        self.relink(c);
    }

    fn unlink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NIL {
            self.nodes[next].prev = n;
        }
    }

    /// The state as the cache sees it: one value for all that no remaining read can observe.
    fn canonical(&self, state: Value) -> Value {
        if state == DEAD || self.reads_left[state as usize] == 0 {
            DEAD
        } else {
            state
        }
    }

    fn run(&mut self, deadline: Option<Instant>) -> Outcome {
        let must = self.ops.iter().filter(|op| op.completed).count();
        let mut cur = self.nodes[HEAD].next;
        // Whether the configuration was just entered: look for a read to take first.
        let mut fresh = true;
        let mut steps = 0u64;

        loop {
            if self.done == must {
                return Outcome::Linearizable;
            }
            steps += 1;
            if steps % STEPS_PER_CLOCK_READ == 0 {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Outcome::OutOfTime;
                }
                if self.cache.bytes() > MAX_CACHE_BYTES || self.cache.len() >= u32::MAX as usize {
                    return Outcome::OutOfMemory;
                }
            }

            let backtrack = if fresh {
                fresh = false;
                match self.acceptable_read() {
                    // A read is never worse first (see the module docs): take it, or, if that
                    // configuration was seen, give this one up.
                    Some(c) => match self.linearize(c) {
                        Some(()) => {
                            cur = self.nodes[HEAD].next;
                            fresh = true;
                            false
                        }
                        None => true,
                    },
                    None => false,
                }
            } else if cur == NIL || !self.nodes[cur].is_call {
                true
            } else {
                let node = self.nodes[cur];
                // Reads were tried by `acceptable_read`: only writes can be accepted here.
                if matches!(self.ops[node.op].effect, Effect::Write(_))
                    && self.linearize(cur).is_some()
                {
                    cur = self.nodes[HEAD].next;
                    fresh = true;
                } else {
                    cur = node.next;
                }
                false
            };

            if backtrack {
                loop {
                    let Some(frame) = self.undo() else {
                        return Outcome::Violation;
                    };
                    if !frame.forced {
                        cur = self.nodes[frame.call].next;
                        break;
                    }
                }
            }
        }
    }

    /// The call node of a read that may come next and that the current state satisfies.
    fn acceptable_read(&self) -> Option<usize> {
        let mut n = self.nodes[HEAD].next;
        while n != NIL && self.nodes[n].is_call {
            if self.ops[self.nodes[n].op].effect == Effect::Read(self.state) {
                return Some(n);
            }
            n = self.nodes[n].next;
        }
        None
    }

    /// Linearizes the operation of call node `c` next, unless the model rejects it or the
    /// configuration it leads to was seen before (`None`, and nothing changed).
    fn linearize(&mut self, c: usize) -> Option<()> {
        let id = self.nodes[c].op;
        let op = self.ops[id];
        let next = model::step(self.state, op.effect)?;
        if let Effect::Read(v) = op.effect {
            self.reads_left[v as usize] -= 1;
        }
        let next = self.canonical(next);
        self.linearized.insert(id, self.zobrist[id]);
        if !self.cache.insert(next, &self.linearized) {
            self.linearized.remove(id, self.zobrist[id]);
            if let Effect::Read(v) = op.effect {
                self.reads_left[v as usize] += 1;
            }
            return None;
        }
        self.stack.push(Frame {
            call: c,
            state: self.state,
            forced: matches!(op.effect, Effect::Read(_)),
        });
        self.state = next;
        self.done += usize::from(op.completed);
        self.lift(c);
        Some(())
    }

    /// Undoes the last move, and returns it (`None`: there was none).
    fn undo(&mut self) -> Option<Frame> {
        let frame = self.stack.pop()?;
        let id = self.nodes[frame.call].op;
        let op = self.ops[id];
        self.unlift(frame.call);
        self.linearized.remove(id, self.zobrist[id]);
        if let Effect::Read(v) = op.effect {
            self.reads_left[v as usize] += 1;
        }
        self.done -= usize::from(op.completed);
        self.state = frame.state;
        Some(frame)
    }
}

/// A set of operations (numbered in invocation order), with what the cache needs of it kept up
/// to date: its Zobrist hash, and its compact form. Sets the search meets are mostly a prefix
/// (everything invoked long ago is linearized) plus a few of the operations under way, so a set
/// is stored as where its prefix ends (in words) and the words from there to its last member:
/// a few words, however long the history.
struct Set {
    bits: Vec<u64>,
    /// The XOR of the members' Zobrist words.
    hash: u64,
    /// The lowest non-member (or `len`).
    first_gap: usize,
    /// One past the highest word that has a member (0: empty).
    top: usize,
    len: usize,
}

impl Set {
    fn new(len: usize) -> Set {
        Set {
            bits: vec![0; len.div_ceil(64)],
            hash: 0,
            first_gap: 0,
            top: 0,
            len,
        }
    }

    fn insert(&mut self, i: usize, zobrist: u64) {
        self.bits[i / 64] |= 1 << (i % 64);
        self.hash ^= zobrist;
        self.top = self.top.max(i / 64 + 1);
        if i == self.first_gap {
            // Skip the run of members that starts here.
            while self.first_gap < self.len {
                let (w, b) = (self.first_gap / 64, self.first_gap % 64);
                let run = (!(self.bits[w] >> b)).trailing_zeros() as usize;
                self.first_gap += run.min(64 - b);
                if run < 64 - b {
                    break;
                }
            }
            self.first_gap = self.first_gap.min(self.len);
        }
    }

    fn remove(&mut self, i: usize, zobrist: u64) {
        self.bits[i / 64] &= !(1 << (i % 64));
        self.hash ^= zobrist;
        self.first_gap = self.first_gap.min(i);
        while self.top > 0 && self.bits[self.top - 1] == 0 {
            self.top -= 1;
        }
    }

    /// The compact form: the word where the prefix of members ends (every word before it is
    /// full), and the words from there to the last that has a member. Two sets are equal iff
    /// their compact forms are.
    fn compact(&self) -> (usize, &[u64]) {
        let start = self.first_gap / 64;
        (start, &self.bits[start..self.top.max(start)])
    }
}

/// The visited configurations: (set of linearized operations, canonical state), in flat
/// arrays so that recording one allocates nothing (amortised), and dropping the cache frees a
/// handful of blocks rather than one per configuration.
struct Cache {
    /// From the mix of a set's Zobrist hash and the state to the latest entry with that mix.
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    entries: Vec<Entry>,
    /// The entries' sets, in compact form, end to end.
    words: Vec<u64>,
}

/// One visited configuration.
struct Entry {
    state: Value,
    /// The previous entry with the same mix (`u32::MAX`: none).
    next: u32,
    /// The set's compact form: where its prefix ends, and its words in `Cache::words`.
    start: usize,
    at: usize,
    len: usize,
}

impl Cache {
    /// A cache sized for a search of `ops` operations that linearizes each about once (as that
    /// of a mostly sequential history does).
    fn new(ops: usize) -> Cache {
        Cache {
            heads: HashMap::with_capacity_and_hasher(ops, Default::default()),
            entries: Vec::with_capacity(ops),
            words: Vec::with_capacity(2 * ops),
        }
    }

    /// How many configurations are recorded.
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// About how many bytes the cache holds.
    fn bytes(&self) -> usize {
        // An entry, about 16 bytes of the hash table, and the words of the sets.
        self.len() * (std::mem::size_of::<Entry>() + 16) + self.words.len() * 8
    }

    /// Records the configuration; false if it was already there.
    fn insert(&mut self, state: Value, set: &Set) -> bool {
        let mut mixed = set.hash ^ u64::from(state).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let key = splitmix64(&mut mixed);
        let (start, words) = set.compact();
        let id = u32::try_from(self.len()).unwrap_or(u32::MAX);
        let head = self.heads.entry(key).or_insert(u32::MAX);
        let mut i = *head;
        while i != u32::MAX {
            let e = &self.entries[i as usize];
            if e.state == state && e.start == start && self.words[e.at..][..e.len] == *words {
                return false;
            }
            i = e.next;
        }
        self.entries.push(Entry {
            state,
            next: *head,
            start,
            at: self.words.len(),
            len: words.len(),
        });
        *head = id;
        self.words.extend_from_slice(words);
        true
    }
}

/// The cache keys are already well mixed: hash them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Steele, Lea & Flood's SplitMix64: advances `state` and returns a well-mixed word.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compact form is canonical: random inserts and removes, checked against the plain
    /// bitset after every change, lengths around word boundaries.
    #[test]
    fn compact_form_follows_the_set() {
        let mut seed = 7;
        for len in [1, 63, 64, 65, 130, 200] {
            let mut set = Set::new(len);
            let mut plain = vec![false; len];
            let mut seen: HashMap<(usize, Vec<u64>), Vec<bool>> = HashMap::new();
            for _ in 0..5_000 {
                let i = (splitmix64(&mut seed) % len as u64) as usize;
                // Mostly grow from the bottom, as the search does.
                let grow = splitmix64(&mut seed) % 3 != 0;
                if grow != plain[i] {
                    if grow {
                        set.insert(i, 1 << (i % 64));
                    } else {
                        set.remove(i, 1 << (i % 64));
                    }
                    plain[i] = grow;
                }
                let gap = plain.iter().position(|&b| !b).unwrap_or(len);
                assert_eq!(set.first_gap, gap);
                let top = plain.iter().rposition(|&b| b).map_or(0, |i| i / 64 + 1);
                assert_eq!(set.top, top);
                let (start, words) = set.compact();
                let form = (start, words.to_vec());
                // Equal compact forms only for equal sets.
                let before = seen.entry(form).or_insert_with(|| plain.clone());
                assert_eq!(*before, plain);
            }
        }
    }
}

//! Client histories for a linearizability check ([`lincheck`]): every operation a generator
//! sent, from the start of the load (warm-up included), with when it was sent, when its answer
//! arrived, and what the answer said.
//!
//! **Clock.** Instants are nanoseconds since the load started (the warm-up's start) on the
//! generator's monotonic clock; [`History::window_offset_ns`] is where the measured window
//! starts on that clock, and [`History::origin_unix_ns`] is where the origin falls on the wall
//! clock (ns since the Unix epoch, at ns precision, unlike the interval log's ms). A remote
//! generator's origin is shifted onto the controller's clock when its result is read
//! ([`History::shift_origin`]); [`crate::LoadResult::merge`] puts several generators'
//! histories on the earliest origin among them, so instants of different generators are
//! comparable to within the clock offsets' error.
//!
//! **Instants.** An operation is *invoked* when its request is handed to its connection, i.e.
//! sent (not at its intended open-loop instant: it cannot take effect before it is sent; the
//! recorded instant is taken just before the hand-off, so it never comes after the real send).
//! A request re-sent to another node after `NotLeader` is one operation, invoked at its first
//! send. It *returns* when its reply arrived.
//!
//! **Outcomes.** Only a definite success is definite: `Done` for a `Put` or `Delete` answered
//! `Done`, `Read(v)` for a `Get` answered with a value or none. Everything else is
//! [`lincheck::Ret::Unknown`] (it may or may not have taken effect): a timeout (even if an
//! answer arrived later), `Expired`, `Overloaded`, `NotLeader` past the redirect limit, a lost
//! connection. An `Unknown` operation's `returned_ns` is when the generator gave up on it (the
//! error reply, or the timeout's deadline), or `None` if it never did before stopping; it is
//! **not** a bound on when the operation may take effect: a timed-out request may still be
//! executed later, and so may one answered `NotLeader` or `Expired` (a deposed leader's
//! proposal can be chosen by its successor). A checker must let an `Unknown` operation take
//! effect at any instant after its invocation, or never.
//!
//! **Values.** Every `Put` value is unique to its write (see
//! [`crate::workload::value_id`]), so a read can be attributed to the write it saw.
//!
//! **The cap** ([`crate::LoadConfig::history`]). The recorder keeps the first N invocations
//! (in issue order). Once the cap is reached it records no new invocation, but still records
//! the outcome of those it has, and notes the *cutoff*: an instant no later than the
//! invocation of any unrecorded operation ([`History::cutoff_ns`]). The history then keeps
//! every recorded write (`Put`, `Delete`, whatever its outcome) but only the recorded reads
//! that returned before the cutoff, and says it is [`History::truncated`]. Why this is sound:
//! take any linearization of the full history and keep only the kept operations. Real-time
//! order survives taking a subset. A kept read returned before the cutoff, so the write it saw
//! was linearized before the cutoff, hence invoked before it: it is a recorded write, and it is
//! kept, as are all recorded writes, so no write between it and the read went missing; the
//! unrecorded writes were all invoked at or after the cutoff, after every kept read, and
//! removing writes that follow a read does not change what it saw. So **if the full history is
//! linearizable, so is the kept one**: a violation found in a truncated history is a real
//! violation. (The converse does not hold: violations among the dropped operations go unseen.)
//! A read that returned after the cutoff may have seen an unrecorded write, which is why it is
//! dropped.
//!
//! `history.jsonl` ([`History::write_jsonl`], [`History::read_jsonl`]): a header line
//! `{"window_offset_ns": …, "truncated": …, "cutoff_ns": … | null, "operations": N}`, then one
//! [`lincheck::Operation`] per line (its serde form), N lines, in the order the generator
//! issued them (generator by generator in a merged history).

use std::io::{BufRead, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lincheck::{Call, Operation, Ret};
use paxos::{Op, Outcome};

use crate::LoadError;

/// What a generator's clients saw: the operations and how to read them (module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The operations, instants in ns since the load started (module docs).
    pub ops: Vec<Operation>,
    /// Where the measured window starts, in ns on the operations' clock (the warm-up's length
    /// for one generator).
    pub window_offset_ns: u64,
    /// The cap was reached: operations invoked at or after [`History::cutoff_ns`] are
    /// missing, and so are recorded reads that returned after it (module docs).
    pub truncated: bool,
    /// With `truncated`: no unrecorded operation was invoked before this instant.
    pub cutoff_ns: Option<u64>,
    /// The wall-clock instant of time 0 (the load's start), ns since the Unix epoch, on the
    /// clock of the machine that read the result (shifted by the clock offset for a remote
    /// generator).
    pub origin_unix_ns: u64,
}

/// The header line of `history.jsonl`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    origin_unix_ns: u64,
    window_offset_ns: u64,
    truncated: bool,
    cutoff_ns: Option<u64>,
    operations: usize,
}

impl History {
    /// Writes `history.jsonl` (format in the module docs).
    pub fn write_jsonl(&self, path: &Path) -> Result<(), LoadError> {
        let err = |source| LoadError::Write {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::create(path).map_err(err)?;
        let mut out = std::io::BufWriter::new(file);
        let header = Header {
            origin_unix_ns: self.origin_unix_ns,
            window_offset_ns: self.window_offset_ns,
            truncated: self.truncated,
            cutoff_ns: self.cutoff_ns,
            operations: self.ops.len(),
        };
        line(&mut out, &header).map_err(err)?;
        for op in &self.ops {
            line(&mut out, op).map_err(err)?;
        }
        out.flush().map_err(err)
    }

    /// Reads a `history.jsonl` that [`History::write_jsonl`] wrote (and checks that no line
    /// is missing).
    pub fn read_jsonl(path: &Path) -> Result<History, LoadError> {
        let bad = |why: String| LoadError::Read {
            path: path.display().to_string(),
            why,
        };
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut lines = std::io::BufReader::new(file).lines();
        let first = lines
            .next()
            .ok_or_else(|| bad("empty file".into()))?
            .map_err(|e| bad(e.to_string()))?;
        let header: Header =
            serde_json::from_str(&first).map_err(|e| bad(format!("header: {e}")))?;
        let mut ops = Vec::with_capacity(header.operations.min(1 << 20));
        for (i, line) in lines.enumerate() {
            let line = line.map_err(|e| bad(e.to_string()))?;
            if line.is_empty() {
                continue;
            }
            ops.push(serde_json::from_str(&line).map_err(|e| bad(format!("line {}: {e}", i + 2)))?);
        }
        if ops.len() != header.operations {
            return Err(bad(format!(
                "{} operations, the header says {}",
                ops.len(),
                header.operations
            )));
        }
        Ok(History {
            ops,
            origin_unix_ns: header.origin_unix_ns,
            window_offset_ns: header.window_offset_ns,
            truncated: header.truncated,
            cutoff_ns: header.cutoff_ns,
        })
    }

    /// Puts the origin on another clock: `offset_ns` is the recording host's clock minus the
    /// other one's (what `paxbench hosts check` measures), so the origin moves `offset_ns`
    /// earlier. The operations' instants, relative to the origin, stay as they are.
    pub fn shift_origin(&mut self, offset_ns: i64) {
        self.origin_unix_ns = if offset_ns >= 0 {
            self.origin_unix_ns.saturating_sub(offset_ns.unsigned_abs())
        } else {
            self.origin_unix_ns.saturating_add(offset_ns.unsigned_abs())
        };
    }

    /// Moves every instant `by_ns` later (onto an origin `by_ns` earlier).
    fn shift(&mut self, by_ns: u64) {
        self.origin_unix_ns = self.origin_unix_ns.saturating_sub(by_ns);
        for op in &mut self.ops {
            op.invoked_ns = op.invoked_ns.saturating_add(by_ns);
            if let Some(r) = &mut op.returned_ns {
                *r = r.saturating_add(by_ns);
            }
        }
        self.window_offset_ns = self.window_offset_ns.saturating_add(by_ns);
        if let Some(c) = &mut self.cutoff_ns {
            *c = c.saturating_add(by_ns);
        }
    }

    /// Applies the cap rule for `cutoff_ns`: keeps writes, and reads that returned before it.
    fn cut(&mut self, cutoff_ns: u64) {
        self.truncated = true;
        self.cutoff_ns = Some(self.cutoff_ns.map_or(cutoff_ns, |c| c.min(cutoff_ns)));
        let cutoff = self.cutoff_ns.expect("set above");
        self.ops
            .retain(|op| op.call != Call::Get || op.returned_ns.is_some_and(|r| r < cutoff));
    }

    /// The histories of several generators as one, on the earliest of their origins,
    /// operations concatenated. If any part was truncated the result is, at the earliest
    /// cutoff, and the reads of *every* part that returned after it are dropped (they may have
    /// seen another generator's unrecorded writes). `window_offset_ns` is the earliest part's
    /// window start. `None` for no parts.
    pub fn merge(parts: Vec<History>) -> Option<History> {
        let origin = parts.iter().map(|p| p.origin_unix_ns).min()?;
        let mut acc = History {
            window_offset_ns: u64::MAX,
            origin_unix_ns: origin,
            ..History::default()
        };
        let mut cutoff: Option<u64> = None;
        for mut h in parts {
            h.shift(h.origin_unix_ns - origin);
            acc.window_offset_ns = acc.window_offset_ns.min(h.window_offset_ns);
            if h.truncated {
                let c = h.cutoff_ns.unwrap_or(0);
                cutoff = Some(cutoff.map_or(c, |x| x.min(c)));
            }
            acc.ops.append(&mut h.ops);
        }
        if let Some(c) = cutoff {
            acc.cut(c);
        }
        Some(acc)
    }
}

/// One JSON value and a newline.
fn line<T: serde::Serialize>(out: &mut impl std::io::Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// An operation's outcome while the run goes on.
#[derive(Debug)]
enum Status {
    Pending,
    Done,
    Read(Option<Bytes>),
    Unknown,
}

/// One recorded operation, cheap to make: the key and value are the request's own `Bytes`
/// (reference counts), instants are ns since the load started.
#[derive(Debug)]
struct Entry {
    client: u64,
    op: Op,
    invoked_ns: u64,
    returned_ns: Option<u64>,
    status: Status,
}

/// Records a history during a run (see the module docs for what and when); the driver calls
/// it on its hot path, so each call is a push or an index.
#[derive(Debug)]
pub struct HistoryRecorder {
    origin: Instant,
    cap: usize,
    entries: Vec<Entry>,
    /// Set when the first invocation past the cap was refused.
    cutoff_ns: Option<u64>,
}

/// An operation's place in its recorder.
pub type EntryId = u32;

impl HistoryRecorder {
    /// A recorder for a load that starts at `origin`, keeping at most `cap` operations;
    /// reserves room for `min(cap, expected)`.
    pub fn new(origin: Instant, cap: usize, expected: usize) -> Self {
        let cap = cap.min(EntryId::MAX as usize);
        HistoryRecorder {
            origin,
            cap,
            entries: Vec::with_capacity(cap.min(expected)),
            cutoff_ns: None,
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin)
            .as_nanos()
            .min(u64::MAX as u128) as u64
    }

    /// `client` issues `op` at `now` (before it is sent: [`HistoryRecorder::sent`] moves
    /// the invocation to the send). `None` once the cap is reached: the operation is not
    /// recorded, and `now` becomes the cutoff if it is the first such.
    pub fn invoke(&mut self, client: u64, op: &Op, now: Instant) -> Option<EntryId> {
        let ns = self.ns(now);
        if self.entries.len() >= self.cap {
            self.cutoff_ns.get_or_insert(ns);
            return None;
        }
        self.entries.push(Entry {
            client,
            op: op.clone(),
            invoked_ns: ns,
            returned_ns: None,
            status: Status::Pending,
        });
        Some((self.entries.len() - 1) as EntryId)
    }

    /// Operation `id` was handed to its connection at `at` (its first send).
    pub fn sent(&mut self, id: EntryId, at: Instant) {
        let ns = self.ns(at);
        if let Some(e) = self.entries.get_mut(id as usize) {
            e.invoked_ns = e.invoked_ns.max(ns);
        }
    }

    /// Operation `id` was answered `outcome` at `at`; a definite success is recorded as
    /// such, anything else as unknown. Ignored once the generator gave up on it.
    pub fn answered(&mut self, id: EntryId, outcome: &Outcome, at: Instant) {
        let ns = self.ns(at);
        let Some(e) = self.entries.get_mut(id as usize) else {
            return;
        };
        if !matches!(e.status, Status::Pending) {
            return; // Given up on already (a late answer to a timeout stays unknown).
        }
        e.returned_ns = Some(ns);
        e.status = match (&e.op, outcome) {
            (Op::Get { .. }, Outcome::Value(v)) => Status::Read(v.clone()),
            (Op::Put { .. } | Op::Delete { .. }, Outcome::Done) => Status::Done,
            _ => Status::Unknown,
        };
    }

    /// The generator gave up on operation `id` at `at` (a timeout's deadline, an error):
    /// its outcome is unknown.
    pub fn gave_up(&mut self, id: EntryId, at: Instant) {
        let ns = self.ns(at);
        if let Some(e) = self.entries.get_mut(id as usize) {
            if matches!(e.status, Status::Pending) {
                e.returned_ns = Some(ns);
                e.status = Status::Unknown;
            }
        }
    }

    /// The history, with the measured window starting `window_offset` after the origin and
    /// the origin at `origin_unix_ns` on the wall clock; operations still pending are unknown
    /// and never returned; the cap rule is applied.
    pub fn finish(self, window_offset: Duration, origin_unix_ns: u64) -> History {
        let ops = self
            .entries
            .into_iter()
            .filter_map(|e| {
                let (key, call) = match e.op {
                    Op::Put { key, value } => (key, Call::Put(value.to_vec())),
                    Op::Get { key } => (key, Call::Get),
                    Op::Delete { key } => (key, Call::Delete),
                    // Not an operation on a register (the generator never sends one).
                    Op::Reconfigure { .. } => return None,
                };
                let (returned_ns, ret) = match e.status {
                    Status::Pending => (None, Ret::Unknown),
                    Status::Done => (e.returned_ns, Ret::Done),
                    Status::Read(v) => (e.returned_ns, Ret::Read(v.map(|b| b.to_vec()))),
                    Status::Unknown => (e.returned_ns, Ret::Unknown),
                };
                Some(Operation {
                    client: e.client,
                    key: key.to_vec(),
                    call,
                    invoked_ns: e.invoked_ns,
                    returned_ns,
                    ret,
                })
            })
            .collect();
        let mut h = History {
            ops,
            window_offset_ns: window_offset.as_nanos().min(u64::MAX as u128) as u64,
            truncated: false,
            cutoff_ns: None,
            origin_unix_ns,
        };
        if let Some(c) = self.cutoff_ns {
            h.cut(c);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(v.to_string()),
        }
    }

    fn get(k: &str) -> Op {
        Op::Get {
            key: Bytes::from(k.to_string()),
        }
    }

    #[test]
    fn outcomes_are_definite_only_for_definite_successes() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = HistoryRecorder::new(t0, 100, 10);
        let a = r.invoke(1, &put("k", "a"), at(1)).unwrap();
        r.sent(a, at(2));
        r.answered(a, &Outcome::Done, at(5));
        let b = r.invoke(1, &get("k"), at(3)).unwrap();
        r.answered(b, &Outcome::Value(Some(Bytes::from_static(b"a"))), at(6));
        let c = r.invoke(2, &put("k", "c"), at(4)).unwrap();
        r.gave_up(c, at(104)); // its timeout
        r.answered(c, &Outcome::Done, at(200)); // a late answer: still a timeout
        let d = r.invoke(2, &put("k", "d"), at(5)).unwrap();
        r.answered(d, &Outcome::Expired, at(7));
        let e = r.invoke(3, &get("k"), at(6)).unwrap();
        r.answered(e, &Outcome::Overloaded, at(8));
        let f = r.invoke(3, &put("j", "f"), at(7)).unwrap();
        r.answered(f, &Outcome::NotLeader { leader: None }, at(9));
        let g = r.invoke(4, &get("j"), at(8)).unwrap(); // never answered
        let h = r.finish(Duration::from_millis(3), 77);
        assert!(!h.truncated);
        assert_eq!(h.cutoff_ns, None);
        assert_eq!(h.window_offset_ns, 3_000_000);
        let ret: Vec<_> = h.ops.iter().map(|o| o.ret.clone()).collect();
        assert_eq!(
            ret,
            vec![
                Ret::Done,
                Ret::Read(Some(b"a".to_vec())),
                Ret::Unknown,
                Ret::Unknown,
                Ret::Unknown,
                Ret::Unknown,
                Ret::Unknown,
            ]
        );
        // Invoked at the send, not at the issue; returned when the answer (or the deadline)
        // came.
        assert_eq!(h.ops[a as usize].invoked_ns, 2_000_000);
        assert_eq!(h.ops[a as usize].returned_ns, Some(5_000_000));
        assert_eq!(h.ops[c as usize].returned_ns, Some(104_000_000));
        assert_eq!(h.ops[g as usize].returned_ns, None);
        assert_eq!(h.ops[a as usize].call, Call::Put(b"a".to_vec()));
        assert_eq!(h.ops[e as usize].client, 3);
        assert_eq!(h.ops[f as usize].key, b"j".to_vec());
    }

    #[test]
    fn past_the_cap_writes_are_kept_and_late_reads_dropped() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = HistoryRecorder::new(t0, 4, 1_000);
        assert_eq!(r.entries.capacity(), 4, "reserves min(cap, expected)");
        let early_read = r.invoke(1, &get("k"), at(1)).unwrap();
        let late_write = r.invoke(2, &put("k", "w"), at(2)).unwrap();
        let late_read = r.invoke(3, &get("k"), at(3)).unwrap();
        let lost_read = r.invoke(4, &get("k"), at(4)).unwrap();
        // The fifth invocation, at 10 ms, is past the cap: the cutoff.
        assert!(r.invoke(5, &put("k", "x"), at(10)).is_none());
        assert!(r.invoke(6, &put("k", "y"), at(11)).is_none());
        r.answered(early_read, &Outcome::Value(None), at(9));
        r.answered(late_write, &Outcome::Done, at(50));
        // This read may have seen the unrecorded write of "x": it must go.
        r.answered(
            late_read,
            &Outcome::Value(Some(Bytes::from_static(b"x"))),
            at(12),
        );
        r.gave_up(lost_read, at(5)); // returned before the cutoff, so it stays (unknown)
        let h = r.finish(Duration::ZERO, 0);
        assert!(h.truncated);
        assert_eq!(h.cutoff_ns, Some(10_000_000));
        let clients: Vec<u64> = h.ops.iter().map(|o| o.client).collect();
        assert_eq!(clients, vec![1, 2, 4], "{h:?}");
        assert_eq!(h.ops[1].returned_ns, Some(50_000_000), "writes are kept");
    }

    #[test]
    fn merged_histories_share_an_origin_and_the_earliest_cutoff() {
        let op = |client, call: Call, inv, ret: Option<u64>| Operation {
            client,
            key: b"k".to_vec(),
            call,
            invoked_ns: inv,
            returned_ns: ret,
            ret: Ret::Unknown,
        };
        let a = History {
            ops: vec![
                op(1, Call::Get, 10, Some(20)),
                op(1, Call::Get, 30, Some(60)),
            ],
            window_offset_ns: 5,
            truncated: false,
            cutoff_ns: None,
            origin_unix_ns: 1_000,
        };
        // Started 100 ns after `a`, truncated at its own 0 + 40 ns = 140 ns on `a`'s clock.
        let b = History {
            ops: vec![op(2, Call::Put(b"v".to_vec()), 1, Some(500))],
            window_offset_ns: 7,
            truncated: true,
            cutoff_ns: Some(40),
            origin_unix_ns: 1_100,
        };
        let m = History::merge(vec![a, b]).unwrap();
        assert_eq!(m.origin_unix_ns, 1_000);
        assert!(m.truncated);
        assert_eq!(m.cutoff_ns, Some(140));
        assert_eq!(m.window_offset_ns, 5);
        // `a`'s reads returned at 20 and 60 ns, both before 140: kept. `b`'s write shifted.
        assert_eq!(m.ops.len(), 3);
        assert_eq!(
            (m.ops[2].invoked_ns, m.ops[2].returned_ns),
            (101, Some(600))
        );

        // A cutoff before `a`'s second read drops it, though `a` itself was not truncated.
        let a = History {
            ops: vec![
                op(1, Call::Get, 10, Some(20)),
                op(1, Call::Get, 30, Some(60)),
            ],
            origin_unix_ns: 1_000,
            ..History::default()
        };
        let mut b = History {
            truncated: true,
            cutoff_ns: Some(0),
            origin_unix_ns: 1_000,
            ..History::default()
        };
        // B's host runs 50 ns behind: on A's clock its origin is 50 ns later.
        b.shift_origin(-50);
        assert_eq!(b.origin_unix_ns, 1_050);
        let m = History::merge(vec![a, b]).unwrap();
        assert_eq!(m.cutoff_ns, Some(50));
        assert_eq!(m.ops.len(), 1);
        assert!(History::merge(Vec::new()).is_none());
    }

    #[test]
    fn history_jsonl_reads_back_equal() {
        let h = History {
            ops: vec![
                Operation {
                    client: 7,
                    key: b"key-0000000001".to_vec(),
                    call: Call::Put(vec![0, 1, 2, 255]),
                    invoked_ns: 12,
                    returned_ns: Some(40),
                    ret: Ret::Done,
                },
                Operation {
                    client: 8,
                    key: b"key-0000000001".to_vec(),
                    call: Call::Get,
                    invoked_ns: 13,
                    returned_ns: None,
                    ret: Ret::Unknown,
                },
                Operation {
                    client: 8,
                    key: b"k".to_vec(),
                    call: Call::Get,
                    invoked_ns: 14,
                    returned_ns: Some(15),
                    ret: Ret::Read(None),
                },
            ],
            window_offset_ns: 1_000_000_000,
            truncated: true,
            cutoff_ns: Some(99),
            origin_unix_ns: 1_700_000_000_123_456_789,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        h.write_jsonl(&path).unwrap();
        assert_eq!(History::read_jsonl(&path).unwrap(), h);
        // A file cut short is refused, not read as a shorter history.
        let text = std::fs::read_to_string(&path).unwrap();
        let short: Vec<&str> = text.lines().take(3).collect();
        std::fs::write(&path, short.join("\n")).unwrap();
        assert!(History::read_jsonl(&path).is_err());
    }
}

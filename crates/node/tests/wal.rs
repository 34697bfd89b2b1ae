//! The write-ahead log: replay round-trips, segment rolling and deletion after snapshots, torn
//! tails, corruption, and crash simulation. The format constants below restate the module docs
//! of `node::wal`, so a change to the format has to change both.

use std::collections::BTreeSet;
use std::fmt::Write as FmtWrite;
use std::fs;
use std::io::{Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use node::wal::{Corruption, Wal, WalError, WalOptions};
use paxos::{
    Ballot, ClientId, Command, Durable, KvState, NodeId, Op, PersistToken, Record, RequestId, Slot,
    Value,
};

const FILE_HEADER_LEN: usize = 36;
const FRAME_HEADER_LEN: usize = 24;

// ---- helpers ----------------------------------------------------------------------------------

fn ballot(round: u64) -> Ballot {
    Ballot::new(round, NodeId(1))
}

/// A batch of `n` puts with 16-byte keys and 64-byte values, as in the benchmark workload.
fn value(n: usize, seed: u64) -> Value {
    Value::batch(
        (0..n)
            .map(|i| Command {
                client: ClientId(seed.into()),
                request: RequestId(i as u64),
                op: Op::Put {
                    key: Bytes::from(format!("key-{seed:06}-{i:05}")),
                    value: Bytes::from(vec![(seed as u8).wrapping_add(i as u8); 64]),
                },
            })
            .collect(),
    )
}

fn accept(slot: u64, round: u64, commands: usize) -> Record {
    Record::Accept {
        slot: Slot(slot),
        ballot: ballot(round),
        value: value(commands, slot),
    }
}

fn snapshot(upto: u64) -> Record {
    let mut state = KvState::new(16, paxos::DEFAULT_SESSION_TIMEOUT);
    state.apply(&Command {
        client: ClientId(1),
        request: RequestId(upto),
        op: Op::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(upto.to_string()),
        },
    });
    Record::Snapshot {
        upto: Slot(upto),
        state: Arc::new(state),
    }
}

/// What replaying every record, in order, gives.
fn model<'a>(records: impl IntoIterator<Item = &'a Record>) -> Durable {
    let mut d = Durable::default();
    for r in records {
        d.apply(r);
    }
    d
}

fn open(dir: &Path) -> Result<(Wal, Durable), WalError> {
    Wal::open(dir, WalOptions::default())
}

fn open_small(dir: &Path, segment_bytes: u64) -> Result<(Wal, Durable), WalError> {
    Wal::open(dir, WalOptions { segment_bytes })
}

/// Appends and syncs one group commit.
fn commit(wal: &mut Wal, records: &[Record]) {
    wal.append(records).unwrap();
    wal.sync().unwrap();
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    v.sort();
    v
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, "wal-")
}

fn segment(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:020}.log"))
}

/// The frames of a segment as (offset, payload length), walking the documented format.
fn frames(path: &Path) -> Vec<(usize, usize)> {
    let data = fs::read(path).unwrap();
    let mut pos = FILE_HEADER_LEN;
    let mut out = Vec::new();
    while pos + FRAME_HEADER_LEN <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, len));
        pos += FRAME_HEADER_LEN + len;
    }
    out
}

/// A frame built by hand from the documented format.
fn raw_frame(payload: &[u8], flags: u32, batch: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&batch.to_le_bytes());
    h.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let hcrc = crc32c::crc32c(&h);
    h.extend_from_slice(&hcrc.to_le_bytes());
    h.extend_from_slice(payload);
    h
}

fn flip(path: &Path, offset: usize) {
    let mut data = fs::read(path).unwrap();
    data[offset] ^= 0x5a;
    fs::write(path, data).unwrap();
}

/// Every `tracing` event of this test binary, as "LEVEL field=value ..." lines. A global
/// subscriber, because a thread-local one races with other tests over the callsites' cached
/// interest; tests find their own events by the unique paths in them.
fn tracing_events() -> Arc<Mutex<Vec<String>>> {
    use std::sync::OnceLock;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record as SpanRecord};
    use tracing::{Event, Metadata, Subscriber};

    struct Capture(Arc<Mutex<Vec<String>>>);
    struct Fields(String);
    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }
    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &SpanRecord<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(format!("{} ", event.metadata().level()));
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    static EVENTS: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    EVENTS
        .get_or_init(|| {
            let events = Arc::new(Mutex::new(Vec::new()));
            tracing::subscriber::set_global_default(Capture(events.clone()))
                .expect("no other global subscriber in this test binary");
            events
        })
        .clone()
}

/// A small deterministic RNG (xorshift64*), so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---- replay -----------------------------------------------------------------------------------

#[test]
fn a_wal_is_send() {
    fn send<T: Send>() {}
    send::<Wal>();
    send::<WalError>();
}

#[test]
fn an_empty_directory_opens_empty_and_creates_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/wal");
    let (wal, durable) = open(&path).unwrap();
    assert_eq!(durable, Durable::default());
    assert_eq!(segments(&path), vec![segment(&path, 1)]);
    assert_eq!(wal.recovery().records, 0);
    assert_eq!(wal.dir(), path);
}

#[test]
fn promises_and_accepts_replay() {
    let dir = tempfile::tempdir().unwrap();
    let batches = vec![
        vec![Record::Promise(ballot(1))],
        vec![accept(0, 1, 100), accept(1, 1, 3)],
        vec![Record::SlotPromise(Slot(5), ballot(4)), accept(1, 2, 1)],
        vec![Record::Promise(ballot(3)), accept(2, 3, 0)],
        vec![Record::SlotPromise(Slot(5), ballot(2))],
    ];
    {
        let (mut wal, _) = open(dir.path()).unwrap();
        // Creating the first segment synced its file and the directory.
        assert_eq!(wal.metrics().fsyncs, 2);
        for b in &batches {
            commit(&mut wal, b);
        }
        let m = wal.metrics();
        assert_eq!((m.records, m.group_commits, m.fsyncs), (8, 5, 2 + 5));
        assert!(m.bytes_written > 8_800);
    }
    let (wal, durable) = open(dir.path()).unwrap();
    assert_eq!(durable, model(batches.iter().flatten()));
    assert_eq!(durable.promised, ballot(3));
    assert_eq!(durable.accepted[&Slot(1)].0, ballot(2));
    assert_eq!(durable.slot_promises[&Slot(5)], ballot(4));
    assert_eq!(wal.recovery().records, 8);
    assert_eq!(wal.recovery().torn, None);
}

#[test]
fn commit_is_one_group_commit_and_returns_the_highest_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path()).unwrap();
    let turn = [
        (PersistToken(3), vec![Record::Promise(ballot(1))]),
        (PersistToken(4), vec![accept(0, 1, 10), accept(1, 1, 10)]),
        (PersistToken(5), vec![]),
    ];
    let before = wal.metrics().fsyncs;
    let done = wal
        .commit(turn.iter().map(|(t, r)| (*t, r.as_slice())))
        .unwrap();
    assert_eq!(done, Some(PersistToken(5)));
    assert_eq!(wal.metrics().fsyncs, before + 1);
    assert_eq!(wal.commit(std::iter::empty()).unwrap(), None);
    assert_eq!(
        wal.metrics().fsyncs,
        before + 1,
        "nothing pending, no fsync"
    );
}

#[test]
fn appended_but_unsynced_records_are_lost_like_in_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let synced = vec![Record::Promise(ballot(2)), accept(0, 2, 5)];
    {
        let (mut wal, _) = open(dir.path()).unwrap();
        commit(&mut wal, &synced);
        wal.append(&[accept(1, 2, 5)]).unwrap();
        assert_eq!(wal.pending_records(), 1);
        // Crash: the process dies before the group commit.
    }
    let (_, durable) = open(dir.path()).unwrap();
    assert_eq!(durable, model(&synced));
}

#[test]
fn segments_roll_at_the_size_limit_and_replay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    {
        let (mut wal, _) = open_small(dir.path(), 20_000).unwrap();
        for slot in 0..20 {
            // Re-accept earlier slots with higher ballots so order across segments matters.
            let batch = vec![accept(slot, 1, 100), accept(slot / 2, 2 + slot, 1)];
            commit(&mut wal, &batch);
            all.extend(batch);
        }
        assert!(wal.metrics().segments_created >= 6);
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 7, "{segs:?}");
    for s in &segs[..segs.len() - 1] {
        // A segment closes at the first group commit after it reaches the limit.
        let len = fs::metadata(s).unwrap().len();
        assert!((20_000..20_000 + 2 * 9_000).contains(&len), "{s:?}: {len}");
    }
    let (_, durable) = open_small(dir.path(), 20_000).unwrap();
    assert_eq!(durable, model(&all));
}

#[test]
fn a_snapshot_gets_its_own_file_and_obsolete_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![Record::Promise(ballot(7))];
    // Every Accept closes its segment.
    let (mut wal, _) = open_small(dir.path(), 5_000).unwrap();
    commit(&mut wal, &all);
    for slot in 0..10 {
        let r = accept(slot, 7, 100);
        commit(&mut wal, std::slice::from_ref(&r));
        all.push(r);
    }
    assert!(segments(dir.path()).len() >= 9);

    // The snapshot covers slots below 8: only the segments holding slots 8 and 9 stay, plus
    // the new boundary segment. Records before and after it in the same call keep their order.
    let batch = vec![accept(10, 7, 1), snapshot(8), accept(11, 7, 1)];
    wal.append(&batch).unwrap();
    wal.sync().unwrap();
    // The file is written in the background; once it is in place the obsolete files go.
    wal.wait_for_snapshot().unwrap();
    all.extend(batch);
    let segs = segments(dir.path());
    assert!(segs.len() <= 4, "{segs:?}");
    assert_eq!(
        files(dir.path(), "snapshot-"),
        vec![dir.path().join("snapshot-00000000000000000008.bin")]
    );
    let m = wal.metrics();
    assert_eq!(m.snapshots, 1);
    assert!(m.segments_deleted >= 7, "{m:?}");
    drop(wal);

    let (mut wal, durable) = open_small(dir.path(), 5_000).unwrap();
    assert_eq!(durable, model(&all));
    assert_eq!(
        durable.promised,
        ballot(7),
        "the promise in a deleted segment survives"
    );
    assert_eq!(
        durable.accepted.keys().copied().collect::<Vec<_>>(),
        vec![Slot(8), Slot(9), Slot(10), Slot(11)]
    );
    assert_eq!(wal.recovery().snapshot, Some(Slot(8)));

    // A second snapshot replaces the first; a stale one is ignored.
    let batch = vec![
        snapshot(11),
        snapshot(9),
        Record::SlotPromise(Slot(12), ballot(8)),
    ];
    commit(&mut wal, &batch);
    wal.wait_for_snapshot().unwrap();
    all.extend(batch);
    assert_eq!(
        files(dir.path(), "snapshot-"),
        vec![dir.path().join("snapshot-00000000000000000011.bin")]
    );
    drop(wal);
    let (_, durable) = open_small(dir.path(), 5_000).unwrap();
    assert_eq!(durable, model(&all));
    assert_eq!(durable.snapshot.as_ref().unwrap().0, Slot(11));
}

#[test]
fn random_histories_replay_like_the_model() {
    let seeds = std::env::var("WAL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8u64);
    for seed in 1..=seeds {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let segment_bytes = [0, 300, 3_000, 1 << 20][rng.below(4) as usize];
        let (mut wal, _) = open_small(dir.path(), segment_bytes).unwrap();
        let mut durable_records: Vec<Record> = Vec::new();
        let mut pending: Vec<Record> = Vec::new();
        let mut next_snapshot = None;
        // Records of `pending` up to the last snapshot that takes effect: durable once appended.
        let mut effective = 0;
        let mut max_slot = 0;
        for step in 0..300 {
            match rng.below(20) {
                0 => pending.push(Record::Promise(ballot(rng.below(50)))),
                1..=2 => pending.push(Record::SlotPromise(
                    Slot(rng.below(80)),
                    ballot(rng.below(50)),
                )),
                3..=11 => {
                    let slot = rng.below(80);
                    max_slot = max_slot.max(slot);
                    pending.push(accept(slot, rng.below(50), rng.below(4) as usize));
                }
                12 => {
                    let upto = next_snapshot.unwrap_or(0) + rng.below(10);
                    pending.push(snapshot(upto));
                    if next_snapshot.is_none_or(|latest| upto > latest) {
                        // It syncs what precedes it; a stale one (not above the latest) is
                        // skipped and syncs nothing.
                        effective = pending.len();
                        next_snapshot = Some(upto);
                    }
                }
                13..=17 => {
                    wal.append(&pending).unwrap();
                    wal.sync().unwrap();
                    durable_records.append(&mut pending);
                    effective = 0;
                }
                _ => {
                    // Crash: unsynced records are lost unless a snapshot after them synced them.
                    wal.append(&pending).unwrap();
                    durable_records.extend(pending.drain(..effective));
                    pending.clear();
                    effective = 0;
                    drop(wal);
                    let (reopened, durable) = open_small(dir.path(), segment_bytes).unwrap();
                    assert_eq!(
                        durable,
                        model(&durable_records),
                        "seed {seed} step {step} segment_bytes {segment_bytes}"
                    );
                    assert_eq!(reopened.recovery().torn, None);
                    wal = reopened;
                }
            }
        }
        // Deleted segments keep the directory small: every segment left holds a slot at or
        // above the snapshot, or follows it.
        let live = segments(dir.path()).len();
        assert!(live <= 300, "seed {seed}: {live} segments");
    }
}

// ---- torn tails -------------------------------------------------------------------------------

/// Writes `batches` as group commits to a fresh log in `dir`; returns the last segment and the
/// offset where the final record's frame starts.
fn write_batches(dir: &Path, batches: &[Vec<Record>]) -> (PathBuf, usize) {
    let (mut wal, _) = open(dir).unwrap();
    for b in batches {
        commit(&mut wal, b);
    }
    drop(wal);
    let seg = segments(dir).pop().unwrap();
    let last = frames(&seg).last().unwrap().0;
    (seg, last)
}

fn check_torn_cuts(last_record_commands: usize, step: usize) {
    let dir = tempfile::tempdir().unwrap();
    let batches = vec![
        vec![Record::Promise(ballot(1)), accept(0, 1, 100)],
        vec![accept(1, 1, 50)],
        vec![accept(2, 1, last_record_commands)],
    ];
    let (seg, start) = write_batches(dir.path(), &batches);
    let full = fs::read(&seg).unwrap();
    let expected = model(batches[..2].iter().flatten());
    let mut cuts: Vec<usize> = (start + 1..full.len()).step_by(step).collect();
    cuts.push(full.len() - 1);
    for (i, &cut) in cuts.iter().enumerate() {
        // The previous open truncated the file to `start` (or a later append grew it): put the
        // cut record back in place rather than rewrite the file, which is much faster on ext4.
        let mut f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(start as u64).unwrap();
        f.seek(SeekFrom::Start(start as u64)).unwrap();
        f.write_all(&full[start..cut]).unwrap();
        drop(f);
        let (mut wal, durable) = open(dir.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(durable, expected, "cut at {cut}");
        let torn = wal.recovery().torn.clone().expect("a torn tail");
        assert_eq!((torn.file, torn.offset), (seg.clone(), start as u64));
        assert_eq!(torn.dropped_bytes, (cut - start) as u64);
        assert_eq!(fs::metadata(&seg).unwrap().len(), start as u64, "truncated");
        if i % 64 == 0 || cut == full.len() - 1 {
            // A later append is clean: it replays with no torn tail.
            commit(&mut wal, &[accept(3, 2, 1)]);
            drop(wal);
            let (wal, durable) = open(dir.path()).unwrap();
            assert_eq!(wal.recovery().torn, None);
            assert_eq!(
                durable,
                model(batches[..2].iter().flatten().chain([&accept(3, 2, 1)]))
            );
        }
    }
    // Cutting exactly at the record boundary loses the record without any torn bytes.
    fs::write(&seg, &full[..start]).unwrap();
    let (wal, durable) = open(dir.path()).unwrap();
    assert_eq!((durable, wal.recovery().torn.clone()), (expected, None));
}

#[test]
fn a_tail_cut_at_any_byte_of_the_last_record_is_truncated() {
    // A 10-command Accept: every offset of its ~900 bytes.
    check_torn_cuts(10, 1);
}

#[test]
fn a_tail_cut_inside_a_benchmark_sized_accept_is_truncated() {
    // A 100-command Accept (~8.8 kB): every 13th offset, header bytes included.
    check_torn_cuts(100, 13);
}

#[test]
fn a_torn_tail_is_reported_with_a_warning_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, start) = write_batches(dir.path(), &[vec![accept(0, 1, 1)], vec![accept(1, 1, 1)]]);
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let events = tracing_events();
    open(dir.path()).unwrap();
    let events = events.lock().unwrap();
    let warning = events
        .iter()
        .find(|e| e.starts_with("WARN") && e.contains(seg.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no warning in {events:?}"));
    assert!(warning.contains(seg.to_str().unwrap()), "{warning}");
    assert!(warning.contains(&format!("byte {start}")), "{warning}");
}

#[test]
fn lost_pages_inside_the_final_group_commit_are_a_torn_tail() {
    // The page cache may write an unsynced group commit's pages in any order: the end of the
    // final batch on disk, a hole (zeros) before it.
    let dir = tempfile::tempdir().unwrap();
    let first = vec![Record::Promise(ballot(1)), accept(0, 1, 100)];
    let last = vec![accept(1, 1, 100), accept(2, 1, 100), accept(3, 1, 100)];
    let (seg, _) = write_batches(dir.path(), &[first.clone(), last]);
    let f = frames(&seg);
    let mut data = fs::read(&seg).unwrap();
    data[f[2].0 + 100..f[3].0 + 4096].fill(0);
    fs::write(&seg, &data).unwrap();
    let (wal, durable) = open(dir.path()).unwrap();
    assert_eq!(durable, model(&first));
    assert_eq!(wal.recovery().torn.as_ref().unwrap().offset, f[2].0 as u64);
}

#[test]
fn damage_inside_the_final_group_commit_is_torn_and_before_it_is_corrupt() {
    for seed in 1..=16u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Vec<Record>> = (0..2 + rng.below(4))
            .map(|b| {
                (0..1 + rng.below(4))
                    .map(|i| accept(b * 10 + i, b, rng.below(5) as usize))
                    .collect()
            })
            .collect();
        let (mut wal, _) = open(dir.path()).unwrap();
        let mut final_start = 0;
        for b in &batches {
            final_start = fs::metadata(segment(dir.path(), 1)).unwrap().len() as usize;
            commit(&mut wal, b);
        }
        drop(wal);
        let seg = segment(dir.path(), 1);
        let pristine = fs::read(&seg).unwrap();
        let (earlier, last) = batches.split_at(batches.len() - 1);
        // Anything from the earlier batches plus a prefix of the final one is acceptable.
        let acceptable: Vec<Durable> = (0..=last[0].len())
            .map(|i| model(earlier.iter().flatten().chain(&last[0][..i])))
            .collect();

        for _ in 0..20 {
            // Damage confined to the final group commit: a hole, a cut, or flipped bytes.
            let mut data = pristine.clone();
            let a = final_start + rng.below((data.len() - final_start) as u64) as usize;
            match rng.below(3) {
                0 => {
                    let b = a + rng.below((data.len() - a) as u64 + 1) as usize;
                    data[a..b].fill(0);
                }
                1 => data.truncate(a),
                _ => {
                    for _ in 0..1 + rng.below(3) {
                        let at =
                            final_start + rng.below((data.len() - final_start) as u64) as usize;
                        data[at] ^= 1 << rng.below(8);
                    }
                }
            }
            fs::write(&seg, &data).unwrap();
            let (_, durable) = open(dir.path())
                .unwrap_or_else(|e| panic!("seed {seed}: damage in the final batch: {e}"));
            assert!(acceptable.contains(&durable), "seed {seed}");
        }

        for _ in 0..20 {
            // One flipped bit before the final group commit: corruption, never a torn tail.
            let mut data = pristine.clone();
            let at = FILE_HEADER_LEN + rng.below((final_start - FILE_HEADER_LEN) as u64) as usize;
            data[at] ^= 1 << rng.below(8);
            fs::write(&seg, &data).unwrap();
            match open(dir.path()) {
                Err(WalError::Corrupt { file, offset, .. }) => {
                    assert_eq!(file, seg);
                    assert!(offset as usize <= at, "seed {seed}: {offset} > {at}");
                }
                other => panic!("seed {seed}: flip at {at}: expected corruption, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_zeroed_or_short_header_of_the_newest_segment_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let batch = vec![accept(0, 1, 3)];
    {
        let (mut wal, _) = open_small(dir.path(), 0).unwrap();
        commit(&mut wal, &batch);
    }
    // A crash while segment 2 was being created.
    fs::write(segment(dir.path(), 2), [0u8; 20]).unwrap();
    let (mut wal, durable) = open_small(dir.path(), 0).unwrap();
    assert_eq!(durable, model(&batch));
    assert_eq!(wal.recovery().torn.as_ref().unwrap().offset, 0);
    commit(&mut wal, &[accept(1, 1, 3)]);
    drop(wal);
    let (_, durable) = open_small(dir.path(), 0).unwrap();
    assert_eq!(durable, model(&[batch[0].clone(), accept(1, 1, 3)]));
}

// ---- corruption -------------------------------------------------------------------------------

fn expect_corrupt(dir: &Path) -> (PathBuf, u64, Corruption, String) {
    match open(dir) {
        Err(e @ WalError::Corrupt { .. }) => {
            let msg = e.to_string();
            let WalError::Corrupt {
                file,
                offset,
                reason,
                ..
            } = e
            else {
                unreachable!()
            };
            (file, offset, reason, msg)
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("expected corruption, the log opened"),
    }
}

#[test]
fn a_flipped_byte_in_an_early_record_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, _) = write_batches(
        dir.path(),
        &[
            vec![Record::Promise(ballot(1)), accept(0, 1, 100)],
            vec![accept(1, 1, 100)],
            vec![accept(2, 1, 100)],
        ],
    );
    let f = frames(&seg);
    let pristine = fs::read(&seg).unwrap();
    // In the payload of the first batch's Accept, then in its frame header, then in the first
    // record's header.
    for (at, frame, reason) in [
        (
            f[1].0 + FRAME_HEADER_LEN + 500,
            f[1].0,
            Corruption::Checksum,
        ),
        (f[1].0 + 9, f[1].0, Corruption::FrameHeader),
        (f[0].0 + 1, f[0].0, Corruption::FrameHeader),
    ] {
        fs::write(&seg, &pristine).unwrap();
        flip(&seg, at);
        let (file, offset, got, msg) = expect_corrupt(dir.path());
        assert_eq!((file, offset, got), (seg.clone(), frame as u64, reason));
        assert!(msg.contains(seg.to_str().unwrap()), "{msg}");
        assert!(msg.contains(&format!("byte {frame}")), "{msg}");
        assert_eq!(
            fs::read(&seg).unwrap().len(),
            pristine.len(),
            "left as it was"
        );
    }
}

#[test]
fn a_bad_record_in_an_older_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open_small(dir.path(), 0).unwrap();
        for slot in 0..3 {
            commit(&mut wal, &[accept(slot, 1, 10)]);
        }
    }
    let first = segment(dir.path(), 1);
    let len = fs::metadata(&first).unwrap().len();
    // Even its very last byte: only the newest segment can have a torn tail.
    flip(&first, len as usize - 1);
    let (file, offset, reason, _) = expect_corrupt(dir.path());
    assert_eq!(
        (file, offset, reason),
        (first, FILE_HEADER_LEN as u64, Corruption::Checksum)
    );
}

#[test]
fn a_garbage_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path(), 1);
    let mut rng = Rng(42);
    let garbage: Vec<u8> = (0..5000).map(|_| rng.next() as u8).collect();
    fs::write(&seg, &garbage).unwrap();
    let (file, offset, reason, msg) = expect_corrupt(dir.path());
    assert_eq!(
        (file, offset, reason),
        (seg.clone(), 0, Corruption::BadMagic)
    );
    assert!(
        msg.contains("wal-00000000000000000001.log") && msg.contains("byte 0"),
        "{msg}"
    );
    assert_eq!(fs::read(&seg).unwrap(), garbage, "left as it was");

    // A garbage snapshot file too.
    fs::remove_file(&seg).unwrap();
    let snap = dir.path().join("snapshot-00000000000000000005.bin");
    fs::write(&snap, &garbage).unwrap();
    let (file, _, reason, _) = expect_corrupt(dir.path());
    assert_eq!((file, reason), (snap, Corruption::BadMagic));
}

#[test]
fn a_damaged_snapshot_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open(dir.path()).unwrap();
        commit(&mut wal, &[accept(0, 1, 1), snapshot(1)]);
    }
    let snap = files(dir.path(), "snapshot-").pop().unwrap();
    let len = fs::metadata(&snap).unwrap().len() as usize;
    // Snapshot files are renamed into place complete, so even a short one is corruption.
    let data = fs::read(&snap).unwrap();
    fs::write(&snap, &data[..len - 1]).unwrap();
    let (file, _, reason, _) = expect_corrupt(dir.path());
    assert_eq!((file, reason), (snap.clone(), Corruption::Truncated));
    fs::write(&snap, &data).unwrap();
    flip(&snap, FILE_HEADER_LEN + FRAME_HEADER_LEN + 2);
    let (file, offset, reason, _) = expect_corrupt(dir.path());
    assert_eq!(
        (file, offset, reason),
        (snap, FILE_HEADER_LEN as u64, Corruption::Checksum)
    );
}

#[test]
fn an_unknown_record_tag_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, _) = write_batches(dir.path(), &[vec![accept(0, 1, 1)]]);
    let at = fs::metadata(&seg).unwrap().len();
    // A well-formed frame (valid checksums) holding a record tag this build does not know.
    let mut data = fs::read(&seg).unwrap();
    data.extend(raw_frame(&[0x7f, 1, 2, 3], 1, 2));
    fs::write(&seg, &data).unwrap();
    match open(dir.path()) {
        Err(WalError::Decode {
            file,
            offset,
            source,
        }) => {
            assert_eq!((file, offset), (seg, at));
            assert_eq!(
                source,
                wire::WireError::UnknownTag {
                    what: "Record",
                    tag: 0x7f
                }
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn a_missing_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open_small(dir.path(), 0).unwrap();
        for slot in 0..4 {
            commit(&mut wal, &[accept(slot, 1, 1)]);
        }
    }
    fs::remove_file(segment(dir.path(), 2)).unwrap();
    match open(dir.path()) {
        Err(WalError::MissingSegment { file }) => assert_eq!(file, segment(dir.path(), 2)),
        other => panic!("expected a missing segment, got {other:?}"),
    }
    // Losing the first segment is as bad as losing one in the middle.
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = open_small(dir.path(), 0).unwrap();
        commit(&mut wal, &[accept(0, 1, 1)]);
        commit(&mut wal, &[accept(1, 1, 1)]);
    }
    fs::remove_file(segment(dir.path(), 1)).unwrap();
    assert!(matches!(
        open(dir.path()),
        Err(WalError::MissingSegment { .. })
    ));
}

// ---- crashes around snapshots -----------------------------------------------------------------

#[test]
fn files_a_crash_left_before_snapshot_cleanup_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![Record::Promise(ballot(3))];
    let (mut wal, _) = open_small(dir.path(), 0).unwrap();
    commit(&mut wal, &all);
    for slot in 0..5 {
        let r = accept(slot, 3, 5);
        commit(&mut wal, std::slice::from_ref(&r));
        all.push(r);
    }
    commit(&mut wal, &[snapshot(2)]);
    all.push(snapshot(2));
    // Keep copies of what the next snapshot deletes.
    let before: Vec<(PathBuf, Vec<u8>)> = segments(dir.path())
        .into_iter()
        .chain(files(dir.path(), "snapshot-"))
        .map(|p| {
            let data = fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    commit(&mut wal, &[snapshot(5)]);
    all.push(snapshot(5));
    drop(wal);
    // The crash came after the new snapshot was in place, before the old files were deleted,
    // and during a snapshot's temp file write.
    for (p, data) in &before {
        fs::write(p, data).unwrap();
    }
    fs::write(
        dir.path().join("snapshot-00000000000000000009.bin.tmp"),
        b"half",
    )
    .unwrap();
    let listed: BTreeSet<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let (wal, durable) = open_small(dir.path(), 0).unwrap();
    assert_eq!(durable, model(&all));
    assert_eq!(wal.recovery().snapshot, Some(Slot(5)));
    let removed = wal.recovery().removed_files;
    let now: BTreeSet<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(listed.len() - now.len(), removed as usize);
    assert!(removed >= 3, "{removed}");
    assert_eq!(files(dir.path(), "snapshot-").len(), 1);
}

#[test]
fn a_crash_before_the_boundary_segment_exists_replays_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let all = vec![Record::Promise(ballot(2)), accept(0, 2, 1), snapshot(1)];
    {
        let (mut wal, _) = open(dir.path()).unwrap();
        commit(&mut wal, &all);
    }
    // Remove the segment the snapshot started: as if the crash came right after the rename.
    let newest = segments(dir.path()).pop().unwrap();
    fs::remove_file(&newest).unwrap();
    let (mut wal, durable) = open(dir.path()).unwrap();
    assert_eq!(durable, model(&all));
    commit(&mut wal, &[accept(1, 2, 1)]);
    drop(wal);
    let (_, durable) = open(dir.path()).unwrap();
    assert_eq!(durable, model(all.iter().chain([&accept(1, 2, 1)])));
}

#[test]
fn a_failed_write_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open_small(dir.path(), 0).unwrap();
    commit(&mut wal, &[accept(0, 1, 1)]);
    // The next group commit must start a new segment; make that impossible.
    fs::write(segment(dir.path(), 2), b"in the way").unwrap();
    wal.append(&[accept(1, 1, 1)]).unwrap();
    match wal.sync() {
        Err(e @ WalError::Io { .. }) => {
            assert!(e.to_string().contains("wal-00000000000000000002.log"))
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(matches!(wal.sync(), Err(WalError::Failed)));
    assert!(matches!(wal.append(&[]), Err(WalError::Failed)));
}

// ---- throughput -------------------------------------------------------------------------------

/// Group commit throughput on this machine's disk. Run with
/// `cargo test --release -p node --test wal -- --ignored --nocapture group_commit_throughput`;
/// `WAL_BENCH_DIR` picks the directory (default: the system temp dir) and `WAL_BENCH_SECS` the
/// time per point (default 3).
#[test]
#[ignore]
fn group_commit_throughput() {
    let base = std::env::var_os("WAL_BENCH_DIR").map(PathBuf::from);
    let secs: f64 = std::env::var("WAL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let value = value(100, 7);
    println!("group commit of N Accepts, each a 100-command batch of 16-byte keys, 64-byte values");
    println!(
        "{:>4} {:>10} {:>12} {:>10} {:>10} {:>14}",
        "N", "commits/s", "records/s", "MB/s", "p50 sync", "encode/record"
    );
    for n in [1usize, 10, 100] {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let (mut wal, _) = open(dir.path()).unwrap();
        let mut slot = 0;
        let mut batch: Vec<Record> = Vec::with_capacity(n);
        let mut syncs = Vec::new();
        let mut encoding = Duration::ZERO;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs_f64(secs) {
            batch.clear();
            for _ in 0..n {
                batch.push(Record::Accept {
                    slot: Slot(slot),
                    ballot: ballot(1),
                    value: value.clone(),
                });
                slot += 1;
            }
            let t = Instant::now();
            wal.append(&batch).unwrap();
            encoding += t.elapsed();
            wal.sync().unwrap();
            syncs.push(t.elapsed());
        }
        let elapsed = start.elapsed().as_secs_f64();
        let m = wal.metrics();
        syncs.sort();
        println!(
            "{:>4} {:>10.0} {:>12.0} {:>10.1} {:>8.2}ms {:>12.2}us   ({} commits, {} fsyncs, {} segments)",
            n,
            m.group_commits as f64 / elapsed,
            m.records as f64 / elapsed,
            m.bytes_written as f64 / elapsed / 1e6,
            syncs[syncs.len() / 2].as_secs_f64() * 1e3,
            encoding.as_secs_f64() * 1e6 / m.records as f64,
            m.group_commits,
            m.fsyncs,
            m.segments_created,
        );
    }
}

//! The write-ahead log behind `durability = "fsync"`: what an acceptor promised and accepted,
//! made durable before the core's Persist barrier releases the replies that report it.
//!
//! # Using it
//!
//! [`Wal::open`] replays the directory and returns the log with the [`paxos::Durable`] state to
//! hand to [`paxos::Node::recover`]. Each loop turn, the runtime passes every
//! [`paxos::Action::Persist`] it drained to [`Wal::commit`] (or [`Wal::append`] each one, then
//! [`Wal::sync`] once), which writes them and issues **one** `fdatasync` for all of them (group
//! commit), then calls `handle_persisted` with the highest token. The calls block on the disk,
//! so run the log on its own thread (`std::thread`, or `tokio::task::spawn_blocking`); a
//! [`Wal`] is `Send`.
//!
//! ```
//! use paxos::{Ballot, NodeId, PersistToken, Record, Slot, Value};
//! use node::wal::{Wal, WalOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let (mut wal, durable) = Wal::open(dir.path(), WalOptions::default())?;
//! assert_eq!(durable, paxos::Durable::default());
//!
//! // One loop turn produced two Persist actions: one write, one fdatasync.
//! let b = Ballot::new(1, NodeId(0));
//! let turn = [
//!     (PersistToken(1), vec![Record::Promise(b)]),
//!     (PersistToken(2), vec![Record::Accept { slot: Slot(0), ballot: b, value: Value::Noop }]),
//! ];
//! let done = wal.commit(turn.iter().map(|(t, r)| (*t, r.as_slice())))?;
//! assert_eq!(done, Some(PersistToken(2))); // now call node.handle_persisted(now, token)
//! drop(wal);
//!
//! // After a crash: the same state comes back.
//! let (_wal, durable) = Wal::open(dir.path(), WalOptions::default())?;
//! assert_eq!(durable.promised, b);
//! assert_eq!(durable.accepted[&Slot(0)], (b, Value::Noop));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Records appended but not synced when a [`Wal`] is dropped are discarded, as a crash would.
//! After an I/O error the log takes no more writes ([`WalError::Failed`]): a failed `fdatasync`
//! may have dropped dirty pages, so a retry could claim durability it does not have. Restart
//! the node; replay recovers what reached the disk. One process at a time may use a directory
//! (nothing locks it).
//!
//! # Files
//!
//! ```text
//! <dir>/wal-00000000000000000001.log        segments, numbered from 1 without gaps
//! <dir>/snapshot-00000000000000004096.bin   the latest snapshot, named for its slot
//! ```
//!
//! Records go to the newest segment. Before a group commit, a segment that holds at least
//! [`WalOptions::segment_bytes`] (64 MiB) is closed and a new one started, so a segment
//! overshoots by at most one group commit and never splits one. A new segment's header is
//! written and synced, and the directory synced, before any record goes into it.
//!
//! A [`Record::Snapshot`] never goes into a segment. The log syncs what precedes it, starts a
//! new segment (the *boundary*: records before it precede the snapshot in log order, records
//! from it on follow it), and writes the snapshot file atomically (`snapshot-<slot>.bin.tmp`,
//! `fdatasync`, rename, directory `fsync`) on a thread of its own, so that the group commits
//! after it go on meanwhile: a snapshot of 4–7 MiB took 25–106 ms to write and sync on a VM's
//! disk, and every node takes one at the same slot. Until the file is in place replay uses the previous
//! snapshot and the segments it needs, which are all still there. Once it is in place (seen by
//! a later [`Wal::sync`], the next snapshot, [`Wal::wait_for_snapshot`] or dropping the log),
//! the log deletes the previous snapshot and every leading
//! segment whose Accept and SlotPromise records are all for slots below the snapshot. Deleted
//! Promise records are summed up by the highest promised ballot, which the snapshot file keeps.
//! Replay applies the kept segments before the boundary, the snapshot, that ballot, and the
//! segments from the boundary on: the same [`paxos::Durable`] that applying every record ever
//! written, in order, would give. A snapshot whose slot is not above the latest one changes
//! nothing on replay and is not written.
//!
//! # Format
//!
//! Integers are little-endian; checksums are CRC-32C (Castagnoli).
//!
//! ```text
//! file header (36 bytes), segments and snapshot files
//!   0  magic[8]      "PAXBWAL\0" (segment) or "PAXBSNP\0" (snapshot)
//!   8  version:u32   1
//!  12  reserved:u32  0
//!  16  a:u64         segment: its sequence number      snapshot: first segment to replay
//!  24  b:u64         segment: batch of its 1st record   snapshot: boundary segment
//!  32  crc:u32       crc32c of bytes 0..32
//!
//! record frame (24-byte header, then the payload)
//!   0  len:u32       payload length, at least 1
//!   4  flags:u32     bit 0 COMMIT: the last record of its group commit; other bits 0
//!   8  batch:u64     group commit number, +1 per group commit
//!  16  crc:u32       crc32c of the payload
//!  20  hcrc:u32      crc32c of bytes 0..20
//!  24  payload       one record, encoded by wire::record (tag byte, then fields)
//! ```
//!
//! A segment is its header followed by frames. A snapshot file is its header followed by two
//! frames: the Snapshot record and a Promise record with the highest promised ballot.
//!
//! # Torn tails and corruption
//!
//! Group commits are written one at a time, each only after the previous one's `fdatasync`
//! returned, so after a crash only the final group commit of the newest segment can be partly
//! on disk, and its pages in any order. On open, a bad range in the newest segment (a short
//! record, a header or payload that fails its checksum, zeros) is a **torn tail** if every frame
//! after it belongs to the same group commit (by `batch`, and the COMMIT flag of the record
//! before it): the file is truncated there with a `tracing::warn!` naming the file and offset,
//! and appends continue cleanly after the last whole record. Replay keeps the records of that
//! group commit that precede the bad range; none of them was acknowledged, so keeping or
//! dropping them is equally safe. The truncation is reported by [`Wal::recovery`].
//!
//! Anything else refuses to start, with a [`WalError`] that names the file and byte offset: a
//! bad range followed by a record of a later group commit (or by any byte after the final group
//! commit's COMMIT record), a bad range in an older segment or a snapshot file, a bad file
//! header, a gap in segment numbers, and a record whose checksum is valid but which does not
//! decode (an unknown record tag, say). A damaged last record of the final group commit cannot
//! be told from a torn one; it is truncated like one.

mod error;
mod format;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use paxos::{Ballot, Durable, KvState, PersistToken, Record, Slot};

pub use error::{Corruption, WalError};
use format::{
    file_header, put_frame, read_segment, SnapshotFile, FILE_HEADER_LEN, MAX_RECORD_LEN,
    SEGMENT_MAGIC,
};

/// How the log is laid out on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Start a new segment before a group commit once the current one holds at least this many
    /// bytes. Default 64 MiB. Smaller segments free disk space sooner after a snapshot.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Counters since the log was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalMetrics {
    /// Records made durable in segments (snapshots not counted).
    pub records: u64,
    /// Group commits: pending records written with one `fdatasync` (each [`Wal::sync`] that
    /// had records to write, and the sync that precedes a snapshot).
    pub group_commits: u64,
    /// Bytes written to segment files (frames and headers).
    pub bytes_written: u64,
    /// `fdatasync`/`fsync` calls of any kind: one per group commit, plus two per new segment
    /// and two per snapshot.
    pub fsyncs: u64,
    /// Time spent in the group commits' `fdatasync`s.
    pub sync_time: Duration,
    /// Segments started.
    pub segments_created: u64,
    /// Segments deleted after a snapshot made them obsolete.
    pub segments_deleted: u64,
    /// Snapshot files written.
    pub snapshots: u64,
    /// Bytes written to snapshot files.
    pub snapshot_bytes: u64,
    /// Time the snapshot files took to encode, write and sync (on their own thread).
    pub snapshot_time: Duration,
}

/// What [`Wal::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments replayed.
    pub segments: u64,
    /// Records replayed from segments.
    pub records: u64,
    /// The slot of the snapshot replay started from, if any.
    pub snapshot: Option<Slot>,
    /// The torn tail that was cut off the newest segment, if any.
    pub torn: Option<TornTail>,
    /// Obsolete files removed: segments and snapshots that a crash left behind before cleanup,
    /// and unfinished snapshot temp files.
    pub removed_files: u64,
}

/// A torn final write, truncated on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub file: PathBuf,
    /// Where it was truncated: the end of its last whole record (0 if its header was torn).
    pub offset: u64,
    /// Bytes cut off.
    pub dropped_bytes: u64,
    /// What was wrong at `offset`.
    pub reason: Corruption,
}

/// A segment that replay still needs.
#[derive(Debug)]
struct Segment {
    seq: u64,
    /// The highest slot of its Accept and SlotPromise records: once a snapshot is above it,
    /// the segment holds nothing replay needs.
    max_slot: Option<Slot>,
}

/// A crash-safe write-ahead log of [`Record`]s with group commit. See the module docs.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// Segments replay needs, oldest first; the last is the one being written. Never empty.
    segments: VecDeque<Segment>,
    /// The last segment, open for appending.
    file: File,
    /// Bytes in the last segment.
    active_len: u64,
    /// Frames appended since the last sync.
    buf: BytesMut,
    /// Where the last frame in `buf` starts (it gets the COMMIT flag).
    last_frame: Option<usize>,
    /// Records in `buf`.
    pending_records: u64,
    /// The highest slot of the Accept and SlotPromise records in `buf`.
    pending_max_slot: Option<Slot>,
    /// The highest ballot in any Promise record appended.
    promised: Ballot,
    /// The latest durable snapshot's slot and file.
    snapshot: Option<(Slot, PathBuf)>,
    /// A snapshot file being written in the background, if one is.
    writing: Option<SnapshotWrite>,
    /// Unit tests only: the next snapshot's writer waits for a message (or a hang-up) here.
    #[cfg(test)]
    hold_next_snapshot: Option<std::sync::mpsc::Receiver<()>>,
    /// The group commit number of the frames in `buf`.
    batch: u64,
    metrics: WalMetrics,
    recovery: Recovery,
    /// Set by an I/O error; the log then refuses writes.
    failed: bool,
}

impl Drop for Wal {
    /// A snapshot being written is finished first, so that dropping the log leaves what a
    /// clean stop would (the next open removes what its cleanup did not get to).
    fn drop(&mut self) {
        if let Err(e) = self.finish_snapshot() {
            tracing::error!(error = %e, "WAL: the last snapshot could not be written");
        }
    }
}

/// A snapshot file being written on its own thread ([`Wal::append`]).
#[derive(Debug)]
struct SnapshotWrite {
    upto: Slot,
    path: PathBuf,
    /// Segments before this one are obsolete once the file is in place.
    first_segment: u64,
    /// The file's length and how long encoding, writing and syncing it took.
    done: std::thread::JoinHandle<Result<(u64, Duration), WalError>>,
}

/// What [`Wal::append`] restores when a record is too large.
struct Mark {
    buf_len: usize,
    last_frame: Option<usize>,
    pending_records: u64,
    pending_max_slot: Option<Slot>,
    promised: Ballot,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and replays it.
    ///
    /// Returns the log, ready for appends, and the durable state it holds. A torn tail is
    /// truncated with a warning (see [`Wal::recovery`]); corruption is an error naming the file
    /// and offset, and leaves every file as it was. Files left obsolete by a crash during
    /// cleanup are removed.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Durable), WalError> {
        fs::create_dir_all(dir).map_err(WalError::io("create directory", dir))?;
        let listing = Listing::read(dir)?;

        let snapshot = match listing.snapshots.last() {
            Some(&upto) => {
                let path = snapshot_path(dir, upto);
                let data = fs::read(&path).map_err(WalError::io("read", &path))?;
                Some((SnapshotFile::read(&path, upto, &data)?, path))
            }
            None => None,
        };
        let (first, boundary) = snapshot
            .as_ref()
            .map_or((1, 1), |(s, _)| (s.first_segment, s.boundary));
        let live: Vec<u64> = listing
            .segments
            .iter()
            .copied()
            .filter(|&seq| seq >= first)
            .collect();
        for (expected, &seq) in (first..).zip(&live) {
            if seq != expected {
                return Err(WalError::MissingSegment {
                    file: segment_path(dir, expected),
                });
            }
        }
        // Segments before the boundary existed when the snapshot was taken and were kept.
        let next = live.last().map_or(first, |last| last + 1);
        if next < boundary {
            return Err(WalError::MissingSegment {
                file: segment_path(dir, next),
            });
        }

        let mut durable = Durable::default();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::with_capacity(live.len() + 1);
        let mut next_batch = 1u64;
        let mut truncate = None;
        let mut pending_snapshot = snapshot.as_ref().map(|(s, _)| s);
        for (i, &seq) in live.iter().enumerate() {
            if seq >= boundary {
                if let Some(s) = pending_snapshot.take() {
                    apply_snapshot(&mut durable, s);
                }
            }
            let path = segment_path(dir, seq);
            let data = fs::read(&path).map_err(WalError::io("read", &path))?;
            let contents = read_segment(&path, seq, &data, i + 1 == live.len())?;
            let mut max_slot = None;
            for record in &contents.records {
                durable.apply(record);
                max_slot = max_slot.max(record_slot(record));
            }
            recovery.segments += 1;
            recovery.records += contents.records.len() as u64;
            next_batch = next_batch.max(contents.last_batch.saturating_add(1));
            if let Some(reason) = contents.torn {
                let torn = TornTail {
                    file: path.clone(),
                    offset: contents.valid_len as u64,
                    dropped_bytes: (data.len() - contents.valid_len) as u64,
                    reason,
                };
                tracing::warn!(
                    file = %torn.file.display(),
                    offset = torn.offset,
                    dropped_bytes = torn.dropped_bytes,
                    "WAL: truncating the torn tail of {} at byte {} ({}; {} bytes dropped)",
                    torn.file.display(),
                    torn.offset,
                    reason,
                    torn.dropped_bytes,
                );
                recovery.torn = Some(torn);
                truncate = Some(contents.valid_len as u64);
            }
            segments.push_back(Segment { seq, max_slot });
        }
        if let Some(s) = pending_snapshot {
            apply_snapshot(&mut durable, s);
        }
        recovery.snapshot = snapshot.as_ref().map(|(s, _)| s.upto);

        let mut metrics = WalMetrics::default();
        // Append to the newest segment, unless it precedes the snapshot (a crash came before
        // the boundary segment was created) or there is none.
        let (file, active_len) = match live.last() {
            Some(&seq) if seq >= boundary => {
                let path = segment_path(dir, seq);
                let mut file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(WalError::io("open", &path))?;
                match truncate {
                    Some(0) => {
                        file.set_len(0).map_err(WalError::io("truncate", &path))?;
                        let header = file_header(SEGMENT_MAGIC, seq, next_batch);
                        file.write_all(&header)
                            .map_err(WalError::io("write", &path))?;
                        file.sync_data().map_err(WalError::io("fdatasync", &path))?;
                        metrics.fsyncs += 1;
                        (file, FILE_HEADER_LEN as u64)
                    }
                    Some(len) => {
                        file.set_len(len).map_err(WalError::io("truncate", &path))?;
                        file.sync_data().map_err(WalError::io("fdatasync", &path))?;
                        metrics.fsyncs += 1;
                        (file, len)
                    }
                    None => {
                        let len = file.metadata().map_err(WalError::io("stat", &path))?.len();
                        (file, len)
                    }
                }
            }
            last => {
                if let (Some(&seq), Some(len)) = (last, truncate) {
                    // A torn tail before the boundary cannot arise (a snapshot is written only
                    // after what precedes it is synced), but cut it off all the same.
                    let path = segment_path(dir, seq);
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(WalError::io("open", &path))?;
                    file.set_len(len).map_err(WalError::io("truncate", &path))?;
                    file.sync_data().map_err(WalError::io("fdatasync", &path))?;
                }
                let seq = last.map_or(boundary, |l| (l + 1).max(boundary));
                let file = create_segment(dir, seq, next_batch, &mut metrics)?;
                segments.push_back(Segment {
                    seq,
                    max_slot: None,
                });
                (file, FILE_HEADER_LEN as u64)
            }
        };

        // Replay succeeded: remove what a crash left behind.
        let mut obsolete: Vec<PathBuf> = listing.temps;
        obsolete.extend(
            listing
                .segments
                .iter()
                .filter(|&&seq| seq < first)
                .map(|&seq| segment_path(dir, seq)),
        );
        obsolete.extend(
            listing
                .snapshots
                .iter()
                .filter(|&&upto| Some(upto) != listing.snapshots.last().copied())
                .map(|&upto| snapshot_path(dir, upto)),
        );
        for path in &obsolete {
            remove_file(path)?;
        }
        recovery.removed_files = obsolete.len() as u64;

        let promised = durable.promised;
        let wal = Wal {
            dir: dir.to_owned(),
            options,
            segments,
            file,
            active_len,
            buf: BytesMut::new(),
            last_frame: None,
            pending_records: 0,
            pending_max_slot: None,
            promised,
            snapshot: snapshot.map(|(s, path)| (s.upto, path)),
            writing: None,
            #[cfg(test)]
            hold_next_snapshot: None,
            batch: next_batch,
            metrics,
            recovery,
            failed: false,
        };
        Ok((wal, durable))
    }

    /// Encodes `records` into the pending group commit; nothing is durable until [`Wal::sync`].
    ///
    /// A [`Record::Snapshot`] is the exception: it syncs what was appended before it, starts a
    /// new segment and starts writing its snapshot file in the background (module docs); the
    /// segments it makes obsolete are deleted once the file is in place. A snapshot not above
    /// the latest one is skipped (replay would ignore it).
    ///
    /// On [`WalError::RecordTooLarge`] nothing of this call stays appended, unless the call
    /// started a snapshot first; any other error is an I/O error, after which the log takes no
    /// more writes. An error writing a snapshot file (a state over 4 GiB encoded is one) comes
    /// from the call that finishes it and is an I/O error too.
    pub fn append(&mut self, records: &[Record]) -> Result<(), WalError> {
        self.check()?;
        let mark = self.mark();
        let mut wrote_snapshot = false;
        for record in records {
            let result = match record {
                Record::Snapshot { upto, state } => {
                    let written = self.write_snapshot(*upto, state);
                    wrote_snapshot |= matches!(written, Ok(true));
                    written.map(drop)
                }
                _ => self.buffer(record),
            };
            if let Err(e) = result {
                match e {
                    WalError::RecordTooLarge { .. } if !wrote_snapshot => self.reset(mark),
                    WalError::RecordTooLarge { .. } => {}
                    _ => self.failed = true,
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes everything appended since the last sync and makes it durable with one
    /// `fdatasync` (plus a segment roll's two syncs when the segment is full). Does nothing if
    /// nothing is pending. Then, if a snapshot file written in the background is in place,
    /// deletes the files it made obsolete.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check()?;
        let mut result = self.sync_pending();
        if result.is_ok() && self.writing.as_ref().is_some_and(|w| w.done.is_finished()) {
            result = self.finish_snapshot();
        }
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// One loop turn's Persist actions as one group commit: appends the records of each, syncs
    /// once, and returns the highest token, to pass to `handle_persisted` (which is cumulative).
    /// `None` if `persists` was empty.
    pub fn commit<'a, I>(&mut self, persists: I) -> Result<Option<PersistToken>, WalError>
    where
        I: IntoIterator<Item = (PersistToken, &'a [Record])>,
    {
        let mut done = None;
        for (token, records) in persists {
            self.append(records)?;
            done = done.max(Some(token));
        }
        self.sync()?;
        Ok(done)
    }

    /// Counters since the log was opened.
    pub fn metrics(&self) -> WalMetrics {
        self.metrics
    }

    /// What [`Wal::open`] found and did.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records appended but not yet synced.
    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    fn check(&self) -> Result<(), WalError> {
        if self.failed {
            Err(WalError::Failed)
        } else {
            Ok(())
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            buf_len: self.buf.len(),
            last_frame: self.last_frame,
            pending_records: self.pending_records,
            pending_max_slot: self.pending_max_slot,
            promised: self.promised,
        }
    }

    fn reset(&mut self, mark: Mark) {
        self.buf.truncate(mark.buf_len);
        self.last_frame = mark.last_frame;
        self.pending_records = mark.pending_records;
        self.pending_max_slot = mark.pending_max_slot;
        self.promised = mark.promised;
    }

    /// Frames a record that goes into a segment.
    fn buffer(&mut self, record: &Record) -> Result<(), WalError> {
        let start = put_frame(&mut self.buf, record, self.batch).map_err(|len| {
            WalError::RecordTooLarge {
                len,
                max: MAX_RECORD_LEN as u64,
            }
        })?;
        self.last_frame = Some(start);
        self.pending_records += 1;
        if let Record::Promise(b) = record {
            self.promised = self.promised.max(*b);
        }
        self.pending_max_slot = self.pending_max_slot.max(record_slot(record));
        Ok(())
    }

    fn sync_pending(&mut self) -> Result<(), WalError> {
        let Some(last) = self.last_frame else {
            return Ok(());
        };
        format::mark_commit(&mut self.buf[last..]);
        // A segment with no records yet is never full: every segment holds a group commit.
        if self.active_len >= self.options.segment_bytes.max(FILE_HEADER_LEN as u64 + 1) {
            self.roll()?;
        }
        let path = self.active_path();
        self.file
            .write_all(&self.buf)
            .map_err(WalError::io("write", &path))?;
        let started = Instant::now();
        self.file
            .sync_data()
            .map_err(WalError::io("fdatasync", &path))?;
        let written = self.buf.len() as u64;
        let m = &mut self.metrics;
        m.sync_time += started.elapsed();
        m.fsyncs += 1;
        m.group_commits += 1;
        m.bytes_written += written;
        m.records += self.pending_records;
        self.active_len += written;
        let active = self.segments.back_mut().expect("there is always a segment");
        active.max_slot = active.max_slot.max(self.pending_max_slot);
        self.buf.clear();
        self.last_frame = None;
        self.pending_records = 0;
        self.pending_max_slot = None;
        self.batch += 1;
        Ok(())
    }

    /// Starts the next segment and makes it the one written to.
    fn roll(&mut self) -> Result<(), WalError> {
        let seq = self.segments.back().expect("there is always a segment").seq + 1;
        self.file = create_segment(&self.dir, seq, self.batch, &mut self.metrics)?;
        self.active_len = FILE_HEADER_LEN as u64;
        self.segments.push_back(Segment {
            seq,
            max_slot: None,
        });
        Ok(())
    }

    /// Starts writing a snapshot file, unless `upto` is not above the latest snapshot; says
    /// which. What precedes it is synced and a new segment started here; the file itself
    /// (encoding, `fdatasync`, rename, directory `fsync`) is written on a thread of its own,
    /// and [`Wal::finish_snapshot`] deletes what it makes obsolete (module docs).
    fn write_snapshot(&mut self, upto: Slot, state: &Arc<KvState>) -> Result<bool, WalError> {
        // One snapshot at a time: the previous one is finished (it is thousands of slots old).
        self.finish_snapshot()?;
        if self
            .snapshot
            .as_ref()
            .is_some_and(|(latest, _)| upto <= *latest)
        {
            return Ok(false);
        }
        // Everything before the snapshot in log order must be durable before it is, or replay
        // could see the snapshot without an earlier record that a deleted segment held.
        self.sync_pending()?;
        let boundary = self.segments.back().expect("there is always a segment").seq + 1;
        let first_segment = self
            .segments
            .iter()
            .find(|s| s.max_slot.is_some_and(|max| max >= upto))
            .map_or(boundary, |s| s.seq);
        let file = SnapshotFile {
            first_segment,
            boundary,
            upto,
            state: state.clone(),
            promised: self.promised,
        };
        self.roll()?;

        let path = snapshot_path(&self.dir, upto.0);
        let tmp = snapshot_tmp_path(&self.dir, upto.0);
        let dir = self.dir.clone();
        let target = path.clone();
        #[cfg(test)]
        let gate = self.hold_next_snapshot.take();
        let done = std::thread::Builder::new()
            .name("wal-snapshot".into())
            .spawn(move || {
                #[cfg(test)]
                if let Some(gate) = gate {
                    let _ = gate.recv_timeout(Duration::from_secs(20));
                }
                let started = Instant::now();
                let bytes = file.encode().map_err(|len| WalError::RecordTooLarge {
                    len,
                    max: MAX_RECORD_LEN as u64,
                })?;
                let mut out = File::create(&tmp).map_err(WalError::io("create", &tmp))?;
                out.write_all(&bytes).map_err(WalError::io("write", &tmp))?;
                out.sync_data().map_err(WalError::io("fdatasync", &tmp))?;
                drop(out);
                fs::rename(&tmp, &target).map_err(WalError::io("rename", &tmp))?;
                sync_dir(&dir)?;
                Ok((bytes.len() as u64, started.elapsed()))
            })
            .map_err(WalError::io("spawn a thread for", &path))?;
        self.writing = Some(SnapshotWrite {
            upto,
            path,
            first_segment,
            done,
        });
        Ok(true)
    }

    /// Waits until the snapshot being written, if any, is in place, and deletes the files it
    /// made obsolete. An error writing it is an I/O error of the log: it takes no more writes.
    pub fn wait_for_snapshot(&mut self) -> Result<(), WalError> {
        self.check()?;
        let result = self.finish_snapshot();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// [`Wal::wait_for_snapshot`] without the failure bookkeeping.
    fn finish_snapshot(&mut self) -> Result<(), WalError> {
        let Some(w) = self.writing.take() else {
            return Ok(());
        };
        let (bytes, took) = w.done.join().unwrap_or_else(|_| {
            Err(WalError::io("write", &w.path)(io::Error::other("panicked")))
        })?;
        tracing::info!(
            upto = w.upto.0,
            bytes,
            ms = took.as_secs_f64() * 1e3,
            "WAL: snapshot file in place"
        );
        self.metrics.snapshot_time += took;
        self.metrics.fsyncs += 2;
        self.metrics.snapshots += 1;
        self.metrics.snapshot_bytes += bytes;
        // The snapshot is durable and names `first_segment`: older files are obsolete. A crash
        // before they are gone leaves them for the next open to remove.
        while self
            .segments
            .front()
            .is_some_and(|s| s.seq < w.first_segment)
        {
            let seq = self.segments.pop_front().expect("checked").seq;
            remove_file(&segment_path(&self.dir, seq))?;
            self.metrics.segments_deleted += 1;
        }
        if let Some((_, old)) = self.snapshot.replace((w.upto, w.path)) {
            remove_file(&old)?;
        }
        Ok(())
    }

    fn active_path(&self) -> PathBuf {
        let seq = self.segments.back().expect("there is always a segment").seq;
        segment_path(&self.dir, seq)
    }
}

/// Applies a snapshot file at its place in log order: the snapshot, then the promise that
/// stands for the Promise records of deleted segments.
fn apply_snapshot(durable: &mut Durable, s: &SnapshotFile) {
    durable.apply(&Record::Snapshot {
        upto: s.upto,
        state: s.state.clone(),
    });
    durable.apply(&Record::Promise(s.promised));
}

/// The slot a record is about, if it is about one.
fn record_slot(record: &Record) -> Option<Slot> {
    match record {
        Record::SlotPromise(slot, _) | Record::Accept { slot, .. } => Some(*slot),
        Record::Promise(_) | Record::Snapshot { .. } => None,
    }
}

/// Creates segment `seq` with its header, durably (file and directory entry).
fn create_segment(
    dir: &Path,
    seq: u64,
    first_batch: u64,
    metrics: &mut WalMetrics,
) -> Result<File, WalError> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(WalError::io("create", &path))?;
    file.write_all(&file_header(SEGMENT_MAGIC, seq, first_batch))
        .map_err(WalError::io("write", &path))?;
    file.sync_data().map_err(WalError::io("fdatasync", &path))?;
    sync_dir(dir)?;
    metrics.fsyncs += 2;
    metrics.bytes_written += FILE_HEADER_LEN as u64;
    metrics.segments_created += 1;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io("fsync directory", dir))
}

/// Removes a file; one that is already gone is fine.
fn remove_file(path: &Path) -> Result<(), WalError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(WalError::io("remove", path)(e)),
        _ => Ok(()),
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:020}.log"))
}

fn snapshot_path(dir: &Path, upto: u64) -> PathBuf {
    dir.join(format!("snapshot-{upto:020}.bin"))
}

fn snapshot_tmp_path(dir: &Path, upto: u64) -> PathBuf {
    dir.join(format!("snapshot-{upto:020}.bin.tmp"))
}

/// The log's files in a directory; other files are left alone.
struct Listing {
    /// Segment sequence numbers, ascending.
    segments: Vec<u64>,
    /// Snapshot slots, ascending.
    snapshots: Vec<u64>,
    /// Unfinished snapshot files.
    temps: Vec<PathBuf>,
}

impl Listing {
    fn read(dir: &Path) -> Result<Listing, WalError> {
        let mut listing = Listing {
            segments: Vec::new(),
            snapshots: Vec::new(),
            temps: Vec::new(),
        };
        for entry in fs::read_dir(dir).map_err(WalError::io("list", dir))? {
            let entry = entry.map_err(WalError::io("list", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(seq) = number_in(name, "wal-", ".log") {
                listing.segments.push(seq);
            } else if let Some(upto) = number_in(name, "snapshot-", ".bin") {
                listing.snapshots.push(upto);
            } else if number_in(name, "snapshot-", ".bin.tmp").is_some() {
                listing.temps.push(entry.path());
            }
        }
        listing.segments.sort_unstable();
        listing.snapshots.sort_unstable();
        Ok(listing)
    }
}

/// The number in `<prefix><digits><suffix>`.
fn number_in(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use paxos::{NodeId, Value};

    /// Copies the directory's segments and snapshot files (not temp files): what a crash at
    /// this instant would leave for replay.
    fn crash_copy(dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".tmp") {
                fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        copy
    }

    #[test]
    fn group_commits_after_a_snapshot_do_not_wait_for_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let b = Ballot::new(1, NodeId(0));
        let accept = |slot| Record::Accept {
            slot: Slot(slot),
            ballot: b,
            value: Value::Noop,
        };
        wal.append(&[Record::Promise(b), accept(0), accept(1)])
            .unwrap();
        wal.sync().unwrap();

        let (release, held) = std::sync::mpsc::channel();
        wal.hold_next_snapshot = Some(held);
        let state = Arc::new(KvState::default());
        let snapshot = Record::Snapshot {
            upto: Slot(2),
            state,
        };
        wal.append(&[snapshot, accept(2)]).unwrap();
        wal.sync().unwrap();
        wal.append(&[accept(3)]).unwrap();
        wal.sync().unwrap();

        // Both group commits after the snapshot returned while its file was held back, and
        // what they wrote is durable: a crash now replays it, with no snapshot, from segments
        // none of which is gone.
        assert!(!snapshot_path(dir.path(), 2).exists());
        let copy = crash_copy(dir.path());
        let (_, durable) = Wal::open(copy.path(), WalOptions::default()).unwrap();
        assert_eq!(durable.snapshot, None);
        assert_eq!(
            durable.accepted.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2, 3].map(Slot)
        );

        release.send(()).unwrap();
        wal.wait_for_snapshot().unwrap();
        assert!(snapshot_path(dir.path(), 2).exists());
        assert_eq!(wal.metrics().snapshots, 1);
        assert!(wal.metrics().segments_deleted >= 1);
        drop(wal);
        let (_, durable) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(durable.snapshot.map(|(upto, _)| upto), Some(Slot(2)));
        assert_eq!(
            durable.accepted.keys().copied().collect::<Vec<_>>(),
            [2, 3].map(Slot)
        );
        assert_eq!(durable.promised, b);
    }
}

//! The bytes on disk: file headers, record frames, reading a segment back (and telling a torn
//! tail from corruption), and snapshot files. The layout is documented in the parent module.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use paxos::{Ballot, KvState, Record, Slot};
use wire::record::{decode_record, encode_record};

use super::error::{Corruption, WalError};

/// Format version in every file header.
pub(super) const VERSION: u32 = 1;
/// First bytes of a segment file.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"PAXBWAL\0";
/// First bytes of a snapshot file.
pub(super) const SNAPSHOT_MAGIC: [u8; 8] = *b"PAXBSNP\0";
/// Bytes in a file header: magic, version, reserved, two numbers, checksum.
pub(super) const FILE_HEADER_LEN: usize = 36;
/// Bytes in a record frame header: length, flags, batch, payload checksum, header checksum.
pub(super) const FRAME_HEADER_LEN: usize = 24;
/// Frame flag: the last record of its group commit.
pub(super) const FLAG_COMMIT: u32 = 1;
/// The largest record payload a frame can hold (its length is a `u32`).
pub(super) const MAX_RECORD_LEN: usize = u32::MAX as usize;

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// A file header: `magic`, then two numbers whose meaning depends on the kind of file (segment:
/// sequence number and first batch; snapshot: first segment to replay and boundary segment).
pub(super) fn file_header(magic: [u8; 8], a: u64, b: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    // 12..16 reserved, zero.
    h[16..24].copy_from_slice(&a.to_le_bytes());
    h[24..32].copy_from_slice(&b.to_le_bytes());
    let crc = crc32c::crc32c(&h[..32]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a file header and returns its two numbers.
pub(super) fn read_file_header(data: &[u8], magic: [u8; 8]) -> Result<(u64, u64), Corruption> {
    let Some(h) = data.get(..FILE_HEADER_LEN) else {
        return Err(Corruption::ShortHeader);
    };
    if h[..8] != magic {
        return Err(Corruption::BadMagic);
    }
    if crc32c::crc32c(&h[..32]) != u32_at(h, 32) || u32_at(h, 12) != 0 {
        return Err(Corruption::HeaderChecksum);
    }
    let version = u32_at(h, 8);
    if version != VERSION {
        return Err(Corruption::UnsupportedVersion { version });
    }
    Ok((u64_at(h, 16), u64_at(h, 24)))
}

/// Appends one framed record to `buf` and returns where its frame starts. On error (a record
/// over [`MAX_RECORD_LEN`]) `buf` is left as it was and the error carries the record's length.
pub(super) fn put_frame(buf: &mut BytesMut, record: &Record, batch: u64) -> Result<usize, u64> {
    let start = buf.len();
    buf.resize(start + FRAME_HEADER_LEN, 0);
    encode_record(record, buf);
    let len = buf.len() - start - FRAME_HEADER_LEN;
    if len > MAX_RECORD_LEN {
        buf.truncate(start);
        return Err(len as u64);
    }
    let crc = crc32c::crc32c(&buf[start + FRAME_HEADER_LEN..]);
    let h = &mut buf[start..start + FRAME_HEADER_LEN];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..8].copy_from_slice(&0u32.to_le_bytes());
    h[8..16].copy_from_slice(&batch.to_le_bytes());
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    seal_frame_header(h);
    Ok(start)
}

/// Sets [`FLAG_COMMIT`] on the frame whose header starts `frame`.
pub(super) fn mark_commit(frame: &mut [u8]) {
    let flags = u32_at(frame, 4) | FLAG_COMMIT;
    frame[4..8].copy_from_slice(&flags.to_le_bytes());
    seal_frame_header(&mut frame[..FRAME_HEADER_LEN]);
}

fn seal_frame_header(h: &mut [u8]) {
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// What starts at an offset of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FrameAt {
    /// A whole, valid frame.
    Valid {
        payload: Range<usize>,
        flags: u32,
        batch: u64,
        next: usize,
    },
    /// A valid frame header (so its length and batch can be trusted) whose payload fails its
    /// checksum.
    BadPayload { batch: u64, next: usize },
    /// The file ends inside the frame header, or inside the payload of a valid header.
    Incomplete,
    /// No valid frame header here.
    BadHeader,
}

impl FrameAt {
    fn corruption(&self) -> Corruption {
        match self {
            FrameAt::Valid { .. } => unreachable!("a valid frame is not corrupt"),
            FrameAt::BadPayload { .. } => Corruption::Checksum,
            FrameAt::Incomplete => Corruption::Truncated,
            FrameAt::BadHeader => Corruption::FrameHeader,
        }
    }
}

/// Checks the frame that starts at `pos`.
pub(super) fn frame_at(data: &[u8], pos: usize) -> FrameAt {
    let Some(h) = data.get(pos..pos + FRAME_HEADER_LEN) else {
        return FrameAt::Incomplete;
    };
    let len = u32_at(h, 0) as usize;
    let flags = u32_at(h, 4);
    if crc32c::crc32c(&h[..20]) != u32_at(h, 20) || len == 0 || flags & !FLAG_COMMIT != 0 {
        return FrameAt::BadHeader;
    }
    let batch = u64_at(h, 8);
    let payload = pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + len;
    let Some(body) = data.get(payload.clone()) else {
        return FrameAt::Incomplete;
    };
    let next = payload.end;
    if crc32c::crc32c(body) != u32_at(h, 16) {
        return FrameAt::BadPayload { batch, next };
    }
    FrameAt::Valid {
        payload,
        flags,
        batch,
        next,
    }
}

/// Decodes a valid frame's payload into its own allocation, so the records kept after replay
/// do not pin the whole file's buffer.
fn decode_at(
    path: &Path,
    data: &[u8],
    pos: usize,
    payload: Range<usize>,
) -> Result<Record, WalError> {
    decode_record(Bytes::copy_from_slice(&data[payload])).map_err(|source| WalError::Decode {
        file: path.to_owned(),
        offset: pos as u64,
        source,
    })
}

fn corrupt(path: &Path, offset: usize, reason: Corruption) -> WalError {
    WalError::Corrupt {
        file: path.to_owned(),
        offset: offset as u64,
        reason,
        valid_after: None,
    }
}

/// A segment's records, as far as they are valid.
#[derive(Debug)]
pub(super) struct SegmentContents {
    /// The records, in log order.
    pub records: Vec<Record>,
    /// The batch of the last valid record, or one before the header's first batch.
    pub last_batch: u64,
    /// Bytes of the file that hold valid data (header and records); the rest is a torn tail.
    /// Zero when the header itself is torn.
    pub valid_len: usize,
    /// Why the file is longer than `valid_len`, if it is.
    pub torn: Option<Corruption>,
}

/// Reads a segment file's contents. `last`: this is the newest segment, whose tail may hold the
/// torn write of a group commit that was in progress during a crash.
///
/// A bad range in the last segment is a torn tail if every frame found after it belongs to the
/// same group commit as the bad range: group commits are written one at a time, each after the
/// previous one's `fdatasync` returned, so only the final one can be partly on disk, and its
/// pages may reach the disk in any order. A frame of another (later) batch after the bad range,
/// or any byte after the final batch's commit record, proves the bad range was synced: that is
/// corruption.
pub(super) fn read_segment(
    path: &Path,
    seq: u64,
    data: &[u8],
    last: bool,
) -> Result<SegmentContents, WalError> {
    let first_batch = match read_file_header(data, SEGMENT_MAGIC) {
        Ok((header_seq, first_batch)) => {
            if header_seq != seq {
                let reason = Corruption::NameMismatch {
                    name: seq,
                    header: header_seq,
                };
                return Err(corrupt(path, 0, reason));
            }
            first_batch
        }
        // A segment is created (header written and synced) before any record goes into it, so
        // only a crash during creation leaves a short or unwritten header, and nothing follows.
        Err(reason) if last && (data.len() < FILE_HEADER_LEN || data.iter().all(|&b| b == 0)) => {
            return Ok(SegmentContents {
                records: Vec::new(),
                last_batch: 0,
                valid_len: 0,
                torn: Some(reason),
            });
        }
        Err(reason) => return Err(corrupt(path, 0, reason)),
    };

    let mut records = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    // The batch and flags of the last valid record.
    let mut prev: Option<(u64, u32)> = None;
    while pos < data.len() {
        match frame_at(data, pos) {
            FrameAt::Valid {
                payload,
                flags,
                batch,
                next,
            } => {
                let record = decode_at(path, data, pos, payload)?;
                if matches!(record, Record::Snapshot { .. }) {
                    return Err(corrupt(path, pos, Corruption::UnexpectedRecord));
                }
                records.push(record);
                prev = Some((batch, flags));
                pos = next;
            }
            bad => {
                if !last {
                    return Err(corrupt(path, pos, bad.corruption()));
                }
                // The batch the bad range belongs to if it is the torn final one.
                let torn_batch = match (&bad, prev) {
                    (FrameAt::BadPayload { batch, .. }, _) => *batch,
                    (_, Some((batch, flags))) if flags & FLAG_COMMIT != 0 => batch + 1,
                    (_, Some((batch, _))) => batch,
                    (_, None) => first_batch,
                };
                if let Some(at) = later_commit(data, pos, &bad, torn_batch) {
                    return Err(WalError::Corrupt {
                        file: path.to_owned(),
                        offset: pos as u64,
                        reason: bad.corruption(),
                        valid_after: Some(at as u64),
                    });
                }
                return Ok(SegmentContents {
                    records,
                    last_batch: prev.map_or(first_batch.saturating_sub(1), |(b, _)| b),
                    valid_len: pos,
                    torn: Some(bad.corruption()),
                });
            }
        }
    }
    Ok(SegmentContents {
        records,
        last_batch: prev.map_or(first_batch.saturating_sub(1), |(b, _)| b),
        valid_len: data.len(),
        torn: None,
    })
}

/// Looks past the bad range at `pos` for proof that it was synced: a frame of a batch other
/// than `torn_batch`, or bytes after `torn_batch`'s commit record. Returns where that proof
/// starts. Where a frame header is unreadable the search goes on byte by byte.
fn later_commit(data: &[u8], pos: usize, bad: &FrameAt, torn_batch: u64) -> Option<usize> {
    let mut q = match *bad {
        FrameAt::BadPayload { next, .. } => next,
        FrameAt::Incomplete => return None,
        FrameAt::BadHeader | FrameAt::Valid { .. } => pos + 1,
    };
    let mut committed = false;
    while q < data.len() {
        if committed {
            // Bytes after the final batch's commit record: a later batch was being written.
            return Some(q);
        }
        match frame_at(data, q) {
            FrameAt::Valid {
                batch, flags, next, ..
            } => {
                if batch != torn_batch {
                    return Some(q);
                }
                committed = flags & FLAG_COMMIT != 0;
                q = next;
            }
            FrameAt::BadPayload { batch, next } => {
                if batch != torn_batch {
                    return Some(q);
                }
                q = next;
            }
            FrameAt::Incomplete => return None,
            FrameAt::BadHeader => q += 1,
        }
    }
    None
}

/// A snapshot file's contents.
#[derive(Debug)]
pub(super) struct SnapshotFile {
    /// The oldest segment replay needs.
    pub first_segment: u64,
    /// The first segment written after the snapshot: records in segments before it precede the
    /// snapshot in log order, records in it and later ones follow.
    pub boundary: u64,
    /// The snapshot point.
    pub upto: Slot,
    /// The state machine below `upto`.
    pub state: Arc<KvState>,
    /// The highest ballot promised when the snapshot was taken (the Promise records in deleted
    /// segments are summed up here).
    pub promised: Ballot,
}

impl SnapshotFile {
    /// The file's bytes: a header, then two framed records (the Snapshot, then a Promise).
    pub(super) fn encode(&self) -> Result<BytesMut, u64> {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&file_header(
            SNAPSHOT_MAGIC,
            self.first_segment,
            self.boundary,
        ));
        let snapshot = Record::Snapshot {
            upto: self.upto,
            state: self.state.clone(),
        };
        put_frame(&mut buf, &snapshot, 0)?;
        let last = put_frame(&mut buf, &Record::Promise(self.promised), 0)?;
        mark_commit(&mut buf[last..]);
        Ok(buf)
    }

    /// Reads a snapshot file named for slot `upto`. Snapshot files are renamed into place only
    /// once complete and synced, so any flaw is corruption.
    pub(super) fn read(path: &Path, upto: u64, data: &[u8]) -> Result<SnapshotFile, WalError> {
        let (first_segment, boundary) =
            read_file_header(data, SNAPSHOT_MAGIC).map_err(|r| corrupt(path, 0, r))?;
        let mut pos = FILE_HEADER_LEN;
        let mut records = Vec::with_capacity(2);
        while pos < data.len() {
            match frame_at(data, pos) {
                FrameAt::Valid { payload, next, .. } => {
                    records.push((pos, decode_at(path, data, pos, payload)?));
                    pos = next;
                }
                bad => return Err(corrupt(path, pos, bad.corruption())),
            }
        }
        let mut records = records.into_iter();
        let (snapshot_at, snapshot) = records
            .next()
            .ok_or_else(|| corrupt(path, pos, Corruption::Truncated))?;
        let Record::Snapshot { upto: at, state } = snapshot else {
            return Err(corrupt(path, snapshot_at, Corruption::UnexpectedRecord));
        };
        if at.0 != upto {
            let reason = Corruption::NameMismatch {
                name: upto,
                header: at.0,
            };
            return Err(corrupt(path, snapshot_at, reason));
        }
        let promised = match records.next() {
            Some((_, Record::Promise(b))) => b,
            Some((at, _)) => return Err(corrupt(path, at, Corruption::UnexpectedRecord)),
            None => return Err(corrupt(path, pos, Corruption::Truncated)),
        };
        if let Some((at, _)) = records.next() {
            return Err(corrupt(path, at, Corruption::UnexpectedRecord));
        }
        if first_segment > boundary || first_segment == 0 {
            return Err(corrupt(path, 0, Corruption::HeaderChecksum));
        }
        Ok(SnapshotFile {
            first_segment,
            boundary,
            upto: at,
            state,
            promised,
        })
    }
}

#[cfg(test)]
mod tests {
    use paxos::NodeId;

    use super::*;

    fn promise(round: u64) -> Record {
        Record::Promise(Ballot::new(round, NodeId(1)))
    }

    /// A segment with the given batches of Promise records.
    fn segment(batches: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&file_header(SEGMENT_MAGIC, 1, 10));
        let mut starts = Vec::new();
        for (i, &n) in batches.iter().enumerate() {
            let mut last = 0;
            for r in 0..n {
                last = put_frame(&mut buf, &promise(r as u64), 10 + i as u64).unwrap();
                starts.push(last);
            }
            mark_commit(&mut buf[last..]);
        }
        (buf.to_vec(), starts)
    }

    fn read(data: &[u8]) -> Result<SegmentContents, WalError> {
        read_segment(Path::new("wal-1.log"), 1, data, true)
    }

    #[test]
    fn a_valid_segment_reads_back() {
        let (data, _) = segment(&[2, 3]);
        let c = read(&data).unwrap();
        assert_eq!(c.records.len(), 5);
        assert_eq!(c.last_batch, 11);
        assert_eq!(c.valid_len, data.len());
        assert_eq!(c.torn, None);
    }

    #[test]
    fn a_lost_page_inside_the_final_batch_is_a_torn_tail() {
        let (mut data, starts) = segment(&[2, 3]);
        // The final batch's first record never reached the disk, its later ones did.
        data[starts[2]..starts[3]].fill(0);
        let c = read(&data).unwrap();
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.valid_len, starts[2]);
        assert_eq!(c.torn, Some(Corruption::FrameHeader));
    }

    #[test]
    fn a_bad_record_before_a_later_batch_is_corruption() {
        let (mut data, starts) = segment(&[2, 3]);
        // The first batch's commit record is damaged; the second batch follows.
        data[starts[1]..starts[2]].fill(0);
        match read(&data) {
            Err(WalError::Corrupt {
                offset,
                valid_after,
                ..
            }) => {
                assert_eq!(offset, starts[1] as u64);
                assert_eq!(valid_after, Some(starts[2] as u64));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn bytes_after_the_final_commit_prove_it_was_synced() {
        let (mut data, starts) = segment(&[2, 3]);
        data[starts[3]] ^= 0xff;
        data.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(read(&data), Err(WalError::Corrupt { .. })));
    }

    #[test]
    fn a_short_or_zeroed_header_of_the_last_segment_is_torn() {
        let (data, _) = segment(&[]);
        for len in 0..FILE_HEADER_LEN {
            let c = read(&data[..len]).unwrap();
            assert_eq!(c.valid_len, 0);
        }
        let c = read(&[0; 100]).unwrap();
        assert_eq!((c.valid_len, c.torn), (0, Some(Corruption::BadMagic)));
        assert!(read_segment(Path::new("x"), 1, &[0; 10], false).is_err());
    }
}

//! What can go wrong with the write-ahead log, and where.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// A failure to open, replay or write the write-ahead log.
///
/// Every variant that is about bad bytes names the file and the byte offset, so the message
/// alone says where to look. Corruption that can only be a torn final write is not an error:
/// [`crate::wal::Wal::open`] truncates it with a warning (see the module docs).
#[derive(Debug, Error)]
pub enum WalError {
    /// A file system operation failed. After an I/O error while writing, the log refuses further
    /// writes ([`WalError::Failed`]): a failed `fdatasync` may have dropped the dirty pages, so
    /// retrying could report data durable that is not. Reopen the log (restart the node).
    #[error("WAL I/O error while trying to {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"fdatasync"`, `"rename"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes that fail their checksum or are malformed where a torn write cannot explain them:
    /// in a segment before the last, in a snapshot file, in a file header, or before a record of
    /// a later group commit. The node refuses to start rather than forget acknowledged writes.
    #[error(
        "WAL file {} is corrupt at byte {offset}: {reason}{}",
        file.display(),
        match valid_after {
            Some(at) => format!(" (a record of a later group commit follows at byte {at}, so this is not a torn write)"),
            None => String::new(),
        }
    )]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset of the first bad byte range (a file header, or a record's frame).
        offset: u64,
        /// What is wrong there.
        reason: Corruption,
        /// Where a valid record that rules out a torn tail starts, if that is why this is an
        /// error.
        valid_after: Option<u64>,
    },
    /// A record whose checksum is valid but whose body does not decode, e.g. an unknown record
    /// tag written by a newer build. Never treated as a torn write.
    #[error("WAL file {} has a record at byte {offset} that does not decode: {source}", file.display())]
    Decode {
        /// The file.
        file: PathBuf,
        /// Byte offset of the record's frame.
        offset: u64,
        /// Why the body does not decode.
        #[source]
        source: wire::WireError,
    },
    /// A segment that replay needs is not in the directory (numbering has a gap, or the log
    /// does not start where the latest snapshot or the first segment says it does).
    #[error("WAL segment {} is missing", file.display())]
    MissingSegment {
        /// The path where the segment should be.
        file: PathBuf,
    },
    /// A record too large for the frame's 32-bit length. Nothing was written; the records
    /// appended before it in the same call stay buffered only if a snapshot was written in
    /// between (see [`crate::wal::Wal::append`]).
    #[error("a WAL record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The encoded record's length.
        len: u64,
        /// The largest record a frame can hold.
        max: u64,
    },
    /// An earlier I/O error left the log in an unknown state; it takes no more writes. The
    /// original error was returned by the call that failed.
    #[error("the WAL failed earlier and takes no more writes; reopen it to recover")]
    Failed,
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }
}

/// What is wrong with bytes that failed a check. Part of [`WalError::Corrupt`], and of the
/// warning for a truncated torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Corruption {
    /// The file is shorter than its header.
    #[error("the file ends inside its header")]
    ShortHeader,
    /// The file does not start with the magic bytes of its kind (segment or snapshot).
    #[error("bad magic bytes (not a paxbench WAL file of this kind)")]
    BadMagic,
    /// The header's format version is not one this build reads.
    #[error("unsupported format version {version}")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The file header's checksum does not match.
    #[error("file header checksum mismatch")]
    HeaderChecksum,
    /// The header says the file is a different one than its name does.
    #[error("the header says {header} but the file name says {name}")]
    NameMismatch {
        /// The number in the file name (segment sequence number or snapshot slot).
        name: u64,
        /// The number in the header or the snapshot record.
        header: u64,
    },
    /// A record's frame header fails its checksum (or has a zero length or unknown flags).
    #[error("bad record frame header")]
    FrameHeader,
    /// A record's payload fails its checksum.
    #[error("record checksum mismatch")]
    Checksum,
    /// The file ends inside a record.
    #[error("the file ends inside a record")]
    Truncated,
    /// A well-formed record where it does not belong: a snapshot in a segment (snapshots have
    /// their own files), or anything but a snapshot then a promise in a snapshot file.
    #[error("unexpected record kind in this file")]
    UnexpectedRecord,
}

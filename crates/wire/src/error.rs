//! Why bytes did not decode (or a frame could not be encoded).

use thiserror::Error;

/// A frame that could not be encoded, or bytes that do not decode.
///
/// Decoding never panics: every malformed input maps to one of these. Field names are
/// `Type.field` paths such as `"Accept.slot"` or `"Op.key"`, so a log line says what was wrong.
/// A runtime closes the offending connection (see the crate docs) and counts the error.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// A frame is larger than the limit. The decoder raises this from the 4-byte length prefix
    /// alone, before it buffers or allocates anything for the body; the encoder raises it when a
    /// message would not fit (and leaves the output buffer as it was).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame body's length in bytes (from the prefix, or as encoded).
        len: u64,
        /// The limit in force ([`crate::Codec::max_frame_len`]).
        max: u64,
    },
    /// The frame body ended in the middle of a field.
    #[error("truncated while reading {field}: needs {needed} bytes, {remaining} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs (at least this many, for a varint).
        needed: u64,
        /// Bytes that were left in the frame body.
        remaining: u64,
    },
    /// A tag byte that means nothing where it was read (an unknown frame kind, operation,
    /// outcome, value kind, ...).
    #[error("unknown {what} tag {tag:#04x}")]
    UnknownTag {
        /// What the tag selects, e.g. `"frame"`, `"Op"`, `"Outcome"`.
        what: &'static str,
        /// The byte that was found.
        tag: u8,
    },
    /// A well-formed frame kind that does not belong on this stream, e.g. a client request on a
    /// peer connection.
    #[error("frame tag {tag:#04x} ({name}) is not a valid {expected}")]
    UnexpectedFrame {
        /// The frame tag.
        tag: u8,
        /// The frame kind the tag names.
        name: &'static str,
        /// The family of frames this stream carries, e.g. `"peer frame"`.
        expected: &'static str,
    },
    /// A varint longer than 10 bytes, or whose value does not fit in 64 bits.
    #[error("malformed varint in {field}")]
    BadVarint {
        /// The field being read.
        field: &'static str,
    },
    /// An integer that decoded but does not fit the field's type (e.g. a node id over `u32`).
    #[error("{field} is {value}, more than its maximum {max}")]
    OutOfRange {
        /// The field being read.
        field: &'static str,
        /// The decoded value.
        value: u64,
        /// The largest value the field can hold.
        max: u64,
    },
    /// A value that decoded but is not one its field may hold, e.g. a loss probability of 2 or
    /// NaN.
    #[error("{field} is {value}, not {expected}")]
    BadValue {
        /// The field being read.
        field: &'static str,
        /// The decoded value, as text.
        value: String,
        /// What the field must be.
        expected: &'static str,
    },
    /// An element count that the rest of the frame cannot possibly hold. Checked before any
    /// vector is allocated, so a forged count cannot make the decoder reserve memory.
    #[error("{field} claims {count} elements, but only {remaining} bytes are left")]
    CountTooLarge {
        /// The count field.
        field: &'static str,
        /// The claimed number of elements.
        count: u64,
        /// Bytes that were left in the frame body.
        remaining: u64,
    },
    /// A frame body that goes on after its message ended.
    #[error("{extra} trailing bytes after the end of the {kind} frame")]
    TrailingBytes {
        /// The kind of frame that was decoded, e.g. `"accept"`.
        kind: &'static str,
        /// Bytes left over.
        extra: u64,
    },
}

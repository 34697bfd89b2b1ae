//! Framing: the 4-byte length prefix, the size limit, frame tags, and the [`Frame`] trait that
//! every frame family implements.

use bytes::{Buf, Bytes, BytesMut};

use crate::coding::Writer;

use crate::error::WireError;

/// Bytes in a frame's length prefix (a big-endian `u32`).
pub const FRAME_HEADER_LEN: usize = 4;

/// The frame size limit unless configured otherwise: 16 MiB of body.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Frame tags: the first byte of every frame body. One tag space for all frame families, so a
/// frame on the wrong kind of stream is reported by name ([`WireError::UnexpectedFrame`]).
pub(crate) mod tag {
    pub const PREPARE: u8 = 0x01;
    pub const PROMISE: u8 = 0x02;
    pub const ACCEPT: u8 = 0x03;
    pub const ACCEPTED: u8 = 0x04;
    pub const COMMIT: u8 = 0x05;
    pub const NACK: u8 = 0x06;
    pub const HEARTBEAT: u8 = 0x07;
    pub const LEARN: u8 = 0x08;
    pub const CATCH_UP: u8 = 0x09;
    pub const SNAPSHOT: u8 = 0x0a;
    pub const HEARTBEAT_ACK: u8 = 0x0b;
    pub const HELLO: u8 = 0x10;
    pub const REQUEST: u8 = 0x20;
    pub const STATUS_REQUEST: u8 = 0x21;
    pub const IMPAIR: u8 = 0x22;
    pub const RESPONSE: u8 = 0x30;
    pub const STATUS: u8 = 0x31;
    pub const IMPAIRED: u8 = 0x32;

    /// The name of a frame tag, if it is one.
    pub fn name(tag: u8) -> Option<&'static str> {
        Some(match tag {
            PREPARE => "Prepare",
            PROMISE => "Promise",
            ACCEPT => "Accept",
            ACCEPTED => "Accepted",
            COMMIT => "Commit",
            NACK => "Nack",
            HEARTBEAT => "Heartbeat",
            LEARN => "Learn",
            CATCH_UP => "CatchUp",
            SNAPSHOT => "Snapshot",
            HEARTBEAT_ACK => "HeartbeatAck",
            HELLO => "Hello",
            REQUEST => "Request",
            STATUS_REQUEST => "StatusRequest",
            IMPAIR => "Impair",
            RESPONSE => "Response",
            STATUS => "Status",
            IMPAIRED => "Impaired",
            _ => return None,
        })
    }

    /// The error for a tag that `expected` does not accept.
    pub fn unexpected(tag: u8, expected: &'static str) -> crate::WireError {
        match name(tag) {
            Some(name) => crate::WireError::UnexpectedFrame {
                tag,
                name,
                expected,
            },
            None => crate::WireError::UnknownTag { what: "frame", tag },
        }
    }
}

/// A family of frames that can go over one kind of stream: [`paxos::Message`] and
/// [`crate::PeerFrame`] between nodes, [`crate::ClientFrame`] from clients,
/// [`crate::ResponseFrame`] back to them.
///
/// Most callers use [`encode_frame`] / [`decode_frame`] (or a [`Codec`] with its own limit),
/// which add and strip the length prefix. These two methods handle one frame *body*: the tag
/// byte and what follows.
///
/// The trait is sealed: the encoding of each family lives in this crate.
pub trait Frame: WriteBody + Sized {
    /// What this family is called in errors, e.g. `"peer frame"`.
    const KIND: &'static str;

    /// Appends the frame body (tag and payload, no length prefix) to `buf`.
    fn encode_body(&self, buf: &mut BytesMut) {
        self.write_body(&mut Writer::new(buf));
    }

    /// Decodes one whole frame body. Byte strings in the result (keys, values) are slices of
    /// `body`, not copies. Bytes left over after the frame are an error.
    fn decode_body(body: Bytes) -> Result<Self, WireError>;
}

mod sealed {
    /// How a frame family writes its body; the seal on [`super::Frame`].
    pub trait WriteBody {
        /// Writes the body (tag and payload).
        fn write_body(&self, buf: &mut crate::coding::Writer<'_>);
    }
}

pub(crate) use sealed::WriteBody;

/// Encodes and decodes length-prefixed frames under a size limit.
///
/// The limit bounds a frame's *body* (the bytes after the 4-byte prefix) in both directions: the
/// encoder refuses to produce a larger frame, and the decoder refuses one from its prefix alone,
/// before it waits for, buffers or allocates the body. The default is
/// [`DEFAULT_MAX_FRAME_LEN`] (16 MiB). The largest frames in practice are Snapshots (every key
/// and value of the state machine) and catch-up Learns; a deployment whose state outgrows the
/// limit must raise it on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    max_frame_len: usize,
}

impl Codec {
    /// A codec with a limit of `max_frame_len` body bytes (capped at `u32::MAX`, what the
    /// prefix can express).
    #[inline]
    pub fn new(max_frame_len: usize) -> Self {
        Codec {
            max_frame_len: max_frame_len.min(u32::MAX as usize),
        }
    }

    /// The largest frame body this codec encodes or accepts, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Appends one length-prefixed frame to `buf` and returns how many bytes it added.
    ///
    /// Call it repeatedly on one buffer to coalesce frames into a single write, and
    /// `buf.split().freeze()` to get `Bytes` that can go to several peers without copying.
    /// On error `buf` is left as it was.
    pub fn encode<F: Frame>(&self, frame: &F, buf: &mut BytesMut) -> Result<usize, WireError> {
        let start = buf.len();
        {
            // The prefix goes through the writer's scratch buffer with the first fields: one
            // copy into `buf` for a small frame.
            let mut w = Writer::new(buf);
            w.put_u32(0); // patched below, once the body length is known
            frame.write_body(&mut w);
        }
        let len = buf.len() - start - FRAME_HEADER_LEN;
        if len > self.max_frame_len {
            buf.truncate(start);
            return Err(WireError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame_len as u64,
            });
        }
        // `max_frame_len <= u32::MAX`, so the length fits.
        buf[start..start + FRAME_HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(len + FRAME_HEADER_LEN)
    }

    /// Encodes one frame into its own `Bytes` (e.g. a message to broadcast).
    pub fn encode_to_bytes<F: Frame>(&self, frame: &F) -> Result<Bytes, WireError> {
        let mut buf = BytesMut::new();
        self.encode(frame, &mut buf)?;
        Ok(buf.freeze())
    }

    /// The total length (prefix included) of the frame at the start of `buf`, once its prefix
    /// has arrived: `Ok(None)` if fewer than 4 bytes are buffered, an error if the prefix is over
    /// the limit.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, WireError> {
        let Some(prefix) = buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame_len {
            return Err(WireError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame_len as u64,
            });
        }
        Ok(Some(FRAME_HEADER_LEN + len))
    }

    /// Takes the next whole frame off the front of `buf` and decodes it.
    ///
    /// `Ok(None)`: the frame is not complete yet; `buf` is untouched, read more into it and call
    /// again. `Ok(Some(frame))`: the frame's bytes were removed from `buf`; byte strings in
    /// `frame` share `buf`'s allocation (no copy). `Err(FrameTooLarge)`: the prefix is over the
    /// limit; `buf` is untouched and the stream cannot be resynchronised. Any other `Err`: the bad
    /// frame was removed from `buf`. Per the design, a runtime closes the connection on any
    /// error.
    pub fn decode<F: Frame>(&self, buf: &mut BytesMut) -> Result<Option<F>, WireError> {
        let Some(total) = self.frame_len(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(FRAME_HEADER_LEN);
        F::decode_body(frame.freeze()).map(Some)
    }

    /// Decodes every frame that follows in `bytes`, a buffer that holds whole frames only (e.g. a
    /// stream read to its end). Byte strings share `bytes`' allocation.
    pub fn decode_all<F: Frame>(&self, mut bytes: Bytes) -> Result<Vec<F>, WireError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let Some(total) = self.frame_len(&bytes)? else {
                return Err(WireError::Truncated {
                    field: "frame length",
                    needed: 4,
                    remaining: bytes.len() as u64,
                });
            };
            if bytes.len() < total {
                return Err(WireError::Truncated {
                    field: "frame body",
                    needed: (total - FRAME_HEADER_LEN) as u64,
                    remaining: (bytes.len() - FRAME_HEADER_LEN) as u64,
                });
            }
            let mut frame = bytes.split_to(total);
            frame.advance(FRAME_HEADER_LEN);
            out.push(F::decode_body(frame)?);
        }
        Ok(out)
    }
}

impl Default for Codec {
    /// A codec with the [`DEFAULT_MAX_FRAME_LEN`] limit (16 MiB).
    #[inline]
    fn default() -> Self {
        Codec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

/// Appends one length-prefixed frame to `buf` under the default 16 MiB limit; see
/// [`Codec::encode`].
#[inline]
pub fn encode_frame<F: Frame>(frame: &F, buf: &mut BytesMut) -> Result<usize, WireError> {
    Codec::default().encode(frame, buf)
}

/// Takes the next whole frame off `buf` under the default 16 MiB limit, or `Ok(None)` if more
/// bytes are needed; see [`Codec::decode`].
#[inline]
pub fn decode_frame<F: Frame>(buf: &mut BytesMut) -> Result<Option<F>, WireError> {
    Codec::default().decode(buf)
}

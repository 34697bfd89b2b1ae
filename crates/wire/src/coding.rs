//! Primitives every frame is built from: LEB128 varints, length-prefixed byte strings, options,
//! counts, and a [`Reader`] that turns running out of bytes into [`WireError`]s instead of
//! panics.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// The longest LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// Bytes of scalars a [`Writer`] gathers before it copies them to the output.
const SCRATCH_LEN: usize = 128;

/// Byte strings up to this long go through the scratch buffer; longer ones are copied straight
/// to the output.
const SMALL_SLICE: usize = 32;

/// Appends encoded fields to a `BytesMut`. Scalars (tags, varints) and short byte strings are
/// gathered in a stack buffer and copied out in one go: one `BytesMut::put_slice` per byte costs
/// a capacity check and an out-of-line `memmove` each, which made small frames 3-4x slower.
/// Everything is flushed when the writer is dropped.
pub struct Writer<'a> {
    out: &'a mut BytesMut,
    scratch: [u8; SCRATCH_LEN],
    len: usize,
}

impl<'a> Writer<'a> {
    /// A writer that appends to `out`.
    pub(crate) fn new(out: &'a mut BytesMut) -> Self {
        Writer {
            out,
            scratch: [0; SCRATCH_LEN],
            len: 0,
        }
    }

    /// Makes room for `n` more scratch bytes (`n <= SCRATCH_LEN`).
    #[inline]
    fn room(&mut self, n: usize) {
        if self.len + n > SCRATCH_LEN {
            self.flush();
        }
    }

    /// Copies the gathered bytes to the output.
    #[inline]
    pub(crate) fn flush(&mut self) {
        if self.len > 0 {
            self.out.put_slice(&self.scratch[..self.len]);
            self.len = 0;
        }
    }

    /// Reserves output capacity for about `n` more bytes.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.out.reserve(self.len + n);
    }

    /// One byte.
    #[inline]
    pub(crate) fn put_u8(&mut self, b: u8) {
        self.room(1);
        self.scratch[self.len] = b;
        self.len += 1;
    }

    /// Raw bytes.
    #[inline]
    pub(crate) fn put_slice(&mut self, s: &[u8]) {
        if s.len() <= SMALL_SLICE {
            self.room(s.len());
            self.scratch[self.len..self.len + s.len()].copy_from_slice(s);
            self.len += s.len();
        } else {
            self.flush();
            self.out.put_slice(s);
        }
    }

    /// A big-endian `u16`.
    #[inline]
    pub(crate) fn put_u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }

    /// A big-endian `u32`.
    #[inline]
    pub(crate) fn put_u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }

    /// An unsigned LEB128 varint (1 byte below 128, at most 10 bytes).
    #[inline]
    pub(crate) fn put_varint(&mut self, mut v: u64) {
        self.room(MAX_VARINT_LEN);
        let mut i = self.len;
        while v >= 0x80 {
            self.scratch[i] = (v as u8) | 0x80;
            v >>= 7;
            i += 1;
        }
        self.scratch[i] = v as u8;
        self.len = i + 1;
    }
}

impl Drop for Writer<'_> {
    #[inline]
    fn drop(&mut self) {
        self.flush();
    }
}

/// Appends `v` as a varint.
#[inline]
pub(crate) fn put_varint(buf: &mut Writer<'_>, v: u64) {
    buf.put_varint(v);
}

/// Appends a byte string: its length as a varint, then the bytes.
#[inline]
pub(crate) fn put_bytes(buf: &mut Writer<'_>, bytes: &[u8]) {
    buf.put_varint(bytes.len() as u64);
    buf.put_slice(bytes);
}

/// Appends an element count.
#[inline]
pub(crate) fn put_count(buf: &mut Writer<'_>, count: usize) {
    buf.put_varint(count as u64);
}

/// Appends an option: `0x00`, or `0x01` followed by what `put` writes.
#[inline]
pub(crate) fn put_option<T>(
    buf: &mut Writer<'_>,
    v: Option<T>,
    put: impl FnOnce(&mut Writer<'_>, T),
) {
    match v {
        None => buf.put_u8(0),
        Some(v) => {
            buf.put_u8(1);
            put(buf, v);
        }
    }
}

/// Most elements a decoder reserves room for up front, whatever a count claims. A valid count is
/// bounded by the frame length anyway; this keeps a forged one from reserving `len` times the
/// element size before the elements fail to decode.
const MAX_PREALLOC: usize = 1024;

/// Reads fields off a frame body. Byte strings are split off the body, so they share its
/// allocation (no copy).
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over one frame body.
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    fn truncated(&self, field: &'static str, needed: usize) -> WireError {
        WireError::Truncated {
            field,
            needed: needed as u64,
            remaining: self.buf.len() as u64,
        }
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        match self.buf.first() {
            Some(&b) => {
                self.buf.advance(1);
                Ok(b)
            }
            None => Err(self.truncated(field, 1)),
        }
    }

    /// A big-endian `u16`.
    pub(crate) fn u16_be(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub(crate) fn u32_be(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// `N` raw bytes.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        match self.buf.get(..N) {
            Some(s) => {
                let mut out = [0u8; N];
                out.copy_from_slice(s);
                self.buf.advance(N);
                Ok(out)
            }
            None => Err(self.truncated(field, N)),
        }
    }

    /// An unsigned LEB128 varint. Overlong encodings are accepted; more than 64 bits are not.
    #[inline]
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, WireError> {
        let s: &[u8] = &self.buf;
        // Fast path: most ids, slots, lengths and counts are below 128.
        if let Some(&b) = s.first() {
            if b < 0x80 {
                self.buf.advance(1);
                return Ok(u64::from(b));
            }
        }
        let mut v = 0u64;
        for (i, &b) in s.iter().take(MAX_VARINT_LEN).enumerate() {
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                // The tenth byte holds bit 63 only; anything else overflows or continues.
                return Err(WireError::BadVarint { field });
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf.advance(i + 1);
                return Ok(v);
            }
        }
        if s.len() >= MAX_VARINT_LEN {
            Err(WireError::BadVarint { field })
        } else {
            Err(self.truncated(field, s.len() + 1))
        }
    }

    /// A varint that must fit in a `u32`.
    pub(crate) fn varint_u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let v = self.varint(field)?;
        u32::try_from(v).map_err(|_| WireError::OutOfRange {
            field,
            value: v,
            max: u32::MAX.into(),
        })
    }

    /// A varint that must fit in a `usize`.
    pub(crate) fn varint_usize(&mut self, field: &'static str) -> Result<usize, WireError> {
        let v = self.varint(field)?;
        usize::try_from(v).map_err(|_| WireError::OutOfRange {
            field,
            value: v,
            max: usize::MAX as u64,
        })
    }

    /// A length-prefixed byte string, sliced out of the frame without copying.
    #[inline]
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Bytes, WireError> {
        let len = self.varint(field)?;
        if len > self.buf.len() as u64 {
            return Err(WireError::Truncated {
                field,
                needed: len,
                remaining: self.buf.len() as u64,
            });
        }
        Ok(self.buf.split_to(len as usize))
    }

    /// An element count, checked against the bytes left: each element takes at least
    /// `min_elem_len` bytes (at least 1), so a count the frame cannot hold is refused before
    /// anything is allocated for it.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min_elem_len: usize,
    ) -> Result<usize, WireError> {
        let count = self.varint(field)?;
        let fits = (self.buf.len() / min_elem_len.max(1)) as u64;
        if count > fits {
            return Err(WireError::CountTooLarge {
                field,
                count,
                remaining: self.buf.len() as u64,
            });
        }
        Ok(count as usize)
    }

    /// A vector for `count` elements, reserving at most [`MAX_PREALLOC`] up front.
    pub(crate) fn vec_for<T>(count: usize) -> Vec<T> {
        Vec::with_capacity(count.min(MAX_PREALLOC))
    }

    /// An option's presence byte: `0x00` absent, `0x01` present.
    #[inline]
    pub(crate) fn option(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(WireError::UnknownTag { what: field, tag }),
        }
    }

    /// Ends a frame: nothing may be left.
    pub(crate) fn finish(self, kind: &'static str) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                kind,
                extra: self.buf.len() as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: u64) -> (usize, u64) {
        let mut buf = BytesMut::new();
        put_varint(&mut Writer::new(&mut buf), v);
        let len = buf.len();
        let mut r = Reader::new(buf.freeze());
        (len, r.varint("v").unwrap())
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                assert_eq!(roundtrip(v).1, v);
            }
        }
        assert_eq!(roundtrip(0), (1, 0));
        assert_eq!(roundtrip(127), (1, 127));
        assert_eq!(roundtrip(128), (2, 128));
        assert_eq!(roundtrip(u64::MAX), (10, u64::MAX));
    }

    #[test]
    fn varints_over_64_bits_are_refused() {
        // Ten bytes whose last carries more than bit 63.
        let mut bytes = vec![0xff; 9];
        bytes.push(0x02);
        let mut r = Reader::new(Bytes::from(bytes));
        assert_eq!(r.varint("f"), Err(WireError::BadVarint { field: "f" }));
        // Eleven continuation bytes.
        let mut r = Reader::new(Bytes::from(vec![0x80; 11]));
        assert_eq!(r.varint("f"), Err(WireError::BadVarint { field: "f" }));
    }

    #[test]
    fn a_truncated_varint_names_its_field() {
        let mut r = Reader::new(Bytes::from_static(&[0x80, 0x80]));
        assert_eq!(
            r.varint("Accept.slot"),
            Err(WireError::Truncated {
                field: "Accept.slot",
                needed: 3,
                remaining: 2
            })
        );
    }

    #[test]
    fn byte_strings_share_the_frame_allocation() {
        let mut buf = BytesMut::new();
        put_bytes(&mut Writer::new(&mut buf), b"hello");
        let body = buf.freeze();
        let base = body.as_ptr() as usize;
        let mut r = Reader::new(body);
        let s = r.bytes("k").unwrap();
        assert_eq!(&s[..], b"hello");
        assert_eq!(s.as_ptr() as usize, base + 1, "sliced, not copied");
    }

    #[test]
    fn counts_the_frame_cannot_hold_are_refused() {
        let mut buf = BytesMut::new();
        let mut w = Writer::new(&mut buf);
        put_varint(&mut w, 1 << 40);
        w.put_slice(&[0; 10]);
        drop(w);
        let mut r = Reader::new(buf.freeze());
        assert_eq!(
            r.count("Learn.entries", 2),
            Err(WireError::CountTooLarge {
                field: "Learn.entries",
                count: 1 << 40,
                remaining: 10
            })
        );
    }
}
